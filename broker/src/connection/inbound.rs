//! PUBLISH from the client and the acknowledgements of both directions' QoS 1/2 flows.

use std::time::Instant;

use protocol::{Packet, Properties, PubAck, Publish, QoS, ReasonCode};

use super::{Conn, Ending};
use crate::{
    mesh::ShardMsg,
    message::Message,
    outgoing::{AckKind, Outgoing},
    persist::Record,
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
            self.refuse_publish(&client_id, &publish.topic, pkid, qos);
            return Ok(());
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
                    self.handle.outbox.push(Outgoing::ack(
                        AckKind::PubRec,
                        pkid,
                        ReasonCode::SUCCESS,
                    ));
                    return Ok(());
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
        if message.retain {
            let stored = (!message.payload.is_empty()).then(|| message.clone());
            let topic = message.topic.clone();
            self.shard.broadcast(|| ShardMsg::Retain {
                topic: topic.clone(),
                message: stored.clone(),
            });
            if qos != QoS::AtMostOnce {
                // Acknowledge only once every shard has it: a subscribe anywhere then sees it
                // (and, under fsync = "always", once shard 0 has logged it durably).
                let waits = self.shard.acks_wait_for_log();
                if !self.shard.barrier_with(waits).await && waits {
                    return Err(Ending::ServerFailure(
                        "the retained message could not be made durable".into(),
                    ));
                }
            }
        }
        let outcome = self.shard.route(&message);
        if let (Some((wal, ticket)), false) = (logged, qos == QoS::AtMostOnce) {
            if let Err(e) = wal.durable(ticket).await {
                tracing::error!(shard = self.shard.id, error = %e, "write-ahead log failed; not acknowledging");
                return Err(Ending::ServerFailure(
                    "the archive's write-ahead log failed".into(),
                ));
            }
        }
        if qos == QoS::ExactlyOnce {
            // Before the durability wait: the identifier is part of what must survive.
            self.inbound_qos2(pkid, true);
        }
        if qos != QoS::AtMostOnce {
            self.await_durable(outcome.remote).await?;
        }
        let reason = if self.protocol.is_v5() && outcome.matched == 0 {
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                self.handle
                    .outbox
                    .push(Outgoing::ack(AckKind::PubAck, pkid, reason))
            }
            QoS::ExactlyOnce => {
                self.handle
                    .outbox
                    .push(Outgoing::ack(AckKind::PubRec, pkid, reason))
            }
        }
        Ok(())
    }

    /// A PUBLISH the ACL denies: not routed, retained or archived. 5.0 clients are told with
    /// 0x87 in PUBACK/PUBREC; 3.1.1 has no way to say it, so they get a plain ack (as from
    /// mosquitto) and the message is dropped and counted.
    fn refuse_publish(&mut self, client_id: &str, topic: &str, pkid: u16, qos: QoS) {
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
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.handle.outbox.push(Packet::PubAck(refusal)),
            QoS::ExactlyOnce => {
                if !v5 {
                    // The exchange goes on with PUBREL/PUBCOMP as for any accepted message.
                    self.inbound_qos2(pkid, true);
                }
                self.handle.outbox.push(Packet::PubRec(refusal));
            }
        }
    }

    /// Appends an archived message to this shard's write-ahead log; the ticket tells when it
    /// is durable.
    fn log_for_archive(
        &self,
        message: &Message,
    ) -> Option<(std::rc::Rc<ingest::ShardWal>, ingest::WalTicket)> {
        if !self.shard.config.archive.archives(&message.topic) {
            return None;
        }
        let wal = self.shard.wal.borrow().clone()?;
        let received_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let record = ingest::Record::new(
            message.topic.as_bytes().clone(),
            message.payload.clone(),
            received_at_ms,
        );
        let ticket = wal.append(record);
        Some((wal, ticket))
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

    /// Waits, under `fsync = "always"`, until what this PUBLISH changed in persistent state is
    /// durable: this shard's log, and with `remote` every other shard's.
    async fn await_durable(&self, remote: bool) -> Result<(), Ending> {
        if !self.shard.acks_wait_for_log() {
            return Ok(());
        }
        if remote && !self.shard.barrier_with(true).await {
            tracing::error!(
                shard = self.shard.id,
                "a peer's state log failed or did not answer; not acknowledging"
            );
            return Err(Ending::ServerFailure(
                "the broker's state log failed".into(),
            ));
        }
        self.shard.log_durable().await.map_err(|e| {
            tracing::error!(shard = self.shard.id, error = %e, "state log failed; not acknowledging");
            Ending::ServerFailure("the broker's state log failed".into())
        })
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
