//! A small MQTT client on glommio, built on the `protocol` codec: what a vehicle needs and no
//! more.
//!
//! One [`Connection`] is three cooperating tasks-worth of state: the caller publishes (waiting
//! for a slot in the in-flight window at QoS 1 and 2), a writer task flushes everything queued
//! since its last write in one go (publishes, acks, PUBREL, pings), and a reader task decodes
//! acknowledgements and incoming messages. Dropping a connection cancels both tasks and closes
//! the socket without DISCONNECT, which is exactly what a vehicle losing its network looks like
//! to the broker: it publishes the Last Will.
//!
//! # Layout
//! - [`url`]: `mqtt://host:port` and `mqtts://host:port`.
//! - [`tls`]: rustls client configuration (CA file, client certificate).
//! - [`stream`]: TCP or TLS behind one `AsyncRead + AsyncWrite` type.
//! - [`client`]: [`Connection`], [`ClientOptions`], [`Handler`].

pub mod client;
pub mod stream;
pub mod tls;
pub mod url;

pub use client::{ClientError, ClientOptions, Connection, Handler, Unacked};
pub use url::BrokerUrl;
