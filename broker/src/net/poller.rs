//! One shard's readiness list: an edge-triggered epoll set, and the bridge that wakes the
//! shard's glommio executor when the set has something.
//!
//! glommio 0.9 has no public way to wait for an arbitrary file descriptor, but it can read a
//! pipe. So the bridge is: a small io_uring of our own holds a poll on the epoll descriptor,
//! linked to a one-byte write into a pipe; the shard's reaper task reads that pipe through
//! glommio. When a socket becomes ready, the kernel completes the poll, writes the byte, and
//! glommio's read of the pipe completes: the shard wakes once, however many sockets became
//! ready meanwhile. The reaper then takes the whole ready list with `epoll_wait(.., 0)`, wakes
//! the connections it names, and arms the bridge again.
//!
//! Sockets are registered edge-triggered: the kernel reports each arrival of data (or of send
//! space after a full buffer) once, and a connection reads until it has seen the queue empty
//! (see [`super::stream`]), so nothing is reported twice and nothing is missed.

use std::{
    cell::{Cell, RefCell},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    rc::Rc,
    task::Waker,
};

use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;

/// Most events taken from the ready list per `epoll_wait`; the reaper loops while it gets this
/// many.
const EVENTS_PER_WAIT: usize = 256;

/// How often the reaper looks at the ready list once the bridge has failed.
const FALLBACK_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// How often connections waiting for send space retry their send regardless of the kernel's
/// report (see [`Poller::rewake_writers`]).
const REWAKE_WRITERS: std::time::Duration = std::time::Duration::from_millis(250);

/// What the reaper knows about one registered socket, shared with its stream.
#[derive(Default)]
pub(crate) struct Readiness {
    /// Data (or end of stream, or an error) may be waiting: the next read should try `recv`.
    pub(crate) readable: Cell<bool>,
    /// The task waiting to read, woken when the socket is reported readable.
    pub(crate) read_waker: Cell<Option<Waker>>,
    /// The task waiting for send space, woken when the socket is reported writable.
    pub(crate) write_waker: Cell<Option<Waker>>,
}

/// A shard's epoll set and its bridge into glommio. One per shard, shared by its connections.
pub(crate) struct Poller {
    epoll: OwnedFd,
    sockets: RefCell<Slab<Rc<Readiness>>>,
    bridge: RefCell<IoUring>,
    /// The pipe the bridge writes a byte into when the epoll set becomes ready.
    pipe_write: OwnedFd,
    pipe_read: glommio::io::BufferedFile,
}

/// The byte the bridge writes: static, so that a write still in flight when a poller is
/// dropped never points at freed memory.
static BRIDGE_BYTE: u8 = 1;

impl Poller {
    /// Creates the epoll set, the bridge ring and the pipe. Fails where io_uring or epoll is
    /// not available (a seccomp profile, an old kernel); the caller falls back to glommio's
    /// own streams.
    pub(crate) async fn new() -> io::Result<Rc<Poller>> {
        // SAFETY: plain syscalls; every returned descriptor is checked and owned at once.
        let epoll = unsafe { owned(libc::epoll_create1(libc::EPOLL_CLOEXEC))? };
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        // Blocking: io_uring answers a read of an O_NONBLOCK pipe with EAGAIN instead of waiting.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are ours.
        let (pipe_read_fd, pipe_write) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // glommio opens files by path only; /proc/self/fd reopens our pipe's read end.
        let path = format!("/proc/self/fd/{}", pipe_read_fd.as_raw_fd());
        let pipe_read = glommio::io::BufferedFile::open(&path)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        drop(pipe_read_fd);
        let bridge = IoUring::builder().build(4)?;
        Ok(Rc::new(Poller {
            epoll,
            sockets: RefCell::new(Slab::new()),
            bridge: RefCell::new(bridge),
            pipe_write,
            pipe_read,
        }))
    }

    /// Adds a socket to the set; its readiness starts as "readable" so the first read tries.
    pub(crate) fn register(&self, fd: RawFd) -> io::Result<(usize, Rc<Readiness>)> {
        let readiness = Rc::new(Readiness {
            readable: Cell::new(true),
            ..Readiness::default()
        });
        let mut sockets = self.sockets.borrow_mut();
        let entry = sockets.vacant_entry();
        let token = entry.key();
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: both descriptors are open; `event` is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
        entry.insert(readiness.clone());
        Ok((token, readiness))
    }

    /// Removes a socket from the set, before its descriptor is closed. No event for it comes
    /// out of a later `epoll_wait`, so its token can be reused at once.
    pub(crate) fn deregister(&self, fd: RawFd, token: usize) {
        // SAFETY: removing a descriptor that is still open; an error (already gone) is harmless.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
        }
        self.sockets.borrow_mut().try_remove(token);
    }

    /// Registered sockets, for tests.
    #[cfg(test)]
    pub(crate) fn registered(&self) -> usize {
        self.sockets.borrow().len()
    }

    /// The shard's reaper: waits for the set to become ready and wakes the connections it
    /// names, for the shard's life. Should the bridge fail, it logs that and looks at the
    /// ready list every [`FALLBACK_POLL`] instead: slower to notice, but nothing is lost.
    pub(crate) async fn run(self: Rc<Self>, id: usize) {
        let writers = Rc::downgrade(&self);
        glommio::spawn_local(async move {
            loop {
                glommio::timer::sleep(REWAKE_WRITERS).await;
                let Some(poller) = writers.upgrade() else {
                    break;
                };
                poller.rewake_writers();
            }
        })
        .detach();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT];
        let failure = loop {
            if let Err(e) = self.arm_bridge() {
                break e;
            }
            if let Err(e) = self.pipe_read.read_at(0, 64).await {
                break io::Error::other(e.to_string());
            }
            self.reap_bridge();
            self.dispatch(&mut events);
        };
        tracing::error!(shard = id, error = %failure, poll = ?FALLBACK_POLL, "socket readiness bridge failed; polling the readiness list instead");
        loop {
            glommio::timer::sleep(FALLBACK_POLL).await;
            self.dispatch(&mut events);
        }
    }

    /// Wakes every connection waiting for send space, so it tries its send again. The kernel
    /// reports send space once after a full buffer; should that report ever be missed, the
    /// writer would otherwise wait for the client's next packet (its keepalive, up to a
    /// minute). Once in one of about fifteen flat-out runs a subscriber's deliveries did wait
    /// that long (and resumed with its PINGREQ), cause not found; this bounds any such wait to
    /// [`REWAKE_WRITERS`], for the cost of one `send` per blocked writer per period.
    fn rewake_writers(&self) {
        for (_, readiness) in self.sockets.borrow().iter() {
            wake(&readiness.write_waker);
        }
    }

    /// Queues the bridge: a one-shot poll on the epoll descriptor, linked to the write of one
    /// byte into the pipe, and submits it. If the set is ready already, both complete at once.
    fn arm_bridge(&self) -> io::Result<()> {
        let poll = opcode::PollAdd::new(types::Fd(self.epoll.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(1);
        let write = opcode::Write::new(types::Fd(self.pipe_write.as_raw_fd()), &BRIDGE_BYTE, 1)
            .offset(u64::MAX)
            .build()
            .user_data(2);
        let mut ring = self.bridge.borrow_mut();
        // SAFETY: the write's buffer is a static; the descriptors outlive the ring (fields drop
        // in order, the ring first).
        unsafe {
            let mut queue = ring.submission();
            queue
                .push(&poll)
                .and_then(|_| queue.push(&write))
                .map_err(|_| io::Error::other("bridge submission queue full"))?;
        }
        ring.submit()?;
        Ok(())
    }

    /// Drops the bridge's completions (both succeed or report an error the next round sees).
    fn reap_bridge(&self) {
        let mut ring = self.bridge.borrow_mut();
        for cqe in ring.completion() {
            if cqe.result() < 0 && cqe.user_data() == 2 {
                tracing::debug!(error = cqe.result(), "readiness bridge write failed");
            }
        }
    }

    /// Takes the ready list and wakes whoever waits on those sockets.
    fn dispatch(&self, events: &mut [libc::epoll_event]) {
        loop {
            // SAFETY: `events` has room for `len` entries.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    events.as_mut_ptr(),
                    events.len() as i32,
                    0,
                )
            };
            if n <= 0 {
                return;
            }
            let sockets = self.sockets.borrow();
            for event in &events[..n as usize] {
                let Some(readiness) = sockets.get(event.u64 as usize) else {
                    continue;
                };
                let flags = event.events as i32;
                let broken = flags & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
                if broken || flags & (libc::EPOLLIN | libc::EPOLLRDHUP) != 0 {
                    readiness.readable.set(true);
                    wake(&readiness.read_waker);
                }
                if broken || flags & libc::EPOLLOUT != 0 {
                    wake(&readiness.write_waker);
                }
            }
            if (n as usize) < events.len() {
                return;
            }
        }
    }
}

fn wake(waker: &Cell<Option<Waker>>) {
    if let Some(w) = waker.take() {
        w.wake();
    }
}

/// Takes ownership of a descriptor a syscall returned, or its error.
///
/// # Safety
/// `fd` must be the fresh result of a syscall that returns a new descriptor.
unsafe fn owned(fd: RawFd) -> io::Result<OwnedFd> {
    if fd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
