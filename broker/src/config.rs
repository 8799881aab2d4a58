//! Broker configuration: listeners, shards and the limits every connection is held to.
//!
//! The defaults follow mosquitto's where mosquitto has one (max inflight 20, max queued 1000,
//! topic alias maximum 10), and are safer where it has none (a 1 MiB maximum packet size rather
//! than 256 MiB, listening on 127.0.0.1 only).

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

/// Everything the broker needs to start. Built by the CLI from flags and an optional TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Plain MQTT over TCP.
    pub mqtt: SocketAddr,
    /// HTTP: the dashboard at `/`, MQTT over WebSocket at `/mqtt`, `/metrics`, `/healthz`.
    /// `"off"` in the file disables it.
    #[serde(deserialize_with = "addr_or_off")]
    pub http: Option<SocketAddr>,
    /// Seconds between `$SYS/broker/...` updates; 0 disables them.
    pub sys_interval: u64,
    /// Number of shards (executor threads); 0 means [`default_shards`]: one per available
    /// core, or one on a machine with two cores or fewer.
    pub shards: usize,
    /// Limits applied to every connection.
    pub limits: Limits,
    /// MQTT over TLS (`mqtts`), off unless given; needs `[tls]`.
    pub mqtts: Option<SocketAddr>,
    /// The HTTP listener over TLS (dashboard, MQTT over secure WebSocket at `/mqtt`),
    /// off unless given; needs `[tls]`.
    pub https: Option<SocketAddr>,
    /// Certificates for `mqtts` and `https`, and client certificate checks.
    pub tls: TlsSettings,
    /// Who may connect (password file, anonymous access) and what they may do (ACL file).
    pub auth: AuthSettings,
    /// Sessions, subscriptions, retained and queued messages kept across restarts.
    pub persistence: PersistenceSettings,
    /// How plain MQTT connections are read and written: `"epoll"` (one readiness list per
    /// shard, the default) or `"glommio"` (glommio's own streams).
    pub socket_io: crate::net::SocketIo,
    /// What the HTTP listener lets other web pages and metric scrapers do.
    pub web: WebSettings,
}

/// The `[web]` section: which web pages may use MQTT over WebSocket, and who may read
/// `/metrics`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebSettings {
    /// Origins (`scheme://host[:port]`, as browsers send them) whose pages may open MQTT over
    /// WebSocket at `/mqtt`, besides the broker's own (an `Origin` naming the host the request
    /// was sent to). `"*"` allows any page. A client that sends no `Origin` (not a browser) is
    /// always let in: the check stops other web sites from using a browser's access to the
    /// broker (cross-site WebSocket hijacking), which only browsers are open to.
    pub allowed_origins: Vec<String>,
    /// When set, `/metrics` answers only requests that carry `Authorization: Bearer <token>`
    /// (what Prometheus sends with `authorization: { credentials: ... }`).
    pub metrics_token: Option<String>,
}

impl std::fmt::Debug for WebSettings {
    /// The token is a secret: never in a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSettings")
            .field("allowed_origins", &self.allowed_origins)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "(set)"),
            )
            .finish()
    }
}

impl WebSettings {
    /// Whether a WebSocket upgrade with these `Origin` and `Host` headers may go ahead.
    pub fn origin_allowed(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin.map(|o| o.trim().trim_end_matches('/')) else {
            return true;
        };
        if self
            .allowed_origins
            .iter()
            .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // The page's own broker: `http(s)://{Host}`. `Origin: null` (a file, a sandboxed
        // frame) names no host and is refused.
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h.trim()))
    }

    /// Whether an `Authorization` header value lets its sender read `/metrics`.
    pub fn metrics_allowed(&self, authorization: Option<&str>) -> bool {
        let Some(token) = &self.metrics_token else {
            return true;
        };
        let Some(given) = authorization.and_then(|a| a.trim().strip_prefix("Bearer ")) else {
            return false;
        };
        // Compared in time independent of where they differ.
        let (a, b) = (given.trim().as_bytes(), token.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// When the state log is synced, and what an acknowledgement promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Group commit, and a QoS 1/2 PUBLISH that changed persistent state (a message queued
    /// for a persistent session, a retained message) or was archived is acknowledged only once
    /// that change is durable on every shard it touched and in the write-ahead log.
    #[default]
    Always,
    /// Group commit as soon as records are appended, but acknowledgements do not wait, for
    /// the state log nor for the archive's write-ahead log: a crash can lose the last few
    /// milliseconds of changes and of archived messages.
    Batch,
    /// Records are written at once but synced only every `sync_interval_ms`: a power loss
    /// can lose that much; a killed process loses only what was not yet written.
    Periodic,
}

/// The broker's own state on disk (`{dir}/shard-{n}/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersistenceSettings {
    /// Persist at all.
    pub enabled: bool,
    /// Where: `fleet-data/state` by default (fleetmq puts it in `state/` under the archive's
    /// data directory).
    pub dir: std::path::PathBuf,
    /// When the log is synced.
    pub fsync: FsyncPolicy,
    /// Sync interval of [`FsyncPolicy::Periodic`], milliseconds.
    pub sync_interval_ms: u64,
    /// Log bytes after which a shard writes a snapshot and starts a new log segment.
    pub compact_bytes: u64,
}

impl Default for PersistenceSettings {
    fn default() -> PersistenceSettings {
        PersistenceSettings {
            enabled: true,
            dir: std::path::PathBuf::from("fleet-data/state"),
            fsync: FsyncPolicy::Always,
            sync_interval_ms: 1000,
            compact_bytes: 64 << 20,
        }
    }
}

/// Certificates for the TLS listeners. Reloaded on SIGHUP ([`crate::BrokerHandle::reload`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM certificate chain, server certificate first.
    pub cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1); refused if group-writable or readable by others.
    pub key: Option<std::path::PathBuf>,
    /// PEM CA certificates that client certificates are verified against.
    pub client_ca: Option<std::path::PathBuf>,
    /// Refuse TLS clients without a valid certificate (otherwise it is optional).
    pub require_client_cert: bool,
    /// Which certificate field becomes the user name: `cn`, `san` or `off`.
    pub cert_identity: CertIdentity,
}

/// Which certificate field becomes the user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertIdentity {
    /// The subject's Common Name (mosquitto's `use_identity_as_username`).
    #[default]
    Cn,
    /// The first Subject Alternative Name (DNS, e-mail or URI).
    San,
    /// Certificates are verified but name nobody: clients still log in with a password.
    Off,
}

impl std::str::FromStr for CertIdentity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cn" => Ok(CertIdentity::Cn),
            "san" => Ok(CertIdentity::San),
            "off" => Ok(CertIdentity::Off),
            other => Err(format!("{other:?}: expected cn, san or off")),
        }
    }
}

/// Authentication and authorization. Reloaded on SIGHUP.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// mosquitto-format password file (`fleetmq passwd` or `mosquitto_passwd` write it).
    pub password_file: Option<std::path::PathBuf>,
    /// mosquitto-format ACL file; without one every client may do everything.
    pub acl_file: Option<std::path::PathBuf>,
    /// Let clients without credentials in even though a password file or client CA is set,
    /// and allow listening beyond loopback without any authentication.
    pub allow_anonymous: bool,
}

/// Per-connection and per-session limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet accepted from a client, in bytes (announced to 5.0 clients in CONNACK).
    /// A packet is read whole before it is acted on, so this bounds what one connection can
    /// make the broker buffer. 8 MiB carries a firmware chunk or hours of store-and-forward
    /// readings in one message, and fits a session queue's default byte bound twice over.
    pub max_packet_size: u32,
    /// How many QoS 1/2 PUBLISH a client may have unacknowledged towards us (Receive Maximum),
    /// and the most we keep in flight towards a client that announces no limit of its own.
    pub max_inflight: u16,
    /// QoS 1/2 messages held per session beyond the in-flight window (online or offline).
    /// At this bound or `max_queued_bytes`, whichever comes first, a connected subscriber
    /// holds publishers back (see `pressure`); an offline or stuck one has further
    /// messages dropped and counted. The byte bound is the one that matters by default.
    pub max_queued_messages: usize,
    /// Bytes held per session in that queue.
    pub max_queued_bytes: usize,
    /// Outbound packets waiting to be written to one socket; QoS 0 beyond this is dropped.
    pub max_outbox_packets: usize,
    /// Topic aliases a 5.0 client may use towards us.
    pub topic_alias_maximum: u16,
    /// Largest keep alive accepted, in seconds; a 5.0 client asking for more (or for 0) is told
    /// this value with Server Keep Alive. 0 disables the cap.
    pub max_keepalive: u16,
    /// Time a new connection has to send CONNECT.
    #[serde(with = "humantime_secs")]
    pub connect_timeout: Duration,
    /// Maximum number of client connections per shard (0: unlimited).
    pub max_connections_per_shard: usize,
    /// Retained messages kept (a new topic beyond it is refused and counted).
    pub max_retained_messages: usize,
    /// Bytes of retained messages kept (a message that would pass it is refused and counted).
    pub max_retained_bytes: usize,
    /// Session expiry granted to 3.1.1 persistent sessions, seconds (u32::MAX: never).
    pub persistent_session_expiry: u32,
    /// What happens to a QoS 1/2 message for a session whose queue is full.
    pub queue_full_policy: QueueFullPolicy,
    /// Bytes held in all session queues of one shard; beyond it QoS 1/2 messages meet
    /// `queue_full_policy` as if their session's queue were full. Bounds the broker's memory
    /// whatever the number of slow or offline sessions.
    pub max_shard_queued_bytes: usize,
    /// PUBLISH packets a connection may send per second (0: unlimited). Over it the broker
    /// stops reading from the socket until the budget refills, so TCP pushes back on the
    /// publisher; nothing is dropped.
    pub max_publish_rate: u32,
}

/// What happens to a QoS 1/2 message for a session whose queue is full. Every drop is counted
/// by reason and client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueFullPolicy {
    /// The new message is dropped.
    #[default]
    DropNewest,
    /// The oldest queued messages are dropped to make room.
    DropOldest,
    /// The new message is dropped and the client disconnected (it keeps its session and
    /// queue, and gets them back when it reconnects); for an offline client, the new message
    /// is dropped.
    Disconnect,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mqtt: SocketAddr::from(([127, 0, 0, 1], 1883)),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 8080))),
            sys_interval: 10,
            shards: 0,
            limits: Limits::default(),
            mqtts: None,
            https: None,
            tls: TlsSettings::default(),
            auth: AuthSettings::default(),
            persistence: PersistenceSettings::default(),
            socket_io: crate::net::SocketIo::default(),
            web: WebSettings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_packet_size: 8 * 1024 * 1024,
            max_inflight: 20,
            max_queued_messages: 100_000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_outbox_packets: 4096,
            topic_alias_maximum: 10,
            max_keepalive: 65535,
            connect_timeout: Duration::from_secs(10),
            max_connections_per_shard: 0,
            max_retained_messages: 1_000_000,
            max_retained_bytes: 512 * 1024 * 1024,
            persistent_session_expiry: u32::MAX,
            queue_full_policy: QueueFullPolicy::DropNewest,
            max_shard_queued_bytes: 256 * 1024 * 1024,
            max_publish_rate: 0,
        }
    }
}

/// A socket address, or `"off"`.
fn addr_or_off<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|e| {
        serde::de::Error::custom(format!("{text:?} is not an address or \"off\": {e}"))
    })
}

/// Durations in the TOML file are whole seconds.
mod humantime_secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Shards for a machine with `cores` usable cores: one per core, except on two cores or fewer,
/// where one.
///
/// Below saturation each shard sleeps between messages and pays a wake-up for each batch, and a
/// message whose subscriber is on another shard wakes that one too. Measured on two cores
/// (BENCHMARKS.md), a second shard cost 1.4-2.2x the CPU per message at every fixed rate below
/// saturation but fan-out (fan-in, 1:1, the fleet) and gave about 10 % more flat out: the
/// cores are also the network stack's and the clients'. With more cores a shard's share of that is smaller and
/// the throughput a busy broker needs is larger; one per core there is not measured here.
pub fn default_shards(cores: usize) -> usize {
    if cores <= 2 {
        1
    } else {
        cores
    }
}

impl Config {
    /// The number of shards to run: the configured count, or [`default_shards`] for the cores
    /// this process may use.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            default_shards(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    }

    /// Checks values that the type system does not.
    ///
    /// # Errors
    /// A message naming the field and the fix.
    pub fn validate(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_packet_size < 64 {
            return Err("limits.max_packet_size must be at least 64 bytes".into());
        }
        if l.max_inflight == 0 {
            return Err("limits.max_inflight must be at least 1".into());
        }
        if l.max_outbox_packets == 0 {
            return Err("limits.max_outbox_packets must be at least 1".into());
        }
        if self.shards > 1024 {
            return Err("shards must be between 0 (one per core) and 1024".into());
        }
        self.validate_security()
    }

    /// True when clients prove who they are: a password file or client certificates.
    pub fn authenticates(&self) -> bool {
        self.auth.password_file.is_some() || self.tls.client_ca.is_some()
    }

    /// The listeners reachable from beyond this machine.
    pub fn public_listeners(&self) -> Vec<SocketAddr> {
        [Some(self.mqtt), self.http, self.mqtts, self.https]
            .into_iter()
            .flatten()
            .filter(|a| !a.ip().is_loopback())
            .collect()
    }

    fn validate_security(&self) -> Result<(), String> {
        let tls_listener = self.mqtts.is_some() || self.https.is_some();
        if tls_listener && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return Err(
                "mqtts/https need tls.cert and tls.key (--tls-cert PEM --tls-key PEM)".into(),
            );
        }
        if !tls_listener && (self.tls.cert.is_some() || self.tls.client_ca.is_some()) {
            return Err("tls.cert or tls.client_ca is set but no TLS listener: add mqtts or https (--mqtts ADDR, --https ADDR)".into());
        }
        if self.tls.require_client_cert && self.tls.client_ca.is_none() {
            return Err("tls.require_client_cert needs tls.client_ca (--client-ca PEM)".into());
        }
        // Secure by default: nobody reaches an unauthenticated broker from the network by
        // accident; saying allow_anonymous is the explicit choice (warned about at start).
        let public = self.public_listeners();
        if !public.is_empty() && !self.authenticates() && !self.auth.allow_anonymous {
            return Err(format!(
                "listening on {} (beyond loopback) needs auth.password_file (--password-file) or \
                 tls.client_ca (--client-ca), or auth.allow_anonymous = true (--allow-anonymous) \
                 to accept anyone",
                public
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod web_tests {
    use super::WebSettings;

    #[test]
    fn a_page_of_the_broker_itself_or_an_allowed_origin_or_no_browser_may_connect() {
        let web = WebSettings::default();
        let host = Some("127.0.0.1:8080");
        assert!(web.origin_allowed(None, host), "no Origin: not a browser");
        assert!(web.origin_allowed(Some("http://127.0.0.1:8080"), host));
        assert!(web.origin_allowed(Some("https://127.0.0.1:8080/"), host));
        assert!(!web.origin_allowed(Some("http://evil.example"), host));
        assert!(!web.origin_allowed(Some("http://127.0.0.1:9999"), host));
        assert!(!web.origin_allowed(Some("null"), host));
        assert!(!web.origin_allowed(Some("http://127.0.0.1:8080"), None));
        let web = WebSettings {
            allowed_origins: vec!["https://dispatch.example.com".into()],
            ..WebSettings::default()
        };
        assert!(web.origin_allowed(Some("https://DISPATCH.example.com"), host));
        assert!(!web.origin_allowed(Some("http://dispatch.example.com"), host));
        let any = WebSettings {
            allowed_origins: vec!["*".into()],
            ..WebSettings::default()
        };
        assert!(any.origin_allowed(Some("http://evil.example"), host));
    }

    #[test]
    fn metrics_need_the_token_when_one_is_set_and_it_is_never_printed() {
        assert!(WebSettings::default().metrics_allowed(None));
        let web = WebSettings {
            metrics_token: Some("s3cret-token".into()),
            ..WebSettings::default()
        };
        assert!(web.metrics_allowed(Some("Bearer s3cret-token")));
        assert!(!web.metrics_allowed(Some("Bearer s3cret-tokeN")));
        assert!(!web.metrics_allowed(Some("Bearer s3cret")));
        assert!(!web.metrics_allowed(Some("Basic s3cret-token")));
        assert!(!web.metrics_allowed(None));
        assert!(!format!("{web:?}").contains("s3cret"));
    }
}
