//! Reaching a WebSocket server through a proxy: an HTTP CONNECT tunnel or
//! SOCKS5 (with the proxy resolving names for socks5h), for ws:// and wss://
//! alike, and the environment variables that pick a proxy as curl reads them.

use std::future::Future;
use std::net::IpAddr;

use data_encoding::BASE64;
use percent_encoding::percent_decode_str;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use url::Url;

use super::head::read_head;
use crate::config::MAX_HANDSHAKE_SIZE;
use crate::protocol::handshake::EARLY_END;

/// A proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: Kind,
    pub host: String,
    pub port: u16,
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// HTTP CONNECT.
    Http,
    /// SOCKS5; `remote_dns` (socks5h) lets the proxy resolve the host name.
    Socks5 { remote_dns: bool },
}

impl Proxy {
    /// Parses `http://[user:pass@]host:port`, `socks5://…` or `socks5h://…`;
    /// a bare `host:port` is an HTTP proxy, as curl reads it.
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url =
            Url::parse(&with_scheme).map_err(|e| format!("invalid proxy URL {text:?}: {e}"))?;
        let (kind, default_port) = match url.scheme() {
            "http" => (Kind::Http, 80),
            "socks5" => (Kind::Socks5 { remote_dns: false }, 1080),
            "socks5h" => (Kind::Socks5 { remote_dns: true }, 1080),
            other => {
                return Err(format!(
                    "unsupported proxy scheme {other:?} in {text:?}: use http://, socks5:// or socks5h://"
                ))
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("invalid proxy URL {text:?}: no host"))?;
        let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        Ok(Proxy {
            kind,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: url.port().unwrap_or(default_port),
            credentials,
        })
    }
}

/// The proxy the environment gives for `url`, as curl picks it: `https_proxy`
/// for wss://, `http_proxy` for ws://, then `all_proxy` (lower case first,
/// then upper case; `http_proxy` in lower case only, as curl reads it, since
/// a CGI program's environment holds a client's `Proxy` header as
/// `HTTP_PROXY`), unless `no_proxy` covers the host.
pub fn from_environment(url: &Url) -> Option<String> {
    let var = |name: &str| {
        std::env::var(name)
            .or_else(|e| match name {
                "http_proxy" => Err(e),
                _ => std::env::var(name.to_uppercase()),
            })
            .ok()
            .filter(|v| !v.trim().is_empty())
    };
    let host = url
        .host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']');
    if var("no_proxy").is_some_and(|list| bypasses(&list, host)) {
        return None;
    }
    let scheme = if url.scheme() == "wss" {
        "https_proxy"
    } else {
        "http_proxy"
    };
    var(scheme).or_else(|| var("all_proxy"))
}

/// Whether a `no_proxy` list covers `host`: `*`, the host itself, a domain it
/// is in (`example.com` and `.example.com` both cover `a.example.com`), an
/// IP address, or a CIDR range holding it.
pub fn bypasses(list: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            if let (Some(ip), Some((network, bits))) = (ip, entry.split_once('/')) {
                return in_cidr(ip, network, bits);
            }
            // "host:port" entries: the port does not matter here.
            let name = match entry.rsplit_once(':') {
                Some((name, port))
                    if port.chars().all(|c| c.is_ascii_digit()) && !name.contains(':') =>
                {
                    name
                }
                _ => entry.as_str(),
            };
            let name = name.trim_start_matches('.');
            host == name || host.ends_with(&format!(".{name}"))
        })
}

fn in_cidr(ip: IpAddr, network: &str, bits: &str) -> bool {
    let (Ok(network), Ok(bits)) = (network.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    let prefix = |bytes: &[u8], bits: u32| -> Vec<u8> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let keep = bits.saturating_sub(i as u32 * 8).min(8);
                if keep == 0 {
                    0
                } else {
                    b & (0xFFu8 << (8 - keep))
                }
            })
            .collect()
    };
    match (ip, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            prefix(&a.octets(), bits) == prefix(&n.octets(), bits)
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            prefix(&a.octets(), bits) == prefix(&n.octets(), bits)
        }
        _ => false,
    }
}

/// A user name and password.
pub type Credentials = (String, String);

/// Opens a TCP connection to `host`:`port` through `proxy`. When an HTTP
/// proxy refuses the credentials (or their absence), `ask`, if given, is
/// asked once for others, with the proxy as `host:port`.
pub async fn connect<F, A>(
    proxy: &Proxy,
    host: &str,
    port: u16,
    mut ask: Option<F>,
) -> Result<TcpStream, String>
where
    F: FnOnce(String) -> A,
    A: Future<Output = Option<Credentials>>,
{
    match proxy.kind {
        Kind::Http => {
            let mut credentials = proxy.credentials.clone();
            loop {
                match http_connect(proxy, host, port, credentials.as_ref()).await? {
                    Ok(stream) => return Ok(stream),
                    // Ask Python once; proxies usually close after a 407, so retry afresh.
                    // Some proxies (tinyproxy) answer wrong credentials with 401.
                    Err(status)
                        if (status.starts_with("407") || status.starts_with("401"))
                            && ask.is_some() =>
                    {
                        let ask = ask.take().expect("checked in the guard");
                        let subject = format!("{}:{}", proxy.host, proxy.port);
                        credentials = Some(ask(subject).await.ok_or_else(|| refused(&status))?);
                    }
                    Err(status) => return Err(refused(&status)),
                }
            }
        }
        Kind::Socks5 { remote_dns } => socks5(proxy, host, port, remote_dns).await,
    }
}

fn refused(status: &str) -> String {
    format!("proxy refused the tunnel: HTTP {status}")
}

async fn reach(proxy: &Proxy) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| format!("cannot connect to proxy {}:{}: {e}", proxy.host, proxy.port))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// One CONNECT attempt: the tunnel, or the proxy's status line when it refuses.
async fn http_connect(
    proxy: &Proxy,
    host: &str,
    port: u16,
    credentials: Option<&(String, String)>,
) -> Result<Result<TcpStream, String>, String> {
    let mut tcp = reach(proxy).await?;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = credentials {
        let token = BASE64.encode(format!("{user}:{password}").as_bytes());
        request += &format!("Proxy-Authorization: Basic {token}\r\n");
    }
    request += "\r\n";
    let lost = |e: std::io::Error| {
        format!(
            "proxy {}:{} closed the connection: {e}",
            proxy.host, proxy.port
        )
    };
    tcp.write_all(request.as_bytes()).await.map_err(lost)?;
    let (head, _) = read_head(&mut tcp, MAX_HANDSHAKE_SIZE)
        .await
        .map_err(lost)?
        .ok_or_else(|| "proxy answered with an oversized head".to_string())?;
    Ok(connect_reply(&head)?.map(|()| tcp))
}

/// What an HTTP proxy's answer to CONNECT says, from its head: Ok(()) for
/// a tunnel, Ok(Err(status line)) when it refuses, Err when it is not HTTP.
pub fn connect_reply(head: &[u8]) -> Result<Result<(), String>, String> {
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(head) {
        Ok(httparse::Status::Complete(end)) if end == head.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err(format!("proxy answered with invalid HTTP: {EARLY_END}"))
        }
        Ok(httparse::Status::Partial) => {
            return Err("proxy answered with invalid HTTP: an incomplete head".into())
        }
        Err(e) => return Err(format!("proxy answered with invalid HTTP: {e}")),
    }
    match response.code {
        Some(200..=299) => Ok(Ok(())),
        code => {
            let status = format!(
                "{} {}",
                code.unwrap_or_default(),
                response.reason.unwrap_or_default()
            );
            Ok(Err(status.trim_end().to_string()))
        }
    }
}

/// SOCKS5 (RFC 1928), with username and password (RFC 1929) when given.
async fn socks5(
    proxy: &Proxy,
    host: &str,
    port: u16,
    remote_dns: bool,
) -> Result<TcpStream, String> {
    let mut tcp = reach(proxy).await?;
    let io = |e: std::io::Error| format!("SOCKS5 proxy {}:{} failed: {e}", proxy.host, proxy.port);
    let methods: &[u8] = if proxy.credentials.is_some() {
        &[0x00, 0x02]
    } else {
        &[0x00]
    };
    let mut greeting = vec![5, methods.len() as u8];
    greeting.extend_from_slice(methods);
    tcp.write_all(&greeting).await.map_err(io)?;
    let mut choice = [0u8; 2];
    tcp.read_exact(&mut choice).await.map_err(io)?;
    if socks5_method(choice, proxy.credentials.is_some())? {
        let (user, password) = proxy.credentials.as_ref().expect("asked for them");
        let mut auth = vec![1, user.len().min(255) as u8];
        auth.extend_from_slice(&user.as_bytes()[..user.len().min(255)]);
        auth.push(password.len().min(255) as u8);
        auth.extend_from_slice(&password.as_bytes()[..password.len().min(255)]);
        tcp.write_all(&auth).await.map_err(io)?;
        let mut status = [0u8; 2];
        tcp.read_exact(&mut status).await.map_err(io)?;
        socks5_auth(status)?;
    }
    let mut request = vec![5, 1, 0];
    let literal: Option<IpAddr> = host.parse().ok();
    let address = match literal {
        Some(ip) => Some(ip),
        None if remote_dns => None,
        None => {
            // socks5: we resolve the name, the proxy sees an address.
            let mut found = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?;
            Some(
                found
                    .next()
                    .ok_or_else(|| format!("cannot resolve {host}"))?
                    .ip(),
            )
        }
    };
    match address {
        Some(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        None => {
            let name = &host.as_bytes()[..host.len().min(255)];
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    tcp.write_all(&request).await.map_err(io)?;
    // Read exactly the reply: what follows it is the server's.
    let target = format!("{host}:{port}");
    let mut reply = Vec::with_capacity(SOCKS5_MAX_REPLY);
    while let Socks5Reply::More(count) = socks5_reply(&reply, &target)? {
        let start = reply.len();
        reply.resize(start + count, 0);
        tcp.read_exact(&mut reply[start..]).await.map_err(io)?;
    }
    Ok(tcp)
}

/// What the SOCKS5 proxy's choice of method (RFC 1928 §3) asks of us:
/// true to send our user name and password (RFC 1929), false for nothing.
pub fn socks5_method(choice: [u8; 2], have_credentials: bool) -> Result<bool, String> {
    match choice {
        [5, 0x00] => Ok(false),
        [5, 0x02] if have_credentials => Ok(true),
        [5, 0xFF] => Err("SOCKS5 proxy accepts none of our authentication methods".into()),
        _ => Err("SOCKS5 proxy answered with an unexpected method".into()),
    }
}

/// The SOCKS5 proxy's answer to our user name and password (RFC 1929 §2).
pub fn socks5_auth(status: [u8; 2]) -> Result<(), String> {
    match status[1] {
        0 => Ok(()),
        _ => Err("SOCKS5 proxy refused the user name or password".into()),
    }
}

/// The longest SOCKS5 reply: 4 bytes, a name of 255 bytes and its length, a port.
pub const SOCKS5_MAX_REPLY: usize = 4 + 1 + 255 + 2;

/// How much of the SOCKS5 proxy's reply to CONNECT has arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socks5Reply {
    /// This many more bytes are needed, and no more than the reply holds:
    /// they can be read exactly, leaving what follows it unread.
    More(usize),
    /// The reply is the first this many bytes: the tunnel is open.
    Whole(usize),
}

/// Reads the SOCKS5 proxy's reply to CONNECT (RFC 1928 §6) from the bytes
/// that arrived of it; `target` (host:port) is for the message when the
/// proxy could not reach it.
pub fn socks5_reply(reply: &[u8], target: &str) -> Result<Socks5Reply, String> {
    if reply.len() < 4 {
        return Ok(Socks5Reply::More(4 - reply.len()));
    }
    if reply[1] != 0 {
        let why = match reply[1] {
            1 => "general failure",
            2 => "connection not allowed by ruleset",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(format!("SOCKS5 proxy could not reach {target}: {why}"));
    }
    // Then the bound address, which we do not need, and its port.
    let total = match reply[3] {
        1 => 4 + 4 + 2,
        4 => 4 + 16 + 2,
        3 if reply.len() < 5 => return Ok(Socks5Reply::More(1)),
        3 => 4 + 1 + usize::from(reply[4]) + 2,
        _ => return Err("SOCKS5 proxy answered with an unknown address type".into()),
    };
    Ok(match total.checked_sub(reply.len()) {
        Some(count) if count > 0 => Socks5Reply::More(count),
        _ => Socks5Reply::Whole(total),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy.example:3128").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (Kind::Http, "proxy.example", 3128)
        );
        assert_eq!(p.credentials, Some(("us@er".into(), "p:ss".into())));
        assert_eq!(
            Proxy::parse("socks5h://h").unwrap().kind,
            Kind::Socks5 { remote_dns: true }
        );
        assert_eq!(Proxy::parse("h:8080").unwrap().port, 8080);
        assert!(Proxy::parse("ftp://h").is_err());
    }

    #[test]
    fn a_socks5_reply_is_read_exactly_to_its_end() {
        let reply = [
            5, 0, 0, 3, 4, b'h', b'o', b's', b't', 0, 80, b'n', b'e', b'x', b't',
        ];
        let mut read = Vec::new();
        let mut asked = Vec::new();
        while let Ok(Socks5Reply::More(count)) = socks5_reply(&read, "h:1") {
            asked.push(count);
            read.extend_from_slice(&reply[read.len()..read.len() + count]);
        }
        assert_eq!(asked, [4, 1, 6], "the header, the name's length, the rest");
        assert_eq!(socks5_reply(&reply, "h:1"), Ok(Socks5Reply::Whole(11)));
        assert_eq!(
            socks5_reply(&[5, 0, 0, 1, 127, 0], "h:1"),
            Ok(Socks5Reply::More(4))
        );
        let refused = socks5_reply(&[5, 5, 0, 1], "h:1").unwrap_err();
        assert_eq!(
            refused,
            "SOCKS5 proxy could not reach h:1: connection refused"
        );
        assert!(socks5_reply(&[5, 0, 0, 9], "h:1").is_err());
        assert_eq!(socks5_method([5, 2], true), Ok(true));
        assert!(socks5_method([5, 2], false).is_err());
        assert!(socks5_auth([1, 1]).is_err());
    }

    #[test]
    fn a_connect_reply_opens_the_tunnel_only_for_2xx() {
        assert_eq!(
            connect_reply(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(Ok(()))
        );
        assert_eq!(
            connect_reply(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n"),
            Ok(Err("407 Proxy Authentication Required".into()))
        );
        assert!(connect_reply(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        // An empty line of a bare LF ends httparse's head early.
        assert!(connect_reply(b"HTTP/1.1 200 OK\n\nX: y\r\n\r\n").is_err());
    }

    #[test]
    fn no_proxy_rules() {
        let list = "localhost, .internal.example, example.org, 10.0.0.0/8, ::1, 192.168.1.5:8080";
        for host in [
            "localhost",
            "a.internal.example",
            "example.org",
            "x.example.org",
            "10.2.3.4",
            "::1",
            "192.168.1.5",
        ] {
            assert!(bypasses(list, host), "{host}");
        }
        for host in ["example.com", "notexample.org", "11.0.0.1", "192.168.1.6"] {
            assert!(!bypasses(list, host), "{host}");
        }
        assert!(bypasses("*", "anything"));
        assert!(bypasses("fd00::/8", "fd12::1"));
        assert!(!bypasses("", "x"));
    }
}
