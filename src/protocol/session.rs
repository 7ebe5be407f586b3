//! The life of an open connection as a state machine: the closing
//! handshake, pings and their pongs, and keepalive.
//!
//! A [`Session`] takes what happened — a control frame from the peer, the
//! user's `ping()` or `close()`, the time — and gives back what to do: frames
//! to send and things to report, in [`Session::output`], and, once the
//! connection is over, an [`End`]. It never reads a clock: every call that
//! depends on time is given `now`, so that the tests below run without
//! sockets or sleeps, as websockets' sans-I/O `Protocol` does.
//!
//! Data messages do not pass through here: the parser hands them to Python
//! directly, and only control frames come to the session.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::close::{CloseCode, Failure};
use super::framer::Framer;
use super::parser::Incoming;
use super::{opcode, Role};
use crate::config::MAX_UNSENT_PONGS;

/// The waits of a session, each a property of the Python socket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timers {
    /// How often a keepalive ping goes out; None sends none.
    pub ping_interval: Option<Duration>,
    /// How long a keepalive ping may wait for its pong; None waits for ever.
    pub ping_timeout: Option<Duration>,
    /// How long the peer has to finish the closing handshake.
    pub close_timeout: Duration,
}

/// What the session asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A frame to write after everything written before (a ping).
    Frame(Bytes),
    /// A pong to write after everything written before; the driver calls
    /// [`Session::pongs_written`] once it is out. While
    /// [`MAX_UNSENT_PONGS`] are unsent, later pings are answered only with
    /// the latest of them.
    PongFrame(Bytes),
    /// Our close frame (or our echo of the peer's): the last frame we send.
    CloseFrame(Bytes),
    /// The peer started the closing handshake (Qt's `aboutToClose`).
    Closing,
    /// A pong came: for a ping of the user's, `elapsed` after it; for an
    /// unsolicited one, zero (Qt reports those too).
    Pong { elapsed: Duration, payload: Bytes },
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The closing handshake is complete.
    Closed,
    /// The peer broke the protocol, stopped answering, or went away.
    Failed(Failure),
    /// The user dropped the connection, or let go of it.
    Aborted,
}

/// What Python hears of an [`End`]: the close code, the reason, and the
/// sentence for `error_string` when it failed; and the close frames that
/// went each way, which websockets' `ConnectionClosed` carries as `rcvd`
/// and `sent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: CloseCode,
    pub reason: String,
    pub error: Option<String>,
    /// The peer's close frame, if one came: 1005 for one without a code.
    pub received: Option<(u16, String)>,
    /// Our close frame, or our echo of the peer's, if it went out.
    pub sent: Option<(u16, String)>,
    /// Whether the peer's close frame came before ours went out.
    pub received_first: bool,
}

/// A sent ping awaiting its pong.
#[derive(Debug)]
struct Ping {
    payload: Bytes,
    sent: Instant,
    /// Sent by `ping()`, as opposed to keepalive.
    by_user: bool,
}

/// One open connection's closing handshake, pings and keepalive.
#[derive(Debug)]
pub struct Session {
    role: Role,
    timers: Timers,
    framer: Framer,
    /// Our close frame (or our echo of the peer's) is out.
    close_sent: bool,
    /// Its code and reason (1005 for a frame without a code), for [`Outcome`].
    sent_close: Option<(u16, String)>,
    /// The peer's close frame once it came: its code and reason, or None
    /// when it had no code.
    peer_close: Option<Option<(u16, String)>>,
    /// The peer's close frame came before ours went out.
    peer_closed_first: bool,
    /// When to give up on the closing handshake.
    close_deadline: Option<Instant>,
    /// Pings awaiting their pong, oldest first.
    pings: VecDeque<Ping>,
    next_keepalive: Option<Instant>,
    /// Keepalive pings sent: the next one's payload, unique per connection.
    keepalives: u32,
    /// The round trip of the last ping answered, keepalive's or the user's
    /// (websockets' `latency`); zero before the first.
    latency: Duration,
    /// Our pongs not written yet.
    pongs_unsent: usize,
    /// The payload of the latest ping that came while [`MAX_UNSENT_PONGS`]
    /// were unsent, answered once one of them is out: a peer that pings
    /// and never reads makes us hold a few pongs, not one per ping (§5.5.3
    /// allows answering only the most recent ping).
    next_pong: Option<Bytes>,
    output: VecDeque<Output>,
}

impl Session {
    pub fn new(role: Role, timers: Timers, now: Instant) -> Self {
        Session {
            role,
            timers,
            framer: Framer::new(role),
            close_sent: false,
            sent_close: None,
            peer_close: None,
            peer_closed_first: false,
            close_deadline: None,
            pings: VecDeque::new(),
            next_keepalive: timers.ping_interval.map(|i| now + i),
            keepalives: 0,
            latency: Duration::ZERO,
            pongs_unsent: 0,
            next_pong: None,
            output: VecDeque::new(),
        }
    }

    /// New waits, from now on.
    pub fn configure(&mut self, timers: Timers, now: Instant) {
        self.timers = timers;
        self.next_keepalive = timers.ping_interval.map(|i| now + i);
    }

    /// What to do, in order; taken by the driver after each call.
    pub fn output(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.output.drain(..)
    }

    /// Whether our close frame is out: nothing but it may be the last frame.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// The round trip of the last ping answered; zero before the first.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// The user's `ping()`; ignored once we close.
    pub fn ping(&mut self, payload: Bytes, now: Instant) {
        if !self.close_sent {
            self.send_ping(payload, now, true);
        }
    }

    /// The user's `close()`: starts the closing handshake, once.
    pub fn close(&mut self, code: u16, reason: &str, now: Instant) {
        self.send_close(Some((code, reason)), now);
    }

    /// Fails the connection: tells the peer why when the code is one that
    /// is sent, and ends.
    pub fn fail(&mut self, failure: Failure, now: Instant) -> End {
        if failure.is_sent() {
            self.send_close(Some((failure.code.0, "")), now);
        }
        End::Failed(failure)
    }

    /// A control frame from the peer; data never comes here. Returns the
    /// end once the closing handshake is over for our role.
    pub fn received(&mut self, incoming: Incoming, now: Instant) -> Option<End> {
        match incoming {
            Incoming::Ping(payload) => {
                if self.pongs_unsent < MAX_UNSENT_PONGS {
                    self.send_pong(&payload);
                } else {
                    self.next_pong = Some(payload);
                }
                None
            }
            Incoming::Pong(payload) => {
                self.pong(payload, now);
                None
            }
            Incoming::Close(frame) => {
                if !self.close_sent {
                    self.peer_closed_first = true;
                    self.output.push_back(Output::Closing);
                    // Echo the frame, as §5.5.1 asks (and websockets does).
                    let echo = frame
                        .as_ref()
                        .map(|(code, reason)| (*code, reason.as_str()));
                    self.send_close(echo, now);
                }
                self.peer_close = Some(frame);
                // The server closes the TCP connection first (§7.1.1); a
                // client waits for it, up to the close timeout.
                match self.role {
                    Role::Server => Some(End::Closed),
                    Role::Client => None,
                }
            }
            _ => None,
        }
    }

    /// The peer closed the TCP connection.
    pub fn eof(&self) -> End {
        if self.peer_close.is_some() {
            End::Closed
        } else {
            End::Failed(Failure::abnormal(
                "connection lost: the peer closed the connection without a close frame",
            ))
        }
    }

    /// The next moment something must happen without the peer: a keepalive
    /// ping, a pong deadline, or the end of the closing handshake.
    pub fn deadline(&self) -> Option<Instant> {
        let pong_due = self
            .timers
            .ping_timeout
            .and_then(|t| self.pings.iter().find(|p| !p.by_user).map(|p| p.sent + t));
        let keepalive = if self.close_sent {
            None
        } else {
            self.next_keepalive
        };
        [pong_due, keepalive, self.close_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Time passed: sends a keepalive ping that is due, or ends the
    /// connection whose peer let a deadline pass.
    pub fn timer(&mut self, now: Instant) -> Option<End> {
        if self.close_deadline.is_some_and(|d| now >= d) {
            if self.peer_close.is_some() {
                // The handshake is complete; only the server's TCP close is late.
                return Some(End::Closed);
            }
            return Some(End::Failed(Failure::abnormal(format!(
                "close timeout: the peer did not finish the closing handshake within {} s",
                self.timers.close_timeout.as_secs_f64()
            ))));
        }
        if let Some(timeout) = self.timers.ping_timeout {
            if self
                .pings
                .iter()
                .any(|p| !p.by_user && now >= p.sent + timeout)
            {
                return Some(self.fail(
                    Failure::new(
                        CloseCode::INTERNAL_ERROR,
                        format!(
                            "keepalive ping timeout: no pong within {} s",
                            timeout.as_secs_f64()
                        ),
                    ),
                    now,
                ));
            }
        }
        if let (Some(due), Some(interval)) = (self.next_keepalive, self.timers.ping_interval) {
            if now >= due && !self.close_sent {
                self.keepalives = self.keepalives.wrapping_add(1);
                let payload = Bytes::copy_from_slice(&self.keepalives.to_be_bytes());
                self.send_ping(payload, now, false);
                self.next_keepalive = Some(now + interval);
            }
        }
        None
    }

    /// What Python hears of `end`.
    pub fn outcome(&mut self, end: End) -> Outcome {
        let received = self
            .peer_close
            .take()
            .map(|frame| frame.unwrap_or((CloseCode::NO_STATUS_RECEIVED.0, String::new())));
        let (code, reason, error) = match end {
            End::Closed => match &received {
                Some((code, reason)) => (CloseCode(*code), reason.clone(), None),
                None => (CloseCode::NO_STATUS_RECEIVED, String::new(), None),
            },
            End::Failed(Failure { code, message }) => (code, String::new(), Some(message)),
            End::Aborted => (CloseCode::ABNORMAL_CLOSURE, String::new(), None),
        };
        Outcome {
            code,
            reason,
            error,
            received_first: received.is_some() && self.peer_closed_first,
            received,
            sent: self.sent_close.take(),
        }
    }

    fn send_control(&mut self, op: u8, payload: &[u8]) {
        let mut bytes = BytesMut::new();
        self.framer.frame(&mut bytes, op, true, payload);
        self.output.push_back(Output::Frame(bytes.freeze()));
    }

    /// `count` of our pongs are written: the latest ping held back, if
    /// any, is answered.
    pub fn pongs_written(&mut self, count: usize) {
        self.pongs_unsent = self.pongs_unsent.saturating_sub(count);
        if self.pongs_unsent < MAX_UNSENT_PONGS {
            if let Some(payload) = self.next_pong.take() {
                self.send_pong(&payload);
            }
        }
    }

    fn send_pong(&mut self, payload: &[u8]) {
        // After our close frame nothing may follow it (§5.5.1).
        if self.close_sent {
            return;
        }
        let mut bytes = BytesMut::new();
        self.framer.frame(&mut bytes, opcode::PONG, true, payload);
        self.output.push_back(Output::PongFrame(bytes.freeze()));
        self.pongs_unsent += 1;
    }

    fn send_ping(&mut self, payload: Bytes, now: Instant, by_user: bool) {
        self.send_control(opcode::PING, &payload);
        self.pings.push_back(Ping {
            payload,
            sent: now,
            by_user,
        });
    }

    fn send_close(&mut self, frame: Option<(u16, &str)>, now: Instant) {
        if self.close_sent {
            return;
        }
        self.close_sent = true;
        self.sent_close = Some(match frame {
            Some((code, reason)) => (code, reason.to_owned()),
            None => (CloseCode::NO_STATUS_RECEIVED.0, String::new()),
        });
        let mut bytes = BytesMut::new();
        self.framer.close(&mut bytes, frame);
        self.output.push_back(Output::CloseFrame(bytes.freeze()));
        self.close_deadline = Some(now + self.timers.close_timeout);
    }

    fn pong(&mut self, payload: Bytes, now: Instant) {
        // A pong answers the ping with its payload and, implicitly, every
        // ping sent before it (§5.5.3).
        match self.pings.iter().position(|p| p.payload == payload) {
            Some(index) => {
                if let Some(ping) = self.pings.drain(..=index).last() {
                    let elapsed = now - ping.sent;
                    self.latency = elapsed;
                    if ping.by_user {
                        self.output.push_back(Output::Pong { elapsed, payload });
                    }
                }
            }
            None => self.output.push_back(Output::Pong {
                elapsed: Duration::ZERO,
                payload,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Limits, Parser};

    const SECOND: Duration = Duration::from_secs(1);

    fn timers() -> Timers {
        Timers {
            ping_interval: Some(20 * SECOND),
            ping_timeout: Some(20 * SECOND),
            close_timeout: 10 * SECOND,
        }
    }

    /// What the peer of `role` reads of the frames in `output`.
    fn frames(role: Role, output: &[Output]) -> Vec<Incoming> {
        let peer = match role {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let limits = Limits {
            max_frame_size: 1 << 20,
            max_message_size: 1 << 20,
        };
        let mut parser = Parser::new(peer, limits);
        for out in output {
            if let Output::Frame(bytes) | Output::PongFrame(bytes) | Output::CloseFrame(bytes) = out
            {
                parser.buffer().extend_from_slice(bytes);
            }
        }
        let mut all = Vec::new();
        while let Some(incoming) = parser.next_event().expect("well-formed frames") {
            all.push(incoming);
        }
        all
    }

    fn run(session: &mut Session) -> Vec<Output> {
        session.output().collect()
    }

    #[test]
    fn pings_while_pongs_are_unsent_get_one_pong_for_the_latest() {
        let now = Instant::now();
        let mut session = Session::new(Role::Server, timers(), now);
        // A burst of pings is answered ping for ping, up to the bound.
        for n in 0..MAX_UNSENT_PONGS {
            session.received(Incoming::Ping(n.to_string().into()), now);
        }
        assert_eq!(
            frames(Role::Server, &run(&mut session)).len(),
            MAX_UNSENT_PONGS
        );
        // A peer that pings and does not read: nothing more until a pong is out.
        for n in 100..1000 {
            session.received(Incoming::Ping(n.to_string().into()), now);
        }
        assert!(run(&mut session).is_empty());
        session.pongs_written(1);
        assert_eq!(
            frames(Role::Server, &run(&mut session)),
            [Incoming::Pong("999".into())]
        );
        session.pongs_written(MAX_UNSENT_PONGS);
        assert!(run(&mut session).is_empty(), "every ping is answered, once");
        // Nothing follows our close frame, not even a pong held back.
        for n in 0..=MAX_UNSENT_PONGS {
            session.received(Incoming::Ping(n.to_string().into()), now);
        }
        session.close(1000, "", now);
        session.pongs_written(1);
        let out = run(&mut session);
        assert!(matches!(out.last(), Some(Output::CloseFrame(_))), "{out:?}");
        assert_eq!(frames(Role::Server, &out).len(), MAX_UNSENT_PONGS + 1);
    }

    #[test]
    fn a_ping_is_answered_with_its_payload() {
        let now = Instant::now();
        let mut session = Session::new(Role::Server, timers(), now);
        assert_eq!(session.received(Incoming::Ping("hi".into()), now), None);
        let out = run(&mut session);
        assert_eq!(frames(Role::Server, &out), [Incoming::Pong("hi".into())]);
    }

    #[test]
    fn the_peer_closes_a_server_echoes_and_ends_at_once() {
        let now = Instant::now();
        let mut session = Session::new(Role::Server, timers(), now);
        let end = session.received(Incoming::Close(Some((4000, "bye".into()))), now);
        assert_eq!(end, Some(End::Closed));
        let out = run(&mut session);
        assert_eq!(out[0], Output::Closing);
        assert!(matches!(out[1], Output::CloseFrame(_)));
        assert_eq!(
            frames(Role::Server, &out),
            [Incoming::Close(Some((4000, "bye".into())))]
        );
        let outcome = session.outcome(End::Closed);
        assert_eq!((outcome.code.0, outcome.reason.as_str()), (4000, "bye"));
        let frame = Some((4000, "bye".to_owned()));
        assert_eq!((&outcome.received, &outcome.sent), (&frame, &frame));
        assert!(outcome.received_first);
    }

    #[test]
    fn the_peer_closes_a_client_echoes_and_waits_for_the_server_to_end_tcp() {
        let now = Instant::now();
        let mut session = Session::new(Role::Client, timers(), now);
        assert_eq!(session.received(Incoming::Close(None), now), None);
        assert_eq!(
            frames(Role::Client, &run(&mut session)),
            [Incoming::Close(None)]
        );
        assert_eq!(session.eof(), End::Closed);
        assert_eq!(
            session.outcome(End::Closed).code,
            CloseCode::NO_STATUS_RECEIVED
        );
    }

    #[test]
    fn we_close_the_peer_answers() {
        let now = Instant::now();
        let often = Timers {
            ping_interval: Some(5 * SECOND),
            ..timers()
        };
        let mut session = Session::new(Role::Server, often, now);
        session.close(1000, "done", now);
        session.close(1001, "twice", now);
        let out = run(&mut session);
        assert_eq!(out.len(), 1, "one close frame: {out:?}");
        assert_eq!(
            frames(Role::Server, &out),
            [Incoming::Close(Some((1000, "done".into())))]
        );
        // Nothing follows our close frame: no pong, no keepalive.
        session.received(Incoming::Ping("late".into()), now);
        session.ping("mine".into(), now);
        assert_eq!(session.timer(now + 6 * SECOND), None);
        assert!(run(&mut session).is_empty());
        let end = session.received(Incoming::Close(Some((1000, "done".into()))), now);
        assert_eq!(end, Some(End::Closed));
        assert!(run(&mut session).is_empty(), "no second close frame");
        let outcome = session.outcome(End::Closed);
        assert_eq!(outcome.sent, Some((1000, "done".to_owned())));
        assert_eq!(outcome.received, Some((1000, "done".to_owned())));
        assert!(!outcome.received_first, "ours went first");
    }

    #[test]
    fn a_close_frame_without_a_code_reads_as_1005_each_way() {
        let now = Instant::now();
        let mut session = Session::new(Role::Client, timers(), now);
        session.received(Incoming::Close(None), now);
        let outcome = session.outcome(End::Closed);
        let no_status = Some((1005, String::new()));
        assert_eq!((&outcome.received, &outcome.sent), (&no_status, &no_status));
    }

    #[test]
    fn a_peer_that_does_not_answer_our_close_fails_at_the_close_timeout() {
        let now = Instant::now();
        let mut session = Session::new(Role::Client, timers(), now);
        session.close(1000, "", now);
        assert_eq!(session.deadline(), Some(now + 10 * SECOND));
        assert_eq!(session.timer(now + 9 * SECOND), None);
        let Some(End::Failed(failure)) = session.timer(now + 10 * SECOND) else {
            panic!("the close timeout fails the connection");
        };
        assert_eq!(failure.code, CloseCode::ABNORMAL_CLOSURE);
        assert!(failure.message.contains("close timeout"), "{failure:?}");
    }

    #[test]
    fn keepalive_pings_and_fails_a_silent_peer_with_1011() {
        let now = Instant::now();
        let mut session = Session::new(Role::Client, timers(), now);
        assert_eq!(session.deadline(), Some(now + 20 * SECOND));
        assert_eq!(session.timer(now + 20 * SECOND), None);
        assert_eq!(session.latency(), Duration::ZERO, "nothing measured yet");
        let pings = frames(Role::Client, &run(&mut session));
        let [Incoming::Ping(payload)] = &pings[..] else {
            panic!("one keepalive ping: {pings:?}");
        };
        // Its pong is due 20 s later, and the next ping too.
        assert_eq!(session.deadline(), Some(now + 40 * SECOND));
        session.received(Incoming::Pong(payload.clone()), now + 21 * SECOND);
        assert!(
            run(&mut session).is_empty(),
            "a keepalive pong is not reported"
        );
        assert_eq!(session.latency(), SECOND, "but it measures the latency");
        assert_eq!(session.timer(now + 40 * SECOND), None);
        run(&mut session);
        let Some(End::Failed(failure)) = session.timer(now + 60 * SECOND) else {
            panic!("an unanswered keepalive fails the connection");
        };
        assert_eq!(failure.code, CloseCode::INTERNAL_ERROR);
        assert_eq!(
            frames(Role::Client, &run(&mut session)),
            [Incoming::Close(Some((1011, String::new())))]
        );
    }

    #[test]
    fn keepalive_can_be_turned_off() {
        let now = Instant::now();
        let off = Timers {
            ping_interval: None,
            ping_timeout: None,
            close_timeout: SECOND,
        };
        let mut session = Session::new(Role::Server, timers(), now);
        session.configure(off, now);
        assert_eq!(session.deadline(), None);
        assert_eq!(session.timer(now + 3600 * SECOND), None);
        assert!(run(&mut session).is_empty());
    }

    #[test]
    fn a_pong_answers_its_ping_and_every_earlier_one() {
        let now = Instant::now();
        let mut session = Session::new(Role::Client, timers(), now);
        session.ping("a".into(), now);
        session.ping("b".into(), now + SECOND);
        run(&mut session);
        session.received(Incoming::Pong("b".into()), now + 3 * SECOND);
        assert_eq!(
            run(&mut session),
            [Output::Pong {
                elapsed: 2 * SECOND,
                payload: "b".into()
            }]
        );
        // "a" was answered too: its pong, late, is unsolicited now.
        session.received(Incoming::Pong("a".into()), now + 4 * SECOND);
        assert_eq!(
            run(&mut session),
            [Output::Pong {
                elapsed: Duration::ZERO,
                payload: "a".into()
            }]
        );
    }

    #[test]
    fn a_failure_with_a_code_to_send_tells_the_peer() {
        let now = Instant::now();
        let mut session = Session::new(Role::Server, timers(), now);
        let failure = Failure::new(CloseCode::TOO_BIG, "too big");
        let end = session.fail(failure.clone(), now);
        assert_eq!(end, End::Failed(failure));
        assert_eq!(
            frames(Role::Server, &run(&mut session)),
            [Incoming::Close(Some((1009, String::new())))]
        );
        let mut quiet = Session::new(Role::Server, timers(), now);
        quiet.fail(Failure::abnormal("lost"), now);
        assert!(run(&mut quiet).is_empty(), "1006 is never sent");
        let outcome = quiet.outcome(End::Failed(Failure::abnormal("lost")));
        assert_eq!(outcome.error.as_deref(), Some("lost"));
        assert_eq!((outcome.received, outcome.sent), (None, None));
        assert!(!outcome.received_first);
        let told = session.outcome(End::Failed(Failure::new(CloseCode::TOO_BIG, "too big")));
        assert_eq!(
            (told.received, told.sent),
            (None, Some((1009, String::new())))
        );
    }
}
