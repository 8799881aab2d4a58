//! Wills (Last Will and Testament): published when a client's connection ends without a
//! DISCONNECT, at once or, with an MQTT 5.0 Will Delay Interval, later.
//!
//! A delayed Will waits on the shard where its connection ended (which holds the client's
//! session), in [`crate::shard::ShardState::wills`], with a timer. It is due at the earlier
//! of its delay and its session's expiry (the caller passes the smaller of the two). It is
//! cancelled when its client comes back: the new connection claims the session from this
//! shard ([`cancel`], from the eviction), wherever the client connected.
//!
//! With persistence on, a delayed Will is in the shard's state log from when it is scheduled
//! until it is published or cancelled, its due time as wall-clock time; after a restart,
//! [`arm_recovered`] publishes the ones that fell due while the broker was down and schedules
//! the others for what is left of their delay. A Will whose session did not come back (it
//! expired while the broker was down) is due at once: its session has ended.

use std::{rc::Rc, time::Duration};

use protocol::{ByteStr, Publish, Will};

use crate::{
    clock::unix_ms_now,
    mesh::ShardMsg,
    message::Message,
    persist::Record,
    session::{PendingWill, RECOVERED},
    shard::Shard,
};

/// Publishes a Will now, to subscribers and (with its RETAIN flag) as the retained message.
pub fn publish_now(shard: &Rc<Shard>, will: Will, client_id: ByteStr) {
    let Will {
        topic,
        payload,
        qos,
        retain,
        mut properties,
    } = will;
    properties.will_delay_interval = None;
    let publish = Publish {
        dup: false,
        qos,
        retain,
        topic,
        pkid: 0,
        payload,
        properties,
    };
    let message =
        Message::from_publish(publish, Some(client_id.clone()), std::time::Instant::now());
    tracing::debug!(shard = shard.id, client_id = %client_id, topic = %message.topic, "publishing will");
    if message.retain {
        let stored = (!message.payload.is_empty()).then(|| message.clone());
        let topic = message.topic.clone();
        shard.broadcast(|| ShardMsg::Retain {
            topic: topic.clone(),
            message: stored.clone(),
        });
    }
    shard.route(&message);
}

/// Publishes the Will that connection `conn_id` of `client_id` left after `delay_secs`,
/// unless the client comes back first; logs it so that a restart in between keeps it.
pub fn schedule(
    shard: &Rc<Shard>,
    client_id: ByteStr,
    mut will: Will,
    conn_id: u64,
    delay_secs: u32,
) {
    let delay = Duration::from_secs(u64::from(delay_secs));
    let due_ms = unix_ms_now().saturating_add(delay.as_millis() as u64);
    // The due time replaces the delay, which means nothing once it has started.
    will.properties.will_delay_interval = None;
    shard.log(|| Record::Will {
        client_id: client_id.clone(),
        due_ms,
        will: Box::new(will.clone()),
    });
    shard.state.borrow_mut().wills.insert(
        client_id.clone(),
        PendingWill {
            will,
            due_ms,
            conn_id,
        },
    );
    arm(shard, client_id, conn_id, delay);
}

/// Cancels the pending Will of `client_id` on this shard, if any: its client came back (MQTT
/// 5.0 section 3.1.3.2.2: a new connection to the session before the delay has passed).
pub fn cancel(shard: &Shard, client_id: &ByteStr) {
    if shard.state.borrow_mut().wills.remove(client_id).is_some() {
        tracing::debug!(shard = shard.id, client_id = %client_id, "delayed will cancelled: the client is back");
        shard.log(|| Record::WillRemove {
            client_id: client_id.clone(),
        });
    }
}

/// After recovery (every shard's subscription table complete): publishes the recovered
/// Wills that are due, those whose delay ran out while the broker was down and those whose
/// session did not come back, and schedules the others for the rest of their delay.
pub fn arm_recovered(shard: &Rc<Shard>) {
    let now_ms = unix_ms_now();
    let recovered: Vec<(ByteStr, u64)> = {
        let st = shard.state.borrow();
        st.wills
            .iter()
            .filter(|(_, w)| w.conn_id == RECOVERED)
            .map(|(id, w)| {
                let left = if st.sessions.contains_key(id) {
                    w.due_ms.saturating_sub(now_ms)
                } else {
                    0
                };
                (id.clone(), left)
            })
            .collect()
    };
    let (mut published, mut armed) = (0usize, 0usize);
    for (client_id, left_ms) in recovered {
        if left_ms == 0 {
            published += 1;
            fire(shard, &client_id, RECOVERED);
        } else {
            armed += 1;
            arm(shard, client_id, RECOVERED, Duration::from_millis(left_ms));
        }
    }
    if published + armed > 0 {
        tracing::info!(
            shard = shard.id,
            published,
            scheduled = armed,
            "delayed wills recovered"
        );
    }
}

/// Starts the timer of a pending Will.
fn arm(shard: &Rc<Shard>, client_id: ByteStr, conn_id: u64, after: Duration) {
    let shard = shard.clone();
    glommio::spawn_local(async move {
        glommio::timer::sleep(after).await;
        fire(&shard, &client_id, conn_id);
    })
    .detach();
}

/// Publishes the pending Will of `client_id` if it is still the one connection `conn_id`
/// left (not cancelled, not replaced).
fn fire(shard: &Rc<Shard>, client_id: &ByteStr, conn_id: u64) {
    if shard.stopping.get() {
        // The broker is stopping: the Will stays in the state log and is published after
        // the restart, rather than to subscribers that are being disconnected.
        return;
    }
    let pending = {
        let mut st = shard.state.borrow_mut();
        match st.wills.get(client_id) {
            Some(w) if w.conn_id == conn_id => st.wills.remove(client_id),
            _ => None,
        }
    };
    let Some(pending) = pending else { return };
    // Published first: what it queues for this shard's sessions (and on shard 0 its retained
    // copy) is appended before the removal. Other shards append their part a moment later;
    // a crash in that moment loses it there, as it would a publish by a client.
    publish_now(shard, pending.will, client_id.clone());
    shard.log(|| Record::WillRemove {
        client_id: client_id.clone(),
    });
}
