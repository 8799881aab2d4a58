//! PUBLISH from the client and the acknowledgements of both directions' QoS 1/2 flows.

use std::{rc::Rc, time::Instant};

use futures_lite::future::poll_fn;
use protocol::{Packet, Properties, PubAck, Publish, QoS, ReasonCode};

use super::{acks::Durability, Conn, Ending};
use crate::{
    config::FsyncPolicy,
    mesh::ShardMsg,
    message::Message,
    outgoing::{AckKind, Outgoing},
    persist::Record,
    sink::{ShardSink, SinkMessage, Ticket},
};

impl Conn {
    pub(super) async fn on_publish(&mut self, mut publish: Publish) -> Result<(), Ending> {
        let Some(client_id) = self.client_id().cloned() else {
            return Ok(());
        };
        self.shard
            .metrics
            .count_in(publish.qos, publish.payload.len() + publish.topic.len());
        if self.protocol.is_v5() {
            self.resolve_alias(&mut publish)?;
        }
        let (pkid, qos) = (publish.pkid, publish.qos);
        if !self.can_write(&publish.topic) {
            return self
                .refuse_publish(&client_id, &publish.topic, pkid, qos)
                .await;
        }
        if qos == QoS::ExactlyOnce {
            let limit = usize::from(self.shard.config.limits.max_inflight);
            let seen = self.with_slot(|slot| {
                let q2 = &slot.state.inbound_qos2;
                (q2.contains(pkid), q2.len() >= limit)
            });
            match seen {
                // A redelivery of a message we already have: acknowledge, do not route again.
                Some((true, _)) => {
                    return self
                        .acknowledge_now(Outgoing::ack(AckKind::PubRec, pkid, ReasonCode::SUCCESS))
                        .await;
                }
                Some((false, true)) => {
                    return Err(Ending::violation(
                        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                        "more unreleased QoS 2 messages than Receive Maximum",
                    ))
                }
                _ => {}
            }
        }
        let message = Message::from_publish(publish, Some(client_id), Instant::now());
        // Archived telemetry goes to the write-ahead log before anything else; the ack waits
        // for it to be durable, delivery to live subscribers does not.
        let logged = self.log_for_archive(&message);
        let mut retained_everywhere = None;
        if message.retain {
            let stored = (!message.payload.is_empty()).then(|| message.clone());
            let topic = message.topic.clone();
            self.shard.broadcast(|| ShardMsg::Retain {
                topic: topic.clone(),
                message: stored.clone(),
            });
            if qos != QoS::AtMostOnce {
                // Acknowledged only once every shard has it: a subscribe anywhere then sees it
                // (and, under fsync = "always", once shard 0 has logged it durably).
                retained_everywhere = Some(self.shard.acks_wait_for_log());
            }
        }
        let outcome = self.shard.route(&message);
        self.feeds_subscribers = outcome.matched > 0 || outcome.remote;
        if qos == QoS::AtMostOnce {
            return Ok(());
        }
        if qos == QoS::ExactlyOnce {
            // Logged before the ack's wait is taken: the identifier is part of what must
            // survive.
            self.inbound_qos2(pkid, true);
        }
        let reason = if self.protocol.is_v5() && outcome.matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let kind = match qos {
            QoS::ExactlyOnce => AckKind::PubRec,
            _ => AckKind::PubAck,
        };
        let durable = self.durability(logged, retained_everywhere, outcome.remote);
        self.acknowledge(durable, Outgoing::ack(kind, pkid, reason))
            .await
    }

    /// What the acknowledgement of a PUBLISH waits for: under `fsync = "always"` its archive
    /// record durable; with
    /// `retained_everywhere` every shard holding its retained copy (durably when true), and,
    /// under `fsync = "always"`, what it changed in this shard's state log (and, when it was
    /// routed to other shards, in theirs) durable. `None` when it waits for nothing.
    ///
    /// Waits on a log are taken as tickets now and only checked later; waits on other shards
    /// are asked for now, on a task of their own, so that they run while earlier
    /// acknowledgements are still waiting.
    fn durability(
        &self,
        logged: Option<(Rc<dyn ShardSink>, Ticket)>,
        retained_everywhere: Option<bool>,
        remote: bool,
    ) -> Option<Durability> {
        let log_waits = self.shard.acks_wait_for_log();
        let log_ticket = self.shard.log_ticket().filter(|_| log_waits);
        // Under `batch` and `periodic` the archive's acknowledgements do not wait either: the
        // user traded the last milliseconds for speed (the record is logged all the same).
        let logged = logged.filter(|_| self.shard.config.persistence.fsync == FsyncPolicy::Always);
        let peers = log_waits && remote;
        if logged.is_none() && retained_everywhere.is_none() && log_ticket.is_none() && !peers {
            return None;
        }
        let shard = self.shard.clone();
        let asks_peers = peers || retained_everywhere.is_some();
        let wait = async move {
            if let Some(durable) = retained_everywhere {
                if !shard.barrier_with(durable).await && durable {
                    return Err("the retained message could not be made durable".to_string());
                }
            }
            if let Some((sink, ticket)) = logged {
                let durable = poll_fn(|cx| sink.poll_durable(ticket, cx)).await;
                if let Err(e) = durable {
                    tracing::error!(shard = shard.id, error = %e, "the archive's sink failed; not acknowledging");
                    return Err("the archive failed to make the message durable".to_string());
                }
            }
            if peers && !shard.barrier_with(true).await {
                tracing::error!(
                    shard = shard.id,
                    "a peer's state log failed or did not answer; not acknowledging"
                );
                return Err("the broker's state log failed".to_string());
            }
            if let Some(ticket) = log_ticket {
                if let Err(e) = shard.log_durable_upto(ticket).await {
                    tracing::error!(shard = shard.id, error = %e, "state log failed; not acknowledging");
                    return Err("the broker's state log failed".to_string());
                }
            }
            Ok(())
        };
        Some(if asks_peers {
            Box::pin(glommio::spawn_local(wait))
        } else {
            Box::pin(wait)
        })
    }

    /// Sends `ack` once `durable` resolves and every acknowledgement queued before it is
    /// sent, without holding up the reader: it reads on until `pipeline_depth` of them wait.
    async fn acknowledge(
        &mut self,
        durable: Option<Durability>,
        ack: Outgoing,
    ) -> Result<(), Ending> {
        let busy = self.acks.as_ref().is_some_and(|q| q.unsent() > 0);
        let durable = match (busy, durable) {
            (false, None) => {
                self.handle.outbox.push(ack);
                return Ok(());
            }
            (false, Some(mut durable)) => {
                // Often durable already (a log synced since): no queue, no task.
                match futures_lite::future::poll_once(&mut durable).await {
                    Some(Ok(())) => {
                        self.handle.outbox.push(ack);
                        return Ok(());
                    }
                    Some(Err(why)) => return Err(Ending::ServerFailure(why)),
                    None => durable,
                }
            }
            (true, durable) => durable.unwrap_or_else(|| Box::pin(async { Ok(()) })),
        };
        let queue = self.acks.get_or_insert_with(Rc::default).clone();
        queue.push(&self.handle, durable, ack);
        queue.room_below(self.pipeline_depth()).await;
        match queue.failure() {
            Some(why) => Err(Ending::ServerFailure(why)),
            None => Ok(()),
        }
    }

    /// Acknowledgements that may wait for durability at once before the reader stops reading.
    /// A 5.0 client never has more than Receive Maximum (`max_inflight`) unacknowledged; a
    /// 3.1.1 client has a window of its own, and TCP holds what it sends beyond this.
    fn pipeline_depth(&self) -> usize {
        4 * usize::from(self.shard.config.limits.max_inflight).max(1)
    }

    /// Sends an acknowledgement that waits for nothing, behind those that wait (acks of one
    /// kind leave in the order their packets came).
    async fn acknowledge_now(&mut self, ack: impl Into<Outgoing>) -> Result<(), Ending> {
        self.acknowledge(None, ack.into()).await
    }

    /// A PUBLISH the ACL denies: not routed, retained or archived. 5.0 clients are told with
    /// 0x87 in PUBACK/PUBREC; 3.1.1 has no way to say it, so they get a plain ack (as from
    /// mosquitto) and the message is dropped and counted.
    async fn refuse_publish(
        &mut self,
        client_id: &str,
        topic: &str,
        pkid: u16,
        qos: QoS,
    ) -> Result<(), Ending> {
        self.shard
            .metrics
            .drop_message(crate::session::DropReason::NotAuthorized.label());
        tracing::debug!(
            shard = self.shard.id,
            client_id,
            topic,
            "publish denied by the ACL"
        );
        let v5 = self.protocol.is_v5();
        let reason = if v5 {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        let refusal = PubAck {
            pkid,
            reason,
            properties: if v5 {
                self.reason_properties(|| format!("not authorized to publish to {topic}"))
            } else {
                Properties::default()
            },
        };
        match qos {
            QoS::AtMostOnce => Ok(()),
            QoS::AtLeastOnce => self.acknowledge_now(Packet::PubAck(refusal)).await,
            QoS::ExactlyOnce => {
                if !v5 {
                    // The exchange goes on with PUBREL/PUBCOMP as for any accepted message.
                    self.inbound_qos2(pkid, true);
                }
                self.acknowledge_now(Packet::PubRec(refusal)).await
            }
        }
    }

    /// Appends a message of an archived topic to this shard's sink; the ticket tells when it
    /// is durable.
    fn log_for_archive(&self, message: &Message) -> Option<(Rc<dyn ShardSink>, Ticket)> {
        let topics = &self.shard.sink_topics;
        if topics.is_empty() || !topics.iter().any(|f| protocol::matches(f, &message.topic)) {
            return None;
        }
        let sink = self.shard.sink.borrow().clone()?;
        let received_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let ticket = sink.append(SinkMessage {
            topic: message.topic.as_bytes(),
            payload: &message.payload,
            received_at_ms,
            source: self.id,
        });
        Some((sink, ticket))
    }

    /// Applies a 5.0 Topic Alias: records it when a topic comes with it, substitutes it when
    /// the topic is empty.
    fn resolve_alias(&mut self, publish: &mut Publish) -> Result<(), Ending> {
        let Some(alias) = publish.properties.topic_alias.take() else {
            return Ok(());
        };
        if alias == 0 || alias > self.shard.config.limits.topic_alias_maximum {
            return Err(Ending::violation(
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!(
                    "topic alias {alias} outside 1..={}",
                    self.shard.config.limits.topic_alias_maximum
                ),
            ));
        }
        if publish.topic.is_empty() {
            match self.inbound_aliases.as_ref().and_then(|a| a.get(&alias)) {
                Some(topic) => publish.topic = topic.clone(),
                None => {
                    return Err(Ending::violation(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("topic alias {alias} used before it was set"),
                    ))
                }
            }
        } else {
            self.inbound_aliases
                .get_or_insert_with(Box::default)
                .insert(alias, publish.topic.clone());
        }
        Ok(())
    }

    pub(super) fn on_puback(&mut self, a: PubAck) {
        let shard = self.shard.clone();
        self.with_slot(|slot| {
            if let Some(seq) = slot.state.complete(a.pkid, QoS::AtLeastOnce) {
                log_done(&shard, slot, seq);
                shard.pump(slot, Instant::now());
            }
        });
    }

    pub(super) fn on_pubrec(&mut self, a: PubAck) {
        let shard = self.shard.clone();
        let known = self.with_slot(|slot| {
            if a.reason.is_error() {
                // 5.0: a PUBREC with an error ends the exchange; no PUBREL follows.
                if let Some(seq) = slot.state.forget(a.pkid) {
                    log_done(&shard, slot, seq);
                }
                shard.pump(slot, Instant::now());
                return None;
            }
            let seq = slot.state.received(a.pkid);
            if let (Some(seq), true) = (seq, slot.persisted) {
                shard.log(|| Record::Released {
                    client_id: slot.state.client_id.clone(),
                    seq,
                });
            }
            Some(seq.is_some())
        });
        if let Some(Some(known)) = known {
            let reason = if known {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
            };
            self.handle
                .outbox
                .push(Outgoing::ack(AckKind::PubRel, a.pkid, reason));
        }
    }

    pub(super) fn on_pubrel(&mut self, a: PubAck) {
        let known = self.inbound_qos2(a.pkid, false);
        let reason = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.handle
            .outbox
            .push(Outgoing::ack(AckKind::PubComp, a.pkid, reason));
    }

    pub(super) fn on_pubcomp(&mut self, a: PubAck) {
        let shard = self.shard.clone();
        self.with_slot(|slot| {
            if let Some(seq) = slot.state.complete(a.pkid, QoS::ExactlyOnce) {
                log_done(&shard, slot, seq);
                shard.pump(slot, Instant::now());
            }
        });
    }

    /// Records (`add`) or releases an inbound QoS 2 packet identifier, in the session and in
    /// the state log. False when there was nothing to change.
    fn inbound_qos2(&self, pkid: u16, add: bool) -> bool {
        let shard = self.shard.clone();
        self.with_slot(|slot| {
            let changed = if add {
                slot.state.inbound_qos2.insert(pkid)
            } else {
                slot.state.inbound_qos2.remove(pkid)
            };
            if changed && slot.persisted {
                shard.log(|| Record::InboundQos2 {
                    client_id: slot.state.client_id.clone(),
                    pkid,
                    add,
                });
            }
            changed
        })
        .unwrap_or(false)
    }
}

/// Logs that the outbound delivery `seq` of a session is finished.
fn log_done(shard: &crate::shard::Shard, slot: &crate::shard::SessionSlot, seq: u64) {
    if slot.persisted {
        shard.log(|| Record::Done {
            client_id: slot.state.client_id.clone(),
            seq,
        });
    }
}
