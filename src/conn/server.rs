//! The server side: listening, accepting, the server's opening handshake
//! (origin checks, subprotocol choice) and closing every client on stop.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::broadcast::broadcast;
use super::broker::Broker;
use super::client::crash_report;
use super::commands::CommandReceiver;
use super::connection::{next_id, Connection};
use super::event::{Accepted, Event, EventQueue, EventSink};
use super::groups::{Change, Groups};
use super::http::{self, refuse, HttpConfig};
use super::members::Members;
use super::settings::Settings;
use super::takeover::{self, Place};
use super::task::{self, Opened};
use crate::bridge::Question;
use crate::config::{MAX_CONCURRENT_HANDSHAKES, MAX_HANDSHAKE_SIZE, PENDING_WAIT};
use crate::errors::Error;
use crate::net::listener::{Listener, UnixSocketFile};
use crate::net::{read_head, runtime, tls, Endpoints, Stream, Transport};
use crate::protocol::deflate::{self, DeflateConfig, Negotiated};
use crate::protocol::handshake::{self, Rejection, Request};
use crate::protocol::{subprotocol, CloseCode, Role};

/// Pause after a failed accept() (out of file descriptors, say), so that the
/// loop does not spin while the condition lasts.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// What Python may change while the server listens.
pub struct ServerConfig {
    /// Sent as the `Server` header; "" sends none.
    pub name: String,
    pub subprotocols: Vec<String>,
    /// Origins allowed to connect; None allows any.
    pub allowed_origins: Option<Vec<String>>,
    /// Whether Python handles `origin_authentication_required`.
    pub ask_origin: bool,
    /// None: no limit (Qt's negative handshake timeout).
    pub handshake_timeout: Option<Duration>,
    pub max_pending: usize,
    /// The kernel's queue of connections not yet accepted, set when listening.
    pub backlog: u32,
    /// SO_REUSEPORT, set when listening: other processes may listen on the port too.
    pub reuse_port: bool,
    /// Settings of the server's sockets.
    pub settings: Settings,
    /// permessage-deflate to accept; None declines every offer.
    pub compression: Option<DeflateConfig>,
    /// What plain HTTP requests (and upgrades, before their handshake) get.
    pub http: HttpConfig,
}

#[derive(Clone, Copy)]
struct Control {
    accepting: bool,
    stopped: bool,
}

/// A listening server, shared by its Python handle and its tasks.
pub struct Server {
    /// The id under which this server's events arrive.
    pub id: u64,
    /// The port it listens on.
    pub port: u16,
    config: Mutex<ServerConfig>,
    control: watch::Sender<Control>,
    /// The open server-side connections, closed with 1001 on stop.
    clients: Mutex<Members>,
    /// Connections handed to Python and not yet taken by its handlers.
    pending: Arc<Pending>,
    handshakes: Arc<Semaphore>,
    /// TLS for wss://, and the certificate it serves.
    tls: Option<(TlsAcceptor, Arc<tls::Certificate>)>,
    /// The named groups of `clients`.
    groups: Arc<Groups>,
    /// The broker that carries group broadcasts to other processes, if any.
    broker: Mutex<Option<Arc<Broker>>>,
    /// Where this server's events go (the broker's too).
    events: EventSink,
    /// A Unix domain socket's file, removed as soon as the server stops.
    unix_file: Option<Arc<UnixSocketFile>>,
}

impl Server {
    /// Binds `host`:`port` on the calling thread, as Qt's `listen()` does,
    /// so that a failure (an address in use) is known at once; an address
    /// held by another server of this process is taken over from it
    /// ([`takeover`]).
    pub fn bind(
        host: &str,
        port: u16,
        backlog: u32,
        reuse_port: bool,
    ) -> io::Result<takeover::Bound> {
        let addresses: Vec<SocketAddr> = if host.is_empty() {
            // Every interface, as asyncio's and websockets' host "": IPv6's
            // wildcard, which takes IPv4 too, else IPv4's on a machine
            // without IPv6.
            vec![
                (Ipv6Addr::UNSPECIFIED, port).into(),
                (Ipv4Addr::UNSPECIFIED, port).into(),
            ]
        } else {
            (host, port).to_socket_addrs()?.collect()
        };
        takeover::bind(&addresses, backlog, reuse_port)
    }

    /// Binds a Unix domain socket at `path` instead, as [`bind`](Self::bind) binds a port.
    pub fn bind_unix(path: &std::path::Path, backlog: u32) -> io::Result<takeover::Bound> {
        takeover::bind_unix(path, backlog)
    }

    /// Serves on `listener` (from [`bind`](Self::bind)) in the background;
    /// events go to `queue`. `before_start` learns the server's id before
    /// any of its events can arrive.
    pub fn start<E: From<Error>>(
        queue: &Arc<EventQueue>,
        listener: Listener,
        config: ServerConfig,
        accepting: bool,
        tls: Option<(Arc<rustls::ServerConfig>, Arc<tls::Certificate>)>,
        before_start: impl FnOnce(u64) -> Result<(), E>,
    ) -> Result<Arc<Server>, E> {
        let place = match &listener {
            Listener::Tcp(tcp) => Place::Tcp(
                tcp.local_addr()
                    .map_err(|e| Error::Runtime(e.to_string()))?,
            ),
            Listener::Unix(_, file) => Place::Unix(file.path.clone()),
        };
        // A Unix socket has no port: 0.
        let port = match &place {
            Place::Tcp(address) => address.port(),
            Place::Unix(_) => 0,
        };
        let unix_file = match &listener {
            Listener::Tcp(_) => None,
            Listener::Unix(_, file) => Some(Arc::clone(file)),
        };
        let (control, control_rx) = watch::channel(Control {
            accepting,
            stopped: false,
        });
        let id = next_id();
        let events = queue.sink(id);
        let server = Arc::new(Server {
            id,
            port,
            config: Mutex::new(config),
            control,
            clients: Mutex::default(),
            pending: Arc::default(),
            handshakes: Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES)),
            tls: tls.map(|(config, certificate)| (TlsAcceptor::from(config), certificate)),
            groups: Arc::default(),
            broker: Mutex::new(None),
            events: events.clone(),
            unix_file,
        });
        before_start(server.id)?;
        let on_panic = {
            let events = events.clone();
            move |message| {
                events.send(Event::ListenFailed(format!(
                    "internal error in wsbind (please report it): {message}"
                )))
            }
        };
        let lease = takeover::hold(place, {
            let server = Arc::downgrade(&server);
            move || server.upgrade().is_some_and(|server| server.stop())
        });
        let listening = listen(listener, lease, Arc::clone(&server), control_rx, events);
        runtime::spawn(listening, on_panic)?;
        Ok(server)
    }

    /// What later handshakes go by; Python changes it as its properties change.
    pub fn config(&self) -> MutexGuard<'_, ServerConfig> {
        self.config.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open server-side connections.
    pub fn clients(&self) -> Arc<[Arc<Connection>]> {
        self.clients_map().list()
    }

    fn clients_map(&self) -> MutexGuard<'_, Members> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopped(&self) -> bool {
        self.control.borrow().stopped
    }

    /// Serves a new certificate (PEM path or text) to later TLS handshakes.
    pub fn set_certificate(&self, certificate: &str, private_key: &str) -> Result<(), String> {
        let Some((_, current)) = &self.tls else {
            return Err("this server does not use TLS (secure_mode is False)".into());
        };
        current.replace(tls::Certificate::load(certificate, private_key)?);
        Ok(())
    }

    /// Pauses (False) or resumes (True) accepting connections.
    pub fn set_accepting(&self, accepting: bool) {
        self.control.send_modify(|c| c.accepting = accepting);
    }

    /// Stops listening and closes every client with 1001; false if it was
    /// stopping already.
    pub fn stop(&self) -> bool {
        let stopping = self
            .control
            .send_if_modified(|c| !std::mem::replace(&mut c.stopped, true));
        self.set_broker(None);
        if let Some(file) = &self.unix_file {
            file.remove();
        }
        stopping
    }

    /// Adds a client to `group`; false if it was a member already or has
    /// left the server.
    pub fn join(&self, connection: &Arc<Connection>, group: &str) -> bool {
        let change = self.groups.join(connection, group, || {
            self.clients_map().contains(connection.id)
        });
        self.regrouped(change);
        change != Change::None
    }

    /// Takes a client out of `group`; false if it was not a member.
    pub fn leave(&self, connection: &Connection, group: &str) -> bool {
        let change = self.groups.leave(connection.id, group);
        self.regrouped(change);
        change != Change::None
    }

    /// The open clients in `group`, in the order they connected.
    pub fn members(&self, group: &str) -> Arc<[Arc<Connection>]> {
        self.groups.members(group)
    }

    fn regrouped(&self, change: Change) {
        if change == Change::Groups {
            if let Some(broker) = &*self.broker() {
                broker.regroup();
            }
        }
    }

    /// Sends a message to every client, or with `group` to its members
    /// here and, through the broker, in every other process; returns how
    /// many clients here took it.
    pub fn broadcast(&self, group: Option<&str>, text: bool, payload: &Bytes) -> usize {
        let Some(group) = group else {
            return broadcast(self.clients().iter(), text, payload);
        };
        let reached = self.groups.broadcast(group, text, payload);
        if let Some(broker) = &*self.broker() {
            broker.publish(group, text, payload);
        }
        reached
    }

    fn broker(&self) -> MutexGuard<'_, Option<Arc<Broker>>> {
        self.broker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attaches the server to the broker at `url` with channels named
    /// `<namespace>:<group>` (replacing any other), or detaches it (None).
    pub fn set_broker(&self, broker: Option<(&str, String)>) {
        // Under the lock, so that a stop (which sets `stopped`, then takes
        // the lock) cannot miss a broker started at the same time.
        let mut slot = self.broker();
        let new = match broker {
            Some((url, namespace)) if !self.stopped() => Some(Broker::start(
                url,
                namespace,
                Arc::clone(&self.groups),
                self.events.clone(),
            )),
            _ => None,
        };
        if let Some(old) = std::mem::replace(&mut *slot, new) {
            old.stop();
        }
    }

    /// Group broadcasts the broker did not carry (see [`Broker::dropped`]).
    pub fn broker_dropped(&self) -> u64 {
        self.broker().as_ref().map_or(0, |b| b.dropped())
    }
}

/// A place among a server's pending connections: taken before the 101
/// response goes out, given back when it is dropped, unless the connection
/// was handed to Python ([`hand_over`](Self::hand_over)), whose handle gives
/// it back when the server's handlers take the connection. Whatever path a
/// handshake leaves by — a write that fails, a timeout in the middle of it,
/// a socket that cannot run — the place is not lost.
struct PendingPlace {
    pending: Arc<Pending>,
    held: bool,
}

impl PendingPlace {
    /// A place, unless `max` are taken.
    fn take(pending: &Arc<Pending>, max: usize) -> Option<PendingPlace> {
        if pending.count.fetch_add(1, Ordering::AcqRel) >= max {
            pending.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(PendingPlace {
            pending: Arc::clone(pending),
            held: true,
        })
    }

    /// A place, once one is free, waiting up to `wait` for Python to take
    /// a connection: a burst of clients (a restarted server's browser tabs
    /// coming back) finishes its handshakes faster than Python takes them.
    async fn wait_for(pending: &Arc<Pending>, max: usize, wait: Duration) -> Option<PendingPlace> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Listening before looking: a place freed in between wakes it.
            let freed = pending.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(place) = PendingPlace::take(pending, max) {
                return Some(place);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    /// The count the connection's Python handle leaves when it is taken.
    fn hand_over(mut self) -> Arc<Pending> {
        self.held = false;
        Arc::clone(&self.pending)
    }
}

impl Drop for PendingPlace {
    fn drop(&mut self) {
        if self.held {
            self.pending.leave();
        }
    }
}

/// A server's count of connections Python has not taken yet, and the
/// handshakes waiting for one of them to be taken.
#[derive(Default)]
pub struct Pending {
    count: AtomicUsize,
    freed: Notify,
}

impl Pending {
    /// One connection less: Python took it, or its handshake failed.
    pub fn leave(&self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

/// A listening socket registered with tokio.
enum Accepting {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        /// Removed when this drops, after the socket.
        _file: Arc<UnixSocketFile>,
    },
}

impl Accepting {
    fn new(listener: Listener) -> io::Result<Accepting> {
        match listener {
            Listener::Tcp(tcp) => Ok(Accepting::Tcp(TcpListener::from_std(tcp)?)),
            Listener::Unix(unix, file) => Ok(Accepting::Unix {
                listener: UnixListener::from_std(unix)?,
                _file: file,
            }),
        }
    }

    async fn accept(&self) -> io::Result<Transport> {
        match self {
            Accepting::Tcp(tcp) => Ok(Transport::Tcp(tcp.accept().await?.0)),
            Accepting::Unix { listener, .. } => Ok(Transport::Unix(listener.accept().await?.0)),
        }
    }
}

async fn listen(
    listener: Listener,
    lease: takeover::Lease,
    server: Arc<Server>,
    mut control: watch::Receiver<Control>,
    events: EventSink,
) {
    let port = server.port;
    let listener = match Accepting::new(listener) {
        Ok(listener) => listener,
        Err(e) => {
            server.stop();
            events.send(Event::ListenFailed(format!(
                "cannot listen on port {port}: {e}"
            )));
            return;
        }
    };
    events.send(Event::Listening { port });
    loop {
        let Control { accepting, stopped } = *control.borrow_and_update();
        if stopped {
            break;
        }
        if !accepting {
            // Connections wait in the kernel's backlog meanwhile, as in Qt.
            if control.changed().await.is_err() {
                break;
            }
            continue;
        }
        // Too many handshakes at once: new connections wait in the backlog.
        let Ok(permit) = Arc::clone(&server.handshakes).acquire_owned().await else {
            break;
        };
        tokio::select! {
            biased;
            changed = control.changed() => if changed.is_err() { break },
            accepted = listener.accept() => match accepted {
                Ok(transport) => {
                    let (connection, commands) = Connection::new(Role::Server);
                    let on_panic = crash_report(events.for_id(connection.id));
                    let serving = serve(transport, connection, commands, Arc::clone(&server), events.clone(), permit);
                    // Cannot fail: the runtime runs this very loop.
                    let _ = runtime::spawn(serving, on_panic);
                }
                Err(e) => {
                    events.send(Event::AcceptFailed(format!("accept failed: {e}")));
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                }
            },
        }
    }
    drop(listener);
    // Only now may a server that takes the address over bind it.
    drop(lease);
    server.set_broker(None);
    for client in server.clients().iter() {
        client.close(CloseCode::GOING_AWAY.0, String::new());
    }
    events.send(Event::Stopped);
}

/// One accepted connection: handshake, then the WebSocket until it closes.
/// Whatever this client does, it harms only itself.
async fn serve(
    transport: Transport,
    connection: Arc<Connection>,
    commands: CommandReceiver,
    server: Arc<Server>,
    events: EventSink,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    transport.set_nodelay();
    let endpoints = transport.endpoints();
    let handshake_timeout = server.config().handshake_timeout;
    // A client that stalls its handshake is dropped when the time is up.
    let opening = async {
        let mut stream = match &server.tls {
            None => Stream::Plain(transport),
            Some((acceptor, _)) => match acceptor.accept(transport).await {
                Ok(tls) => Stream::Tls(Box::new(tls.into())),
                Err(e) => {
                    // Qt's sslErrors/peerVerifyError; only this client is affected.
                    let peer = endpoints.peer.map(|p| p.to_string()).unwrap_or_default();
                    events.send(Event::SslErrors(vec![format!(
                        "{peer}: {}",
                        tls::describe(&e, &peer, true)
                    )]));
                    return None;
                }
            },
        };
        let handshake = handshake(
            &mut stream,
            &server,
            &events,
            endpoints.clone(),
            connection.id,
        )
        .await?;
        Some((stream, handshake))
    };
    // Boxed: its state (TLS, the request, the waits for a pending place and
    // for Python) is freed once the handshake is over, rather than kept in
    // this task, whose size every idle connection pays (3.8 KiB to 2.0).
    let opened = Box::pin(runtime::within(handshake_timeout, opening)).await;
    let Some(Some((stream, handshake))) = opened else {
        return;
    };
    drop(permit);
    // Dropped like a failed handshake: Python never heard of it.
    let Ok((stream, socket)) = stream.into_running() else {
        return;
    };
    let opened = announce(&server, &connection, &events, endpoints, handshake, socket);
    let id = connection.id;
    task::run(stream, opened, connection, commands, events.for_id(id)).await;
    server.clients_map().remove(id);
    // After the removal: a join that comes later finds the client gone.
    server.regrouped(server.groups.leave_all(id));
}

/// Tells Python of a client whose handshake is done, and gives what its
/// connection starts with. Apart from `serve`, so that what only this needs
/// (the request's remains) is not kept in the connection's state for its
/// whole life.
fn announce(
    server: &Server,
    connection: &Arc<Connection>,
    events: &EventSink,
    endpoints: Endpoints,
    handshake: Handshake,
    socket: Option<std::os::fd::RawFd>,
) -> Opened {
    let Handshake {
        request,
        received,
        negotiated,
        compression,
        place,
    } = handshake;
    if let (Some((_, agreed)), Some(config)) = (&compression, &server.config().compression) {
        connection.set_compression(*agreed, config.level);
    }
    let settings = server.config().settings.clone();
    connection.set_frame_size(settings.outgoing_frame_size);
    connection.set_open(true);
    server.clients_map().insert(connection);
    let host = request.header("Host").unwrap_or_default();
    let scheme = if server.tls.is_some() { "wss" } else { "ws" };
    let requested = request.subprotocols();
    events.send(Event::ClientConnected(Box::new(Accepted {
        connection: Arc::clone(connection),
        url: format!("{scheme}://{host}{}", request.target),
        requested_subprotocols: requested,
        negotiated_subprotocol: negotiated.unwrap_or_default(),
        extensions: compression
            .as_ref()
            .map(|(e, _)| e.clone())
            .unwrap_or_default(),
        resource_name: request.target,
        headers: request.headers,
        endpoints,
        pending: place.hand_over(),
    })));
    // A stop that raced with this handshake did not see this client.
    if server.stopped() {
        connection.close(CloseCode::GOING_AWAY.0, String::new());
    }
    Opened {
        settings,
        received,
        socket,
        compression: compression.map(|(_, agreed)| agreed),
    }
}

/// A server's half of the opening handshake, done.
struct Handshake {
    request: Request,
    /// What came after the request.
    received: BytesMut,
    /// The chosen subprotocol.
    negotiated: Option<String>,
    /// The permessage-deflate response, and what it agreed to.
    compression: Option<(String, Negotiated)>,
    /// The connection's place among the pending ones.
    place: PendingPlace,
}

/// The server's half of the opening handshake; None once a bad or refused
/// request got its HTTP error, or the client went away.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    server: &Server,
    events: &EventSink,
    endpoints: Endpoints,
    connection: u64,
) -> Option<Handshake> {
    let (name, http_config) = {
        let config = server.config();
        (config.name.clone(), config.http.clone())
    };
    let (head, received) = match read_head(stream, MAX_HANDSHAKE_SIZE).await {
        Ok(Some(read)) => read,
        Ok(None) => {
            let too_large =
                Rejection::new(431, format!("request head over {MAX_HANDSHAKE_SIZE} bytes"));
            return refuse(stream, too_large, &name).await;
        }
        // Answered at once, so that a wss:// client learns its mistake now,
        // not at its handshake timeout: it reads HTTP where it expects TLS.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            let not_http = Rejection::new(400, "not an HTTP request (TLS to a ws:// server?)");
            return refuse(stream, not_http, &name).await;
        }
        Err(_) => return None,
    };
    // A plain request, or an upgrade a handler refuses, ends here.
    let received = http::serve(
        stream,
        &head,
        received,
        &http_config,
        &name,
        endpoints,
        connection,
        events,
    )
    .await?;
    let request = match handshake::parse_request(&head) {
        Ok(request) => request,
        Err(rejection) => return refuse(stream, rejection, &name).await,
    };
    if !origin_allowed(server, events, request.header("Origin").unwrap_or_default()).await {
        events.send(Event::ServerError(CloseCode::POLICY_VIOLATION));
        return refuse(stream, Rejection::new(403, "origin not allowed"), &name).await;
    }
    let (max_pending, handshake_timeout) = {
        let config = server.config();
        (config.max_pending, config.handshake_timeout)
    };
    // Within the handshake timeout, with time left to say 503.
    let wait = handshake_timeout.map_or(PENDING_WAIT, |limit| PENDING_WAIT.min(limit / 2));
    let mut control = server.control.subscribe();
    let stopped = async move {
        let _ = control.wait_for(|c| c.stopped).await;
    };
    let place = tokio::select! {
        biased;
        place = PendingPlace::wait_for(&server.pending, max_pending, wait) => Ok(place),
        () = stopped => Err(()),
    };
    // A server that stops takes no more connections: its waiting clients
    // learn it now, not when their wait runs out.
    let Ok(place) = place else {
        let stopping = Rejection::new(503, "the server is stopping");
        return refuse(stream, stopping, &name).await;
    };
    let Some(place) = place else {
        events.send(Event::ServerError(CloseCode::ABNORMAL_CLOSURE));
        let busy = Rejection::new(503, "too many pending connections; try again later");
        return refuse(stream, busy, &name).await;
    };
    let (negotiated, compression) = {
        let config = server.config();
        let negotiated = subprotocol::choose(&request.subprotocols(), &config.subprotocols);
        let compression = config
            .compression
            .as_ref()
            .and_then(|c| deflate::accept(&request.extension_offers(), c));
        (negotiated, compression)
    };
    let extensions = compression.as_ref().map(|(e, _)| e.as_str());
    let response = handshake::accept_response(&request, negotiated.as_deref(), extensions, &name);
    // Should this fail or time out, the place goes back as `place` drops.
    stream.write_all(&response).await.ok()?;
    Some(Handshake {
        request,
        received,
        negotiated,
        compression,
        place,
    })
}

async fn origin_allowed(server: &Server, events: &EventSink, origin: &str) -> bool {
    let ask = {
        let config = server.config();
        if let Some(allowed) = &config.allowed_origins {
            if !allowed.iter().any(|a| a == origin) {
                return false;
            }
        }
        config.ask_origin
    };
    if !ask {
        return true;
    }
    // The handshake timeout bounds the wait for Python.
    let (question, answer) = Question::new(origin.to_string(), true);
    events.send(Event::OriginCheck(question));
    answer.await.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::event::EventQueue;
    use tokio::io::AsyncReadExt;
    use tokio::time::timeout;

    fn config(max_pending: usize) -> ServerConfig {
        ServerConfig {
            name: String::new(),
            subprotocols: Vec::new(),
            allowed_origins: None,
            ask_origin: false,
            handshake_timeout: Some(Duration::from_secs(10)),
            max_pending,
            backlog: crate::config::LISTEN_BACKLOG,
            reuse_port: false,
            settings: Settings::default(),
            compression: None,
            http: HttpConfig::default(),
        }
    }

    /// A server that is not listening: only its handshakes are tried.
    fn server(max_pending: usize) -> Server {
        let (control, _) = watch::channel(Control {
            accepting: true,
            stopped: false,
        });
        Server {
            id: next_id(),
            port: 0,
            config: Mutex::new(config(max_pending)),
            control,
            clients: Mutex::default(),
            pending: Arc::default(),
            handshakes: Arc::new(Semaphore::new(1)),
            tls: None,
            groups: Arc::default(),
            broker: Mutex::new(None),
            events: EventQueue::new(false).unwrap().sink(1),
            unix_file: None,
        }
    }

    const NO_ENDPOINTS: Endpoints = Endpoints {
        peer: None,
        local: None,
    };

    const REQUEST: &[u8] = b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n";

    /// A handshake whose 101 response cannot be written (the client reads
    /// nothing and the pipe holds less than the response) times out, and
    /// its pending place comes back: before, each such client took one for
    /// good, and after `max_pending_connections` of them every client was
    /// answered 503.
    #[tokio::test]
    async fn a_handshake_that_times_out_while_answering_gives_its_pending_place_back() {
        let queue = EventQueue::new(false).unwrap();
        let events = queue.sink(1);
        let server = server(1);
        for _ in 0..3 {
            let (mut ours, mut client) = tokio::io::duplex(16);
            // The request is read 16 bytes at a time while the client writes it.
            let writing = tokio::spawn(async move {
                client.write_all(REQUEST).await.unwrap();
                client
            });
            let done = timeout(
                Duration::from_millis(200),
                handshake(&mut ours, &server, &events, NO_ENDPOINTS, 0),
            )
            .await;
            assert!(done.is_err(), "the 101 response cannot be written");
            assert_eq!(server.pending.count(), 0);
            drop(writing.await.unwrap());
        }
    }

    /// The server's handshake with a client that sends `REQUEST` and reads
    /// the whole response.
    async fn answer(server: &Server, events: &EventSink) -> (Option<Handshake>, String) {
        let (mut ours, mut client) = tokio::io::duplex(4096);
        client.write_all(REQUEST).await.unwrap();
        let done = handshake(&mut ours, server, events, NO_ENDPOINTS, 0).await;
        drop(ours);
        let mut response = String::new();
        client.read_to_string(&mut response).await.unwrap();
        (done, response)
    }

    /// A handshake that completes keeps its place until Python takes the
    /// connection; a handshake over the bound waits for a place, and is
    /// refused with 503 if none comes within `PENDING_WAIT`.
    #[tokio::test(start_paused = true)]
    async fn pending_places_are_bounded_and_kept_until_handed_over() {
        let queue = EventQueue::new(false).unwrap();
        let events = queue.sink(1);
        let server = Arc::new(server(1));
        let (first, response) = answer(&server, &events).await;
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        let first = first.expect("the first handshake succeeds");
        assert_eq!(server.pending.count(), 1);
        // Virtual time: the wait runs out without anyone taking the first.
        let (second, response) = answer(&server, &events).await;
        assert!(second.is_none());
        assert!(response.starts_with("HTTP/1.1 503"), "{response}");
        let pending = first.place.hand_over();
        assert_eq!(pending.count(), 1, "kept for Python");
        // A handshake that waits gets the place Python frees meanwhile.
        let third = tokio::spawn({
            let server = Arc::clone(&server);
            let events = events.clone();
            async move { answer(&server, &events).await }
        });
        tokio::task::yield_now().await;
        pending.leave();
        let (third, response) = third.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        assert!(third.is_some());
    }
}
