//! The client-id claim protocol: which shard arbitrates a client id, asking it for the
//! session, and what the arbiter does with claims (adopt, evict, answer too late).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::rc::Rc;
use std::time::Instant;

use glommio::channels::local_channel;
use protocol::ByteStr;

use crate::mesh::ShardMsg;
use crate::outbox::CloseRequest;
use crate::session::{DropReason, SessionState};

use super::handoff::{newest_copy, HandedOff, Handoff};
use super::{ClaimInFlight, Claimed, Shard, PEER_ANSWER_LIMIT};

impl Shard {
    /// The shard that arbitrates `client_id` (a stable hash, the same on every shard).
    pub fn owner_of(&self, client_id: &str) -> usize {
        let mut h = DefaultHasher::new();
        client_id.hash(&mut h);
        (h.finish() % self.nr_shards as u64) as usize
    }

    /// Asks the owner of `client_id` for its session, wherever it is; closes the connection
    /// that held it. `None` when there was none; else the session and where it came from
    /// (to be told, [`Shard::forget_when_durable`], once its copy here is durable).
    ///
    /// Also returns the claim's request id: the caller installs the session (or a fresh one)
    /// and then takes [`ShardState::claims`]' entry for it, which says where the session goes
    /// next if another connection claimed it meanwhile.
    pub async fn claim_session(self: &Rc<Self>, client_id: &ByteStr) -> (u64, Option<Claimed>) {
        let req = self.next_req();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_claims.borrow_mut().insert(req, tx);
        self.state.borrow_mut().claims.insert(
            req,
            ClaimInFlight {
                client_id: client_id.clone(),
                evict: None,
            },
        );
        let owner = self.owner_of(client_id);
        self.send(
            owner,
            ShardMsg::Claim {
                client_id: client_id.clone(),
                from: self.id,
                req,
            },
        );
        let result = glommio::timer::timeout(PEER_ANSWER_LIMIT, async { Ok(rx.recv().await) })
            .await
            .unwrap_or_else(|_| {
                tracing::warn!(shard = self.id, client_id = %client_id, "session claim not answered in time; starting a fresh session");
                None
            })
            .flatten();
        self.pending_claims.borrow_mut().remove(&req);
        (req, result)
    }

    /// A session handed over after the claim that asked for it gave up waiting (10 s): the
    /// connection has started a fresh session and told its client so, and what this one still
    /// owed is lost. Never silently: counted against the client and warned about. The shard it
    /// came from is told to forget its logged copy, which a restart would otherwise bring back.
    ///
    /// Its subscriptions are the fresh session's no more: every replica drops the filters the
    /// fresh session (held here) has not subscribed to itself. Were they kept, messages they
    /// match would reach it by way of the shard the old session left. Any later subscription of
    /// the fresh session is sent after this removal, on the same ordered mesh, so it is not
    /// undone. Should the fresh session be gone from this shard already, what it subscribed to
    /// is not known here, and nothing is removed (warned).
    pub(super) fn claim_answered_too_late(
        self: &Rc<Self>,
        session: &SessionState,
        handoff: Handoff,
    ) {
        let owed = session.queue.len() + session.inflight.len();
        self.forget_when_durable(session.client_id.clone(), handoff, None);
        let stale: Option<Vec<ByteStr>> = {
            let st = self.state.borrow();
            st.sessions.get(&session.client_id).map(|fresh| {
                session
                    .subscriptions
                    .keys()
                    .filter(|filter| !fresh.state.subscriptions.contains_key(*filter))
                    .cloned()
                    .collect()
            })
        };
        match stale {
            Some(filters) if !filters.is_empty() => {
                let client_id = &session.client_id;
                self.broadcast(|| ShardMsg::SubRemove {
                    client_id: client_id.clone(),
                    filters: filters.clone(),
                });
            }
            Some(_) => {}
            None if !session.subscriptions.is_empty() => tracing::warn!(
                shard = self.id,
                client_id = %session.client_id,
                filters = session.subscriptions.len(),
                "a late session's subscriptions stay: its fresh successor has left this shard"
            ),
            None => {}
        }
        tracing::warn!(
            shard = self.id,
            client_id = %session.client_id,
            from = handoff.from,
            owed,
            "a session arrived after its claim gave up waiting; the messages it owed are dropped"
        );
        for _ in 0..owed {
            self.discarded(DropReason::ClaimTimeout, &session.client_id);
        }
    }

    /// Recovery: shard `shard` holds a copy of `client_id`'s session stamped `stamp`. Of two
    /// copies (a crash fell between a takeover's two log records) the newest is kept, the
    /// other discarded.
    pub(super) fn adopt(self: &Rc<Self>, client_id: ByteStr, shard: usize, stamp: u64) {
        let discard = {
            let mut st = self.state.borrow_mut();
            let known = st
                .owners
                .get(&client_id)
                .map(|&(s, _)| (s, st.adopted_stamps.get(&client_id).copied().unwrap_or(0)));
            let (kept, discard) = match known {
                Some(first) => newest_copy(first, (shard, stamp)),
                None => ((shard, stamp), None),
            };
            st.owners.insert(client_id.clone(), (kept.0, 0));
            st.adopted_stamps.insert(client_id.clone(), kept.1);
            discard
        };
        if let Some(dropped) = discard {
            tracing::warn!(shard = self.id, client_id = %client_id, dropped, "recovered session found on two shards; keeping the newest");
            self.send(dropped, ShardMsg::Discard { client_id });
        }
    }

    /// Hands the session of `client_id` to shard `to`, closing its connection here. The client
    /// is back, so a Will its last connection here left is cancelled. A persistent session
    /// stays in this shard's log until its copy there is durable ([`crate::shard::handoff`]).
    pub(super) fn evict(self: &Rc<Self>, client_id: ByteStr, to: usize, req: u64, after: u64) {
        let mut st = self.state.borrow_mut();
        if let Some(next) = st.claims.get_mut(&after) {
            // The claim that gets the session before this one has not installed it yet: it
            // passes the session on when it does.
            if let Some((lost_to, lost_req)) = next.evict.replace((to, req)) {
                // Never expected (the owner sends one eviction per claim); answered rather
                // than left waiting.
                tracing::warn!(shard = self.id, client_id = %client_id, "second eviction for one claim");
                drop(st);
                self.send(
                    lost_to,
                    ShardMsg::ClaimResult {
                        req: lost_req,
                        session: None,
                        from: self.id,
                    },
                );
            }
            return;
        }
        drop(st);
        crate::shard::will::cancel(self, &client_id);
        let mut st = self.state.borrow_mut();
        if let Some(slot) = st.sessions.remove(&client_id) {
            if let Some(link) = &slot.link {
                link.handle.control.close(CloseRequest::TakenOver);
            }
            self.track_queued(slot.state.queued_bytes, false);
            if slot.persisted {
                let username = slot.access.identity().username();
                let image = crate::persist::state::image(&slot.state, username);
                st.handed_off
                    .insert(client_id.clone(), HandedOff { to, req, image });
            }
            if to != self.id {
                st.moved_to.insert(client_id, (to, Instant::now()));
            }
            drop(st);
            self.send(
                to,
                ShardMsg::ClaimResult {
                    req,
                    session: Some(Box::new(slot.state)),
                    from: self.id,
                },
            );
        } else {
            drop(st);
            self.send(
                to,
                ShardMsg::ClaimResult {
                    req,
                    session: None,
                    from: self.id,
                },
            );
        }
    }
}
