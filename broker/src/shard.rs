//! One shard: the state a core owns (sessions, its replica of the subscription table and of the
//! retained messages, the client ids it arbitrates) and the routing of messages through it.
//!
//! Everything here runs on one thread; state sits in a `RefCell` that is borrowed briefly and
//! never across an `.await`.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use glommio::channels::local_channel::{self, LocalSender};
use protocol::{encoded_len, ByteStr, Packet, Protocol, QoS, SubscriptionOptions};

use crate::{
    config::Config,
    mesh::{PeerQueue, ShardMsg},
    message::{Delivery, Message},
    metrics::{Metrics, Snapshot},
    outbox::{CloseRequest, Control, Outbox},
    security::Security,
    session::{DropReason, SessionState},
    trie::{Matched, SubEntry, SubscriptionTable},
};

/// How long a shard waits for a peer's answer (barrier, session claim) before giving up; peers
/// answer in microseconds unless they are shutting down.
const PEER_ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// The live connection attached to a session.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Connection id, unique on the shard.
    pub conn_id: u64,
    /// Where its packets go.
    pub outbox: Rc<Outbox>,
    /// How to close it.
    pub control: Rc<Control>,
    /// Its protocol level.
    pub protocol: Protocol,
    /// The client's Receive Maximum: QoS 1/2 messages we may have in flight towards it.
    pub window: usize,
    /// The client's Maximum Packet Size.
    pub max_packet: u32,
}

/// A session held by this shard, with its connection if the client is online.
#[derive(Debug)]
pub struct SessionSlot {
    /// The session.
    pub state: SessionState,
    /// The connection, while online.
    pub link: Option<ConnLink>,
    /// The id of the last connection attached, so a delayed Will can tell a reconnect.
    pub conn_id: u64,
    /// What the client may read: checked for every message delivered to it, retained ones
    /// included.
    pub access: crate::security::ClientAccess,
}

/// A connection as the shard's sweeper sees it.
#[derive(Debug)]
pub struct ConnEntry {
    /// How to close it.
    pub control: Rc<Control>,
    /// When a packet last arrived.
    pub last_seen: Rc<Cell<Instant>>,
    /// Close it when nothing arrived for this long (1.5 x keep alive, or the connect timeout).
    pub timeout: Rc<Cell<Option<Duration>>>,
}

/// The mutable state of a shard.
#[derive(Debug, Default)]
pub struct ShardState {
    /// Sessions held here, online or not.
    pub sessions: HashMap<ByteStr, SessionSlot>,
    /// Replica of the whole subscription table.
    pub subscriptions: SubscriptionTable,
    /// Replica of all retained messages.
    pub retained: HashMap<ByteStr, Message>,
    /// For the client ids this shard arbitrates: which shard holds each one's session.
    pub owners: HashMap<ByteStr, usize>,
    /// Sessions that left this shard recently, and where to (late deliveries follow them).
    pub moved_to: HashMap<ByteStr, usize>,
    /// Client ids this shard is claiming right now.
    pub claiming: HashMap<ByteStr, u32>,
    /// Evictions that arrived while our own claim was still in flight.
    pub evict_after_claim: HashMap<ByteStr, (usize, u64)>,
    /// Live connections, for the keepalive sweep and shutdown.
    pub connections: HashMap<u64, ConnEntry>,
    /// Round-robin position per share group.
    share_cursor: HashMap<ByteStr, usize>,
}

/// One shard of the broker.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// Number of shards.
    pub nr_shards: usize,
    /// Configuration.
    pub config: Arc<Config>,
    /// State.
    pub state: RefCell<ShardState>,
    /// Counters.
    pub metrics: Metrics,
    peers: Vec<Option<Rc<PeerQueue>>>,
    pending_claims: RefCell<HashMap<u64, LocalSender<Option<Box<SessionState>>>>>,
    pending_barriers: RefCell<HashMap<u64, (usize, LocalSender<()>)>>,
    next_req: Cell<u64>,
    next_conn: Cell<u64>,
    /// Set by [`crate::BrokerHandle::shutdown`], seen by the sweeper.
    pub stop: Arc<AtomicBool>,
    /// Set on this shard once it has begun shutting down.
    pub stopping: Cell<bool>,
    /// Fired when this shard begins shutting down (its accept loop waits on it).
    pub stop_signal: Control,
    /// Every shard's latest [`Snapshot`], for `/metrics` and `$SYS`; this shard writes its own
    /// slot once a second.
    pub published: Arc<Vec<Mutex<Snapshot>>>,
    sweeps: Cell<u64>,
    /// When the broker started.
    pub started: Instant,
    /// The telemetry archive, when enabled.
    pub archive: Option<Arc<ingest::Archive>>,
    /// This shard's write-ahead log of archived messages, once opened.
    pub wal: RefCell<Option<Rc<ingest::ShardWal>>>,
    /// Authentication, ACLs and TLS, shared by every shard.
    pub security: Arc<Security>,
    /// When an authentication failure was last logged, and how many were not since.
    auth_log: Cell<(Option<Instant>, u64)>,
}

/// Where a delivery comes from, which decides the queue limits it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// A message published now: per-client outbox and queue limits apply.
    Live,
    /// Retained messages sent on subscribe: bounded by the retained store.
    RetainedOnSubscribe,
}

/// What routing one message did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteOutcome {
    /// Subscribers (or share groups) it went to.
    pub matched: usize,
}

impl Shard {
    /// A shard with empty state. `peers[i]` is the queue towards shard `i` (`None` for itself).
    pub fn new(
        id: usize,
        nr_shards: usize,
        config: Arc<Config>,
        peers: Vec<Option<Rc<PeerQueue>>>,
        stop: Arc<AtomicBool>,
        published: Arc<Vec<Mutex<Snapshot>>>,
        archive: Option<Arc<ingest::Archive>>,
    ) -> Shard {
        Shard {
            id,
            nr_shards,
            config,
            state: RefCell::new(ShardState::default()),
            metrics: Metrics::default(),
            peers,
            pending_claims: RefCell::new(HashMap::new()),
            pending_barriers: RefCell::new(HashMap::new()),
            next_req: Cell::new(1),
            next_conn: Cell::new(1),
            stop,
            stopping: Cell::new(false),
            stop_signal: Control::default(),
            published,
            sweeps: Cell::new(0),
            started: Instant::now(),
            archive,
            wal: RefCell::new(None),
            security: Arc::new(Security::open()),
            auth_log: Cell::new((None, 0)),
        }
    }

    /// The shard with these security settings (a new shard lets every client do anything).
    pub fn with_security(mut self, security: Arc<Security>) -> Shard {
        self.security = security;
        self
    }

    /// Counts a refused login and logs it at most once a second per shard, so a client
    /// hammering wrong passwords cannot flood the log. Never logs the password.
    pub fn auth_failed(&self, peer: std::net::SocketAddr, client_id: &str, username: Option<&str>) {
        crate::metrics::bump(&self.metrics.auth_failures, 1);
        let now = Instant::now();
        let (last, suppressed) = self.auth_log.get();
        if last.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1)) {
            self.auth_log.set((last, suppressed + 1));
            return;
        }
        self.auth_log.set((Some(now), 0));
        tracing::warn!(shard = self.id, %peer, client_id, username = ?username, not_logged_since = suppressed, "authentication failed");
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        id
    }

    fn next_req(&self) -> u64 {
        let id = self.next_req.get();
        self.next_req.set(id + 1);
        id
    }

    /// The shard that arbitrates `client_id` (a stable hash, the same on every shard).
    pub fn owner_of(&self, client_id: &str) -> usize {
        let mut h = DefaultHasher::new();
        client_id.hash(&mut h);
        (h.finish() % self.nr_shards as u64) as usize
    }

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
        if self.nr_shards <= 1 {
            return;
        }
        let req = self.next_req();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_barriers
            .borrow_mut()
            .insert(req, (self.nr_shards - 1, tx));
        for peer in self.peers.iter().flatten() {
            peer.push(ShardMsg::Barrier { from: self.id, req });
        }
        // Peers answer within microseconds; the bound only matters while shards shut down.
        let answered = glommio::timer::timeout(PEER_ANSWER_LIMIT, async {
            let _ = rx.recv().await;
            Ok(())
        })
        .await;
        if answered.is_err() {
            self.pending_barriers.borrow_mut().remove(&req);
            tracing::warn!(
                shard = self.id,
                "barrier not answered by every shard in time"
            );
        }
    }

    /// Asks the owner of `client_id` for its session, wherever it is; closes the connection
    /// that held it. `None` when there was none.
    pub async fn claim_session(self: &Rc<Self>, client_id: &ByteStr) -> Option<Box<SessionState>> {
        let req = self.next_req();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_claims.borrow_mut().insert(req, tx);
        *self
            .state
            .borrow_mut()
            .claiming
            .entry(client_id.clone())
            .or_default() += 1;
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
        let mut st = self.state.borrow_mut();
        if let Some(n) = st.claiming.get_mut(client_id) {
            *n -= 1;
            if *n == 0 {
                st.claiming.remove(client_id);
            }
        }
        result
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
                    .insert(client_id.clone(), from);
                match prev {
                    None => self.send(from, ShardMsg::ClaimResult { req, session: None }),
                    Some(holder) => self.send(
                        holder,
                        ShardMsg::Evict {
                            client_id,
                            to: from,
                            req,
                        },
                    ),
                }
            }
            ShardMsg::Evict { client_id, to, req } => self.evict(client_id, to, req),
            ShardMsg::ClaimResult { req, session } => {
                if let Some(tx) = self.pending_claims.borrow_mut().remove(&req) {
                    let _ = tx.try_send(session);
                }
            }
            ShardMsg::Release { client_id, shard } => {
                let mut st = self.state.borrow_mut();
                if st.owners.get(&client_id) == Some(&shard) {
                    st.owners.remove(&client_id);
                }
            }
            ShardMsg::Barrier { from, req } => self.send(from, ShardMsg::BarrierAck { req }),
            ShardMsg::BarrierAck { req } => {
                let mut pending = self.pending_barriers.borrow_mut();
                if let Some((left, _)) = pending.get_mut(&req) {
                    *left -= 1;
                    if *left == 0 {
                        if let Some((_, tx)) = pending.remove(&req) {
                            let _ = tx.try_send(());
                        }
                    }
                }
            }
        }
    }

    /// Hands the session of `client_id` to shard `to`, closing its connection here.
    fn evict(self: &Rc<Self>, client_id: ByteStr, to: usize, req: u64) {
        let mut st = self.state.borrow_mut();
        if let Some(slot) = st.sessions.remove(&client_id) {
            if let Some(link) = &slot.link {
                link.control.close(CloseRequest::TakenOver);
            }
            if to != self.id {
                st.moved_to.insert(client_id, to);
            }
            drop(st);
            self.send(
                to,
                ShardMsg::ClaimResult {
                    req,
                    session: Some(Box::new(slot.state)),
                },
            );
        } else if st.claiming.contains_key(&client_id) {
            // Our own claim for this id is still in flight: pass the session on once it lands.
            st.evict_after_claim.insert(client_id, (to, req));
        } else {
            drop(st);
            self.send(to, ShardMsg::ClaimResult { req, session: None });
        }
    }

    /// Stores or deletes a retained message in this shard's replica.
    pub fn apply_retain(&self, topic: ByteStr, message: Option<Message>) {
        let mut st = self.state.borrow_mut();
        match message {
            Some(m) => {
                let limit = self.config.limits.max_retained_messages;
                if st.retained.len() >= limit && !st.retained.contains_key(&topic) {
                    drop(st);
                    self.metrics.drop_message("retained_limit");
                    return;
                }
                st.retained.insert(topic, m);
            }
            None => {
                st.retained.remove(&topic);
            }
        }
    }

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
        };
        let now = Instant::now();
        for t in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.ids,
            };
            match self.peers.get(t.shard).and_then(|p| p.as_ref()) {
                Some(peer) => peer.push_delivery(t.client_id, delivery),
                None => self.deliver_local(&t.client_id, delivery, now),
            }
        }
        outcome
    }

    /// Delivers to a session held on this shard (or follows it if it just moved).
    pub fn deliver_local(self: &Rc<Self>, client_id: &ByteStr, delivery: Delivery, now: Instant) {
        self.deliver_local_as(client_id, delivery, now, Burst::Live);
    }

    /// Delivers to a local session, with the queue limits that fit where the message comes from.
    fn deliver_local_as(
        self: &Rc<Self>,
        client_id: &ByteStr,
        delivery: Delivery,
        now: Instant,
        burst: Burst,
    ) {
        if delivery.message.is_expired(now) {
            self.metrics.drop_message(DropReason::Expired.label());
            return;
        }
        let mut st = self.state.borrow_mut();
        let Some(slot) = st.sessions.get_mut(client_id) else {
            let moved = st.moved_to.get(client_id).copied();
            drop(st);
            match moved {
                Some(to) => self.send(to, ShardMsg::Deliver(vec![(client_id.clone(), delivery)])),
                None => self.metrics.drop_message("no_session"),
            }
            return;
        };
        if !slot
            .access
            .rules(&self.security)
            .can_read(&delivery.message.topic)
        {
            // mosquitto's rule: read access is checked per message at delivery, so a filter
            // allowed as a whole never carries a topic the ACL denies (retained ones too).
            self.metrics.drop_message(DropReason::NotAuthorized.label());
            return;
        }
        let limits = &self.config.limits;
        // The retained messages sent on subscribe are one burst bounded by the retained store
        // itself; the per-client bounds are for live traffic, and would cut a dashboard's
        // initial state short (a subscriber to fleet/+/status wants every vehicle's status).
        let (max_outbox, max_queued, max_bytes) = match burst {
            Burst::Live => (
                limits.max_outbox_packets,
                limits.max_queued_messages,
                limits.max_queued_bytes,
            ),
            Burst::RetainedOnSubscribe => (usize::MAX, usize::MAX, usize::MAX),
        };
        if delivery.qos == QoS::AtMostOnce {
            let Some(link) = &slot.link else {
                self.metrics.drop_message(DropReason::Offline.label());
                return;
            };
            if link.outbox.len() >= max_outbox {
                self.metrics.drop_message(DropReason::SlowConsumer.label());
                return;
            }
            let packet = Packet::Publish(delivery.to_publish(0, false, now));
            if encoded_len(&packet, link.protocol) > link.max_packet as usize {
                self.metrics
                    .drop_message(DropReason::TooLargeForClient.label());
                return;
            }
            self.metrics.count_out(
                QoS::AtMostOnce,
                delivery.message.topic.len() + delivery.message.payload.len(),
            );
            link.outbox.push(packet);
            return;
        }
        if let Err(reason) = slot.state.enqueue(delivery, max_queued, max_bytes) {
            self.metrics.drop_message(reason.label());
            return;
        }
        self.pump(slot, now);
    }

    /// Moves queued QoS 1/2 messages into the in-flight window and out to the connection.
    pub fn pump(&self, slot: &mut SessionSlot, now: Instant) {
        let Some(link) = &slot.link else {
            return;
        };
        let mut expired = 0;
        while let Some(flight) = slot.state.next_to_send(link.window, now, &mut expired) {
            let packet = Packet::Publish(flight.delivery.to_publish(flight.pkid, false, now));
            if encoded_len(&packet, link.protocol) > link.max_packet as usize {
                // The spec's rule: act as if it was delivered, never send it.
                slot.state.forget(flight.pkid);
                self.metrics
                    .drop_message(DropReason::TooLargeForClient.label());
                continue;
            }
            self.metrics.count_out(
                flight.delivery.qos,
                flight.delivery.message.topic.len() + flight.delivery.message.payload.len(),
            );
            link.outbox.push(packet);
        }
        for _ in 0..expired {
            self.metrics.drop_message(DropReason::Expired.label());
        }
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
                message,
            };
            self.deliver_local_as(client_id, delivery, now, Burst::RetainedOnSubscribe);
        }
    }

    /// Ends a session held here: drops its subscriptions everywhere and tells the owner.
    pub fn end_session(self: &Rc<Self>, client_id: &ByteStr) {
        let slot = self.state.borrow_mut().sessions.remove(client_id);
        if let Some(slot) = slot {
            let filters: Vec<ByteStr> = slot.state.subscriptions.keys().cloned().collect();
            if !filters.is_empty() {
                self.broadcast(|| ShardMsg::SubRemove {
                    client_id: client_id.clone(),
                    filters: filters.clone(),
                });
            }
        }
        let owner = self.owner_of(client_id);
        self.send(
            owner,
            ShardMsg::Release {
                client_id: client_id.clone(),
                shard: self.id,
            },
        );
    }

    /// Periodic work: keepalive timeouts, session and retained-message expiry, shutdown.
    pub fn sweep(self: &Rc<Self>) {
        let now = Instant::now();
        let mut expired_sessions = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            for conn in st.connections.values() {
                if let Some(timeout) = conn.timeout.get() {
                    if now.saturating_duration_since(conn.last_seen.get()) > timeout {
                        conn.control.close(CloseRequest::KeepAliveTimeout);
                    }
                }
            }
            for (id, slot) in &st.sessions {
                if slot.link.is_none() && slot.state.is_expired(now) {
                    expired_sessions.push(id.clone());
                }
            }
            st.retained.retain(|_, m| !m.is_expired(now));
        }
        for id in expired_sessions {
            tracing::debug!(shard = self.id, client_id = %id, "session expired");
            self.end_session(&id);
        }
        let sweeps = self.sweeps.get() + 1;
        self.sweeps.set(sweeps);
        if sweeps % 4 == 0 {
            self.publish_snapshot();
        }
        if self.stop.load(Ordering::Relaxed) && !self.stopping.get() {
            self.stopping.set(true);
            self.stop_signal.close(CloseRequest::Shutdown);
            let st = self.state.borrow();
            for conn in st.connections.values() {
                conn.control.close(CloseRequest::Shutdown);
            }
        }
    }

    /// This shard's figures now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.metrics.counters();
        let st = self.state.borrow();
        snap.sessions = st.sessions.len() as u64;
        snap.retained = st.retained.len() as u64;
        snap.subscriptions = st.subscriptions.len() as u64;
        for slot in st.sessions.values() {
            snap.queued_messages += slot.state.queue.len() as u64;
            snap.inflight_messages += slot.state.inflight.len() as u64;
            if let Some(link) = &slot.link {
                snap.outbox_packets += link.outbox.len() as u64;
            }
        }
        snap.mesh_queue = self
            .peers
            .iter()
            .flatten()
            .map(|p| p.depth.get() as u64)
            .sum();
        snap
    }

    /// Stores this shard's snapshot where other threads can read it.
    pub fn publish_snapshot(&self) {
        let snap = self.snapshot();
        if let Some(Ok(mut slot)) = self.published.get(self.id).map(|m| m.lock()) {
            *slot = snap;
        }
    }

    /// The latest snapshot of every shard (this one's taken fresh).
    pub fn all_snapshots(&self) -> Vec<Snapshot> {
        self.publish_snapshot();
        self.published
            .iter()
            .map(|m| m.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }
}
