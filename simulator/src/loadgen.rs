//! The load generator: N publishers at a fixed aggregate rate (or as fast as the broker takes
//! them), M subscribers, and end-to-end latency from a timestamp in each payload.
//!
//! Publishers and subscribers are spread over one glommio executor per thread, like the fleet.
//! A payload starts with a 24-byte binary header (three little-endian `u64`s: `t_us`, the
//! publisher's index and its `seq`), padded with `x` to the requested size. `t_us` is the wall
//! clock (microseconds since the Unix epoch) when the message was handed to the socket, so
//! latency includes the broker and both clients, as a user would see it. A fixed binary header
//! keeps the generator's own cost per message small: it must not be what a benchmark measures.
//! Subscribers record latencies in HDR histograms and count gaps in each publisher's `seq` as
//! drops.
//!
//! Two subscription patterns: [`Pattern::Shared`] (every subscriber takes `{prefix}/#`: fan-in
//! with one subscriber, fan-out with one publisher) and [`Pattern::Pairs`] (subscriber `i` takes
//! publisher `i`'s topic alone). [`hold_idle`] opens connections that do nothing, to measure
//! what an idle client costs a broker.

use std::{
    cell::RefCell,
    collections::HashMap,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use protocol::{ByteStr, Publish, QoS};

use crate::mqtt::{ClientOptions, Connection, Handler};
use crate::run::RunError;

/// What load to make.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Broker and connection settings.
    pub client: ClientOptions,
    /// Publishing connections.
    pub publishers: usize,
    /// Subscribing connections (each receives every message).
    pub subscribers: usize,
    /// Aggregate messages per second; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// Payload size, bytes (at least the ~50 bytes of the header fields).
    pub payload_size: usize,
    /// QoS of publishes and subscriptions.
    pub qos: QoS,
    /// How long to publish.
    pub duration: Duration,
    /// Executor threads.
    pub threads: usize,
    /// Topics are `{prefix}/{publisher}`.
    pub topic_prefix: String,
    /// Which topics the subscribers take.
    pub pattern: Pattern,
}

/// Which topics the subscribers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// Every subscriber takes `{prefix}/#` and receives every message.
    Shared,
    /// Subscriber `i` takes `{prefix}/{i mod publishers}`: one-to-one pairs.
    Pairs,
}

/// Size of the binary header at the start of every payload.
pub const HEADER_LEN: usize = 24;
/// Live counters and latency histograms.
#[derive(Debug)]
pub struct LoadStats {
    /// Messages handed to a connection.
    pub sent: AtomicU64,
    /// QoS 1/2 messages acknowledged.
    pub acked: AtomicU64,
    /// Messages received by subscribers.
    pub received: AtomicU64,
    /// Gaps in a publisher's sequence seen by a subscriber.
    pub dropped: AtomicU64,
    /// Connections that failed.
    pub failures: AtomicU64,
    /// Wall clock (µs since the Unix epoch) when publishing starts.
    pub publish_start_us: AtomicU64,
    /// Threads whose subscribers are connected and subscribed.
    threads_ready: AtomicU64,
    /// Wall clock (µs since the Unix epoch) of the last message a subscriber received: with
    /// `publish_start_us`, how long delivering everything took, which exceeds the publishing
    /// time when the broker fell behind.
    pub last_receive_us: AtomicU64,
    /// Latency (µs) since the last [`LoadStats::take_interval`].
    interval: Mutex<Histogram<u64>>,
    /// Latency (µs) of the whole run.
    total: Mutex<Histogram<u64>>,
}

/// An empty latency histogram: 1 µs to 100 s, 3 significant digits.
///
/// # Panics
/// Never: the bounds are constants that `hdrhistogram` accepts.
fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 100_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("constant histogram bounds rejected: {e:?}"),
    }
}

impl LoadStats {
    fn new() -> LoadStats {
        LoadStats {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            publish_start_us: AtomicU64::new(0),
            threads_ready: AtomicU64::new(0),
            last_receive_us: AtomicU64::new(0),
            interval: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
        }
    }

    fn merge(&self, local: &mut Histogram<u64>) {
        if local.is_empty() {
            return;
        }
        if let Ok(mut h) = self.interval.lock() {
            let _ = h.add(&*local);
        }
        if let Ok(mut h) = self.total.lock() {
            let _ = h.add(&*local);
        }
        local.reset();
    }

    /// Latencies recorded since the previous call.
    pub fn take_interval(&self) -> Histogram<u64> {
        match self.interval.lock() {
            Ok(mut h) => {
                let out = h.clone();
                h.reset();
                out
            }
            Err(_) => histogram(),
        }
    }

    /// Latencies of the whole run so far.
    pub fn total(&self) -> Histogram<u64> {
        self.total
            .lock()
            .map(|h| h.clone())
            .unwrap_or_else(|_| histogram())
    }
}

/// A running load.
pub struct LoadHandle {
    /// Live counters.
    pub stats: Arc<LoadStats>,
    threads: glommio::PoolThreadHandles<()>,
}

impl LoadHandle {
    /// Waits for the end of the run (publishing, then draining the subscribers).
    ///
    /// # Errors
    /// A thread that failed.
    pub fn join(self) -> Result<(), RunError> {
        for result in self.threads.join_all() {
            result.map_err(|e| RunError::Executor(e.to_string()))?;
        }
        Ok(())
    }
}

/// Starts the load; returns at once.
///
/// # Errors
/// Executors that cannot start, or a nonsensical configuration.
pub fn start(config: LoadConfig) -> Result<LoadHandle, RunError> {
    if config.publishers == 0 {
        return Err(RunError::Config("at least one publisher".into()));
    }
    if config.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(RunError::Config("rate must be positive".into()));
    }
    if config.payload_size < HEADER_LEN {
        return Err(RunError::Config(format!(
            "payloads need at least {HEADER_LEN} bytes for the header"
        )));
    }
    let stats = Arc::new(LoadStats::new());
    let threads = config.threads.max(1);
    let next_shard = Arc::new(AtomicU64::new(0));
    let config = Arc::new(config);
    let shard_stats = stats.clone();
    let handles = glommio::LocalExecutorPoolBuilder::new(glommio::PoolPlacement::Unbound(threads))
        .name("fleetmq-load")
        .on_all_shards(move || {
            let shard = next_shard.fetch_add(1, Ordering::Relaxed) as usize;
            let config = config.clone();
            let stats = shard_stats.clone();
            async move { run_shard(shard, threads, config, stats).await }
        })
        .map_err(|e| RunError::Executor(e.to_string()))?;
    Ok(LoadHandle {
        stats,
        threads: handles,
    })
}

async fn run_shard(shard: usize, threads: usize, config: Arc<LoadConfig>, stats: Arc<LoadStats>) {
    let local = Rc::new(SubState {
        histogram: RefCell::new(histogram()),
        last_seq: RefCell::new(HashMap::new()),
        received: std::cell::Cell::new(0),
        stats: stats.clone(),
    });
    // Subscribers first, so that they see the first message. They run in a task queue with
    // ten times the default share and a latency requirement, so that on a saturated machine
    // the publishers on this thread cannot starve the subscribers (and the load generator,
    // not the broker, would be measured).
    let subscribers = connect_subscribers(shard, threads, config.clone(), local.clone());
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(10_000),
        glommio::Latency::Matters(Duration::from_millis(1)),
        "loadgen-subscribers",
    );
    let subs = match glommio::spawn_local_into(subscribers, queue) {
        Ok(task) => task.await,
        Err(e) => {
            tracing::warn!(error = %e, "no subscriber task queue");
            stats.failures.fetch_add(1, Ordering::Relaxed);
            Vec::new()
        }
    };
    let conns = connect_publishers(shard, threads, &config, &stats).await;
    // Publishing starts when every thread's subscribers and publishers are connected, so
    // that connecting is not part of the measured time.
    if stats.threads_ready.fetch_add(1, Ordering::Relaxed) + 1 == threads as u64 {
        stats.publish_start_us.store(now_us(), Ordering::Relaxed);
    }
    while stats.threads_ready.load(Ordering::Relaxed) < threads as u64 {
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    let flusher = {
        let local = local.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                local.flush();
            }
        })
    };
    let start = Instant::now();
    let publishers: Vec<_> = conns
        .into_iter()
        .map(|(i, conn)| {
            let config = config.clone();
            let stats = stats.clone();
            glommio::spawn_local(async move { publish_loop(i, conn, &config, &stats, start).await })
        })
        .collect();
    for p in publishers {
        p.await;
    }
    // Drain: wait until the subscribers have been quiet for half a second (at most 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = local.received.get();
    let mut quiet = Instant::now();
    while Instant::now() < deadline
        && quiet.elapsed() < Duration::from_millis(500)
        && !subs.is_empty()
    {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        if local.received.get() != last {
            last = local.received.get();
            quiet = Instant::now();
        }
    }
    local.flush();
    drop(flusher);
    for conn in subs {
        conn.disconnect(Duration::from_millis(500)).await;
    }
}

/// Connects and subscribes this thread's share of the subscribers, a chunk at a time.
async fn connect_subscribers(
    shard: usize,
    threads: usize,
    config: Arc<LoadConfig>,
    local: Rc<SubState>,
) -> Vec<Connection> {
    let mine: Vec<usize> = (shard..config.subscribers).step_by(threads).collect();
    let attempts = concurrently(&mine, |i| subscribe_one(i, config.clone(), local.clone())).await;
    let subs: Vec<Connection> = attempts.into_iter().flatten().collect();
    let failed = mine.len() - subs.len();
    local
        .stats
        .failures
        .fetch_add(failed as u64, Ordering::Relaxed);
    subs
}

/// Runs `attempt(i)` for every index, at most [`CONNECTS_IN_FLIGHT`] at once, and returns
/// the results in order: connecting thousands of clients one by one would take long, and all
/// at once could overflow the broker's accept backlog.
async fn concurrently<T, F>(indexes: &[usize], attempt: impl Fn(usize) -> F) -> Vec<T>
where
    T: 'static,
    F: std::future::Future<Output = T> + 'static,
{
    let mut results = Vec::with_capacity(indexes.len());
    for chunk in indexes.chunks(CONNECTS_IN_FLIGHT) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|&i| glommio::spawn_local(attempt(i)))
            .collect();
        for task in tasks {
            results.push(task.await);
        }
    }
    results
}

async fn subscribe_one(
    i: usize,
    config: Arc<LoadConfig>,
    local: Rc<SubState>,
) -> Option<Connection> {
    let handler: Rc<dyn Handler> = Rc::new(SubHandler {
        state: local,
        index: i,
    });
    let id = format!("fleetmq-load-sub-{i}");
    let mut conn = match Connection::connect(&config.client, &id, None, handler).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "subscriber cannot connect");
            return None;
        }
    };
    let filter = match config.pattern {
        Pattern::Shared => format!("{}/#", config.topic_prefix),
        Pattern::Pairs => format!("{}/{}", config.topic_prefix, i % config.publishers),
    };
    match conn
        .subscribe(&filter, config.qos, Duration::from_secs(10))
        .await
    {
        Ok(_) => Some(conn),
        Err(e) => {
            tracing::warn!(error = %e, "subscriber cannot subscribe");
            None
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The payload: the binary header, then `x` up to `size` bytes.
fn payload(publisher: usize, seq: u64, size: usize) -> Bytes {
    let mut body = Vec::with_capacity(size.max(HEADER_LEN));
    body.extend_from_slice(&now_us().to_le_bytes());
    body.extend_from_slice(&(publisher as u64).to_le_bytes());
    body.extend_from_slice(&seq.to_le_bytes());
    body.resize(size.max(HEADER_LEN), b'x');
    Bytes::from(body)
}

/// The header of a payload made by [`payload`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    t_us: u64,
    publisher: usize,
    seq: u64,
}

impl Header {
    /// `None` for a payload too short to be ours.
    fn parse(payload: &[u8]) -> Option<Header> {
        let word = |i: usize| {
            payload
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        Some(Header {
            t_us: word(0)?,
            publisher: usize::try_from(word(1)?).ok()?,
            seq: word(2)?,
        })
    }
}

struct PubAcks(Arc<LoadStats>);

impl Handler for PubAcks {
    fn acked(&self, _tag: u64, ok: bool) {
        if ok {
            self.0.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connects this thread's share of the publishers, a chunk at a time.
async fn connect_publishers(
    shard: usize,
    threads: usize,
    config: &LoadConfig,
    stats: &Arc<LoadStats>,
) -> Vec<(usize, Connection)> {
    let mine: Vec<usize> = (shard..config.publishers).step_by(threads).collect();
    let attempts = concurrently(&mine, |i| {
        let client = config.client.clone();
        let handler: Rc<dyn Handler> = Rc::new(PubAcks(stats.clone()));
        async move {
            let id = format!("fleetmq-load-pub-{i}");
            Connection::connect(&client, &id, None, handler).await
        }
    })
    .await;
    let mut conns = Vec::with_capacity(mine.len());
    for (i, attempt) in mine.into_iter().zip(attempts) {
        match attempt {
            Ok(conn) => conns.push((i, conn)),
            Err(e) => {
                tracing::warn!(error = %e, "publisher cannot connect");
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    conns
}

async fn publish_loop(
    index: usize,
    mut conn: Connection,
    config: &LoadConfig,
    stats: &Arc<LoadStats>,
    start: Instant,
) {
    let topic = ByteStr::from(format!("{}/{index}", config.topic_prefix));
    let per_pub = config.rate.map(|r| r / config.publishers as f64);
    let end = start + config.duration;
    let mut seq = 0u64;
    while Instant::now() < end {
        // Catch-up pacing: publish what is due, then sleep a millisecond. Per-message timers
        // would cost more than the messages at high rates.
        let due = match per_pub {
            Some(r) => ((start.elapsed().as_secs_f64() * r) as u64).saturating_sub(seq),
            None => 64,
        };
        for _ in 0..due {
            let body = payload(index, seq, config.payload_size);
            if conn
                .publish(topic.clone(), body, config.qos, false, seq)
                .await
                .is_err()
            {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                return;
            }
            seq += 1;
            stats.sent.fetch_add(1, Ordering::Relaxed);
        }
        if per_pub.is_some() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        } else {
            glommio::yield_if_needed().await;
        }
    }
    conn.settle(Duration::from_secs(10)).await;
    conn.disconnect(Duration::from_secs(1)).await;
}

/// Subscriber state shared by a shard's subscribers.
struct SubState {
    histogram: RefCell<Histogram<u64>>,
    /// Last seq seen per (subscriber, publisher).
    last_seq: RefCell<HashMap<(usize, usize), u64>>,
    received: std::cell::Cell<u64>,
    stats: Arc<LoadStats>,
}

impl SubState {
    fn flush(&self) {
        self.stats.merge(&mut self.histogram.borrow_mut());
    }
}

struct SubHandler {
    state: Rc<SubState>,
    index: usize,
}

impl Handler for SubHandler {
    fn acked(&self, _tag: u64, _ok: bool) {}

    fn message(&self, publish: &Publish) {
        let now = now_us();
        let Some(header) = Header::parse(&publish.payload) else {
            return;
        };
        let s = &self.state;
        s.received.set(s.received.get() + 1);
        s.stats.received.fetch_add(1, Ordering::Relaxed);
        s.stats.last_receive_us.fetch_max(now, Ordering::Relaxed);
        let _ = s
            .histogram
            .borrow_mut()
            .record(now.saturating_sub(header.t_us).max(1));
        let mut last = s.last_seq.borrow_mut();
        let key = (self.index, header.publisher);
        let expected = last.get(&key).map_or(0, |prev| prev + 1);
        if header.seq >= expected {
            // Anything skipped is a drop; a seq below the expected one is a redelivery.
            let skipped = header.seq - expected;
            if skipped > 0 {
                s.stats.dropped.fetch_add(skipped, Ordering::Relaxed);
            }
            last.insert(key, header.seq);
        }
    }
}

/// Progress of [`hold_idle`].
#[derive(Debug, Default)]
pub struct IdleStats {
    /// Connections accepted by the broker (CONNACK received).
    pub connected: AtomicU64,
    /// Connections that failed.
    pub failures: AtomicU64,
    /// Threads that have finished connecting their share.
    pub threads_ready: AtomicU64,
}

/// Connections held open by [`hold_idle`].
pub struct IdleHandle {
    /// Live counters.
    pub stats: Arc<IdleStats>,
    /// Executor threads; every one is ready when `threads_ready` reaches this.
    pub threads: usize,
    handles: glommio::PoolThreadHandles<()>,
}

impl IdleHandle {
    /// True once every thread has connected (or failed to connect) its share.
    pub fn all_connected(&self) -> bool {
        self.stats.threads_ready.load(Ordering::Relaxed) >= self.threads as u64
    }

    /// Waits until the connections have been held and closed.
    ///
    /// # Errors
    /// A thread that failed.
    pub fn join(self) -> Result<(), RunError> {
        for result in self.handles.join_all() {
            result.map_err(|e| RunError::Executor(e.to_string()))?;
        }
        Ok(())
    }
}

/// Most connection attempts in flight at once per thread: enough to connect thousands a
/// second, few enough not to overflow the broker's accept backlog.
const CONNECTS_IN_FLIGHT: usize = 64;

/// Opens `connections` MQTT connections that subscribe to nothing and publish nothing, holds
/// them for `hold` once all are up, then closes them. Returns at once. Keep alive comes from
/// `client`; make it longer than `hold` for connections that are idle in every sense.
///
/// # Errors
/// Executors that cannot start.
pub fn hold_idle(
    client: ClientOptions,
    connections: usize,
    hold: Duration,
    threads: usize,
) -> Result<IdleHandle, RunError> {
    let threads = threads.max(1);
    let stats = Arc::new(IdleStats::default());
    let next_shard = Arc::new(AtomicU64::new(0));
    let client = Arc::new(client);
    let shard_stats = stats.clone();
    let handles = glommio::LocalExecutorPoolBuilder::new(glommio::PoolPlacement::Unbound(threads))
        .name("fleetmq-idle")
        .on_all_shards(move || {
            let shard = next_shard.fetch_add(1, Ordering::Relaxed) as usize;
            let client = client.clone();
            let stats = shard_stats.clone();
            async move {
                let mine: Vec<usize> = (shard..connections).step_by(threads).collect();
                let attempts = concurrently(&mine, |i| {
                    let client = client.clone();
                    async move {
                        let id = format!("fleetmq-idle-{i}");
                        Connection::connect(&client, &id, None, Rc::new(Ignore)).await
                    }
                })
                .await;
                let mut held = Vec::with_capacity(mine.len());
                for attempt in attempts {
                    match attempt {
                        Ok(conn) => {
                            stats.connected.fetch_add(1, Ordering::Relaxed);
                            held.push(conn);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "idle connection failed");
                            stats.failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                stats.threads_ready.fetch_add(1, Ordering::Relaxed);
                glommio::timer::sleep(hold).await;
                drop(held);
            }
        })
        .map_err(|e| RunError::Executor(e.to_string()))?;
    Ok(IdleHandle {
        stats,
        threads,
        handles,
    })
}

/// A handler for connections that expect nothing.
struct Ignore;

impl Handler for Ignore {
    fn acked(&self, _tag: u64, _ok: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_carries_its_header_and_has_the_requested_size() {
        let body = payload(7, 123_456, 100);
        assert_eq!(body.len(), 100);
        let header = Header::parse(&body).expect("header");
        assert_eq!((header.publisher, header.seq), (7, 123_456));
        assert!(header.t_us > 1_600_000_000_000_000, "a wall-clock time");
        assert!(body[HEADER_LEN..].iter().all(|&b| b == b'x'));
    }

    #[test]
    fn a_payload_too_short_for_a_header_is_not_ours() {
        assert_eq!(Header::parse(&[0u8; HEADER_LEN - 1]), None);
        assert!(Header::parse(&[0u8; HEADER_LEN]).is_some());
    }
}
