//! Starting and stopping the broker: listeners, one executor per shard, the channel mesh.

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use glommio::{
    channels::channel_mesh::{Full, MeshBuilder},
    net::TcpListener,
    LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles,
};
use socket2::Socket;

use crate::{
    board::SnapshotBoard,
    config::Config,
    connection,
    error::BrokerError,
    http,
    listeners::{bind_all, take_listener},
    mesh::{PeerQueue, ShardMsg},
    metrics::{bump, Snapshot},
    net::{PlainStream, Poller, SocketIo},
    security::{identity, Security},
    shard::Shard,
    sink::{Extensions, Sink},
};

/// Submission queue depth of each shard's io_uring rings (glommio's default is 128).
///
/// Every connection keeps a poll request in its shard's main ring, and the kernel finds a
/// request to cancel by walking one bucket of a hash table sized from the ring: 8 buckets at
/// glommio's default depth, 256 (the kernel's maximum) from a depth of 4096 on. glommio cancels
/// its preemption timer and ring link each time a shard wakes, so with thousands of mostly idle
/// connections the small table made every wake-up walk hundreds of entries.
const SHARD_RING_DEPTH: usize = 4096;

/// A running broker.
pub struct BrokerHandle {
    sink: Option<Arc<dyn Sink>>,
    /// The state directory's lock, released when the handle goes (after the shards stopped).
    _state_lock: Option<std::fs::File>,
    mqtt_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    mqtts_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
    security: Arc<Security>,
    board: Arc<SnapshotBoard>,
    stop: Arc<AtomicBool>,
    accepted: Arc<Vec<AtomicU64>>,
    threads: Option<PoolThreadHandles<()>>,
}

impl BrokerHandle {
    /// The address the MQTT listener is bound to (useful with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// The address of the HTTP listener (dashboard, `/mqtt` WebSocket, `/metrics`), if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The address of the MQTT-over-TLS listener, if enabled.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.mqtts_addr
    }

    /// The address of the HTTPS listener (secure WebSocket at `/mqtt`), if enabled.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.https_addr
    }

    /// Re-reads the password file, the ACL file and the TLS certificate and key (what SIGHUP
    /// does). Connected clients stay connected; their ACL rules follow the new file from their
    /// next PUBLISH or delivery, new TLS handshakes use the new certificate.
    ///
    /// # Errors
    /// A file that cannot be used; the previous settings then stay in force.
    pub fn reload(&self) -> Result<(), BrokerError> {
        self.security.reload()?;
        tracing::info!("security settings reloaded");
        Ok(())
    }

    /// The figures every shard last published (about once a second).
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.board.latest()
    }

    /// Figures every shard took after this call (each answers at its next sweep, within
    /// 250 ms; a shard that does not answer within 5 s is given as it last published): what
    /// a test or a supervisor reads after doing something, instead of sleeping past the next
    /// periodic publication.
    pub fn fresh_snapshots(&self) -> Vec<Snapshot> {
        let generation = self.board.request();
        self.board.wait_for(generation, Duration::from_secs(5))
    }

    /// Connections accepted so far by each shard, in shard order. Lets tests prove that a
    /// publisher and a subscriber sit on different shards.
    pub fn accepted_per_shard(&self) -> Vec<u64> {
        self.accepted
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Asks every shard to stop: listeners close, clients are disconnected (5.0 clients with
    /// reason 0x8B, server shutting down). Returns at once; [`BrokerHandle::join`] waits.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Waits for every shard to finish.
    ///
    /// # Errors
    /// The first shard failure.
    pub fn join(mut self) -> Result<(), BrokerError> {
        let Some(threads) = self.threads.take() else {
            return Ok(());
        };
        for result in threads.join_all() {
            result.map_err(|e| BrokerError::Shard(e.to_string()))?;
        }
        // Every shard has closed its writer; the sink finishes what it still buffers.
        if let Some(sink) = &self.sink {
            sink.close().map_err(BrokerError::Sink)?;
        }
        Ok(())
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Some(threads) = self.threads.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = threads.join_all();
            if let Some(sink) = &self.sink {
                if let Err(e) = sink.close() {
                    tracing::error!(error = %e, "closing the sink");
                }
            }
        }
    }
}

/// What every shard thread starts from.
#[derive(Clone)]
struct ShardSetup {
    nr_shards: usize,
    config: Arc<Config>,
    mqtt: Arc<Mutex<Vec<Option<Socket>>>>,
    http: Option<Arc<Mutex<Vec<Option<Socket>>>>>,
    mqtts: Option<Arc<Mutex<Vec<Option<Socket>>>>>,
    https: Option<Arc<Mutex<Vec<Option<Socket>>>>>,
    security: Arc<Security>,
    mesh: MeshBuilder<ShardMsg, Full>,
    stop: Arc<AtomicBool>,
    accepted: Arc<Vec<AtomicU64>>,
    board: Arc<SnapshotBoard>,
    extensions: Extensions,
    /// Each shard reports here once it serves (or why it cannot).
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    /// Recovery phases reached, summed over shards ([`crate::recovery`]).
    recovery_phase: Arc<std::sync::atomic::AtomicUsize>,
    /// Connected sessions holding publishers back, over all shards ([`crate::shard::pressure`]).
    holding_back: Arc<std::sync::atomic::AtomicUsize>,
}

/// Starts a plain broker: [`start_with`] without extensions.
///
/// # Errors
/// As [`start_with`].
pub fn start(config: Config) -> Result<BrokerHandle, BrokerError> {
    start_with(config, Extensions::default())
}

/// Starts the broker with what the embedding program plugs in: binds the listeners (so port 0
/// becomes a real port before anything runs), then one executor per shard, each of which
/// opens its writer into the sink before it takes clients.
///
/// # Errors
/// Invalid configuration, a port that cannot be bound, a state directory or sink that cannot
/// be used, executors that cannot start.
pub fn start_with(mut config: Config, extensions: Extensions) -> Result<BrokerHandle, BrokerError> {
    config.validate().map_err(BrokerError::Config)?;
    if config.persistence.enabled {
        // Shards open files from their own threads; a relative directory must not depend on
        // anything but the directory the broker was started in.
        config.persistence.dir = std::path::absolute(&config.persistence.dir).map_err(|e| {
            BrokerError::Config(format!(
                "persistence.dir {}: {e}",
                config.persistence.dir.display()
            ))
        })?;
    }
    let state_lock = if config.persistence.enabled {
        Some(
            crate::persist::lock_state_dir(&config.persistence)
                .map_err(BrokerError::Persistence)?,
        )
    } else {
        None
    };
    let security = Arc::new(Security::load(&config)?);
    let public = config.public_listeners();
    if config.auth.allow_anonymous && !public.is_empty() {
        tracing::warn!(listeners = ?public, "anonymous clients are allowed on listeners reachable beyond this machine (allow_anonymous)");
    }
    let nr_shards = config.shard_count();
    let (mqtt, mqtt_addr) = bind_all(config.mqtt, nr_shards)?;
    let bind_optional = |addr: Option<SocketAddr>| -> Result<_, BrokerError> {
        Ok(match addr {
            Some(addr) => {
                let (sockets, bound) = bind_all(addr, nr_shards)?;
                (Some(Arc::new(Mutex::new(sockets))), Some(bound))
            }
            None => (None, None),
        })
    };
    let (http, http_addr) = bind_optional(config.http)?;
    let (mqtts, mqtts_addr) = bind_optional(config.mqtts)?;
    let (https, https_addr) = bind_optional(config.https)?;
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..nr_shards).map(|_| AtomicU64::new(0)).collect());
    let board = Arc::new(SnapshotBoard::new(nr_shards));
    let (ready, ready_rx) = std::sync::mpsc::channel();
    let setup = ShardSetup {
        ready,
        nr_shards,
        config: Arc::new(config),
        mqtt: Arc::new(Mutex::new(mqtt)),
        http,
        mqtts,
        https,
        security: security.clone(),
        mesh: MeshBuilder::full(nr_shards, 1024),
        stop: stop.clone(),
        accepted: accepted.clone(),
        board: board.clone(),
        extensions: extensions.clone(),
        recovery_phase: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        holding_back: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
    };
    let threads = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(nr_shards))
        .name("fleetmq-shard")
        .ring_depth(SHARD_RING_DEPTH)
        .on_all_shards(move || async move {
            if let Err(e) = run_shard(setup).await {
                tracing::error!(error = %e, "shard failed");
            }
        })
        .map_err(|e| BrokerError::Executor(e.to_string()))?;
    let mut handle = BrokerHandle {
        sink: extensions.sink,
        _state_lock: state_lock,
        mqtt_addr,
        http_addr,
        mqtts_addr,
        https_addr,
        security,
        board,
        stop,
        accepted,
        threads: Some(threads),
    };
    // Return only once every shard serves, or report why one cannot.
    for _ in 0..nr_shards {
        let report = ready_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| Err("a shard did not start within 60 s".into()));
        if let Err(why) = report {
            handle.shutdown();
            if let Some(threads) = handle.threads.take() {
                let _ = threads.join_all();
            }
            return Err(BrokerError::Shard(why));
        }
    }
    tracing::info!(addr = %mqtt_addr, shards = nr_shards, "MQTT listener ready");
    if let Some(addr) = http_addr {
        tracing::info!(addr = %addr, "HTTP listener ready (dashboard at /, MQTT over WebSocket at /mqtt, /metrics)");
    }
    if let Some(addr) = mqtts_addr {
        tracing::info!(addr = %addr, "MQTT over TLS listener ready");
    }
    if let Some(addr) = https_addr {
        tracing::info!(addr = %addr, "HTTPS listener ready (secure WebSocket at /mqtt)");
    }
    Ok(handle)
}

async fn run_shard(setup: ShardSetup) -> Result<(), BrokerError> {
    let ready = setup.ready.clone();
    let result = serve_shard(setup).await;
    if let Err(e) = &result {
        // Harmless if the shard had already reported ready: start() stopped listening.
        let _ = ready.send(Err(e.to_string()));
    }
    result
}

async fn serve_shard(setup: ShardSetup) -> Result<(), BrokerError> {
    let (senders, receivers) = setup
        .mesh
        .join()
        .await
        .map_err(|e| BrokerError::Shard(format!("cannot join the shard mesh: {e}")))?;
    let id = senders.peer_id();
    let nr_shards = setup.nr_shards;
    let mqtt_listener = take_listener(&setup.mqtt, id)?;
    let take = |table: &Option<Arc<Mutex<Vec<Option<Socket>>>>>| match table {
        Some(table) => take_listener(table, id).map(Some),
        None => Ok(None),
    };
    let http_listener = take(&setup.http)?;
    let mqtts_listener = take(&setup.mqtts)?;
    let https_listener = take(&setup.https)?;

    let peers: Vec<Option<Rc<PeerQueue>>> = (0..nr_shards)
        .map(|i| (i != id).then(|| Rc::new(PeerQueue::default())))
        .collect();
    let shard = Rc::new(
        Shard::new(
            id,
            nr_shards,
            setup.config.clone(),
            peers.clone(),
            setup.stop.clone(),
            setup.board.clone(),
            setup.extensions.clone(),
        )
        .with_security(setup.security.clone())
        .with_holding_back(setup.holding_back.clone()),
    );
    if let Some(sink) = &setup.extensions.sink {
        // A sink replays what it logged before a crash here, before the shard takes clients.
        let writer = sink.open_shard(id).await.map_err(BrokerError::Sink)?;
        *shard.sink.borrow_mut() = Some(writer);
    }

    let senders = Rc::new(senders);
    for (peer, queue) in peers.iter().enumerate() {
        let Some(queue) = queue.clone() else { continue };
        let senders = senders.clone();
        glommio::spawn_local(async move {
            loop {
                let msg = queue.next().await;
                if senders.send_to(peer, msg).await.is_err() {
                    break;
                }
            }
        })
        .detach();
    }
    let mut receivers = receivers;
    for (_, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            while let Some(msg) = stream.recv().await {
                shard.handle(msg);
            }
        })
        .detach();
    }
    if setup.config.persistence.enabled {
        crate::recovery::recover(&shard, &setup.recovery_phase, &setup.stop).await?;
    }
    // Every replica applies them itself, before the shard takes clients.
    for (topic, payload) in &setup.extensions.retained {
        let topic = protocol::ByteStr::from(topic.as_str());
        let message = crate::message::Message::own_retained(
            topic.clone(),
            payload.clone(),
            protocol::QoS::AtLeastOnce,
        );
        shard.apply_retain(topic, Some(message));
    }
    {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                shard.sweep();
            }
        })
        .detach();
    }
    if id == 0 {
        glommio::spawn_local(crate::sys::publish_periodically(shard.clone())).detach();
    }
    let mut side_tasks = Vec::new();
    if let Some(listener) = http_listener {
        let shard = shard.clone();
        side_tasks.push(glommio::spawn_local(async move {
            accept_loop(&shard, &listener, |stream, peer| {
                glommio::spawn_local(http::serve(shard.clone(), stream, peer, None)).detach();
            })
            .await
        }));
    }
    let accepted = setup.accepted.clone();
    let admit = move |shard: &Shard, peer: SocketAddr| {
        if let Some(n) = accepted.get(id) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        let limit = shard.config.limits.max_connections_per_shard;
        if limit > 0 && shard.metrics.connections.get() as usize >= limit {
            tracing::warn!(shard = id, %peer, "connection limit reached; refusing");
            return false;
        }
        true
    };
    for (listener, web) in [(mqtts_listener, false), (https_listener, true)] {
        let Some(listener) = listener else { continue };
        let (shard, admit) = (shard.clone(), admit.clone());
        side_tasks.push(glommio::spawn_local(async move {
            accept_loop(&shard, &listener, |stream, peer| {
                if web || admit(&shard, peer) {
                    glommio::spawn_local(serve_tls(shard.clone(), stream, peer, web)).detach();
                }
            })
            .await
        }));
    }

    let poller = match setup.config.socket_io {
        SocketIo::Epoll => match Poller::new().await {
            Ok(poller) => {
                glommio::spawn_local(poller.clone().run(id)).detach();
                Some(poller)
            }
            Err(e) => {
                tracing::warn!(shard = id, error = %e, "no epoll readiness list; plain connections use glommio's streams");
                None
            }
        },
        SocketIo::Glommio => None,
    };

    tracing::debug!(shard = id, "shard accepting");
    let _ = setup.ready.send(Ok(()));
    accept_loop(&shard, &mqtt_listener, |stream, peer| {
        if !admit(&shard, peer) {
            return;
        }
        let Some(poller) = &poller else {
            glommio::spawn_local(connection::serve(shard.clone(), stream, peer, None)).detach();
            return;
        };
        match PlainStream::adopt(poller, stream) {
            Ok(stream) => {
                glommio::spawn_local(connection::serve(shard.clone(), stream, peer, None)).detach();
            }
            Err(e) => {
                tracing::warn!(shard = id, %peer, error = %e, "cannot register connection; closed")
            }
        }
    })
    .await;
    drop(mqtt_listener);
    for task in side_tasks {
        task.await;
    }
    // Let connections say goodbye (DISCONNECT 0x8B) and flush, within a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shard.state.borrow().connections.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    // Write what the state log still buffers, so a clean stop loses nothing.
    let persist = shard.persist.borrow_mut().take();
    if let Some(persist) = persist {
        persist.close().await;
    }
    let sink = shard.sink.borrow_mut().take();
    if let Some(sink) = sink {
        sink.close().await.map_err(BrokerError::Sink)?;
    }
    tracing::debug!(shard = id, "shard stopped");
    Ok(())
}

/// Runs the TLS handshake on this shard (within the connect timeout), then serves MQTT, or
/// HTTP with secure WebSocket when `web`. A verified client certificate names the user.
async fn serve_tls(shard: Rc<Shard>, stream: glommio::net::TcpStream, peer: SocketAddr, web: bool) {
    let Some(acceptor) = shard.security.tls_acceptor() else {
        return;
    };
    let limit = shard.config.limits.connect_timeout;
    let handshake =
        futures_lite::future::or(async { Some(acceptor.accept(stream).await) }, async {
            glommio::timer::sleep(limit).await;
            None
        })
        .await;
    let tls = match handshake {
        Some(Ok(tls)) => tls,
        Some(Err(e)) => {
            bump(&shard.metrics.tls_failures, 1);
            tracing::debug!(shard = shard.id, %peer, error = %e, "TLS handshake failed");
            return;
        }
        None => {
            bump(&shard.metrics.tls_failures, 1);
            tracing::debug!(shard = shard.id, %peer, "TLS handshake timed out");
            return;
        }
    };
    let cert_user = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| identity::username(cert, shard.security.cert_identity()));
    if web {
        http::serve(shard, tls, peer, cert_user).await;
    } else {
        connection::serve(shard, tls, peer, cert_user).await;
    }
}

/// Accepts connections until the shard stops, handing each to `serve`.
async fn accept_loop(
    shard: &Rc<Shard>,
    listener: &TcpListener,
    mut serve: impl FnMut(glommio::net::TcpStream, SocketAddr),
) {
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stop_signal.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                serve(stream, peer);
            }
            Some(Err(e)) => {
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
