//! Flow control toward live subscribers: a connected session whose queue is full slows the
//! publishers down instead of losing messages.
//!
//! When a QoS 1/2 delivery finds a connected session's queue at its bound (and the policy is
//! not `disconnect`), it is queued anyway and the session is *under pressure*. Only the shard's
//! byte bound over all its queues (`max_shard_queued_bytes`) still applies: what publishers had
//! read when the hold began, and what the mesh carries from other shards meanwhile, must go
//! somewhere, and losing it is what this avoids. While any session of the broker is under pressure, connections whose
//! messages reach subscribers stop reading their sockets (as they do for a full mesh), so TCP
//! slows their clients down; they read again once the session's queue is back under its bound.
//! Nothing is dropped for a subscriber that keeps reading, however large the burst.
//!
//! A subscriber that stops reading altogether must not stall the fleet: a session under
//! pressure that has taken nothing from its queue for [`STUCK_AFTER`] is *stuck*. It no longer holds
//! anyone back, and what does not fit its queue is dropped and counted, as for an offline
//! session. It is released when its queue is back under the bound.
//!
//! The count of sessions holding publishers back is one atomic shared by every shard (read
//! before each socket read, written only when a session starts or stops holding back). Each
//! shard keeps its own sessions under pressure in a map and, at every sweep, releases those
//! that went offline or away, so a session that left without being released cannot hold the
//! broker back for longer than a sweep.

use std::{
    rc::Rc,
    sync::atomic::Ordering,
    task::Poll,
    time::{Duration, Instant},
};

use futures_lite::future::poll_fn;
use protocol::ByteStr;

use crate::{
    config::QueueFullPolicy,
    message::Delivery,
    outbox::Control,
    shard::{SessionSlot, Shard},
};

/// How long a session under pressure may go without taking anything from its queue before it
/// counts as stuck and stops holding publishers back.
pub const STUCK_AFTER: Duration = Duration::from_secs(2);

/// A session of this shard under pressure.
#[derive(Debug, Clone, Copy)]
pub struct Pressure {
    /// When it last took a message from its queue (or the pressure began).
    progress_at: Instant,
    /// How many it had taken then ([`taken`]).
    taken: u64,
    /// No progress for [`STUCK_AFTER`]: it holds nobody back.
    stuck: bool,
}

impl Shard {
    /// Queues `delivery` for a connected session whose queue is at its bounds and puts the
    /// session under pressure. `None` (the caller applies the queue policy) when the session is
    /// stuck or offline, or the policy is `disconnect`.
    pub(crate) fn queue_under_pressure(
        &self,
        slot: &mut SessionSlot,
        delivery: &Delivery,
        now: Instant,
    ) -> Option<u64> {
        if slot.link.is_none()
            || self.config.limits.queue_full_policy == QueueFullPolicy::Disconnect
        {
            return None;
        }
        let mut pressured = self.pressured.borrow_mut();
        if pressured
            .get(&slot.state.client_id)
            .is_some_and(|p| p.stuck)
        {
            return None;
        }
        let seq = slot.state.enqueue(delivery.clone(), usize::MAX, usize::MAX);
        let id = &slot.state.client_id;
        if !pressured.contains_key(id) {
            pressured.insert(
                id.clone(),
                Pressure {
                    progress_at: now,
                    taken: taken(slot),
                    stuck: false,
                },
            );
            self.holding_back.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(shard = self.id, client_id = %id, "subscriber queue full: publishers held back");
        }
        seq.ok()
    }

    /// Releases `slot`'s session once its queue is back under its bounds (called after it
    /// sent from its queue).
    pub(crate) fn ease_pressure(&self, slot: &SessionSlot) {
        if self.pressured.borrow().is_empty() {
            return;
        }
        let limits = &self.config.limits;
        let state = &slot.state;
        if state.queue.len() < state.live_limit(limits.max_queued_messages)
            && state.queued_bytes < limits.max_queued_bytes
        {
            self.release(&state.client_id);
        }
    }

    fn release(&self, client_id: &ByteStr) {
        if let Some(p) = self.pressured.borrow_mut().remove(client_id) {
            if !p.stuck {
                self.holding_back.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// At every sweep: sessions gone offline or away are released, a session that has taken
    /// nothing from its queue for [`STUCK_AFTER`] is marked stuck (and counted, and logged), and
    /// one that took something starts its clock again.
    pub(crate) fn sweep_pressure(&self, now: Instant) {
        if self.pressured.borrow().is_empty() {
            return;
        }
        let st = self.state.borrow();
        let mut gone = Vec::new();
        let mut pressured = self.pressured.borrow_mut();
        for (id, p) in pressured.iter_mut() {
            let Some(slot) = st.sessions.get(id).filter(|s| s.link.is_some()) else {
                gone.push(id.clone());
                continue;
            };
            let backlog = slot.state.queue.len();
            let taken = taken(slot);
            if taken > p.taken {
                p.taken = taken;
                p.progress_at = now;
                if p.stuck {
                    p.stuck = false;
                    self.holding_back.fetch_add(1, Ordering::Relaxed);
                }
            } else if !p.stuck && now.saturating_duration_since(p.progress_at) >= STUCK_AFTER {
                p.stuck = true;
                self.holding_back.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    shard = self.id,
                    client_id = %id,
                    queued = backlog,
                    "subscriber stopped reading; publishers no longer wait for it, and what its queue cannot take is dropped"
                );
            }
        }
        drop(pressured);
        drop(st);
        for id in gone {
            self.release(&id);
        }
    }

    /// Waits while a connected subscriber somewhere in the broker holds publishers back, unless
    /// this connection's own session is one of those (it must read its acknowledgements to make
    /// room) or the connection is asked to close.
    pub async fn wait_for_subscribers(self: &Rc<Self>, control: &Control, own: Option<&ByteStr>) {
        if self.holding_back.load(Ordering::Relaxed) == 0
            || own.is_some_and(|id| self.pressured.borrow().contains_key(id))
        {
            return;
        }
        let released = poll_fn(|cx| {
            if self.holding_back.load(Ordering::Relaxed) == 0 {
                return Poll::Ready(());
            }
            self.pressure_waiters.borrow_mut().push(cx.waker().clone());
            if !self.pressure_watch.replace(true) {
                glommio::spawn_local(watch_release(self.clone())).detach();
            }
            Poll::Pending
        });
        futures_lite::future::or(released, async {
            control.wait().await;
        })
        .await;
    }
}

/// Messages that have left `slot`'s queue since the session began (sent, or dropped as the
/// oldest): every queued message took a number, and those still queued hold the latest ones.
fn taken(slot: &SessionSlot) -> u64 {
    slot.state
        .next_seq
        .saturating_sub(slot.state.queue.len() as u64)
}

/// One task per shard while any of its connections wait: polls the broker-wide count (its
/// changes can come from any shard) and wakes every waiter once it is zero. The waiters sleep
/// meanwhile; only this task wakes every millisecond.
async fn watch_release(shard: Rc<Shard>) {
    while shard.holding_back.load(Ordering::Relaxed) > 0 {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    shard.pressure_watch.set(false);
    for waker in shard.pressure_waiters.take() {
        waker.wake();
    }
}
