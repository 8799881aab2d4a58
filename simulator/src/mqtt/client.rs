//! [`Connection`]: connect with a Last Will, publish at QoS 0/1/2 within an in-flight window,
//! subscribe, keep alive, and hand back what was not acknowledged when the link dies.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeMap,
    io,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncWriteExt};
use glommio::{
    channels::local_channel::{self, LocalSender},
    net::TcpStream,
    sync::Semaphore,
    timer::sleep,
    Task,
};
use protocol::{
    decode, encode, ByteStr, Connect, Disconnect, Packet, Properties, Protocol, PubAck, Publish,
    QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, Will,
};

use super::stream::Stream;
use super::url::BrokerUrl;

/// Largest packet accepted from the broker.
const MAX_INCOMING: u32 = 1 << 20;
/// Above this many queued bytes, QoS 0 publishers wait for the socket.
const OUT_HIGH_WATER: usize = 1 << 20;

/// How to reach and talk to the broker.
#[derive(Clone)]
pub struct ClientOptions {
    /// Where.
    pub url: BrokerUrl,
    /// MQTT 3.1.1 or 5.0.
    pub protocol: Protocol,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Keep alive, seconds.
    pub keep_alive_s: u16,
    /// Most QoS 1/2 messages unacknowledged at once (lowered to the broker's Receive Maximum).
    pub max_inflight: u16,
    /// TLS configuration; required by `mqtts://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed for TCP, TLS and CONNACK together.
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("url", &self.url)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Receives what the reader task learns.
pub trait Handler {
    /// A QoS 1/2 message with this tag was acknowledged (`ok`: with a success reason code).
    fn acked(&self, tag: u64, ok: bool);
    /// A message arrived on a subscription.
    fn message(&self, _publish: &Publish) {}
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Socket error.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The broker refused the connection.
    #[error("connection refused by the broker: reason 0x{0:02x}")]
    Refused(u8),
    /// The broker broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// No answer in time.
    #[error("timed out")]
    Timeout,
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
}

/// A QoS 1/2 message the broker had not acknowledged when the connection died.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// The caller's tag.
    pub tag: u64,
    /// The message.
    pub publish: Publish,
}

struct InFlight {
    order: u64,
    tag: u64,
    publish: Publish,
}

/// State shared by the caller and the reader and writer tasks.
struct Shared {
    protocol: Protocol,
    out: RefCell<BytesMut>,
    wake: LocalSender<()>,
    writing: Cell<bool>,
    inflight: RefCell<BTreeMap<u16, InFlight>>,
    window: Semaphore,
    dead: Cell<bool>,
    subacks: Cell<u64>,
    handler: Rc<dyn Handler>,
}

impl Shared {
    fn queue(&self, packet: &Packet) {
        if encode(packet, self.protocol, &mut self.out.borrow_mut()).is_ok() {
            let _ = self.wake.try_send(());
        }
    }

    fn kill(&self) {
        if !self.dead.replace(true) {
            self.window.close();
            let _ = self.wake.try_send(());
        }
    }

    fn handle(&self, packet: Packet) -> Result<(), ClientError> {
        let ok = |code: ReasonCode| code.0 < 0x80;
        match packet {
            Packet::PubAck(ack) | Packet::PubComp(ack) => self.complete(ack.pkid, ok(ack.reason)),
            Packet::PubRec(ack) if !ok(ack.reason) => self.complete(ack.pkid, false),
            Packet::PubRec(ack) => self.queue(&Packet::PubRel(pub_ack(ack.pkid))),
            Packet::Publish(publish) => {
                self.handler.message(&publish);
                match publish.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => self.queue(&Packet::PubAck(pub_ack(publish.pkid))),
                    QoS::ExactlyOnce => self.queue(&Packet::PubRec(pub_ack(publish.pkid))),
                }
            }
            Packet::PubRel(rel) => self.queue(&Packet::PubComp(pub_ack(rel.pkid))),
            Packet::SubAck(_) => self.subacks.set(self.subacks.get() + 1),
            Packet::PingResp | Packet::UnsubAck(_) => {}
            Packet::Disconnect(d) => {
                return Err(ClientError::Protocol(format!(
                    "broker disconnected with reason 0x{:02x}",
                    d.reason.0
                )))
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected {}",
                    other.name()
                )));
            }
        }
        Ok(())
    }

    fn complete(&self, pkid: u16, ok: bool) {
        if let Some(entry) = self.inflight.borrow_mut().remove(&pkid) {
            self.handler.acked(entry.tag, ok);
            self.window.signal(1);
        }
    }
}

fn pub_ack(pkid: u16) -> PubAck {
    PubAck {
        pkid,
        reason: ReasonCode::SUCCESS,
        properties: Properties::default(),
    }
}

/// A live MQTT connection.
pub struct Connection {
    shared: Rc<Shared>,
    next_pkid: u16,
    order: u64,
    _reader: Task<()>,
    _writer: Task<()>,
}

impl Connection {
    /// Connects, sends CONNECT (with `will`, clean session) and waits for a successful CONNACK.
    ///
    /// # Errors
    /// Network failure, TLS failure, refusal, timeout.
    pub async fn connect(
        options: &ClientOptions,
        client_id: &str,
        will: Option<Will>,
        handler: Rc<dyn Handler>,
    ) -> Result<Connection, ClientError> {
        let connecting = Self::handshake(options, client_id, will);
        let timeout = options.connect_timeout;
        let (stream, buf, window) = future::or(connecting, async {
            sleep(timeout).await;
            Err(ClientError::Timeout)
        })
        .await?;
        let (reader, writer) = futures_lite::io::split(stream);
        let (wake, wakeup) = local_channel::new_bounded(1);
        let shared = Rc::new(Shared {
            protocol: options.protocol,
            out: RefCell::new(BytesMut::with_capacity(512)),
            wake,
            writing: Cell::new(false),
            inflight: RefCell::new(BTreeMap::new()),
            window: Semaphore::new(u64::from(window)),
            dead: Cell::new(false),
            subacks: Cell::new(0),
            handler,
        });
        let reader_task = glommio::spawn_local(read_loop(shared.clone(), reader, buf));
        let keep_alive = Duration::from_secs(u64::from(options.keep_alive_s.max(1)));
        let writer_task =
            glommio::spawn_local(write_loop(shared.clone(), writer, wakeup, keep_alive));
        Ok(Connection {
            shared,
            next_pkid: 1,
            order: 0,
            _reader: reader_task,
            _writer: writer_task,
        })
    }

    async fn handshake(
        options: &ClientOptions,
        client_id: &str,
        will: Option<Will>,
    ) -> Result<(Stream, BytesMut, u16), ClientError> {
        let addr = format!("{}:{}", options.url.host, options.url.port);
        let addr = if options.url.host.contains(':') {
            format!("[{}]:{}", options.url.host, options.url.port)
        } else {
            addr
        };
        let tcp = TcpStream::connect(addr.as_str())
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        tcp.set_nodelay(true)
            .map_err(|e| io::Error::other(e.to_string()))?;
        let mut stream = match (&options.tls, options.url.tls) {
            (Some(config), true) => {
                let name = rustls::pki_types::ServerName::try_from(options.url.host.clone())
                    .map_err(|e| ClientError::Protocol(format!("TLS server name: {e}")))?;
                let tls = futures_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await?;
                Stream::Tls(Box::new(tls))
            }
            (None, true) => {
                return Err(ClientError::Protocol(
                    "mqtts:// without a TLS configuration".into(),
                ))
            }
            (_, false) => Stream::Tcp(tcp),
        };
        let connect = Packet::Connect(Connect {
            protocol: options.protocol,
            clean_start: true,
            keep_alive: options.keep_alive_s,
            client_id: ByteStr::from(client_id.to_owned()),
            will,
            username: options.username.clone().map(ByteStr::from),
            password: options.password.clone().map(Bytes::from),
            properties: Properties::default(),
        });
        let mut out = BytesMut::new();
        encode(&connect, options.protocol, &mut out)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        stream.write_all(&out).await?;
        stream.flush().await?;
        let mut buf = BytesMut::with_capacity(256);
        loop {
            match decode(&mut buf, options.protocol, MAX_INCOMING) {
                Ok(Some(Packet::ConnAck(ack))) => {
                    if ack.reason.0 >= 0x80 {
                        return Err(ClientError::Refused(ack.reason.0));
                    }
                    let window = ack
                        .properties
                        .receive_maximum
                        .map_or(options.max_inflight, |m| m.min(options.max_inflight))
                        .max(1);
                    return Ok((stream, buf, window));
                }
                Ok(Some(other)) => {
                    return Err(ClientError::Protocol(format!(
                        "expected CONNACK, got {}",
                        other.name()
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            if read_more(&mut stream, &mut buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// True once the socket has failed or the broker has closed it.
    pub fn is_dead(&self) -> bool {
        self.shared.dead.get()
    }

    /// Publishes. At QoS 0 the message is queued for the socket; at QoS 1 and 2 this waits for
    /// a slot in the in-flight window, and the handler hears of `tag` when it is acknowledged.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is gone (the message was not taken).
    pub async fn publish(
        &mut self,
        topic: ByteStr,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        tag: u64,
    ) -> Result<(), ClientError> {
        if self.is_dead() {
            return Err(ClientError::Closed);
        }
        let mut publish = Publish {
            dup: false,
            qos,
            retain,
            topic,
            pkid: 0,
            payload,
            properties: Properties::default(),
        };
        if qos == QoS::AtMostOnce {
            while self.shared.out.borrow().len() > OUT_HIGH_WATER {
                sleep(Duration::from_millis(1)).await;
                if self.is_dead() {
                    return Err(ClientError::Closed);
                }
            }
            self.shared.queue(&Packet::Publish(publish));
            return Ok(());
        }
        self.shared
            .window
            .acquire(1)
            .await
            .map_err(|_| ClientError::Closed)?;
        if self.is_dead() {
            return Err(ClientError::Closed);
        }
        publish.pkid = self.free_pkid();
        self.order += 1;
        self.shared.queue(&Packet::Publish(publish.clone()));
        self.shared.inflight.borrow_mut().insert(
            publish.pkid,
            InFlight {
                order: self.order,
                tag,
                publish,
            },
        );
        Ok(())
    }

    fn free_pkid(&mut self) -> u16 {
        let inflight = self.shared.inflight.borrow();
        loop {
            let pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !inflight.contains_key(&pkid) {
                return pkid;
            }
        }
    }

    /// Subscribes to `filter` and waits for SUBACK.
    ///
    /// # Errors
    /// Closed connection or no SUBACK within `timeout`.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        let before = self.shared.subacks.get();
        let pkid = self.free_pkid();
        self.shared.queue(&Packet::Subscribe(Subscribe {
            pkid,
            subscriptions: vec![Subscription {
                filter: ByteStr::from(filter.to_owned()),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Properties::default(),
        }));
        let deadline = Instant::now() + timeout;
        while self.shared.subacks.get() == before {
            if self.is_dead() {
                return Err(ClientError::Closed);
            }
            if Instant::now() > deadline {
                return Err(ClientError::Timeout);
            }
            sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// Messages sent and not yet acknowledged.
    pub fn in_flight(&self) -> usize {
        self.shared.inflight.borrow().len()
    }

    /// Waits until every QoS 1/2 message is acknowledged and the socket has taken every
    /// queued byte, or `timeout` passes. Returns true when everything was acknowledged.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while (self.in_flight() > 0
            || !self.shared.out.borrow().is_empty()
            || self.shared.writing.get())
            && !self.is_dead()
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(2)).await;
        }
        self.in_flight() == 0
    }

    /// Sends DISCONNECT (the broker then drops the Last Will) and closes.
    pub async fn disconnect(self, timeout: Duration) {
        self.shared.queue(&Packet::Disconnect(Disconnect {
            reason: ReasonCode::NORMAL_DISCONNECTION,
            properties: Properties::default(),
        }));
        self.settle(timeout).await;
    }

    /// The messages not acknowledged, in the order they were sent; for a connection that died.
    pub fn take_unacked(self) -> Vec<Unacked> {
        let mut entries: Vec<InFlight> = std::mem::take(&mut *self.shared.inflight.borrow_mut())
            .into_values()
            .collect();
        entries.sort_by_key(|e| e.order);
        entries
            .into_iter()
            .map(|e| Unacked {
                tag: e.tag,
                publish: e.publish,
            })
            .collect()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wake anything waiting on the window; the tasks are cancelled with their handles.
        self.shared.kill();
    }
}

thread_local! {
    /// The buffer every connection of this thread reads its socket through (64 KiB, so one
    /// read takes a large burst), then keeps only the bytes it got: thousands of mostly idle
    /// vehicle connections hold no read buffers. A read borrows it only within one
    /// non-blocking `poll_read`, which cannot keep it.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; 64 * 1024].into_boxed_slice());
}

async fn read_more(
    stream: &mut (impl futures_lite::AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> io::Result<usize> {
    if buf.is_empty() {
        // Decoded packets keep their own slices; let go of the rest.
        *buf = BytesMut::new();
    }
    future::poll_fn(|cx| {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            let n = std::task::ready!(std::pin::Pin::new(&mut *stream).poll_read(cx, scratch))?;
            buf.extend_from_slice(&scratch[..n]);
            std::task::Poll::Ready(Ok(n))
        })
    })
    .await
}

async fn read_loop(
    shared: Rc<Shared>,
    mut reader: futures_lite::io::ReadHalf<Stream>,
    mut buf: BytesMut,
) {
    let result: Result<(), ClientError> = async {
        loop {
            while let Some(packet) = decode(&mut buf, shared.protocol, MAX_INCOMING)
                .map_err(|e| ClientError::Protocol(e.to_string()))?
            {
                shared.handle(packet)?;
            }
            if read_more(&mut reader, &mut buf).await? == 0 {
                return Err(ClientError::Closed);
            }
        }
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection lost");
    }
    shared.kill();
}

async fn write_loop(
    shared: Rc<Shared>,
    mut writer: futures_lite::io::WriteHalf<Stream>,
    wakeup: local_channel::LocalReceiver<()>,
    keep_alive: Duration,
) {
    let ping_after = keep_alive / 2;
    let mut last_write = Instant::now();
    loop {
        let woken = future::or(async { wakeup.recv().await.is_some() }, async {
            sleep(ping_after).await;
            true
        })
        .await;
        if !woken || shared.dead.get() {
            break;
        }
        if shared.out.borrow().is_empty() && last_write.elapsed() >= ping_after {
            shared.queue(&Packet::PingReq);
        }
        let chunk = shared.out.borrow_mut().split();
        if chunk.is_empty() {
            continue;
        }
        shared.writing.set(true);
        let result = async {
            writer.write_all(&chunk).await?;
            writer.flush().await
        }
        .await;
        shared.writing.set(false);
        if let Err(e) = result {
            tracing::debug!(error = %e, "write failed");
            break;
        }
        last_write = Instant::now();
    }
    shared.kill();
}
