//! Password files in mosquitto's format, so files written by `mosquitto_passwd` work as they are
//! and ours work in mosquitto.
//!
//! One `user:hash` line per user. The hash is mosquitto 2.0's `$7$` scheme:
//! `$7$ITERATIONS$SALT$HASH`, PBKDF2-HMAC-SHA512 over the password bytes, salt and 64-byte hash
//! in standard base64 with padding. Blank lines and `#` comments are skipped. mosquitto 1.x's
//! `$6$` (one round of salted SHA-512) is refused rather than accepted: it is not a slow hash,
//! and a file that still has it should be re-hashed.

use std::{collections::HashMap, num::NonZeroU32};

use base64::{engine::general_purpose::STANDARD, Engine};
use ring::{pbkdf2, rand::SecureRandom};

/// Iterations we write. mosquitto 2.0 writes 101; more costs each CONNECT about 5 us per 100
/// iterations on the shard, and makes a stolen file proportionally slower to crack. 1000 keeps a
/// reconnect storm of ten thousand vehicles under a few seconds of CPU across the shards.
pub const DEFAULT_ITERATIONS: u32 = 1000;
/// More than this in a file is refused: verifying would stall the shard for seconds.
const MAX_ITERATIONS: u32 = 1_000_000;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;
static ALGORITHM: pbkdf2::Algorithm = pbkdf2::PBKDF2_HMAC_SHA512;

/// Why a password file cannot be used. Never carries a hash or a password.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswdError {
    /// A line is not `user:hash` with a hash we accept.
    #[error("line {line}: {why}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// A user name that cannot be stored.
    #[error("invalid user name: {0}")]
    User(String),
    /// The system random source failed.
    #[error("no randomness for a salt")]
    Random,
}

/// A salted PBKDF2-SHA512 hash.
#[derive(Clone)]
struct Hash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

/// The users of a password file and their hashes.
#[derive(Clone, Default)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
    /// Verified against when the user is unknown, so that an unknown user costs the same time
    /// as a wrong password and timing does not tell which part was wrong.
    decoy: Option<Hash>,
}

impl std::fmt::Debug for PasswordFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the hashes: a Debug print must not leak what could be cracked offline.
        f.debug_struct("PasswordFile")
            .field("users", &self.users.len())
            .finish()
    }
}

impl PasswordFile {
    /// Parses a file's text.
    ///
    /// # Errors
    /// The first line that is not a `$7$` entry, by number.
    pub fn parse(text: &str) -> Result<PasswordFile, PasswdError> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: &str| PasswdError::Line {
                line: n + 1,
                why: why.to_string(),
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| err("expected user:hash"))?;
            if user.is_empty() {
                return Err(err("empty user name"));
            }
            let hash = parse_hash(hash).map_err(|why| err(&why))?;
            users.insert(user.to_string(), hash);
        }
        let decoy = users.values().next().cloned();
        Ok(PasswordFile { users, decoy })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when no user is defined.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// True when `user` exists and `password` is theirs. Takes the same time for an unknown user
    /// as for a wrong password; the comparison is constant-time (ring's `pbkdf2::verify`).
    pub fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(h) => pbkdf2::verify(ALGORITHM, h.iterations, &h.salt, password, &h.hash).is_ok(),
            None => {
                if let Some(h) = &self.decoy {
                    let _ = pbkdf2::verify(ALGORITHM, h.iterations, &h.salt, password, &h.hash);
                }
                false
            }
        }
    }
}

fn parse_hash(text: &str) -> Result<Hash, String> {
    let rest = match text.strip_prefix("$7$") {
        Some(rest) => rest,
        None if text.starts_with("$6$") => {
            return Err(
                "mosquitto 1.x $6$ hash (one round of SHA-512, not a slow hash): \
                        set the password again with `fleetmq passwd` or `mosquitto_passwd`"
                    .into(),
            )
        }
        None => {
            return Err(
                "not a $7$ PBKDF2-SHA512 hash (plain-text passwords are not accepted): \
                        set the password with `fleetmq passwd`"
                    .into(),
            )
        }
    };
    let mut parts = rest.split('$');
    let (Some(iterations), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected $7$ITERATIONS$SALT$HASH".into());
    };
    let iterations: u32 = iterations
        .parse()
        .map_err(|_| "the iteration count is not a number".to_string())?;
    if iterations > MAX_ITERATIONS {
        return Err(format!("more than {MAX_ITERATIONS} iterations"));
    }
    let iterations = NonZeroU32::new(iterations).ok_or("zero iterations")?;
    let salt = STANDARD
        .decode(salt)
        .map_err(|_| "the salt is not base64".to_string())?;
    let hash = STANDARD
        .decode(hash)
        .map_err(|_| "the hash is not base64".to_string())?;
    if salt.is_empty() || hash.len() != HASH_LEN {
        return Err(format!("expected a salt and a {HASH_LEN}-byte hash"));
    }
    Ok(Hash {
        iterations,
        salt,
        hash,
    })
}

/// The `$7$` hash of `password` with a fresh random salt.
///
/// # Errors
/// The system random source failed.
pub fn hash_password(password: &[u8], iterations: NonZeroU32) -> Result<String, PasswdError> {
    let mut salt = [0u8; SALT_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswdError::Random)?;
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(ALGORITHM, iterations, &salt, password, &mut hash);
    Ok(format!(
        "$7${iterations}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    ))
}

/// Checks that `user` can be a line's user name (mosquitto_passwd's rules).
///
/// # Errors
/// Why it cannot.
pub fn check_user(user: &str) -> Result<(), PasswdError> {
    if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
        return Err(PasswdError::User(
            "a user name must be non-empty, without ':' or control characters".into(),
        ));
    }
    if user.len() > 65535 {
        return Err(PasswdError::User("longer than MQTT allows".into()));
    }
    Ok(())
}

/// The file's text with `user`'s line replaced by `line` (or removed when `None`), every other
/// line (comments included) kept as it was; a new user is appended.
pub fn with_user(text: &str, user: &str, line: Option<&str>) -> String {
    let mut out = String::with_capacity(text.len() + 128);
    let mut done = false;
    for existing in text.lines() {
        let is_user = existing
            .split_once(':')
            .is_some_and(|(u, _)| u == user && !existing.starts_with('#'));
        if is_user {
            if let (Some(l), false) = (line, done) {
                out.push_str(l);
                out.push('\n');
            }
            done = true;
            continue;
        }
        out.push_str(existing);
        out.push('\n');
    }
    if let (Some(l), false) = (line, done) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `mosquitto_passwd -c -b FILE alice secret` (mosquitto 2.0.11).
    const MOSQUITTO_LINE: &str = "alice:$7$101$drtj5p/st2hw71LI$VJj2RxODHn2gbCK3z00mI6w7yfewlsiC7CEjgVj0xiirWiWkvaFr7p4psr5UZqegPPmUY+0M3cnA7PjQIjImsA==";

    #[test]
    fn verifies_a_line_written_by_mosquitto_passwd() {
        let file = PasswordFile::parse(&format!("# users\n\n{MOSQUITTO_LINE}\n")).unwrap();
        assert_eq!(file.len(), 1);
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"secreT"));
        assert!(!file.verify("alice", b""));
        assert!(!file.verify("bob", b"secret"));
    }

    #[test]
    fn our_hash_round_trips_and_salts_differ() {
        let iterations = NonZeroU32::new(DEFAULT_ITERATIONS).unwrap();
        let a = hash_password(b"pw", iterations).unwrap();
        let b = hash_password(b"pw", iterations).unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.starts_with("$7$1000$"));
        let salt = a.split('$').nth(3).unwrap();
        assert_eq!(STANDARD.decode(salt).unwrap().len(), SALT_LEN);
        let file = PasswordFile::parse(&format!("v1:{a}\n")).unwrap();
        assert!(file.verify("v1", b"pw"));
        assert!(!file.verify("v1", b"pW"));
    }

    #[test]
    fn refuses_weak_or_malformed_lines_naming_the_line() {
        for (text, needle) in [
            ("u:plain", "plain-text"),
            ("u:$6$abc$def", "$6$"),
            ("u:$7$0$AAAA$AAAA", "zero"),
            ("u:$7$x$AAAA$AAAA", "number"),
            ("u:$7$101$!!$AAAA", "salt"),
            ("u:$7$101$AAAAAAAAAAAAAAAA$AAAA", "64-byte"),
            ("nocolon", "user:hash"),
        ] {
            let err = PasswordFile::parse(&format!("# c\n{text}\n")).unwrap_err();
            let PasswdError::Line { line, why } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(*line, 2, "{text}");
            assert!(why.contains(needle), "{text}: {why}");
        }
    }

    #[test]
    fn with_user_replaces_appends_and_deletes_keeping_the_rest() {
        let text = "# fleet\nv1:$7$a\nv2:$7$b\n";
        assert_eq!(
            with_user(text, "v1", Some("v1:$7$new")),
            "# fleet\nv1:$7$new\nv2:$7$b\n"
        );
        assert_eq!(
            with_user(text, "v3", Some("v3:$7$c")),
            "# fleet\nv1:$7$a\nv2:$7$b\nv3:$7$c\n"
        );
        assert_eq!(with_user(text, "v2", None), "# fleet\nv1:$7$a\n");
    }

    #[test]
    fn debug_does_not_print_hashes() {
        let file = PasswordFile::parse(MOSQUITTO_LINE).unwrap();
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("drtj5p") && !shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn user_names_with_colons_are_refused() {
        assert!(check_user("a:b").is_err());
        assert!(check_user("").is_err());
        assert!(check_user("vehicle-7").is_ok());
    }
}
