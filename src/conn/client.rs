//! The client side: opening a connection to a ws:// URL.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use percent_encoding::percent_decode_str;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use url::Url;

use super::commands::{Command, CommandReceiver};
use super::connection::Connection;
use super::event::{Agreed, Event, EventQueue, EventSink};
use super::settings::Settings;
use super::task::{self, Opened};
use crate::bridge::Question;
use crate::config::MAX_HANDSHAKE_SIZE;
use crate::errors::Error;
use crate::net::proxy::{self, Credentials, Proxy};
use crate::net::{read_head, runtime, tls, Stream, Transport};
use crate::protocol::deflate::DeflateConfig;
use crate::protocol::handshake::{self, Headers, ServerResponse};
use crate::protocol::{auth, url as ws_url, Role};

/// Opens a connection to `target` in the background, its events going
/// to `queue`; returns the connection at once. `Event::Connected` follows
/// when the handshake succeeds, `Event::Closed` with an error when it fails.
/// `before_start` gets the connection before any of its events can arrive,
/// so that whoever receives them knows whose they are.
pub fn connect<E: From<Error>>(
    queue: &Arc<EventQueue>,
    target: Target,
    handshake_timeout: Option<Duration>,
    settings: Settings,
    before_start: impl FnOnce(&Arc<Connection>) -> Result<(), E>,
) -> Result<Arc<Connection>, E> {
    let (connection, commands) = Connection::new(Role::Client);
    before_start(&connection)?;
    connection.set_frame_size(settings.outgoing_frame_size);
    let events = queue.sink(connection.id);
    let on_panic = crash_report(events.clone());
    let task = run_client(
        target,
        handshake_timeout,
        settings,
        Arc::clone(&connection),
        commands,
        events,
    );
    runtime::spawn(task, on_panic)?;
    Ok(connection)
}

/// Where and how a client connects.
pub struct Target {
    pub url: Url,
    pub tls: Option<Arc<ClientConfig>>,
    pub subprotocols: Vec<String>,
    pub origin: String,
    pub headers: Headers,
    /// None connects directly.
    pub proxy: Option<Proxy>,
    /// Whether Python handles `proxy_authentication_required`.
    pub ask_proxy_auth: bool,
    /// Whether Python handles `authentication_required` (a server's 401).
    pub ask_auth: bool,
    /// permessage-deflate to offer; None offers no compression.
    pub compression: Option<DeflateConfig>,
    /// A Unix domain socket to connect to instead of the URL's host and
    /// port, which then name the server only in the request (Host, TLS).
    pub unix_path: Option<PathBuf>,
}

/// A client connection from its first byte to its last.
async fn run_client(
    target: Target,
    handshake_timeout: Option<Duration>,
    mut settings: Settings,
    connection: Arc<Connection>,
    mut commands: CommandReceiver,
    events: EventSink,
) {
    // Boxed, and dropped once done: the handshake's state (TLS, a proxy,
    // the response) is not kept in this task for the connection's life.
    let mut opening = Box::pin(runtime::within(
        handshake_timeout,
        open(&target, events.clone()),
    ));
    let opened = loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                // Closing while connecting gives up on the connection.
                Command::Close(..) | Command::Abort => break None,
                // New settings apply from the start.
                Command::Configure(new) => settings = new,
                // Nothing else concerns a connection that is not open yet.
                _ => {}
            },
            opened = &mut opening => break Some(opened),
        }
    };
    drop(opening);
    let error = match opened {
        Some(Some(Ok((stream, received, response, resource_name)))) => {
            let endpoints = stream.endpoints();
            match stream.into_running() {
                Ok((stream, socket)) => {
                    if let (Some(negotiated), Some(config)) =
                        (response.compression, &target.compression)
                    {
                        connection.set_compression(negotiated, config.level);
                    }
                    connection.set_open(true);
                    events.send(Event::Connected(Box::new(Agreed {
                        subprotocol: response.subprotocol,
                        extensions: response.extensions,
                        resource_name,
                        headers: response.headers,
                        endpoints,
                    })));
                    let opened = Opened {
                        settings,
                        received,
                        socket,
                        compression: response.compression,
                    };
                    task::run(stream, opened, connection, commands, events).await;
                    return;
                }
                Err(e) => Some(format!("connection lost: {e}")),
            }
        }
        Some(Some(Err(message))) => Some(message),
        Some(None) => Some(format!(
            "handshake timeout: no connection to {} within {} s",
            target.url,
            handshake_timeout.unwrap_or_default().as_secs_f64()
        )),
        None => None,
    };
    events.send(Event::abnormal(error));
}

/// What a connection whose task panicked tells Python: ERROR, not silence.
pub fn crash_report(events: EventSink) -> impl FnOnce(String) + Send + 'static {
    move |message| {
        events.send(Event::abnormal(Some(format!(
            "internal error in wsbind (please report it): {message}"
        ))))
    }
}

/// TCP connection, TLS for wss://, and the opening handshake; returns the
/// stream, the bytes that came after the server's response, what the
/// response agreed to, and the request target as sent. A server that
/// answers 401 is asked again once, on a new connection, with credentials:
/// those of the URL (`ws://user:pass@host/`, also sent as Basic from the
/// first request), else those a handler of `authentication_required` gives.
async fn open(
    target: &Target,
    events: EventSink,
) -> Result<(Stream, BytesMut, ServerResponse, String), String> {
    let from_url = url_credentials(&target.url);
    let first = from_url
        .as_ref()
        .map(|(user, password)| auth::basic(user, password));
    let challenges = match attempt(target, &events, first).await? {
        Attempt::Open(opened) => return Ok(opened),
        Attempt::Unauthorized(rejected, challenges) => {
            let Some(challenge) = challenges.into_iter().next() else {
                return Err(rejected);
            };
            (rejected, challenge)
        }
    };
    let (rejected, challenge) = challenges;
    let credentials = match from_url {
        // Basic with these was refused already.
        Some(_) if matches!(challenge, auth::Challenge::Basic { .. }) => None,
        Some(credentials) => Some(credentials),
        None if target.ask_auth => {
            let (question, answer) = Question::new(challenge.realm().to_string(), None);
            events.send(Event::Authenticate(question));
            answer.await.ok().flatten()
        }
        None => None,
    };
    let Some((user, password)) = credentials else {
        return Err(rejected);
    };
    let uri = ws_url::target(&target.url);
    let cnonce = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
    let header = auth::authorization(&challenge, &user, &password, &uri, &cnonce);
    match attempt(target, &events, Some(header)).await? {
        Attempt::Open(opened) => Ok(opened),
        Attempt::Unauthorized(rejected, _) => Err(rejected),
    }
}

/// How one request went.
enum Attempt {
    Open((Stream, BytesMut, ServerResponse, String)),
    /// HTTP 401: the error to report, and the challenges we can answer.
    Unauthorized(String, Vec<auth::Challenge>),
}

/// The user and password in the URL's user info, percent-decoded.
fn url_credentials(url: &url::Url) -> Option<Credentials> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    Some((
        decode(url.username()),
        decode(url.password().unwrap_or_default()),
    ))
}

/// One connection and one request, with `authorization` as its
/// `Authorization` header if given.
async fn attempt(
    target: &Target,
    events: &EventSink,
    authorization: Option<String>,
) -> Result<Attempt, String> {
    let (host, port) = ws_url::endpoint(&target.url);
    let transport = match (&target.unix_path, &target.proxy) {
        (Some(path), _) => UnixStream::connect(path)
            .await
            .map(Transport::Unix)
            .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?,
        (None, None) => TcpStream::connect((host.as_str(), port))
            .await
            .map(Transport::Tcp)
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?,
        (None, Some(proxy)) => {
            let ask = target.ask_proxy_auth.then_some(|subject| async {
                let (question, answer) = Question::new(subject, None);
                events.send(Event::ProxyAuth(question));
                answer.await.ok().flatten()
            });
            Transport::Tcp(proxy::connect(proxy, &host, port, ask).await?)
        }
    };
    transport.set_nodelay();
    let mut stream = match &target.tls {
        None => Stream::Plain(transport),
        Some(config) => {
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("invalid host name {host}: {e}"))?;
            match TlsConnector::from(Arc::clone(config))
                .connect(name, transport)
                .await
            {
                Ok(tls) => Stream::Tls(Box::new(tls.into())),
                // A TLS server answers a ClientHello, if only with an alert;
                // a plain one (websockets', nginx's) hangs up on bytes it
                // cannot parse as HTTP. wsbind's answers 400, which rustls
                // reads as a record of no known type (see `tls::describe`).
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    let message = tls::NOT_TLS.to_string();
                    events.send(Event::SslErrors(vec![message.clone()]));
                    return Err(message);
                }
                Err(e) => {
                    let message = tls::describe(&e, &host, false);
                    events.send(Event::SslErrors(vec![message.clone()]));
                    return Err(message);
                }
            }
        }
    };
    let headers = match authorization {
        None => std::borrow::Cow::Borrowed(&target.headers),
        Some(value) => {
            let mut headers = target.headers.clone();
            headers.push(("Authorization".to_string(), value));
            std::borrow::Cow::Owned(headers)
        }
    };
    let request = handshake::client_request(
        &target.url,
        &target.subprotocols,
        &target.origin,
        &headers,
        target.compression.as_ref(),
    );
    let lost = |e: std::io::Error| {
        // Under TLS 1.3 a server that refuses our certificate says so with an
        // alert after our side of the TLS handshake is done: a TLS failure.
        if tls::alert_of(&e).is_some() {
            let message = tls::describe(&e, &host, false);
            events.send(Event::SslErrors(vec![message.clone()]));
            return message;
        }
        format!("handshake failed: connection lost: {e}")
    };
    stream.write_all(&request.bytes).await.map_err(lost)?;
    let (head, received) = read_head(&mut stream, MAX_HANDSHAKE_SIZE)
        .await
        .map_err(lost)?
        .ok_or_else(|| {
            format!("handshake failed: response head over {MAX_HANDSHAKE_SIZE} bytes")
        })?;
    let checked = handshake::check_response(
        &head,
        &request.key,
        &target.subprotocols,
        target.compression.as_ref(),
    );
    if let (Err(_), Some(headers)) = (&checked, handshake::rejection_headers(&head)) {
        // Told on each refusal: Python keeps the last one's, for the error it raises.
        events.send(Event::Rejected(headers));
    }
    match checked {
        Ok(response) => Ok(Attempt::Open((stream, received, response, request.target))),
        Err(rejected) => match auth::unauthorized(&head) {
            Some(challenges) => Ok(Attempt::Unauthorized(rejected, challenges)),
            None => Err(rejected),
        },
    }
}
