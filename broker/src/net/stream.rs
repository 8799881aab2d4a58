//! A plain TCP connection read and written with non-blocking syscalls, woken by its shard's
//! [`Poller`].

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
};

use futures_lite::{AsyncRead, AsyncWrite};

use super::poller::{Poller, Readiness};

/// A connected TCP socket registered with its shard's readiness list.
pub(crate) struct PlainStream {
    socket: OwnedFd,
    token: usize,
    readiness: Rc<Readiness>,
    poller: Rc<Poller>,
}

impl PlainStream {
    /// Takes over the socket of an accepted glommio stream (glommio's stream cannot give its
    /// descriptor up, so it is duplicated and the original closed with the stream).
    pub(crate) fn adopt(
        poller: &Rc<Poller>,
        stream: glommio::net::TcpStream,
    ) -> io::Result<PlainStream> {
        // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one we own, or -1.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is the fresh duplicate.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        drop(stream);
        let (token, readiness) = poller.register(socket.as_raw_fd())?;
        Ok(PlainStream {
            socket,
            token,
            readiness,
            poller: poller.clone(),
        })
    }
}

impl Drop for PlainStream {
    fn drop(&mut self) {
        self.poller.deregister(self.socket.as_raw_fd(), self.token);
    }
}

impl AsyncRead for PlainStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let readiness = &self.readiness;
        if readiness.readable.get() {
            // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
            let read = nonblocking(|| unsafe {
                libc::recv(
                    self.socket.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            });
            match read {
                Ok(Some(n)) => {
                    // A short read emptied the receive queue: whatever arrives next raises a
                    // new edge, so there is no need to ask again (and see EAGAIN) until it
                    // does. End of stream (0) stays readable: every later read sees it again.
                    if n > 0 && n < buf.len() {
                        readiness.readable.set(false);
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(None) => readiness.readable.set(false),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        readiness.read_waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl AsyncWrite for PlainStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // SAFETY: `buf` is valid for `buf.len()` bytes for the duration of the call.
        let written = nonblocking(|| unsafe {
            libc::send(
                self.socket.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        });
        match written {
            Ok(Some(n)) => Poll::Ready(Ok(n)),
            // The full buffer marks the socket: the kernel reports send space as a new edge
            // once the peer has taken some.
            Ok(None) => {
                self.readiness.write_waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // SAFETY: shutting down the write side of our own socket.
        if unsafe { libc::shutdown(self.socket.as_raw_fd(), libc::SHUT_WR) } < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ENOTCONN) {
                return Poll::Ready(Err(err));
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Runs a non-blocking socket call (`MSG_DONTWAIT`, so the descriptor's own flags do not
/// matter) until a signal does not interrupt it: the byte count, or `None` for "would block".
fn nonblocking(mut call: impl FnMut() -> isize) -> io::Result<Option<usize>> {
    loop {
        let n = call();
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use glommio::{net::TcpListener, LocalExecutorBuilder};

    /// Data both ways, a read that waits for data sent later, a large write that fills the
    /// socket buffer and finishes once the peer reads, end of stream, and deregistration.
    #[test]
    fn reads_and_writes_through_the_readiness_list() {
        LocalExecutorBuilder::default()
            .spawn(|| async move {
                let poller = Poller::new().await.expect("poller");
                glommio::spawn_local(poller.clone().run(0)).detach();
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
                let addr = listener.local_addr().expect("addr");
                let peer = glommio::spawn_local(async move {
                    let mut client = glommio::net::TcpStream::connect(addr)
                        .await
                        .expect("connect");
                    client.write_all(b"hello").await.expect("write");
                    let mut got = [0u8; 5];
                    client.read_exact(&mut got).await.expect("read");
                    assert_eq!(&got, b"world");
                    glommio::timer::sleep(std::time::Duration::from_millis(50)).await;
                    client.write_all(b"later").await.expect("write");
                    // Take the large write, slowly enough that the server's buffer fills.
                    let mut total = 0;
                    let mut chunk = vec![0u8; 64 * 1024];
                    while total < 8 * 1024 * 1024 {
                        let n = client.read(&mut chunk).await.expect("read");
                        assert!(n > 0, "stream ended after {total} bytes");
                        total += n;
                    }
                    drop(client);
                });
                let accepted = listener.accept().await.expect("accept");
                let mut server = PlainStream::adopt(&poller, accepted).expect("adopt");
                assert_eq!(poller.registered(), 1);
                let mut got = [0u8; 5];
                server.read_exact(&mut got).await.expect("read");
                assert_eq!(&got, b"hello");
                server.write_all(b"world").await.expect("write");
                let mut later = [0u8; 5];
                server.read_exact(&mut later).await.expect("read later");
                assert_eq!(&later, b"later");
                server
                    .write_all(&vec![7u8; 8 * 1024 * 1024])
                    .await
                    .expect("large write");
                peer.await;
                let mut rest = [0u8; 16];
                assert_eq!(server.read(&mut rest).await.expect("eof"), 0);
                drop(server);
                assert_eq!(poller.registered(), 0);
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
