//! Property tests of the codec: whatever valid packet the strategies build, at every protocol
//! level, `decode(encode(p)) == p`, `encoded_len` is exact, a frame cut short is "incomplete"
//! rather than an error, frames follow each other cleanly, and no input makes `decode` panic.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option::weighted;
use proptest::prelude::*;
use protocol::{
    decode, encode, encoded_len, Auth, ByteStr, ConnAck, Connect, DecodeError, Disconnect, Packet,
    Properties, Protocol, PubAck, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};

/// Cases per property: enough to cover every packet kind at every level many times, few enough
/// to keep the crate's debug-mode test run short.
const CASES: u32 = 512;

/// Which packet a property set is for; mirrors table 2-4 of the 5.0 spec independently of the
/// codec's own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Connect,
    ConnAck,
    Publish,
    Will,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn text() -> impl Strategy<Value = ByteStr> {
    // Any printable characters (multi-byte UTF-8 included), never U+0000.
    "\\PC{0,12}".prop_map(ByteStr::from)
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[a-zA-Z0-9/ $_é中-]{1,24}".prop_map(ByteStr::from)
}

fn filter() -> impl Strategy<Value = ByteStr> {
    // The codec leaves filter validation to the broker, so anything UTF-8 goes.
    "[a-z0-9/+#$]{0,24}".prop_map(ByteStr::from)
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn pkid() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn flag() -> impl Strategy<Value = Option<u8>> {
    weighted(0.2, 0..=1u8)
}

fn opt<S: Strategy>(s: S) -> impl Strategy<Value = Option<S::Value>> {
    weighted(0.2, s)
}

/// Any properties with spec-valid values, before restricting them to a packet kind.
fn any_properties() -> impl Strategy<Value = Properties> {
    let message = (
        flag(),
        opt(any::<u32>()),
        opt(text()),
        opt(text()),
        opt(binary()),
        vec(1..=268_435_455u32, 0..3),
        opt(any::<u32>()),
        opt(text()),
        opt(any::<u16>()),
    );
    let session = (
        opt(text()),
        opt(binary()),
        flag(),
        opt(any::<u32>()),
        flag(),
        opt(text()),
        opt(text()),
        opt(text()),
        opt(1..=u16::MAX),
    );
    let limits = (
        opt(any::<u16>()),
        opt(1..=u16::MAX),
        flag(),
        flag(),
        vec((text(), text()), 0..3),
        opt(1..=u32::MAX),
        flag(),
        flag(),
        flag(),
    );
    (message, session, limits).prop_map(|(m, s, l)| Properties {
        payload_format_indicator: m.0,
        message_expiry_interval: m.1,
        content_type: m.2,
        response_topic: m.3,
        correlation_data: m.4,
        subscription_identifiers: m.5,
        session_expiry_interval: m.6,
        assigned_client_identifier: m.7,
        server_keep_alive: m.8,
        authentication_method: s.0,
        authentication_data: s.1,
        request_problem_information: s.2,
        will_delay_interval: s.3,
        request_response_information: s.4,
        response_information: s.5,
        server_reference: s.6,
        reason_string: s.7,
        receive_maximum: s.8,
        topic_alias_maximum: l.0,
        topic_alias: l.1,
        maximum_qos: l.2,
        retain_available: l.3,
        user_properties: l.4,
        maximum_packet_size: l.5,
        wildcard_subscription_available: l.6,
        subscription_identifier_available: l.7,
        shared_subscription_available: l.8,
    })
}

/// Clears every property `kind` may not carry.
fn restrict(p: Properties, kind: Kind) -> Properties {
    use Kind::*;
    let only = |kinds: &[Kind]| kinds.contains(&kind);
    let keep = |kinds: &[Kind], ok: bool| ok && kinds.contains(&kind);
    let message = only(&[Publish, Will]);
    let reason = only(&[ConnAck, Ack, SubAck, UnsubAck, Disconnect, Auth]);
    let mut subscription_identifiers = p.subscription_identifiers;
    match kind {
        Publish => {}
        Subscribe => subscription_identifiers.truncate(1),
        _ => subscription_identifiers.clear(),
    }
    Properties {
        payload_format_indicator: p.payload_format_indicator.filter(|_| message),
        message_expiry_interval: p.message_expiry_interval.filter(|_| message),
        content_type: p.content_type.filter(|_| message),
        response_topic: p.response_topic.filter(|_| message),
        correlation_data: p.correlation_data.filter(|_| message),
        subscription_identifiers,
        session_expiry_interval: p
            .session_expiry_interval
            .filter(|_| keep(&[Connect, ConnAck, Disconnect], true)),
        assigned_client_identifier: p.assigned_client_identifier.filter(|_| kind == ConnAck),
        server_keep_alive: p.server_keep_alive.filter(|_| kind == ConnAck),
        authentication_method: p
            .authentication_method
            .filter(|_| only(&[Connect, ConnAck, Auth])),
        authentication_data: p
            .authentication_data
            .filter(|_| only(&[Connect, ConnAck, Auth])),
        request_problem_information: p.request_problem_information.filter(|_| kind == Connect),
        will_delay_interval: p.will_delay_interval.filter(|_| kind == Will),
        request_response_information: p.request_response_information.filter(|_| kind == Connect),
        response_information: p.response_information.filter(|_| kind == ConnAck),
        server_reference: p.server_reference.filter(|_| only(&[ConnAck, Disconnect])),
        reason_string: p.reason_string.filter(|_| reason),
        receive_maximum: p.receive_maximum.filter(|_| only(&[Connect, ConnAck])),
        topic_alias_maximum: p.topic_alias_maximum.filter(|_| only(&[Connect, ConnAck])),
        topic_alias: p.topic_alias.filter(|_| kind == Publish),
        maximum_qos: p.maximum_qos.filter(|_| kind == ConnAck),
        retain_available: p.retain_available.filter(|_| kind == ConnAck),
        user_properties: p.user_properties,
        maximum_packet_size: p.maximum_packet_size.filter(|_| only(&[Connect, ConnAck])),
        wildcard_subscription_available: p
            .wildcard_subscription_available
            .filter(|_| kind == ConnAck),
        subscription_identifier_available: p
            .subscription_identifier_available
            .filter(|_| kind == ConnAck),
        shared_subscription_available: p.shared_subscription_available.filter(|_| kind == ConnAck),
    }
}

/// Properties for `kind` at `version`: always empty before 5.0.
fn properties(version: Protocol, kind: Kind) -> BoxedStrategy<Properties> {
    if version.is_v5() {
        any_properties()
            .prop_map(move |p| restrict(p, kind))
            .boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

/// A 5.0 reason code byte, or success before 5.0.
fn reason(version: Protocol) -> BoxedStrategy<ReasonCode> {
    if version.is_v5() {
        any::<u8>().prop_map(ReasonCode).boxed()
    } else {
        Just(ReasonCode::SUCCESS).boxed()
    }
}

fn will(version: Protocol) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        properties(version, Kind::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: Protocol) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        any::<u16>(),
        text(),
        weighted(0.5, will(version)),
        opt(text()),
        opt(binary()),
        properties(version, Kind::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                // Before 5.0 a password needs a user name.
                let password = password.filter(|_| version.is_v5() || username.is_some());
                Packet::Connect(Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                })
            },
        )
}

fn connack(version: Protocol) -> impl Strategy<Value = Packet> {
    let reason = if version.is_v5() {
        reason(version)
    } else {
        // The 5.0 codes that 3.1.1 return codes read back as.
        prop::sample::select(vec![
            ReasonCode::SUCCESS,
            ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            ReasonCode::SERVER_UNAVAILABLE,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            ReasonCode::NOT_AUTHORIZED,
        ])
        .boxed()
    };
    (any::<bool>(), reason, properties(version, Kind::ConnAck)).prop_map(
        |(session_present, reason, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                reason,
                properties,
            })
        },
    )
}

fn publish(version: Protocol) -> impl Strategy<Value = Packet> {
    (
        qos(),
        any::<bool>(),
        any::<bool>(),
        topic_name(),
        any::<bool>(),
        pkid(),
        vec(any::<u8>(), 0..128).prop_map(Bytes::from),
        properties(version, Kind::Publish),
    )
        .prop_map(
            |(qos, dup, retain, topic, alias_only, pkid, payload, properties)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // An aliased 5.0 PUBLISH may leave the topic empty.
                let topic = if alias_only && properties.topic_alias.is_some() {
                    ByteStr::default()
                } else {
                    topic
                };
                Packet::Publish(Publish {
                    dup: dup && !at_most_once,
                    qos,
                    retain,
                    topic,
                    pkid: if at_most_once { 0 } else { pkid },
                    payload,
                    properties,
                })
            },
        )
}

fn ack(version: Protocol) -> impl Strategy<Value = Packet> {
    (
        0..4u8,
        pkid(),
        reason(version),
        properties(version, Kind::Ack),
    )
        .prop_map(|(which, pkid, reason, properties)| {
            let ack = PubAck {
                pkid,
                reason,
                properties,
            };
            match which {
                0 => Packet::PubAck(ack),
                1 => Packet::PubRec(ack),
                2 => Packet::PubRel(ack),
                _ => Packet::PubComp(ack),
            }
        })
}

fn subscription_options(version: Protocol) -> BoxedStrategy<SubscriptionOptions> {
    if version.is_v5() {
        let retain_handling = prop_oneof![
            Just(RetainHandling::SendAtSubscribe),
            Just(RetainHandling::SendIfNew),
            Just(RetainHandling::DoNotSend),
        ];
        (qos(), any::<bool>(), any::<bool>(), retain_handling)
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
            .boxed()
    }
}

fn subscribe(version: Protocol) -> impl Strategy<Value = Packet> {
    let subscription = (filter(), subscription_options(version))
        .prop_map(|(filter, options)| Subscription { filter, options });
    (
        pkid(),
        vec(subscription, 1..5),
        properties(version, Kind::Subscribe),
    )
        .prop_map(|(pkid, subscriptions, properties)| {
            Packet::Subscribe(Subscribe {
                pkid,
                subscriptions,
                properties,
            })
        })
}

fn suback(version: Protocol) -> impl Strategy<Value = Packet> {
    let code = if version.is_v5() {
        reason(version)
    } else {
        prop::sample::select(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GRANTED_QOS_1,
            ReasonCode::GRANTED_QOS_2,
            ReasonCode::UNSPECIFIED_ERROR,
        ])
        .boxed()
    };
    (pkid(), vec(code, 1..6), properties(version, Kind::SubAck)).prop_map(
        |(pkid, reasons, properties)| {
            Packet::SubAck(SubAck {
                pkid,
                reasons,
                properties,
            })
        },
    )
}

fn unsubscribe(version: Protocol) -> impl Strategy<Value = Packet> {
    (
        pkid(),
        vec(filter(), 1..5),
        properties(version, Kind::Unsubscribe),
    )
        .prop_map(|(pkid, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                pkid,
                filters,
                properties,
            })
        })
}

fn unsuback(version: Protocol) -> impl Strategy<Value = Packet> {
    let reasons = if version.is_v5() {
        vec(reason(version), 1..6).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (pkid(), reasons, properties(version, Kind::UnsubAck)).prop_map(
        |(pkid, reasons, properties)| {
            Packet::UnsubAck(UnsubAck {
                pkid,
                reasons,
                properties,
            })
        },
    )
}

fn disconnect(version: Protocol) -> impl Strategy<Value = Packet> {
    (reason(version), properties(version, Kind::Disconnect))
        .prop_map(|(reason, properties)| Packet::Disconnect(Disconnect { reason, properties }))
}

fn auth() -> impl Strategy<Value = Packet> {
    (reason(Protocol::V5), properties(Protocol::V5, Kind::Auth))
        .prop_map(|(reason, properties)| Packet::Auth(Auth { reason, properties }))
}

/// Any valid packet at `version`.
fn packet(version: Protocol) -> BoxedStrategy<Packet> {
    let common = prop_oneof![
        connect(version),
        connack(version),
        publish(version),
        ack(version),
        subscribe(version),
        suback(version),
        unsubscribe(version),
        unsuback(version),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        disconnect(version),
    ];
    if version.is_v5() {
        prop_oneof![10 => common, 1 => auth()].boxed()
    } else {
        common.boxed()
    }
}

fn version() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::V3_1),
        Just(Protocol::V3_1_1),
        Just(Protocol::V5)
    ]
}

fn versioned_packet() -> impl Strategy<Value = (Protocol, Packet)> {
    version().prop_flat_map(|version| (Just(version), packet(version)))
}

fn encoded(packet: &Packet, version: Protocol) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf).expect("valid packets encode");
    buf
}

/// A packet that decoded is valid, so it must survive an encode/decode round trip unchanged
/// (in its shortest form, which may differ from the bytes it was read from).
fn assert_reencodes(packet: &Packet, version: Protocol) {
    let version = match packet {
        Packet::Connect(connect) => connect.protocol,
        _ => version,
    };
    let mut buf = encoded(packet, version);
    assert_eq!(buf.len(), encoded_len(packet, version));
    assert_eq!(
        decode(&mut buf, version, u32::MAX).as_ref(),
        Ok(&Some(packet.clone()))
    );
}

/// Decodes until the buffer is exhausted, incomplete, or invalid; must never panic.
fn drain(bytes: &[u8], version: Protocol, max: u32) {
    let mut buf = BytesMut::from(bytes);
    loop {
        let before = buf.len();
        match decode(&mut buf, version, max) {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a decoded packet consumes bytes");
                assert_reencodes(&packet, version);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete packet consumes nothing");
                return;
            }
            Err(_) => return,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn decode_inverts_encode((version, packet) in versioned_packet()) {
        let mut buf = encoded(&packet, version);
        prop_assert_eq!(buf.len(), encoded_len(&packet, version));
        let decoded = decode(&mut buf, version, u32::MAX);
        prop_assert_eq!(decoded, Ok(Some(packet)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_strict_prefix_is_incomplete((version, packet) in versioned_packet()) {
        let frame = encoded(&packet, version);
        for len in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..len]);
            prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(None));
            prop_assert_eq!(buf.len(), len);
        }
    }

    #[test]
    fn concatenated_packets_decode_in_order(
        (version, first, second) in version()
            .prop_flat_map(|v| (Just(v), packet(v), packet(v)))
    ) {
        let mut buf = encoded(&first, version);
        buf.extend_from_slice(&encoded(&second, version));
        prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(Some(first)));
        prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(Some(second)));
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decode(&mut buf, version, u32::MAX), Ok(None));
    }

    #[test]
    fn maximum_packet_size_is_inclusive((version, packet) in versioned_packet()) {
        let frame = encoded(&packet, version);
        let size = frame.len();
        let mut buf = frame.clone();
        let max = u32::try_from(size).unwrap();
        prop_assert!(matches!(decode(&mut buf, version, max), Ok(Some(_))));
        let mut buf = frame;
        let result = decode(&mut buf, version, max - 1);
        prop_assert_eq!(result, Err(DecodeError::PacketTooLarge { size, max: max - 1 }));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..256), max in 0..512u32) {
        for version in [Protocol::V3_1, Protocol::V3_1_1, Protocol::V5] {
            drain(&bytes, version, u32::MAX);
            drain(&bytes, version, max);
        }
    }

    #[test]
    fn corrupted_frames_never_panic(
        (version, packet) in versioned_packet(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        // Random bytes rarely get past the fixed header; corrupting real frames exercises the
        // field parsers.
        let mut frame = encoded(&packet, version).to_vec();
        for (index, value) in flips {
            let i = index.index(frame.len());
            frame[i] = value;
        }
        drain(&frame, version, u32::MAX);
    }
}
