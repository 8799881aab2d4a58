//! What a program embedding the broker plugs into it: a durable sink for the messages of some
//! topics (fleetmq's Parquet archive), and the static files its HTTP listener serves (the
//! dashboard).
//!
//! The broker knows nothing about either. It appends every PUBLISH whose topic matches one of
//! [`Sink::topics`] to its shard's [`ShardSink`], and, under `fsync = "always"`, acknowledges a
//! QoS 1/2 PUBLISH only once the sink says its ticket is durable. A sink that replays what it
//! logged before a crash does so in [`Sink::open_shard`], which runs before the shard takes
//! clients.

use std::{
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;

/// A future on a shard's executor (not `Send`: it may hold the shard's `Rc`s).
pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Identifies a message appended to a [`ShardSink`] until it is durable. Tickets of one shard's
/// sink increase with every append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// A message handed to a sink.
#[derive(Debug, Clone, Copy)]
pub struct SinkMessage<'a> {
    /// Its topic.
    pub topic: &'a Bytes,
    /// Its payload (shared with the subscribers' deliveries, not copied).
    pub payload: &'a Bytes,
    /// When the broker received it, Unix milliseconds.
    pub received_at_ms: i64,
    /// Who sent it: an id unique among the shard's connections. A sink may batch more
    /// patiently when many sources append than when one does.
    pub source: u64,
}

/// Where the messages of some topics go, shared by every shard.
pub trait Sink: Send + Sync {
    /// Topic filters (`+` and `#` allowed) whose messages go to the sink.
    fn topics(&self) -> Vec<String>;

    /// Opens shard `shard`'s writer, on that shard's executor, before the shard takes clients.
    ///
    /// # Errors
    /// A message saying what cannot be used and what the user can do; the broker does not
    /// start.
    fn open_shard(&self, shard: usize) -> LocalFuture<'_, Result<Rc<dyn ShardSink>, String>>;

    /// Prometheus text for the sink's figures, appended to `/metrics` (empty by default).
    fn prometheus(&self) -> String {
        String::new()
    }

    /// Called once every shard has closed its writer: finish what is buffered.
    ///
    /// # Errors
    /// What could not be finished.
    fn close(&self) -> Result<(), String>;
}

/// One shard's writer into a [`Sink`]. Lives on the shard's executor.
pub trait ShardSink {
    /// Buffers `message` and returns its ticket; cheap and synchronous (the sink makes it
    /// durable in the background).
    fn append(&self, message: SinkMessage<'_>) -> Ticket;

    /// Ready once `ticket`'s message, and every one before it, is durable; an error if the
    /// sink failed before that.
    fn poll_durable(&self, ticket: Ticket, cx: &mut Context<'_>) -> Poll<Result<(), String>>;

    /// Makes what is buffered durable and stops. Appends after it are not made durable.
    fn close(&self) -> LocalFuture<'_, Result<(), String>>;
}

/// The static files of the HTTP listener: `/` and everything that is not `/mqtt`, `/metrics`
/// or `/healthz`.
pub trait StaticFiles: Send + Sync {
    /// The content type and bytes of the file at `path` (without the leading `/`; `/` is
    /// asked for as `index.html`).
    fn get(&self, path: &str) -> Option<(&'static str, &'static [u8])>;
}

/// What the embedding program plugs in; [`Default`] is a plain broker.
#[derive(Clone, Default)]
pub struct Extensions {
    /// The durable sink, if any.
    pub sink: Option<Arc<dyn Sink>>,
    /// The HTTP listener's static files, if any (otherwise it answers 404 outside its own
    /// paths).
    pub static_files: Option<Arc<dyn StaticFiles>>,
    /// Retained messages the embedding program publishes at every start, `(topic, payload)`:
    /// configuration its clients read (fleetmq's cold-chain rules for the dashboards). They
    /// replace what a client retained on those topics.
    pub retained: Vec<(String, bytes::Bytes)>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("sink", &self.sink.as_ref().map(|s| s.topics()))
            .field("static_files", &self.static_files.is_some())
            .field(
                "retained",
                &self.retained.iter().map(|(t, _)| t).collect::<Vec<_>>(),
            )
            .finish()
    }
}
