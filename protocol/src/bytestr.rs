//! `ByteStr`: a UTF-8 string that shares its bytes with the packet it was cut from.

use bytes::Bytes;
use std::{fmt, ops::Deref};

/// An immutable UTF-8 string backed by [`Bytes`].
///
/// Topic names are read on every PUBLISH and fanned out to many subscribers; keeping them as a
/// slice of the received frame means decoding a PUBLISH allocates nothing and cloning a topic is a
/// reference-count increment.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteStr(Bytes);

/// Hashes as the `str` it is: `ByteStr` lends itself out as `&str` ([`Borrow`]), so a map keyed
/// by `ByteStr` is searched with a `&str`, and both must hash alike. (Deriving it hashed the
/// bytes as a `[u8]`, with a length prefix `str` does not write, and such lookups found
/// nothing.)
///
/// [`Borrow`]: std::borrow::Borrow
impl std::hash::Hash for ByteStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl ByteStr {
    /// Wraps `bytes` if they are valid UTF-8.
    ///
    /// # Errors
    /// Returns the UTF-8 error when they are not.
    pub fn from_utf8(bytes: Bytes) -> Result<ByteStr, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(ByteStr(bytes))
    }

    /// A `ByteStr` of a static string, without copying.
    pub const fn from_static(s: &'static str) -> ByteStr {
        ByteStr(Bytes::from_static(s.as_bytes()))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks (or receives a `str`) that the bytes are UTF-8, and
        // `Bytes` is immutable, so they stay valid UTF-8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives back the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ByteStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ByteStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for ByteStr {
    fn from(s: String) -> ByteStr {
        ByteStr(Bytes::from(s))
    }
}

impl From<&str> for ByteStr {
    fn from(s: &str) -> ByteStr {
        ByteStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for ByteStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ByteStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ByteStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::borrow::Borrow<str> for ByteStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::ByteStr;

    #[test]
    fn a_map_keyed_by_bytestr_is_searched_with_a_str() {
        let mut map = HashMap::new();
        map.insert(ByteStr::from("fleet/truck-1/gps"), 1);
        assert_eq!(map.get("fleet/truck-1/gps"), Some(&1));
        assert!(map.contains_key("fleet/truck-1/gps"));
        let set: HashSet<ByteStr> = [ByteStr::from("a")].into_iter().collect();
        assert!(set.contains("a"));
        assert!(!set.contains("b"));
    }
}
