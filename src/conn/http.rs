//! Plain HTTP on a server's own port, the tokio side: a request that is not
//! an upgrade (or an upgrade Python wants to see first) is asked of Python
//! through the bridge, and its answer, or a file of the static folder, is
//! written back; then the connection closes. Files are read on tokio's
//! blocking threads, never on the Python thread, and bounded in size.
//!
//! With nothing configured (no handler, no route, no folder) a request
//! goes on to the opening handshake untouched, which answers 426 to a
//! plain GET as before.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::event::{Event, EventSink};
use crate::bridge::Question;
use crate::config::{MAX_FILE_SIZE, MAX_REQUEST_BODY};
use crate::net::Endpoints;
use crate::protocol::handshake::{check_host, Headers, Rejection};
use crate::protocol::http::{self, Answer, Body, Request};

/// What a server does with HTTP requests; Python changes it as its
/// handlers, routes and properties change.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Requests that are not upgrades are asked of Python.
    pub ask_plain: bool,
    /// Upgrade requests are asked of Python before the handshake, which
    /// may refuse them (a 401, a redirect, a 404 for a path without route).
    pub ask_upgrade: bool,
    /// The folder whose files GET requests that Python left unanswered get.
    pub static_dir: Option<PathBuf>,
    /// Largest file a response carries; a larger one gets 500.
    pub max_file_size: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            ask_plain: false,
            ask_upgrade: false,
            static_dir: None,
            max_file_size: MAX_FILE_SIZE,
        }
    }
}

/// A request asked of Python, and where its answer goes: None lets the
/// server go on (the handshake for an upgrade, the static folder or 404
/// otherwise).
pub struct HttpAsk {
    pub request: Request,
    pub upgrade: bool,
    pub endpoints: Endpoints,
    /// The id the connection's events arrive under, should an upgrade open
    /// it: what ties a handshake's request to its socket, as the client's
    /// address cannot on a Unix domain socket.
    pub connection: u64,
    pub question: Arc<Question<Option<Answer>>>,
}

/// Serves the request whose head is `head`, if it is for this module;
/// returns what came after the head when it goes on to the opening
/// handshake instead, None once it was answered (or the client went away).
#[allow(
    clippy::too_many_arguments,
    reason = "the request, the server's settings, and who asks: none go together elsewhere"
)]
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &[u8],
    mut received: BytesMut,
    config: &HttpConfig,
    name: &str,
    endpoints: Endpoints,
    connection: u64,
    events: &EventSink,
) -> Option<BytesMut> {
    // A request that cannot be read gets its 400 from the handshake.
    let Ok(mut request) = http::parse_request(head) else {
        return Some(received);
    };
    let upgrade = request.wants_upgrade();
    let ask = if upgrade {
        config.ask_upgrade
    } else {
        config.ask_plain
    };
    if !ask && (upgrade || config.static_dir.is_none()) {
        return Some(received);
    }
    if !upgrade {
        let length = match check_host(&request.headers, request.http11)
            .and_then(|()| http::body_length(&request, MAX_REQUEST_BODY))
        {
            Ok(length) => length,
            Err(rejection) => return refuse(stream, rejection, name).await,
        };
        // A client that waits for leave to send its body gets it (RFC 9110
        // §10.1.1), or would wait for its own timeout first.
        if received.len() < length && request.expects_continue() {
            stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .ok()?;
        }
        while received.len() < length {
            if stream.read_buf(&mut received).await.ok()? == 0 {
                return None;
            }
        }
        // Anything after the body (a pipelined request) goes with the connection.
        request.body = received.split_to(length).to_vec();
    }
    let head_only = request.is_head();
    let method = request.method.clone();
    let target = request.target.clone();
    if ask {
        let (question, reply) = Question::new(target.clone(), None);
        events.send(Event::HttpRequest(Box::new(HttpAsk {
            request,
            upgrade,
            endpoints,
            connection,
            question,
        })));
        // The handshake timeout bounds the wait; a Python side that went
        // away answers None as its question drops.
        if let Ok(Some(answer)) = reply.await {
            write_answer(stream, answer, head_only, name, config.max_file_size).await;
            return None;
        }
    }
    if upgrade {
        return Some(received);
    }
    let answer = match &config.static_dir {
        Some(dir) if method == "GET" || head_only => {
            let (dir, target, max) = (dir.clone(), target.clone(), config.max_file_size);
            match tokio::task::spawn_blocking(move || static_file(&dir, &target, max)).await {
                Ok(found) => found,
                Err(_) => Err(Rejection::new(500, "reading the file failed")),
            }
        }
        // What no handler answered goes to the folder, which only reads.
        Some(_) => Err(
            Rejection::new(405, "this server serves files: use GET or HEAD")
                .with("Allow", "GET, HEAD"),
        ),
        _ => Err(Rejection::new(404, format!("nothing at {target}"))),
    };
    match answer {
        Ok(answer) => write_answer(stream, answer, head_only, name, config.max_file_size).await,
        Err(rejection) => {
            refuse::<S, ()>(stream, rejection, name).await;
        }
    }
    None
}

/// Answers with `rejection` and ends the connection; gives nothing to go on with.
pub(super) async fn refuse<S: AsyncWrite + Unpin, T>(
    stream: &mut S,
    rejection: Rejection,
    name: &str,
) -> Option<T> {
    let _ = stream.write_all(&rejection.response(name)).await;
    let _ = stream.shutdown().await;
    None
}

/// Writes `answer`, its file read first (off this task's thread).
async fn write_answer<S: AsyncWrite + Unpin>(
    stream: &mut S,
    answer: Answer,
    head_only: bool,
    name: &str,
    max_file_size: usize,
) {
    let Answer {
        status,
        headers,
        body,
    } = answer;
    let (body, content_type) = match body {
        Body::Bytes(bytes) => (bytes, "application/octet-stream"),
        Body::File(path) => {
            let kind = http::content_type(&path);
            let reading = tokio::task::spawn_blocking(move || read_file(&path, max_file_size));
            match reading.await {
                Ok(Ok(bytes)) => (bytes, kind),
                Ok(Err(rejection)) => return refuse(stream, rejection, name).await.unwrap_or(()),
                Err(_) => {
                    let failed = Rejection::new(500, "reading the file failed");
                    return refuse(stream, failed, name).await.unwrap_or(());
                }
            }
        }
    };
    let mut bytes = http::response_head(status, &headers, content_type, body.len(), name);
    if !head_only && !http::has_no_content(status) {
        bytes.extend_from_slice(&body);
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// The whole of the file at `path`, if it is a file of at most `max` bytes.
fn read_file(path: &Path, max: usize) -> Result<Vec<u8>, Rejection> {
    let not_found = || Rejection::new(404, "no such file");
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => not_found(),
        std::io::ErrorKind::PermissionDenied => Rejection::new(403, "the file cannot be read"),
        _ => Rejection::new(500, format!("the file cannot be read: {e}")),
    })?;
    let metadata = file.metadata().map_err(|_| not_found())?;
    if !metadata.is_file() {
        return Err(not_found());
    }
    let too_large = || {
        Rejection::new(
            500,
            format!("the file is over the server's max_file_size ({max} bytes)"),
        )
    };
    if metadata.len() > max as u64 {
        return Err(too_large());
    }
    // Read at most one byte over: a file that grew since is still bounded.
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Rejection::new(500, format!("the file cannot be read: {e}")))?;
    if bytes.len() > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The answer of the static folder `dir` to a GET of `target`: the file,
/// `index.html` for a folder, a redirect to add the `/` a folder's
/// relative links need, or 404 for what is not there or lies outside the
/// folder once symbolic links are followed.
fn static_file(dir: &Path, target: &str, max: usize) -> Result<Answer, Rejection> {
    let relative = http::static_path(target)?;
    let not_found = || Rejection::new(404, format!("nothing at {target}"));
    let root = dir
        .canonicalize()
        .map_err(|e| Rejection::new(500, format!("static_dir cannot be read: {e}")))?;
    let real = root
        .join(&relative)
        .canonicalize()
        .map_err(|_| not_found())?;
    // A symbolic link may point anywhere: what counts is where it leads.
    if !real.starts_with(&root) {
        return Err(not_found());
    }
    if real.is_dir() {
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, format!("?{query}")),
            None => (target, String::new()),
        };
        let headers: Headers = vec![("Location".into(), format!("{path}/{query}"))];
        return Ok(Answer {
            status: 301,
            headers,
            body: Body::Bytes(Vec::new()),
        });
    }
    let bytes = read_file(&real, max)?;
    let headers: Headers = vec![
        ("Content-Type".into(), http::content_type(&real).into()),
        // A prototype's files change while it runs: the browser asks again.
        ("Cache-Control".into(), "no-cache".into()),
        ("X-Content-Type-Options".into(), "nosniff".into()),
    ];
    Ok(Answer {
        status: 200,
        headers,
        body: Body::Bytes(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::event::EventQueue;
    use std::time::Duration;

    /// The response the server writes to `request` with `config`, or None
    /// when the request goes on to the handshake. What Python would do is
    /// played by a thread that answers each request asked with `answer`
    /// (None leaves it unanswered).
    async fn respond_with(
        config: &HttpConfig,
        request: &str,
        answer: Option<Answer>,
    ) -> Option<String> {
        let queue = EventQueue::new(false).unwrap();
        let events = queue.sink(1);
        let python = {
            let queue = Arc::clone(&queue);
            tokio::task::spawn_blocking(move || {
                while !queue.is_closed() {
                    for (_, event) in queue.wait(Duration::from_secs(10)).into_events() {
                        if let Event::HttpRequest(ask) = event {
                            ask.question.set(answer.clone());
                            ask.question.reply();
                        }
                    }
                }
            })
        };
        let (mut ours, mut client) = tokio::io::duplex(1 << 20);
        let end = crate::protocol::handshake::head_end(request.as_bytes()).unwrap();
        let (head, rest) = request.as_bytes().split_at(end);
        let endpoints = Endpoints {
            peer: None,
            local: None,
        };
        let went_on = serve(
            &mut ours,
            head,
            BytesMut::from(rest),
            config,
            "",
            endpoints,
            0,
            &events,
        )
        .await;
        queue.close();
        python.await.unwrap();
        drop(ours);
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        went_on.is_none().then_some(response)
    }

    async fn respond(config: &HttpConfig, request: &str) -> Option<String> {
        respond_with(config, request, None).await
    }

    fn folder() -> (tempdir::Dir, HttpConfig) {
        let dir = tempdir::Dir::new();
        std::fs::create_dir(dir.path.join("docs")).unwrap();
        std::fs::write(dir.path.join("index.html"), "<p>home</p>").unwrap();
        std::fs::write(dir.path.join("docs/index.html"), "<p>docs</p>").unwrap();
        std::fs::write(dir.path.join("big.bin"), vec![0u8; 2048]).unwrap();
        let config = HttpConfig {
            static_dir: Some(dir.path.clone()),
            max_file_size: 1024,
            ..HttpConfig::default()
        };
        (dir, config)
    }

    /// A folder made for one test and removed after it.
    mod tempdir {
        pub struct Dir {
            pub path: std::path::PathBuf,
        }
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static COUNT: AtomicUsize = AtomicUsize::new(0);
                let path = std::env::temp_dir().join(format!(
                    "wsbind-http-{}-{}",
                    std::process::id(),
                    COUNT.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir { path }
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.path);
            }
        }
    }

    #[tokio::test]
    async fn with_nothing_configured_every_request_goes_to_the_handshake() {
        let config = HttpConfig::default();
        assert_eq!(
            respond(&config, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await,
            None
        );
        assert_eq!(
            respond(&config, "POST / HTTP/1.1\r\nHost: x\r\n\r\n").await,
            None
        );
    }

    #[tokio::test]
    async fn the_static_folder_serves_files_and_folders() {
        let (_dir, config) = folder();
        let home = respond(&config, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(home.starts_with("HTTP/1.1 200 OK\r\n"), "{home}");
        assert!(home.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(home.ends_with("\r\n\r\n<p>home</p>"), "{home}");
        let docs = respond(&config, "GET /docs/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(docs.ends_with("<p>docs</p>"), "{docs}");
        let folder = respond(&config, "GET /docs?x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(folder.starts_with("HTTP/1.1 301") && folder.contains("Location: /docs/?x\r\n"));
        let head = respond(&config, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(head.contains("Content-Length: 11\r\n") && head.ends_with("\r\n\r\n"));
        let missing = respond(&config, "GET /nope.js HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let big = respond(&config, "GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(
            big.starts_with("HTTP/1.1 500") && big.contains("max_file_size"),
            "{big}"
        );
        let post = respond(&config, "POST / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
        // An upgrade is not for the folder.
        let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(respond(&config, upgrade).await, None);
    }

    #[tokio::test]
    async fn nothing_outside_the_folder_is_served() {
        let (dir, config) = folder();
        let outside = tempdir::Dir::new();
        std::fs::write(outside.path.join("secret.txt"), "kept outside").unwrap();
        std::os::unix::fs::symlink(outside.path.join("secret.txt"), dir.path.join("link.txt"))
            .unwrap();
        std::os::unix::fs::symlink(&outside.path, dir.path.join("out")).unwrap();
        for target in [
            "/link.txt",
            "/out/secret.txt",
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/docs%2f..%2f..%2fsecret.txt",
        ] {
            let response = respond(
                &config,
                &format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n"),
            )
            .await
            .unwrap();
            assert!(!response.contains("kept outside"), "{target}: {response}");
            assert!(
                response.starts_with("HTTP/1.1 404") || response.starts_with("HTTP/1.1 400"),
                "{target}: {response}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_is_bounded() {
        let config = HttpConfig {
            ask_plain: true,
            ..HttpConfig::default()
        };
        let over = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_REQUEST_BODY + 1
        );
        let response = respond(&config, &over).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 413"), "{response}");
        let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let response = respond(&config, chunked).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 411"), "{response}");
    }

    #[tokio::test]
    async fn a_request_python_leaves_unanswered_gets_404() {
        let config = HttpConfig {
            ask_plain: true,
            ..HttpConfig::default()
        };
        let response = respond(&config, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    }

    #[tokio::test]
    async fn python_answers_a_request_or_refuses_an_upgrade() {
        let config = HttpConfig {
            ask_plain: true,
            ask_upgrade: true,
            ..HttpConfig::default()
        };
        let answer = Answer {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), "Basic realm=\"x\"".into())],
            body: Body::Bytes(b"who?".to_vec()),
        };
        let post = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
        let response = respond_with(&config, post, Some(answer.clone()))
            .await
            .unwrap();
        assert!(
            response.starts_with("HTTP/1.1 401 Unauthorized\r\n"),
            "{response}"
        );
        assert!(response.contains("WWW-Authenticate: Basic realm=\"x\"\r\n"));
        assert!(response.ends_with("\r\n\r\nwho?"), "{response}");
        let upgrade = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        let refused = respond_with(&config, upgrade, Some(answer)).await.unwrap();
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        assert_eq!(
            respond(&config, upgrade).await,
            None,
            "left to the handshake"
        );
    }
}
