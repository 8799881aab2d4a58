//! The listening sockets: one per shard on each address, bound with SO_REUSEPORT before any
//! shard runs (so port 0 is resolved once, for all of them), and handed to each shard's
//! executor as a glommio listener.

use std::{
    net::SocketAddr,
    os::fd::{FromRawFd, IntoRawFd},
    sync::Mutex,
};

use glommio::net::TcpListener;
use socket2::{Domain, Socket, Type};

use crate::error::BrokerError;

/// Binds a listening socket with SO_REUSEPORT, so every shard can bind the same port and the
/// kernel spreads incoming connections among them.
fn bind_reuseport(addr: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket)
}

/// Fails with `AddrInUse` when something already listens on `addr`. SO_REUSEPORT would let
/// the shards bind it anyway and share it with that process (another broker started on the
/// same port, say), which would then get some of this broker's clients. A plain bind (with
/// SO_REUSEADDR only, so connections in TIME_WAIT from a previous run do not count) fails on
/// a listened port.
fn refuse_if_listened_on(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())
}

/// One listening socket per shard on the same address; returns them and the bound address
/// (port 0 resolved).
pub(crate) fn bind_all(
    addr: SocketAddr,
    shards: usize,
) -> Result<(Vec<Option<Socket>>, SocketAddr), BrokerError> {
    let bind_err = |source| BrokerError::Bind { addr, source };
    refuse_if_listened_on(addr).map_err(bind_err)?;
    let first = bind_reuseport(addr).map_err(bind_err)?;
    let bound = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| bind_err(std::io::Error::other("no local address")))?;
    let mut sockets = vec![Some(first)];
    for _ in 1..shards {
        sockets.push(Some(bind_reuseport(bound).map_err(bind_err)?));
    }
    Ok((sockets, bound))
}

/// Takes this shard's socket out of a per-shard table.
pub(crate) fn take_listener(
    table: &Mutex<Vec<Option<Socket>>>,
    id: usize,
) -> Result<TcpListener, BrokerError> {
    let socket = table
        .lock()
        .map_err(|_| BrokerError::Shard("listener table poisoned".into()))?
        .get_mut(id)
        .and_then(Option::take)
        .ok_or_else(|| BrokerError::Shard(format!("no listener for shard {id}")))?;
    // SAFETY: the descriptor is a listening TCP socket we own; ownership passes to the listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}
