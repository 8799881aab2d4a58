//! The writer half of a connection: drains the outbox in batches, one socket write per batch.

use std::{collections::HashMap, rc::Rc};

use bytes::BytesMut;
use futures_lite::{AsyncWrite, AsyncWriteExt};
use protocol::{encode, encode_publish, ByteStr};

use crate::{metrics::bump, outbox::ConnHandle, outgoing::Outgoing, shard::Shard};

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
/// says so on the outbox. It leaves the socket open: the connection closes it once it has
/// settled the session (see [`super::serve`]), so a client that sees the close knows the broker
/// is done with it.
///
/// It runs inside the connection's own task beside the reader (see [`super::serve`]), sharing
/// the stream with it: no second task and no split stream per connection. It never returns:
/// the connection ends when its reader does.
///
/// One async fn, not split into helpers: each nested future would keep its own copies of the
/// references, for the connection's whole life.
pub async fn run<W: AsyncWrite + Unpin>(mut socket: W, conn: Rc<ConnHandle>, shard: Rc<Shard>) {
    // Boxed and made on first use: most clients allow no aliases, and this future lives as
    // long as the connection.
    let mut aliases: Option<Box<AliasTable>> = None;
    let outbox = &conn.outbox;
    let mut buf = BytesMut::new();
    while let Some(batch) = outbox.take_batch().await {
        let Some(encoding) = outbox.encoding() else {
            // Nothing is queued before CONNECT fixes the encoding; were it, it could not be
            // written.
            tracing::warn!(
                shard = shard.id,
                packets = batch.len(),
                "packets queued before CONNECT; dropped"
            );
            continue;
        };
        for packet in batch {
            let encoded = match packet {
                Outgoing::Publish(publish) => {
                    // Encoded on its own: wrapped in a `Packet` it would be built in 1 KiB.
                    let mut publish = publish.into_publish();
                    if encoding.topic_alias_maximum > 0 {
                        aliases
                            .get_or_insert_with(|| {
                                Box::new(AliasTable {
                                    max: encoding.topic_alias_maximum,
                                    ..AliasTable::default()
                                })
                            })
                            .apply(&mut publish);
                    }
                    encode_publish(&publish, encoding.protocol, &mut buf)
                        .map_err(|e| ("PUBLISH", e))
                }
                other => {
                    let packet = other.into_packet();
                    encode(&packet, encoding.protocol, &mut buf).map_err(|e| (packet.name(), e))
                }
            };
            if let Err((packet, e)) = encoded {
                tracing::warn!(shard = shard.id, packet, error = %e, "cannot encode packet");
            }
        }
        bump(&shard.metrics.bytes_out, buf.len() as u64);
        if socket.write_all(&buf).await.is_err() || socket.flush().await.is_err() {
            // The peer is gone; the reader notices on its side. Drop what is queued.
            outbox.close();
            while outbox.take_batch().await.is_some() {}
            break;
        }
        if outbox.is_empty() {
            // Idle again: hold no buffer while waiting (an idle connection should cost a few
            // hundred bytes); a busy writer keeps it from batch to batch.
            buf = BytesMut::new();
        } else {
            buf.clear();
            if buf.capacity() > 256 * 1024 {
                buf = BytesMut::new();
            }
        }
    }
    outbox.set_writer_finished();
    std::future::pending::<()>().await;
}
