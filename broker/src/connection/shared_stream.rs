//! One stream used by the connection's reader and writer, which run in the same task.
//!
//! Splitting a stream into owned halves (`futures_lite::io::split`) puts it behind an
//! `Arc<Mutex<_>>`, one more allocation for every connection, and needs the halves in separate
//! tasks to make progress independently. Here both halves borrow one `RefCell` that lives in
//! the connection's future: each poll borrows the stream only for the call, and since reader
//! and writer are polled one after the other by one task, the borrows never overlap.

use std::{
    cell::RefCell,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
};

use futures_lite::{AsyncRead, AsyncWrite};

/// A borrowed handle on the connection's stream, for reading or writing.
pub struct SharedStream<'a, S>(pub &'a RefCell<S>);

impl<S> SharedStream<'_, S> {
    fn with<T>(&self, f: impl FnOnce(Pin<&mut S>) -> Poll<io::Result<T>>) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        match self.0.try_borrow_mut() {
            Ok(mut stream) => f(Pin::new(&mut *stream)),
            // Cannot happen while reader and writer share one task; an error, not a panic,
            // if it ever did.
            Err(_) => Poll::Ready(Err(io::Error::other("connection stream already in use"))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedStream<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_read(cx, buf))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedStream<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.with(|s| s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with(|s| s.poll_close(cx))
    }
}

/// Runs `main` with `beside` polled alongside it in the same task, and ends when `main` does
/// (`beside`, which never ends by itself, is dropped then).
///
/// `beside` is polled first at every wake-up, so whatever it did during that wake-up is
/// visible to `main` in the same one: the reader waits for the writer's last flush by checking
/// a flag, with no waker of its own.
pub fn run_beside(
    main: impl Future<Output = ()>,
    beside: impl Future<Output = ()>,
) -> impl Future<Output = ()> {
    // `or` polls its first future first and keeps both inline. (An async fn or block holding
    // them would also keep its arguments or captures beside the running futures: twice the
    // size, for the connection's whole life.)
    futures_lite::future::or(beside, main)
}
