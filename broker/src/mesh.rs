//! Messages between shards, and the per-peer queues that keep a shard from ever blocking on a
//! peer.
//!
//! Each shard sends to each peer through one bounded channel of the glommio mesh. Two shards
//! that both await a full channel towards each other would deadlock, so nothing on a shard
//! awaits a send: messages go into an unbounded local queue per peer, drained by one sender task
//! per peer. Consecutive deliveries to the same peer coalesce into one `Deliver` batch, so a
//! burst of publishes costs one channel message per target shard.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use protocol::{ByteStr, SubscriptionOptions};

use crate::{
    message::{Delivery, Message},
    session::SessionState,
};

/// Everything one shard tells another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Replicate: `client_id` (held on `shard`) subscribes to `filter`.
    SubAdd {
        /// Subscriber.
        client_id: ByteStr,
        /// Shard holding its session.
        shard: usize,
        /// Filter as sent.
        filter: ByteStr,
        /// Options.
        options: SubscriptionOptions,
        /// Subscription identifier.
        id: Option<u32>,
    },
    /// Replicate: `client_id` unsubscribes from these filters.
    SubRemove {
        /// Subscriber.
        client_id: ByteStr,
        /// Filters to drop.
        filters: Vec<ByteStr>,
    },
    /// Replicate: the session of `client_id` (with these filters) now lives on `shard`.
    SubRelocate {
        /// Subscriber.
        client_id: ByteStr,
        /// Its filters.
        filters: Vec<ByteStr>,
        /// Its new shard.
        shard: usize,
    },
    /// Replicate a retained message (`None` deletes the topic's retained message).
    Retain {
        /// Topic.
        topic: ByteStr,
        /// The message, or `None` to delete.
        message: Option<Message>,
    },
    /// Deliveries to sessions held by the receiving shard.
    Deliver(Vec<(ByteStr, Delivery)>),
    /// To the owner shard of a client id: shard `from` wants the session (request `req`).
    Claim {
        /// Client id.
        client_id: ByteStr,
        /// The shard where the client connected.
        from: usize,
        /// Request id on `from`.
        req: u64,
    },
    /// To the shard holding a session: hand it (and close its connection) to shard `to`.
    Evict {
        /// Client id.
        client_id: ByteStr,
        /// Where the session goes.
        to: usize,
        /// Request id on `to`.
        req: u64,
        /// The claim on the receiver that got the session before (0: a session recovered at
        /// start, which no claim brought). While that claim is still in flight, the session
        /// passes on once it lands.
        after: u64,
    },
    /// Answer to a claim: the session, if one existed.
    ClaimResult {
        /// Request id on the receiver.
        req: u64,
        /// The session moved to the receiver.
        session: Option<Box<SessionState>>,
        /// The shard it was taken from: its log keeps the session until told to `Forget` it.
        from: usize,
    },
    /// To the owner shard: the session of `client_id` on `shard` has ended.
    Release {
        /// Client id.
        client_id: ByteStr,
        /// The shard where it ended.
        shard: usize,
        /// The claim that brought it there (0: recovered at start): a later claim from the
        /// same shard owns the id now, and this release must not undo it.
        claim: u64,
    },
    /// Barrier: reply with `BarrierAck` once everything sent before it is applied (and with
    /// `durable`, once what applying it appended to the state log is durable).
    Barrier {
        /// The asking shard.
        from: usize,
        /// Its request id.
        req: u64,
        /// Wait for the receiver's state log too.
        durable: bool,
    },
    /// Recovery, to the owner shard of a client id: `shard` holds its recovered session.
    Adopt {
        /// Client id.
        client_id: ByteStr,
        /// The shard holding it.
        shard: usize,
        /// Its [`SessionState::stamp`]: of two copies, the newer is kept.
        stamp: u64,
    },
    /// Recovery, from the owner shard: drop this recovered session, another shard holds it.
    Discard {
        /// Client id.
        client_id: ByteStr,
    },
    /// To the shard a session was taken from: the copy that shard `from` took (claim `req`)
    /// is durable in its log, so the old copy's record can be removed from this one's.
    Forget {
        /// Client id.
        client_id: ByteStr,
        /// The shard that holds the session now.
        from: usize,
        /// Its claim request id, which names the handoff.
        req: u64,
    },
    /// Answer to `Barrier`.
    BarrierAck {
        /// The request id.
        req: u64,
        /// A durable barrier's log failed on the answering shard: what it was asked to make
        /// durable is not.
        failed: bool,
    },
}

/// The unbounded local queue towards one peer.
#[derive(Debug, Default)]
pub struct PeerQueue {
    queue: RefCell<VecDeque<ShardMsg>>,
    waker: RefCell<Option<Waker>>,
    /// Messages waiting, for metrics.
    pub depth: Cell<usize>,
    /// Deliveries waiting in the queue's batches: what bounds its memory.
    pub deliveries: Cell<usize>,
}

/// Most deliveries in one `Deliver` message: the receiving shard handles a batch in one go, so
/// a batch must stay small enough not to stall it.
pub const MAX_BATCH: usize = 1024;

/// Deliveries waiting for one peer beyond which QoS 0 deliveries towards it are dropped (and
/// counted): a flood towards a shard that cannot keep up must not grow memory without bound.
pub const QOS0_BACKLOG_LIMIT: usize = 32 * 1024;

/// Deliveries waiting for the peers of a shard beyond which its connections stop reading
/// PUBLISH packets until the backlog drains: QoS 1/2 are never dropped here, TCP pushes back
/// on the publishers instead.
pub const BACKLOG_HIGH_WATER: usize = 64 * 1024;

impl PeerQueue {
    /// Queues a message for the peer.
    pub fn push(&self, msg: ShardMsg) {
        let mut queue = self.queue.borrow_mut();
        if let ShardMsg::Deliver(more) = &msg {
            self.deliveries.set(self.deliveries.get() + more.len());
        }
        match (queue.back_mut(), msg) {
            (Some(ShardMsg::Deliver(batch)), ShardMsg::Deliver(more))
                if batch.len() + more.len() <= MAX_BATCH =>
            {
                batch.extend(more)
            }
            (_, msg) => queue.push_back(msg),
        }
        self.depth.set(queue.len());
        drop(queue);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Queues one delivery, joining the batch at the back of the queue if there is one.
    /// Refuses a QoS 0 delivery while the backlog is over [`QOS0_BACKLOG_LIMIT`], queuing
    /// nothing and handing back the client it was for: the caller counts the drop.
    pub fn push_delivery(&self, client_id: ByteStr, delivery: Delivery) -> Result<(), ByteStr> {
        if delivery.qos == protocol::QoS::AtMostOnce && self.deliveries.get() >= QOS0_BACKLOG_LIMIT
        {
            return Err(client_id);
        }
        self.push(ShardMsg::Deliver(vec![(client_id, delivery)]));
        Ok(())
    }

    /// Waits for the next message.
    pub fn next(self: &Rc<Self>) -> NextMsg {
        NextMsg {
            queue: self.clone(),
        }
    }
}

/// Future of [`PeerQueue::next`].
pub struct NextMsg {
    queue: Rc<PeerQueue>,
}

impl Future for NextMsg {
    type Output = ShardMsg;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShardMsg> {
        let mut queue = self.queue.queue.borrow_mut();
        match queue.pop_front() {
            Some(msg) => {
                self.queue.depth.set(queue.len());
                if let ShardMsg::Deliver(batch) = &msg {
                    let left = self.queue.deliveries.get().saturating_sub(batch.len());
                    self.queue.deliveries.set(left);
                }
                Poll::Ready(msg)
            }
            None => {
                *self.queue.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::*;
    use crate::session::tests::delivery;
    use protocol::QoS;

    /// Regression: a flood towards a slower shard grew one unbounded queue (1 GB in a minute)
    /// and one giant batch; QoS 0 is now dropped past the limit, batches stay small, and the
    /// count of waiting deliveries is what the shard's back-pressure reads.
    #[test]
    fn backlog_is_bounded_for_qos0_and_batched_in_small_pieces() {
        let queue = Rc::new(PeerQueue::default());
        let mut dropped = 0;
        for _ in 0..(QOS0_BACKLOG_LIMIT + 10) {
            if let Err(client) = queue.push_delivery(ByteStr::from("c"), delivery(QoS::AtMostOnce))
            {
                assert_eq!(&*client, "c", "the refused delivery's client comes back");
                dropped += 1;
            }
        }
        assert_eq!(dropped, 10);
        assert_eq!(queue.deliveries.get(), QOS0_BACKLOG_LIMIT);
        // QoS 1 is never dropped here; the publishers wait instead.
        assert!(queue
            .push_delivery(ByteStr::from("c"), delivery(QoS::AtLeastOnce))
            .is_ok());
        assert_eq!(
            queue.depth.get(),
            QOS0_BACKLOG_LIMIT.div_ceil(MAX_BATCH) + 1
        );
        let first_batch = futures_lite::future::block_on(async {
            let first = queue.next().await;
            match first {
                ShardMsg::Deliver(batch) => batch.len(),
                _ => 0,
            }
        });
        assert_eq!(first_batch, MAX_BATCH);
        assert_eq!(queue.deliveries.get(), QOS0_BACKLOG_LIMIT + 1 - MAX_BATCH);
    }
}
