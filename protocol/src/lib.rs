//! The MQTT 3.1, 3.1.1 and 5.0 wire protocol: packets, properties, reason codes, topics.
//!
//! No I/O and no runtime: the broker, the simulator and the standalone ingest all frame their
//! byte streams with [`decode`] and [`encode`].
//!
//! # Layout
//! - [`packet`]: the [`Packet`] enum, one module per packet kind, framing ([`decode`], [`encode`]).
//! - [`properties`]: MQTT 5.0 properties and which packet may carry which.
//! - [`topic`]: topic name and filter validation, `$share/` parsing, matching.
//! - [`types`]: [`Protocol`], [`QoS`], [`ReasonCode`].
//! - [`bytestr`]: [`ByteStr`], UTF-8 text sharing the receive buffer.
//! - [`error`]: [`DecodeError`], [`EncodeError`].
//! - `wire` (private): integers, variable byte integers, strings and binary data.
//!
//! # Example
//! ```
//! use bytes::BytesMut;
//! use protocol::{decode, encode, Packet, Protocol};
//!
//! let mut buf = BytesMut::new();
//! encode(&Packet::PingReq, Protocol::V5, &mut buf).unwrap();
//! assert_eq!(&buf[..], &[0xC0, 0x00]);
//! let packet = decode(&mut buf, Protocol::V5, 1024).unwrap();
//! assert_eq!(packet, Some(Packet::PingReq));
//! ```

pub mod bytestr;
pub mod error;
pub mod packet;
pub mod properties;
pub mod topic;
pub mod types;
mod wire;

pub use bytestr::ByteStr;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    decode, encode, encode_publish, encoded_len, Auth, ConnAck, Connect, Disconnect, Packet,
    PubAck, Publish, RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will,
};
pub use properties::Properties;
pub use topic::{
    matches, parse_shared, validate_topic_filter, validate_topic_name, SharedFilter, TopicError,
};
pub use types::{Protocol, QoS, ReasonCode};

/// The largest remaining length MQTT's variable byte integer can express (256 MiB - 1).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;
