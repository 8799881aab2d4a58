//! Moving a persistent session between shards' state logs without a window where it is in
//! neither.
//!
//! A takeover moves a session from shard A (which held it) to shard B (where its client
//! reconnected). The two shards' logs are synced independently, so the order of their records
//! is what makes a crash safe:
//! 1. A hands the session over ([`crate::shard::Shard`]'s evict) but logs no removal yet; it
//!    keeps the image of what it handed over ([`HandedOff`]) so that a snapshot it takes
//!    meanwhile still holds it;
//! 2. B logs the session whole, stamped after A's copy ([`SessionState::restamp`]), and once
//!    that record is durable sends A [`ShardMsg::Forget`];
//! 3. A logs the removal, unless the session came back to A meanwhile (a takeover back to A
//!    logged a newer record there, or removed the old one at once: [`Shard::attached_again`])
//!    or was handed off again since (that handoff's `Forget` removes it).
//!
//! A crash before 3 leaves the session in both logs; recovery keeps the copy with the higher
//! stamp ([`newest_copy`]) and discards the other.
//!
//! [`SessionState::restamp`]: crate::session::SessionState::restamp

use std::rc::Rc;

use protocol::ByteStr;

use crate::{
    mesh::ShardMsg,
    persist::{record::SessionImage, Record, Ticket},
    shard::Shard,
};

/// Where a claimed session came from: the shard whose log keeps it until told to forget it,
/// and the claim that took it (which names this handoff there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The shard that held the session.
    pub from: usize,
    /// The claim request id on the shard that took it.
    pub req: u64,
}

/// A persistent session this shard handed to another whose copy is not known durable yet:
/// this shard's log still holds it, and so must its snapshots.
#[derive(Debug)]
pub struct HandedOff {
    /// The shard it went to.
    pub to: usize,
    /// That shard's claim request id.
    pub req: u64,
    /// The session as it was handed over, for snapshots taken meanwhile.
    pub image: SessionImage,
}

/// Of two recovered copies of one session, each `(shard, stamp)`, which to keep and which
/// shard must discard its copy: the newer copy wins; on equal stamps (two copies older than
/// stamps, or a copy and itself) the one registered first.
pub fn newest_copy(first: (usize, u64), second: (usize, u64)) -> ((usize, u64), Option<usize>) {
    if first.0 == second.0 {
        (first, None)
    } else if second.1 > first.1 {
        (second, Some(first.0))
    } else {
        (first, Some(second.0))
    }
}

impl Shard {
    /// Tells the shard a session was taken from (`handoff`) to log its removal, once the
    /// record of the copy here (`ticket`; `None` when nothing was logged here, as for a clean
    /// start) is durable. If this log fails the old copy stays, which recovery then keeps:
    /// an older session is better than none.
    pub fn forget_when_durable(
        self: &Rc<Self>,
        client_id: ByteStr,
        handoff: Handoff,
        ticket: Option<Ticket>,
    ) {
        let Some(persist) = self.persist.borrow().clone() else {
            return;
        };
        let forget = ShardMsg::Forget {
            client_id,
            from: self.id,
            req: handoff.req,
        };
        let Some(ticket) = ticket else {
            self.send(handoff.from, forget);
            return;
        };
        let shard = self.clone();
        glommio::spawn_local(async move {
            match persist.durable(ticket).await {
                Ok(()) => shard.send(handoff.from, forget),
                Err(e) => {
                    tracing::warn!(shard = shard.id, error = %e, "state log failed; the shard a session came from keeps its copy");
                }
            }
        })
        .detach();
    }

    /// A session this shard handed off is attached here again before that handoff's
    /// `Forget` came: with `persisted`, the record just logged here supersedes the copy kept
    /// for the handoff; without, that copy is removed now (the client started afresh). Either
    /// way the late `Forget` then finds nothing to do, and no snapshot brings the copy back.
    pub(crate) fn attached_again(&self, client_id: &ByteStr, persisted: bool) {
        let kept = self
            .state
            .borrow_mut()
            .handed_off
            .remove(client_id)
            .is_some();
        if kept && !persisted {
            self.log(|| Record::SessionRemove {
                client_id: client_id.clone(),
            });
        }
    }

    /// Handles [`ShardMsg::Forget`]: logs the removal of a session handed to shard `from`
    /// (claim `req`), now durable there, unless this shard logged a newer copy itself since.
    pub(crate) fn forget(&self, client_id: ByteStr, from: usize, req: u64) {
        let remove = {
            let mut st = self.state.borrow_mut();
            let this_handoff = st
                .handed_off
                .get(&client_id)
                .is_some_and(|h| h.to == from && h.req == req);
            if !this_handoff {
                // Handed off again since: that handoff's own `Forget` removes it.
                return;
            }
            st.handed_off.remove(&client_id);
            // Held here again, logged whole: a removal now would delete that newer record.
            !st.sessions.get(&client_id).is_some_and(|s| s.persisted)
        };
        if remove {
            self.log(|| Record::SessionRemove { client_id });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression guard: recovery kept whichever copy of a session registered
    /// first, which could be the stale one a takeover left behind.
    #[test]
    fn the_newest_copy_wins_whichever_registers_first() {
        let (stale, fresh) = ((0, 1_000), (1, 2_000));
        assert_eq!(newest_copy(stale, fresh), (fresh, Some(0)));
        assert_eq!(newest_copy(fresh, stale), (fresh, Some(0)));
        // Copies from before stamps (both 0): the first registered, as before.
        assert_eq!(newest_copy((1, 0), (0, 0)), ((1, 0), Some(0)));
        // A stamped copy outranks an unstamped one.
        assert_eq!(newest_copy((1, 5), (0, 0)), ((1, 5), Some(0)));
        // The same shard registering again is no duplicate.
        assert_eq!(newest_copy((1, 5), (1, 7)), ((1, 5), None));
    }
}
