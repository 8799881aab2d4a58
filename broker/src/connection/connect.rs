//! CONNECT: checks, session claim (takeover across shards), CONNACK and redelivery.

use std::{
    rc::Rc,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use protocol::{ByteStr, ConnAck, Connect, Packet, Properties, Protocol, ReasonCode};

use super::{Conn, Ending};
use crate::{
    mesh::ShardMsg,
    outgoing::{AckKind, Outgoing},
    persist::Record,
    security::{ClientAccess, Credentials},
    session::{DropReason, SessionState},
    shard::{ConnLink, SessionSlot},
};

/// Source of assigned client identifiers; unique within the process, across shards.
static ASSIGNED_IDS: AtomicU64 = AtomicU64::new(1);

impl Conn {
    /// Accepts or refuses CONNECT. On success the session is attached and CONNACK queued.
    pub(super) async fn connect(&mut self, connect: Connect) -> Result<(), Ending> {
        self.protocol = connect.protocol;
        let v5 = self.protocol.is_v5();
        let limits = self.shard.config.limits.clone();
        let alias_max = if v5 {
            connect.properties.topic_alias_maximum.unwrap_or(0)
        } else {
            0
        };
        self.start_writer(alias_max);

        if v5 && connect.properties.authentication_method.is_some() {
            return Err(self.refuse(
                ReasonCode::BAD_AUTHENTICATION_METHOD,
                "enhanced authentication is not supported",
            ));
        }
        let mut assigned = None;
        let client_id = if connect.client_id.is_empty() {
            // 3.1 requires an id; 3.1.1 allows none only with a clean session (3.1.3.1);
            // 5.0 always allows none and tells the client what it got.
            if connect.protocol == Protocol::V3_1 || (!v5 && !connect.clean_start) {
                return Err(self.refuse(
                    ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
                    "an empty client id needs MQTT 3.1.1 with a clean session, or MQTT 5.0",
                ));
            }
            let n = ASSIGNED_IDS.fetch_add(1, Ordering::Relaxed);
            let id = ByteStr::from(format!("fleetmq-{}-{n}", std::process::id()));
            if v5 {
                assigned = Some(id.clone());
            }
            id
        } else {
            connect.client_id.clone()
        };

        // Authenticate before touching any session: a refused client must not take one over.
        let generation = self.shard.security.generation();
        let policy = self.shard.security.policy();
        let credentials = Credentials {
            cert_user: self.cert_user.as_deref(),
            username: connect.username.as_deref(),
            password: connect.password.as_deref(),
        };
        let Ok(identity) = policy.authenticate(&credentials) else {
            self.shard
                .auth_failed(self.peer, &client_id, connect.username.as_deref());
            // 5.0: 0x86 bad user name or password; 3.1.1: return code 5, not authorized. The
            // same answer whichever part was wrong.
            let reason = if v5 {
                ReasonCode::BAD_USER_NAME_OR_PASSWORD
            } else {
                ReasonCode::NOT_AUTHORIZED
            };
            return Err(self.refuse_quietly(reason, "not authorized"));
        };
        let access = Rc::new(ClientAccess::new(
            &policy,
            generation,
            identity,
            client_id.clone(),
        ));
        drop(policy);

        let mut keep_alive = connect.keep_alive;
        let mut server_keep_alive = None;
        if v5
            && limits.max_keepalive != 0
            && (keep_alive == 0 || keep_alive > limits.max_keepalive)
            && limits.max_keepalive != u16::MAX
        {
            keep_alive = limits.max_keepalive;
            server_keep_alive = Some(keep_alive);
        }

        self.session_expiry = if v5 {
            connect.properties.session_expiry_interval.unwrap_or(0)
        } else if connect.clean_start {
            0
        } else {
            limits.persistent_session_expiry
        };

        let (claim, prior) = self.shard.claim_session(&client_id).await;
        let handoff = prior.as_ref().map(|(_, handoff)| *handoff);
        let prior_stamp = prior.as_ref().map_or(0, |(old, _)| old.stamp);
        let now = Instant::now();
        let (mut state, present) = match prior.map(|(old, _)| old) {
            // A session whose expiry is 0 (a 3.1.1 clean session) ends when its connection
            // closes, and a takeover closes it: the new connection never finds it present,
            // whether or not the old one's DISCONNECT was read first, as with mosquitto.
            Some(old)
                if !connect.clean_start && !old.is_expired(now) && old.expiry_interval != 0 =>
            {
                (*old, true)
            }
            Some(old) => {
                let filters: Vec<ByteStr> = old.subscriptions.keys().cloned().collect();
                if !filters.is_empty() {
                    let id = client_id.clone();
                    self.shard.broadcast(|| ShardMsg::SubRemove {
                        client_id: id.clone(),
                        filters: filters.clone(),
                    });
                }
                (
                    SessionState::new(client_id.clone(), self.session_expiry),
                    false,
                )
            }
            None => (
                SessionState::new(client_id.clone(), self.session_expiry),
                false,
            ),
        };
        state.expiry_interval = self.session_expiry;
        state.disconnected_at = None;
        state.restamp(prior_stamp);
        if present && !state.subscriptions.is_empty() {
            let filters: Vec<ByteStr> = state.subscriptions.keys().cloned().collect();
            let (id, shard) = (client_id.clone(), self.shard.id);
            self.shard.broadcast(|| ShardMsg::SubRelocate {
                client_id: id.clone(),
                filters: filters.clone(),
                shard,
            });
        }

        let window = if v5 {
            usize::from(connect.properties.receive_maximum.unwrap_or(u16::MAX))
        } else {
            usize::from(limits.max_inflight)
        };
        let link = ConnLink {
            conn_id: self.id,
            handle: self.handle.clone(),
            protocol: self.protocol,
            window,
            max_packet: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        };
        let persisted = state.is_persistent() && self.shard.persist.borrow().is_some();
        // The whole session, wherever it came from: the shard it left removes its copy once
        // this record is durable (`forget_when_durable` below).
        let ticket = persisted
            .then(|| {
                self.shard.log(|| {
                    Record::Session(crate::persist::state::image(
                        &state,
                        access.identity().username(),
                    ))
                })
            })
            .flatten();
        self.shard.track_queued(state.queued_bytes, true);
        let (evict, held) = {
            let mut st = self.shard.state.borrow_mut();
            st.moved_to.remove(&client_id);
            st.sessions.insert(Box::new(SessionSlot {
                state,
                link: Some(link),
                access: access.clone(),
                persisted,
                claim,
            }));
            let evict = st.claims.remove(&claim).and_then(|c| c.evict);
            (evict, st.held.remove(&client_id).unwrap_or_default())
        };
        self.shard.attached_again(&client_id, persisted);
        if let Some(handoff) = handoff {
            self.shard
                .forget_when_durable(client_id.clone(), handoff, ticket);
        }
        tracing::debug!(shard = self.shard.id, client_id = %client_id, user = ?access.identity().username(), "authenticated");
        self.access = Some(access);
        self.will = connect.will.map(Box::new);
        self.problem_information = connect.properties.request_problem_information != Some(0);
        self.handle
            .timeout
            .set((keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)));

        let mut properties = Properties::default();
        if v5 {
            properties.receive_maximum = Some(limits.max_inflight);
            properties.maximum_packet_size = Some(limits.max_packet_size);
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
            properties.assigned_client_identifier = assigned;
            properties.server_keep_alive = server_keep_alive;
        }
        self.handle.outbox.push(Packet::ConnAck(ConnAck {
            session_present: present,
            reason: ReasonCode::SUCCESS,
            properties,
        }));
        tracing::debug!(shard = self.shard.id, peer = %self.peer, client_id = %client_id, protocol = %self.protocol, present, "client connected");

        // Resend what was in flight, in order (MQTT 4.4), then whatever queued while offline.
        self.with_slot(|slot| {
            let now = Instant::now();
            for flight in &slot.state.inflight {
                let packet = if flight.released {
                    Outgoing::ack(AckKind::PubRel, flight.pkid, ReasonCode::SUCCESS)
                } else {
                    Outgoing::Publish(flight.delivery.to_publish(flight.pkid, true, now))
                };
                self.handle.outbox.push(packet);
            }
            self.shard.pump(slot, now);
        });

        // Messages routed to the session while it was on its way here: a resumed session takes
        // them after what it brought; a fresh one was not subscribed to anything.
        let now = Instant::now();
        for delivery in held {
            if present {
                self.shard.deliver_local(&client_id, delivery, now);
            } else {
                self.shard.discarded(DropReason::NoSession, &client_id);
            }
        }

        if let Some((to, req)) = evict {
            // Another connection with this id arrived while we were claiming: it wins.
            self.shard.handle(ShardMsg::Evict {
                client_id,
                to,
                req,
                after: claim,
            });
        }
        Ok(())
    }

    /// Queues a refusing CONNACK; the connection then closes.
    fn refuse(&mut self, reason: ReasonCode, why: &str) -> Ending {
        tracing::info!(shard = self.shard.id, peer = %self.peer, reason = %reason, why, "CONNECT refused");
        self.refuse_quietly(reason, why)
    }

    /// [`Conn::refuse`] without the log line (the caller logs, rate-limited).
    fn refuse_quietly(&mut self, reason: ReasonCode, why: &str) -> Ending {
        let mut properties = Properties::default();
        if self.protocol.is_v5() {
            properties.reason_string = Some(ByteStr::from(why));
        }
        self.handle.outbox.push(Packet::ConnAck(ConnAck {
            session_present: false,
            reason,
            properties,
        }));
        Ending::Refused
    }
}
