//! The writer half of a connection: drains the outbox in batches, one socket write per batch.

use std::{collections::HashMap, rc::Rc};

use bytes::BytesMut;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use protocol::{encode, ByteStr, Packet, Protocol};

use crate::{metrics::bump, outbox::ConnHandle, shard::Shard};

/// Assigns outbound topic aliases for a 5.0 client that allows them (Topic Alias Maximum > 0):
/// the first message on a topic carries topic and alias, later ones the alias alone.
#[derive(Debug, Default)]
struct AliasTable {
    max: u16,
    by_topic: HashMap<ByteStr, u16>,
}

impl AliasTable {
    fn apply(&mut self, publish: &mut protocol::Publish) {
        if self.max == 0 {
            return;
        }
        if let Some(&alias) = self.by_topic.get(&publish.topic) {
            publish.properties.topic_alias = Some(alias);
            publish.topic = ByteStr::default();
        } else if self.by_topic.len() < usize::from(self.max) {
            let alias = self.by_topic.len() as u16 + 1;
            self.by_topic.insert(publish.topic.clone(), alias);
            publish.properties.topic_alias = Some(alias);
        }
    }
}

/// Writes everything pushed to the connection's outbox until it is closed and drained, then
/// closes the socket.
pub async fn run<W: AsyncWrite + Unpin>(
    mut socket: W,
    conn: Rc<ConnHandle>,
    protocol: Protocol,
    topic_alias_maximum: u16,
    shard: Rc<Shard>,
) {
    let mut aliases = AliasTable {
        max: topic_alias_maximum,
        ..AliasTable::default()
    };
    let outbox = &conn.outbox;
    let mut batch = Vec::new();
    let mut buf = BytesMut::new();
    while outbox.drain_into(&mut batch).await {
        for mut packet in batch.drain(..) {
            if let Packet::Publish(publish) = &mut packet {
                aliases.apply(publish);
            }
            if let Err(e) = encode(&packet, protocol, &mut buf) {
                tracing::warn!(shard = shard.id, packet = packet.name(), error = %e, "cannot encode packet");
            }
        }
        bump(&shard.metrics.bytes_out, buf.len() as u64);
        if socket.write_all(&buf).await.is_err() || socket.flush().await.is_err() {
            // The peer is gone; the reader notices on its side. Keep draining so nothing waits.
            outbox.close();
            while outbox.drain_into(&mut batch).await {
                batch.clear();
            }
            return;
        }
        if outbox.is_empty() {
            // Idle again: hold no buffers while waiting (an idle connection should cost a few
            // hundred bytes); a busy writer keeps them from batch to batch.
            buf = BytesMut::new();
            batch = Vec::new();
        } else {
            buf.clear();
            if buf.capacity() > 256 * 1024 {
                buf = BytesMut::new();
            }
        }
    }
    let _ = socket.close().await;
}
