//! The HTTP listener: MQTT over WebSocket (with an independent WebSocket client, tungstenite),
//! `/metrics`, `/healthz`, the dashboard's files, and refusals.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use common::{Client, TestBroker};
use protocol::{
    decode, encode, ByteStr, Connect, Packet, Properties, Protocol, Publish, QoS as PQoS,
    ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use tungstenite::{client::IntoClientRequest, Message};

fn http_get(broker: &TestBroker, path: &str) -> (u16, String) {
    let addr = broker.handle.http_addr().expect("http enabled");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

type Ws = tungstenite::WebSocket<TcpStream>;

fn ws_connect(broker: &TestBroker) -> Ws {
    let addr = broker.handle.http_addr().expect("http enabled");
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (ws, response) = tungstenite::client::client(request, stream).unwrap();
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().unwrap()),
        Some("mqtt")
    );
    ws
}

fn frame(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, Protocol::V5, &mut out).unwrap();
    out.to_vec()
}

fn ws_next(ws: &mut Ws, buf: &mut BytesMut) -> Packet {
    loop {
        if let Some(p) = decode(buf, Protocol::V5, u32::MAX).unwrap() {
            return p;
        }
        match ws.read().unwrap() {
            Message::Binary(b) => buf.extend_from_slice(&b),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_over_websocket_with_packets_split_and_joined_across_frames() {
    let broker = TestBroker::start();
    let port = broker.port();
    let (publisher, _) = Client::connect(port, "tcp-pub", |_| {}).await;

    let subscriber = {
        let mut ws = tokio::task::block_in_place(|| ws_connect(&broker));
        let connect = frame(&Packet::Connect(Connect {
            protocol: Protocol::V5,
            clean_start: true,
            keep_alive: 30,
            client_id: ByteStr::from("browser"),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }));
        let subscribe = frame(&Packet::Subscribe(Subscribe {
            pkid: 7,
            subscriptions: vec![Subscription {
                filter: ByteStr::from("fleet/+/gps"),
                options: SubscriptionOptions {
                    qos: PQoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Properties::default(),
        }));
        // CONNECT split over two frames, then its tail and the whole SUBSCRIBE in one frame.
        let (a, b) = connect.split_at(5);
        tokio::task::block_in_place(|| {
            ws.send(Message::Binary(Bytes::copy_from_slice(a))).unwrap();
            let mut joined = b.to_vec();
            joined.extend_from_slice(&subscribe);
            ws.send(Message::Binary(Bytes::from(joined))).unwrap();
            let mut buf = BytesMut::new();
            assert!(
                matches!(ws_next(&mut ws, &mut buf), Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS)
            );
            assert!(matches!(ws_next(&mut ws, &mut buf), Packet::SubAck(s) if s.pkid == 7));
            (ws, buf)
        })
    };
    publisher
        .client
        .publish(
            "fleet/v9/gps",
            rumqttc::QoS::AtLeastOnce,
            false,
            "{\"seq\":1}",
        )
        .await
        .unwrap();
    let (mut ws, mut buf) = subscriber;
    let got = tokio::task::block_in_place(|| ws_next(&mut ws, &mut buf));
    match got {
        Packet::Publish(Publish {
            topic,
            payload,
            qos,
            pkid,
            ..
        }) => {
            assert_eq!(topic, "fleet/v9/gps");
            assert_eq!(&payload[..], b"{\"seq\":1}");
            assert_eq!(qos, PQoS::AtLeastOnce);
            tokio::task::block_in_place(|| {
                let ack = frame(&Packet::PubAck(protocol::PubAck {
                    pkid,
                    reason: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                }));
                ws.send(Message::Binary(Bytes::from(ack))).unwrap();
            });
        }
        other => panic!("expected PUBLISH, got {other:?}"),
    }
}

#[test]
fn websocket_without_the_mqtt_subprotocol_is_refused() {
    let broker = TestBroker::start();
    let addr = broker.handle.http_addr().unwrap();
    let request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    let stream = TcpStream::connect(addr).unwrap();
    assert!(tungstenite::client::client(request, stream).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_connections_and_messages() {
    // No $SYS: its retained topics would count among the retained messages.
    let broker = TestBroker::with(|c| c.sys_interval = 0);
    let (mut sub, _) = Client::connect(broker.port(), "m-sub", |_| {}).await;
    sub.client
        .subscribe("m/#", rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    sub.subscribed().await;
    let (publisher, _) = Client::connect(broker.port(), "m-pub", |_| {}).await;
    for _ in 0..3 {
        publisher
            .client
            .publish("m/x", rumqttc::QoS::AtLeastOnce, true, "v")
            .await
            .unwrap();
        sub.next_publish().await;
    }
    // Every shard posts figures taken from now on; /metrics then serves them.
    let (status, body) = tokio::task::block_in_place(|| {
        broker.handle.fresh_snapshots();
        http_get(&broker, "/metrics")
    });
    assert_eq!(status, 200);
    let value = |line_start: &str| -> u64 {
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line_start} missing in\n{body}"))
    };
    let connections =
        value("fleetmq_connections{shard=\"0\"}") + value("fleetmq_connections{shard=\"1\"}");
    assert_eq!(connections, 2);
    assert_eq!(value("fleetmq_messages_received_total{qos=\"1\"}"), 3);
    assert_eq!(value("fleetmq_messages_sent_total{qos=\"1\"}"), 3);
    assert_eq!(value("fleetmq_retained_messages"), 1);
    assert!(body.contains("# TYPE fleetmq_subscriptions gauge"));
    let snapshots = broker.handle.snapshots();
    assert_eq!(snapshots.len(), 2);
}

#[test]
fn healthz_and_unknown_paths() {
    let broker = TestBroker::start();
    assert_eq!(http_get(&broker, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(&broker, "/no-such-file.js").0, 404);
    // Without static files plugged in, the page is not there either.
    assert_eq!(http_get(&broker, "/").0, 404);
}

/// Static files of the embedding program, as fleetmq plugs in its dashboard.
struct Page;

impl broker::StaticFiles for Page {
    fn get(&self, path: &str) -> Option<(&'static str, &'static [u8])> {
        match path {
            "index.html" => Some(("text/html; charset=utf-8", b"<h1>dispatch</h1>")),
            "app.js" => Some(("text/javascript; charset=utf-8", b"run();")),
            _ => None,
        }
    }
}

#[test]
fn plugged_in_static_files_are_served_with_index_html_at_the_root() {
    let broker = TestBroker::with_extensions(
        |_| {},
        broker::Extensions {
            static_files: Some(std::sync::Arc::new(Page)),
            ..Default::default()
        },
    );
    assert_eq!(
        http_get(&broker, "/"),
        (200, "<h1>dispatch</h1>".to_string())
    );
    assert_eq!(
        http_get(&broker, "/app.js?v=2"),
        (200, "run();".to_string())
    );
    assert_eq!(http_get(&broker, "/other.js").0, 404);
    // Its own paths stay its own.
    assert_eq!(http_get(&broker, "/healthz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_report_the_broker() {
    let broker = TestBroker::with(|c| c.sys_interval = 1);
    let (mut sub, _) = Client::connect(broker.port(), "sys-watch", |_| {}).await;
    sub.client
        .subscribe("$SYS/broker/clients/connected", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    sub.subscribed().await;
    let got = sub.next_publish().await;
    let connected: u64 = std::str::from_utf8(&got.payload).unwrap().parse().unwrap();
    assert!(connected <= 1, "{connected}");
    // And `#` does not see them (MQTT 4.7.2).
    let (mut all, _) = Client::connect(broker.port(), "hash-watch", |_| {}).await;
    all.client
        .subscribe("#", rumqttc::QoS::AtMostOnce)
        .await
        .unwrap();
    all.subscribed().await;
    // A report published after `#` subscribed, then a marker: nothing of `$SYS` in between.
    sub.next_publish().await;
    let got = all.until_marker(broker.port(), "marker").await;
    assert!(
        got.is_empty(),
        "`#` got {:?}",
        got.first().map(|p| &p.topic)
    );
}

/// A message of 1 MiB and its topic (a firmware chunk, an hour of buffered readings) is taken
/// on default settings, over TCP and over WebSocket alike.
#[test]
fn a_one_mib_payload_passes_over_tcp_and_websocket() {
    let broker = TestBroker::start();
    let mut ws = ws_connect(&broker);
    let mut buf = BytesMut::new();
    let hello = Packet::Connect(Connect {
        protocol: Protocol::V5,
        clean_start: true,
        keep_alive: 30,
        client_id: ByteStr::from("big-browser"),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    });
    ws.send(Message::Binary(Bytes::from(frame(&hello))))
        .unwrap();
    assert!(
        matches!(ws_next(&mut ws, &mut buf), Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS)
    );
    let subscribe = Packet::Subscribe(Subscribe {
        pkid: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from("big/#"),
            options: SubscriptionOptions::default(),
        }],
        properties: Properties::default(),
    });
    ws.send(Message::Binary(Bytes::from(frame(&subscribe))))
        .unwrap();
    assert!(matches!(ws_next(&mut ws, &mut buf), Packet::SubAck(_)));
    let big = |topic: &str, fill: u8| {
        Packet::Publish(Publish {
            dup: false,
            qos: PQoS::AtLeastOnce,
            retain: false,
            topic: ByteStr::from(topic),
            pkid: 9,
            payload: Bytes::from(vec![fill; 1 << 20]),
            properties: Properties::default(),
        })
    };
    // Over TCP, from a raw client.
    let (mut tcp, _) = common::v5::connect(broker.port(), "big-tcp", false);
    tcp.send(&big("big/tcp", b't'));
    assert!(matches!(tcp.recv(common::WAIT), Some(Packet::PubAck(a)) if !a.reason.is_error()));
    // Over WebSocket, in one binary message.
    ws.send(Message::Binary(Bytes::from(frame(&big("big/ws", b'w')))))
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match ws_next(&mut ws, &mut buf) {
            Packet::Publish(p) => seen.push((p.topic.to_string(), p.payload.len(), p.payload[0])),
            Packet::PubAck(a) => {
                assert!(!a.reason.is_error(), "{a:?}");
                seen.push(("puback".into(), 0, 0));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("big/tcp".into(), 1 << 20, b't'),
            ("big/ws".into(), 1 << 20, b'w'),
            ("puback".into(), 0, 0),
        ]
    );
}

/// A WebSocket upgrade to `/mqtt` with these extra headers, answered with CONNACK or refused:
/// the response's status, and whether an MQTT CONNECT then got its CONNACK.
fn upgrade_with(broker: &TestBroker, headers: &[(&'static str, String)]) -> (u16, bool) {
    let addr = broker.handle.http_addr().expect("http enabled");
    let mut request = format!("ws://{addr}/mqtt").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "mqtt".parse().unwrap());
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match tungstenite::client::client(request, stream) {
        Ok((mut ws, response)) => {
            let connect = Packet::Connect(Connect {
                protocol: Protocol::V5,
                clean_start: true,
                keep_alive: 30,
                client_id: ByteStr::from("origin-test"),
                will: None,
                username: None,
                password: None,
                properties: Properties::default(),
            });
            ws.send(Message::Binary(frame(&connect).into())).unwrap();
            let acked = matches!(ws_next(&mut ws, &mut BytesMut::new()), Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS);
            (response.status().as_u16(), acked)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            (response.status().as_u16(), false)
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn websocket_pages_of_other_origins_are_refused_and_counted() {
    let broker = TestBroker::start();
    let addr = broker.handle.http_addr().unwrap();
    // A page of another site, open in the operator's browser: refused before any MQTT.
    let evil = upgrade_with(&broker, &[("Origin", "http://evil.example".into())]);
    assert_eq!(evil, (403, false));
    // The dashboard the broker serves: its origin is the host the request went to.
    let own = upgrade_with(&broker, &[("Origin", format!("http://{addr}"))]);
    assert_eq!(own, (101, true));
    // A client that is not a browser sends no Origin.
    assert_eq!(upgrade_with(&broker, &[]), (101, true));
    let refused: u64 = broker
        .handle
        .fresh_snapshots()
        .iter()
        .map(|s| s.websocket_origin_refused)
        .sum();
    assert_eq!(refused, 1);
    let (_, metrics) = http_get(&broker, "/metrics");
    assert!(
        metrics.contains("fleetmq_websocket_origin_refused_total 1"),
        "{metrics}"
    );

    // An origin the configuration allows.
    let broker = TestBroker::with(|c| {
        c.web.allowed_origins = vec!["https://dispatch.example.com".into()];
    });
    let allowed = upgrade_with(
        &broker,
        &[("Origin", "https://dispatch.example.com".into())],
    );
    assert_eq!(allowed, (101, true));
    let other = upgrade_with(&broker, &[("Origin", "https://other.example.com".into())]);
    assert_eq!(other.0, 403);
}

#[test]
fn metrics_with_a_token_answer_only_its_bearer() {
    let broker = TestBroker::with(|c| c.web.metrics_token = Some("scrape-me-7".into()));
    let addr = broker.handle.http_addr().unwrap();
    let get = |authorization: Option<&str>| -> (u16, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let header = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
        write!(s, "GET /metrics HTTP/1.1\r\nHost: test\r\n{header}\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        (text[9..12].parse().unwrap(), text)
    };
    let (status, text) = get(None);
    assert_eq!(status, 401);
    assert!(text.contains("WWW-Authenticate: Bearer"), "{text}");
    assert_eq!(get(Some("Bearer wrong")).0, 401);
    let (status, text) = get(Some("Bearer scrape-me-7"));
    assert_eq!(status, 200);
    assert!(text.contains("fleetmq_connections"), "{text}");
    // The rest of the listener is not behind the token.
    assert_eq!(http_get(&broker, "/healthz").0, 200);
}
