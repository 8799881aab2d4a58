//! The hand-over points of a connection: its outbox (packets waiting for the socket) and its
//! control signal (a request to close, from the keepalive sweep, a takeover or shutdown),
//! held together with its liveness in one [`ConnHandle`].
//!
//! All are single-threaded (`Rc`, `Cell`): they live on the shard that owns the connection.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use protocol::{Protocol, ReasonCode};

use crate::outgoing::Outgoing;

/// What the rest of the shard holds of one connection: its reader, its writer, its session
/// slot and the keepalive sweep share one allocation (one `Rc` instead of one per part: an idle
/// connection costs what it holds).
#[derive(Debug)]
pub struct ConnHandle {
    /// Packets waiting for the socket.
    pub outbox: Outbox,
    /// How to close it.
    pub control: Control,
    /// When bytes last arrived, as the keepalive sweep saw it: the reader only sets `active`,
    /// and the sweep (every 250 ms) turns that into this time. A clock read per socket read
    /// would cost more, and the time kept is never earlier than the truth, so a connection is
    /// never closed early.
    pub last_seen: Cell<Instant>,
    /// Set by the reader at every read since the last sweep.
    pub active: Cell<bool>,
    /// Close it when nothing arrived for this long (1.5 x keep alive, or the connect timeout).
    pub timeout: Cell<Option<Duration>>,
}

impl ConnHandle {
    /// A connection that has just arrived and must send CONNECT within `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> ConnHandle {
        ConnHandle {
            outbox: Outbox::default(),
            control: Control::default(),
            last_seen: Cell::new(Instant::now()),
            active: Cell::new(false),
            timeout: Cell::new(Some(connect_timeout)),
        }
    }
}

/// How a connection's packets are written: fixed by CONNECT, before the first packet is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    /// The protocol version the client speaks.
    pub protocol: Protocol,
    /// The client's Topic Alias Maximum (5.0; 0: no aliases).
    pub topic_alias_maximum: u16,
}

/// Packets waiting to be written to one client, drained in batches by its writer.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: RefCell<VecDeque<Outgoing>>,
    waker: RefCell<Option<Waker>>,
    closed: Cell<bool>,
    /// Set when CONNECT is accepted (or refused with a CONNACK): the writer writes nothing
    /// before.
    encoding: Cell<Option<Encoding>>,
    /// Set when the writer has written what it will ever write and closed the socket.
    writer_finished: Cell<bool>,
}

impl Outbox {
    /// Starts the writer: packets queued from now on are written with `encoding`.
    pub fn start(&self, encoding: Encoding) {
        self.encoding.set(Some(encoding));
    }

    /// How packets are written, once started.
    pub fn encoding(&self) -> Option<Encoding> {
        self.encoding.get()
    }

    /// Called by the writer when it has ended.
    pub fn set_writer_finished(&self) {
        self.writer_finished.set(true);
    }

    /// True once the writer has ended.
    pub fn writer_finished(&self) -> bool {
        self.writer_finished.get()
    }

    /// Queues a packet and wakes the writer. Ignored once closed.
    pub fn push(&self, packet: impl Into<Outgoing>) {
        if self.closed.get() {
            return;
        }
        self.queue.borrow_mut().push_back(packet.into());
        self.wake();
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.queue.borrow().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Stops accepting packets; the writer drains what is queued, then ends.
    pub fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits for packets and takes all of them, queue buffer and all (a burst's capacity must
    /// not stay allocated on a connection that goes quiet afterwards); `None` when the outbox
    /// is closed and empty.
    pub fn take_batch(&self) -> TakeBatch<'_> {
        TakeBatch { outbox: self }
    }
}

/// Future of [`Outbox::take_batch`].
pub struct TakeBatch<'a> {
    outbox: &'a Outbox,
}

impl Future for TakeBatch<'_> {
    type Output = Option<VecDeque<Outgoing>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut queue = self.outbox.queue.borrow_mut();
        if !queue.is_empty() {
            return Poll::Ready(Some(std::mem::take(&mut *queue)));
        }
        if self.outbox.closed.get() {
            return Poll::Ready(None);
        }
        // The connection's task polls its writer at every wake-up, most of them for its reader:
        // the waker kept from the last poll is then still the right one, and is not cloned again.
        let mut waker = self.outbox.waker.borrow_mut();
        match &*waker {
            Some(kept) if kept.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// Why the broker is closing a connection from outside its reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseRequest {
    /// No packet within 1.5 times the keep alive (or no CONNECT within the connect timeout).
    KeepAliveTimeout,
    /// Another connection took over the client id.
    TakenOver,
    /// The broker is shutting down.
    Shutdown,
    /// The client cannot keep up with what it is sent.
    SlowConsumer,
    /// What the client sent could not be made durable: nothing more of it is acknowledged.
    StorageFailed,
}

impl CloseRequest {
    /// The 5.0 reason code sent in DISCONNECT.
    pub fn reason_code(self) -> ReasonCode {
        match self {
            CloseRequest::KeepAliveTimeout => ReasonCode::KEEP_ALIVE_TIMEOUT,
            CloseRequest::TakenOver => ReasonCode::SESSION_TAKEN_OVER,
            CloseRequest::Shutdown => ReasonCode::SERVER_SHUTTING_DOWN,
            CloseRequest::SlowConsumer => ReasonCode::QUOTA_EXCEEDED,
            CloseRequest::StorageFailed => ReasonCode::UNSPECIFIED_ERROR,
        }
    }
}

/// A one-shot close signal a connection's reader waits on beside its socket (and a shard's
/// accept loops wait on for shutdown: several waiters may wait at once).
#[derive(Debug, Default)]
pub struct Control {
    request: Cell<Option<CloseRequest>>,
    /// The usual single waiter (the connection's own task) needs no allocation; a Vec would
    /// take 64 bytes per connection for it.
    waker: RefCell<Option<Waker>>,
    /// Waiters from other tasks, rare.
    /// Boxed: only a shard's stop signal ever has them, and every connection has a `Control`
    /// (8 bytes instead of a `Vec`'s 24).
    #[allow(clippy::box_collection)]
    more_wakers: RefCell<Option<Box<Vec<Waker>>>>,
}

impl Control {
    /// Asks the connection to close; the first request wins.
    pub fn close(&self, why: CloseRequest) {
        if self.request.get().is_none() {
            self.request.set(Some(why));
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
        for w in self
            .more_wakers
            .borrow_mut()
            .iter_mut()
            .flat_map(|more| more.drain(..))
        {
            w.wake();
        }
    }

    /// The pending request, if any.
    pub fn requested(&self) -> Option<CloseRequest> {
        self.request.get()
    }

    /// Resolves when a close is requested.
    pub fn wait(&self) -> WaitClose<'_> {
        WaitClose { control: self }
    }
}

/// Future of [`Control::wait`].
pub struct WaitClose<'a> {
    control: &'a Control,
}

impl Future for WaitClose<'_> {
    type Output = CloseRequest;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseRequest> {
        match self.control.request.get() {
            Some(why) => Poll::Ready(why),
            None => {
                let mut first = self.control.waker.borrow_mut();
                match &*first {
                    None => *first = Some(cx.waker().clone()),
                    Some(w) if w.will_wake(cx.waker()) => {}
                    Some(_) => {
                        let mut more = self.control.more_wakers.borrow_mut();
                        let more = more.get_or_insert_with(Box::default);
                        if !more.iter().any(|w| w.will_wake(cx.waker())) {
                            more.push(cx.waker().clone());
                        }
                    }
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::Arc, task::Wake};

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Regression: the MQTT and HTTP accept loops both wait on a shard's stop signal; with a
    /// single waker slot only the last one woke, and shutdown hung.
    #[test]
    fn close_wakes_every_waiter() {
        let control = Control::default();
        let flags: Vec<Arc<Flag>> = (0..2)
            .map(|_| Arc::new(Flag(std::sync::atomic::AtomicBool::new(false))))
            .collect();
        for flag in &flags {
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            let mut wait = control.wait();
            assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
        }
        control.close(CloseRequest::Shutdown);
        assert!(flags
            .iter()
            .all(|f| f.0.load(std::sync::atomic::Ordering::SeqCst)));
        assert_eq!(control.requested(), Some(CloseRequest::Shutdown));
    }
}
