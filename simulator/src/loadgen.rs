//! The load generator: N publishers at a fixed aggregate rate (or as fast as the broker takes
//! them), M subscribers, and end-to-end latency from a timestamp in each payload.
//!
//! Publishers and subscribers are spread over one glommio executor per thread, like the fleet.
//! A payload is JSON, `{"t_us":..,"pub":..,"seq":..,"pad":".."}`, padded to the requested size;
//! `t_us` is the wall clock (microseconds since the Unix epoch) when it was handed to the
//! socket, so latency includes the broker and both clients, as a user would see it. Subscribers
//! record latencies in HDR histograms and count gaps in each publisher's `seq` as drops.

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
use serde::Deserialize;

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
    /// Topics are `{prefix}/{publisher}`; subscribers take `{prefix}/#`.
    pub topic_prefix: String,
}

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
    let stats = Arc::new(LoadStats::new());
    let threads = config.threads.max(1);
    let next_shard = Arc::new(AtomicU64::new(0));
    let config = Arc::new(config);
    let shard_stats = stats.clone();
    let t0 = Instant::now();
    let handles = glommio::LocalExecutorPoolBuilder::new(glommio::PoolPlacement::Unbound(threads))
        .name("fleetmq-load")
        .on_all_shards(move || {
            let shard = next_shard.fetch_add(1, Ordering::Relaxed) as usize;
            let config = config.clone();
            let stats = shard_stats.clone();
            async move { run_shard(shard, threads, config, stats, t0).await }
        })
        .map_err(|e| RunError::Executor(e.to_string()))?;
    Ok(LoadHandle {
        stats,
        threads: handles,
    })
}

async fn run_shard(
    shard: usize,
    threads: usize,
    config: Arc<LoadConfig>,
    stats: Arc<LoadStats>,
    t0: Instant,
) {
    let local = Rc::new(SubState {
        histogram: RefCell::new(histogram()),
        last_seq: RefCell::new(HashMap::new()),
        received: std::cell::Cell::new(0),
        stats: stats.clone(),
    });
    // Subscribers first, so that they see the first message.
    let mut subs = Vec::new();
    for i in (shard..config.subscribers).step_by(threads) {
        let handler: Rc<dyn Handler> = Rc::new(SubHandler {
            state: local.clone(),
            index: i,
        });
        match Connection::connect(
            &config.client,
            &format!("fleetmq-load-sub-{i}"),
            None,
            handler,
        )
        .await
        {
            Ok(mut conn) => {
                let filter = format!("{}/#", config.topic_prefix);
                if conn
                    .subscribe(&filter, config.qos, Duration::from_secs(10))
                    .await
                    .is_ok()
                {
                    subs.push(conn);
                } else {
                    stats.failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscriber cannot connect");
                stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // Let every shard's subscribers get in place before anyone publishes.
    glommio::timer::sleep(Duration::from_millis(300)).await;
    let flusher = {
        let local = local.clone();
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                local.flush();
            }
        })
    };
    let start = t0 + Duration::from_millis(300);
    let publishers: Vec<_> = (shard..config.publishers)
        .step_by(threads)
        .map(|i| {
            let config = config.clone();
            let stats = stats.clone();
            glommio::spawn_local(async move { publish_loop(i, &config, &stats, start).await })
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

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The payload: the header fields, then padding up to `size` bytes.
fn payload(publisher: usize, seq: u64, size: usize) -> Bytes {
    let mut text = format!(
        "{{\"t_us\":{},\"pub\":{publisher},\"seq\":{seq},\"pad\":\"",
        now_us()
    );
    let pad = size.saturating_sub(text.len() + 2);
    text.extend(std::iter::repeat_n('x', pad));
    text.push_str("\"}");
    Bytes::from(text)
}

struct PubAcks(Arc<LoadStats>);

impl Handler for PubAcks {
    fn acked(&self, _tag: u64, ok: bool) {
        if ok {
            self.0.acked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn publish_loop(index: usize, config: &LoadConfig, stats: &Arc<LoadStats>, start: Instant) {
    let handler: Rc<dyn Handler> = Rc::new(PubAcks(stats.clone()));
    let id = format!("fleetmq-load-pub-{index}");
    let mut conn = match Connection::connect(&config.client, &id, None, handler).await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "publisher cannot connect");
            stats.failures.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let topic = ByteStr::from(format!("{}/{index}", config.topic_prefix));
    let per_pub = config.rate.map(|r| r / config.publishers as f64);
    let end = start + config.duration;
    let now = Instant::now();
    if start > now {
        glommio::timer::sleep(start - now).await;
    }
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

#[derive(Deserialize)]
struct Header {
    t_us: u64,
    #[serde(rename = "pub")]
    publisher: usize,
    seq: u64,
}

impl Handler for SubHandler {
    fn acked(&self, _tag: u64, _ok: bool) {}

    fn message(&self, publish: &Publish) {
        let now = now_us();
        let Ok(header) = serde_json::from_slice::<Header>(&publish.payload) else {
            return;
        };
        let s = &self.state;
        s.received.set(s.received.get() + 1);
        s.stats.received.fetch_add(1, Ordering::Relaxed);
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
