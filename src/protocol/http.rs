//! Plain HTTP on a WebSocket server's own port, without I/O: the request
//! (any method, a bounded body), the response a handler or a static file
//! gives, the content type of a file, and the path of a static file inside
//! its folder, checked so that no request can name a file outside it.
//!
//! A request that asks for an upgrade goes on to the opening handshake
//! ([`handshake`](super::handshake)); this module reads it the same way, so
//! that a handler may see it first and refuse it (a 401, a redirect).

use std::path::{Component, Path, PathBuf};

use super::handshake::{
    collect, get, get_all, has_token, parse_head, Headers, Rejection, MAX_HEADERS,
};

/// An HTTP request as the server read it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    /// "GET", "POST", ... as sent.
    pub method: String,
    /// The request target: path and query, percent-encoded as sent.
    pub target: String,
    pub headers: Headers,
    /// The body, once read (see [`body_length`]).
    pub body: Vec<u8>,
    /// HTTP/1.1, not 1.0.
    pub http11: bool,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        get(&self.headers, name)
    }

    /// Whether the client asks for a WebSocket (an `Upgrade: websocket`
    /// header); the handshake checks the rest.
    pub fn wants_upgrade(&self) -> bool {
        self.header("Upgrade")
            .is_some_and(|v| has_token(v, "websocket"))
    }

    /// Whether the client waits for a 100 Continue before it sends its body.
    pub fn expects_continue(&self) -> bool {
        self.http11
            && self
                .header("Expect")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// Whether the response carries no body (RFC 9110 §9.3.2).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Reads the head of an HTTP/1.0 or 1.1 request, any method; its body, if
/// any, comes after (see [`body_length`]).
pub fn parse_request(head: &[u8]) -> Result<Request, Rejection> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let request = parse_head(head, &mut slots)?;
    Ok(Request {
        method: request.method.unwrap_or("GET").to_string(),
        target: request.path.unwrap_or("/").to_string(),
        headers: collect(request.headers),
        body: Vec::new(),
        http11: request.version == Some(1),
    })
}

/// How many bytes of body follow the head of `request`: its Content-Length,
/// at most `max`. A chunked body gets 411 (a handler's request fits in one
/// read of known length; browsers send forms and fetch() bodies that way),
/// a longer one 413.
pub fn body_length(request: &Request, max: usize) -> Result<usize, Rejection> {
    if request.header("Transfer-Encoding").is_some() {
        return Err(Rejection::new(
            411,
            "send the body with a Content-Length, not chunked",
        ));
    }
    let mut lengths = get_all(&request.headers, "Content-Length").map(str::trim);
    let Some(first) = lengths.next() else {
        return Ok(0);
    };
    // Two different lengths make the body's end ambiguous (RFC 9112 §6.3).
    if lengths.any(|other| other != first) {
        return Err(Rejection::new(400, "conflicting Content-Length headers"));
    }
    // Digits only (RFC 9110 §8.6): Rust's parse() would take "+3" too.
    let length: usize = Some(first)
        .filter(|f| f.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| Rejection::new(400, format!("invalid Content-Length {first:?}")))?;
    if length > max {
        return Err(Rejection::new(
            413,
            format!("request body over {max} bytes"),
        ));
    }
    Ok(length)
}

/// What a response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Bytes(Vec<u8>),
    /// A file, read when the response is written (bounded by the server's
    /// `max_file_size`).
    File(PathBuf),
}

/// A response to a plain request, or the refusal of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    /// Headers as given; `Content-Type` is added when missing.
    pub headers: Headers,
    pub body: Body,
}

/// Checks a header a handler gives: its name a token (RFC 9110 §5.1), not
/// one the server writes itself, its value sendable as it is.
pub fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(format!("{name:?} is not a valid HTTP header name"));
    }
    for own in ["Content-Length", "Transfer-Encoding", "Connection"] {
        if name.eq_ignore_ascii_case(own) {
            return Err(format!(
                "the server writes {own} itself; a response cannot set it"
            ));
        }
    }
    super::handshake::check_header_value(value)
}

/// The reason phrase of `status`, for the status line.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// The head of a response whose body is `length` bytes; the connection
/// closes after it (one request per connection keeps the server's side a
/// single read and write, and browsers open another for the next request).
pub fn response_head(
    status: u16,
    headers: &Headers,
    content_type: &str,
    length: usize,
    server_name: &str,
) -> Vec<u8> {
    // The space after the code stays with no reason phrase (RFC 9112 §4).
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    let content = !has_no_content(status);
    if content && get(headers, "Content-Type").is_none() {
        head += &format!("Content-Type: {content_type}\r\n");
    }
    if !server_name.is_empty() {
        head += &format!("Server: {server_name}\r\n");
    }
    if content {
        head += &format!("Content-Length: {length}\r\n");
    }
    head += "Connection: close\r\n\r\n";
    head.into_bytes()
}

/// Whether a response of `status` has no content, nor a Content-Length
/// (RFC 9110 §8.6, §15.3.5, §15.4.5): 204 and 304.
pub fn has_no_content(status: u16) -> bool {
    matches!(status, 204 | 304)
}

/// The content type of a file, by its extension; text in UTF-8.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "pdf" => "application/pdf",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The file a request target names inside a static folder, as a path
/// relative to it: percent-decoded, `index.html` for a folder (a target
/// ending in `/`). A 400 refuses what could step outside the folder or read
/// differently on another system: `..`, an encoded `/` or `\`, a `\`, a
/// NUL, invalid percent-encoding or UTF-8; and an empty or `.` segment
/// (`//private`, `/./private`), which a handler's check of the request's
/// path would not read as the file it names. Symbolic links are left to
/// the caller, which alone can see the file system.
pub fn static_path(target: &str) -> Result<PathBuf, Rejection> {
    let refused = |why: &str| Rejection::new(400, format!("refused path: {why}"));
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Err(refused("it does not start with /"));
    }
    let mut relative = PathBuf::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.into_iter().enumerate() {
        let mut decoded = Vec::with_capacity(segment.len());
        let mut bytes = segment.bytes();
        while let Some(b) = bytes.next() {
            if b == b'%' {
                let (Some(high), Some(low)) =
                    (bytes.next().and_then(hex), bytes.next().and_then(hex))
                else {
                    return Err(refused("invalid percent-encoding"));
                };
                decoded.push(high << 4 | low);
            } else {
                decoded.push(b);
            }
        }
        let Ok(decoded) = String::from_utf8(decoded) else {
            return Err(refused("not UTF-8"));
        };
        if decoded.contains(['/', '\\', '\0']) {
            return Err(refused("an encoded separator, a backslash or a NUL"));
        }
        match decoded.as_str() {
            ".." => return Err(refused("..")),
            "" if i == last => relative.push("index.html"),
            "" | "." => return Err(refused("an empty or . segment")),
            name => relative.push(name),
        }
    }
    // Belt and braces: only plain names may remain.
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return Err(refused("not a plain relative path"));
    }
    Ok(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request {
        parse_request(text.as_bytes()).unwrap()
    }

    #[test]
    fn a_plain_request_that_ends_early_with_a_bare_lf_is_refused() {
        // As the handshake's (the fuzzer's find): what follows the bare LF
        // would be dropped without a word.
        let early = "GET / HTTP/1.1\r\nHost: a\r\n\nX-Lost: 1\r\n\r\n";
        let rejection = parse_request(early.as_bytes()).unwrap_err();
        assert_eq!(rejection.status, 400);
        assert!(rejection
            .message
            .contains(super::super::handshake::EARLY_END));
        assert_eq!(request("GET / HTTP/1.1\r\nHost: a\r\n\r\n").target, "/");
    }

    #[test]
    fn any_method_is_read_and_an_upgrade_is_told_apart() {
        let post = request("POST /form?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(
            (post.method.as_str(), post.target.as_str()),
            ("POST", "/form?a=1")
        );
        assert!(!post.wants_upgrade());
        assert_eq!(body_length(&post, 10), Ok(3));
        let upgrade = request("GET / HTTP/1.1\r\nUpgrade: WebSocket\r\n\r\n");
        assert!(upgrade.wants_upgrade());
        assert!(request("HEAD / HTTP/1.0\r\n\r\n").is_head());
        assert_eq!(
            parse_request(b"\x00 / HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn an_http11_request_has_one_host() {
        use crate::protocol::handshake::check_host;
        let host = |text: &str| {
            let request = request(text);
            check_host(&request.headers, request.http11).map_err(|r| r.status)
        };
        assert_eq!(host("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(host("GET / HTTP/1.0\r\n\r\n"), Ok(()));
        assert_eq!(host("GET / HTTP/1.1\r\n\r\n"), Err(400));
        assert_eq!(
            host("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(400)
        );
    }

    #[test]
    fn bodies_are_bounded_and_of_one_known_length() {
        let status = |headers: &str| {
            body_length(&request(&format!("POST / HTTP/1.1\r\n{headers}\r\n")), 10)
                .map_err(|r| r.status)
        };
        assert_eq!(status(""), Ok(0));
        assert_eq!(status("Content-Length: 10\r\n"), Ok(10));
        assert_eq!(status("Content-Length: 11\r\n"), Err(413));
        assert_eq!(status("Content-Length: -1\r\n"), Err(400));
        assert_eq!(status("Content-Length: +3\r\n"), Err(400));
        assert_eq!(status("Content-Length: \r\n"), Err(400));
        assert_eq!(
            status("Content-Length: 1\r\nContent-Length: 2\r\n"),
            Err(400)
        );
        assert_eq!(status("Transfer-Encoding: chunked\r\n"), Err(411));
    }

    #[test]
    fn a_response_has_its_length_type_and_name() {
        let headers = vec![("Location".to_string(), "/x".to_string())];
        let head = String::from_utf8(response_head(302, &headers, "text/plain", 5, "me")).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Type: text/plain\r\nServer: me\r\n\
             Content-Length: 5\r\nConnection: close\r\n\r\n"
        );
        let typed = vec![("content-type".to_string(), "text/html".to_string())];
        let head = String::from_utf8(response_head(599, &typed, "text/plain", 0, "")).unwrap();
        assert!(head.starts_with("HTTP/1.1 599 \r\ncontent-type: text/html\r\nContent-Length: 0"));
        let empty = String::from_utf8(response_head(204, &vec![], "text/plain", 0, "")).unwrap();
        assert_eq!(
            empty,
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn headers_a_handler_gives_are_checked() {
        assert!(check_header("WWW-Authenticate", "Basic realm=\"x\"").is_ok());
        assert!(check_header("Bad Name", "x").is_err());
        assert!(check_header("X", "a\r\nInjected: 1").is_err());
        assert!(check_header("content-length", "3").is_err());
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(
            content_type(Path::new("a/index.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type(Path::new("noext")), "application/octet-stream");
    }

    #[test]
    fn static_paths_stay_inside_their_folder() {
        let ok = |t: &str| static_path(t).unwrap();
        assert_eq!(ok("/"), PathBuf::from("index.html"));
        assert_eq!(ok("/a/b.css?v=1"), PathBuf::from("a/b.css"));
        assert_eq!(ok("/docs/"), PathBuf::from("docs/index.html"));
        assert_eq!(ok("/a%20b.txt"), PathBuf::from("a b.txt"));
        for bad in [
            "//private/secret.txt",
            "/./private/secret.txt",
            "/a//b",
            "/a/.",
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2f..%2f..%2fx",
            "/a%5c..%5cx",
            "/a\\..\\x",
            "/a%00.html",
            "/%zz",
            "/%ff",
            "relative",
        ] {
            assert_eq!(static_path(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
