//! Delivery to the sessions a shard holds, and the bounds it meets there: the outbox bound for
//! QoS 0, the session and shard queue bounds and their policy for QoS 1/2, the in-flight window.
//! Every message not delivered is counted by reason and client, and logged (rate-limited).

use std::{
    rc::Rc,
    time::{Duration, Instant},
};

use protocol::{ByteStr, QoS, SubscriptionOptions};

use crate::{
    config::QueueFullPolicy,
    mesh::ShardMsg,
    message::{Delivery, Message},
    outbox::CloseRequest,
    outgoing::OutPublish,
    persist::record::Record,
    session::DropReason,
    shard::{SessionSlot, Shard},
};

/// Where a delivery comes from, which decides the queue limits it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Burst {
    /// A message published now: per-client outbox and queue limits apply.
    Live,
    /// Retained messages sent on subscribe: bounded by the retained store.
    RetainedOnSubscribe,
}

/// Deliveries held for one session while it moves between shards (a takeover, which takes
/// milliseconds): a bound of its own, not the session queue's, which is sized for a queue that
/// lasts.
const HELD_MAX: usize = 1000;

impl Shard {
    /// Counts a message not delivered to `client_id`, and logs it at warn level at most once a
    /// second per shard (with how many went unlogged since), so a flood of drops cannot flood
    /// the log but none is silent.
    pub fn dropped(&self, reason: &'static str, client_id: &str) {
        self.metrics.drop_message(reason);
        self.metrics.drop_for_client(client_id);
        let now = Instant::now();
        let (last, suppressed) = self.drop_log.get();
        if last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.drop_log.set((last, suppressed + 1));
            return;
        }
        self.drop_log.set((Some(now), 0));
        tracing::warn!(
            shard = self.id,
            client_id,
            reason,
            not_logged_since = suppressed,
            "message dropped"
        );
    }

    /// Counts a message not delivered to `client_id` for a reason the protocol expects (it
    /// expired, QoS 0 to an offline client, the ACL, a session that just ended): by reason and
    /// client like any drop, but not warned about.
    pub fn discarded(&self, reason: DropReason, client_id: &str) {
        self.metrics.drop_message(reason.label());
        self.metrics.drop_for_client(client_id);
    }

    /// Delivers to a session held on this shard (or follows it if it just moved).
    pub fn deliver_local(self: &Rc<Self>, client_id: &ByteStr, delivery: Delivery, now: Instant) {
        self.deliver_local_as(client_id, delivery, now, Burst::Live);
    }

    /// Delivers to a local session, with the queue limits that fit where the message comes from.
    pub(crate) fn deliver_local_as(
        self: &Rc<Self>,
        client_id: &ByteStr,
        delivery: Delivery,
        now: Instant,
        burst: Burst,
    ) {
        if delivery.message.is_expired(now) {
            self.discarded(DropReason::Expired, client_id);
            return;
        }
        let mut st = self.state.borrow_mut();
        let Some(slot) = st.sessions.get_mut(client_id) else {
            if st.claims.values().any(|c| c.client_id == *client_id) {
                // The session is on its way here: the claim's connection takes this when it
                // installs the session.
                let held = st.held.entry(client_id.clone()).or_default();
                if held.len() < HELD_MAX {
                    held.push(delivery);
                } else {
                    drop(st);
                    self.dropped(DropReason::QueueFull.label(), client_id);
                }
                return;
            }
            let moved = st.moved_to.get(client_id).map(|&(to, _)| to);
            drop(st);
            match moved {
                Some(to) => self.send(to, ShardMsg::Deliver(vec![(client_id.clone(), delivery)])),
                None => self.discarded(DropReason::NoSession, client_id),
            }
            return;
        };
        if !slot
            .access
            .can_read(&self.security, &delivery.message.topic)
        {
            // mosquitto's rule: read access is checked per message at delivery, so a filter
            // allowed as a whole never carries a topic the ACL denies (retained ones too).
            self.discarded(DropReason::NotAuthorized, client_id);
            return;
        }
        let reason_drop = |slot: &mut SessionSlot, reason: DropReason| {
            slot.state.dropped += 1;
            self.dropped(reason.label(), client_id);
        };
        let limits = &self.config.limits;
        // The retained messages sent on subscribe are one burst bounded by the retained store
        // itself; the per-client bounds are for live traffic, and would cut a dashboard's
        // initial state short (a subscriber to fleet/+/status wants every vehicle's status).
        let (max_outbox, max_queued, max_bytes) = match burst {
            Burst::Live => (
                limits.max_outbox_packets,
                slot.state.live_limit(limits.max_queued_messages),
                limits.max_queued_bytes,
            ),
            Burst::RetainedOnSubscribe => (usize::MAX, usize::MAX, usize::MAX),
        };
        if delivery.qos == QoS::AtMostOnce {
            let Some(link) = &slot.link else {
                // Expected for QoS 0 (MQTT 3.1.1 section 4.3.1): counted, not warned about.
                self.discarded(DropReason::Offline, client_id);
                return;
            };
            if link.handle.outbox.len() >= max_outbox {
                reason_drop(slot, DropReason::SlowConsumer);
                return;
            }
            let packet = delivery.to_publish(0, false, now);
            if too_large(&packet, link) {
                reason_drop(slot, DropReason::TooLargeForClient);
                return;
            }
            self.metrics.count_out(
                QoS::AtMostOnce,
                delivery.message.topic.len() + delivery.message.payload.len(),
            );
            link.handle.outbox.push(packet);
            return;
        }
        let before = slot.state.queued_bytes;
        let weight = delivery.message.weight();
        let mut over_shard = burst == Burst::Live
            && self.queued_total.get() + weight > limits.max_shard_queued_bytes;
        let mut result = if over_shard {
            Err(DropReason::ShardQueueBytes)
        } else {
            slot.state.enqueue(delivery.clone(), max_queued, max_bytes)
        };
        if result.is_err() && burst == Burst::Live && !over_shard {
            // A connected subscriber slows the publishers down before it loses anything.
            if let Some(seq) = self.queue_under_pressure(slot, &delivery, now) {
                result = Ok(seq);
            }
        }
        if let Err(reason) = result {
            match limits.queue_full_policy {
                QueueFullPolicy::DropNewest => {}
                QueueFullPolicy::DropOldest => {
                    // Make room from this session's own queue; the shard-wide bound is only
                    // helped by what this session holds.
                    while result.is_err() {
                        let Some((seq, w)) = slot.state.drop_oldest() else {
                            break;
                        };
                        reason_drop(slot, reason);
                        if slot.persisted {
                            self.log(|| Record::Done {
                                client_id: client_id.clone(),
                                seq,
                            });
                        }
                        self.queued_total
                            .set(self.queued_total.get().saturating_sub(w));
                        over_shard = burst == Burst::Live
                            && self.queued_total.get() + weight > limits.max_shard_queued_bytes;
                        result = if over_shard {
                            Err(DropReason::ShardQueueBytes)
                        } else {
                            slot.state.enqueue(delivery.clone(), max_queued, max_bytes)
                        };
                    }
                }
                QueueFullPolicy::Disconnect => {
                    if let Some(link) = &slot.link {
                        link.handle.control.close(CloseRequest::SlowConsumer);
                    }
                }
            }
            if let Err(reason) = result {
                reason_drop(slot, reason);
                return;
            }
        }
        if burst == Burst::RetainedOnSubscribe {
            slot.state.queued_retained_burst();
        }
        let after = slot.state.queued_bytes;
        self.queued_total
            .set((self.queued_total.get() + after).saturating_sub(before));
        if slot.persisted {
            if let Some(queued) = slot.state.queue.back() {
                self.log(|| Record::Enqueue {
                    client_id: client_id.clone(),
                    delivery: queued.clone(),
                });
            }
        }
        self.pump(slot, now);
    }

    /// Adjusts the shard's queued bytes when a session with `bytes` queued arrives (`true`)
    /// or leaves.
    pub fn track_queued(&self, bytes: usize, arrives: bool) {
        let total = self.queued_total.get();
        self.queued_total.set(if arrives {
            total + bytes
        } else {
            total.saturating_sub(bytes)
        });
    }

    /// Moves queued QoS 1/2 messages into the in-flight window and out to the connection.
    pub fn pump(&self, slot: &mut SessionSlot, now: Instant) {
        let Some(link) = &slot.link else {
            return;
        };
        let mut expired = 0;
        let before = slot.state.queued_bytes;
        while let Some(flight) = slot.state.next_to_send(link.window, now, &mut expired) {
            let seq = flight.delivery.seq;
            let packet = flight.delivery.to_publish(flight.pkid, false, now);
            if too_large(&packet, link) {
                // The spec's rule: act as if it was delivered, never send it.
                slot.state.forget(flight.pkid);
                if slot.persisted {
                    self.log(|| Record::Done {
                        client_id: slot.state.client_id.clone(),
                        seq,
                    });
                }
                slot.state.dropped += 1;
                self.dropped(DropReason::TooLargeForClient.label(), &slot.state.client_id);
                continue;
            }
            if slot.persisted {
                self.log(|| Record::Sent {
                    client_id: slot.state.client_id.clone(),
                    seq,
                    pkid: flight.pkid,
                });
            }
            self.metrics.count_out(
                flight.delivery.qos,
                flight.delivery.message.topic.len() + flight.delivery.message.payload.len(),
            );
            link.handle.outbox.push(packet);
        }
        for _ in 0..expired {
            self.discarded(DropReason::Expired, &slot.state.client_id);
        }
        let after = slot.state.queued_bytes;
        self.queued_total
            .set((self.queued_total.get() + after).saturating_sub(before));
        self.ease_pressure(slot);
    }

    /// Delivers the retained messages matching a new subscription to a local session.
    pub fn send_retained(
        self: &Rc<Self>,
        client_id: &ByteStr,
        filter: &str,
        options: SubscriptionOptions,
        id: Option<u32>,
    ) {
        let now = Instant::now();
        let matching: Vec<Message> = {
            let st = self.state.borrow();
            st.retained
                .values()
                .filter(|m| !m.is_expired(now) && protocol::matches(filter, &m.topic))
                .cloned()
                .collect()
        };
        for message in matching {
            let delivery = Delivery {
                qos: options.qos.min(message.qos),
                retain: true,
                subscription_ids: id.into_iter().collect(),
                seq: 0,
                message,
            };
            self.deliver_local_as(client_id, delivery, now, Burst::RetainedOnSubscribe);
        }
    }
}

/// Is `publish` over the client's Maximum Packet Size? Counted only for clients that set one.
fn too_large(publish: &OutPublish, link: &crate::shard::ConnLink) -> bool {
    link.max_packet != u32::MAX && publish.encoded_len(link.protocol) > link.max_packet as usize
}
