//! Recovery at start: every shard rebuilds its state from its log before any shard accepts a
//! connection.
//!
//! The shards go through the same phases and wait for each other between them (a counter
//! shared by the shard threads; a shard keeps serving mesh messages while it waits):
//! 1. load the snapshot and the log, install the sessions offline (expiry counts from now),
//!    register each with the shard that arbitrates its client id ([`ShardMsg::Adopt`]);
//! 2. (the arbitrating shards have seen every registration and dropped duplicates) broadcast
//!    the sessions' subscriptions and, from shard 0, the retained messages, to every replica;
//! 3. write a fresh snapshot and start the log; then the shard may report ready.

use std::{
    rc::{Rc, Weak},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use protocol::ByteStr;

use crate::{
    mesh::ShardMsg,
    persist::{self, record::Record, Persist, StateKey, StateSource},
    security::{ClientAccess, Identity},
    server::BrokerError,
    shard::{SessionSlot, Shard},
};

/// Recovers `shard`'s state and starts its log. `phase` is shared by all shards.
///
/// # Errors
/// The state directory cannot be read or the first snapshot cannot be written.
pub async fn recover(
    shard: &Rc<Shard>,
    phase: &AtomicUsize,
    stop: &AtomicBool,
) -> Result<(), BrokerError> {
    let settings = shard.config.persistence.clone();
    let failed = |e: &dyn std::fmt::Display| BrokerError::Persistence(e.to_string());
    let mut recovery = persist::recover(&settings, shard.id)
        .await
        .map_err(|e| failed(&e))?;
    let now = Instant::now();
    let mut sessions = std::mem::take(&mut recovery.state.sessions);
    let mut usernames = std::mem::take(&mut recovery.state.usernames);
    // State of shards that no longer run (the broker ran with more shards before): shard
    // `k` is taken over by shard `k % nr_shards`, so nothing written is left behind.
    let orphans: Vec<usize> = persist::orphan_shards(&settings, shard.nr_shards)
        .map_err(|e| failed(&e))?
        .into_iter()
        .filter(|k| k % shard.nr_shards == shard.id)
        .collect();
    for &k in &orphans {
        let mut theirs = persist::recover(&settings, k)
            .await
            .map_err(|e| failed(&e))?;
        let n = theirs.state.sessions.len();
        for (client_id, state) in std::mem::take(&mut theirs.state.sessions) {
            if let std::collections::hash_map::Entry::Vacant(slot) =
                sessions.entry(client_id.clone())
            {
                let user = theirs.state.usernames.remove(&client_id).flatten();
                usernames.insert(client_id, user);
                slot.insert(state);
            }
        }
        tracing::info!(
            shard = shard.id,
            from = k,
            sessions = n,
            "broker state of a shard that no longer runs taken over"
        );
    }
    let retained = std::mem::take(&mut recovery.state.retained);
    let security = shard.security.clone();
    let policy = security.policy();
    let mut ids: Vec<ByteStr> = Vec::with_capacity(sessions.len());
    let mut expired = 0usize;
    for (client_id, mut state) in sessions {
        // Expiry counts from the restart: the broker cannot know how long it was down for
        // the client, and cutting a session short for the broker's own outage is worse.
        state.disconnected_at = Some(now);
        if !state.is_persistent() {
            expired += 1;
            continue;
        }
        let identity = match usernames.remove(&client_id).flatten() {
            Some(user) => Identity::User(user.to_string()),
            None => Identity::Anonymous,
        };
        let access = ClientAccess::new(&policy, security.generation(), identity, &client_id);
        shard.track_queued(state.queued_bytes, true);
        ids.push(client_id.clone());
        shard.state.borrow_mut().sessions.insert(
            client_id,
            SessionSlot {
                state,
                link: None,
                conn_id: 0,
                access,
                persisted: true,
            },
        );
    }
    drop(policy);
    if shard.id == 0 {
        let mut st = shard.state.borrow_mut();
        for (topic, message) in retained {
            if !message.is_expired(now) {
                st.retained_bytes += message.weight();
                st.retained.insert(topic, message);
            }
        }
    }
    for client_id in &ids {
        let owner = shard.owner_of(client_id);
        shard.send(
            owner,
            ShardMsg::Adopt {
                client_id: client_id.clone(),
                shard: shard.id,
            },
        );
    }
    shard.barrier().await;
    rendezvous(shard, phase, 1, stop).await?;
    // Owners sent their Discards while handling Adopt; make sure they are applied.
    shard.barrier().await;
    rendezvous(shard, phase, 2, stop).await?;

    let subscriptions: Vec<(ByteStr, Vec<(ByteStr, crate::session::SessionSubscription)>)> = {
        let st = shard.state.borrow();
        st.sessions
            .iter()
            .map(|(id, slot)| {
                let subs = slot
                    .state
                    .subscriptions
                    .iter()
                    .map(|(f, s)| (f.clone(), *s))
                    .collect();
                (id.clone(), subs)
            })
            .collect()
    };
    let mut nr_subscriptions = 0;
    for (client_id, subs) in subscriptions {
        for (filter, sub) in subs {
            nr_subscriptions += 1;
            let (cid, me) = (client_id.clone(), shard.id);
            shard.broadcast(|| ShardMsg::SubAdd {
                client_id: cid.clone(),
                shard: me,
                filter: filter.clone(),
                options: sub.options,
                id: sub.id,
            });
        }
        glommio::yield_if_needed().await;
    }
    let nr_retained = if shard.id == 0 {
        let retained: Vec<_> = shard
            .state
            .borrow()
            .retained
            .iter()
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect();
        for (topic, message) in &retained {
            for peer in 1..shard.nr_shards {
                shard.send(
                    peer,
                    ShardMsg::Retain {
                        topic: topic.clone(),
                        message: Some(message.clone()),
                    },
                );
            }
        }
        retained.len()
    } else {
        0
    };
    shard.barrier().await;

    let source: persist::SnapshotSource = Box::new(ShardSource(Rc::downgrade(shard)));
    let replayed = recovery.replayed;
    let log = Persist::start(&settings, shard.id, recovery, source)
        .await
        .map_err(|e| BrokerError::Persistence(e.to_string()))?;
    *shard.persist.borrow_mut() = Some(Rc::new(log));
    // Our snapshot holds what they held now.
    for k in orphans {
        persist::remove_shard_dir(&settings, k).await;
    }
    let sessions = shard.state.borrow().sessions.len();
    tracing::info!(
        shard = shard.id,
        sessions,
        subscriptions = nr_subscriptions,
        retained = nr_retained,
        expired_sessions = expired,
        replayed,
        "broker state recovered"
    );
    rendezvous(shard, phase, 3, stop).await
}

/// Waits until every shard has reached `step`.
async fn rendezvous(
    shard: &Shard,
    phase: &AtomicUsize,
    step: usize,
    stop: &AtomicBool,
) -> Result<(), BrokerError> {
    phase.fetch_add(1, Ordering::AcqRel);
    let target = step * shard.nr_shards;
    let deadline = Instant::now() + Duration::from_secs(120);
    while phase.load(Ordering::Acquire) < target {
        if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
            return Err(BrokerError::Persistence(format!(
                "shard {}: other shards did not finish recovering",
                shard.id
            )));
        }
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// A shard's state as its log task sees it: weakly, so the log never keeps the shard alive.
struct ShardSource(Weak<Shard>);

impl StateSource for ShardSource {
    fn keys(&self) -> Vec<StateKey> {
        let Some(shard) = self.0.upgrade() else {
            return Vec::new();
        };
        let st = shard.state.borrow();
        let mut keys: Vec<StateKey> = st
            .sessions
            .iter()
            .filter(|(_, slot)| slot.persisted)
            .map(|(id, _)| StateKey::Session(id.clone()))
            .collect();
        if shard.id == 0 {
            keys.extend(
                st.retained
                    .keys()
                    .filter(|t| !t.starts_with("$SYS/"))
                    .map(|t| StateKey::Retained(t.clone())),
            );
        }
        keys
    }

    fn record(&self, key: &StateKey) -> Option<Record> {
        let shard = self.0.upgrade()?;
        let st = shard.state.borrow();
        match key {
            StateKey::Session(id) => {
                st.sessions
                    .get(id)
                    .filter(|slot| slot.persisted)
                    .map(|slot| {
                        Record::Session(persist::state::image(
                            &slot.state,
                            slot.access.identity().username(),
                        ))
                    })
            }
            StateKey::Retained(topic) => st.retained.get(topic).map(|m| Record::Retain {
                topic: topic.clone(),
                message: Some(m.clone()),
            }),
        }
    }
}
