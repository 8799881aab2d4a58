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
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use glommio::channels::local_channel::{self, LocalSender};
use protocol::{ByteStr, Protocol, QoS};

use crate::{
    config::Config,
    handoff::{newest_copy, HandedOff, Handoff},
    mesh::{PeerQueue, ShardMsg},
    message::{Delivery, Message},
    metrics::{Metrics, Snapshot},
    outbox::{CloseRequest, ConnHandle, Control},
    persist::{record::Record, Persist, Ticket},
    security::Security,
    session::{DropReason, SessionState},
    trie::{Matched, SubEntry, SubscriptionTable},
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
    pub sessions: crate::sessions::SessionMap,
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
    /// Wills waiting for their delay, by client id ([`crate::will`]).
    pub wills: HashMap<ByteStr, crate::will::PendingWill>,
    /// Persistent sessions handed to another shard whose copy there is not durable yet: this
    /// shard's log keeps them until then ([`crate::handoff`]).
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
    /// ([`crate::pressure`]).
    pub(crate) pressured: RefCell<HashMap<ByteStr, crate::pressure::Pressure>>,
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

    /// Asks the owner of `client_id` for its session, wherever it is; closes the connection
    /// that held it. `None` when there was none; else the session and where it came from
    /// (to be told, [`Shard::forget_when_durable`], once its copy here is durable).
    ///
    /// Also returns the claim's request id: the caller installs the session (or a fresh one)
    /// and then takes [`ShardState::claims`]' entry for it, which says where the session goes
    /// next if another connection claimed it meanwhile.
    pub async fn claim_session(self: &Rc<Self>, client_id: &ByteStr) -> (u64, Option<Claimed>) {
        let req = self.next_req();
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending_claims.borrow_mut().insert(req, tx);
        self.state.borrow_mut().claims.insert(
            req,
            ClaimInFlight {
                client_id: client_id.clone(),
                evict: None,
            },
        );
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
        (req, result)
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
                crate::will::cancel(self, &client_id);
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

    /// A session handed over after the claim that asked for it gave up waiting (10 s): the
    /// connection has started a fresh session and told its client so, and what this one still
    /// owed is lost. Never silently: counted against the client and warned about. The shard it
    /// came from is told to forget its logged copy, which a restart would otherwise bring back.
    ///
    /// Its subscriptions are the fresh session's no more: every replica drops the filters the
    /// fresh session (held here) has not subscribed to itself. Were they kept, messages they
    /// match would reach it by way of the shard the old session left. Any later subscription of
    /// the fresh session is sent after this removal, on the same ordered mesh, so it is not
    /// undone. Should the fresh session be gone from this shard already, what it subscribed to
    /// is not known here, and nothing is removed (warned).
    fn claim_answered_too_late(self: &Rc<Self>, session: &SessionState, handoff: Handoff) {
        let owed = session.queue.len() + session.inflight.len();
        self.forget_when_durable(session.client_id.clone(), handoff, None);
        let stale: Option<Vec<ByteStr>> = {
            let st = self.state.borrow();
            st.sessions.get(&session.client_id).map(|fresh| {
                session
                    .subscriptions
                    .keys()
                    .filter(|filter| !fresh.state.subscriptions.contains_key(*filter))
                    .cloned()
                    .collect()
            })
        };
        match stale {
            Some(filters) if !filters.is_empty() => {
                let client_id = &session.client_id;
                self.broadcast(|| ShardMsg::SubRemove {
                    client_id: client_id.clone(),
                    filters: filters.clone(),
                });
            }
            Some(_) => {}
            None if !session.subscriptions.is_empty() => tracing::warn!(
                shard = self.id,
                client_id = %session.client_id,
                filters = session.subscriptions.len(),
                "a late session's subscriptions stay: its fresh successor has left this shard"
            ),
            None => {}
        }
        tracing::warn!(
            shard = self.id,
            client_id = %session.client_id,
            from = handoff.from,
            owed,
            "a session arrived after its claim gave up waiting; the messages it owed are dropped"
        );
        for _ in 0..owed {
            self.discarded(DropReason::ClaimTimeout, &session.client_id);
        }
    }

    /// Recovery: shard `shard` holds a copy of `client_id`'s session stamped `stamp`. Of two
    /// copies (a crash fell between a takeover's two log records) the newest is kept, the
    /// other discarded.
    fn adopt(self: &Rc<Self>, client_id: ByteStr, shard: usize, stamp: u64) {
        let discard = {
            let mut st = self.state.borrow_mut();
            let known = st
                .owners
                .get(&client_id)
                .map(|&(s, _)| (s, st.adopted_stamps.get(&client_id).copied().unwrap_or(0)));
            let (kept, discard) = match known {
                Some(first) => newest_copy(first, (shard, stamp)),
                None => ((shard, stamp), None),
            };
            st.owners.insert(client_id.clone(), (kept.0, 0));
            st.adopted_stamps.insert(client_id.clone(), kept.1);
            discard
        };
        if let Some(dropped) = discard {
            tracing::warn!(shard = self.id, client_id = %client_id, dropped, "recovered session found on two shards; keeping the newest");
            self.send(dropped, ShardMsg::Discard { client_id });
        }
    }

    /// Hands the session of `client_id` to shard `to`, closing its connection here. The client
    /// is back, so a Will its last connection here left is cancelled. A persistent session
    /// stays in this shard's log until its copy there is durable ([`crate::handoff`]).
    fn evict(self: &Rc<Self>, client_id: ByteStr, to: usize, req: u64, after: u64) {
        let mut st = self.state.borrow_mut();
        if let Some(next) = st.claims.get_mut(&after) {
            // The claim that gets the session before this one has not installed it yet: it
            // passes the session on when it does.
            if let Some((lost_to, lost_req)) = next.evict.replace((to, req)) {
                // Never expected (the owner sends one eviction per claim); answered rather
                // than left waiting.
                tracing::warn!(shard = self.id, client_id = %client_id, "second eviction for one claim");
                drop(st);
                self.send(
                    lost_to,
                    ShardMsg::ClaimResult {
                        req: lost_req,
                        session: None,
                        from: self.id,
                    },
                );
            }
            return;
        }
        drop(st);
        crate::will::cancel(self, &client_id);
        let mut st = self.state.borrow_mut();
        if let Some(slot) = st.sessions.remove(&client_id) {
            if let Some(link) = &slot.link {
                link.handle.control.close(CloseRequest::TakenOver);
            }
            self.track_queued(slot.state.queued_bytes, false);
            if slot.persisted {
                let username = slot.access.identity().username();
                let image = crate::persist::state::image(&slot.state, username);
                st.handed_off
                    .insert(client_id.clone(), HandedOff { to, req, image });
            }
            if to != self.id {
                st.moved_to.insert(client_id, (to, Instant::now()));
            }
            drop(st);
            self.send(
                to,
                ShardMsg::ClaimResult {
                    req,
                    session: Some(Box::new(slot.state)),
                    from: self.id,
                },
            );
        } else {
            drop(st);
            self.send(
                to,
                ShardMsg::ClaimResult {
                    req,
                    session: None,
                    from: self.id,
                },
            );
        }
    }

    /// Stores or deletes a retained message in this shard's replica. Shard 0 logs it: it
    /// applies every change in the order all replicas do, and one copy on disk is enough.
    pub fn apply_retain(&self, topic: ByteStr, message: Option<Message>) {
        {
            let mut st = self.state.borrow_mut();
            match &message {
                Some(m) => {
                    // Every replica applies the same changes in the same order and so refuses
                    // the same ones: the replicas stay identical.
                    // `$SYS/` topics are the broker's own, a fixed set: clients' retained
                    // messages must not crowd them out, nor they the clients'.
                    let limits = &self.config.limits;
                    if topic.starts_with("$SYS/") {
                        st.retained.insert(topic.clone(), m.clone());
                        return;
                    }
                    let old = st.retained.get(&topic).map_or(0, Message::weight);
                    let refused = if old == 0 && st.retained.len() >= limits.max_retained_messages {
                        Some("retained_limit")
                    } else if st.retained_bytes.saturating_sub(old) + m.weight()
                        > limits.max_retained_bytes
                    {
                        Some("retained_bytes")
                    } else {
                        None
                    };
                    if let Some(reason) = refused {
                        drop(st);
                        self.metrics.drop_message(reason);
                        return;
                    }
                    st.retained_bytes = st.retained_bytes.saturating_sub(old) + m.weight();
                    st.retained.insert(topic.clone(), m.clone());
                }
                None => match st.retained.remove(&topic) {
                    Some(old) if !topic.starts_with("$SYS/") => {
                        st.retained_bytes = st.retained_bytes.saturating_sub(old.weight());
                    }
                    Some(_) => {}
                    None => return,
                },
            }
        }
        // `$SYS` topics are the broker's own figures, republished after a restart anyway.
        if self.id == 0 && !topic.starts_with("$SYS/") {
            self.log(|| Record::Retain { topic, message });
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

    /// Periodic work: keepalive timeouts, session and retained-message expiry, shutdown.
    pub fn sweep(self: &Rc<Self>) {
        let now = Instant::now();
        let mut expired_sessions = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            for conn in st.connections.values() {
                if conn.active.replace(false) {
                    conn.last_seen.set(now);
                }
                if let Some(timeout) = conn.timeout.get() {
                    if now.saturating_duration_since(conn.last_seen.get()) > timeout {
                        conn.control.close(CloseRequest::KeepAliveTimeout);
                    }
                }
            }
            for (id, slot) in st.sessions.iter() {
                if slot.link.is_none() && slot.state.is_expired(now) {
                    expired_sessions.push(id.clone());
                }
            }
            let mut freed = 0;
            st.retained.retain(|_, m| {
                let keep = !m.is_expired(now);
                if !keep {
                    freed += m.weight();
                }
                keep
            });
            st.retained_bytes = st.retained_bytes.saturating_sub(freed);
            st.moved_to
                .retain(|_, &mut (_, since)| now.saturating_duration_since(since) < MOVED_TO_KEPT);
        }
        for id in expired_sessions {
            tracing::debug!(shard = self.id, client_id = %id, "session expired");
            self.end_session(&id);
        }
        self.sweep_pressure(now);
        let sweeps = self.sweeps.get() + 1;
        self.sweeps.set(sweeps);
        if sweeps.is_multiple_of(4) {
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

#[cfg(test)]
mod tests {
    use std::sync::{atomic::AtomicBool, Arc};

    use protocol::QoS;

    use super::*;
    use crate::session::tests::delivery;

    fn test_shard() -> Rc<Shard> {
        Rc::new(Shard::new(
            0,
            1,
            Arc::new(Config::default()),
            vec![None],
            Arc::new(AtomicBool::new(false)),
            Arc::new(vec![]),
            None,
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
