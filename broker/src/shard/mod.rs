//! One shard: the state a core owns (sessions, its replica of the subscription table and of the
//! retained messages, the client ids it arbitrates) and the routing of messages through it.
//!
//! Everything here runs on one thread; state sits in a `RefCell` that is borrowed briefly and
//! never across an `.await`.
//!
//! `impl Shard` is spread over one file per concern:
//! - [`routing`]: a message to its subscribers, here and on other shards; ending a session.
//! - [`retained`]: the replica of retained messages.
//! - [`claims`]: the client-id claim protocol that moves a session to its client's shard.
//! - [`dispatch`]: messages between shards, barriers, the backlog towards peers.
//! - [`sweep`]: keepalive timeouts, expiry, shutdown.
//!
//! - [`sessions`]: the map of the sessions a shard holds.
//! - [`delivery`]: delivery to a shard's sessions, queue bounds and drop policy.
//! - [`pressure`]: a connected subscriber's full queue slows publishers down; a stuck one does
//!   not.
//! - [`handoff`]: moving a persistent session between shards' logs, crash-safe.
//! - [`will`]: Wills, delayed ones kept across a restart.

mod claims;
pub(crate) mod delivery;
mod dispatch;
pub(crate) mod handoff;
pub(crate) mod pressure;
mod retained;
mod routing;
pub(crate) mod sessions;
mod sweep;
pub(crate) mod will;

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicUsize},
        Arc,
    },
    time::{Duration, Instant},
};

use glommio::channels::local_channel::LocalSender;
use protocol::{ByteStr, Protocol};

use self::handoff::{HandedOff, Handoff};
use crate::{
    board::SnapshotBoard,
    config::Config,
    mesh::PeerQueue,
    message::{Delivery, Message},
    metrics::{Metrics, Snapshot},
    outbox::{ConnHandle, Control},
    persist::{record::Record, Persist, Ticket},
    security::Security,
    session::SessionState,
    sink::{Extensions, ShardSink},
    trie::SubscriptionTable,
};

/// How long a shard waits for a peer's answer (barrier, session claim) before giving up; peers
/// answer in microseconds unless they are shutting down.
const PEER_ANSWER_LIMIT: Duration = Duration::from_secs(10);

/// How long a shard remembers where a session it handed over went, to forward the deliveries
/// still routed to it. Far longer than a move takes to reach every replica; without a limit
/// the map would keep an entry for every client id that ever moved away.
pub const MOVED_TO_KEPT: Duration = Duration::from_secs(60);

/// The live connection attached to a session.
#[derive(Debug, Clone)]
pub struct ConnLink {
    /// Connection id, unique on the shard.
    pub conn_id: u64,
    /// Where its packets go, and how to close it.
    pub handle: Rc<ConnHandle>,
    /// Its protocol level.
    pub protocol: Protocol,
    /// The client's Receive Maximum: QoS 1/2 messages we may have in flight towards it.
    pub window: usize,
    /// The client's Maximum Packet Size.
    pub max_packet: u32,
}

/// One of this shard's claims, from its start until its connection installs the session.
#[derive(Debug)]
pub struct ClaimInFlight {
    /// The client id claimed.
    pub client_id: ByteStr,
    /// An eviction that arrived for this claim meanwhile: where the session goes next
    /// (shard, request id there) once it is installed.
    pub evict: Option<(usize, u64)>,
}

/// A session held by this shard, with its connection if the client is online.
#[derive(Debug)]
pub struct SessionSlot {
    /// The session.
    pub state: SessionState,
    /// The connection, while online.
    pub link: Option<ConnLink>,
    /// What the client may read: checked for every message delivered to it, retained ones
    /// included.
    pub access: Rc<crate::security::ClientAccess>,
    /// Its changes go to the state log (a persistent session while persistence is on).
    pub persisted: bool,
    /// The claim of this shard that brought it here (0: recovered at start); the owner shard
    /// knows the session by it.
    pub claim: u64,
}

/// The mutable state of a shard.
#[derive(Debug, Default)]
pub struct ShardState {
    /// Sessions held here, online or not, by the client id each holds. Boxed: a slot is about
    /// 300 bytes, and a table keeps its values inline with up to half of it spare.
    pub sessions: crate::shard::sessions::SessionMap,
    /// Replica of the whole subscription table.
    pub subscriptions: SubscriptionTable,
    /// Replica of all retained messages.
    pub retained: HashMap<ByteStr, Message>,
    /// Bytes `retained` holds (as [`Message::weight`] counts them), bounded by
    /// `max_retained_bytes`.
    pub retained_bytes: usize,
    /// For the client ids this shard arbitrates: which shard holds (or is about to hold) each
    /// one's session, and by which claim of that shard (0: recovered at start). Claims for
    /// one id are ordered here; each one's session comes from the claim before it.
    pub owners: HashMap<ByteStr, (usize, u64)>,
    /// Sessions that left this shard recently, and where to (late deliveries follow them).
    /// Forgotten [`MOVED_TO_KEPT`] after the move: by then every replica routes to the new
    /// shard (its `SubRelocate` went out when the session arrived there).
    pub moved_to: HashMap<ByteStr, (usize, Instant)>,
    /// This shard's claims from their start until their connection has installed the session
    /// (or a fresh one), by request id, with the eviction that arrived for it meanwhile: where
    /// the session goes next (shard, request id there) once it is installed. Keyed by claim,
    /// not client id: several connections with one id may be claiming here at once, and each
    /// eviction is for one of them.
    pub claims: HashMap<u64, ClaimInFlight>,
    /// Deliveries for client ids this shard is claiming, which arrived before the session
    /// did (it is on its way here, and `moved_to` elsewhere may already point here): the
    /// connection that installs the session takes them. Bounded per client by
    /// `max_queued_messages`.
    pub held: HashMap<ByteStr, Vec<Delivery>>,
    /// Live connections, for the keepalive sweep and shutdown.
    pub connections: HashMap<u64, Rc<ConnHandle>>,
    /// Wills waiting for their delay, by client id ([`crate::shard::will`]).
    pub wills: HashMap<ByteStr, crate::session::PendingWill>,
    /// Persistent sessions handed to another shard whose copy there is not durable yet: this
    /// shard's log keeps them until then ([`crate::shard::handoff`]).
    pub handed_off: HashMap<ByteStr, HandedOff>,
    /// During recovery, for the client ids this shard arbitrates: the stamp of the copy
    /// `owners` points to, to keep the newest of duplicates.
    pub adopted_stamps: HashMap<ByteStr, u64>,
    /// Round-robin position per share group.
    share_cursor: HashMap<ByteStr, usize>,
}

/// A barrier in flight: answers still expected, whether one reported a failure, and where to
/// signal completion (true: every peer answered without failure).
type PendingBarrier = (usize, bool, LocalSender<bool>);

/// A session a claim brought, and where it came from.
pub type Claimed = (Box<SessionState>, Handoff);

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
    pending_claims: RefCell<HashMap<u64, LocalSender<Option<Claimed>>>>,
    /// Barriers in flight: answers still expected, whether one reported a failure, and
    /// where to signal completion.
    pending_barriers: RefCell<HashMap<u64, PendingBarrier>>,
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
    pub board: Arc<SnapshotBoard>,
    sweeps: Cell<u64>,
    /// When the broker started.
    pub started: Instant,
    /// What the embedding program plugged in: a durable sink, static HTTP files.
    pub extensions: Extensions,
    /// The topic filters whose messages go to the sink (none without one).
    pub(crate) sink_topics: Vec<String>,
    /// This shard's writer into the sink, once opened.
    pub(crate) sink: RefCell<Option<Rc<dyn ShardSink>>>,
    /// Authentication, ACLs and TLS, shared by every shard.
    pub security: Arc<Security>,
    /// This shard's state log, once recovered and started.
    pub persist: RefCell<Option<Rc<Persist>>>,
    /// When a dropped message was last logged at warn level, and how many were not since.
    pub(crate) drop_log: Cell<(Option<Instant>, u64)>,
    /// Bytes held in the session queues of this shard.
    pub(crate) queued_total: Cell<usize>,
    /// When an authentication failure was last logged, and how many were not since.
    auth_log: Cell<(Option<Instant>, u64)>,
    /// Every connection of this shard reads its socket through this one buffer, then keeps
    /// only the bytes it got: an idle connection holds no read buffer (see
    /// `connection::read_some`). One shard is one thread, and a read borrows it only for the
    /// duration of one non-blocking `poll_read`, so nobody ever waits for it.
    pub(crate) read_scratch: RefCell<Box<[u8]>>,
    /// Connected sessions of this shard whose full queue holds publishers back
    /// ([`crate::shard::pressure`]).
    pub(crate) pressured: RefCell<HashMap<ByteStr, crate::shard::pressure::Pressure>>,
    /// Sessions holding publishers back, over every shard of the broker.
    pub(crate) holding_back: Arc<AtomicUsize>,
    /// Readers of this shard waiting for `holding_back` to fall to zero.
    pub(crate) pressure_waiters: RefCell<Vec<std::task::Waker>>,
    /// A task watches `holding_back` for them.
    pub(crate) pressure_watch: Cell<bool>,
}

/// Size of a shard's read scratch buffer: the most one socket read can bring, which is also
/// how much work one connection gets per turn before the others get theirs.
const READ_SCRATCH: usize = 16 * 1024;

/// What routing one message did.
#[derive(Debug, Default, Clone, Copy)]
pub struct RouteOutcome {
    /// Subscribers (or share groups) it went to.
    pub matched: usize,
    /// Some of them are held by other shards.
    pub remote: bool,
}

impl Shard {
    /// A shard with empty state. `peers[i]` is the queue towards shard `i` (`None` for itself).
    pub fn new(
        id: usize,
        nr_shards: usize,
        config: Arc<Config>,
        peers: Vec<Option<Rc<PeerQueue>>>,
        stop: Arc<AtomicBool>,
        board: Arc<SnapshotBoard>,
        extensions: Extensions,
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
            board,
            sweeps: Cell::new(0),
            started: Instant::now(),
            sink_topics: extensions
                .sink
                .as_ref()
                .map(|sink| sink.topics())
                .unwrap_or_default(),
            extensions,
            sink: RefCell::new(None),
            security: Arc::new(Security::open()),
            persist: RefCell::new(None),
            drop_log: Cell::new((None, 0)),
            queued_total: Cell::new(0),
            auth_log: Cell::new((None, 0)),
            read_scratch: RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice()),
            pressured: RefCell::new(HashMap::new()),
            holding_back: Arc::new(AtomicUsize::new(0)),
            pressure_waiters: RefCell::new(Vec::new()),
            pressure_watch: Cell::new(false),
        }
    }

    /// The shard counting, with every other shard of the broker, the sessions that hold
    /// publishers back (a new shard counts alone).
    pub fn with_holding_back(mut self, holding_back: Arc<AtomicUsize>) -> Shard {
        self.holding_back = holding_back;
        self
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

    /// Appends a record to this shard's state log, when persistence is on; `make` runs only
    /// then.
    pub fn log(&self, make: impl FnOnce() -> Record) -> Option<Ticket> {
        let persist = self.persist.borrow();
        let persist = persist.as_ref()?;
        Some(persist.append(&make()))
    }

    /// True when acknowledgements wait for the state log (`fsync = "always"`).
    pub fn acks_wait_for_log(&self) -> bool {
        self.persist
            .borrow()
            .as_ref()
            .is_some_and(|p| p.acks_wait())
    }

    /// The ticket of the last record this shard appended to its state log, if it keeps one.
    pub fn log_ticket(&self) -> Option<Ticket> {
        self.persist.borrow().as_ref().map(|p| p.last_ticket())
    }

    /// Waits until this shard's state log is durable up to `ticket`.
    ///
    /// # Errors
    /// The log failed.
    pub async fn log_durable_upto(&self, ticket: Ticket) -> Result<(), String> {
        let persist = self.persist.borrow().clone();
        match persist {
            Some(p) => p.durable(ticket).await,
            None => Ok(()),
        }
    }

    /// This shard's figures now.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = self.metrics.counters();
        let st = self.state.borrow();
        snap.sessions = st.sessions.len() as u64;
        snap.retained = st.retained.len() as u64;
        snap.retained_bytes = st.retained_bytes as u64;
        snap.subscriptions = st.subscriptions.len() as u64;
        let mut queued_bytes = 0;
        for slot in st.sessions.values() {
            queued_bytes += slot.state.queued_bytes;
            snap.queued_messages += slot.state.queue.len() as u64;
            snap.inflight_messages += slot.state.inflight.len() as u64;
            if let Some(link) = &slot.link {
                snap.outbox_packets += link.handle.outbox.len() as u64;
            }
        }
        snap.mesh_queue = self.mesh_backlog() as u64;
        // The running total is kept exact where queues change; recounting here (once a
        // second, over sessions walked anyway) keeps any slip from lasting.
        self.queued_total.set(queued_bytes);
        snap.queued_bytes = queued_bytes as u64;
        if let Some(p) = self.persist.borrow().as_ref() {
            let stats = p.stats();
            snap.persist_log_bytes = stats.log_bytes;
            snap.persist_records = stats.records;
            snap.persist_snapshots = stats.snapshots;
            snap.recovery_ms = stats.recovery_ms;
            snap.persist_torn_tails = stats.torn_tails;
        }
        snap
    }

    /// Posts this shard's snapshot where other threads can read it.
    pub fn publish_snapshot(&self) {
        // Read before the snapshot is taken: the snapshot answers every request made so far.
        let generation = self.board.generation();
        let snap = self.snapshot();
        self.board.post(self.id, snap, generation);
    }

    /// The latest snapshot of every shard (this one's taken fresh).
    pub fn all_snapshots(&self) -> Vec<Snapshot> {
        self.publish_snapshot();
        self.board.latest()
    }
}

#[cfg(test)]
mod tests {
    use protocol::QoS;

    use super::*;
    use crate::{mesh::ShardMsg, session::tests::delivery, trie::SubEntry};

    fn test_shard() -> Rc<Shard> {
        Rc::new(Shard::new(
            0,
            1,
            Arc::new(Config::default()),
            vec![None],
            Arc::new(AtomicBool::new(false)),
            Arc::new(SnapshotBoard::new(1)),
            Extensions::default(),
        ))
    }

    /// Where a session went is remembered long enough to forward what was routed to it, and
    /// then forgotten: the map does not keep every client id that ever moved away.
    #[test]
    fn the_sweep_forgets_where_sessions_went_once_no_delivery_can_follow() {
        let shard = test_shard();
        let now = Instant::now();
        let long_ago = now
            .checked_sub(MOVED_TO_KEPT + Duration::from_secs(1))
            .unwrap();
        {
            let mut st = shard.state.borrow_mut();
            st.moved_to.insert("old".into(), (1, long_ago));
            st.moved_to.insert("recent".into(), (1, now));
        }
        shard.sweep();
        let st = shard.state.borrow();
        assert!(!st.moved_to.contains_key("old"));
        assert!(st.moved_to.contains_key("recent"));
    }

    /// A claim that timed out has told its client the session is fresh; a session handed over
    /// after that is not resumed, and what it owed is counted against its client, not lost
    /// without a trace.
    #[test]
    fn a_session_arriving_after_its_claim_gave_up_is_counted_as_dropped() {
        let shard = test_shard();
        let mut late = SessionState::new("late".into(), 600);
        for _ in 0..3 {
            late.enqueue(delivery(QoS::AtLeastOnce), 10, 1 << 20)
                .unwrap();
        }
        shard.handle(ShardMsg::ClaimResult {
            req: 42,
            session: Some(Box::new(late)),
            from: 0,
        });
        assert_eq!(
            shard.metrics.dropped.borrow().get("claim_timeout"),
            Some(&3)
        );
        assert_eq!(
            shard.metrics.dropped_by_client.borrow().get("late"),
            Some(&3)
        );
        assert!(shard.state.borrow().sessions.is_empty());
    }

    /// The filters of a session that arrived after its claim gave up leave the subscription
    /// tables, except those its fresh successor subscribed to itself.
    #[test]
    fn a_late_session_takes_its_subscriptions_along_but_not_its_successors() {
        let shard = test_shard();
        let options = protocol::SubscriptionOptions::default();
        let sub = crate::session::SessionSubscription { options, id: None };
        let entry = |id: &str| SubEntry {
            client_id: id.into(),
            shard: 0,
            options,
            id: None,
        };
        let mut fresh = SessionState::new("v1".into(), 600);
        fresh.subscriptions.insert("cmd/v1".into(), sub);
        shard
            .state
            .borrow_mut()
            .sessions
            .insert(Box::new(SessionSlot {
                state: fresh,
                link: None,
                access: Rc::new(crate::security::ClientAccess::new(
                    &crate::security::Policy::default(),
                    0,
                    crate::security::Identity::Anonymous,
                    "v1".into(),
                )),
                persisted: false,
                claim: 1,
            }));
        let mut late = SessionState::new("v1".into(), 600);
        for filter in ["cmd/v1", "fleet/#"] {
            late.subscriptions.insert(filter.into(), sub);
            shard
                .state
                .borrow_mut()
                .subscriptions
                .insert(&filter.into(), entry("v1"));
        }
        shard
            .state
            .borrow_mut()
            .subscriptions
            .insert(&"fleet/#".into(), entry("dashboard"));

        shard.handle(ShardMsg::ClaimResult {
            req: 7,
            session: Some(Box::new(late)),
            from: 0,
        });

        let subscribers = |topic: &str| {
            let mut ids = Vec::new();
            shard
                .state
                .borrow()
                .subscriptions
                .for_each_match(topic, |m| {
                    if let crate::trie::Matched::Single(entry) = m {
                        ids.push(entry.client_id.to_string());
                    }
                });
            ids.sort();
            ids
        };
        assert_eq!(
            subscribers("cmd/v1"),
            ["v1"],
            "the successor's own filter stays"
        );
        assert_eq!(
            subscribers("fleet/t1"),
            ["dashboard"],
            "the late one's is gone"
        );
    }
}
