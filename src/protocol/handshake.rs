//! The opening handshake (RFC 6455 §4): the HTTP/1.1 Upgrade request and its
//! response, written and checked without I/O, for both roles.

use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;
use url::Url;

use super::deflate::{self, DeflateConfig, Negotiated};
use super::subprotocol;

/// Checks that `value` can go into an HTTP header as it is: tab, space and
/// visible ASCII (RFC 9110 §5.5, without the obsolete non-ASCII octets,
/// which peers read differently). Python's `wsbind.checks` applies the
/// same rule to every header value a user sets (tests/test_checks.py keeps
/// the two in step).
pub fn check_header_value(value: &str) -> Result<(), String> {
    match value
        .chars()
        .find(|&c| !(c == '\t' || (' '..='~').contains(&c)))
    {
        None => Ok(()),
        Some(c) => Err(format!(
            "{value:?} cannot be sent in an HTTP header: {c:?} is not tab, space or visible ASCII"
        )),
    }
}

/// Most headers a request or response may have.
pub(super) const MAX_HEADERS: usize = 64;

/// Where the head of an HTTP message ends (after its blank line), if it is all there.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Why a head that httparse ends before its CRLF CRLF is refused: an empty
/// line of a bare LF. The head is read up to [`head_end`], so what followed
/// that line (the first frames, perhaps) would be lost without a word.
pub const EARLY_END: &str = "an empty line (bare LF) before the end of the head";

pub(super) fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Headers as (name, value) pairs, in the order received.
pub type Headers = Vec<(String, String)>;

pub(super) fn collect(headers: &[httparse::Header<'_>]) -> Headers {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

pub(super) fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(super) fn get_all<'a>(headers: &'a Headers, name: &'a str) -> impl Iterator<Item = &'a str> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

// -- client

/// What a client sends to open a connection.
pub struct ClientRequest {
    pub bytes: Vec<u8>,
    /// The request target as sent, percent-encoded: path and query.
    pub target: String,
    /// The Sec-WebSocket-Key, to check the server's answer against.
    pub key: String,
}

/// The request for `url`: subprotocols in order of preference, an Origin
/// unless empty, the offer of permessage-deflate when `compression` is
/// given, and any extra headers (Authorization, Cookie, …).
pub fn client_request(
    url: &Url,
    subprotocols: &[String],
    origin: &str,
    headers: &Headers,
    compression: Option<&DeflateConfig>,
) -> ClientRequest {
    let key = generate_key();
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    let mut head = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    if !subprotocols.is_empty() {
        head += &format!("Sec-WebSocket-Protocol: {}\r\n", subprotocols.join(", "));
    }
    if !origin.is_empty() {
        head += &format!("Origin: {origin}\r\n");
    }
    if compression.is_some() {
        head += &format!("Sec-WebSocket-Extensions: {}\r\n", deflate::client_offer());
    }
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    ClientRequest {
        bytes: head.into_bytes(),
        target,
        key,
    }
}

/// What the server's answer said.
#[derive(Debug, PartialEq, Eq)]
pub struct ServerResponse {
    /// The subprotocol the server picked, "" for none.
    pub subprotocol: String,
    /// The extensions it accepted, as it wrote them ("" for none).
    pub extensions: String,
    /// What permessage-deflate it agreed to, if any.
    pub compression: Option<Negotiated>,
    pub headers: Headers,
}

/// The headers of a response that refused the handshake (any status but
/// 101), for the error Python raises; None for a 101 or a head that does
/// not parse.
pub fn rejection_headers(head: &[u8]) -> Option<Headers> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) if response.code != Some(101) => {
            Some(collect(response.headers))
        }
        _ => None,
    }
}

/// Checks the server's answer to our request (which offered `offered`
/// subprotocols, and permessage-deflate with `compression` if given); Err
/// says why in words.
pub fn check_response(
    head: &[u8],
    key: &str,
    offered: &[String],
    compression: Option<&DeflateConfig>,
) -> Result<ServerResponse, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    match response.parse(head) {
        Ok(httparse::Status::Complete(end)) if end == head.len() => {}
        Ok(httparse::Status::Complete(_)) => {
            return Err(format!(
                "handshake failed: invalid HTTP response: {EARLY_END}"
            ))
        }
        Ok(httparse::Status::Partial) => {
            return Err("handshake failed: incomplete HTTP response".into())
        }
        Err(e) => return Err(format!("handshake failed: invalid HTTP response: {e}")),
    }
    let code = response.code.unwrap_or_default();
    if code != 101 {
        let reason = response.reason.unwrap_or_default();
        return Err(format!("handshake rejected: HTTP {code} {reason}")
            .trim_end()
            .to_string());
    }
    let headers = collect(response.headers);
    if !get(&headers, "Upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err("handshake failed: the response does not upgrade to websocket".into());
    }
    if !get(&headers, "Connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err("handshake failed: the response's Connection header lacks upgrade".into());
    }
    if get(&headers, "Sec-WebSocket-Accept") != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err("handshake failed: wrong Sec-WebSocket-Accept".into());
    }
    let extensions: Vec<&str> = get_all(&headers, "Sec-WebSocket-Extensions").collect();
    let negotiated = deflate::check_response(&extensions, compression)?;
    let extensions = extensions.join(", ");
    let subprotocol = get(&headers, "Sec-WebSocket-Protocol")
        .unwrap_or_default()
        .to_string();
    if !subprotocol.is_empty() && !offered.contains(&subprotocol) {
        return Err(format!(
            "handshake failed: the server chose subprotocol {subprotocol:?}, which was not offered"
        ));
    }
    Ok(ServerResponse {
        subprotocol,
        extensions,
        compression: negotiated,
        headers,
    })
}

// -- server

/// A valid opening request, as the server saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// The request target: path and query.
    pub target: String,
    pub headers: Headers,
    key: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        get(&self.headers, name)
    }

    /// The subprotocols the client offered, in its order of preference.
    pub fn subprotocols(&self) -> Vec<String> {
        subprotocol::parse(get_all(&self.headers, "Sec-WebSocket-Protocol"))
    }

    /// The extensions the client offered: each `Sec-WebSocket-Extensions` value.
    pub fn extension_offers(&self) -> Vec<&str> {
        get_all(&self.headers, "Sec-WebSocket-Extensions").collect()
    }
}

/// An HTTP error response that ends a handshake.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    /// Why, for the response body.
    pub message: String,
}

impl Rejection {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Rejection {
            status,
            headers: Vec::new(),
            message: message.into(),
        }
    }

    /// The refusal with a header more (a 405's Allow).
    pub fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn response(&self, server_name: &str) -> Vec<u8> {
        let reason = match super::http::reason(self.status) {
            "" => "Error",
            reason => reason,
        };
        let body = format!("{}\n", self.message);
        let mut head = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            head += &format!("{name}: {value}\r\n");
        }
        if !server_name.is_empty() {
            head += &format!("Server: {server_name}\r\n");
        }
        head += &format!(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        head.into_bytes()
    }
}

/// Whether `key` is the base64 of 16 bytes, as §4.2.1 asks.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && key.ends_with("==")
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

/// Parses the head of an HTTP request, whatever it asks for: all of it, up
/// to its CRLF CRLF ([`EARLY_END`] otherwise), or a 400 that says why.
pub(super) fn parse_head<'h, 'b>(
    head: &'b [u8],
    slots: &'h mut [httparse::Header<'b>],
) -> Result<httparse::Request<'h, 'b>, Rejection> {
    let mut request = httparse::Request::new(slots);
    match request.parse(head) {
        Ok(httparse::Status::Complete(end)) if end == head.len() => Ok(request),
        Ok(httparse::Status::Complete(_)) => Err(Rejection::new(
            400,
            format!("malformed request: {EARLY_END}"),
        )),
        Ok(httparse::Status::Partial) => Err(Rejection::new(400, "incomplete request")),
        Err(e) => Err(Rejection::new(400, format!("malformed request: {e}"))),
    }
}

/// Refuses a request without its one Host header: an HTTP/1.1 request has
/// exactly one (RFC 9112 §3.2, and §4.2.1 for an opening request); an
/// HTTP/1.0 one may have none.
pub fn check_host(headers: &Headers, http11: bool) -> Result<(), Rejection> {
    match get_all(headers, "Host").count() {
        0 if http11 => Err(Rejection::new(400, "the request has no Host header")),
        0 | 1 => Ok(()),
        _ => Err(Rejection::new(
            400,
            "the request has more than one Host header",
        )),
    }
}

/// Checks an opening request (§4.2.1); a Rejection says how to answer it.
pub fn parse_request(head: &[u8]) -> Result<Request, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let request = parse_head(head, &mut slots)?;
    if request.method != Some("GET") {
        return Err(
            Rejection::new(405, "a WebSocket handshake is a GET request").with("Allow", "GET"),
        );
    }
    if request.version != Some(1) {
        return Err(Rejection::new(400, "a WebSocket handshake needs HTTP/1.1"));
    }
    let target = request.path.unwrap_or("/").to_string();
    let headers = collect(request.headers);
    if !get(&headers, "Upgrade").is_some_and(|v| has_token(v, "websocket")) {
        return Err(Rejection::new(
            426,
            "this is a WebSocket server: send an Upgrade: websocket request",
        )
        .with("Upgrade", "websocket")
        .with("Connection", "Upgrade")
        .with("Sec-WebSocket-Version", "13"));
    }
    if !get(&headers, "Connection").is_some_and(|v| has_token(v, "upgrade")) {
        return Err(Rejection::new(
            400,
            "the Connection header must include Upgrade",
        ));
    }
    check_host(&headers, true)?;
    // §4.2.1 asks for one of each; two keys would leave the answer ambiguous.
    for name in ["Sec-WebSocket-Key", "Sec-WebSocket-Version"] {
        if get_all(&headers, name).nth(1).is_some() {
            return Err(Rejection::new(
                400,
                format!("the request has more than one {name} header"),
            ));
        }
    }
    // A body would be read as the first frames: a handshake is a GET without one.
    let has_body = get(&headers, "Transfer-Encoding").is_some()
        || get_all(&headers, "Content-Length").any(|length| length.trim() != "0");
    if has_body {
        return Err(Rejection::new(
            400,
            "a WebSocket handshake is a GET request without a body",
        ));
    }
    if get(&headers, "Sec-WebSocket-Version").map(str::trim) != Some("13") {
        return Err(
            Rejection::new(400, "unsupported WebSocket version: this server speaks 13")
                .with("Sec-WebSocket-Version", "13"),
        );
    }
    let key = match get(&headers, "Sec-WebSocket-Key").map(str::trim) {
        Some(key) if valid_key(key) => key.to_string(),
        _ => return Err(Rejection::new(400, "missing or invalid Sec-WebSocket-Key")),
    };
    Ok(Request {
        target,
        headers,
        key,
    })
}

/// The 101 response that accepts `request`, with the extensions accepted
/// (a `Sec-WebSocket-Extensions` value) if any.
pub fn accept_response(
    request: &Request,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    server_name: &str,
) -> Vec<u8> {
    let mut head = String::from("HTTP/1.1 101 Switching Protocols\r\n");
    for (name, value) in accept_headers(&request.key, subprotocol, extensions, server_name) {
        head += &format!("{name}: {value}\r\n");
    }
    head += "\r\n";
    head.into_bytes()
}

/// The headers of the 101 that accepts a request whose Sec-WebSocket-Key
/// is `key`, in the order written.
pub fn accept_headers(
    key: &str,
    subprotocol: Option<&str>,
    extensions: Option<&str>,
    server_name: &str,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Upgrade", "websocket".to_string()),
        ("Connection", "Upgrade".to_string()),
        ("Sec-WebSocket-Accept", derive_accept_key(key.as_bytes())),
    ];
    if let Some(protocol) = subprotocol {
        headers.push(("Sec-WebSocket-Protocol", protocol.to_string()));
    }
    if let Some(extensions) = extensions {
        headers.push(("Sec-WebSocket-Extensions", extensions.to_string()));
    }
    if !server_name.is_empty() {
        headers.push(("Server", server_name.to_string()));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /chat?x=1 HTTP/1.1\r\nHost: a:1\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                        Sec-WebSocket-Protocol: a, b\r\n\r\n";

    #[test]
    fn a_good_request_is_accepted_with_the_rfc_example_key() {
        let request = parse_request(GOOD.as_bytes()).unwrap();
        assert_eq!(request.target, "/chat?x=1");
        assert_eq!(
            request.subprotocols(),
            vec!["a".to_string(), "b".to_string()]
        );
        let response = String::from_utf8(accept_response(&request, Some("b"), None, "me")).unwrap();
        // The example of RFC 6455 §1.3.
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(response.contains("Sec-WebSocket-Protocol: b\r\n"));
        assert!(response.contains("Server: me\r\n"));
    }

    #[test]
    fn bad_requests_get_the_right_status() {
        let cases = [
            (GOOD.replace("Version: 13", "Version: 8"), 400),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                400,
            ),
            (GOOD.replace("Upgrade: websocket\r\n", ""), 426),
            (GOOD.replace("GET", "POST"), 405),
            (GOOD.replace("HTTP/1.1", "HTTP/1.0"), 400),
            ("\x00\x01garbage\r\n\r\n".to_string(), 400),
            (
                GOOD.replace(
                    "Sec-WebSocket-Version",
                    "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version",
                ),
                400,
            ),
            (
                GOOD.replace(
                    "Version: 13\r\n",
                    "Version: 13\r\nSec-WebSocket-Version: 13\r\n",
                ),
                400,
            ),
            (
                GOOD.replace("Host: a:1\r\n", "Host: a:1\r\nHost: b:2\r\n"),
                400,
            ),
            (
                GOOD.replace("\r\n\r\n", "\r\nContent-Length: 5\r\n\r\n"),
                400,
            ),
            (
                GOOD.replace("\r\n\r\n", "\r\nContent-Length: -1\r\n\r\n"),
                400,
            ),
            (
                GOOD.replace("\r\n\r\n", "\r\nTransfer-Encoding: chunked\r\n\r\n"),
                400,
            ),
        ];
        for (request, status) in cases {
            assert_eq!(
                parse_request(request.as_bytes()).unwrap_err().status,
                status,
                "{request:?}"
            );
        }
        let version =
            parse_request(GOOD.replace("Version: 13", "Version: 8").as_bytes()).unwrap_err();
        let response = String::from_utf8(version.response("")).unwrap();
        assert!(response.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(response.contains("Sec-WebSocket-Version: 13\r\n"));
    }

    #[test]
    fn a_head_that_ends_early_with_a_bare_lf_is_refused() {
        // Found by the fuzzer (fuzz/regressions/response/): the head is read
        // up to CRLF CRLF, and httparse, which takes bare LFs, ended it
        // before that: what came between was dropped.
        let early = GOOD.replace("Sec-WebSocket-Protocol", "\nX-Lost");
        let rejection = parse_request(early.as_bytes()).unwrap_err();
        assert_eq!(rejection.status, 400);
        assert!(rejection.message.contains(EARLY_END));
        let request = parse_request(GOOD.as_bytes()).unwrap();
        let response = String::from_utf8(accept_response(&request, None, None, "")).unwrap();
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        assert!(check_response(response.as_bytes(), key, &[], None).is_ok());
        let early = response.replacen("\r\n", "\r\n\n", 2);
        let why = check_response(early.as_bytes(), key, &[], None).unwrap_err();
        assert!(why.contains(EARLY_END), "{why}");
    }

    #[test]
    fn an_empty_body_announced_is_no_body() {
        let request = GOOD.replace("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n");
        assert!(parse_request(request.as_bytes()).is_ok());
    }

    #[test]
    fn client_request_and_response_round_trip() {
        let url = Url::parse("ws://example.com:8080/a/b?c=d").unwrap();
        let headers = vec![("Authorization".to_string(), "Bearer x".to_string())];
        let request = client_request(&url, &["v1".into()], "http://o", &headers, None);
        let text = String::from_utf8(request.bytes.clone()).unwrap();
        assert!(text.starts_with("GET /a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n"));
        assert!(
            text.contains("Origin: http://o\r\n") && text.contains("Authorization: Bearer x\r\n")
        );
        let parsed = parse_request(&request.bytes).unwrap();
        let response = accept_response(&parsed, Some("v1"), None, "");
        let checked = check_response(&response, &request.key, &["v1".into()], None).unwrap();
        assert_eq!(checked.subprotocol, "v1");
        assert!(check_response(&response, "wrong key", &["v1".into()], None).is_err());
        assert!(check_response(&response, &request.key, &[], None).is_err());
    }

    #[test]
    fn a_refusal_reads_as_its_status_line() {
        let response = Rejection::new(403, "no").response("");
        // Its head, as read_head reads it.
        let head = &response[..head_end(&response).unwrap()];
        assert_eq!(
            check_response(head, "k", &[], None).unwrap_err(),
            "handshake rejected: HTTP 403 Forbidden"
        );
    }
}
