//! Rebuilding a shard's persistent state from a snapshot and the log, and taking a session's
//! image for a record.

use std::collections::HashMap;

use protocol::ByteStr;

use super::{
    record::{Record, SessionImage},
    values::to_unix_ms,
};
use crate::{
    message::Message,
    session::{Inflight, PendingWill, SessionState},
};

/// What recovery rebuilt for one shard.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Sessions, offline.
    pub sessions: HashMap<ByteStr, SessionState>,
    /// Retained messages (only shard 0 logs them).
    pub retained: HashMap<ByteStr, Message>,
    /// The user each session authenticated as.
    pub usernames: HashMap<ByteStr, Option<ByteStr>>,
    /// When the client of each offline session left (wall-clock ms), where it is known: not
    /// for a session whose connection the broker's own stop or crash ended.
    pub offline_since: HashMap<ByteStr, u64>,
    /// Wills waiting for their delay, by client id. A Will outlives the removal of its
    /// session: a session that ended makes its Will due, it does not cancel it.
    pub wills: HashMap<ByteStr, PendingWill>,
}

impl Recovered {
    /// Applies one record. Redo-safe: applying a record the state already reflects is a no-op,
    /// which is what lets a snapshot overlap the log segment that follows it.
    pub fn apply(&mut self, record: Record) {
        match record {
            Record::Session(mut image) => {
                self.usernames
                    .insert(image.client_id.clone(), image.username.take());
                match image.offline_since {
                    Some(ms) => self.offline_since.insert(image.client_id.clone(), ms),
                    None => self.offline_since.remove(&image.client_id),
                };
                let state = from_image(image);
                self.sessions.insert(state.client_id.clone(), state);
            }
            Record::Subscriptions {
                client_id,
                expiry,
                subscriptions,
            } => {
                let s = self
                    .sessions
                    .entry(client_id.clone())
                    .or_insert_with(|| SessionState::new(client_id, expiry));
                s.expiry_interval = expiry;
                s.subscriptions = subscriptions.into_iter().collect();
            }
            Record::SessionRemove { client_id } => {
                self.sessions.remove(&client_id);
                self.usernames.remove(&client_id);
                self.offline_since.remove(&client_id);
            }
            Record::Offline {
                client_id,
                since_ms,
            } => {
                if self.sessions.contains_key(&client_id) {
                    self.offline_since.insert(client_id, since_ms);
                }
            }
            Record::Will {
                client_id,
                due_ms,
                will,
            } => {
                self.wills
                    .insert(client_id, PendingWill::recovered(*will, due_ms));
            }
            Record::WillRemove { client_id } => {
                self.wills.remove(&client_id);
            }
            Record::Enqueue {
                client_id,
                delivery,
            } => {
                let Some(s) = self.sessions.get_mut(&client_id) else {
                    return;
                };
                let seq = delivery.seq;
                let known = s.queue.iter().any(|d| d.seq == seq)
                    || s.inflight.iter().any(|f| f.delivery.seq == seq);
                if !known {
                    s.queued_bytes += delivery.message.weight();
                    s.queue.push_back(delivery);
                }
                s.next_seq = s.next_seq.max(seq + 1);
            }
            Record::Sent {
                client_id,
                seq,
                pkid,
            } => {
                let Some(s) = self.sessions.get_mut(&client_id) else {
                    return;
                };
                if let Some(i) = s.queue.iter().position(|d| d.seq == seq) {
                    if let Some(delivery) = s.queue.remove(i) {
                        s.queued_bytes = s.queued_bytes.saturating_sub(delivery.message.weight());
                        s.inflight.push_back(Inflight {
                            pkid,
                            delivery,
                            released: false,
                        });
                    }
                }
            }
            Record::Released { client_id, seq } => {
                if let Some(f) = self
                    .sessions
                    .get_mut(&client_id)
                    .and_then(|s| s.inflight.iter_mut().find(|f| f.delivery.seq == seq))
                {
                    f.released = true;
                }
            }
            Record::Done { client_id, seq } => {
                let Some(s) = self.sessions.get_mut(&client_id) else {
                    return;
                };
                if let Some(i) = s.inflight.iter().position(|f| f.delivery.seq == seq) {
                    s.inflight.remove(i);
                } else if let Some(i) = s.queue.iter().position(|d| d.seq == seq) {
                    if let Some(d) = s.queue.remove(i) {
                        s.queued_bytes = s.queued_bytes.saturating_sub(d.message.weight());
                    }
                }
            }
            Record::InboundQos2 {
                client_id,
                pkid,
                add,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    if add {
                        s.inbound_qos2.insert(pkid);
                    } else {
                        s.inbound_qos2.remove(pkid);
                    }
                }
            }
            Record::Retain { topic, message } => match message {
                Some(m) => {
                    self.retained.insert(topic, m);
                }
                None => {
                    self.retained.remove(&topic);
                }
            },
            Record::SnapshotHeader { .. } => {}
        }
    }
}

/// The image of a session, for a [`Record::Session`].
pub fn image(s: &SessionState, username: Option<&str>) -> SessionImage {
    SessionImage {
        username: username.map(ByteStr::from),
        client_id: s.client_id.clone(),
        expiry: s.expiry_interval,
        subscriptions: s
            .subscriptions
            .iter()
            .map(|(f, sub)| (f.clone(), *sub))
            .collect(),
        inflight: s
            .inflight
            .iter()
            .map(|f| (f.pkid, f.released, f.delivery.clone()))
            .collect(),
        queue: s.queue.iter().cloned().collect(),
        inbound_qos2: s.inbound_qos2.iter().collect(),
        next_seq: s.next_seq,
        offline_since: s.disconnected_at.map(to_unix_ms),
        stamp: s.stamp,
    }
}

/// The session an image describes.
fn from_image(image: SessionImage) -> SessionState {
    let mut s = SessionState::new(image.client_id, image.expiry);
    s.subscriptions = image.subscriptions.into_iter().collect();
    s.inflight = image
        .inflight
        .into_iter()
        .map(|(pkid, released, delivery)| Inflight {
            pkid,
            delivery,
            released,
        })
        .collect();
    s.queued_bytes = image.queue.iter().map(|d| d.message.weight()).sum();
    s.queue = image.queue.into_iter().collect();
    s.inbound_qos2 = image.inbound_qos2.into_iter().collect();
    s.next_seq = image.next_seq;
    s.stamp = image.stamp;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{message::Delivery, session::SessionSubscription};
    use bytes::Bytes;
    use protocol::{QoS, SubscriptionOptions};

    fn delivery(seq: u64) -> Delivery {
        Delivery {
            message: Message {
                topic: "t".into(),
                payload: Bytes::from_static(b"p"),
                qos: QoS::ExactlyOnce,
                retain: false,
                properties: None,
                expires_at: None,
                publisher: None,
            },
            qos: QoS::ExactlyOnce,
            retain: false,
            subscription_ids: Vec::new(),
            seq,
        }
    }

    fn history() -> Vec<Record> {
        let c = || ByteStr::from("c");
        let sub = |f: &str| {
            (
                ByteStr::from(f),
                SessionSubscription {
                    options: SubscriptionOptions::default(),
                    id: None,
                },
            )
        };
        let mut empty = SessionState::new(c(), 60);
        empty.subscriptions.insert("a".into(), sub("a").1);
        vec![
            Record::Session(image(&empty, None)),
            Record::Enqueue {
                client_id: c(),
                delivery: delivery(1),
            },
            Record::Enqueue {
                client_id: c(),
                delivery: delivery(2),
            },
            Record::Sent {
                client_id: c(),
                seq: 1,
                pkid: 10,
            },
            Record::Enqueue {
                client_id: c(),
                delivery: delivery(3),
            },
            Record::Done {
                client_id: c(),
                seq: 1,
            },
            Record::Sent {
                client_id: c(),
                seq: 2,
                pkid: 11,
            },
            Record::Released {
                client_id: c(),
                seq: 2,
            },
            Record::InboundQos2 {
                client_id: c(),
                pkid: 5,
                add: true,
            },
            Record::Enqueue {
                client_id: c(),
                delivery: delivery(4),
            },
            Record::Done {
                client_id: c(),
                seq: 3,
            },
            Record::InboundQos2 {
                client_id: c(),
                pkid: 5,
                add: false,
            },
            Record::InboundQos2 {
                client_id: c(),
                pkid: 6,
                add: true,
            },
            Record::Subscriptions {
                client_id: c(),
                expiry: 120,
                subscriptions: vec![sub("a"), sub("b")],
            },
            Record::Sent {
                client_id: c(),
                seq: 4,
                pkid: 12,
            },
        ]
    }

    /// What recovery must agree on: queue, in-flight window, inbound ids, subscriptions.
    fn summary(r: &Recovered) -> String {
        let s = &r.sessions[&ByteStr::from("c")];
        let queue: Vec<u64> = s.queue.iter().map(|d| d.seq).collect();
        let inflight: Vec<(u16, u64, bool)> = s
            .inflight
            .iter()
            .map(|f| (f.pkid, f.delivery.seq, f.released))
            .collect();
        let inbound: Vec<u16> = s.inbound_qos2.iter().collect();
        let mut subs: Vec<&str> = s.subscriptions.keys().map(|k| &**k).collect();
        subs.sort_unstable();
        format!(
            "{queue:?} {inflight:?} {inbound:?} {subs:?} exp={} next={} bytes={}",
            s.expiry_interval, s.next_seq, s.queued_bytes
        )
    }

    /// A snapshot taken after any prefix of the history, followed by the history replayed from
    /// any earlier point (records written after the snapshot instant though appended before
    /// it), recovers exactly the state the whole history gives.
    #[test]
    fn snapshot_plus_overlapping_replay_recovers_the_exact_state() {
        let records = history();
        let mut direct = Recovered::default();
        for r in records.iter().cloned() {
            direct.apply(r);
        }
        let want = summary(&direct);
        assert_eq!(
            want,
            "[] [(11, 2, true), (12, 4, false)] [6] [\"a\", \"b\"] exp=120 next=5 bytes=0"
        );
        for taken in 1..=records.len() {
            let mut at = Recovered::default();
            for r in records[..taken].iter().cloned() {
                at.apply(r);
            }
            let snap = Record::Session(image(&at.sessions[&ByteStr::from("c")], None));
            for from in 0..=taken {
                let mut back = Recovered::default();
                back.apply(snap.clone());
                for r in records[from..].iter().cloned() {
                    back.apply(r);
                }
                assert_eq!(
                    summary(&back),
                    want,
                    "snapshot after {taken}, replay from {from}"
                );
            }
        }
    }

    /// A client leaves (its Will pending), comes back (cancelled), leaves again (a new Will),
    /// and its session is removed (expired): whatever snapshot overlaps the log, recovery ends
    /// with the second Will pending, due as recorded, and no departure time for a session that
    /// is gone.
    #[test]
    fn wills_and_departures_replay_exactly_over_any_snapshot() {
        let c = || ByteStr::from("c");
        let will = |payload: &'static str| protocol::Will {
            topic: "fleet/c/status".into(),
            payload: Bytes::from_static(payload.as_bytes()),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: protocol::Properties::default(),
        };
        let online = SessionState::new(c(), 60);
        let records = vec![
            Record::Session(image(&online, None)),
            Record::Offline {
                client_id: c(),
                since_ms: 1_000,
            },
            Record::Will {
                client_id: c(),
                due_ms: 31_000,
                will: Box::new(will("first")),
            },
            Record::WillRemove { client_id: c() },
            Record::Session(image(&online, None)),
            Record::Offline {
                client_id: c(),
                since_ms: 50_000,
            },
            Record::Will {
                client_id: c(),
                due_ms: 80_000,
                will: Box::new(will("second")),
            },
        ];
        let outcome = |r: &Recovered| {
            let will = r
                .wills
                .get(&c())
                .map(|w| (w.due_ms, w.will.payload.clone()));
            (will, r.offline_since.get(&c()).copied())
        };
        let want = outcome(&replay(&records));
        assert_eq!(
            want,
            (Some((80_000, Bytes::from_static(b"second"))), Some(50_000))
        );
        let mut ended = replay(&records);
        ended.apply(Record::SessionRemove { client_id: c() });
        assert_eq!(
            outcome(&ended),
            (Some((80_000, Bytes::from_static(b"second"))), None),
            "a session that ended leaves its Will due"
        );
        // A snapshot holds the session's image and the pending Will, as they were then.
        for taken in 1..=records.len() {
            let at = replay(&records[..taken]);
            let mut snap: Vec<Record> = at
                .wills
                .iter()
                .map(|(id, w)| Record::Will {
                    client_id: id.clone(),
                    due_ms: w.due_ms,
                    will: Box::new(w.will.clone()),
                })
                .collect();
            if let Some(s) = at.sessions.get(&c()) {
                let mut img = image(s, None);
                img.offline_since = at.offline_since.get(&c()).copied();
                snap.push(Record::Session(img));
            }
            for from in 0..=taken {
                let mut back = Recovered::default();
                for r in snap.iter().cloned().chain(records[from..].iter().cloned()) {
                    back.apply(r);
                }
                assert_eq!(
                    outcome(&back),
                    want,
                    "snapshot after {taken}, replay from {from}"
                );
            }
        }
    }

    fn replay(records: &[Record]) -> Recovered {
        let mut r = Recovered::default();
        for record in records.iter().cloned() {
            r.apply(record);
        }
        r
    }
}
