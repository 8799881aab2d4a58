//! Shared helpers for the broker's end-to-end tests: an in-process broker on port 0 with two
//! shards, and an rumqttc (3.1.1) client whose incoming packets arrive on a channel.

#![allow(dead_code, clippy::unwrap_used)]

pub mod pki;
pub mod raw;
pub mod v5;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet};
use tokio::sync::mpsc;

/// Sends the broker's logs (info and up, or `RUST_LOG`) to the test's captured output, which
/// the harness shows only for a test that fails: a rare failure brings its evidence.
pub fn show_broker_logs_on_failure() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .with_ansi(false)
        .try_init();
}

/// A broker running in this process for one test.
pub struct TestBroker {
    pub handle: broker::BrokerHandle,
}

impl TestBroker {
    /// Two shards on 127.0.0.1, port 0.
    pub fn start() -> TestBroker {
        TestBroker::with(|_| {})
    }

    /// Two shards, with a hook to adjust the configuration.
    pub fn with(adjust: impl FnOnce(&mut broker::Config)) -> TestBroker {
        TestBroker::with_extensions(adjust, broker::Extensions::default())
    }

    /// Two shards, with a hook to adjust the configuration and what is plugged in.
    pub fn with_extensions(
        adjust: impl FnOnce(&mut broker::Config),
        extensions: broker::Extensions,
    ) -> TestBroker {
        show_broker_logs_on_failure();
        let mut config = broker::Config {
            // Tests that need state across restarts opt in with a temporary directory.
            persistence: broker::config::PersistenceSettings {
                enabled: false,
                ..Default::default()
            },
            mqtt: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            shards: 2,
            ..broker::Config::default()
        };
        adjust(&mut config);
        let handle = broker::start_with(config, extensions).expect("broker starts");
        TestBroker { handle }
    }

    pub fn port(&self) -> u16 {
        self.handle.mqtt_addr().port()
    }

    /// The body of a GET of `path` on the HTTP listener.
    pub fn http_get_body(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let addr = self.handle.http_addr().expect("http enabled");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }

    /// Waits until every shard routes at least `count` subscriptions: a client outside the
    /// test's reach (a mosquitto_sub) has subscribed.
    pub fn wait_for_subscriptions(&self, count: u64) {
        let deadline = Instant::now() + WAIT;
        while self
            .handle
            .fresh_snapshots()
            .iter()
            .any(|s| s.subscriptions < count)
        {
            assert!(
                Instant::now() < deadline,
                "{count} subscriptions never applied"
            );
        }
    }

    pub fn accepted(&self) -> Vec<u64> {
        self.handle.accepted_per_shard()
    }

    /// The shard whose accepted counter grew between two readings.
    pub fn shard_of_last(&self, before: &[u64]) -> usize {
        let after = self.accepted();
        after
            .iter()
            .zip(before)
            .position(|(a, b)| a > b)
            .expect("a shard accepted the connection")
    }
}

/// A raw connection, no CONNECT sent yet, that shard `shard` accepted: sockets are opened
/// until SO_REUSEPORT's hash gives one to that shard (the others close without a word), so a
/// test decides where each client lands.
pub fn raw_on_shard(broker: &TestBroker, shard: usize, protocol: protocol::Protocol) -> raw::Raw {
    for _ in 0..64 {
        let before = broker.accepted();
        let raw = raw::Raw::open(broker.port(), protocol);
        let deadline = Instant::now() + WAIT;
        while broker.accepted() == before {
            assert!(Instant::now() < deadline, "connection never accepted");
            std::thread::sleep(Duration::from_millis(1));
        }
        if broker.shard_of_last(&before) == shard {
            return raw;
        }
    }
    panic!("64 connections and none landed on shard {shard}");
}

/// An rumqttc client whose event loop runs on its own task.
pub struct Client {
    pub client: AsyncClient,
    pub incoming: mpsc::UnboundedReceiver<Result<Packet, String>>,
    task: tokio::task::JoinHandle<()>,
}

pub const WAIT: Duration = Duration::from_secs(5);

impl Client {
    /// Connects and waits for CONNACK; returns the client and the session present flag.
    pub async fn connect(
        port: u16,
        id: &str,
        configure: impl FnOnce(&mut MqttOptions),
    ) -> (Client, bool) {
        let mut opts = MqttOptions::new(id, "127.0.0.1", port);
        opts.set_keep_alive(Duration::from_secs(30));
        configure(&mut opts);
        let (client, eventloop) = AsyncClient::new(opts, 100);
        let (tx, mut incoming) = mpsc::unbounded_channel();
        let task = tokio::spawn(pump(eventloop, tx));
        let present = loop {
            match tokio::time::timeout(WAIT, incoming.recv()).await {
                Ok(Some(Ok(Packet::ConnAck(ack)))) => {
                    assert_eq!(
                        ack.code,
                        rumqttc::ConnectReturnCode::Success,
                        "CONNACK refused"
                    );
                    break ack.session_present;
                }
                Ok(Some(Ok(_))) => continue,
                other => panic!("no CONNACK for {id}: {other:?}"),
            }
        };
        (
            Client {
                client,
                incoming,
                task,
            },
            present,
        )
    }

    /// The next PUBLISH, within the wait limit.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        loop {
            match tokio::time::timeout(WAIT, self.incoming.recv()).await {
                Ok(Some(Ok(Packet::Publish(p)))) => return p,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a PUBLISH, got {other:?}"),
            }
        }
    }

    /// The next incoming packet that `pick` accepts (others are skipped).
    pub async fn next_packet(&mut self, pick: impl Fn(&Packet) -> bool) -> Packet {
        loop {
            match tokio::time::timeout(WAIT, self.incoming.recv()).await {
                Ok(Some(Ok(p))) if pick(&p) => return p,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected a packet, got {other:?}"),
            }
        }
    }

    /// Asserts no packet that `pick` accepts arrives within `quiet`.
    pub async fn expect_no_packet(&mut self, quiet: Duration, pick: impl Fn(&Packet) -> bool) {
        let deadline = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                Err(_) => return,
                Ok(Some(Ok(p))) if pick(&p) => panic!("unexpected {p:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// Every PUBLISH that arrives before a marker a client of the test's own publishes on
    /// `topic` (which this client must match): what precedes the marker is everything the
    /// broker had on the way here, so a test proves "nothing else" without a quiet period.
    pub async fn until_marker(&mut self, port: u16, topic: &str) -> Vec<rumqttc::Publish> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mine = format!(
            "{} #{}",
            v5::MARKER,
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let (mut marker, _) = Client::connect(port, "test-marker", |_| {}).await;
        marker
            .client
            .publish(topic, rumqttc::QoS::AtLeastOnce, false, mine.clone())
            .await
            .unwrap();
        marker.next_packet(|p| matches!(p, Packet::PubAck(_))).await;
        marker.client.disconnect().await.unwrap();
        let mut out = Vec::new();
        loop {
            let p = self.next_publish().await;
            if p.payload.as_ref() == mine.as_bytes() {
                return out;
            }
            if !p.payload.starts_with(v5::MARKER.as_bytes()) {
                out.push(p);
            }
        }
    }

    /// Waits until SUBACK arrives.
    pub async fn subscribed(&mut self) -> rumqttc::SubAck {
        loop {
            match tokio::time::timeout(WAIT, self.incoming.recv()).await {
                Ok(Some(Ok(Packet::SubAck(ack)))) => return ack,
                Ok(Some(Ok(_))) => continue,
                other => panic!("expected SUBACK, got {other:?}"),
            }
        }
    }

    /// Waits until the connection fails or is closed by the broker.
    pub async fn closed(&mut self) -> String {
        loop {
            match tokio::time::timeout(WAIT, self.incoming.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(None) => return "closed".into(),
                Ok(Some(Ok(_))) => continue,
                Err(_) => panic!("connection still open"),
            }
        }
    }

    /// Drops the connection without DISCONNECT (as a vehicle losing its network would).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// Polls the event loop, forwarding incoming packets; stops at the first error (no reconnect).
async fn pump(mut eventloop: EventLoop, tx: mpsc::UnboundedSender<Result<Packet, String>>) {
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(packet)) => {
                if tx.send(Ok(packet)).is_err() {
                    return;
                }
            }
            Ok(Event::Outgoing(_)) => {}
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        }
    }
}

/// Opens connections with fresh ids until one lands on a shard other than `not_on`;
/// returns it. SO_REUSEPORT spreads connections by address hash, so a few tries suffice.
pub async fn connect_on_other_shard(
    broker: &TestBroker,
    not_on: usize,
    id: &str,
    configure: impl Fn(&mut MqttOptions),
) -> (Client, bool, usize) {
    for _ in 0..64 {
        let before = broker.accepted();
        let (client, present) = Client::connect(broker.port(), id, &configure).await;
        let shard = broker.shard_of_last(&before);
        if shard != not_on {
            return (client, present, shard);
        }
        client.client.disconnect().await.ok();
        client.kill();
    }
    panic!("64 connections all landed on shard {not_on}");
}
