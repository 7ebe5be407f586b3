//! The listening socket of a server, made with the backlog asked for
//! (std's and tokio's `bind` always ask for 128 or 1024).

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Socket, Type};

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
    fn two_sockets_that_reuse_the_port_listen_on_it_together() {
        let first = bind(&["127.0.0.1:0".parse().unwrap()], 16, true).unwrap();
        let taken = first.local_addr().unwrap();
        let second = bind(&[taken], 16, true).unwrap();
        assert_eq!(second.local_addr().unwrap(), taken);
    }
}
