//! Plain TCP connections read through one readiness list per shard instead of one io_uring
//! poll per socket.
//!
//! glommio 0.9 reads a socket with a `recv` and, after every short read, arms an io_uring poll
//! on it. Its rings are set up without `IORING_SETUP_COOP_TASKRUN`, so each poll completion is
//! delivered to the shard thread as task work with an inter-processor interrupt whenever that
//! thread is running. At the rates fleets send (a message now and then on each of thousands of
//! sockets) that is one interrupt per message: measured at 0.75 reschedule IPIs per message
//! routed, and the largest single cost of the broker below saturation.
//!
//! Here each shard keeps an edge-triggered epoll set of its plain TCP connections. The kernel
//! links ready sockets into the set's list without waking anybody; the shard collects the whole
//! list with one `epoll_wait` per executor wake-up ([`poller`]). Connections read and write
//! with plain non-blocking `recv`/`send` ([`stream`]). glommio stays the executor: the shard
//! sleeps in glommio's ring, which is woken through a small bridge described in [`poller`].
//!
//! TLS and WebSocket connections keep glommio's streams; they are not where fleets put their
//! message rate.

mod poller;
mod stream;

pub(crate) use poller::Poller;
pub(crate) use stream::PlainStream;

/// How a shard reads and writes its plain MQTT connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketIo {
    /// One epoll readiness list per shard, bridged into glommio (see the module docs).
    #[default]
    Epoll,
    /// glommio's own `TcpStream`: a `recv` per read and an io_uring poll after a short one.
    Glommio,
}

impl std::str::FromStr for SocketIo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "epoll" => Ok(SocketIo::Epoll),
            "glommio" => Ok(SocketIo::Glommio),
            other => Err(format!("{other:?}: expected epoll or glommio")),
        }
    }
}
