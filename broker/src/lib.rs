//! fleetmq's MQTT broker: MQTT 3.1, 3.1.1 and 5.0, thread-per-core on glommio (io_uring).
//!
//! # Execution model
//! One glommio executor per core (a *shard*). Every shard binds the same port with SO_REUSEPORT
//! and owns the connections the kernel gives it, with their sessions and queues; its state is
//! single-threaded (`Rc<RefCell<_>>`), so the hot path takes no lock. Shards talk only through
//! one glommio channel mesh carrying `mesh::ShardMsg`: subscription and retained-message
//! replication, batched deliveries, and the client-id claim protocol that moves a session to
//! the shard where its client reconnected.
//!
//! # Layout
//! - `server`: [`start`] binds listeners and runs the shards; [`BrokerHandle`] stops them.
//! - `listeners`: one SO_REUSEPORT socket per shard on each address, port 0 resolved once.
//! - `shard`: a shard's state and everything it does, one file per concern: routing,
//!   retained messages, claims, mesh dispatch, the sweeper, delivery, back-pressure, session
//!   handoff, Wills.
//! - `connection`: the per-connection MQTT state machine (reader and writer tasks).
//! - `session`: session state that survives a connection and moves between shards.
//! - [`trie`]: the subscription table (`+`, `#`, `$share/`).
//! - `mesh`: messages between shards and the per-peer queues that never block a shard.
//! - `message`: messages and deliveries, shared (`Bytes`), never copied per subscriber.
//! - `outbox`: a connection's outbound queue and close signal.
//! - `persist`: the per-shard state log and snapshots.
//! - `recovery`: rebuilding every shard's state from its log before accepting clients.
//! - [`metrics`]: per-shard counters and their snapshots (Prometheus text).
//! - [`sink`]: what an embedding program plugs in: a durable sink for archived topics
//!   (fleetmq's Parquet archive) and static HTTP files (its dashboard).
//! - `http`: the HTTP listener: static files, MQTT over WebSocket at `/mqtt`, `/metrics`.
//! - `sys`: the `$SYS/broker/...` topics.
//! - `board`: where shards post their figures, and fresh figures on request.
//! - [`security`]: password file, certificate identity, ACLs, TLS; reloadable.
//! - [`config`]: [`Config`] and its limits.
//!
//! # Example
//! ```no_run
//! let config = broker::Config::default();
//! let handle = broker::start(config).expect("broker starts");
//! println!("listening on {}", handle.mqtt_addr());
//! handle.shutdown();
//! handle.join().expect("clean stop");
//! ```

mod board;
mod clock;
pub mod config;
mod connection;
mod error;
mod http;
mod listeners;
mod mesh;
mod message;
pub mod metrics;
mod net;
mod outbox;
mod outgoing;
mod persist;
mod recovery;
pub mod security;
mod server;
mod session;
mod shard;
pub mod sink;
mod sys;
pub mod trie;

pub use config::{Config, Limits};
pub use error::BrokerError;
pub use metrics::Snapshot;
pub use net::SocketIo;
pub use server::{start, start_with, BrokerHandle};
pub use sink::{Extensions, ShardSink, Sink, StaticFiles};
