//! One persistent MQTT session that feeds a write-ahead log and acknowledges what is durable.

use std::{
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::BytesMut;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use protocol::{
    decode, encode, ByteStr, Connect, Packet, Properties, PubAck, QoS, ReasonCode, Subscribe,
    Subscription, SubscriptionOptions,
};

use super::{StandaloneConfig, StandaloneStats};
use crate::{Record, ShardWal};

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SubscriberError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The broker refused or broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The log could not make a record durable; nothing more is acknowledged.
    #[error("write-ahead log: {0}")]
    Wal(String),
}

/// Largest packet accepted from the broker.
const MAX_PACKET: u32 = 16 << 20;

/// One connection's worth of state.
pub(super) struct Session<'a> {
    config: &'a StandaloneConfig,
    client_id: &'a str,
    wal: &'a Rc<ShardWal>,
    stats: &'a Arc<StandaloneStats>,
    stop: &'a Arc<AtomicBool>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Session<'_> {
    /// Why the connection ended when the broker closed it (`connected`: after its CONNACK). A
    /// broker that speaks only MQTT 3.1.1 may drop an MQTT 5 CONNECT without a word (rumqttd's
    /// 3.1.1 listener does), and the retries would then go on for ever with nothing to say what
    /// is wrong.
    fn closed_before_connack(&self, connected: bool) -> &'static str {
        if !connected && self.config.protocol.is_v5() {
            "the broker closed the connection without answering CONNECT: a broker that speaks \
             only MQTT 3.1.1 does that to an MQTT 5 client (try --mqtt-version 3.1.1)"
        } else {
            "the broker closed the connection"
        }
    }
}

impl<'a> Session<'a> {
    pub(super) fn new(
        config: &'a StandaloneConfig,
        client_id: &'a str,
        wal: &'a Rc<ShardWal>,
        stats: &'a Arc<StandaloneStats>,
        stop: &'a Arc<AtomicBool>,
    ) -> Session<'a> {
        Session {
            config,
            client_id,
            wal,
            stats,
            stop,
        }
    }

    fn send(&self, packet: &Packet, out: &mut BytesMut) -> Result<(), SubscriberError> {
        encode(packet, self.config.protocol, out)
            .map_err(|e| SubscriberError::Protocol(e.to_string()))
    }

    /// Connects, subscribes and archives until stopped (`Ok`) or the connection fails (`Err`).
    pub(super) async fn run(self) -> Result<(), SubscriberError> {
        let addr = format!("{}:{}", self.config.host, self.config.port);
        let mut stream = TcpStream::connect(addr.as_str())
            .await
            .map_err(std::io::Error::from)?;
        let _ = stream.set_nodelay(true);
        let v5 = self.config.protocol.is_v5();
        let mut out = BytesMut::new();
        let mut properties = Properties::default();
        if v5 {
            // Keep the session while we are away, so nothing published meanwhile is lost.
            properties.session_expiry_interval = Some(u32::MAX);
        }
        self.send(
            &Packet::Connect(Connect {
                protocol: self.config.protocol,
                clean_start: false,
                keep_alive: self.config.keep_alive,
                client_id: ByteStr::from(self.client_id),
                will: None,
                username: self.config.username.as_deref().map(ByteStr::from),
                password: self.config.password.clone().map(bytes::Bytes::from),
                properties,
            }),
            &mut out,
        )?;
        self.send(
            &Packet::Subscribe(Subscribe {
                pkid: 1,
                subscriptions: self
                    .config
                    .subscriptions()
                    .into_iter()
                    .map(|filter| Subscription {
                        filter: ByteStr::from(filter),
                        options: SubscriptionOptions {
                            qos: QoS::AtLeastOnce,
                            ..SubscriptionOptions::default()
                        },
                    })
                    .collect(),
                properties: Properties::default(),
            }),
            &mut out,
        )?;
        stream.write_all(&out).await?;
        out.clear();

        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut connected = false;
        let mut last_sent = Instant::now();
        let ping_every = Duration::from_secs(u64::from(self.config.keep_alive.max(2)) / 2);
        let result = loop {
            if self.stop.load(Ordering::Relaxed) {
                let _ = self.send(&Packet::Disconnect(Default::default()), &mut out);
                let _ = stream.write_all(&out).await;
                break Ok(());
            }
            // Read with a short timeout so stop requests and keepalive are noticed.
            let start = buf.len();
            buf.resize(start + 64 * 1024, 0);
            let read = glommio::timer::timeout(Duration::from_millis(200), async {
                Ok(stream.read(&mut buf[start..]).await)
            })
            .await;
            let n = match read {
                Ok(Ok(0)) => {
                    buf.truncate(start);
                    break Err(SubscriberError::Protocol(
                        self.closed_before_connack(connected).into(),
                    ));
                }
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    buf.truncate(start);
                    // A close with our SUBSCRIBE still unread arrives as a reset.
                    let reset = matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                    );
                    break Err(match reset && !connected {
                        true => {
                            SubscriberError::Protocol(self.closed_before_connack(connected).into())
                        }
                        false => e.into(),
                    });
                }
                Err(_) => 0,
            };
            buf.truncate(start + n);

            // Everything decoded from this read goes to the log; one durable wait covers it
            // all (group commit), then the acknowledgements go out in one write.
            let mut last_ticket = None;
            let mut acks = Vec::new();
            loop {
                let packet = match decode(&mut buf, self.config.protocol, MAX_PACKET) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => return Err(SubscriberError::Protocol(e.to_string())),
                };
                match packet {
                    Packet::ConnAck(ack) => {
                        if ack.reason.is_error() {
                            let hint = if ack.reason == ReasonCode::UNSUPPORTED_PROTOCOL_VERSION {
                                " (try --mqtt-version 3.1.1)"
                            } else {
                                ""
                            };
                            return Err(SubscriberError::Protocol(format!(
                                "the broker refused the connection: {}{hint}",
                                ack.reason
                            )));
                        }
                        connected = true;
                        self.stats.connects.fetch_add(1, Ordering::Relaxed);
                        self.stats.connected.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(
                            client_id = self.client_id,
                            session_present = ack.session_present,
                            "ingest connected"
                        );
                    }
                    Packet::SubAck(ack) => {
                        if let Some(bad) = ack.reasons.iter().find(|r| r.is_error()) {
                            break_with_refusal(*bad)?;
                        }
                        tracing::info!(client_id = self.client_id, "ingest subscribed");
                    }
                    Packet::Publish(publish) => {
                        self.stats.received.fetch_add(1, Ordering::Relaxed);
                        let record = Record::new(
                            publish.topic.as_bytes().clone(),
                            publish.payload.clone(),
                            now_ms(),
                        );
                        last_ticket = Some(self.wal.append(record, 0));
                        tracing::trace!(topic = %publish.topic, "logged");
                        if publish.qos != QoS::AtMostOnce {
                            acks.push((publish.qos, publish.pkid));
                        }
                    }
                    Packet::PubRel(rel) => acks.push((QoS::AtMostOnce, rel.pkid)),
                    Packet::PingResp => {}
                    Packet::Disconnect(d) => {
                        return Err(SubscriberError::Protocol(format!(
                            "the broker disconnected: {}",
                            d.reason
                        )))
                    }
                    other => {
                        return Err(SubscriberError::Protocol(format!(
                            "unexpected {} from the broker",
                            other.name()
                        )))
                    }
                }
            }
            if let Some(ticket) = last_ticket {
                self.wal
                    .durable(ticket)
                    .await
                    .map_err(|e| SubscriberError::Wal(e.to_string()))?;
            }
            for (qos, pkid) in &acks {
                let ack = PubAck {
                    pkid: *pkid,
                    reason: ReasonCode::SUCCESS,
                    properties: Properties::default(),
                };
                let packet = match qos {
                    QoS::AtLeastOnce => Packet::PubAck(ack),
                    QoS::ExactlyOnce => Packet::PubRec(ack),
                    // A PUBREL: the message was logged when its PUBLISH arrived.
                    QoS::AtMostOnce => Packet::PubComp(ack),
                };
                self.send(&packet, &mut out)?;
            }
            if !acks.is_empty() {
                self.stats.acknowledged.fetch_add(
                    acks.iter().filter(|(q, _)| *q == QoS::AtLeastOnce).count() as u64,
                    Ordering::Relaxed,
                );
            }
            if out.is_empty() && last_sent.elapsed() >= ping_every {
                self.send(&Packet::PingReq, &mut out)?;
            }
            if !out.is_empty() {
                stream.write_all(&out).await?;
                out.clear();
                last_sent = Instant::now();
            }
        };
        if connected {
            self.stats.connected.fetch_sub(1, Ordering::Relaxed);
        }
        result
    }
}

fn break_with_refusal(code: ReasonCode) -> Result<(), SubscriberError> {
    Err(SubscriberError::Protocol(format!(
        "the broker refused a subscription: {code}"
    )))
}
