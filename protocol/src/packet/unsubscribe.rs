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
