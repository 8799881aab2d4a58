//! Application messages as they travel through the broker.

use std::{sync::Arc, time::Instant};

use bytes::Bytes;
use protocol::{ByteStr, Properties, Publish, QoS};

use crate::outgoing::OutPublish;

/// A published message, immutable and cheap to clone: topic and payload are shared `Bytes`, the
/// 5.0 properties that travel with it sit behind an `Arc`. It crosses shards as it is.
#[derive(Debug, Clone)]
pub struct Message {
    /// Topic name.
    pub topic: ByteStr,
    /// Payload.
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    /// The RETAIN flag it was published with.
    pub retain: bool,
    /// Properties forwarded to 5.0 subscribers (payload format, content type, response topic,
    /// correlation data, user properties); `None` when it had none.
    pub properties: Option<Arc<Properties>>,
    /// When the message expires (5.0 Message Expiry Interval), if ever.
    pub expires_at: Option<Instant>,
    /// The publishing client, for the No Local option.
    pub publisher: Option<ByteStr>,
}

impl Message {
    /// A retained message of the broker's own (`$SYS` figures, what the embedding program
    /// hands it): no publisher, no properties, no expiry.
    pub fn own_retained(topic: ByteStr, payload: Bytes, qos: QoS) -> Message {
        Message {
            topic,
            payload,
            qos,
            retain: true,
            properties: None,
            expires_at: None,
            publisher: None,
        }
    }

    /// Builds the message a client's PUBLISH carries (topic alias already resolved).
    pub fn from_publish(publish: Publish, publisher: Option<ByteStr>, now: Instant) -> Message {
        let Publish {
            topic,
            payload,
            qos,
            retain,
            mut properties,
            ..
        } = publish;
        let expires_at = properties
            .message_expiry_interval
            .map(|secs| now + std::time::Duration::from_secs(u64::from(secs)));
        // Only what the spec says the server forwards unchanged travels on.
        properties.message_expiry_interval = None;
        properties.topic_alias = None;
        properties.subscription_identifiers.clear();
        let properties = (!properties.is_empty()).then(|| Arc::new(properties));
        Message {
            topic,
            payload,
            qos,
            retain,
            properties,
            expires_at,
            publisher,
        }
    }

    /// True when its expiry has passed.
    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// Bytes this message holds, as counted against queue limits.
    pub fn weight(&self) -> usize {
        self.topic.len() + self.payload.len() + 64
    }
}

/// A message on its way to one subscriber: the QoS and RETAIN flag it is delivered with, and
/// the subscription identifiers of the subscriptions it matched.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Delivery QoS: the lower of the publish QoS and the subscription's.
    pub qos: QoS,
    /// RETAIN flag as delivered (set for retained messages sent on subscribe, or kept with
    /// Retain As Published).
    pub retain: bool,
    /// 5.0 subscription identifiers of every matching subscription.
    pub subscription_ids: Vec<u32>,
    /// Its number in the receiving session, set when it is queued there; the state log refers
    /// to it by this number (0 until queued).
    pub seq: u64,
}

impl Delivery {
    /// The PUBLISH packet for this delivery; `pkid` is 0 for QoS 0. The topic alias, if any, is
    /// applied later by the writer. Properties are boxed only when there are some to send.
    pub fn to_publish(&self, pkid: u16, dup: bool, now: Instant) -> OutPublish {
        let has_properties = self.message.properties.is_some()
            || self.message.expires_at.is_some()
            || !self.subscription_ids.is_empty();
        OutPublish {
            dup,
            qos: self.qos,
            retain: self.retain,
            pkid,
            topic: self.message.topic.clone(),
            payload: self.message.payload.clone(),
            properties: has_properties.then(|| Box::new(self.properties_at(now))),
        }
    }

    /// The 5.0 properties it is delivered with at `now`: the message's, the expiry interval
    /// left, and the identifiers of the subscriptions it matched.
    fn properties_at(&self, now: Instant) -> Properties {
        let mut properties = match &self.message.properties {
            Some(p) => Properties::clone(p),
            None => Properties::default(),
        };
        if let Some(at) = self.message.expires_at {
            let remaining = at.saturating_duration_since(now).as_secs();
            properties.message_expiry_interval =
                Some(u32::try_from(remaining.max(1)).unwrap_or(u32::MAX));
        }
        properties
            .subscription_identifiers
            .extend_from_slice(&self.subscription_ids);
        properties
    }
}
