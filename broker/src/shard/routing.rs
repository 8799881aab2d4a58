//! Routing a message to the sessions subscribed to its topic, here or on other shards, and
//! ending a session.

use std::rc::Rc;
use std::time::Instant;

use protocol::{ByteStr, QoS};

use crate::mesh::ShardMsg;
use crate::message::{Delivery, Message};
use crate::persist::record::Record;
use crate::session::DropReason;
use crate::trie::{Matched, SubEntry};

use super::{RouteOutcome, Shard};

impl Shard {
    /// Routes a message to every matching subscription, on every shard.
    pub fn route(self: &Rc<Self>, message: &Message) -> RouteOutcome {
        struct Target {
            client_id: ByteStr,
            shard: usize,
            qos: QoS,
            retain: bool,
            ids: Vec<u32>,
            shared: bool,
        }
        let mut targets: Vec<Target> = Vec::new();
        {
            let mut guard = self.state.borrow_mut();
            let st = &mut *guard;
            let cursors = &mut st.share_cursor;
            let publisher = message.publisher.as_deref();
            let mut push = |entry: &SubEntry, shared: bool| {
                let qos = entry.options.qos.min(message.qos);
                let retain = entry.options.retain_as_published && message.retain;
                targets.push(Target {
                    client_id: entry.client_id.clone(),
                    shard: entry.shard,
                    qos,
                    retain,
                    ids: entry.id.into_iter().collect(),
                    shared,
                });
            };
            st.subscriptions
                .for_each_match(&message.topic, |m| match m {
                    Matched::Single(entry) => {
                        if entry.options.no_local && publisher == Some(&*entry.client_id) {
                            return;
                        }
                        push(entry, false);
                    }
                    Matched::Group { key, members } => {
                        let cursor = match cursors.get_mut(key) {
                            Some(c) => c,
                            None => cursors.entry(ByteStr::from(key)).or_insert(0),
                        };
                        let pick = &members[*cursor % members.len()];
                        *cursor = cursor.wrapping_add(1);
                        push(pick, true);
                    }
                });
        }
        // A client with overlapping subscriptions gets the message once, at the highest QoS,
        // with every subscription identifier (MQTT 5.0 section 3.3.4). A share group's copy is
        // separate: it would have gone to another member just as well (section 4.8.2).
        if targets.len() > 1 {
            targets.sort_by(|a, b| (&a.client_id, a.shared).cmp(&(&b.client_id, b.shared)));
            targets.dedup_by(|next, kept| {
                if next.client_id != kept.client_id || next.shared || kept.shared {
                    return false;
                }
                kept.qos = kept.qos.max(next.qos);
                kept.retain |= next.retain;
                kept.ids.append(&mut next.ids);
                true
            });
        }
        let outcome = RouteOutcome {
            matched: targets.len(),
            remote: targets.iter().any(|t| t.shard != self.id),
        };
        let now = Instant::now();
        for t in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.ids,
                seq: 0,
            };
            match self.peers.get(t.shard).and_then(|p| p.as_ref()) {
                Some(peer) => {
                    if let Err(client_id) = peer.push_delivery(t.client_id, delivery) {
                        self.dropped(DropReason::MeshBacklog.label(), &client_id);
                    }
                }
                None => self.deliver_local(&t.client_id, delivery, now),
            }
        }
        outcome
    }

    /// Ends a session held here: drops its subscriptions everywhere and tells the owner.
    pub fn end_session(self: &Rc<Self>, client_id: &ByteStr) {
        let slot = self.state.borrow_mut().sessions.remove(client_id);
        if let Some(slot) = slot {
            let owner = self.owner_of(client_id);
            self.send(
                owner,
                ShardMsg::Release {
                    client_id: client_id.clone(),
                    shard: self.id,
                    claim: slot.claim,
                },
            );
            self.track_queued(slot.state.queued_bytes, false);
            if slot.persisted {
                self.log(|| Record::SessionRemove {
                    client_id: client_id.clone(),
                });
            }
            let filters: Vec<ByteStr> = slot.state.subscriptions.keys().cloned().collect();
            if !filters.is_empty() {
                self.broadcast(|| ShardMsg::SubRemove {
                    client_id: client_id.clone(),
                    filters: filters.clone(),
                });
            }
        }
    }
}
