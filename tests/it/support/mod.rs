//! Helpers shared by the end-to-end tests of the `fleetmq` binary: processes that die with the
//! test, free ports, and a small blocking MQTT client over a raw socket (built on the codec).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use protocol::{decode, encode, ByteStr, Connect, Packet, Properties, Protocol, Publish, QoS};

/// The binary under test.
pub fn fleetmq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetmq"))
}

/// A child process killed when the test ends, however it ends.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// Sends SIGTERM and waits up to `limit` for the exit status.
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "process did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The addresses a `fleetmq broker` bound, as it announced them.
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    /// The MQTT listener.
    pub mqtt: std::net::SocketAddr,
    /// The HTTP listener, when it was asked for.
    pub http: Option<std::net::SocketAddr>,
}

impl Listening {
    /// The MQTT port.
    pub fn port(&self) -> u16 {
        self.mqtt.port()
    }

    /// The HTTP port; panics if HTTP was not asked for.
    pub fn http_port(&self) -> u16 {
        self.http.expect("HTTP listener").port()
    }
}

/// Waits for the lines in which a `fleetmq broker`, writing its stderr to `log`, names the
/// addresses it bound (MQTT, and HTTP when `http`), or fails with its exit status if it died
/// starting. Start brokers on port 0 (`--mqtt 127.0.0.1:0 --http 127.0.0.1:0`) and read the
/// ports here: no other process can take a port between a test's choice and the broker's bind.
pub fn wait_for_listeners(process: &mut Child, log: &std::path::Path, http: bool) -> Listening {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = process.try_wait().unwrap() {
            panic!(
                "the broker exited while starting: {status}\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Some(listening) = announced_listeners(log, http) {
            return listening;
        }
        assert!(Instant::now() < deadline, "broker not serving after 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the log file `log` holds `count` lines containing `text` (a broker's account of
/// what it did, at debug level: a subscription applied, settings reloaded).
pub fn wait_for_log_lines(log: &std::path::Path, text: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(text))
            .count();
        if seen >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never logged {text:?} {count} times",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The addresses a broker writing its stderr to `log` announced so far (MQTT, and HTTP when
/// `http`); `None` until it announced them all.
pub fn announced_listeners(log: &std::path::Path, http: bool) -> Option<Listening> {
    const MQTT: &str = "fleetmq broker: MQTT on ";
    const HTTP: &str = "fleetmq broker: dashboard on http://";
    let text = std::fs::read_to_string(log).unwrap_or_default();
    // Only whole lines: the broker may be in the middle of writing the last one.
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mqtt = whole
        .lines()
        .find_map(|l| l.strip_prefix(MQTT))
        .map(|a| a.trim().parse().unwrap())?;
    let http_addr = whole.lines().find_map(|l| {
        let rest = l.strip_prefix(HTTP)?;
        rest.split('/').next()?.parse().ok()
    });
    if http && http_addr.is_none() {
        return None;
    }
    Some(Listening {
        mqtt,
        http: http_addr,
    })
}

/// Spawns `command` (a `fleetmq broker` on port 0) with stdout and stderr into `log`, and
/// waits until it serves.
pub fn spawn_broker(
    command: &mut Command,
    log: &std::path::Path,
    http: bool,
) -> (Killed, Listening) {
    let file = std::fs::File::create(log).unwrap();
    let mut process = Killed(
        command
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    );
    let listening = wait_for_listeners(&mut process.0, log, http);
    (process, listening)
}

/// A port that was free a moment ago, and never handed to another test of this binary: only
/// for peers that cannot bind port 0 and say which port they got (mosquitto).
///
/// The kernel may give the same free port to two tests running at once. (Before the broker
/// refused a port in use, both brokers would have shared it through SO_REUSEPORT and each
/// test reached the other's broker now and then; with the refusal the second would fail to
/// start instead.)
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Connects to 127.0.0.1:`port`, retrying while the server starts (20 s at most).
pub fn connect_when_listening(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("nothing listens on {port}: {e}"),
        }
    }
}

/// A blocking MQTT client over a raw socket.
pub struct MqttClient {
    pub stream: TcpStream,
    pub protocol: Protocol,
    buf: BytesMut,
    pkid: u16,
}

impl MqttClient {
    /// Connects (clean session) and waits for CONNACK.
    pub fn connect(port: u16, protocol: Protocol, client_id: &str) -> MqttClient {
        MqttClient::connect_session(port, protocol, client_id, true).0
    }

    /// Connects with `clean_start` (a 5.0 session that is kept gets an hour's expiry) and
    /// returns the client with CONNACK's session-present flag.
    pub fn connect_session(
        port: u16,
        protocol: Protocol,
        client_id: &str,
        clean_start: bool,
    ) -> (MqttClient, bool) {
        let stream = connect_when_listening(port);
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = MqttClient {
            stream,
            protocol,
            buf: BytesMut::new(),
            pkid: 0,
        };
        let mut properties = Properties::default();
        if protocol == Protocol::V5 && !clean_start {
            properties.session_expiry_interval = Some(3600);
        }
        client.send(&Packet::Connect(Connect {
            protocol,
            clean_start,
            keep_alive: 60,
            client_id: ByteStr::from(client_id),
            will: None,
            username: None,
            password: None,
            properties,
        }));
        match client.next() {
            Some(Packet::ConnAck(ack)) => {
                assert_eq!(ack.reason, protocol::ReasonCode::SUCCESS, "CONNACK refused");
                (client, ack.session_present)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for SUBACK.
    pub fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.pkid = self.pkid.wrapping_add(1).max(1);
        self.send(&Packet::Subscribe(protocol::Subscribe {
            pkid: self.pkid,
            subscriptions: vec![protocol::Subscription {
                filter: ByteStr::from(filter),
                options: protocol::SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            properties: Properties::default(),
        }));
        assert!(matches!(self.next(), Some(Packet::SubAck(_))));
    }

    /// Writes a packet.
    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.protocol, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// The next packet, or `None` once the server closed the connection.
    pub fn next(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = decode(&mut self.buf, self.protocol, u32::MAX).unwrap() {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends DISCONNECT and waits until the broker closes the connection, which it does once
    /// it has ended or parked the session.
    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(protocol::Disconnect {
            reason: protocol::ReasonCode::SUCCESS,
            properties: Properties::default(),
        }));
        while self.next().is_some() {}
    }

    /// Publishes at QoS 1 and waits for its PUBACK.
    pub fn publish_acked(&mut self, topic: &str, payload: impl Into<Bytes>) {
        self.publish_acked_with(topic, payload, false);
    }

    /// Publishes at QoS 1, retained or not, and waits for its PUBACK.
    pub fn publish_acked_with(&mut self, topic: &str, payload: impl Into<Bytes>, retain: bool) {
        self.pkid = self.pkid.wrapping_add(1).max(1);
        let pkid = self.pkid;
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain,
            topic: ByteStr::from(topic),
            pkid,
            payload: payload.into(),
            properties: Properties::default(),
        }));
        assert!(matches!(self.next(), Some(Packet::PubAck(a)) if a.pkid == pkid));
    }
}
