//! The readiness of the sockets a Python thread reads itself (see
//! `conn/receiver.rs`), and of its queue's wake-up pipe: one
//! level-triggered epoll set per [`Queue`](super::Queue).
//!
//! Level-triggered, so that a socket left unread (its thread had enough
//! for one batch) is reported again, and so that the set's own descriptor
//! stays readable for an asyncio loop's `add_reader` while anything is ready.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Sockets reported by one [`Poller::wait`] at most; the rest come next time.
pub const MAX_READY: usize = 256;

/// A key [`Poller::wait`] reports, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    pub key: u64,
    pub read: bool,
    pub write: bool,
}

pub struct Poller {
    epoll: OwnedFd,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        // SAFETY: a plain system call; the descriptor it returns is ours.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epoll })
    }

    /// Reports `fd` as `key` while it is readable (or at its end).
    pub fn add(&self, fd: RawFd, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, key, false)
    }

    /// Reports `fd`, added before, also while it is `writable` or not.
    pub fn set_writable(&self, fd: RawFd, key: u64, writable: bool) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, key, writable)
    }

    fn control(&self, op: i32, fd: RawFd, key: u64, writable: bool) -> io::Result<()> {
        let out = if writable { libc::EPOLLOUT } else { 0 };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP | out) as u32,
            u64: key,
        };
        // SAFETY: `event` outlives the call; a bad `fd` is an error, not UB.
        let done = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) };
        if done < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops reporting `fd`; one that is not in the set is no error.
    pub fn remove(&self, fd: RawFd) {
        let mut unused = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`.
        unsafe {
            libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut unused);
        }
    }

    /// Fills `ready` with what is ready, waiting up to `timeout_ms` (0: not
    /// at all) for something to be.
    pub fn wait(&self, ready: &mut Vec<Ready>, timeout_ms: i32) {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; MAX_READY];
        // SAFETY: the kernel writes at most MAX_READY events into `events`.
        let count = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr(),
                MAX_READY as i32,
                timeout_ms,
            )
        };
        ready.clear();
        // A negative count is EINTR: nothing is ready yet.
        let count = usize::try_from(count).unwrap_or(0);
        let out = libc::EPOLLOUT as u32;
        ready.extend(events[..count].iter().map(|e| Ready {
            key: e.u64,
            // Errors and the end count as readable: reading finds them.
            read: e.events & !out != 0,
            write: e.events & out != 0,
        }));
    }

    /// Whether anything is ready now; what is ready stays so.
    pub fn any_ready(&self) -> bool {
        let mut event = [libc::epoll_event { events: 0, u64: 0 }; 1];
        // SAFETY: the kernel writes at most one event.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), event.as_mut_ptr(), 1, 0) > 0 }
    }
}

impl AsRawFd for Poller {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn reports_what_is_readable_until_it_is_read() {
        let poller = Poller::new().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        poller.add(b.as_raw_fd(), 7).unwrap();
        let mut ready = Vec::new();
        poller.wait(&mut ready, 0);
        assert!(ready.is_empty());
        a.write_all(b"x").unwrap();
        poller.wait(&mut ready, 1000);
        let readable = Ready {
            key: 7,
            read: true,
            write: false,
        };
        assert_eq!(ready, [readable]);
        assert!(poller.any_ready(), "level-triggered: still ready");
        b.read_exact(&mut [0]).unwrap();
        assert!(!poller.any_ready());
        poller.set_writable(b.as_raw_fd(), 7, true).unwrap();
        poller.wait(&mut ready, 1000);
        let writable = Ready {
            key: 7,
            read: false,
            write: true,
        };
        assert_eq!(ready, [writable], "writable, nothing to read");
        poller.set_writable(b.as_raw_fd(), 7, false).unwrap();
        assert!(!poller.any_ready());
        poller.remove(b.as_raw_fd());
        a.write_all(b"y").unwrap();
        assert!(!poller.any_ready(), "removed");
        poller.remove(b.as_raw_fd());
    }
}
