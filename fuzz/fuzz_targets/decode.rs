//! Fuzzes `protocol::decode` at every protocol level.
//!
//! Run with `cargo +nightly fuzz run decode` from this directory. The first input byte picks the
//! maximum packet size, so the "too large" path is fuzzed as well; the rest is a byte stream
//! decoded packet after packet until it is incomplete or invalid. Every packet that decodes must
//! encode again, and its encoding must decode to the same packet.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use protocol::{decode, encode, encoded_len, Packet, Protocol};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, stream)) = data.split_first() else {
        return;
    };
    let max_packet_size = if limit == 0 {
        u32::MAX
    } else {
        u32::from(limit) * 4
    };
    for version in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
        let mut buf = BytesMut::from(stream);
        loop {
            let before = buf.len();
            match decode(&mut buf, version, max_packet_size) {
                Ok(Some(packet)) => {
                    assert!(buf.len() < before, "a decoded packet consumes bytes");
                    reencode(&packet, version);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "an incomplete packet consumes nothing");
                    break;
                }
                Err(_) => break,
            }
        }
    }
});

/// A decoded packet is valid, so it must survive an encode/decode round trip unchanged.
fn reencode(packet: &Packet, version: Protocol) {
    // CONNECT is written at its own level; decode it at that level too.
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("a decoded packet encodes");
    assert_eq!(buf.len(), encoded_len(packet, version));
    let again = decode(&mut buf, version, u32::MAX).expect("re-encoded packet decodes");
    assert_eq!(again.as_ref(), Some(packet));
}
