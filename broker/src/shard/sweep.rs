//! The periodic sweep: keepalive timeouts, session and retained-message expiry, shutdown.

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::outbox::CloseRequest;

use super::{Shard, MOVED_TO_KEPT};

impl Shard {
    /// Periodic work: keepalive timeouts, session and retained-message expiry, shutdown.
    pub fn sweep(self: &Rc<Self>) {
        let now = Instant::now();
        let mut expired_sessions = Vec::new();
        {
            let mut st = self.state.borrow_mut();
            for conn in st.connections.values() {
                if conn.active.replace(false) {
                    conn.last_seen.set(now);
                }
                if let Some(timeout) = conn.timeout.get() {
                    if now.saturating_duration_since(conn.last_seen.get()) > timeout {
                        conn.control.close(CloseRequest::KeepAliveTimeout);
                    }
                }
            }
            for (id, slot) in st.sessions.iter() {
                if slot.link.is_none() && slot.state.is_expired(now) {
                    expired_sessions.push(id.clone());
                }
            }
            let mut freed = 0;
            st.retained.retain(|_, m| {
                let keep = !m.is_expired(now);
                if !keep {
                    freed += m.weight();
                }
                keep
            });
            st.retained_bytes = st.retained_bytes.saturating_sub(freed);
            st.moved_to
                .retain(|_, &mut (_, since)| now.saturating_duration_since(since) < MOVED_TO_KEPT);
        }
        for id in expired_sessions {
            tracing::debug!(shard = self.id, client_id = %id, "session expired");
            self.end_session(&id);
        }
        self.sweep_pressure(now);
        let sweeps = self.sweeps.get() + 1;
        self.sweeps.set(sweeps);
        // Once a second, and at once when a reader asked for fresh figures.
        if sweeps.is_multiple_of(4) || self.board.is_requested(self.id) {
            self.publish_snapshot();
        }
        if self.stop.load(Ordering::Relaxed) && !self.stopping.get() {
            self.stopping.set(true);
            self.stop_signal.close(CloseRequest::Shutdown);
            let st = self.state.borrow();
            for conn in st.connections.values() {
                conn.control.close(CloseRequest::Shutdown);
            }
        }
    }
}
