//! An independent check of a run: a subscriber on `fleet/+/gps` and `fleet/+/reefer` that decodes every message against
//! the payload contract and, at the end, compares what arrived with the ground truth.
//!
//! It runs on its own glommio executor thread, subscribed before the fleet starts, and counts
//! each `(vehicle, seq)` once (QoS 1 may deliver twice after a reconnect; that is counted as a
//! duplicate, not an error).

use std::{
    cell::RefCell,
    collections::{BTreeSet, HashMap},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use protocol::{Publish, QoS};
use telemetry::{decode_message, Message};

use crate::mqtt::{ClientError, ClientOptions, Connection, Handler};
use crate::truth::Truth;

/// What arrived from one vehicle.
#[derive(Debug, Default, Clone)]
pub struct Arrived {
    /// Distinct GPS seqs.
    pub gps: BTreeSet<u64>,
    /// Distinct reefer seqs.
    pub reefer: BTreeSet<u64>,
    /// Status messages.
    pub status: u64,
}

/// Everything the subscriber saw.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// Per vehicle id.
    pub vehicles: HashMap<String, Arrived>,
    /// Messages that broke the contract, with the first few reasons.
    pub invalid: u64,
    /// Up to 10 reject reasons.
    pub reasons: Vec<String>,
    /// Telemetry messages seen again (QoS 1 redelivery).
    pub duplicates: u64,
    /// Telemetry messages received in total.
    pub received: u64,
}

impl Observed {
    /// Differences from the truth's `published` counts; empty when every published reading
    /// arrived exactly as counted.
    pub fn mismatches(&self, truth: &Truth) -> Vec<String> {
        let mut out = Vec::new();
        let empty = Arrived::default();
        for vt in &truth.vehicles {
            let seen = self.vehicles.get(&vt.vehicle_id).unwrap_or(&empty);
            for (topic, set, count) in [
                ("gps", &seen.gps, &vt.published.gps),
                ("reefer", &seen.reefer, &vt.published.reefer),
            ] {
                let got = (set.len() as u64, set.first().copied(), set.last().copied());
                let want = (count.count, count.first_seq, count.last_seq);
                if got != want {
                    out.push(format!(
                        "{} {topic}: received (count, first, last) {got:?}, truth says {want:?}",
                        vt.vehicle_id
                    ));
                }
            }
        }
        out
    }
}

struct Recorder(RefCell<Observed>);

impl Handler for Recorder {
    fn acked(&self, _tag: u64, _ok: bool) {}

    fn message(&self, publish: &Publish) {
        let mut o = self.0.borrow_mut();
        match decode_message(&publish.topic, &publish.payload) {
            Ok((id, message)) => {
                let entry = o.vehicles.entry(id.to_owned()).or_default();
                let fresh = match message {
                    Message::Gps(g) => entry.gps.insert(g.seq),
                    Message::Reefer(r) => entry.reefer.insert(r.seq),
                    Message::Status(_) => {
                        entry.status += 1;
                        return;
                    }
                };
                o.received += 1;
                if !fresh {
                    o.duplicates += 1;
                }
            }
            Err(reject) => {
                o.invalid += 1;
                if o.reasons.len() < 10 {
                    let reason = format!("{}: {reject}", publish.topic.as_str());
                    o.reasons.push(reason);
                }
            }
        }
    }
}

/// A running verifier.
pub struct Verifier {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Observed>,
}

impl Verifier {
    /// Connects, subscribes to `fleet/#` at QoS 1 and returns once the subscription is in place.
    ///
    /// # Errors
    /// The subscriber could not connect or subscribe.
    pub fn start(options: ClientOptions) -> Result<Verifier, ClientError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fleetmq-verify".into())
            .spawn(move || {
                let executor = match glommio::LocalExecutorBuilder::default().make() {
                    Ok(ex) => ex,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ClientError::Protocol(e.to_string())));
                        return Observed::default();
                    }
                };
                executor.run(watch(options, thread_stop, ready_tx))
            })
            .map_err(ClientError::Io)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Verifier { stop, thread }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Waits until nothing has arrived for a second (the broker has delivered everything),
    /// then returns what was seen.
    pub fn finish(self) -> Observed {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

async fn watch(
    options: ClientOptions,
    stop: Arc<AtomicBool>,
    ready: mpsc::Sender<Result<(), ClientError>>,
) -> Observed {
    let recorder = Rc::new(Recorder(RefCell::new(Observed::default())));
    let id = format!("fleetmq-verify-{}", std::process::id());
    let conn = async {
        let handler: Rc<dyn Handler> = recorder.clone();
        let mut conn = Connection::connect(&options, &id, None, handler).await?;
        // Not `fleet/#`: the retained statuses of earlier runs would arrive as one burst, and a
        // broker that bounds a client's queue (mosquitto: 1000 messages) drops readings behind it.
        for filter in [
            telemetry::topic::GPS_FILTER,
            telemetry::topic::REEFER_FILTER,
        ] {
            conn.subscribe(filter, QoS::AtLeastOnce, Duration::from_secs(10))
                .await?;
        }
        Ok::<_, ClientError>(conn)
    }
    .await;
    let conn = match conn {
        Ok(conn) => {
            let _ = ready.send(Ok(()));
            conn
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return Observed::default();
        }
    };
    let mut last_count = 0;
    let mut quiet_since = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(100)).await;
        let count = recorder.0.borrow().received;
        if count != last_count {
            last_count = count;
            quiet_since = Instant::now();
        }
        if conn.is_dead()
            || (stop.load(Ordering::Relaxed) && quiet_since.elapsed() > Duration::from_secs(1))
        {
            break;
        }
    }
    conn.disconnect(Duration::from_secs(1)).await;
    let observed = recorder.0.borrow().clone();
    observed
}
