//! Group commit: appends are cheap and synchronous, one background task makes them durable a
//! round at a time, and whoever waits for an append learns when its round is durable.
//!
//! [`GroupCommit`] is the part both of fleetmq's logs share: tickets, the pending batch, the
//! durable mark, waking waiters and the writer task, failure, closing. What a round writes, when
//! it syncs and what follows it (a snapshot, handing records on) is the owner's task loop:
//!
//! ```text
//! loop {
//!     if !log.work().await { break }          // something pending, or closing with nothing
//!     // (optionally wait a little for the round to fill)
//!     let Some(round) = log.take_round() else { continue };
//!     let result = write_and_sync(&round.batch).await;
//!     log.complete(round.upto, result);       // durable, or failed for good
//! }
//! ```
//! While a round is written and synced, the next one gathers: under load the batch grows by
//! itself, while a lone append is written at once.

use std::{
    cell::RefCell,
    task::{Context, Poll, Waker},
};

use futures_lite::future::poll_fn;

/// Identifies an append: the number of appends so far, this one included. It is durable once
/// every append up to it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What a round gathers appends into: encoded frames (`Vec<u8>`), or records to hand on after
/// the round (`Vec<T>`).
pub trait Batch: Default {
    /// True when nothing was appended to it.
    fn is_empty(&self) -> bool;
}

impl<T> Batch for Vec<T> {
    fn is_empty(&self) -> bool {
        Vec::is_empty(self)
    }
}

/// One round to write: everything appended since the last one.
#[derive(Debug)]
pub struct Round<B> {
    /// The appends.
    pub batch: B,
    /// The ticket of the last of them: pass it to [`GroupCommit::complete`].
    pub upto: Ticket,
}

/// The shared state of a group-committed log; lives on one executor (`!Send`).
#[derive(Debug, Default)]
pub struct GroupCommit<B> {
    state: RefCell<State<B>>,
}

#[derive(Debug, Default)]
struct State<B> {
    batch: B,
    /// Appends so far.
    issued: u64,
    /// Appends durable so far.
    durable: u64,
    /// Set once a round failed: nothing appended since can become durable.
    failed: Option<String>,
    closing: bool,
    waiters: Vec<Waker>,
    task: Option<Waker>,
}

impl<B: Batch> GroupCommit<B> {
    /// An empty log.
    pub fn new() -> GroupCommit<B> {
        GroupCommit {
            state: RefCell::new(State::default()),
        }
    }

    /// Adds to the next round with `add` (unless the log has failed: what could never be
    /// written is not kept, so memory stays bounded) and wakes the task.
    pub fn append(&self, add: impl FnOnce(&mut B)) -> Ticket {
        let mut state = self.state.borrow_mut();
        if state.failed.is_none() {
            add(&mut state.batch);
        }
        state.issued += 1;
        if let Some(task) = state.task.take() {
            task.wake();
        }
        Ticket(state.issued)
    }

    /// The ticket of the last append: durable once everything appended so far is.
    pub fn last_ticket(&self) -> Ticket {
        Ticket(self.state.borrow().issued)
    }

    /// Ready once `ticket` is durable, or with the failure that stopped the log first.
    pub fn poll_durable(&self, ticket: Ticket, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let mut state = self.state.borrow_mut();
        if ticket.0 <= state.durable {
            Poll::Ready(Ok(()))
        } else if let Some(message) = &state.failed {
            Poll::Ready(Err(message.clone()))
        } else {
            state.waiters.push(cx.waker().clone());
            Poll::Pending
        }
    }

    /// Resolves once `ticket` is durable.
    ///
    /// # Errors
    /// The failure that stopped the log before it was.
    pub async fn durable(&self, ticket: Ticket) -> Result<(), String> {
        poll_fn(|cx| self.poll_durable(ticket, cx)).await
    }

    /// Looks at the batch gathering now (how full the round would be).
    pub fn inspect<R>(&self, look: impl FnOnce(&B) -> R) -> R {
        look(&self.state.borrow().batch)
    }

    /// The task's wait: `true` once something is pending, `false` once the log is closing
    /// with nothing left to write.
    pub async fn work(&self) -> bool {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if !state.batch.is_empty() {
                Poll::Ready(true)
            } else if state.closing {
                Poll::Ready(false)
            } else {
                state.task = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Takes everything appended since the last round; `None` when nothing is.
    pub fn take_round(&self) -> Option<Round<B>> {
        let mut state = self.state.borrow_mut();
        if state.batch.is_empty() {
            return None;
        }
        Some(Round {
            batch: std::mem::take(&mut state.batch),
            upto: Ticket(state.issued),
        })
    }

    /// Ends a round: its appends, and all before them, are durable; or the log failed for good
    /// (every waiter, now and later, gets `message`). Wakes the waiters either way.
    pub fn complete(&self, upto: Ticket, result: Result<(), String>) {
        let mut state = self.state.borrow_mut();
        match result {
            Ok(()) => state.durable = state.durable.max(upto.0),
            Err(message) => {
                state.failed.get_or_insert(message);
                state.batch = B::default();
            }
        }
        for waker in state.waiters.drain(..) {
            waker.wake();
        }
    }

    /// True once the log failed.
    pub fn has_failed(&self) -> bool {
        self.state.borrow().failed.is_some()
    }

    /// True once [`GroupCommit::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.state.borrow().closing
    }

    /// Asks the task to write what is pending and stop ([`GroupCommit::work`] then answers
    /// `false` once nothing is left).
    pub fn close(&self) {
        let mut state = self.state.borrow_mut();
        state.closing = true;
        if let Some(task) = state.task.take() {
            task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        rc::Rc,
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc,
        },
        task::Wake,
    };

    use super::*;

    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(
        log: &GroupCommit<Vec<u32>>,
        ticket: Ticket,
        wakes: &Arc<CountWakes>,
    ) -> Poll<Result<(), String>> {
        let waker = Waker::from(wakes.clone());
        log.poll_durable(ticket, &mut Context::from_waker(&waker))
    }

    #[test]
    fn a_round_takes_everything_appended_and_makes_it_durable_at_once() {
        let log = GroupCommit::<Vec<u32>>::new();
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        assert_eq!(log.last_ticket(), Ticket(0));
        assert!(
            poll(&log, Ticket(0), &wakes).is_ready(),
            "nothing appended is durable"
        );
        let a = log.append(|b| b.push(1));
        let b = log.append(|b| b.push(2));
        assert!(poll(&log, a, &wakes).is_pending());
        let round = log.take_round().expect("a round");
        assert_eq!((round.batch, round.upto), (vec![1, 2], b));
        // The next round gathers while this one is written.
        let c = log.append(|b| b.push(3));
        log.complete(round.upto, Ok(()));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        assert_eq!(poll(&log, a, &wakes), Poll::Ready(Ok(())));
        assert_eq!(poll(&log, b, &wakes), Poll::Ready(Ok(())));
        assert!(poll(&log, c, &wakes).is_pending());
        assert_eq!(log.take_round().map(|r| r.batch), Some(vec![3]));
        assert!(log.take_round().is_none());
    }

    #[test]
    fn a_failed_round_fails_every_later_wait_and_keeps_nothing() {
        let log = GroupCommit::<Vec<u32>>::new();
        let wakes = Arc::new(CountWakes(AtomicUsize::new(0)));
        let a = log.append(|b| b.push(1));
        let round = log.take_round().expect("a round");
        log.complete(round.upto, Err("disk full".into()));
        assert!(log.has_failed());
        assert_eq!(poll(&log, a, &wakes), Poll::Ready(Err("disk full".into())));
        let later = log.append(|b| b.push(2));
        assert_eq!(
            poll(&log, later, &wakes),
            Poll::Ready(Err("disk full".into()))
        );
        assert!(log.take_round().is_none(), "nothing kept after a failure");
    }

    #[test]
    fn the_task_works_until_closed_and_drained() {
        let log = Rc::new(GroupCommit::<Vec<u32>>::new());
        futures_lite::future::block_on(async {
            log.append(|b| b.push(1));
            log.close();
            assert!(log.is_closing());
            assert!(log.work().await, "pending work is written before stopping");
            let round = log.take_round().expect("a round");
            log.complete(round.upto, Ok(()));
            assert!(!log.work().await);
        });
    }
}
