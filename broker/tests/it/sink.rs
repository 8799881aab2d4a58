//! The durable-sink contract, with a sink of the test's own: messages of the sink's topics are
//! appended (others are not), and a QoS 1 PUBLISH is acknowledged only once the sink says its
//! ticket is durable.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use crate::common;

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use broker::sink::{LocalFuture, ShardSink, Sink, SinkMessage, Ticket};
use common::{Client, TestBroker};
use rumqttc::{Packet, QoS};

/// What a sink was given: (topic, payload) in order, shared with the test.
type Appended = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A sink whose appends become durable only once the test opens its gate.
#[derive(Default)]
struct GatedSink {
    gate: Arc<AtomicBool>,
    appended: Appended,
}

impl Sink for GatedSink {
    fn topics(&self) -> Vec<String> {
        vec!["fleet/+/gps".into()]
    }

    fn open_shard(&self, _shard: usize) -> LocalFuture<'_, Result<Rc<dyn ShardSink>, String>> {
        let writer = Rc::new(GatedWriter {
            gate: self.gate.clone(),
            appended: self.appended.clone(),
            issued: RefCell::new(0),
            waiters: RefCell::new(Vec::new()),
        });
        // The gate is opened from another thread; a task on the shard watches it.
        let watched = writer.clone();
        glommio::spawn_local(async move {
            while !watched.gate.load(Ordering::Acquire) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            for waker in watched.waiters.borrow_mut().drain(..) {
                waker.wake();
            }
        })
        .detach();
        Box::pin(async move {
            let writer: Rc<dyn ShardSink> = writer;
            Ok(writer)
        })
    }

    fn prometheus(&self) -> String {
        "gated_sink_appended 1\n".into()
    }

    fn close(&self) -> Result<(), String> {
        Ok(())
    }
}

struct GatedWriter {
    gate: Arc<AtomicBool>,
    appended: Appended,
    issued: RefCell<u64>,
    waiters: RefCell<Vec<Waker>>,
}

impl ShardSink for GatedWriter {
    fn append(&self, message: SinkMessage<'_>) -> Ticket {
        self.appended.lock().unwrap().push((
            String::from_utf8_lossy(message.topic).into_owned(),
            message.payload.to_vec(),
        ));
        let mut issued = self.issued.borrow_mut();
        *issued += 1;
        Ticket(*issued)
    }

    fn poll_durable(&self, _ticket: Ticket, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        if self.gate.load(Ordering::Acquire) {
            Poll::Ready(Ok(()))
        } else {
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }

    fn close(&self) -> LocalFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgements_wait_for_the_sink_and_only_its_topics_go_to_it() {
    let sink = Arc::new(GatedSink::default());
    let (gate, appended) = (sink.gate.clone(), sink.appended.clone());
    let broker = TestBroker::with_extensions(
        |_| {},
        broker::Extensions {
            sink: Some(sink),
            ..Default::default()
        },
    );
    let (mut truck, _) = Client::connect(broker.port(), "truck-1", |_| {}).await;

    // Not a sink topic: acknowledged at once, not appended.
    truck
        .client
        .publish("fleet/truck-1/status", QoS::AtLeastOnce, false, "online")
        .await
        .unwrap();
    truck.next_packet(|p| matches!(p, Packet::PubAck(_))).await;

    truck
        .client
        .publish("fleet/truck-1/gps", QoS::AtLeastOnce, false, "{\"seq\":1}")
        .await
        .unwrap();
    // Held while the sink has not made it durable...
    truck
        .expect_no_packet(Duration::from_millis(300), |p| {
            matches!(p, Packet::PubAck(_))
        })
        .await;
    assert_eq!(
        *appended.lock().unwrap(),
        vec![("fleet/truck-1/gps".to_string(), b"{\"seq\":1}".to_vec())]
    );
    // ...and acknowledged once it has.
    gate.store(true, Ordering::Release);
    truck.next_packet(|p| matches!(p, Packet::PubAck(_))).await;

    let metrics = broker.http_get_body("/metrics");
    assert!(metrics.contains("gated_sink_appended 1"), "{metrics}");
}
