//! Taking an address over from another server of this process.
//!
//! Re-running the notebook cell that makes a server on a fixed port makes a
//! second server while the first still listens there. Rather than failing
//! with "address in use" (and leaving the old server running, unreachable
//! from the notebook's variables), the new server stops the old one and
//! listens in its place. Only wsbind's own servers of this process are
//! taken over: an address held by anything else is an error, as before.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::RELEASE_TIMEOUT;
use crate::net::listener::{self, Listener};

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Tcp(SocketAddr),
    /// A Unix domain socket's path.
    Unix(PathBuf),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Tcp(address) => address.fmt(f),
            Place::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A listening socket of this process that a later server may take over.
struct Holder {
    /// Where it is bound.
    address: Place,
    /// Asks its owner to stop listening; false if it was stopping already.
    stop: Box<dyn Fn() -> bool + Send + Sync>,
    /// True once the socket is closed.
    released: Mutex<bool>,
    freed: Condvar,
}

/// Every address that this process's servers listen on.
static HOLDERS: Mutex<Vec<Arc<Holder>>> = Mutex::new(Vec::new());

fn holders() -> MutexGuard<'static, Vec<Arc<Holder>>> {
    HOLDERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A server's claim on the address it listens on: held as long as its
/// listening socket, and dropped right after it, which tells a server
/// waiting to take the address over that it is free.
pub struct Lease {
    holder: Arc<Holder>,
}

/// Registers `address` as held by a server that `stop` stops; `stop`
/// returns false if the server was stopping already.
pub fn hold(address: Place, stop: impl Fn() -> bool + Send + Sync + 'static) -> Lease {
    let holder = Arc::new(Holder {
        address,
        stop: Box::new(stop),
        released: Mutex::new(false),
        freed: Condvar::new(),
    });
    holders().push(Arc::clone(&holder));
    Lease { holder }
}

impl Drop for Lease {
    fn drop(&mut self) {
        holders().retain(|h| !Arc::ptr_eq(h, &self.holder));
        *self
            .holder
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.holder.freed.notify_all();
    }
}

/// A listening socket, and the address it took over, if any.
pub struct Bound {
    pub listener: Listener,
    /// The address of the server of this process that was stopped for it
    /// (None too when that server was stopping already: a server that
    /// listens anew on its own port takes nothing from anyone).
    pub took_over: Option<Place>,
}

/// Binds as [`listener::bind`] does; where the address is in use by a
/// server of this process, stops that server, waits (at most
/// [`RELEASE_TIMEOUT`]) for its socket to close and binds again.
/// Blocks the calling thread, never the I/O thread.
pub fn bind(addresses: &[SocketAddr], backlog: u32, reuse_port: bool) -> io::Result<Bound> {
    bind_taking_over(
        || listener::bind(addresses, backlog, reuse_port).map(Listener::Tcp),
        |held| matches!(held, Place::Tcp(held) if addresses.iter().any(|a| overlaps(a, held))),
    )
}

/// Binds a Unix domain socket at `path` as [`listener::bind_unix`] does,
/// taking it over from a server of this process as [`bind`] does.
pub fn bind_unix(path: &Path, backlog: u32) -> io::Result<Bound> {
    bind_taking_over(
        || listener::bind_unix(path, backlog).map(|(socket, file)| Listener::Unix(socket, file)),
        |held| matches!(held, Place::Unix(held) if held == path),
    )
}

fn bind_taking_over(
    bind: impl Fn() -> io::Result<Listener>,
    held_here: impl Fn(&Place) -> bool,
) -> io::Result<Bound> {
    let error = match bind() {
        Ok(listener) => {
            return Ok(Bound {
                listener,
                took_over: None,
            })
        }
        Err(e) => e,
    };
    if error.kind() != io::ErrorKind::AddrInUse {
        return Err(error);
    }
    let holder = holders().iter().find(|h| held_here(&h.address)).cloned();
    let Some(holder) = holder else {
        return Err(error);
    };
    let was_serving = (holder.stop)();
    let deadline = Instant::now() + RELEASE_TIMEOUT;
    let mut released = holder.released.lock().unwrap_or_else(|e| e.into_inner());
    while !*released {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(error);
        }
        released = holder
            .freed
            .wait_timeout(released, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(released);
    Ok(Bound {
        listener: bind()?,
        took_over: was_serving.then(|| holder.address.clone()),
    })
}

/// Whether listening on `wanted` conflicts with a socket bound to `held`:
/// the same port, and the same address or a wildcard on either side.
fn overlaps(wanted: &SocketAddr, held: &SocketAddr) -> bool {
    wanted.port() != 0
        && wanted.port() == held.port()
        && (wanted.ip() == held.ip() || wanted.ip().is_unspecified() || held.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Binds with `bind_again` while a server of this process holds `place`
    /// with `held`, its socket, which it lets go of once told to stop, as
    /// its task does.
    fn bind_over<T: Send>(held: T, place: Place, bind_again: impl FnOnce() -> Bound) -> Bound {
        let stopped = Arc::new(AtomicBool::new(false));
        let lease = Mutex::new(Some(hold(place, {
            let stopped = Arc::clone(&stopped);
            move || !stopped.swap(true, Ordering::SeqCst)
        })));
        let held = Mutex::new(Some(held));
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stopped.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                drop(held.lock().unwrap().take());
                drop(lease.lock().unwrap().take());
            });
            bind_again()
        })
    }

    #[test]
    fn an_address_held_by_a_server_of_this_process_is_taken_over() {
        let first = bind(&["127.0.0.1:0".parse().unwrap()], 16, false).unwrap();
        let Listener::Tcp(first) = first.listener else {
            panic!("a TCP listener")
        };
        let address = first.local_addr().unwrap();
        let second = bind_over(first, Place::Tcp(address), || {
            bind(&[address], 16, false).unwrap()
        });
        assert_eq!(second.took_over, Some(Place::Tcp(address)));
        let Listener::Tcp(second) = second.listener else {
            panic!("a TCP listener")
        };
        assert_eq!(second.local_addr().unwrap(), address);
    }

    #[test]
    fn a_unix_socket_held_by_a_server_of_this_process_is_taken_over() {
        let path =
            std::env::temp_dir().join(format!("wsbind-takeover-{}.sock", std::process::id()));
        let first = bind_unix(&path, 16).unwrap();
        let second = bind_over(first.listener, Place::Unix(path.clone()), || {
            bind_unix(&path, 16).unwrap()
        });
        assert_eq!(second.took_over, Some(Place::Unix(path.clone())));
        assert!(path.exists());
        drop(second);
        assert!(!path.exists());
    }

    #[test]
    fn an_address_held_by_anything_else_is_in_use() {
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = other.local_addr().unwrap();
        let error = bind(&[address], 16, false).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn wildcards_overlap_every_address_of_their_port() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let other: SocketAddr = "127.0.0.1:8081".parse().unwrap();
        assert!(overlaps(&local, &any) && overlaps(&any, &local));
        assert!(!overlaps(&local, &other));
        assert!(!overlaps(&"127.0.0.1:0".parse().unwrap(), &any));
    }
}
