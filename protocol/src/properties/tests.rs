//! Property list round trips, scopes, ordering and value rules.

use bytes::{Bytes, BytesMut};

use super::codec::MAX_SUBSCRIPTION_IDENTIFIER;
use super::scope::id;
use super::*;
use crate::{DecodeError, EncodeError};

const SCOPES: [Scope; 11] = [
    Scope::Connect,
    Scope::ConnAck,
    Scope::Publish,
    Scope::Will,
    Scope::Ack,
    Scope::Subscribe,
    Scope::SubAck,
    Scope::Unsubscribe,
    Scope::UnsubAck,
    Scope::Disconnect,
    Scope::Auth,
];

fn s(value: &'static str) -> Option<ByteStr> {
    Some(ByteStr::from_static(value))
}

/// Every property set, with values the spec allows.
fn full() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(2),
        content_type: s("text/plain"),
        response_topic: s("reply/here"),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        subscription_identifiers: vec![11],
        session_expiry_interval: Some(17),
        assigned_client_identifier: s("assigned"),
        server_keep_alive: Some(19),
        authentication_method: s("SCRAM-SHA-1"),
        authentication_data: Some(Bytes::from_static(b"data")),
        request_problem_information: Some(0),
        will_delay_interval: Some(24),
        request_response_information: Some(1),
        response_information: s("info"),
        server_reference: s("other:1883"),
        reason_string: s("because"),
        receive_maximum: Some(33),
        topic_alias_maximum: Some(34),
        topic_alias: Some(35),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: vec![(ByteStr::from_static("k"), ByteStr::from_static("v"))],
        maximum_packet_size: Some(39),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
    }
}

/// `props` without the properties `scope` does not allow.
fn restrict(props: &Properties, scope: Scope) -> Properties {
    fn keep<T: Clone>(scope: Scope, id: u8, value: &Option<T>) -> Option<T> {
        value.clone().filter(|_| scope.allows(id))
    }
    let p = props;
    Properties {
        payload_format_indicator: keep(
            scope,
            id::PAYLOAD_FORMAT_INDICATOR,
            &p.payload_format_indicator,
        ),
        message_expiry_interval: keep(
            scope,
            id::MESSAGE_EXPIRY_INTERVAL,
            &p.message_expiry_interval,
        ),
        content_type: keep(scope, id::CONTENT_TYPE, &p.content_type),
        response_topic: keep(scope, id::RESPONSE_TOPIC, &p.response_topic),
        correlation_data: keep(scope, id::CORRELATION_DATA, &p.correlation_data),
        subscription_identifiers: if scope.allows(id::SUBSCRIPTION_IDENTIFIER) {
            p.subscription_identifiers.clone()
        } else {
            Vec::new()
        },
        session_expiry_interval: keep(
            scope,
            id::SESSION_EXPIRY_INTERVAL,
            &p.session_expiry_interval,
        ),
        assigned_client_identifier: keep(
            scope,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            &p.assigned_client_identifier,
        ),
        server_keep_alive: keep(scope, id::SERVER_KEEP_ALIVE, &p.server_keep_alive),
        authentication_method: keep(scope, id::AUTHENTICATION_METHOD, &p.authentication_method),
        authentication_data: keep(scope, id::AUTHENTICATION_DATA, &p.authentication_data),
        request_problem_information: keep(
            scope,
            id::REQUEST_PROBLEM_INFORMATION,
            &p.request_problem_information,
        ),
        will_delay_interval: keep(scope, id::WILL_DELAY_INTERVAL, &p.will_delay_interval),
        request_response_information: keep(
            scope,
            id::REQUEST_RESPONSE_INFORMATION,
            &p.request_response_information,
        ),
        response_information: keep(scope, id::RESPONSE_INFORMATION, &p.response_information),
        server_reference: keep(scope, id::SERVER_REFERENCE, &p.server_reference),
        reason_string: keep(scope, id::REASON_STRING, &p.reason_string),
        receive_maximum: keep(scope, id::RECEIVE_MAXIMUM, &p.receive_maximum),
        topic_alias_maximum: keep(scope, id::TOPIC_ALIAS_MAXIMUM, &p.topic_alias_maximum),
        topic_alias: keep(scope, id::TOPIC_ALIAS, &p.topic_alias),
        maximum_qos: keep(scope, id::MAXIMUM_QOS, &p.maximum_qos),
        retain_available: keep(scope, id::RETAIN_AVAILABLE, &p.retain_available),
        user_properties: p.user_properties.clone(),
        maximum_packet_size: keep(scope, id::MAXIMUM_PACKET_SIZE, &p.maximum_packet_size),
        wildcard_subscription_available: keep(
            scope,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            &p.wildcard_subscription_available,
        ),
        subscription_identifier_available: keep(
            scope,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            &p.subscription_identifier_available,
        ),
        shared_subscription_available: keep(
            scope,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            &p.shared_subscription_available,
        ),
    }
}

fn write(props: &Properties, scope: Scope) -> BytesMut {
    let mut buf = BytesMut::new();
    props.write(scope, &mut buf).unwrap();
    assert_eq!(buf.len(), props.encoded_len(scope));
    buf
}

#[test]
fn every_scope_round_trips_exactly_its_allowed_properties() {
    let full = full();
    for scope in SCOPES {
        let mut bytes = write(&full, scope).freeze();
        let read = Properties::read(&mut bytes, scope).unwrap();
        assert!(bytes.is_empty());
        assert_eq!(read, restrict(&full, scope), "{scope:?}");
    }
}

#[test]
fn the_allowed_sets_follow_table_2_4() {
    let allowed = |id| SCOPES.iter().filter(|s| s.allows(id)).count();
    assert_eq!(allowed(id::USER_PROPERTY), SCOPES.len());
    assert_eq!(allowed(id::REASON_STRING), 6);
    assert!(Scope::Will.allows(id::WILL_DELAY_INTERVAL));
    assert!(!Scope::Publish.allows(id::WILL_DELAY_INTERVAL));
    assert!(Scope::Publish.allows(id::TOPIC_ALIAS));
    assert!(!Scope::Will.allows(id::SUBSCRIPTION_IDENTIFIER));
    assert!(!Scope::Connect.allows(id::REASON_STRING));
    assert!(!Scope::Unsubscribe.allows(id::REASON_STRING));
}

#[test]
fn encode_orders_properties_by_identifier() {
    let props = Properties {
        user_properties: vec![
            (ByteStr::from_static("b"), ByteStr::from_static("2")),
            (ByteStr::from_static("a"), ByteStr::from_static("1")),
        ],
        content_type: s("t"),
        message_expiry_interval: Some(9),
        ..Properties::default()
    };
    let bytes = write(&props, Scope::Publish);
    assert_eq!(
        &bytes[..],
        &[
            0x17, // property length 23
            0x02, 0x00, 0x00, 0x00, 0x09, // message expiry interval 9
            0x03, 0x00, 0x01, b't', // content type "t"
            0x26, 0x00, 0x01, b'b', 0x00, 0x01, b'2', // user property ("b", "2")
            0x26, 0x00, 0x01, b'a', 0x00, 0x01, b'1', // user property ("a", "1")
        ]
    );
    let read = Properties::read(&mut bytes.freeze(), Scope::Publish).unwrap();
    assert_eq!(read, props);
}

#[test]
fn encode_leaves_out_properties_the_packet_may_not_carry() {
    let props = Properties {
        topic_alias: Some(3),
        reason_string: s("r"),
        ..Properties::default()
    };
    let bytes = write(&props, Scope::Ack);
    assert_eq!(&bytes[..], &[0x04, 0x1F, 0x00, 0x01, b'r']);
    assert_eq!(props.body_len(Scope::Unsubscribe), 0);
}

#[test]
fn subscription_identifiers_repeat_only_in_publish() {
    let bytes = [0x04, 0x0B, 0x01, 0x0B, 0x02];
    let read = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Publish).unwrap();
    assert_eq!(read.subscription_identifiers, [1, 2]);
    let result = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Subscribe);
    assert!(matches!(result, Err(DecodeError::Protocol(_))));
}

#[test]
fn request_information_flags_other_than_0_or_1_are_a_protocol_error() {
    for id in [
        id::REQUEST_PROBLEM_INFORMATION,
        id::REQUEST_RESPONSE_INFORMATION,
    ] {
        let bytes = [0x02, id, 0x02];
        let result = Properties::read(&mut Bytes::copy_from_slice(&bytes), Scope::Connect);
        assert!(matches!(result, Err(DecodeError::Protocol(_))), "{id:#04X}");
    }
}

#[test]
fn subscription_identifier_over_the_maximum_is_refused_on_encode() {
    let props = Properties {
        subscription_identifiers: vec![MAX_SUBSCRIPTION_IDENTIFIER + 1],
        ..Properties::default()
    };
    let mut buf = BytesMut::new();
    let result = props.write(Scope::Publish, &mut buf);
    assert!(matches!(result, Err(EncodeError::Unsupported(_))));
}

#[test]
fn string_property_over_65535_bytes_is_too_long() {
    let props = Properties {
        reason_string: Some(ByteStr::from("r".repeat(65_536))),
        ..Properties::default()
    };
    let mut buf = BytesMut::new();
    let result = props.write(Scope::Ack, &mut buf);
    assert_eq!(result, Err(EncodeError::FieldTooLong("reason string")));
}
