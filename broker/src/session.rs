//! Session state: what the broker remembers of a client between connections.
//!
//! A `SessionState` is plain data (`Send`), so a takeover can move it from the shard that held
//! it to the shard where the client reconnected.

use std::{
    collections::{BTreeMap, VecDeque},
    time::{Duration, Instant},
};

use protocol::{ByteStr, QoS, SubscriptionOptions, Will};

use crate::message::Delivery;

/// A subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSubscription {
    /// The options it was made with.
    pub options: SubscriptionOptions,
    /// Its 5.0 subscription identifier.
    pub id: Option<u32>,
}

/// A QoS 1/2 message sent to the client and not yet completed.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The packet identifier it was sent with.
    pub pkid: u16,
    /// What was sent.
    pub delivery: Delivery,
    /// QoS 2 only: PUBREC received and PUBREL sent; awaiting PUBCOMP.
    pub released: bool,
}

/// Why a message was not queued for a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session's queue holds `max_queued_messages` already.
    QueueFull,
    /// The session's queue holds `max_queued_bytes` already.
    QueueBytes,
    /// The shard's session queues hold `max_shard_queued_bytes` already.
    ShardQueueBytes,
    /// QoS 0 to a client whose socket cannot keep up.
    SlowConsumer,
    /// QoS 0 to an offline client.
    Offline,
    /// The message expired before it could be sent.
    Expired,
    /// The packet would exceed the client's Maximum Packet Size.
    TooLargeForClient,
    /// The ACL does not let the client read (when delivered) or write (when published) it.
    NotAuthorized,
    /// The session it was routed to ended before it arrived (a clean session whose client
    /// had just disconnected, reached across shards).
    NoSession,
    /// QoS 0 to a session on another shard while this shard's backlog towards it is full.
    MeshBacklog,
    /// Owed by a session handed over after its new connection had stopped waiting for it
    /// (the claim timed out, so the client was told it has a fresh session).
    ClaimTimeout,
}

impl DropReason {
    /// A short label, for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::QueueBytes => "queue_bytes",
            DropReason::ShardQueueBytes => "shard_queue_bytes",
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::Offline => "offline_qos0",
            DropReason::Expired => "expired",
            DropReason::TooLargeForClient => "too_large_for_client",
            DropReason::NotAuthorized => "not_authorized",
            DropReason::NoSession => "no_session",
            DropReason::MeshBacklog => "mesh_backlog",
            DropReason::ClaimTimeout => "claim_timeout",
        }
    }
}

/// A set of packet identifiers, sorted in a `Vec`: 24 bytes and no allocation while empty
/// (a `HashSet` takes 48 in every session, and few clients ever send QoS 2), and a lookup is
/// a binary search over at most the in-flight limit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PacketIds(Vec<u16>);

impl PacketIds {
    /// Adds `pkid`; false if it was there.
    pub fn insert(&mut self, pkid: u16) -> bool {
        match self.0.binary_search(&pkid) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, pkid);
                true
            }
        }
    }

    /// Removes `pkid`; false if it was not there.
    pub fn remove(&mut self, pkid: u16) -> bool {
        match self.0.binary_search(&pkid) {
            Ok(at) => {
                self.0.remove(at);
                if self.0.is_empty() {
                    self.0 = Vec::new();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Is `pkid` in the set?
    pub fn contains(&self, pkid: u16) -> bool {
        self.0.binary_search(&pkid).is_ok()
    }

    /// How many are in the set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the set is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The identifiers, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<u16> for PacketIds {
    fn from_iter<I: IntoIterator<Item = u16>>(iter: I) -> Self {
        let mut ids: Vec<u16> = iter.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        PacketIds(ids)
    }
}

/// The state of one client's session.
#[derive(Debug, Clone)]
pub struct SessionState {
    /// The client identifier.
    pub client_id: ByteStr,
    /// Subscriptions by filter (as sent, `$share/...` included).
    /// A `BTreeMap`: 24 bytes and no allocation while empty, where a `HashMap` takes 48 (its
    /// hasher's keys among them) in every session.
    pub subscriptions: BTreeMap<ByteStr, SessionSubscription>,
    /// Outbound QoS 1/2 messages awaiting acknowledgement, in the order they were sent.
    pub inflight: VecDeque<Inflight>,
    /// Outbound QoS 1/2 messages waiting for room in the in-flight window (or for the client
    /// to come back).
    pub queue: VecDeque<Delivery>,
    /// Bytes held by `queue`.
    pub queued_bytes: usize,
    /// Inbound QoS 2 packet identifiers received (PUBREC sent) and not yet released.
    pub inbound_qos2: PacketIds,
    next_pkid: u16,
    /// Session Expiry Interval in seconds; `u32::MAX` never expires, 0 ends with the connection.
    pub expiry_interval: u32,
    /// When the last connection closed; `None` while connected.
    pub disconnected_at: Option<Instant>,
    /// The number the next queued delivery gets (the state log names deliveries by it).
    pub next_seq: u64,
    /// Messages dropped for this session (queue bounds, policy), for the per-client figures.
    pub dropped: u64,
    /// Room the retained messages sent on a subscribe take in `queue` beyond the live limit,
    /// never more than the queue holds: a dashboard subscribing to every vehicle's status gets
    /// more retained messages than the limit allows queued, and a live status arriving while
    /// they drain must not be dropped for lack of room they took (it would leave the stale
    /// retained one as the latest the dashboard saw).
    burst_allowance: usize,
    /// Orders the copies of this session that takeovers leave in different shards' logs: a
    /// crash between the new shard's record and the old shard's removal leaves both, and
    /// recovery keeps the one with the higher stamp (see [`SessionState::restamp`]). 0 for a
    /// session never attached by this build.
    pub stamp: u64,
}

impl SessionState {
    /// A new, empty session.
    pub fn new(client_id: ByteStr, expiry_interval: u32) -> SessionState {
        SessionState {
            client_id,
            subscriptions: BTreeMap::new(),
            inflight: VecDeque::new(),
            queue: VecDeque::new(),
            queued_bytes: 0,
            inbound_qos2: PacketIds::default(),
            next_pkid: 1,
            expiry_interval,
            disconnected_at: None,
            next_seq: 1,
            dropped: 0,
            burst_allowance: 0,
            stamp: 0,
        }
    }

    /// Stamps the session as attached now, after a copy stamped `after` (the one it was taken
    /// from; 0 if none): the wall-clock milliseconds, raised past `after` so that each takeover
    /// orders after the one before even within a millisecond or if the clock steps back.
    pub fn restamp(&mut self, after: u64) {
        self.stamp = crate::clock::unix_ms_now().max(after.saturating_add(1));
    }

    /// True when it has outlived its expiry interval since the last disconnect.
    pub fn is_expired(&self, now: Instant) -> bool {
        match self.disconnected_at {
            Some(at) if self.expiry_interval != u32::MAX => {
                now.saturating_duration_since(at)
                    >= Duration::from_secs(u64::from(self.expiry_interval))
            }
            _ => false,
        }
    }

    /// Appends a QoS 1/2 delivery to the queue, within the limits, and numbers it; returns
    /// its number.
    ///
    /// # Errors
    /// The reason it was refused; the caller counts the drop.
    pub fn enqueue(
        &mut self,
        mut delivery: Delivery,
        max_messages: usize,
        max_bytes: usize,
    ) -> Result<u64, DropReason> {
        if self.queue.len() >= max_messages {
            return Err(DropReason::QueueFull);
        }
        let weight = delivery.message.weight();
        if self.queued_bytes + weight > max_bytes {
            return Err(DropReason::QueueBytes);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        delivery.seq = seq;
        self.queued_bytes += weight;
        self.queue.push_back(delivery);
        Ok(seq)
    }

    /// The most messages live traffic may find queued and still be queued: `max` plus what a
    /// retained burst still takes.
    pub fn live_limit(&self, max: usize) -> usize {
        max.saturating_add(self.burst_allowance)
    }

    /// Notes that a retained message sent on subscribe was queued.
    pub fn queued_retained_burst(&mut self) {
        self.burst_allowance += 1;
    }

    /// Shrinks the burst allowance with the queue, so it ends when the burst has drained.
    fn after_dequeue(&mut self) {
        self.burst_allowance = self.burst_allowance.min(self.queue.len());
    }

    /// Drops the oldest queued delivery (the `drop_oldest` policy); returns its number and
    /// weight.
    pub fn drop_oldest(&mut self) -> Option<(u64, usize)> {
        let d = self.queue.pop_front()?;
        self.after_dequeue();
        let weight = d.message.weight();
        self.queued_bytes = self.queued_bytes.saturating_sub(weight);
        Some((d.seq, weight))
    }

    /// Moves the next queued message into the in-flight window if there is room, skipping
    /// expired ones (returned in `expired` so they can be counted).
    pub fn next_to_send(
        &mut self,
        window: usize,
        now: Instant,
        expired: &mut usize,
    ) -> Option<Inflight> {
        if self.inflight.len() >= window {
            return None;
        }
        while let Some(delivery) = self.queue.pop_front() {
            self.after_dequeue();
            self.queued_bytes = self.queued_bytes.saturating_sub(delivery.message.weight());
            if delivery.message.is_expired(now) {
                *expired += 1;
                continue;
            }
            let pkid = self.alloc_pkid()?;
            let entry = Inflight {
                pkid,
                delivery,
                released: false,
            };
            self.inflight.push_back(entry.clone());
            return Some(entry);
        }
        None
    }

    /// A free packet identifier for an outbound message.
    fn alloc_pkid(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let pkid = self.next_pkid;
            self.next_pkid = if pkid == u16::MAX { 1 } else { pkid + 1 };
            if !self.inflight.iter().any(|f| f.pkid == pkid) {
                return Some(pkid);
            }
        }
        None
    }

    /// Handles PUBACK (QoS 1) or PUBCOMP (QoS 2): the message is done. Its number, or `None`
    /// if unknown.
    pub fn complete(&mut self, pkid: u16, qos: QoS) -> Option<u64> {
        let found = self.inflight.iter().position(|f| {
            f.pkid == pkid && f.delivery.qos == qos && (qos == QoS::AtLeastOnce || f.released)
        })?;
        self.inflight.remove(found).map(|f| f.delivery.seq)
    }

    /// Drops an in-flight message whatever its state (a 5.0 PUBREC with an error code ends it,
    /// and a message too large for the client is treated as delivered).
    /// Its number, or `None` if unknown.
    pub fn forget(&mut self, pkid: u16) -> Option<u64> {
        let i = self.inflight.iter().position(|f| f.pkid == pkid)?;
        self.inflight.remove(i).map(|f| f.delivery.seq)
    }

    /// Handles PUBREC: the QoS 2 message is received; a PUBREL follows. Its number, or
    /// `None` if unknown.
    pub fn received(&mut self, pkid: u16) -> Option<u64> {
        let f = self
            .inflight
            .iter_mut()
            .find(|f| f.pkid == pkid && f.delivery.qos == QoS::ExactlyOnce)?;
        f.released = true;
        Some(f.delivery.seq)
    }

    /// True when its state outlives a connection, and so is persisted.
    pub fn is_persistent(&self) -> bool {
        self.expiry_interval > 0
    }
}

/// The connection id of a Will recovered from the state log (live connections count from 1).
pub const RECOVERED: u64 = 0;

/// A Will waiting for its delay.
#[derive(Debug, Clone)]
pub struct PendingWill {
    /// The Will.
    pub will: Will,
    /// When it is due, wall-clock milliseconds since the Unix epoch, so that it means the
    /// same after a restart.
    pub due_ms: u64,
    /// The connection that left it ([`RECOVERED`] after a restart): the timer of a Will that
    /// a later one replaced must not publish the later one early.
    pub conn_id: u64,
}

impl PendingWill {
    /// A Will read back from the state log.
    pub fn recovered(will: Will, due_ms: u64) -> PendingWill {
        PendingWill {
            will,
            due_ms,
            conn_id: RECOVERED,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    #[test]
    fn packet_ids_are_a_sorted_set() {
        let mut ids: PacketIds = [9, 3, 9, 1].into_iter().collect();
        assert_eq!(ids.iter().collect::<Vec<_>>(), [1, 3, 9]);
        assert!(ids.insert(5));
        assert!(!ids.insert(5), "a second insert reports it was there");
        assert!(ids.contains(5) && !ids.contains(4));
        assert!(ids.remove(3));
        assert!(!ids.remove(3), "a second remove reports it was gone");
        assert_eq!(ids.iter().collect::<Vec<_>>(), [1, 5, 9]);
        assert_eq!(ids.len(), 3);
        for pkid in [1, 5, 9] {
            ids.remove(pkid);
        }
        assert!(ids.is_empty());
    }

    /// A delivery of a one-byte message on topic `t`.
    pub(crate) fn delivery(qos: QoS) -> Delivery {
        Delivery {
            message: Message {
                topic: "t".into(),
                payload: Bytes::from_static(b"p"),
                qos,
                retain: false,
                properties: None,
                expires_at: None,
                publisher: None,
            },
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            seq: 0,
        }
    }

    #[test]
    fn window_limits_inflight_and_acks_free_it() {
        let mut s = SessionState::new("c".into(), 0);
        for _ in 0..3 {
            s.enqueue(delivery(QoS::AtLeastOnce), 10, 1 << 20).unwrap();
        }
        let now = Instant::now();
        let mut expired = 0;
        let a = s.next_to_send(2, now, &mut expired).unwrap();
        let b = s.next_to_send(2, now, &mut expired).unwrap();
        assert!(s.next_to_send(2, now, &mut expired).is_none());
        assert_ne!(a.pkid, b.pkid);
        assert!(s.complete(a.pkid, QoS::AtLeastOnce).is_some());
        assert!(s.complete(a.pkid, QoS::AtLeastOnce).is_none());
        assert!(s.next_to_send(2, now, &mut expired).is_some());
    }

    #[test]
    fn qos2_needs_pubrec_before_pubcomp() {
        let mut s = SessionState::new("c".into(), 0);
        s.enqueue(delivery(QoS::ExactlyOnce), 10, 1 << 20).unwrap();
        let mut expired = 0;
        let f = s.next_to_send(5, Instant::now(), &mut expired).unwrap();
        assert!(s.complete(f.pkid, QoS::ExactlyOnce).is_none());
        assert!(s.received(f.pkid).is_some());
        assert_eq!(s.complete(f.pkid, QoS::ExactlyOnce), Some(f.delivery.seq));
    }

    /// Regression (found by the soak): a subscriber to every vehicle's retained status got
    /// more retained messages than the queue limit, and the live status that replaced one of
    /// them was dropped as `queue_full`.
    #[test]
    fn a_retained_burst_leaves_live_messages_their_own_room_until_it_drains() {
        let (max, window) = (3, 1);
        let mut s = SessionState::new("c".into(), 0);
        for _ in 0..5 {
            s.enqueue(delivery(QoS::AtLeastOnce), usize::MAX, 1 << 20)
                .unwrap();
            s.queued_retained_burst();
        }
        assert_eq!(s.live_limit(max), 8);
        for _ in 0..3 {
            let limit = s.live_limit(max);
            s.enqueue(delivery(QoS::AtLeastOnce), limit, 1 << 20)
                .unwrap();
        }
        let limit = s.live_limit(max);
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce), limit, 1 << 20),
            Err(DropReason::QueueFull),
            "live traffic still has a bound"
        );
        // As the queue drains the allowance follows it down, and ends with the burst.
        let now = Instant::now();
        let mut expired = 0;
        while let Some(f) = s.next_to_send(window, now, &mut expired) {
            s.complete(f.pkid, QoS::AtLeastOnce);
        }
        assert!(s.queue.is_empty());
        assert_eq!(s.live_limit(max), max);
    }

    #[test]
    fn queue_bounds_are_enforced() {
        let mut s = SessionState::new("c".into(), 0);
        s.enqueue(delivery(QoS::AtLeastOnce), 1, 1 << 20).unwrap();
        assert_eq!(
            s.enqueue(delivery(QoS::AtLeastOnce), 1, 1 << 20),
            Err(DropReason::QueueFull)
        );
        let mut t = SessionState::new("c".into(), 0);
        assert_eq!(
            t.enqueue(delivery(QoS::AtLeastOnce), 10, 10),
            Err(DropReason::QueueBytes)
        );
    }

    #[test]
    fn each_takeover_stamps_after_the_copy_it_took_over() {
        let mut s = SessionState::new("c".into(), 10);
        s.restamp(0);
        let first = s.stamp;
        assert!(first > 0);
        // A copy stamped in the future (a clock stepped back since) is still outranked.
        s.restamp(first + 60_000);
        assert_eq!(s.stamp, first + 60_001);
        let before = s.stamp;
        s.restamp(before);
        assert!(s.stamp > before);
    }

    #[test]
    fn expiry_counts_from_disconnect() {
        let mut s = SessionState::new("c".into(), 10);
        let t0 = Instant::now();
        assert!(!s.is_expired(t0 + Duration::from_secs(100)));
        s.disconnected_at = Some(t0);
        assert!(!s.is_expired(t0 + Duration::from_secs(9)));
        assert!(s.is_expired(t0 + Duration::from_secs(10)));
        s.expiry_interval = u32::MAX;
        assert!(!s.is_expired(t0 + Duration::from_secs(1 << 40)));
    }
}
