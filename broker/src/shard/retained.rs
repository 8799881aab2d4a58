//! Retained messages: this shard's replica, bounded by `max_retained_bytes`.

use protocol::ByteStr;

use crate::message::Message;
use crate::persist::record::Record;

use super::Shard;

impl Shard {
    /// Stores or deletes a retained message in this shard's replica. Shard 0 logs it: it
    /// applies every change in the order all replicas do, and one copy on disk is enough.
    pub fn apply_retain(&self, topic: ByteStr, message: Option<Message>) {
        {
            let mut st = self.state.borrow_mut();
            match &message {
                Some(m) => {
                    // Every replica applies the same changes in the same order and so refuses
                    // the same ones: the replicas stay identical.
                    // `$SYS/` topics are the broker's own, a fixed set: clients' retained
                    // messages must not crowd them out, nor they the clients'.
                    let limits = &self.config.limits;
                    if topic.starts_with("$SYS/") {
                        st.retained.insert(topic.clone(), m.clone());
                        return;
                    }
                    let old = st.retained.get(&topic).map_or(0, Message::weight);
                    let refused = if old == 0 && st.retained.len() >= limits.max_retained_messages {
                        Some("retained_limit")
                    } else if st.retained_bytes.saturating_sub(old) + m.weight()
                        > limits.max_retained_bytes
                    {
                        Some("retained_bytes")
                    } else {
                        None
                    };
                    if let Some(reason) = refused {
                        drop(st);
                        self.metrics.drop_message(reason);
                        return;
                    }
                    st.retained_bytes = st.retained_bytes.saturating_sub(old) + m.weight();
                    st.retained.insert(topic.clone(), m.clone());
                }
                None => match st.retained.remove(&topic) {
                    Some(old) if !topic.starts_with("$SYS/") => {
                        st.retained_bytes = st.retained_bytes.saturating_sub(old.weight());
                    }
                    Some(_) => {}
                    None => return,
                },
            }
        }
        // `$SYS` topics are the broker's own figures, republished after a restart anyway.
        if self.id == 0 && !topic.starts_with("$SYS/") {
            self.log(|| Record::Retain { topic, message });
        }
    }
}
