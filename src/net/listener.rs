//! The listening socket of a server, made with the backlog asked for
//! (std's and tokio's `bind` always ask for 128 or 1024): TCP, or a Unix
//! domain socket at a path.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket, Type};

/// A server's listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Arc<UnixSocketFile>),
}

/// The file of a listening Unix domain socket, removed by [`remove`]
/// (a server that stops) or when this is dropped, if the file is still the
/// one it made (as asyncio's `cleanup_socket`): a server leaves no file
/// behind.
///
/// [`remove`]: UnixSocketFile::remove
pub struct UnixSocketFile {
    pub path: PathBuf,
    /// The file's inode and change time once bound: another server's file
    /// at the same path later is left alone.
    made: (u64, i64, i64),
    /// Removed once: the inode may be given to the next file at the path.
    removed: AtomicBool,
}

fn made(metadata: &std::fs::Metadata) -> (u64, i64, i64) {
    (metadata.ino(), metadata.ctime(), metadata.ctime_nsec())
}

impl UnixSocketFile {
    /// Removes the file if it is still this socket's: at once, while the
    /// socket itself may still be closing, so that a client no longer finds
    /// a server that stopped.
    pub fn remove(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| made(&m) == self.made) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Listens on a Unix domain socket at `path`, with a kernel queue of
/// `backlog` connections. A socket file left there by a server that is
/// gone (nothing accepts on it) is replaced, as asyncio and websockets
/// replace it; one that something listens on is AddrInUse.
pub fn bind_unix(path: &Path, backlog: u32) -> io::Result<(UnixListener, Arc<UnixSocketFile>)> {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        match UnixStream::connect(path) {
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "address already in use: another server listens on this socket",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path)?,
            Err(_) => {}
        }
    }
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&SockAddr::unix(path)?)?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    let file = UnixSocketFile {
        path: path.to_path_buf(),
        made: made(&std::fs::metadata(path)?),
        removed: AtomicBool::new(false),
    };
    Ok((socket.into(), Arc::new(file)))
}

/// Listens on the first of `addresses` that can be bound, with a kernel
/// queue of `backlog` connections; the error is the last address's.
/// `reuse_port` sets SO_REUSEPORT: several processes that all set it may
/// listen on one port, and the kernel spreads new connections over them.
pub fn bind(addresses: &[SocketAddr], backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for address in addresses {
        match bind_one(address, backlog, reuse_port) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn bind_one(address: &SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(*address), Type::STREAM, None)?;
    // As std and tokio do on Unix: a restarted server can listen at once on
    // a port whose old connections are still in TIME_WAIT.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if address.is_ipv6() && address.ip().is_unspecified() {
        // "::" takes IPv4 clients too, whatever the system's default.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&(*address).into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listens_with_the_backlog_asked_for() {
        let listener = bind(&["127.0.0.1:0".parse().unwrap()], 700, false).unwrap();
        let port = listener.local_addr().unwrap().port();
        // ss shows a listening socket's backlog as its Send-Q.
        let out = std::process::Command::new("ss")
            .args(["-Hltn", &format!("sport = :{port}")])
            .output()
            .expect("ss, from iproute2");
        let line = String::from_utf8(out.stdout).unwrap();
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[..3], ["LISTEN", "0", "700"], "{line}");
    }

    #[test]
    fn an_address_in_use_is_reported() {
        let first = bind(&["127.0.0.1:0".parse().unwrap()], 16, false).unwrap();
        let taken = first.local_addr().unwrap();
        let error = bind(&[taken], 16, false).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_unix_socket_replaces_a_stale_file_refuses_a_live_one_and_removes_its_own() {
        let dir = std::env::temp_dir().join(format!("wsbind-listener-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        // A file left by a server that is gone: nothing accepts on it.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let first = bind_unix(&path, 16).unwrap();
        let error = bind_unix(&path, 16).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        assert!(!path.exists());
        // A file that is not a socket is not ours to remove.
        std::fs::write(&path, b"data").unwrap();
        assert_eq!(
            bind_unix(&path, 16).err().unwrap().kind(),
            io::ErrorKind::AddrInUse
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_sockets_that_reuse_the_port_listen_on_it_together() {
        let first = bind(&["127.0.0.1:0".parse().unwrap()], 16, true).unwrap();
        let taken = first.local_addr().unwrap();
        let second = bind(&[taken], 16, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), taken);
    }
}
