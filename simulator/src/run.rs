//! Running a fleet against a broker: one glommio executor per thread, one task and one MQTT
//! connection per vehicle, pacing by fleet time, store-and-forward, and the counters a
//! progress display reads.
//!
//! A vehicle task pulls events from its model and sleeps until each one is due (fleet time
//! divided by the speed-up). Readings go into the vehicle's queue; the queue drains whenever
//! the vehicle's link is up and its connection is alive. A simulated coverage gap drops the
//! connection without DISCONNECT (the broker publishes the `offline` Will) and the readings
//! wait; a real failure (refused, reset) is retried with exponential back-off. Either way the
//! queue is published later in `seq` order with the original `ts`, and QoS 1/2 messages that
//! were in flight when a connection died go out again first.

use std::{
    cell::RefCell,
    collections::VecDeque,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use glommio::{timer::sleep, LocalExecutorPoolBuilder, PoolPlacement};
use protocol::{ByteStr, Properties, QoS, Will};
use telemetry::{topic, Status, TopicKind};

use crate::fleet::Fleet;
use crate::mqtt::{ClientOptions, Connection, Handler};
use crate::truth::{Counts, Truth, VehicleTruth};
use crate::vehicle::{Event, Vehicle};

/// How to run a fleet.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The fleet model.
    pub fleet: Fleet,
    /// Broker and connection settings.
    pub client: ClientOptions,
    /// QoS of every publish.
    pub qos: QoS,
    /// Wall-clock duration of the run.
    pub duration: Duration,
    /// Fleet seconds per wall second.
    pub speedup: f64,
    /// Executor threads.
    pub threads: usize,
    /// New connections per second while ramping up (0: all at once).
    pub ramp_per_s: f64,
    /// Time allowed at the end to publish what is still buffered and collect acks.
    pub drain_timeout: Duration,
}

impl RunConfig {
    /// Simulated seconds the run covers.
    pub fn fleet_seconds(&self) -> u64 {
        (self.duration.as_secs_f64() * self.speedup).ceil() as u64
    }
}

/// Counters shared with whoever displays progress.
#[derive(Debug, Default)]
pub struct Stats {
    /// Vehicles currently connected.
    pub connected: AtomicU64,
    /// Successful connections (including reconnections).
    pub connects: AtomicU64,
    /// Failed connection attempts.
    pub connect_failures: AtomicU64,
    /// Connections lost to simulated coverage gaps.
    pub gaps: AtomicU64,
    /// Readings handed to a connection.
    pub sent: AtomicU64,
    /// QoS 1/2 readings acknowledged.
    pub acked: AtomicU64,
    /// Readings sent again after a connection died with them in flight.
    pub resent: AtomicU64,
    /// Readings waiting in vehicles' store-and-forward queues.
    pub buffered: AtomicU64,
    /// Vehicle tasks finished.
    pub finished: AtomicU64,
    /// Set to stop early (Ctrl-C): vehicles stop producing and drain.
    pub stop: AtomicBool,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// The executors could not start or a thread failed.
    #[error("executor: {0}")]
    Executor(String),
}

/// What a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// The ground truth, with what was published.
    pub truth: Truth,
    /// Wall time taken, drain included.
    pub elapsed: Duration,
}

/// A started run.
pub struct RunHandle {
    /// Live counters.
    pub stats: Arc<Stats>,
    threads: glommio::PoolThreadHandles<Vec<VehicleTruth>>,
    fleet: Fleet,
    end_s: u64,
    started: Instant,
}

impl RunHandle {
    /// Waits for every vehicle to finish and assembles the truth.
    ///
    /// # Errors
    /// A thread that failed.
    pub fn join(self) -> Result<RunReport, RunError> {
        let mut vehicles = Vec::new();
        for result in self.threads.join_all() {
            vehicles.extend(result.map_err(|e| RunError::Executor(e.to_string()))?);
        }
        vehicles.sort_by(|a, b| a.vehicle_id.cmp(&b.vehicle_id));
        Ok(RunReport {
            truth: self.fleet.truth(self.end_s, vehicles),
            elapsed: self.started.elapsed(),
        })
    }
}

/// Starts the fleet; returns at once.
///
/// # Errors
/// An invalid configuration or executors that cannot start.
pub fn start(config: RunConfig) -> Result<RunHandle, RunError> {
    if !(config.speedup > 0.0 && config.speedup.is_finite()) {
        return Err(RunError::Config(
            "speed-up must be a positive number".into(),
        ));
    }
    if config.threads == 0 {
        return Err(RunError::Config("threads must be at least 1".into()));
    }
    let stats = Arc::new(Stats::default());
    let started = Instant::now();
    let end_s = config.fleet_seconds();
    let fleet = config.fleet.clone();
    let threads = config.threads.min(config.fleet.config.vehicles.max(1));
    let next_shard = Arc::new(AtomicU64::new(0));
    let config = Arc::new(config);
    let shard_stats = stats.clone();
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(threads))
        .name("fleetmq-sim")
        .on_all_shards(move || {
            let shard = next_shard.fetch_add(1, Ordering::Relaxed) as usize;
            let config = config.clone();
            let stats = shard_stats.clone();
            async move { run_shard(shard, threads, config, stats, started, end_s).await }
        })
        .map_err(|e| RunError::Executor(e.to_string()))?;
    Ok(RunHandle {
        stats,
        threads: handles,
        fleet,
        end_s,
        started,
    })
}

async fn run_shard(
    shard: usize,
    threads: usize,
    config: Arc<RunConfig>,
    stats: Arc<Stats>,
    t0: Instant,
    end_s: u64,
) -> Vec<VehicleTruth> {
    if shard == 0 {
        publish_world(&config).await;
    }
    let tasks: Vec<_> = (shard..config.fleet.config.vehicles)
        .step_by(threads)
        .map(|index| {
            let config = config.clone();
            let stats = stats.clone();
            glommio::spawn_local(async move {
                let vehicle = config.fleet.vehicle(index);
                let truth = drive_vehicle(vehicle, index, &config, &stats, t0, end_s).await;
                Stats::add(&stats.finished, 1);
                truth
            })
        })
        .collect();
    let mut truths = Vec::with_capacity(tasks.len());
    for task in tasks {
        truths.push(task.await);
    }
    truths
}

/// Publishes the fleet's world (depots, customers, streets) as the retained
/// [`crate::world::WORLD_TOPIC`], so a dispatch map can draw them. Best effort: a broker whose
/// ACL does not let the simulator write it is warned about, and the run goes on.
async fn publish_world(config: &RunConfig) {
    struct Ignore;
    impl Handler for Ignore {
        fn acked(&self, _tag: u64, _ok: bool) {}
    }
    let id = format!("{}-world", config.fleet.config.id_prefix);
    let payload = Bytes::from(config.fleet.world.to_geojson());
    let published = async {
        let mut connection =
            Connection::connect(&config.client, &id, None, Rc::new(Ignore)).await?;
        let topic = ByteStr::from(crate::world::WORLD_TOPIC);
        connection
            .publish(topic, payload, QoS::AtLeastOnce, true, 0)
            .await?;
        let settled = connection.settle(Duration::from_secs(10)).await;
        connection.disconnect(Duration::from_secs(2)).await;
        Ok::<bool, crate::mqtt::ClientError>(settled)
    };
    match published.await {
        Ok(true) => tracing::debug!(topic = crate::world::WORLD_TOPIC, "world published"),
        Ok(false) => tracing::warn!("the world was not acknowledged in 10 s"),
        Err(e) => tracing::warn!(error = %e, "cannot publish the world for dispatch maps"),
    }
}

/// Packs a topic kind and seq into a publish tag.
fn tag(kind: TopicKind, seq: u64) -> u64 {
    let k = match kind {
        TopicKind::Gps => 0,
        TopicKind::Reefer => 1,
        TopicKind::Status => 2,
    };
    seq << 2 | k
}

fn untag(tag: u64) -> (TopicKind, u64) {
    let kind = match tag & 3 {
        0 => TopicKind::Gps,
        1 => TopicKind::Reefer,
        _ => TopicKind::Status,
    };
    (kind, tag >> 2)
}

/// Records acknowledgements into the vehicle's published counts.
struct Acks {
    counts: RefCell<Counts>,
    stats: Arc<Stats>,
}

impl Handler for Acks {
    fn acked(&self, tag: u64, ok: bool) {
        if !ok {
            tracing::warn!(tag, "broker refused a message");
            return;
        }
        let (kind, seq) = untag(tag);
        if kind == TopicKind::Status && seq != 0 {
            return; // the final `offline`, not a connection's `online`
        }
        self.counts.borrow_mut().record(kind, seq);
        if kind != TopicKind::Status {
            Stats::add(&self.stats.acked, 1);
        }
    }
}

/// A reading waiting to be published.
struct Queued {
    kind: TopicKind,
    seq: u64,
    payload: Bytes,
}

/// A vehicle's link: its connection (when it has one), its store-and-forward queue, and the
/// reconnect back-off.
struct Link<'a> {
    config: &'a RunConfig,
    stats: &'a Stats,
    id: String,
    topics: [ByteStr; 3],
    acks: Rc<Acks>,
    conn: Option<Connection>,
    queue: VecDeque<Queued>,
    up: bool,
    backoff: Duration,
    retry_at: Instant,
}

impl Link<'_> {
    fn topic(&self, kind: TopicKind) -> ByteStr {
        let i = match kind {
            TopicKind::Gps => 0,
            TopicKind::Reefer => 1,
            TopicKind::Status => 2,
        };
        self.topics[i].clone()
    }

    fn enqueue(&mut self, item: Queued) {
        self.queue.push_back(item);
        Stats::add(&self.stats.buffered, 1);
    }

    /// Drops the connection (abruptly: the broker publishes the Will) and puts what was in
    /// flight back at the front of the queue, in order.
    fn drop_connection(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        Stats::sub(&self.stats.connected, 1);
        let unacked = conn.take_unacked();
        for u in unacked.into_iter().rev() {
            let (kind, seq) = untag(u.tag);
            if kind == TopicKind::Status {
                continue;
            }
            Stats::add(&self.stats.resent, 1);
            Stats::add(&self.stats.buffered, 1);
            self.queue.push_front(Queued {
                kind,
                seq,
                payload: u.publish.payload,
            });
        }
    }

    async fn connect(&mut self) -> bool {
        if Instant::now() < self.retry_at {
            return false;
        }
        let will = Will {
            topic: self.topic(TopicKind::Status),
            payload: Bytes::from_static(Status::Offline.as_bytes()),
            qos: self.config.qos,
            retain: true,
            properties: Properties::default(),
        };
        let handler: Rc<dyn Handler> = self.acks.clone();
        match Connection::connect(&self.config.client, &self.id, Some(will), handler).await {
            Ok(mut conn) => {
                Stats::add(&self.stats.connects, 1);
                Stats::add(&self.stats.connected, 1);
                self.backoff = Duration::ZERO;
                let online = Bytes::from_static(Status::Online.as_bytes());
                let status = self.topic(TopicKind::Status);
                let t = tag(TopicKind::Status, 0);
                if conn
                    .publish(status, online, self.config.qos, true, t)
                    .await
                    .is_ok()
                    && self.config.qos == QoS::AtMostOnce
                {
                    self.acks.counts.borrow_mut().status_online += 1;
                }
                self.conn = Some(conn);
                true
            }
            Err(e) => {
                Stats::add(&self.stats.connect_failures, 1);
                self.backoff =
                    (self.backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                // Spread retries so that a fleet does not reconnect in lock-step.
                let jitter =
                    0.5 + (self.id.len() as f64 * 0.37 + self.queue.len() as f64 * 0.11).fract();
                self.retry_at = Instant::now() + self.backoff.mul_f64(jitter);
                tracing::debug!(vehicle = %self.id, error = %e, "connect failed");
                false
            }
        }
    }

    /// Publishes the queue while the link is up and a connection can be had.
    async fn pump(&mut self) {
        while self.up {
            if self.conn.as_ref().is_some_and(Connection::is_dead) {
                self.drop_connection();
            }
            if self.conn.is_none() && !self.connect().await {
                return;
            }
            let Some(item) = self.queue.front() else {
                return;
            };
            let (kind, seq, payload) = (item.kind, item.seq, item.payload.clone());
            let topic = self.topic(kind);
            let qos = self.config.qos;
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            if conn
                .publish(topic, payload, qos, false, tag(kind, seq))
                .await
                .is_ok()
            {
                self.queue.pop_front();
                Stats::sub(&self.stats.buffered, 1);
                Stats::add(&self.stats.sent, 1);
                if qos == QoS::AtMostOnce {
                    self.acks.counts.borrow_mut().record(kind, seq);
                }
            }
        }
    }

    /// End of run: link up, everything published and acknowledged (within the drain time),
    /// retained `offline`, DISCONNECT.
    async fn finish(&mut self) {
        self.up = true;
        let deadline = Instant::now() + self.config.drain_timeout;
        loop {
            self.pump().await;
            let settled = match &self.conn {
                Some(conn) if self.queue.is_empty() => {
                    conn.settle(Duration::from_millis(200)).await && !conn.is_dead()
                }
                _ => false,
            };
            if settled || Instant::now() >= deadline {
                break;
            }
            if self.conn.is_none() {
                sleep(Duration::from_millis(50)).await;
            }
        }
        if let Some(mut conn) = self.conn.take() {
            Stats::sub(&self.stats.connected, 1);
            let offline = Bytes::from_static(Status::Offline.as_bytes());
            let status = self.topic(TopicKind::Status);
            let t = tag(TopicKind::Status, u64::MAX >> 2);
            let _ = conn
                .publish(status, offline, self.config.qos, true, t)
                .await;
            conn.settle(Duration::from_secs(2)).await;
            conn.disconnect(Duration::from_secs(1)).await;
        }
        let left = self.queue.len() as u64;
        if left > 0 {
            tracing::warn!(vehicle = %self.id, left, "readings still buffered at the end");
            Stats::sub(&self.stats.buffered, left);
        }
    }
}

async fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now + Duration::from_micros(200) {
        sleep(deadline - now).await;
    }
}

async fn drive_vehicle(
    mut vehicle: Vehicle,
    index: usize,
    config: &RunConfig,
    stats: &Arc<Stats>,
    t0: Instant,
    end_s: u64,
) -> VehicleTruth {
    let id = vehicle.id().to_owned();
    let acks = Rc::new(Acks {
        counts: RefCell::new(Counts::default()),
        stats: stats.clone(),
    });
    let mut link = Link {
        config,
        stats,
        topics: TopicKind::ALL.map(|k| ByteStr::from(topic::build(&id, k))),
        id,
        acks: acks.clone(),
        conn: None,
        queue: VecDeque::new(),
        up: true,
        backoff: Duration::ZERO,
        retry_at: t0,
    };
    if config.ramp_per_s > 0.0 {
        sleep_until(t0 + Duration::from_secs_f64(index as f64 / config.ramp_per_s)).await;
    }
    let start_ms = config.fleet.config.start_ms;
    let wall_per_fleet_ms = 1.0 / (1000.0 * config.speedup);
    link.pump().await;
    while let Some(timed) = vehicle.next_event(end_s) {
        if stats.stop.load(Ordering::Relaxed) {
            break;
        }
        let offset = (timed.at_ms - start_ms).max(0) as f64 * wall_per_fleet_ms;
        sleep_until(t0 + Duration::from_secs_f64(offset)).await;
        match timed.event {
            Event::Publish(r) => link.enqueue(Queued {
                kind: r.kind,
                seq: r.seq,
                payload: r.payload,
            }),
            Event::LinkDown => {
                link.up = false;
                if link.conn.is_some() {
                    Stats::add(&stats.gaps, 1);
                }
                link.drop_connection();
            }
            Event::LinkUp => link.up = true,
        }
        link.pump().await;
    }
    link.finish().await;
    let mut truth = vehicle.finish(end_s);
    truth.published = acks.counts.take();
    truth
}
