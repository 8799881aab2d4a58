//! SUBSCRIBE and UNSUBSCRIBE: validate each filter, replicate to every shard, acknowledge once
//! every shard has applied it, then send retained messages.

use protocol::{
    parse_shared, validate_topic_filter, ByteStr, Packet, Properties, ReasonCode, RetainHandling,
    SubAck, Subscribe, UnsubAck, Unsubscribe,
};

use super::{Conn, Ending};
use crate::{mesh::ShardMsg, persist::Record, session::SessionSubscription};

impl Conn {
    pub(super) async fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Ending> {
        let Some(client_id) = self.client_id().cloned() else {
            return Ok(());
        };
        let v5 = self.protocol.is_v5();
        let id = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut reasons = Vec::with_capacity(subscribe.subscriptions.len());
        let mut retained = Vec::new();
        for sub in subscribe.subscriptions {
            if validate_topic_filter(&sub.filter).is_err() {
                reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                continue;
            }
            let (shared, plain) = match parse_shared(&sub.filter) {
                Ok(Some(s)) => (true, s.filter),
                _ => (false, &*sub.filter),
            };
            if !self.may_subscribe(plain) {
                // 0x87 under 5.0; the codec turns any failure into 0x80 for 3.1.1.
                tracing::debug!(shard = self.shard.id, client_id = %client_id, filter = %sub.filter, "subscription denied by the ACL");
                reasons.push(ReasonCode::NOT_AUTHORIZED);
                continue;
            }
            if shared && sub.options.no_local && v5 {
                return Err(Ending::violation(
                    ReasonCode::PROTOCOL_ERROR,
                    "No Local on a shared subscription",
                ));
            }
            let record = SessionSubscription {
                options: sub.options,
                id,
            };
            let Some(existed) = self.with_slot(|slot| {
                slot.state
                    .subscriptions
                    .insert(sub.filter.clone(), record)
                    .is_some()
            }) else {
                return Ok(());
            };
            let (cid, shard, filter, options) = (
                client_id.clone(),
                self.shard.id,
                sub.filter.clone(),
                sub.options,
            );
            self.shard.broadcast(|| ShardMsg::SubAdd {
                client_id: cid.clone(),
                shard,
                filter: filter.clone(),
                options,
                id,
            });
            reasons.push(ReasonCode::granted(sub.options.qos));
            // Shared subscriptions never get retained messages (MQTT 5.0 section 4.8.2).
            let send = match sub.options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
            if send && !shared {
                retained.push((sub.filter, sub.options));
            }
        }
        self.log_subscriptions();
        // Acknowledge only when every shard routes with the new subscriptions.
        self.shard.barrier().await;
        tracing::debug!(shard = self.shard.id, client_id = %client_id, filters = reasons.len(), "subscriptions applied");
        let refused: Vec<String> = reasons
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_error())
            .map(|(i, r)| format!("filter {}: {}", i + 1, r.name()))
            .collect();
        let properties = if refused.is_empty() {
            Properties::default()
        } else {
            self.reason_properties(|| refused.join("; "))
        };
        self.handle.outbox.push(Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            reasons,
            properties,
        }));
        for (filter, options) in retained {
            self.shard.send_retained(&client_id, &filter, options, id);
        }
        Ok(())
    }

    /// Logs the session's subscriptions and expiry as they are now, when it is persisted.
    pub(super) fn log_subscriptions(&self) {
        let shard = self.shard.clone();
        self.with_slot(|slot| {
            if slot.persisted {
                shard.log(|| Record::Subscriptions {
                    client_id: slot.state.client_id.clone(),
                    expiry: slot.state.expiry_interval,
                    subscriptions: slot
                        .state
                        .subscriptions
                        .iter()
                        .map(|(f, s)| (f.clone(), *s))
                        .collect(),
                });
            }
        });
    }

    fn may_subscribe(&self, filter: &str) -> bool {
        self.access
            .as_ref()
            .is_some_and(|a| a.can_subscribe(&self.shard.security, filter))
    }

    pub(super) async fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Result<(), Ending> {
        let Some(client_id) = self.client_id().cloned() else {
            return Ok(());
        };
        let mut reasons = Vec::with_capacity(unsubscribe.filters.len());
        let mut removed: Vec<ByteStr> = Vec::new();
        for filter in unsubscribe.filters {
            let existed = self
                .with_slot(|slot| slot.state.subscriptions.remove(&filter).is_some())
                .unwrap_or(false);
            if existed {
                reasons.push(ReasonCode::SUCCESS);
                removed.push(filter);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if !removed.is_empty() {
            self.log_subscriptions();
            self.shard.broadcast(|| ShardMsg::SubRemove {
                client_id: client_id.clone(),
                filters: removed.clone(),
            });
            self.shard.barrier().await;
        }
        if !self.protocol.is_v5() {
            reasons.clear();
        }
        self.handle.outbox.push(Packet::UnsubAck(UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
            properties: Properties::default(),
        }));
        Ok(())
    }
}
