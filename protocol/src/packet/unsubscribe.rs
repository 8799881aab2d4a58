//! UNSUBSCRIBE (3.1.1 section 3.10, 5.0 section 3.10).
//!
//! Like SUBSCRIBE, filters are left for the broker to judge; only their UTF-8 is checked here.

use bytes::{BufMut, Bytes, BytesMut};

use crate::properties::Scope;
use crate::{wire, ByteStr, DecodeError, EncodeError, Properties, Protocol};

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub pkid: u16,
    /// At least one filter.
    pub filters: Vec<ByteStr>,
    /// Properties (5.0).
    pub properties: Properties,
}

impl Unsubscribe {
    pub(super) fn read(body: &mut Bytes, version: Protocol) -> Result<Unsubscribe, DecodeError> {
        let pkid = super::read_pkid(body)?;
        let properties = if version.is_v5() {
            Properties::read(body, Scope::Unsubscribe)?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !body.is_empty() {
            filters.push(wire::read_string(body)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
        }
        Ok(Unsubscribe {
            pkid,
            filters,
            properties,
        })
    }

    pub(super) fn body_len(&self, version: Protocol) -> usize {
        let properties = if version.is_v5() {
            self.properties.encoded_len(Scope::Unsubscribe)
        } else {
            0
        };
        let filters: usize = self
            .filters
            .iter()
            .map(|filter| wire::prefixed_len(filter.len()))
            .sum();
        2 + properties + filters
    }

    pub(super) fn write(&self, version: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
        buf.put_u16(self.pkid);
        if version.is_v5() {
            self.properties.write(Scope::Unsubscribe, buf)?;
        }
        for filter in &self.filters {
            wire::write_string(buf, filter, "topic filter")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Packet;
    use super::*;

    #[test]
    fn v3_1_1_unsubscribe() {
        let bytes = [
            0xA2, 0x0A, // UNSUBSCRIBE, remaining length 10
            0x00, 0x03, // packet identifier 3
            0x00, 0x01, b'a', // filter "a"
            0x00, 0x03, b'b', b'/', b'+', // filter "b/+"
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            pkid: 3,
            filters: vec![ByteStr::from_static("a"), ByteStr::from_static("b/+")],
            properties: Properties::default(),
        });
        assert_wire(&bytes, Protocol::V3_1_1, &packet);
    }

    #[test]
    fn v5_unsubscribe_with_user_property() {
        let bytes = [
            0xA2, 0x0D, // UNSUBSCRIBE, remaining length 13
            0x00, 0x03, // packet identifier 3
            0x07, // property length 7
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property ("k", "v")
            0x00, 0x01, b'a', // filter "a"
        ];
        let packet = Packet::Unsubscribe(Unsubscribe {
            pkid: 3,
            filters: vec![ByteStr::from_static("a")],
            properties: Properties {
                user_properties: vec![(ByteStr::from_static("k"), ByteStr::from_static("v"))],
                ..Properties::default()
            },
        });
        assert_wire(&bytes, Protocol::V5, &packet);
    }

    #[test]
    fn unsubscribe_without_filters_is_a_protocol_error() {
        let result = decode_body(0xA2, &[0x00, 0x03], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn unsubscribe_packet_identifier_0_is_a_protocol_error() {
        let result = decode_body(0xA2, &[0x00, 0x00, 0x00, 0x01, b'a'], Protocol::V3_1_1);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }

    #[test]
    fn unsubscribe_property_not_allowed_is_a_protocol_error() {
        let body = [0x00, 0x03, 0x02, 0x0B, 0x01, 0x00, 0x01, b'a'];
        let result = decode_body(0xA2, &body, Protocol::V5);
        assert!(matches!(result, Err(DecodeError::Protocol(_))));
    }
}
