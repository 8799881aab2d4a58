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

/// A port that was free a moment ago, and never handed to another test of this binary.
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
