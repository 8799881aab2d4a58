//! SUBSCRIBE (3.1.1 section 3.8, 5.0 section 3.8).
//!
//! Topic filters are only checked for being UTF-8 here: an invalid filter is answered per filter
//! in the SUBACK (0x8F) by the broker, not by closing the connection.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, ByteStr, DecodeError, EncodeError, Properties, Protocol, QoS};

/// Retain handling option of a 5.0 subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe,
    /// 1: send retained messages only if the subscription did not already exist.
    SendIfNew,
    /// 2: do not send retained messages.
    DoNotSend,
}

/// Subscription options byte (3.1.1 only uses the QoS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0): do not send the client its own publications.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the RETAIN flag when forwarding.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic filter, possibly `$share/{group}/{filter}`.
    pub filter: ByteStr,
    /// Its options.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one filter.
    pub subscriptions: Vec<Subscription>,
    /// Properties (5.0): subscription identifier, user properties.
    pub properties: Properties,
}

/// Subscription options bits (5.0 figure 3-22).
const QOS_MASK: u8 = 0b0000_0011;
const NO_LOCAL: u8 = 0b0000_0100;
const RETAIN_AS_PUBLISHED: u8 = 0b0000_1000;
const RETAIN_HANDLING_SHIFT: u8 = 4;
const RETAIN_HANDLING_MASK: u8 = 0b0011_0000;
/// Bits 6 and 7, reserved in 5.0.
const V5_RESERVED: u8 = 0b1100_0000;

impl SubscriptionOptions {
    /// Parses the options byte at `version`: 3.1.1 knows only the QoS bits.
    fn from_byte(byte: u8, version: Protocol) -> Result<SubscriptionOptions, DecodeError> {
        let reserved = if version.is_v5() {
            V5_RESERVED
        } else {
            !QOS_MASK
        };
        if byte & reserved != 0 {
            return Err(DecodeError::Malformed(
                "reserved subscription option bits are set",
            ));
        }
        let qos = QoS::from_u8(byte & QOS_MASK)
            .ok_or(DecodeError::Malformed("subscription with QoS 3"))?;
        let retain_handling = match (byte & RETAIN_HANDLING_MASK) >> RETAIN_HANDLING_SHIFT {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::Protocol("retain handling 3")),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & NO_LOCAL != 0,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    /// The options byte at `version` (5.0-only options are dropped under 3.1.1).
    fn to_byte(self, version: Protocol) -> u8 {
        let mut byte = self.qos as u8;
        if version.is_v5() {
            if self.no_local {
                byte |= NO_LOCAL;
            }
            if self.retain_as_published {
                byte |= RETAIN_AS_PUBLISHED;
            }
            let retain_handling = match self.retain_handling {
                RetainHandling::SendAtSubscribe => 0,
                RetainHandling::SendIfNew => 1,
                RetainHandling::DoNotSend => 2,
            };
            byte |= retain_handling << RETAIN_HANDLING_SHIFT;
        }
        byte
    }
}

impl Subscribe {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<Subscribe, DecodeError> {
        let pkid = super::read_pkid(body)?;
        let properties = if version.is_v5() {
            Properties::read(body, Scope::Subscribe)?
        } else {
            Properties::default()
        };
        let mut subscriptions = Vec::new();
        while !body.is_empty() {
            let filter = wire::read_string(body)?;
            let options = SubscriptionOptions::from_byte(wire::read_u8(body)?, version)?;
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
        }
        Ok(Subscribe {
            pkid,
            subscriptions,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len(Scope::Subscribe);
        }
        for subscription in &self.subscriptions {
            len += wire::prefixed_len(subscription.filter.len()) + 1;
        }
        len
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(Scope::Subscribe, buf)?;
        }
        for subscription in &self.subscriptions {
            wire::write_string(buf, &subscription.filter, "topic filter")?;
            buf.put_u8(subscription.options.to_byte(version));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;

    fn subscription(filter: &'static str, options: SubscriptionOptions) -> Subscription {
        Subscription {
            filter: ByteStr::from_static(filter),
            options,
        }
    }

    fn qos(qos: QoS) -> SubscriptionOptions {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    #[test]
    fn v3_1_1_subscribe_two_filters() {
        let bytes = [
            0x82, 0x0E, // SUBSCRIBE, remaining length 14
            0x00, 0x01, // packet identifier 1
            0x00, 0x03, b'a', b'/', b'b', // filter "a/b"
            0x01, // QoS 1
            0x00, 0x03, b'c', b'/', b'#', // filter "c/#"
            0x02, // QoS 2
        ];
        let packet = Packet::Subscribe(Subscribe {
            pkid: 1,
            subscriptions: vec![
                subscription("a/b", qos(QoS::AtLeastOnce)),
                subscription("c/#", qos(QoS::ExactlyOnce)),
            ],
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v5_subscribe_with_options_and_identifier() {
        let bytes = [
            0x82, 0x09, // SUBSCRIBE, remaining length 9
            0x00, 0x02, // packet identifier 2
            0x02, // property length 2
            0x0B, 0x05, // subscription identifier 5
            0x00, 0x01, b'a', // filter "a"
            0x2E, // retain handling 2, retain as published, no local, QoS 2
        ];
        let packet = Packet::Subscribe(Subscribe {
            pkid: 2,
            subscriptions: vec![subscription(
                "a",
                SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties: Properties {
                subscription_identifiers: vec![5],
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn invalid_filters_are_left_to_the_broker() {
        let body = [
            0x00, 0x01, 0x00, 0x05, b'a', b'/', b'#', b'/', b'b', 0x00, 0x00, 0x00, 0x00,
        ];
        let Packet::Subscribe(subscribe) = decode_body(0x82, &body, Protocol::V3_1_1).unwrap()
        else {
            panic!("not a SUBSCRIBE")
        };
        assert_eq!(subscribe.subscriptions[0].filter, "a/#/b");
        assert_eq!(subscribe.subscriptions[1].filter, "");
    }

    #[test]
    fn subscribe_without_filters_is_a_protocol_error() {
        let result = decode_body(0x82, &[0x00, 0x01], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
        let result = decode_body(0x82, &[0x00, 0x01, 0x00], Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn subscribe_packet_identifier_0_is_a_protocol_error() {
        let result = decode_body(
            0x82,
            &[0x00, 0x00, 0x00, 0x01, b'a', 0x00],
            Protocol::V3_1_1,
        );
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn v3_1_1_subscription_options_upper_bits_are_malformed() {
        for options in [0x04, 0x08, 0x20, 0x80] {
            let body = [0x00, 0x01, 0x00, 0x01, b'a', options];
            let result = decode_body(0x82, &body, Protocol::V3_1_1);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{options:#04X}"
            );
        }
    }

    #[test]
    fn v5_subscription_options_reserved_bits_are_malformed() {
        for options in [0x40, 0x80] {
            let body = [0x00, 0x01, 0x00, 0x00, 0x01, b'a', options];
            let result = decode_body(0x82, &body, Protocol::V5);
            assert!(
                matches!(result, Err(DecodeError::Malformed(_))),
                "{options:#04X}"
            );
        }
    }

    #[test]
    fn retain_handling_3_is_a_protocol_error() {
        let body = [0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x30];
        let result = decode_body(0x82, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn subscription_qos_3_is_malformed() {
        let result = decode_body(
            0x82,
            &[0x00, 0x01, 0x00, 0x01, b'a', 0x03],
            Protocol::V3_1_1,
        );
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
        let result = decode_body(
            0x82,
            &[0x00, 0x01, 0x00, 0x00, 0x01, b'a', 0x03],
            Protocol::V5,
        );
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn two_subscription_identifiers_in_subscribe_are_a_protocol_error() {
        let body = [
            0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, b'a', 0x00,
        ];
        let result = decode_body(0x82, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn filter_without_options_byte_is_malformed() {
        let result = decode_body(0x82, &[0x00, 0x01, 0x00, 0x01, b'a'], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn v3_1_1_encode_keeps_only_the_qos_option() {
        let packet = Packet::Subscribe(Subscribe {
            pkid: 1,
            subscriptions: vec![subscription(
                "a",
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::SendIfNew,
                },
            )],
            properties: Properties::default(),
        });
        let bytes = encode_vec(&packet, Protocol::V3_1_1);
        assert_eq!(bytes, [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b'a', 0x01]);
    }
}
