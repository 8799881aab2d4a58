//! One client connection: the MQTT state machine, generic over the byte stream so TCP, TLS and
//! WebSocket all feed the same code.
//!
//! Each connection is one task on the shard that accepted it, in two parts polled side by side:
//! this reader, which decodes packets and acts on them, and a writer ([`writer`]) that drains
//! the connection's outbox. They share the stream ([`shared_stream`]). The reader waits on its
//! socket and on its [`Control`] at once, so the keepalive sweep, a takeover or shutdown can
//! end it without touching the socket.

mod acks;
mod connect;
mod inbound;
mod shared_stream;
mod subscribe;
mod writer;

use std::{
    cell::RefCell,
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use bytes::BytesMut;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use protocol::{
    decode, ByteStr, Connect, DecodeError, Disconnect, Packet, Protocol, ReasonCode, Will,
};

use self::shared_stream::{run_beside, SharedStream};
use crate::{
    metrics::bump,
    outbox::{CloseRequest, ConnHandle, Control, Encoding},
    persist::Record,
    security::ClientAccess,
    shard::{SessionSlot, Shard},
};

/// How a connection ended, which decides what is sent, and whether the Will goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    /// The client sent DISCONNECT; `keep_will` for 5.0 reason 0x04.
    ClientDisconnect { keep_will: bool },
    /// The socket closed or failed without DISCONNECT.
    PeerGone,
    /// The client broke the protocol; 5.0 clients are told why.
    Violation(ReasonCode, String),
    /// The broker closes it (keepalive, takeover, shutdown, slow consumer).
    Requested(CloseRequest),
    /// CONNECT was refused with a CONNACK already queued.
    Refused,
    /// The broker cannot go on serving this client (its archive log failed).
    ServerFailure(String),
}

impl Ending {
    fn violation(code: ReasonCode, why: impl Into<String>) -> Ending {
        Ending::Violation(code, why.into())
    }
}

/// What one read brought.
enum ReadEvent {
    Data(usize),
    Eof,
    Error(std::io::Error),
    Close(CloseRequest),
}

/// Serves one accepted connection until it ends. `cert_user` is the user name a verified TLS
/// client certificate stands for, if any.
///
/// The connection is registered with its shard at once; the future returned serves it. Not an
/// `async fn`: an async fn's arguments stay in its future for its whole life, and this future
/// lives as long as the connection (the stream, 120 bytes for TCP, is kept once, shared by the
/// reader and the writer).
pub fn serve<S>(
    shard: Rc<Shard>,
    stream: S,
    peer: SocketAddr,
    cert_user: Option<String>,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let conn_id = shard.next_conn_id();
    let handle = Rc::new(ConnHandle::new(shard.config.limits.connect_timeout));
    shard
        .state
        .borrow_mut()
        .connections
        .insert(conn_id, handle.clone());
    bump(&shard.metrics.connections, 1);
    bump(&shard.metrics.connections_total, 1);
    if shard.stopping.get() {
        handle.control.close(CloseRequest::Shutdown);
    }
    let mut conn = Conn {
        shard,
        id: conn_id,
        peer,
        protocol: Protocol::V5,
        handle,
        will: None,
        session_expiry: 0,
        inbound_aliases: None,
        cert_user: cert_user.map(String::into_boxed_str),
        access: None,
        publish_budget: None,
        problem_information: true,
        acks: None,
        feeds_subscribers: false,
    };
    // Wrapped out here: the `async` block keeps what it captures for its whole life, so a
    // stream captured and wrapped inside would be kept twice.
    let stream = RefCell::new(stream);
    async move {
        conn.serve_on(&stream).await;
        // Closed only now, after `finish` ended or parked the session, sent its Will and told
        // the other shards: a client that reconnects as soon as it sees the close finds the
        // broker done with its last connection (a session ended by a clean start is not
        // handed to the next connection as present).
        let _ = stream.into_inner().close().await;
        let shard = &conn.shard;
        shard.state.borrow_mut().connections.remove(&conn.id);
        shard
            .metrics
            .connections
            .set(shard.metrics.connections.get().saturating_sub(1));
    }
}

/// The reader's state for one connection.
struct Conn {
    shard: Rc<Shard>,
    id: u64,
    peer: SocketAddr,
    protocol: Protocol,
    /// Its outbox, close signal and liveness, shared with the shard.
    handle: Rc<ConnHandle>,
    /// Boxed: a `Will` is about 450 bytes (its properties inline) and most clients have
    /// none, yet this struct lives in every connection's future.
    will: Option<Box<Will>>,
    session_expiry: u32,
    /// Topic aliases the client set (5.0), alias -> topic. Boxed and made on first use: few
    /// clients use aliases, and this struct lives in every connection's future (8 bytes here
    /// instead of a map's 48).
    #[allow(clippy::box_collection)]
    inbound_aliases: Option<Box<HashMap<u16, ByteStr>>>,
    /// The user name its verified TLS client certificate stands for.
    cert_user: Option<Box<str>>,
    /// Its client id and ACL rules, once CONNECT is accepted (shared with its session slot).
    access: Option<Rc<ClientAccess>>,
    /// Publish rate budget: tokens left and when it was last refilled. Boxed: only brokers
    /// with a `max_publish_rate` use it, and this struct lives in every connection's future.
    publish_budget: Option<Box<(f64, Instant)>>,
    /// 5.0 Request Problem Information: reason strings may go in acks (default yes).
    problem_information: bool,
    /// Acknowledgements waiting for durability, made on the first one.
    acks: Option<Rc<acks::AckQueue>>,
    /// Its last PUBLISH reached subscribers: it waits while a full subscriber queue holds
    /// publishers back ([`crate::shard::pressure`]).
    feeds_subscribers: bool,
}

impl Conn {
    /// The reader and the writer of the connection, side by side on one stream.
    fn serve_on<'a, S>(&'a mut self, stream: &'a RefCell<S>) -> impl Future<Output = ()> + 'a
    where
        S: AsyncRead + AsyncWrite + Unpin + 'a,
    {
        let writer = writer::run(
            SharedStream(stream),
            self.handle.clone(),
            self.shard.clone(),
        );
        run_beside(self.run(SharedStream(stream)), writer)
    }

    async fn run<R: AsyncRead + Unpin>(&mut self, mut reader: R) {
        let max_packet = self.shard.config.limits.max_packet_size;
        let mut buf = BytesMut::new();
        // The handshake and the ending run once per connection and their futures are large
        // (several KiB): boxed, they take memory only while they run, and the future every
        // idle connection keeps is the small one that waits for its socket.
        let Some(connect) = Box::pin(self.read_connect(&mut reader, &mut buf, max_packet)).await
        else {
            return;
        };
        if let Err(ending) = Box::pin(self.connect(connect)).await {
            return Box::pin(self.finish(ending)).await;
        }
        // Serving packets, inline rather than in an async fn of its own: that one's future would
        // keep its own copies of the references this one holds (64 bytes more for every
        // connection).
        let ending = loop {
            if !buf.is_empty() {
                // Boxed: acting on packets takes a large future (a `Packet` alone is about
                // 1 KiB), which then exists only while there are packets to act on, one
                // allocation per read. Inline, it would be part of the future every
                // connection keeps while it waits for its socket, idle or not.
                if let Err(ending) = Box::pin(self.handle_buffered(&mut buf, max_packet)).await {
                    break ending;
                }
            }
            if self.handle.outbox.len() > 4 * self.shard.config.limits.max_outbox_packets {
                break Ending::Requested(CloseRequest::SlowConsumer);
            }
            // Read no more PUBLISH while the other shards have not taken what this shard owes
            // them (back-pressure through TCP; nothing is dropped).
            self.shard.wait_for_mesh_room(&self.handle.control).await;
            // Nor while a connected subscriber's full queue holds the publishers back.
            if self.feeds_subscribers {
                self.shard
                    .wait_for_subscribers(&self.handle.control, self.client_id())
                    .await;
            }
            // A socket that always has data would otherwise keep this task running for a whole
            // preemption slice (glommio's is 100 ms): after each read, let the shard's other
            // tasks (accepts, timers, other clients, a subscriber's acks) have their turn.
            futures_lite::future::yield_now().await;
            match self.read(&mut reader, &mut buf).await {
                ReadEvent::Data(n) => {
                    bump(&self.shard.metrics.bytes_in, n as u64);
                    self.handle.active.set(true);
                }
                ReadEvent::Eof => break Ending::PeerGone,
                ReadEvent::Error(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "read failed");
                    break Ending::PeerGone;
                }
                ReadEvent::Close(why) => break Ending::Requested(why),
            }
        };
        Box::pin(self.finish(ending)).await;
    }

    /// Reads until the first packet, which must be CONNECT; `None` when the connection ended
    /// instead (it was refused, broke the protocol or went away).
    async fn read_connect<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
        buf: &mut BytesMut,
        max_packet: u32,
    ) -> Option<Connect> {
        loop {
            // The decoded packet must not live across an await: only the error is kept.
            let error = match decode(buf, Protocol::V5, max_packet) {
                Ok(Some(Packet::Connect(connect))) => return Some(connect),
                Ok(Some(other)) => {
                    self.count_violation();
                    tracing::debug!(peer = %self.peer, packet = other.name(), "first packet is not CONNECT");
                    return None;
                }
                Ok(None) => None,
                Err(e) => Some(e),
            };
            if let Some(e) = error {
                self.count_violation();
                tracing::debug!(peer = %self.peer, error = %e, "bad CONNECT");
                if let DecodeError::UnsupportedProtocol { .. } = &e {
                    // 3.1.1 section 3.1.2.2: answer an unknown level with return code 0x01.
                    self.protocol = Protocol::V3_1_1;
                    self.start_writer(0);
                    self.handle.outbox.push(Packet::ConnAck(protocol::ConnAck {
                        session_present: false,
                        reason: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
                        properties: Default::default(),
                    }));
                    Box::pin(self.finish(Ending::Refused)).await;
                }
                return None;
            }
            match self.read(reader, buf).await {
                ReadEvent::Data(n) => {
                    bump(&self.shard.metrics.bytes_in, n as u64);
                    self.handle.active.set(true);
                }
                _ => return None,
            }
        }
    }

    /// Waits for more bytes from the client. Every complete packet has been decoded out of
    /// `buf` by now; when nothing of a partial one is left, its allocation goes too (decoded
    /// payloads keep their own slices), so an idle connection holds no read buffer.
    ///
    /// Not an `async fn`: one would keep its three references beside `read_some`'s.
    fn read<'a, R: AsyncRead + Unpin>(
        &'a self,
        reader: &'a mut R,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = ReadEvent> + 'a {
        if buf.is_empty() {
            *buf = BytesMut::new();
        }
        read_some(reader, buf, &self.handle.control, &self.shard.read_scratch)
    }

    /// Acts on every complete packet in `buf`.
    async fn handle_buffered(&mut self, buf: &mut BytesMut, max_packet: u32) -> Result<(), Ending> {
        loop {
            match decode(buf, self.protocol, max_packet) {
                Ok(Some(packet)) => self.handle(packet).await?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(Ending::violation(e.reason_code(), e.to_string())),
            }
        }
    }

    async fn handle(&mut self, packet: Packet) -> Result<(), Ending> {
        match packet {
            Packet::Publish(publish) => {
                self.throttle().await;
                self.on_publish(publish).await
            }
            Packet::PubAck(ack) => {
                self.on_puback(ack);
                Ok(())
            }
            Packet::PubRec(ack) => {
                self.on_pubrec(ack);
                Ok(())
            }
            Packet::PubRel(ack) => {
                self.on_pubrel(ack);
                Ok(())
            }
            Packet::PubComp(ack) => {
                self.on_pubcomp(ack);
                Ok(())
            }
            Packet::Subscribe(sub) => self.on_subscribe(sub).await,
            Packet::Unsubscribe(unsub) => self.on_unsubscribe(unsub).await,
            Packet::PingReq => {
                self.handle.outbox.push(Packet::PingResp);
                Ok(())
            }
            Packet::Disconnect(d) => Err(self.on_disconnect(d)),
            Packet::Connect(_) => Err(Ending::violation(
                ReasonCode::PROTOCOL_ERROR,
                "second CONNECT on one connection",
            )),
            Packet::Auth(_) => Err(Ending::violation(
                ReasonCode::PROTOCOL_ERROR,
                "AUTH without an authentication method in CONNECT",
            )),
            other => Err(Ending::violation(
                ReasonCode::PROTOCOL_ERROR,
                format!("{} is not sent by clients", other.name()),
            )),
        }
    }

    fn on_disconnect(&mut self, d: Disconnect) -> Ending {
        if self.protocol.is_v5() {
            if let Some(expiry) = d.properties.session_expiry_interval {
                if self.session_expiry == 0 && expiry != 0 {
                    return Ending::violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "session expiry set in DISCONNECT after CONNECT gave 0",
                    );
                }
                self.session_expiry = expiry;
                self.with_slot(|slot| slot.state.expiry_interval = expiry);
                self.log_subscriptions();
            }
        }
        Ending::ClientDisconnect {
            keep_will: self.protocol.is_v5()
                && d.reason == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        }
    }

    /// Holds this connection's reading back when it publishes faster than `max_publish_rate`
    /// (a token bucket with one second of burst): the publisher's TCP window fills and it
    /// slows down, and nothing it sent is dropped. Other connections are not affected.
    async fn throttle(&mut self) {
        let rate = self.shard.config.limits.max_publish_rate;
        if rate == 0 {
            return;
        }
        let rate = f64::from(rate);
        let refill = |bucket: &mut (f64, Instant)| {
            let now = Instant::now();
            bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(rate);
            bucket.1 = now;
        };
        let mut bucket = self
            .publish_budget
            .take()
            .unwrap_or_else(|| Box::new((rate, Instant::now())));
        refill(&mut bucket);
        if bucket.0 < 1.0 {
            bump(&self.shard.metrics.publish_throttled, 1);
            let wait = Duration::from_secs_f64((1.0 - bucket.0) / rate);
            glommio::timer::sleep(wait).await;
            refill(&mut bucket);
        }
        bucket.0 -= 1.0;
        self.publish_budget = Some(bucket);
    }

    /// Lets the writer write, in this connection's protocol: called once CONNECT decided it,
    /// before anything is queued.
    fn start_writer(&self, topic_alias_maximum: u16) {
        self.handle.outbox.start(Encoding {
            protocol: self.protocol,
            topic_alias_maximum,
        });
    }

    fn writer_started(&self) -> bool {
        self.handle.outbox.encoding().is_some()
    }

    /// The client id, once CONNECT is accepted.
    fn client_id(&self) -> Option<&ByteStr> {
        self.access.as_deref().map(ClientAccess::client_id)
    }

    /// Runs `f` on this connection's session, if it is still attached to this connection.
    fn with_slot<T>(&self, f: impl FnOnce(&mut SessionSlot) -> T) -> Option<T> {
        let client_id = self.client_id()?;
        let mut st = self.shard.state.borrow_mut();
        let slot = st.sessions.get_mut(client_id)?;
        match &slot.link {
            Some(link) if link.conn_id == self.id => Some(f(slot)),
            _ => None,
        }
    }

    /// May this client publish to `topic` under the rules in force now?
    fn can_write(&self, topic: &str) -> bool {
        self.access
            .as_ref()
            .is_some_and(|a| a.can_write(&self.shard.security, topic))
    }

    fn count_violation(&self) {
        bump(&self.shard.metrics.protocol_errors, 1);
    }

    /// Closes the connection: tells a 5.0 client why, flushes, detaches the session and sends
    /// the Will when the ending calls for it.
    async fn finish(&mut self, ending: Ending) {
        if ending != Ending::PeerGone {
            // Acknowledgements of what the client sent before it left (or before it is told
            // why it must go) are sent first, as a reader that waited for each would have.
            if let Some(queue) = self.acks.clone() {
                let drained = glommio::timer::timeout(Duration::from_secs(2), async {
                    queue.room_below(1).await;
                    Ok(())
                });
                if drained.await.is_err() {
                    tracing::debug!(client_id = ?self.client_id(), "acknowledgements still waiting at close");
                }
            }
        }
        match &ending {
            Ending::Violation(code, why) => {
                self.count_violation();
                tracing::info!(shard = self.shard.id, peer = %self.peer, client_id = ?self.client_id(), reason = %code, why, "closing connection: protocol violation");
                self.send_disconnect(*code, why);
            }
            Ending::ServerFailure(why) => {
                self.send_disconnect(ReasonCode::UNSPECIFIED_ERROR, why);
            }
            Ending::Requested(req) => {
                tracing::debug!(shard = self.shard.id, client_id = ?self.client_id(), request = ?req, "closing connection");
                self.send_disconnect(req.reason_code(), req.reason_code().name());
            }
            _ => {}
        }
        self.handle.outbox.close();
        if self.writer_started() {
            // The writer runs beside this reader in the same task and is polled first at every
            // wake-up (`run_beside`), so its end is seen here without a waker of our own.
            let outbox = &self.handle.outbox;
            let written = futures_lite::future::poll_fn(|_| match outbox.writer_finished() {
                true => Poll::Ready(Ok(())),
                false => Poll::Pending,
            });
            let flushed = glommio::timer::timeout(Duration::from_secs(2), written).await;
            if flushed.is_err() {
                tracing::debug!(client_id = ?self.client_id(), "writer did not finish in time");
            }
        }
        let Some(client_id) = self.client_id().cloned() else {
            return;
        };
        // The broker's own stop is not the client leaving: recovery counts the expiry of a
        // session cut off that way from the restart, as it does for one cut off by a crash.
        let shutdown = ending == Ending::Requested(CloseRequest::Shutdown);
        let now = Instant::now();
        let (ends_session, persisted) = self
            .with_slot(|slot| {
                slot.link = None;
                if !shutdown {
                    slot.state.disconnected_at = Some(now);
                }
                (slot.state.expiry_interval == 0, slot.persisted)
            })
            .unwrap_or((false, false));
        if ends_session {
            self.shard.end_session(&client_id);
        } else if persisted && !shutdown {
            self.shard.log(|| Record::Offline {
                client_id: client_id.clone(),
                since_ms: crate::clock::unix_ms_now(),
            });
        }
        let will = self
            .will
            .take()
            .filter(|w| self.will_allowed(&w.topic, &client_id));
        let send_will = match &ending {
            Ending::ClientDisconnect { keep_will } => *keep_will,
            Ending::Refused | Ending::Requested(CloseRequest::Shutdown) => false,
            _ => true,
        };
        if let (true, Some(will)) = (send_will, will) {
            let delay = will
                .properties
                .will_delay_interval
                .unwrap_or(0)
                .min(self.session_expiry);
            let taken_over = ending == Ending::Requested(CloseRequest::TakenOver);
            if delay == 0 {
                crate::shard::will::publish_now(&self.shard, *will, client_id);
            } else if !taken_over {
                crate::shard::will::schedule(&self.shard, client_id, *will, self.id, delay);
            }
        }
    }

    /// The Will is a publish like any other: the ACL must let the client write its topic.
    fn will_allowed(&mut self, topic: &str, client_id: &str) -> bool {
        let allowed = self.can_write(topic);
        if !allowed {
            self.shard
                .metrics
                .drop_message(crate::session::DropReason::NotAuthorized.label());
            tracing::info!(
                shard = self.shard.id,
                client_id,
                topic,
                "will not published: the ACL denies the client this topic"
            );
        }
        allowed
    }

    /// Properties carrying `why` as a 5.0 reason string, when the client accepts them in acks.
    fn reason_properties(&self, why: impl FnOnce() -> String) -> protocol::Properties {
        let mut properties = protocol::Properties::default();
        if self.protocol.is_v5() && self.problem_information {
            properties.reason_string = Some(ByteStr::from(why()));
        }
        properties
    }

    /// Tells a 5.0 client why it is being disconnected (reason code and reason string).
    fn send_disconnect(&self, reason: ReasonCode, why: &str) {
        if self.protocol.is_v5() && self.writer_started() {
            self.handle.outbox.push(Packet::Disconnect(Disconnect {
                reason,
                properties: protocol::Properties {
                    reason_string: Some(ByteStr::from(why)),
                    ..Default::default()
                },
            }));
        }
    }
}

/// Reads once into `buf`, or returns early when the connection is asked to close.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    control: &Control,
    scratch: &RefCell<Box<[u8]>>,
) -> ReadEvent {
    if let Some(why) = control.requested() {
        return ReadEvent::Close(why);
    }
    // Read into the shard's scratch buffer and copy out what came: a connection waiting for
    // data holds no buffer of its own. `poll_read` implementations only use the buffer during
    // the call (they cannot keep it), so one buffer serves every connection of the shard.
    let read = futures_lite::future::poll_fn(|cx| {
        let mut scratch = scratch.borrow_mut();
        let event = match std::task::ready!(Pin::new(&mut *reader).poll_read(cx, &mut scratch)) {
            Ok(0) => ReadEvent::Eof,
            Ok(n) => {
                buf.extend_from_slice(&scratch[..n]);
                ReadEvent::Data(n)
            }
            Err(e) => ReadEvent::Error(e),
        };
        Poll::Ready(event)
    });
    let closed = async { ReadEvent::Close(control.wait().await) };
    futures_lite::future::or(read, closed).await
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Every connection keeps its `serve` future for its whole life, so its size is a floor
    /// under what an idle connection costs. It was 6.5 KiB before the rare and large paths
    /// (handshake, packet handling, ending) and the Will were boxed, 800 bytes after, and 656
    /// once `serve` stopped keeping its arguments and the handles were merged into one. Since
    /// then it holds the writer and the stream too (they were a second task and a split
    /// stream, about 400 bytes more), and is 600 bytes for TCP once nested async fns stopped
    /// keeping copies of the same references. The target for a whole idle connection is 2 KiB.
    #[test]
    fn the_future_an_idle_connection_keeps_is_small() {
        fn returned_size<A, B, C, D, R>(_: fn(A, B, C, D) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = returned_size(serve::<glommio::net::TcpStream>);
        assert!(size <= 640, "serve future for TCP is {size} bytes");
        let size = returned_size(serve::<crate::net::PlainStream>);
        assert!(
            size <= 640,
            "serve future for TCP on the readiness list is {size} bytes"
        );
    }
}
