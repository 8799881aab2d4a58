//! Topic names, topic filters, shared subscriptions and matching (MQTT 5.0 section 4.7/4.8).
//!
//! Names are what PUBLISH carries (no wildcards); filters are what SUBSCRIBE carries (`+` for
//! one level, `#` for the rest). Matching walks both level by level without allocating, since it
//! runs for every subscription a router has to test against every message.

/// Why a topic name or filter is invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Empty topic name or filter.
    #[error("topic is empty")]
    Empty,
    /// Longer than 65,535 bytes.
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    /// Contains U+0000.
    #[error("topic contains a null character")]
    NullCharacter,
    /// A topic name (PUBLISH, Will) contains `+` or `#`.
    #[error("topic name contains a wildcard")]
    WildcardInName,
    /// `#` is not the last level, or a wildcard shares a level with other characters.
    #[error("wildcard must occupy a whole level ('#' only as the last one)")]
    MisplacedWildcard,
    /// `$share/` without a valid group name and filter.
    #[error("shared subscription must be $share/{{group}}/{{filter}} with a group without '+', '#' or '/'")]
    InvalidShare,
}

/// The longest topic a two-byte length prefix can carry.
const MAX_LEN: usize = 65_535;

/// The prefix of a shared subscription (5.0 section 4.8.2).
const SHARE_PREFIX: &str = "$share/";

/// Checks the length rules every name and filter shares.
fn check_length(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > MAX_LEN {
        Err(TopicError::TooLong)
    } else {
        Ok(())
    }
}

/// Checks a topic name as used in PUBLISH and Will: non-empty, no wildcards, no U+0000.
///
/// ```
/// use protocol::{validate_topic_name, TopicError};
///
/// assert_eq!(validate_topic_name("fleet/truck-7/gps"), Ok(()));
/// assert_eq!(validate_topic_name("/"), Ok(()));
/// assert_eq!(validate_topic_name("fleet/+/gps"), Err(TopicError::WildcardInName));
/// assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
/// ```
///
/// # Errors
/// The first rule it breaks.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    check_length(topic)?;
    match topic.bytes().find(|b| matches!(b, 0 | b'+' | b'#')) {
        None => Ok(()),
        Some(0) => Err(TopicError::NullCharacter),
        Some(_) => Err(TopicError::WildcardInName),
    }
}

/// Checks a topic filter as used in SUBSCRIBE/UNSUBSCRIBE, including `$share/{group}/{filter}`.
///
/// ```
/// use protocol::{validate_topic_filter, TopicError};
///
/// assert_eq!(validate_topic_filter("fleet/+/gps"), Ok(()));
/// assert_eq!(validate_topic_filter("fleet/#"), Ok(()));
/// assert_eq!(validate_topic_filter("$share/ingest/fleet/#"), Ok(()));
/// assert_eq!(validate_topic_filter("fleet/#/gps"), Err(TopicError::MisplacedWildcard));
/// assert_eq!(validate_topic_filter("fleet/tr+"), Err(TopicError::MisplacedWildcard));
/// assert_eq!(validate_topic_filter("$share/ingest"), Err(TopicError::InvalidShare));
/// ```
///
/// # Errors
/// The first rule it breaks.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    check_length(filter)?;
    match parse_shared(filter)? {
        Some(shared) => validate_plain_filter(shared.filter),
        None => validate_plain_filter(filter),
    }
}

/// Checks a non-empty filter level by level.
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.as_bytes().contains(&0) {
            return Err(TopicError::NullCharacter);
        }
        let whole_plus = level == "+";
        let last_hash = level == "#" && levels.peek().is_none();
        if !whole_plus && !last_hash && level.contains(['+', '#']) {
            return Err(TopicError::MisplacedWildcard);
        }
    }
    Ok(())
}

/// A `$share/{group}/{filter}` subscription split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedFilter<'a> {
    /// The share group name.
    pub group: &'a str,
    /// The filter the group subscribes to.
    pub filter: &'a str,
}

/// Splits `$share/{group}/{filter}`; `Ok(None)` for an ordinary filter.
///
/// Only the shape is checked here (a group without wildcards, a non-empty filter);
/// [`validate_topic_filter`] also checks the filter itself.
///
/// ```
/// use protocol::{parse_shared, SharedFilter};
///
/// assert_eq!(
///     parse_shared("$share/ingest/fleet/+/gps"),
///     Ok(Some(SharedFilter { group: "ingest", filter: "fleet/+/gps" }))
/// );
/// assert_eq!(parse_shared("fleet/+/gps"), Ok(None));
/// assert!(parse_shared("$share//fleet").is_err());
/// ```
///
/// # Errors
/// [`TopicError::InvalidShare`] when it starts with `$share/` but is not a valid shared filter.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let (group, filter) = rest.split_once('/').ok_or(TopicError::InvalidShare)?;
    if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
        return Err(TopicError::InvalidShare);
    }
    Ok(Some(SharedFilter { group, filter }))
}

/// True when `topic` (a valid topic name) matches `filter` (a valid, non-shared filter).
///
/// `+` matches one level, `#` the parent level and all below it; a filter that starts with a
/// wildcard does not match topics that start with `$` (5.0 section 4.7.2).
///
/// ```
/// use protocol::matches;
///
/// assert!(matches("sport/tennis/+", "sport/tennis/player1"));
/// assert!(matches("sport/#", "sport"));
/// assert!(matches("+/+", "/finance"));
/// assert!(!matches("sport/+", "sport/tennis/player1"));
/// assert!(!matches("#", "$SYS/uptime"));
/// assert!(matches("$SYS/#", "$SYS/uptime"));
/// ```
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_name_rules() {
        assert_eq!(validate_topic_name("a/b/c"), Ok(()));
        assert_eq!(validate_topic_name("$SYS/x"), Ok(()));
        assert_eq!(validate_topic_name(" "), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a+b"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
        let long = "a".repeat(65_536);
        assert_eq!(validate_topic_name(&long), Err(TopicError::TooLong));
        assert_eq!(validate_topic_name(&long[1..]), Ok(()));
    }

    #[test]
    fn topic_filter_rules() {
        for ok in [
            "#", "+", "/", "+/+", "a/+/b", "a/b/#", "/#", "+/#", "$SYS/#", "a//b", "$share",
        ] {
            assert_eq!(validate_topic_filter(ok), Ok(()), "{ok}");
        }
        for (bad, error) in [
            ("", TopicError::Empty),
            ("a/#/b", TopicError::MisplacedWildcard),
            ("a#", TopicError::MisplacedWildcard),
            ("a/b#", TopicError::MisplacedWildcard),
            ("a/+b", TopicError::MisplacedWildcard),
            ("++", TopicError::MisplacedWildcard),
            ("##", TopicError::MisplacedWildcard),
            ("a/\0", TopicError::NullCharacter),
        ] {
            assert_eq!(validate_topic_filter(bad), Err(error), "{bad}");
        }
        let long = "a".repeat(65_536);
        assert_eq!(validate_topic_filter(&long), Err(TopicError::TooLong));
    }

    #[test]
    fn shared_filter_rules() {
        assert_eq!(
            parse_shared("$share/g/a/b"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "a/b"
            }))
        );
        assert_eq!(
            parse_shared("$share/g/#"),
            Ok(Some(SharedFilter {
                group: "g",
                filter: "#"
            }))
        );
        assert_eq!(parse_shared("$sharex/g/a"), Ok(None));
        for bad in [
            "$share/",
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/+/a",
            "$share/g#/a",
        ] {
            assert_eq!(parse_shared(bad), Err(TopicError::InvalidShare), "{bad}");
            assert_eq!(
                validate_topic_filter(bad),
                Err(TopicError::InvalidShare),
                "{bad}"
            );
        }
        assert_eq!(
            validate_topic_filter("$share/g/a/#/b"),
            Err(TopicError::MisplacedWildcard)
        );
        assert_eq!(validate_topic_filter("$share/g/+"), Ok(()));
    }

    #[test]
    fn matching_follows_the_spec_examples() {
        // 5.0 section 4.7.1.2 and 4.7.1.3.
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+", "finance"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/c"));
    }

    #[test]
    fn wildcards_do_not_match_dollar_topics() {
        assert!(!matches("#", "$SYS/monitor/Clients"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(matches("a/#", "a/$b"));
    }
}
