//! Security end to end: passwords, reason codes, ACLs on SUBSCRIBE, PUBLISH and delivery
//! (retained included), TLS with client certificates, reload while clients stay connected.
//! Clients are raw codec peers over TCP or rustls, so every reason code is seen as sent.

#![allow(clippy::unwrap_used)]

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use common::{pki, TestBroker};
use protocol::{
    decode, encode, ByteStr, ConnAck, Connect, Packet, Properties, Protocol, PubAck, Publish, QoS,
    ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions,
};

const WAIT: Duration = Duration::from_secs(5);

/// Success, granted QoS or "no matching subscribers": anything but a refusal.
trait Accepted {
    fn is_success(&self) -> bool;
}

impl Accepted for ReasonCode {
    fn is_success(&self) -> bool {
        !self.is_error()
    }
}

/// An MQTT peer over any byte stream (TCP or TLS).
struct Peer<S: Read + Write> {
    stream: S,
    protocol: Protocol,
    buf: BytesMut,
    next_pkid: u16,
}

impl<S: Read + Write> Peer<S> {
    fn new(stream: S, protocol: Protocol) -> Peer<S> {
        Peer {
            stream,
            protocol,
            buf: BytesMut::new(),
            next_pkid: 1,
        }
    }

    fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.protocol, &mut out).unwrap();
        let _ = self.stream.write_all(&out);
        let _ = self.stream.flush();
    }

    /// The next packet, or `None` when the broker closed the connection.
    fn recv(&mut self) -> Option<Packet> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(p) = decode(&mut self.buf, self.protocol, u32::MAX).unwrap() {
                return Some(p);
            }
            assert!(Instant::now() < deadline, "nothing from the broker");
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends CONNECT, returns CONNACK (`None` if the connection was closed instead).
    fn connect(&mut self, id: &str, user: Option<&str>, password: Option<&str>) -> Option<ConnAck> {
        self.send(&Packet::Connect(Connect {
            protocol: self.protocol,
            clean_start: true,
            keep_alive: 30,
            client_id: ByteStr::from(id),
            will: None,
            username: user.map(ByteStr::from),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            properties: Properties::default(),
        }));
        match self.recv()? {
            Packet::ConnAck(ack) => Some(ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid += 1;
        self.next_pkid
    }

    fn subscribe(&mut self, filter: &str) -> ReasonCode {
        let pkid = self.pkid();
        self.send(&Packet::Subscribe(Subscribe {
            pkid,
            subscriptions: vec![Subscription {
                filter: ByteStr::from(filter),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..Default::default()
                },
            }],
            properties: Properties::default(),
        }));
        loop {
            match self.recv().expect("SUBACK") {
                Packet::SubAck(SubAck { reasons, .. }) => return reasons[0],
                Packet::Publish(_) => continue,
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason.
    fn publish(&mut self, topic: &str, payload: &str, retain: bool) -> ReasonCode {
        let pkid = self.pkid();
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain,
            topic: ByteStr::from(topic),
            pkid,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            properties: Properties::default(),
        }));
        loop {
            match self.recv().expect("PUBACK") {
                Packet::PubAck(PubAck {
                    reason, pkid: p, ..
                }) if p == pkid => return reason,
                Packet::Publish(_) => continue,
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
    }

    /// Topics of the PUBLISH packets received within `quiet` (acknowledging QoS 1).
    fn topics_within(&mut self, quiet: Duration) -> Vec<String> {
        let deadline = Instant::now() + quiet;
        let mut topics = Vec::new();
        while Instant::now() < deadline {
            if let Some(packet) = decode(&mut self.buf, self.protocol, u32::MAX).unwrap() {
                if let Packet::Publish(p) = packet {
                    topics.push(p.topic.to_string());
                    if p.qos == QoS::AtLeastOnce {
                        self.send(&Packet::PubAck(PubAck {
                            pkid: p.pkid,
                            reason: ReasonCode::SUCCESS,
                            properties: Properties::default(),
                        }));
                    }
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
        }
        topics
    }

    fn ping(&mut self) -> bool {
        self.send(&Packet::PingReq);
        matches!(self.recv(), Some(Packet::PingResp))
    }
}

fn tcp(port: u16, protocol: Protocol) -> Peer<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    Peer::new(stream, protocol)
}

/// A password file with `users` written by `fleetmq passwd`'s code (the library's hasher).
fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (user, pw) in users {
        let hash = broker::security::passwd::hash_password(
            pw.as_bytes(),
            std::num::NonZeroU32::new(101).unwrap(),
        )
        .unwrap();
        text.push_str(&format!("{user}:{hash}\n"));
    }
    pki::write(dir, "passwd", &text)
}

/// The README's example: vehicles write only their own topics and read nothing; the dashboard
/// reads the fleet; `ops` may write retained status for anyone; the dashboard never sees
/// `fleet/+/secret`.
const FLEET_ACL: &str = "\
user dashboard
topic read fleet/#
topic deny fleet/+/secret

user ops
topic write fleet/#

pattern write fleet/%u/#
";

const USERS: &[(&str, &str)] = &[
    ("v1", "pw-v1"),
    ("v2", "pw-v2"),
    ("dashboard", "pw-dash"),
    ("ops", "pw-ops"),
];

fn fleet_broker(dir: &Path) -> TestBroker {
    let passwd = password_file(dir, USERS);
    let acl = pki::write(dir, "acl", FLEET_ACL);
    TestBroker::with(|c| {
        c.auth.password_file = Some(passwd);
        c.auth.acl_file = Some(acl);
    })
}

#[test]
fn wrong_credentials_get_0x86_or_5_and_never_say_which_part() {
    let dir = tempfile::tempdir().unwrap();
    let broker = fleet_broker(dir.path());
    let port = broker.port();
    let mut answers = Vec::new();
    for (user, pw) in [
        (Some("v1"), Some("wrong")),
        (Some("nobody"), Some("pw-v1")),
        (Some("v1"), None),
        (None, None),
    ] {
        let ack = tcp(port, Protocol::V5).connect("c", user, pw).unwrap();
        assert_eq!(
            ack.reason,
            ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            "{user:?}"
        );
        answers.push(ack.properties.reason_string.clone());
        // 3.1.1 gets return code 5, "not authorized" (decoded here as 0x87).
        let ack = tcp(port, Protocol::V3_1_1).connect("c", user, pw).unwrap();
        assert_eq!(ack.reason, ReasonCode::NOT_AUTHORIZED, "{user:?}");
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the same answer whatever was wrong: {answers:?}"
    );
    let ack = tcp(port, Protocol::V5)
        .connect("c", Some("v1"), Some("pw-v1"))
        .unwrap();
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    let ack = tcp(port, Protocol::V3_1_1)
        .connect("c2", Some("v2"), Some("pw-v2"))
        .unwrap();
    assert_eq!(ack.reason, ReasonCode::SUCCESS);
    // The failures are counted.
    let deadline = Instant::now() + WAIT;
    loop {
        let total: u64 = broker
            .handle
            .fresh_snapshots()
            .iter()
            .map(|s| s.auth_failures)
            .sum();
        if total == 8 {
            break;
        }
        // `fresh_snapshots` itself waits for the shards' next figures.
        assert!(
            Instant::now() < deadline,
            "auth_failures = {total}, expected 8"
        );
    }
}

#[test]
fn a_vehicle_cannot_subscribe_to_or_publish_on_another_vehicles_topics() {
    let dir = tempfile::tempdir().unwrap();
    let broker = fleet_broker(dir.path());
    let port = broker.port();
    let mut dash = tcp(port, Protocol::V5);
    dash.connect("dash", Some("dashboard"), Some("pw-dash"))
        .unwrap();
    assert_eq!(dash.subscribe("fleet/#"), ReasonCode::GRANTED_QOS_1);

    let mut v1 = tcp(port, Protocol::V5);
    v1.connect("v1", Some("v1"), Some("pw-v1")).unwrap();
    assert_eq!(v1.subscribe("fleet/v2/#"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        v1.subscribe("fleet/v1/#"),
        ReasonCode::NOT_AUTHORIZED,
        "vehicles read nothing"
    );
    assert_eq!(v1.subscribe("#"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        v1.publish("fleet/v2/gps", "spoof", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(v1.publish("fleet/v1/gps", "own", false).is_success());

    // 3.1.1: SUBACK failure 0x80; a denied PUBLISH is acknowledged plainly and dropped.
    let mut v2 = tcp(port, Protocol::V3_1_1);
    v2.connect("v2", Some("v2"), Some("pw-v2")).unwrap();
    assert_eq!(v2.subscribe("fleet/v1/#"), ReasonCode::UNSPECIFIED_ERROR);
    assert_eq!(
        v2.publish("fleet/v1/gps", "spoof", false),
        ReasonCode::SUCCESS
    );

    // A client id that spans topic levels gains nothing from `fleet/%u/#`: the user name counts.
    let mut sneaky = tcp(port, Protocol::V5);
    sneaky.connect("v1/gps", Some("v2"), Some("pw-v2")).unwrap();
    assert_eq!(
        sneaky.publish("fleet/v1/gps", "spoof", false),
        ReasonCode::NOT_AUTHORIZED
    );

    assert_eq!(
        dash.topics_within(Duration::from_millis(500)),
        vec!["fleet/v1/gps"]
    );
    // The dashboard reads but may not write.
    assert_eq!(
        dash.publish("fleet/v1/cmd", "x", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(v1.ping() && v2.ping(), "denials do not disconnect");
}

#[test]
fn retained_messages_are_delivered_only_where_the_acl_lets_the_client_read() {
    let dir = tempfile::tempdir().unwrap();
    let broker = fleet_broker(dir.path());
    let port = broker.port();
    let mut ops = tcp(port, Protocol::V5);
    ops.connect("ops", Some("ops"), Some("pw-ops")).unwrap();
    for topic in ["fleet/v1/status", "fleet/v2/secret", "fleet/v2/status"] {
        assert!(ops.publish(topic, "retained", true).is_success(), "{topic}");
    }
    let mut denied_retain = tcp(port, Protocol::V5);
    denied_retain
        .connect("v1", Some("v1"), Some("pw-v1"))
        .unwrap();
    assert_eq!(
        denied_retain.publish("fleet/v2/status", "", true),
        ReasonCode::NOT_AUTHORIZED,
        "a denied PUBLISH must not clear another vehicle's retained status"
    );
    let mut dash = tcp(port, Protocol::V5);
    dash.connect("dash", Some("dashboard"), Some("pw-dash"))
        .unwrap();
    assert_eq!(dash.subscribe("fleet/#"), ReasonCode::GRANTED_QOS_1);
    let mut got = dash.topics_within(Duration::from_millis(500));
    got.sort();
    assert_eq!(got, vec!["fleet/v1/status", "fleet/v2/status"]);
    // A filter covered only by the deny rule is refused outright.
    assert_eq!(
        dash.subscribe("fleet/v2/secret"),
        ReasonCode::NOT_AUTHORIZED
    );
}

#[test]
fn anonymous_clients_follow_the_rules_before_the_first_user_line() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = password_file(dir.path(), USERS);
    let acl = pki::write(
        dir.path(),
        "acl",
        "topic read public/#\npattern readwrite clients/%c/#\nuser dashboard\ntopic read fleet/#\n",
    );
    let broker = TestBroker::with(|c| {
        c.auth.password_file = Some(passwd);
        c.auth.acl_file = Some(acl);
        c.auth.allow_anonymous = true;
    });
    let mut anon = tcp(broker.port(), Protocol::V5);
    assert_eq!(
        anon.connect("kiosk", None, None).unwrap().reason,
        ReasonCode::SUCCESS
    );
    assert_eq!(anon.subscribe("public/#"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(anon.subscribe("fleet/#"), ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        anon.publish("public/x", "x", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(anon.subscribe("clients/kiosk/#"), ReasonCode::GRANTED_QOS_1);
    assert_eq!(
        anon.subscribe("clients/other/#"),
        ReasonCode::NOT_AUTHORIZED
    );
    // Anonymous access does not excuse a wrong password.
    let ack = tcp(broker.port(), Protocol::V5)
        .connect("d", Some("dashboard"), Some("wrong"))
        .unwrap();
    assert_eq!(ack.reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
}

/// A TLS broker: server certificate from `ca`, client certificates verified against
/// `client_ca`, the fleet ACL.
fn tls_broker(dir: &Path, ca: &pki::Ca, require: bool) -> TestBroker {
    let server = ca.server();
    let cert = pki::write(dir, "server.pem", &server.cert);
    let key = pki::write(dir, "server.key", &server.key);
    let client_ca = pki::write(dir, "ca.pem", &ca.pem());
    let passwd = password_file(dir, USERS);
    let acl = pki::write(dir, "acl", FLEET_ACL);
    TestBroker::with(|c| {
        c.mqtts = Some("127.0.0.1:0".parse().unwrap());
        c.https = Some("127.0.0.1:0".parse().unwrap());
        c.tls.cert = Some(cert);
        c.tls.key = Some(key);
        c.tls.client_ca = Some(client_ca);
        c.tls.require_client_cert = require;
        c.auth.password_file = Some(passwd);
        c.auth.acl_file = Some(acl);
    })
}

#[test]
fn a_client_certificate_names_the_user_and_bad_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("fleet CA");
    let broker = tls_broker(dir.path(), &ca, true);
    let port = broker.handle.mqtts_addr().unwrap().port();

    let v1 = ca.client("v1", &[]);
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), Some(&v1))).unwrap();
    let mut peer = Peer::new(stream, Protocol::V5);
    // No user name: the certificate's CN is the identity, and the ACL applies to it.
    assert_eq!(
        peer.connect("truck-1", None, None).unwrap().reason,
        ReasonCode::SUCCESS
    );
    assert!(peer.publish("fleet/v1/gps", "x", false).is_success());
    assert_eq!(
        peer.publish("fleet/v2/gps", "x", false),
        ReasonCode::NOT_AUTHORIZED
    );
    // Claiming another user's name changes nothing: the certificate wins.
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), Some(&v1))).unwrap();
    let mut claim = Peer::new(stream, Protocol::V5);
    claim.connect("truck-1b", Some("ops"), None).unwrap();
    assert_eq!(
        claim.publish("fleet/v2/gps", "x", false),
        ReasonCode::NOT_AUTHORIZED
    );

    let other_ca = pki::Ca::new("someone else");
    let stranger = other_ca.client("v2", &[]);
    let expired = ca.expired_client("v2");
    for (what, identity) in [
        ("a wrong-CA certificate", Some(&stranger)),
        ("an expired certificate", Some(&expired)),
        ("no certificate", None),
    ] {
        let config = pki::client_config(&ca.pem(), identity);
        let refused = match pki::connect_tls(port, config) {
            Err(_) => true,
            Ok(stream) => {
                let mut peer = Peer::new(stream, Protocol::V5);
                peer.connect("x", None, None).is_none()
            }
        };
        assert!(refused, "{what} must be refused");
    }
    let deadline = Instant::now() + WAIT;
    while broker
        .handle
        .fresh_snapshots()
        .iter()
        .map(|s| s.tls_failures)
        .sum::<u64>()
        < 3
    {
        assert!(Instant::now() < deadline, "TLS failures not counted");
    }
}

#[test]
fn optional_client_certificates_fall_back_to_passwords_over_tls_1_2_and_1_3() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("fleet CA");
    let broker = tls_broker(dir.path(), &ca, false);
    let port = broker.handle.mqtts_addr().unwrap().port();
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), None)).unwrap();
    let mut peer = Peer::new(stream, Protocol::V3_1_1);
    assert_eq!(
        peer.connect("d", Some("dashboard"), Some("pw-dash"))
            .unwrap()
            .reason,
        ReasonCode::SUCCESS
    );
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), None)).unwrap();
    let mut anon = Peer::new(stream, Protocol::V5);
    assert_eq!(
        anon.connect("a", None, None).unwrap().reason,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    // TLS 1.2 only.
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        <rustls_pki_types::CertificateDer as rustls_pki_types::pem::PemObject>::pem_slice_iter(
            ca.pem().as_bytes(),
        )
    {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls12 = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let stream = pki::connect_tls(port, std::sync::Arc::new(tls12)).unwrap();
    assert_eq!(
        stream.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let mut peer = Peer::new(stream, Protocol::V5);
    assert_eq!(
        peer.connect("v1", Some("v1"), Some("pw-v1"))
            .unwrap()
            .reason,
        ReasonCode::SUCCESS
    );
}

#[test]
fn reload_swaps_acls_and_certificates_while_clients_stay_connected() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("fleet CA");
    let broker = tls_broker(dir.path(), &ca, true);
    let port = broker.handle.mqtts_addr().unwrap().port();
    let v1 = ca.client("v1", &[]);
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), Some(&v1))).unwrap();
    let first_cert = stream.conn.peer_certificates().unwrap()[0].clone();
    let mut peer = Peer::new(stream, Protocol::V5);
    peer.connect("truck-1", None, None).unwrap();
    assert!(peer.publish("fleet/v1/gps", "x", false).is_success());

    // Narrow the ACL and renew the server certificate, then reload.
    pki::write(dir.path(), "acl", "pattern write fleet/%u/status\n");
    let renewed = ca.server();
    pki::write(dir.path(), "server.pem", &renewed.cert);
    pki::write(dir.path(), "server.key", &renewed.key);
    broker.handle.reload().unwrap();

    assert!(peer.ping(), "the client stays connected");
    assert_eq!(
        peer.publish("fleet/v1/gps", "x", false),
        ReasonCode::NOT_AUTHORIZED
    );
    assert!(peer.publish("fleet/v1/status", "x", false).is_success());
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), Some(&v1))).unwrap();
    let new_cert = stream.conn.peer_certificates().unwrap()[0].clone();
    assert_ne!(
        first_cert, new_cert,
        "new handshakes use the new certificate"
    );

    // A broken file is refused and the rules in force stay.
    pki::write(dir.path(), "acl", "topic bogus\nnonsense here\n");
    let err = broker.handle.reload().unwrap_err().to_string();
    assert!(err.contains("line 2"), "{err}");
    assert!(peer.publish("fleet/v1/status", "x", false).is_success());
    assert!(peer.ping());
}

#[test]
fn mqtt_over_secure_websocket_on_the_https_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("fleet CA");
    let broker = tls_broker(dir.path(), &ca, false);
    let port = broker.handle.https_addr().unwrap().port();
    let stream = pki::connect_tls(port, pki::client_config(&ca.pem(), None)).unwrap();
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "wss://localhost:{port}/mqtt"
    ))
    .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tungstenite::client::client(request, stream)
        .unwrap_or_else(|e| panic!("WebSocket handshake over TLS failed: {e}"));
    let mut out = BytesMut::new();
    encode(
        &Packet::Connect(Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive: 30,
            client_id: ByteStr::from("wss-dash"),
            will: None,
            username: Some(ByteStr::from("dashboard")),
            password: Some(Bytes::from_static(b"pw-dash")),
            properties: Properties::default(),
        }),
        Protocol::V5,
        &mut out,
    )
    .unwrap();
    ws.send(tungstenite::Message::Binary(out.freeze())).unwrap();
    let deadline = Instant::now() + WAIT;
    let mut buf = BytesMut::new();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Binary(data)) => {
                buf.extend_from_slice(&data);
                if let Some(packet) = decode(&mut buf, Protocol::V5, u32::MAX).unwrap() {
                    let Packet::ConnAck(ack) = packet else {
                        panic!("{packet:?}")
                    };
                    assert_eq!(ack.reason, ReasonCode::SUCCESS);
                    return;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no CONNACK over wss");
    }
}

#[test]
fn insecure_setups_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |adjust: &dyn Fn(&mut broker::Config)| {
        let mut config = broker::Config {
            persistence: broker::config::PersistenceSettings {
                enabled: false,
                ..Default::default()
            },
            mqtt: "127.0.0.1:0".parse().unwrap(),
            http: None,
            shards: 1,
            ..broker::Config::default()
        };
        adjust(&mut config);
        broker::start(config).map(|_| ()).map_err(|e| e.to_string())
    };
    // Beyond loopback without authentication: refused, unless anonymous access is explicit.
    let err = start(&|c| c.mqtt = "0.0.0.0:0".parse().unwrap()).unwrap_err();
    assert!(
        err.contains("--password-file") && err.contains("--allow-anonymous"),
        "{err}"
    );
    start(&|c| {
        c.mqtt = "0.0.0.0:0".parse().unwrap();
        c.auth.allow_anonymous = true;
    })
    .unwrap();

    // A private key readable by others is refused, naming the fix; the key is not printed.
    let ca = pki::Ca::new("fleet CA");
    let server = ca.server();
    let cert = pki::write(dir.path(), "s.pem", &server.cert);
    let key = pki::write(dir.path(), "s.key", &server.key);
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let err = start(&|c| {
        c.mqtts = Some("127.0.0.1:0".parse().unwrap());
        c.tls.cert = Some(cert.clone());
        c.tls.key = Some(key.clone());
    })
    .unwrap_err();
    assert!(err.contains("chmod 600") && err.contains("644"), "{err}");
    assert!(!err.contains("PRIVATE KEY"), "{err}");

    let err = start(&|c| c.auth.password_file = Some(dir.path().join("missing"))).unwrap_err();
    assert!(err.contains("missing"), "{err}");
}
