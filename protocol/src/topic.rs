//! Topic names, topic filters, shared subscriptions and matching (MQTT 5.0 section 4.7/4.8).

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

/// Checks a topic name as used in PUBLISH and Will: non-empty, no wildcards, no U+0000.
///
/// # Errors
/// The first rule it breaks.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    let _ = topic;
    Err(TopicError::Empty)
}

/// Checks a topic filter as used in SUBSCRIBE/UNSUBSCRIBE, including `$share/{group}/{filter}`.
///
/// # Errors
/// The first rule it breaks.
pub fn validate_topic_filter(filter: &str) -> Result<(), TopicError> {
    let _ = filter;
    Err(TopicError::Empty)
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
/// # Errors
/// [`TopicError::InvalidShare`] when it starts with `$share/` but is not a valid shared filter.
pub fn parse_shared(filter: &str) -> Result<Option<SharedFilter<'_>>, TopicError> {
    let _ = filter;
    Ok(None)
}

/// True when `topic` (a valid topic name) matches `filter` (a valid, non-shared filter).
///
/// `+` matches one level, `#` the parent level and all below it; a filter that starts with a
/// wildcard does not match topics that start with `$` (5.0 section 4.7.2).
pub fn matches(filter: &str, topic: &str) -> bool {
    let _ = (filter, topic);
    false
}
