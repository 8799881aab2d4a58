//! Recovery at start: every shard rebuilds its state from its log before any shard accepts a
//! connection.
//!
//! The shards go through the same phases and wait for each other between them (a counter
//! shared by the shard threads; a shard keeps serving mesh messages while it waits):
//! 1. load the snapshot and the log, install the sessions offline (expiry counting from when
//!    the client left, or from now if the broker's stop or crash cut it off; a session that
//!    expired meanwhile is not installed) and the delayed Wills, register each session with
//!    the shard that arbitrates its client id ([`ShardMsg::Adopt`]);
//! 2. (the arbitrating shards have seen every registration and dropped duplicates) broadcast
//!    the sessions' subscriptions and, from shard 0, the retained messages, to every replica;
//! 3. write a fresh snapshot and start the log; once every shard is there, publish the Wills
//!    that fell due (or whose session expired) while the broker was down and schedule the
//!    others ([`crate::shard::will::arm_recovered`]); then the shard may report ready.

use std::{
    collections::hash_map::Entry,
    rc::{Rc, Weak},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use protocol::ByteStr;

use crate::{
    error::BrokerError,
    mesh::ShardMsg,
    persist::{self, record::Record, Persist, Recovered, StateKey, StateSource},
    security::{ClientAccess, Identity},
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
    let mut state = std::mem::take(&mut recovery.state);
    // State of shards that no longer run (the broker ran with more shards before): shard
    // `k` is taken over by shard `k % nr_shards`, so nothing written is left behind.
    let orphans: Vec<usize> = persist::orphan_shards(&settings, shard.nr_shards)
        .map_err(|e| failed(&e))?
        .into_iter()
        .filter(|k| k % shard.nr_shards == shard.id)
        .collect();
    for &k in &orphans {
        let theirs = persist::recover(&settings, k)
            .await
            .map_err(|e| failed(&e))?;
        let n = take_over(&mut state, theirs.state);
        tracing::info!(
            shard = shard.id,
            from = k,
            sessions = n,
            "broker state of a shard that no longer runs taken over"
        );
    }
    let now = Instant::now();
    let now_ms = crate::clock::unix_ms_now();
    let security = shard.security.clone();
    let policy = security.policy();
    let mut ids: Vec<(ByteStr, u64)> = Vec::with_capacity(state.sessions.len());
    let mut expired = 0usize;
    for (client_id, mut session) in std::mem::take(&mut state.sessions) {
        let left_ms = state.offline_since.get(&client_id).copied();
        let since = offline_since(session.expiry_interval, left_ms, now, now_ms);
        let Some(since) = since.filter(|_| session.is_persistent()) else {
            // Its Will, if one waits, is published once recovery is done.
            expired += 1;
            continue;
        };
        session.disconnected_at = Some(since);
        let identity = match state.usernames.remove(&client_id).flatten() {
            Some(user) => Identity::User(user.to_string()),
            None => Identity::Anonymous,
        };
        let access = Rc::new(ClientAccess::new(
            &policy,
            security.generation(),
            identity,
            client_id.clone(),
        ));
        shard.track_queued(session.queued_bytes, true);
        ids.push((client_id.clone(), session.stamp));
        shard
            .state
            .borrow_mut()
            .sessions
            .insert(Box::new(SessionSlot {
                state: session,
                link: None,
                access,
                persisted: true,
                // No claim brought it: the owner shard learns of it by `Adopt`, as claim 0.
                claim: 0,
            }));
    }
    drop(policy);
    let nr_wills = state.wills.len();
    {
        let mut st = shard.state.borrow_mut();
        // Armed once every shard has its subscriptions back (below); installed now so that
        // a `Discard` of a duplicate session cancels its Will.
        st.wills.extend(std::mem::take(&mut state.wills));
        if shard.id == 0 {
            for (topic, message) in std::mem::take(&mut state.retained) {
                if !message.is_expired(now) {
                    st.retained_bytes += message.weight();
                    st.retained.insert(topic, message);
                }
            }
        }
    }
    for (client_id, stamp) in ids {
        let owner = shard.owner_of(&client_id);
        shard.send(
            owner,
            ShardMsg::Adopt {
                client_id,
                shard: shard.id,
                stamp,
            },
        );
    }
    shard.barrier().await;
    rendezvous(shard, phase, 1, stop).await?;
    // Owners sent their Discards while handling Adopt; make sure they are applied.
    shard.barrier().await;
    rendezvous(shard, phase, 2, stop).await?;
    // Every registration is in: the stamps served only to pick among duplicates.
    shard.state.borrow_mut().adopted_stamps = Default::default();

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
        wills = nr_wills,
        expired_sessions = expired,
        replayed,
        "broker state recovered"
    );
    rendezvous(shard, phase, 3, stop).await?;
    // Every shard's subscription table is whole now: a Will published here reaches every
    // subscriber that came back.
    crate::shard::will::arm_recovered(shard);
    Ok(())
}

/// Adds the state of a shard that no longer runs to `ours`; where both hold a session of one
/// client id (a crash during a takeover between them), the newest copy is kept (ours on a
/// tie); where both hold a Will, ours. Returns how many sessions `theirs` held.
fn take_over(ours: &mut Recovered, mut theirs: Recovered) -> usize {
    let n = theirs.sessions.len();
    for (client_id, session) in std::mem::take(&mut theirs.sessions) {
        let newer = match ours.sessions.entry(client_id.clone()) {
            Entry::Vacant(slot) => {
                slot.insert(session);
                true
            }
            Entry::Occupied(mut slot) if session.stamp > slot.get().stamp => {
                slot.insert(session);
                true
            }
            Entry::Occupied(_) => false,
        };
        if newer {
            let user = theirs.usernames.remove(&client_id).flatten();
            ours.usernames.insert(client_id.clone(), user);
            match theirs.offline_since.remove(&client_id) {
                Some(ms) => ours.offline_since.insert(client_id, ms),
                None => ours.offline_since.remove(&client_id),
            };
        }
    }
    for (client_id, will) in theirs.wills {
        ours.wills.entry(client_id).or_insert(will);
    }
    n
}

/// The instant a recovered session's client left, or `None` when its expiry has run out
/// since (the broker was down for longer than the session had left).
///
/// `left_ms` is when the client left, wall-clock; a session without it was cut off by the
/// broker's own stop or crash (or written by a build that did not record it), and its expiry
/// counts from the restart: the client could not come back while the broker was down, and
/// ending its session for the broker's outage would be worse than keeping it a while longer.
fn offline_since(expiry: u32, left_ms: Option<u64>, now: Instant, now_ms: u64) -> Option<Instant> {
    let Some(left_ms) = left_ms else {
        return Some(now);
    };
    let away = Duration::from_millis(now_ms.saturating_sub(left_ms));
    if expiry != u32::MAX && away >= Duration::from_secs(u64::from(expiry)) {
        return None;
    }
    // An instant before the machine booted cannot be represented: the session then counts
    // from now, which keeps it longer rather than ending it early.
    Some(now.checked_sub(away).unwrap_or(now))
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
        // Handed to another shard, not durable there yet: still ours to keep.
        keys.extend(
            st.handed_off
                .keys()
                .filter(|id| !st.sessions.get(id).is_some_and(|slot| slot.persisted))
                .map(|id| StateKey::Session(id.clone())),
        );
        keys.extend(st.wills.keys().map(|id| StateKey::Will(id.clone())));
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
            StateKey::Session(id) => match st.sessions.get(id).filter(|slot| slot.persisted) {
                Some(slot) => Some(Record::Session(persist::state::image(
                    &slot.state,
                    slot.access.identity().username(),
                ))),
                None => st
                    .handed_off
                    .get(id)
                    .map(|h| Record::Session(h.image.clone())),
            },
            StateKey::Retained(topic) => st.retained.get(topic).map(|m| Record::Retain {
                topic: topic.clone(),
                message: Some(m.clone()),
            }),
            StateKey::Will(id) => st.wills.get(id).map(|w| Record::Will {
                client_id: id.clone(),
                due_ms: w.due_ms,
                will: Box::new(w.will.clone()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One shard's recovered state holding client `c`'s session, stamped `stamp`, subscribed
    /// to `filter`, its client gone since `left_ms`.
    fn holding(stamp: u64, filter: &str, left_ms: u64) -> Recovered {
        let mut session = crate::session::SessionState::new("c".into(), 3600);
        session.stamp = stamp;
        session.subscriptions.insert(
            filter.into(),
            crate::session::SessionSubscription {
                options: protocol::SubscriptionOptions::default(),
                id: None,
            },
        );
        let mut state = Recovered::default();
        state.sessions.insert("c".into(), session);
        state.offline_since.insert("c".into(), left_ms);
        state
    }

    /// Regression guard, fewer shards after a restart: a session on two shards
    /// (a crash during a takeover) was merged keeping the surviving shard's copy, even stale.
    #[test]
    fn merging_a_gone_shards_state_keeps_the_newest_copy_of_a_session() {
        let key = ByteStr::from("c");
        let filters = |r: &Recovered| -> Vec<ByteStr> {
            r.sessions[&key].subscriptions.keys().cloned().collect()
        };
        let mut ours = holding(1_000, "old", 10);
        take_over(&mut ours, holding(2_000, "new", 20));
        assert_eq!(filters(&ours), vec![ByteStr::from("new")]);
        assert_eq!(ours.offline_since[&key], 20);
        let mut ours = holding(2_000, "new", 20);
        take_over(&mut ours, holding(1_000, "old", 10));
        assert_eq!(filters(&ours), vec![ByteStr::from("new")]);
        assert_eq!(ours.offline_since[&key], 20);
    }

    #[test]
    fn a_session_counts_from_its_clients_departure_or_else_from_the_restart() {
        let now = Instant::now();
        let now_ms = 1_700_000_000_000;
        let ago = |secs: u64| Some(now_ms - secs * 1000);
        // Cut off by the broker's stop or crash: from now, however short the expiry.
        assert_eq!(offline_since(1, None, now, now_ms), Some(now));
        // Left 10 s ago: gone with a 10 s expiry, 10 s into an hour's.
        assert_eq!(offline_since(10, ago(10), now, now_ms), None);
        let since = offline_since(3600, ago(10), now, now_ms);
        assert!(since.is_some_and(|at| now - at == Duration::from_secs(10)));
        // A session that never expires never does, however long ago its client left.
        assert!(offline_since(u32::MAX, ago(1 << 30), now, now_ms).is_some());
    }
}
