//! The tokio task of one open connection: the I/O around its
//! [`Session`](crate::protocol::Session). It writes what is queued (see
//! [`writer`](super::writer)), reads the socket while no Python thread does
//! (TLS, or a thread that is away; see [`receiver`](super::receiver)),
//! carries out Python's commands, keeps the session's time, and tells Python
//! how the connection ended.

use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};

use super::commands::{Command, CommandReceiver};
use super::connection::Connection;
use super::event::{Event, EventSink};
use super::receiver::{self, Received, Receiver, ReceiverSlot};
use super::settings::Settings;
use super::writer;
use crate::config::{FAILURE_ANSWER_WAIT, FAILURE_LINGER};
use crate::protocol::deflate::Negotiated;
use crate::protocol::session::End;
use crate::protocol::{Failure, Parser};

/// Commands a connection handles in one pass before it reads again.
const COMMAND_BATCH: usize = 256;

/// What a connection starts with once its opening handshake is over.
pub struct Opened {
    pub settings: Settings,
    /// Bytes that arrived with the opening handshake.
    pub received: BytesMut,
    /// The plain TCP socket under the stream, which the Python thread reads
    /// and sending threads may write to (see [`outbox`](super::outbox));
    /// None over TLS.
    pub socket: Option<RawFd>,
    /// What permessage-deflate the handshake agreed to, if any.
    pub compression: Option<Negotiated>,
}

/// Runs an open connection until it is over, then sends `Event::Closed`.
pub async fn run<S>(
    stream: S,
    opened: Opened,
    connection: Arc<Connection>,
    mut commands: CommandReceiver,
    events: EventSink,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // A connection runs once: the queue is taken unless this is a second run.
    if !connection.outbox.claim_writer() {
        return;
    }
    let Opened {
        mut settings,
        received,
        socket,
        compression,
    } = opened;
    connection
        .session()
        .configure(settings.timers, std::time::Instant::now());
    let (mut reader, writer) = tokio::io::split(stream);
    // The task's while it reads; the Python thread's (in the receiver slot)
    // while that thread reads a plain TCP socket, unless lent back.
    let mut local = Some(receiver_for(&connection, &settings, received, compression));
    let mut direct = socket.map(|fd| (fd, events.lending()));
    let mut watched = false;
    // The plain socket's readiness while the task reads it.
    let mut readable = None;
    connection.outbox.attach(socket);
    let writing = writer::write(writer, &connection, &events);
    tokio::pin!(writing);
    // A finished future must not be polled again.
    let mut writer_done = false;
    // One timer for the connection's life, moved only when the deadline
    // does: a timer made anew each pass cost a trip through tokio's timer
    // wheel, under its lock, for every message.
    let timer = sleep_until(Instant::now());
    tokio::pin!(timer);
    // A broken rule, read while what came before it is being handled.
    let mut failing: Option<Failing> = None;
    let end = 'run: loop {
        if let Some(receiver) = local.as_mut().filter(|_| failing.is_none()) {
            receiver.parser.frames = connection.report_frames();
            loop {
                match receiver.parser.next_event() {
                    Ok(Some(incoming)) => {
                        if let Some(end) = connection.incoming(incoming, &events) {
                            break 'run end;
                        }
                    }
                    Ok(None) => break,
                    Err(failure) => {
                        failing = Some(Failing::new(failure, &events));
                        break;
                    }
                }
            }
            receiver.prepare(&events);
        }
        let paused = connection.reading_paused();
        if let Some((fd, lending)) = direct.as_mut() {
            let slot = connection
                .receiver_slot
                .get_or_init(|| ReceiverSlot::new(*fd));
            // Paused, the Python thread's poller forgets the socket (or its
            // end would be reported again and again), and the receiver
            // stays where it is: nobody reads. A program that takes its
            // messages as fast as they come pauses and resumes every few
            // dozen, and moving the receiver to the task and back cost
            // each time a registration of the socket with tokio.
            // (The Python thread follows a pause of its own making itself
            // while it holds the receiver; see `Connection::pause_reading`.)
            let lent = *lending.borrow_and_update() || (paused && !watched);
            if watched
                && slot
                    .follow_pause(|| connection.reading_paused(), &connection.outbox)
                    .is_err()
            {
                // The poller refused it: the task reads, as over TLS.
                watched = false;
                local = local.or_else(|| slot.take());
                direct = None;
                continue;
            }
            if lent && local.is_none() {
                local = slot.take();
                if local.is_some() {
                    // The writer writes what the Python thread held, too.
                    connection.outbox.unwatch();
                    // Parsed and prepared at the top, as the task's own.
                    continue;
                }
            } else if !lent && local.is_some() {
                if let Some(receiver) = local.take() {
                    slot.put(receiver);
                }
                if watched {
                    if !slot.out_of_poller() {
                        connection.watch_writes(&events);
                    }
                } else {
                    watched = connection.watch(*fd, &events);
                    if !watched {
                        // The poller refused it: the task reads, as over TLS.
                        local = slot.take();
                        direct = None;
                    }
                }
            }
        }
        match (socket, &local) {
            (Some(fd), Some(_)) if readable.is_none() => match receiver::readiness(fd) {
                Ok(io) => readable = Some(io),
                Err(e) => break lost(e),
            },
            (_, None) => readable = None,
            _ => {}
        }
        let room = events.has_room();
        let deadline = connection.session().deadline().map(Instant::from_std);
        if let Some(at) = deadline.filter(|&at| timer.deadline() != at) {
            timer.as_mut().reset(at);
        }
        tokio::select! {
            biased;
            written = &mut writing => {
                writer_done = true;
                break match written {
                    Err(e) => lost(e),
                    Ok(()) => connection.session().eof(),
                };
            }
            command = commands.recv() => {
                // Whatever else is queued is handled in the same pass (up to a
                // bound, for fairness to reading), so that a burst of pings or
                // of what the Python thread read costs one trip through this
                // loop, not one each.
                let mut next = Some(command);
                let mut handled = 0;
                let ended = loop {
                    let Some(command) = next.take() else { break None };
                    let end = carry_out(command, &connection, &mut settings, &mut local, &mut failing, &events);
                    if end.is_some() {
                        break end;
                    }
                    handled += 1;
                    if handled < COMMAND_BATCH {
                        next = commands.try_recv();
                    }
                };
                if let Some(end) = ended {
                    break end;
                }
            },
            () = answered(failing.as_mut()) => {
                if let Some(failing) = failing.take() {
                    break fail(&connection, failing.failure, &events);
                }
            }
            read = read_some(&mut reader, readable.as_ref(), local.as_deref_mut()), if room && !paused && local.is_some() && failing.is_none() => match read {
                Ok(0) => break connection.session().eof(),
                Ok(read) => {
                    if let Some(receiver) = local.as_mut() {
                        receiver.received(read, &events);
                    }
                }
                Err(e) => break lost(e),
            },
            () = lending_changed(direct.as_mut().map(|(_, lending)| lending)) => {}
            () = events.wait_for_room(), if !room => {}
            () = &mut timer, if deadline.is_some() => {
                let mut session = connection.session();
                let end = session.timer(std::time::Instant::now());
                connection.carry_out(&mut session, &events);
                if let Some(end) = end {
                    break end;
                }
            }
        }
    };
    connection.set_open(false);
    // The Python thread stops reading before the socket is closed.
    if let Some((fd, _)) = direct {
        // Taken first: a pause's end on the Python thread then leaves the
        // poller alone.
        if let Some(slot) = connection.receiver_slot.get() {
            slot.take();
        }
        if watched {
            events.unwatch(fd);
        }
    }
    // Lets the writer send what is queued (our close frame) and close its
    // side, unless the connection is to be dropped at once.
    connection.outbox.detach();
    let linger = linger(&end, settings.timers.close_timeout);
    if !linger.is_zero() && !writer_done {
        let _ = timeout(linger, &mut writing).await;
    }
    let outcome = connection.session().outcome(end);
    events.send(Event::Closed(Box::new(outcome)));
}

/// The connection's receiver, with the bytes that came after the opening
/// handshake. Made outside `run`, whose state lives as long as the
/// connection: neither the parser it is built from nor the handshake's read
/// buffer (1 KiB, usually empty by now) stays in it; boxed, so that the
/// task and the receiver slot each keep a pointer's room for it, not the
/// receiver's.
fn receiver_for(
    connection: &Connection,
    settings: &Settings,
    received: BytesMut,
    compression: Option<Negotiated>,
) -> Box<Receiver> {
    let mut parser = Parser::new(connection.role, settings.limits);
    if let Some(negotiated) = compression {
        parser.set_decompressor(negotiated.decompressor());
    }
    parser.buffer().extend_from_slice(&received);
    Box::new(Receiver::new(parser))
}

/// Carries out one command; returns the end of the connection if it came.
fn carry_out(
    command: Command,
    connection: &Connection,
    settings: &mut Settings,
    local: &mut Option<Box<Receiver>>,
    failing: &mut Option<Failing>,
    events: &EventSink,
) -> Option<End> {
    if let Command::Configure(new) = &command {
        // Before the session's lock: the Python thread takes the slot's
        // lock, then the session's, when it reads a control frame.
        let limits = new.limits;
        match (local.as_mut(), connection.receiver_slot.get()) {
            (Some(receiver), _) => receiver.parser.set_limits(limits),
            (None, Some(slot)) => slot.with_parser(|parser| parser.set_limits(limits)),
            (None, None) => {}
        }
    }
    let now = std::time::Instant::now();
    let mut session = connection.session();
    let end = match command {
        Command::Ping(payload) => {
            session.ping(payload, now);
            None
        }
        Command::Close(code, reason) => {
            session.close(code, &reason, now);
            None
        }
        Command::Abort => Some(End::Aborted),
        Command::Configure(new) => {
            session.configure(new.timers, now);
            *settings = new;
            None
        }
        Command::Received(Received::Eof) => Some(session.eof()),
        Command::Received(Received::Lost(e)) => Some(lost(e)),
        Command::Received(Received::Failed(failure)) => {
            if failing.is_none() {
                *failing = Some(Failing::new(failure, events));
            }
            None
        }
        Command::Ended(end) => Some(end),
        Command::Wake => {
            connection.woken();
            None
        }
    };
    connection.carry_out(&mut session, events);
    end
}

/// A broken rule read, and the wait for Python to handle the messages that
/// came before it, so that the answers to them go out before our close frame
/// (see [`FAILURE_ANSWER_WAIT`]). Nothing is read meanwhile.
struct Failing {
    failure: Failure,
    handled: oneshot::Receiver<()>,
    until: Instant,
}

impl Failing {
    fn new(failure: Failure, events: &EventSink) -> Self {
        let (fence, handled) = oneshot::channel();
        events.send(Event::Fence(fence));
        Failing {
            failure,
            handled,
            until: Instant::now() + FAILURE_ANSWER_WAIT,
        }
    }
}

/// Ready when Python handled what came before the broken rule, or has had
/// long enough; never ready without one.
async fn answered(failing: Option<&mut Failing>) {
    match failing {
        Some(failing) => {
            let _ = timeout_at(failing.until, &mut failing.handled).await;
        }
        None => std::future::pending().await,
    }
}

/// Fails the connection for a broken rule.
fn fail(connection: &Connection, failure: Failure, events: &EventSink) -> End {
    let mut session = connection.session();
    let end = session.fail(failure, std::time::Instant::now());
    connection.carry_out(&mut session, events);
    end
}

/// Reads what came, if the task has the receiver: from the plain socket
/// when it has its readiness, else from the stream; never ready otherwise.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    readable: Option<&AsyncFd<OwnedFd>>,
    receiver: Option<&mut Receiver>,
) -> std::io::Result<usize> {
    match (receiver, readable) {
        (Some(receiver), Some(io)) => receiver.read_socket(io).await,
        (Some(receiver), None) => receiver.read(reader).await,
        (None, _) => std::future::pending().await,
    }
}

/// Ready when the queue's thread lends its sockets or takes them back.
async fn lending_changed(lending: Option<&mut watch::Receiver<bool>>) {
    if let Some(lending) = lending {
        if lending.changed().await.is_ok() {
            return;
        }
    }
    // No socket to lend, or no queue any more: nothing changes.
    std::future::pending().await
}

/// How long the writer may go on once the connection ended, to send what
/// is queued (our close frame) before the socket is closed.
fn linger(end: &End, close_timeout: Duration) -> Duration {
    match end {
        End::Closed => close_timeout,
        // 1006 sends no close frame: nothing is owed to a peer that went
        // away or let the close timeout pass, and close() promised no more.
        End::Failed(failure) if !failure.is_sent() => Duration::ZERO,
        End::Failed(_) => FAILURE_LINGER,
        End::Aborted => Duration::ZERO,
    }
}

fn lost(e: std::io::Error) -> End {
    End::Failed(Failure::abnormal(format!("connection lost: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::event::{summary, EventQueue};
    use crate::protocol::Role;
    use bytes::Bytes;

    /// A peer that let the close timeout pass is dropped then, however
    /// much is still queued for it: close() is bounded by close_timeout.
    #[test]
    fn only_a_close_frame_to_send_is_lingered_for() {
        let close_timeout = Duration::from_secs(10);
        let timed_out = End::Failed(Failure::abnormal("close timeout"));
        assert_eq!(linger(&timed_out, close_timeout), Duration::ZERO);
        assert_eq!(
            linger(
                &lost(std::io::ErrorKind::ConnectionReset.into()),
                close_timeout
            ),
            Duration::ZERO
        );
        let broke = End::Failed(Failure::new(
            crate::protocol::CloseCode::PROTOCOL_ERROR,
            "bad frame",
        ));
        assert_eq!(linger(&broke, close_timeout), FAILURE_LINGER);
        assert_eq!(linger(&End::Closed, close_timeout), close_timeout);
        assert_eq!(linger(&End::Aborted, close_timeout), Duration::ZERO);
    }

    fn opened() -> Opened {
        Opened {
            settings: Settings::default(),
            received: BytesMut::new(),
            socket: None,
            compression: None,
        }
    }

    /// Waits until `queue` has given `count` events, gathering them.
    async fn gather(queue: &Arc<EventQueue>, count: usize) -> Vec<(u64, String)> {
        let mut all = Vec::new();
        while all.len() < count {
            all.extend(summary(queue));
            tokio::task::yield_now().await;
        }
        all
    }

    /// A message and then a broken frame in one read: the message's answer
    /// goes out before the close frame, which waits for Python to let go of
    /// the fence that follows the message.
    #[tokio::test]
    async fn a_broken_frame_fails_after_the_answer_to_the_message_before_it() {
        use crate::protocol::{Framer, Incoming};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (mut peer, ours) = tokio::io::duplex(1 << 16);
        let queue = EventQueue::new(false).unwrap();
        let (server, server_rx) = Connection::new(Role::Server);
        server.set_open(true);
        let task = tokio::spawn(run(
            ours,
            opened(),
            server.clone(),
            server_rx,
            queue.sink(server.id),
        ));
        let mut sent = BytesMut::new();
        Framer::new(Role::Client).frame(&mut sent, 1, true, b"before");
        // Opcode 5 is reserved: masked, empty.
        sent.extend_from_slice(&[0x85, 0x80, 1, 2, 3, 4]);
        peer.write_all(&sent).await.unwrap();

        let (mut text, mut fence) = (None, None);
        while fence.is_none() {
            for (_, event) in queue.take().into_events() {
                match event {
                    Event::Text(t) => text = Some(t.as_str().to_string()),
                    Event::Fence(f) => fence = Some(f),
                    _ => {}
                }
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(text.as_deref(), Some("before"));
        // The handler's echo, sent while Python holds the fence.
        server.send(true, Bytes::from_static(b"echo")).unwrap();
        async fn next(parser: &mut Parser, peer: &mut tokio::io::DuplexStream) -> Incoming {
            loop {
                if let Some(incoming) = parser.next_event().unwrap() {
                    return incoming;
                }
                let mut chunk = [0u8; 256];
                let read = peer.read(&mut chunk).await.unwrap();
                assert!(read > 0, "the connection ended first");
                parser.buffer().extend_from_slice(&chunk[..read]);
            }
        }
        let mut parser = Parser::new(Role::Client, Settings::default().limits);
        let echo = next(&mut parser, &mut peer).await;
        assert!(matches!(echo, Incoming::Text(t) if t.as_str() == "echo"));
        drop(fence);
        let close = next(&mut parser, &mut peer).await;
        assert!(matches!(close, Incoming::Close(Some((1002, _)))));
        timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
    }

    /// A client and a server over an in-memory pipe: a message each way,
    /// a ping, then the closing handshake started by the client.
    #[tokio::test]
    async fn two_connections_talk_ping_and_close() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let queue = EventQueue::new(false).unwrap();
        let (client, client_rx) = Connection::new(Role::Client);
        let (server, server_rx) = Connection::new(Role::Server);
        client.set_open(true);
        server.set_open(true);
        let (c_id, s_id) = (client.id, server.id);
        let c = tokio::spawn(run(
            a,
            opened(),
            client.clone(),
            client_rx,
            queue.sink(c_id),
        ));
        let s = tokio::spawn(run(
            b,
            opened(),
            server.clone(),
            server_rx,
            queue.sink(s_id),
        ));
        client.send(true, Bytes::from_static(b"hi")).unwrap();
        server.send(false, Bytes::from_static(b"yo")).unwrap();
        client.ping(Bytes::from_static(b"p")).unwrap();
        let mut log = gather(&queue, 3).await;
        client.close(4000, "done".into());
        timeout(Duration::from_secs(5), c).await.unwrap().unwrap();
        timeout(Duration::from_secs(5), s).await.unwrap().unwrap();
        log.extend(summary(&queue));
        for expected in [
            (s_id, "text hi"),
            (c_id, "binary yo"),
            (c_id, "pong p"),
            (s_id, "closing"),
            (c_id, "closed 4000 done"),
            (s_id, "closed 4000 done"),
        ] {
            assert!(
                log.contains(&(expected.0, expected.1.to_string())),
                "{expected:?} in {log:?}"
            );
        }
    }
}
