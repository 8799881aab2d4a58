//! Messages between shards: sending, broadcasting, barriers, and handling what a peer sent.

use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel;

use crate::mesh::ShardMsg;
use crate::outbox::Control;
use crate::persist::record::Record;
use crate::trie::SubEntry;

use super::handoff::Handoff;
use super::{Shard, PEER_ANSWER_LIMIT};

impl Shard {
    /// Sends a message to shard `to`; to itself it is handled on a fresh task, after whatever
    /// runs now, so handlers never re-enter each other.
    pub fn send(self: &Rc<Self>, to: usize, msg: ShardMsg) {
        match self.peers.get(to).and_then(|p| p.as_ref()) {
            Some(queue) => queue.push(msg),
            None => {
                let shard = self.clone();
                glommio::spawn_local(async move { shard.handle(msg) }).detach();
            }
        }
    }

    /// Sends a message to every shard, this one included (applied here at once).
    pub fn broadcast(self: &Rc<Self>, make: impl Fn() -> ShardMsg) {
        for (i, peer) in self.peers.iter().enumerate() {
            if let Some(queue) = peer {
                queue.push(make());
            } else if i == self.id {
                self.handle(make());
            }
        }
    }

    /// Waits until every peer has applied everything this shard sent it before.
    pub async fn barrier(self: &Rc<Self>) {
        self.barrier_with(false).await;
    }

    /// [`Shard::barrier`], and with `durable` also until every peer's state log holds what
    /// applying it appended (a QoS 1/2 message queued there for a persistent session).
    /// False when a peer's log failed or a peer did not answer in time: then what was sent
    /// may not be durable, and must not be acknowledged as if it were.
    pub async fn barrier_with(self: &Rc<Self>, durable: bool) -> bool {
        if self.nr_shards <= 1 {
            return true;
        }
        let req = self.next_req();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_barriers
            .borrow_mut()
            .insert(req, (self.nr_shards - 1, false, tx));
        for peer in self.peers.iter().flatten() {
            peer.push(ShardMsg::Barrier {
                from: self.id,
                req,
                durable,
            });
        }
        // Peers answer within microseconds; the bound only matters while shards shut down.
        let answered = glommio::timer::timeout(PEER_ANSWER_LIMIT, async {
            Ok(rx.recv().await.unwrap_or(false))
        })
        .await;
        match answered {
            Ok(ok) => ok,
            Err(_) => {
                self.pending_barriers.borrow_mut().remove(&req);
                tracing::warn!(
                    shard = self.id,
                    "barrier not answered by every shard in time"
                );
                false
            }
        }
    }

    /// Handles one message from a peer (or from itself).
    pub fn handle(self: &Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::SubAdd {
                client_id,
                shard,
                filter,
                options,
                id,
            } => {
                let entry = SubEntry {
                    client_id,
                    shard,
                    options,
                    id,
                };
                self.state.borrow_mut().subscriptions.insert(&filter, entry);
            }
            ShardMsg::SubRemove { client_id, filters } => {
                let mut st = self.state.borrow_mut();
                for filter in &filters {
                    st.subscriptions.remove(filter, &client_id);
                }
            }
            ShardMsg::SubRelocate {
                client_id,
                filters,
                shard,
            } => {
                self.state
                    .borrow_mut()
                    .subscriptions
                    .relocate(&filters, &client_id, shard);
            }
            ShardMsg::Retain { topic, message } => self.apply_retain(topic, message),
            ShardMsg::Deliver(batch) => {
                let now = Instant::now();
                for (client_id, delivery) in batch {
                    self.deliver_local(&client_id, delivery, now);
                }
            }
            ShardMsg::Claim {
                client_id,
                from,
                req,
            } => {
                let prev = self
                    .state
                    .borrow_mut()
                    .owners
                    .insert(client_id.clone(), (from, req));
                match prev {
                    None => self.send(
                        from,
                        ShardMsg::ClaimResult {
                            req,
                            session: None,
                            from: self.id,
                        },
                    ),
                    Some((holder, after)) => self.send(
                        holder,
                        ShardMsg::Evict {
                            client_id,
                            to: from,
                            req,
                            after,
                        },
                    ),
                }
            }
            ShardMsg::Evict {
                client_id,
                to,
                req,
                after,
            } => self.evict(client_id, to, req, after),
            ShardMsg::ClaimResult { req, session, from } => {
                let waiting = self.pending_claims.borrow_mut().remove(&req);
                match (waiting, session) {
                    (Some(tx), session) => {
                        let _ = tx.try_send(session.map(|s| (s, Handoff { from, req })));
                    }
                    (None, Some(late)) => {
                        self.claim_answered_too_late(&late, Handoff { from, req })
                    }
                    (None, None) => {}
                }
            }
            ShardMsg::Forget {
                client_id,
                from,
                req,
            } => self.forget(client_id, from, req),
            ShardMsg::Release {
                client_id,
                shard,
                claim,
            } => {
                let mut st = self.state.borrow_mut();
                if st.owners.get(&client_id) == Some(&(shard, claim)) {
                    st.owners.remove(&client_id);
                }
            }
            ShardMsg::Barrier { from, req, durable } => {
                let persist = self.persist.borrow().clone();
                match persist {
                    Some(p) if durable => {
                        let (shard, ticket) = (self.clone(), p.last_ticket());
                        glommio::spawn_local(async move {
                            let failed = match p.durable(ticket).await {
                                Ok(()) => false,
                                Err(e) => {
                                    tracing::error!(shard = shard.id, error = %e, "state log failed");
                                    true
                                }
                            };
                            shard.send(from, ShardMsg::BarrierAck { req, failed });
                        })
                        .detach();
                    }
                    _ => self.send(from, ShardMsg::BarrierAck { req, failed: false }),
                }
            }
            ShardMsg::Adopt {
                client_id,
                shard,
                stamp,
            } => self.adopt(client_id, shard, stamp),
            ShardMsg::Discard { client_id } => {
                let gone = self.state.borrow_mut().sessions.remove(&client_id);
                if let Some(slot) = gone {
                    self.track_queued(slot.state.queued_bytes, false);
                }
                // A session on two shards means its client came back (a takeover), which
                // cancelled the Will its connection here had left.
                crate::shard::will::cancel(self, &client_id);
                self.log(|| Record::SessionRemove { client_id });
            }
            ShardMsg::BarrierAck { req, failed } => {
                let mut pending = self.pending_barriers.borrow_mut();
                if let Some((left, any_failed, _)) = pending.get_mut(&req) {
                    *left -= 1;
                    *any_failed |= failed;
                    if *left == 0 {
                        if let Some((_, any_failed, tx)) = pending.remove(&req) {
                            let _ = tx.try_send(!any_failed);
                        }
                    }
                }
            }
        }
    }

    /// Deliveries waiting to be handed to the other shards.
    pub fn mesh_backlog(&self) -> usize {
        self.peers
            .iter()
            .flatten()
            .map(|p| p.deliveries.get())
            .sum()
    }

    /// Waits while this shard's backlog towards its peers is over the high-water mark (or the
    /// connection is asked to close): a flood of publishes must wait for the shards that
    /// deliver them, not pile up in memory.
    pub async fn wait_for_mesh_room(&self, control: &Control) {
        while self.mesh_backlog() >= crate::mesh::BACKLOG_HIGH_WATER
            && control.requested().is_none()
        {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
    }
}
