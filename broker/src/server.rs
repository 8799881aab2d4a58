//! Starting and stopping the broker: listeners, one executor per shard, the channel mesh.

use std::{
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
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
use socket2::{Domain, Socket, Type};

use crate::{
    config::Config,
    connection,
    mesh::{PeerQueue, ShardMsg},
    shard::Shard,
};

/// Why the broker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The executors could not be started.
    #[error("cannot start shard executors: {0}")]
    Executor(String),
    /// A shard thread panicked or failed.
    #[error("shard failed: {0}")]
    Shard(String),
}

/// A running broker.
pub struct BrokerHandle {
    mqtt_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<Vec<AtomicU64>>,
    threads: Option<PoolThreadHandles<()>>,
}

impl BrokerHandle {
    /// The address the MQTT listener is bound to (useful with port 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
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
        Ok(())
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        if let Some(threads) = self.threads.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = threads.join_all();
        }
    }
}

/// Binds a listening socket with SO_REUSEPORT, so every shard can bind the same port and the
/// kernel spreads incoming connections among them.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Starts the broker: binds the listeners (so port 0 becomes a real port before anything
/// runs), then one executor per shard.
///
/// # Errors
/// Invalid configuration, a port that cannot be bound, executors that cannot start.
pub fn start(config: Config) -> Result<BrokerHandle, BrokerError> {
    config.validate().map_err(BrokerError::Config)?;
    let nr_shards = config.shard_count();
    let bind_err = |addr, source| BrokerError::Bind { addr, source };
    let first = bind_reuseport(config.mqtt).map_err(|e| bind_err(config.mqtt, e))?;
    let mqtt_addr = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| bind_err(config.mqtt, std::io::Error::other("no local address")))?;
    let mut listeners = vec![Some(first)];
    for _ in 1..nr_shards {
        listeners.push(Some(
            bind_reuseport(mqtt_addr).map_err(|e| bind_err(mqtt_addr, e))?,
        ));
    }
    let listeners = Arc::new(Mutex::new(listeners));
    let stop = Arc::new(AtomicBool::new(false));
    let config = Arc::new(config);
    let mesh: MeshBuilder<ShardMsg, Full> = MeshBuilder::full(nr_shards, 1024);

    let accepted: Arc<Vec<AtomicU64>> =
        Arc::new((0..nr_shards).map(|_| AtomicU64::new(0)).collect());
    let shard_stop = stop.clone();
    let shard_accepted = accepted.clone();
    let threads = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(nr_shards))
        .name("fleetmq-shard")
        .on_all_shards(move || async move {
            let run = run_shard(
                nr_shards,
                config,
                listeners,
                mesh,
                shard_stop,
                shard_accepted,
            );
            if let Err(e) = run.await {
                tracing::error!(error = %e, "shard failed");
            }
        })
        .map_err(|e| BrokerError::Executor(e.to_string()))?;
    tracing::info!(addr = %mqtt_addr, shards = nr_shards, "MQTT listener ready");
    Ok(BrokerHandle {
        mqtt_addr,
        stop,
        accepted,
        threads: Some(threads),
    })
}

async fn run_shard(
    nr_shards: usize,
    config: Arc<Config>,
    listeners: Arc<Mutex<Vec<Option<Socket>>>>,
    mesh: MeshBuilder<ShardMsg, Full>,
    stop: Arc<AtomicBool>,
    accepted_count: Arc<Vec<AtomicU64>>,
) -> Result<(), BrokerError> {
    let (senders, receivers) = mesh
        .join()
        .await
        .map_err(|e| BrokerError::Shard(format!("cannot join the shard mesh: {e}")))?;
    let id = senders.peer_id();
    let socket = listeners
        .lock()
        .map_err(|_| BrokerError::Shard("listener table poisoned".into()))?
        .get_mut(id)
        .and_then(Option::take)
        .ok_or_else(|| BrokerError::Shard(format!("no listener for shard {id}")))?;
    // SAFETY: the descriptor is a listening TCP socket we own; ownership passes to the listener.
    let listener = unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) };

    let peers: Vec<Option<Rc<PeerQueue>>> = (0..nr_shards)
        .map(|i| (i != id).then(|| Rc::new(PeerQueue::default())))
        .collect();
    let shard = Rc::new(Shard::new(id, nr_shards, config, peers.clone(), stop));

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

    tracing::debug!(shard = id, "shard accepting");
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            shard.stop_signal.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                if let Some(n) = accepted_count.get(id) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.set_nodelay(true);
                let peer = stream
                    .peer_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                let limit = shard.config.limits.max_connections_per_shard;
                if limit > 0 && shard.metrics.connections.get() as usize >= limit {
                    tracing::warn!(shard = id, %peer, "connection limit reached; refusing");
                    drop(stream);
                    continue;
                }
                glommio::spawn_local(connection::serve(shard.clone(), stream, peer)).detach();
            }
            Some(Err(e)) => {
                tracing::warn!(shard = id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    // Let connections say goodbye (DISCONNECT 0x8B) and flush, within a bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !shard.state.borrow().connections.is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    tracing::debug!(shard = id, "shard stopped");
    Ok(())
}
