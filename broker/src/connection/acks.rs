//! Pipelined acknowledgements: a PUBACK or PUBREC that must wait until its message is durable
//! waits here, not in the reader, so the connection goes on reading, routing and logging the
//! messages after it meanwhile. Acknowledgements leave in the order their messages came, each
//! only once everything it waits for is done: the guarantee is the one a reader that waited
//! for each message in turn would give, without one sync per message.
//!
//! The queue is made on a connection's first waiting acknowledgement and drained by a task of
//! its own, spawned when the queue goes from empty to busy and ending when it is empty again:
//! an idle connection keeps neither.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Poll, Waker},
};

use futures_lite::future::poll_fn;

use crate::{
    outbox::{CloseRequest, ConnHandle},
    outgoing::Outgoing,
};

/// What an acknowledgement waits for; an error is why it must never be sent.
pub(super) type Durability = Pin<Box<dyn Future<Output = Result<(), String>>>>;

/// The acknowledgements of one connection that wait for durability, oldest first.
#[derive(Default)]
pub(super) struct AckQueue {
    waiting: RefCell<VecDeque<(Durability, Outgoing)>>,
    /// Queued and not yet sent, the one being waited for included.
    unsent: Cell<usize>,
    /// Why the connection must end, once a wait failed (nothing after it is acknowledged).
    failure: RefCell<Option<String>>,
    /// The reader, waiting for room or for the queue to drain.
    reader: RefCell<Option<Waker>>,
}

impl AckQueue {
    /// Acknowledgements queued and not yet sent.
    pub(super) fn unsent(&self) -> usize {
        self.unsent.get()
    }

    /// Why acknowledging stopped, if it did.
    pub(super) fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Queues `ack` behind every acknowledgement already waiting; it is sent once `durable`
    /// resolves. Starts the task that sends them when the queue was empty. After a failure
    /// nothing is queued.
    pub(super) fn push(
        self: &Rc<Self>,
        handle: &Rc<ConnHandle>,
        durable: Durability,
        ack: Outgoing,
    ) {
        if self.failure.borrow().is_some() {
            // Acknowledging stopped for good: the connection is ending.
            return;
        }
        self.waiting.borrow_mut().push_back((durable, ack));
        self.unsent.set(self.unsent.get() + 1);
        if self.unsent.get() == 1 {
            glommio::spawn_local(release(self.clone(), handle.clone())).detach();
        }
    }

    /// Resolves once fewer than `limit` acknowledgements wait (or acknowledging failed).
    pub(super) async fn room_below(&self, limit: usize) {
        poll_fn(|cx| {
            if self.unsent.get() < limit || self.failure.borrow().is_some() {
                Poll::Ready(())
            } else {
                *self.reader.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    fn sent_one(&self) {
        self.unsent.set(self.unsent.get().saturating_sub(1));
        if let Some(waker) = self.reader.borrow_mut().take() {
            waker.wake();
        }
    }
}

/// Sends the queued acknowledgements in order, each once it is durable, until the queue is
/// empty. A failed wait ends the connection: nothing from there on is acknowledged, so the
/// client sends it again to whoever serves it next.
async fn release(queue: Rc<AckQueue>, handle: Rc<ConnHandle>) {
    loop {
        let next = queue.waiting.borrow_mut().pop_front();
        let Some((durable, ack)) = next else { break };
        match durable.await {
            Ok(()) => handle.outbox.push(ack),
            Err(why) => {
                *queue.failure.borrow_mut() = Some(why);
                queue.waiting.borrow_mut().clear();
                queue.unsent.set(0);
                handle.control.close(CloseRequest::StorageFailed);
                queue.sent_one();
                break;
            }
        }
        queue.sent_one();
    }
}
