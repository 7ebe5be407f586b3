//! The queue of events from tokio to one Python thread, and that thread's
//! reading of its sockets.
//!
//! Tokio tasks push events into a [`Queue`] through a [`Sink`], without the
//! GIL; the Python thread takes everything that has accumulated in one call,
//! so a burst of messages costs one wake-up and one GIL acquisition. Each
//! queue is drained by exactly one Python thread (an asyncio loop or
//! wsbind's event thread), which is what keeps an object's handlers in order
//! and never concurrent.
//!
//! That thread also reads the plain TCP sockets of its objects itself (see
//! `conn/receiver.rs`): the queue's [`Poller`] tells it which are ready, and
//! the wake-up pipe through which tokio tasks wake it is one more descriptor
//! in the same set. The queue knows those connections only as [`Reader`]s,
//! and its events only as values of a type `E` that it hands over in order;
//! what they mean is the connection layer's business.

use std::cell::Cell;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use pyo3::Python;
use tokio::sync::{watch, Notify};

use super::landing::{Landing, Request, Spares};
use super::poller::{Poller, Ready};
use crate::config::{EVENT_SPIN, LEND_AFTER, MAX_PENDING_EVENT_BYTES, SPIN_GIVE_UP, SPIN_PROBE};

/// An event's weight: the bytes of message it holds, which count against
/// [`MAX_PENDING_EVENT_BYTES`].
pub trait Weigh {
    fn weight(&self) -> usize;
}

/// A connection whose socket the queue's thread reads (plain TCP).
pub trait Reader<E>: Send + Sync {
    /// Reads the socket once, without blocking, and sends what came
    /// through `sink`.
    fn read(&self, sink: &Sink<E>) -> ReadOutcome;
    /// Writes what the socket did not take before, now that it has room.
    fn write_held(&self);
    /// The thread no longer watches the socket: whatever it was to write
    /// goes to the connection's own writer.
    fn stop_writing(&self);
}

/// What became of one [`Reader::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Bytes came (and maybe events); the socket is read again when ready.
    Data,
    /// Nothing came.
    Nothing,
    /// The connection's task reads the socket for now.
    Lent,
    /// The stream ended or failed: the task was told, and the thread no
    /// longer watches the socket.
    Over,
}

/// What waits for the Python thread.
struct Inbox<E> {
    events: Vec<(u64, E)>,
    /// Bytes objects the I/O thread waits for (see [`landing`](super::landing)).
    requests: Vec<Arc<Request>>,
    closed: bool,
    /// Python asked the thread to look at work of its own ([`Queue::wake`]).
    woken: bool,
    /// Threads asleep in [`Queue::wait`]: only they need a wake-up.
    sleepers: usize,
}

/// The poller's key for the wake-up pipe; the others are connection ids.
const WAKE: u64 = u64::MAX;

/// The connections whose sockets the queue's thread reads.
struct Readers<E> {
    connections: HashMap<u64, Arc<dyn Reader<E>>>,
    /// Whether a [`lend_while_away`] task runs for the queue.
    watched: bool,
}

/// A queue of events for the Python objects that one thread serves.
pub struct Queue<E> {
    inbox: Mutex<Inbox<E>>,
    /// The wake-up pipe, written when events arrive for a thread asleep in
    /// the poller, or for an asyncio loop (which watches the poller).
    wake: UnixStream,
    wake_reader: UnixStream,
    /// Whether an asyncio loop watches `fileno()`: then every batch wakes it.
    for_loop: bool,
    poller: Arc<Poller>,
    readers: Mutex<Readers<E>>,
    /// How often the thread looked at its sockets: whether it is away.
    polls: AtomicU64,
    /// True while the connections' tasks read their sockets, because the
    /// thread left ready sockets unread (see `conn/receiver.rs`).
    lent: watch::Sender<bool>,
    /// Bytes of messages waiting for Python.
    weight: AtomicUsize,
    /// Signalled when Python takes events, to resume readers that paused.
    drained: Notify,
    /// Whether the inbox holds events: what a spinning thread watches, lock-free.
    filled: AtomicBool,
    /// Blank bytes objects for the I/O threads to copy messages into.
    spares: Spares,
    /// The waits in a row whose events came only after the spin would have
    /// ended: while there are [`SPIN_GIVE_UP`] of them, the thread sleeps at
    /// once (see [`spin_for`]).
    slow_waits: AtomicU32,
}

impl<E: Weigh + Send + 'static> Queue<E> {
    /// A queue; with `for_loop`, [`fileno`](Self::fileno) becomes readable
    /// when events arrive or sockets are ready, for `loop.add_reader`.
    pub fn new(for_loop: bool) -> std::io::Result<Arc<Self>> {
        let (wake, wake_reader) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_reader.set_nonblocking(true)?;
        let poller = Poller::new()?;
        poller.add(wake_reader.as_raw_fd(), WAKE)?;
        Ok(Arc::new(Queue {
            inbox: Mutex::new(Inbox {
                events: Vec::new(),
                requests: Vec::new(),
                closed: false,
                woken: false,
                sleepers: 0,
            }),
            wake,
            wake_reader,
            for_loop,
            poller: Arc::new(poller),
            readers: Mutex::new(Readers {
                connections: HashMap::new(),
                watched: false,
            }),
            polls: AtomicU64::new(0),
            lent: watch::Sender::new(false),
            weight: AtomicUsize::new(0),
            drained: Notify::new(),
            filled: AtomicBool::new(false),
            spares: Spares::default(),
            slow_waits: AtomicU32::new(0),
        }))
    }

    /// Where the object `id` sends its events.
    pub fn sink(self: &Arc<Self>, id: u64) -> Sink<E> {
        Sink {
            queue: self.clone(),
            id,
        }
    }

    /// The descriptor an asyncio loop watches, if the queue is for one.
    pub fn fileno(&self) -> Option<RawFd> {
        self.for_loop.then(|| self.poller.as_raw_fd())
    }

    /// Every event that has arrived, and what the ready sockets hold; never
    /// blocks. Call it without the GIL.
    pub fn take(self: &Arc<Self>) -> Batch<E> {
        self.poll(&mut Vec::new(), 0);
        self.take_inbox(&mut self.lock())
    }

    /// Waits up to `timeout` for events, reading the sockets meanwhile: for
    /// the spin's length after the last bytes came it looks without
    /// sleeping, then it sleeps in the poller. Call it without the GIL.
    ///
    /// The spin is skipped while the last waits show it would not have
    /// found their events (messages that come 10 ms apart), so that it
    /// costs only where it buys latency.
    pub fn wait(self: &Arc<Self>, timeout: Duration) -> Batch<E> {
        self.wait_or_look(timeout, true)
    }

    /// Looks for events as a wait does before it sleeps, and returns
    /// instead of sleeping: for an asyncio `recv()` that would otherwise
    /// sleep in its loop's selector. Call it without the GIL.
    pub fn look(self: &Arc<Self>) -> Batch<E> {
        self.wait_or_look(spin(), false)
    }

    fn wait_or_look(self: &Arc<Self>, timeout: Duration, sleep: bool) -> Batch<E> {
        let began = Instant::now();
        let mut spinning = began;
        let slow_waits = self.slow_waits.load(Ordering::Relaxed);
        let spin_now = spin_for(slow_waits);
        let mut ready = Vec::new();
        let mut events_came = true;
        let mut waited = false;
        loop {
            let came = self.poll(&mut ready, 0);
            if self.filled.load(Ordering::Acquire) {
                break;
            }
            waited = true;
            let elapsed = began.elapsed();
            if elapsed >= timeout {
                events_came = false;
                break;
            }
            if came {
                // Part of a large message: the rest is on its way.
                spinning = Instant::now();
                continue;
            }
            if spinning.elapsed() < spin_now {
                std::thread::yield_now();
                continue;
            }
            if !sleep {
                events_came = false;
                break;
            }
            {
                let mut inbox = self.lock();
                if !inbox.events.is_empty()
                    || !inbox.requests.is_empty()
                    || inbox.closed
                    || inbox.woken
                {
                    break;
                }
                inbox.sleepers += 1;
            }
            // Rounded up, so that a wait does not end just short of its timeout.
            let left = (timeout - elapsed).as_micros().div_ceil(1000);
            self.poll(&mut ready, i32::try_from(left).unwrap_or(i32::MAX));
            self.lock().sleepers -= 1;
        }
        // Measured against the whole spin even when it was skipped: a thread
        // that slept and still had its events within it spins again.
        let slow = !events_came || (waited && spinning.elapsed() >= spin());
        self.slow_waits.store(
            if slow { slow_waits.wrapping_add(1) } else { 0 },
            Ordering::Relaxed,
        );
        self.take_inbox(&mut self.lock())
    }

    /// Makes the queue's thread return from [`wait`](Self::wait) (or its
    /// loop see the descriptor ready) soon, with whatever arrived by then:
    /// another thread has handed it work to run between events.
    pub fn wake(&self) {
        let asleep = {
            let mut inbox = self.lock();
            inbox.woken = true;
            self.filled.store(true, Ordering::Release);
            inbox.sleepers > 0
        };
        if asleep || self.for_loop {
            let _ = (&self.wake).write(&[1]);
        }
    }

    /// Wakes every waiter for good; later events are dropped.
    pub fn close(&self) {
        self.lock().closed = true;
        let _ = (&self.wake).write(&[1]);
        self.drained.notify_waiters();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The blank bytes objects the batches refill.
    pub fn spares(&self) -> &Spares {
        &self.spares
    }

    fn readers(&self) -> MutexGuard<'_, Readers<E>> {
        self.readers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock(&self) -> MutexGuard<'_, Inbox<E>> {
        // A panic while holding this lock cannot leave the Vec inconsistent,
        // so a poisoned lock is still usable.
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads what the ready sockets hold into events, waiting up to
    /// `timeout_ms` for something to be ready; takes the sockets back from
    /// their tasks if they were lent. Returns whether any bytes came.
    fn poll(self: &Arc<Self>, ready: &mut Vec<Ready>, timeout_ms: i32) -> bool {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.lent
            .send_if_modified(|lent| std::mem::replace(lent, false));
        self.poller.wait(ready, timeout_ms);
        let mut lent = 0;
        let mut came = false;
        for &Ready {
            key: id,
            read,
            write,
        } in ready.iter()
        {
            if id == WAKE {
                let mut buf = [0u8; 256];
                while matches!((&self.wake_reader).read(&mut buf), Ok(n) if n > 0) {}
                continue;
            }
            let Some(reader) = self.readers().connections.get(&id).cloned() else {
                continue;
            };
            if write {
                reader.write_held();
            }
            // Enough for one batch: the rest stay ready for the next.
            if !read || self.weight.load(Ordering::Acquire) > MAX_PENDING_EVENT_BYTES {
                continue;
            }
            match reader.read(&self.sink(id)) {
                ReadOutcome::Data => came = true,
                ReadOutcome::Nothing | ReadOutcome::Over => {}
                ReadOutcome::Lent => lent += 1,
            }
        }
        // Sockets still with their tasks, which give them back soon.
        if lent > 0 {
            std::thread::yield_now();
        }
        came
    }

    fn take_inbox(&self, inbox: &mut Inbox<E>) -> Batch<E> {
        inbox.woken = false;
        let requests = std::mem::take(&mut inbox.requests);
        let events = std::mem::take(&mut inbox.events);
        self.filled.store(false, Ordering::Release);
        let weight: usize = events.iter().map(|(_, e)| e.weight()).sum();
        if weight > 0 {
            self.weight.fetch_sub(weight, Ordering::AcqRel);
            self.drained.notify_waiters();
        }
        Batch { events, requests }
    }
}

/// What a Python thread takes from the queue at once.
pub struct Batch<E> {
    events: Vec<(u64, E)>,
    requests: Vec<Arc<Request>>,
}

impl<E> Batch<E> {
    /// Makes the bytes objects the I/O threads asked for (the requests,
    /// which they wait for, and the spares), notes the burst the thread is
    /// about to handle (see [`burst`]), and hands over the events, each
    /// with the id of its object.
    pub fn open(self, py: Python<'_>, spares: &Spares) -> Vec<(u64, E)> {
        for request in self.requests {
            request.fulfil(py);
        }
        spares.refill(|len| Landing::new(py, len).ok());
        IN_BURST.set(match self.events.first() {
            Some(&(first, _)) if self.events.len() > 1 => {
                static BURSTS: AtomicU64 = AtomicU64::new(1);
                Some(Burst {
                    number: BURSTS.fetch_add(1, Ordering::Relaxed),
                    one_socket: self.events.iter().all(|&(id, _)| id == first),
                })
            }
            _ => None,
        });
        self.events
    }

    /// The events, for tests that run without Python.
    #[cfg(test)]
    pub fn into_events(self) -> Vec<(u64, E)> {
        self.events
    }
}

/// Where the tokio side of one object sends its events.
pub struct Sink<E> {
    queue: Arc<Queue<E>>,
    id: u64,
}

impl<E> Clone for Sink<E> {
    fn clone(&self) -> Self {
        Sink {
            queue: self.queue.clone(),
            id: self.id,
        }
    }
}

impl<E: Weigh + Send + 'static> Sink<E> {
    /// The same queue, for another object (a server's accepted connections).
    pub fn for_id(&self, id: u64) -> Sink<E> {
        Sink {
            queue: self.queue.clone(),
            id,
        }
    }

    /// The id of the object whose events go through here.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn send(&self, event: E) {
        let weight = event.weight();
        self.push(|inbox| {
            if weight > 0 {
                self.queue.weight.fetch_add(weight, Ordering::AcqRel);
            }
            inbox.events.push((self.id, event));
        });
    }

    /// A blank bytes object of `len` bytes made ahead of time, if one is
    /// ready, to copy a binary message into while it is in cache.
    pub fn spare(&self, len: usize) -> Option<Landing> {
        self.queue.spares.take(len)
    }

    /// Lets the queue's thread read `reader`'s `socket`; from a task on the
    /// runtime.
    pub fn watch(&self, reader: Arc<dyn Reader<E>>, socket: RawFd) -> std::io::Result<()> {
        let mut readers = self.queue.readers();
        readers.connections.insert(self.id, reader);
        if let Err(e) = self.queue.poller.add(socket, self.id) {
            readers.connections.remove(&self.id);
            return Err(e);
        }
        if !readers.watched {
            readers.watched = true;
            tokio::spawn(lend_while_away(self.queue.clone()));
        }
        Ok(())
    }

    /// The poller of the queue's thread, which also reports a watched
    /// socket's room to write, for what the socket did not take.
    pub fn poller(&self) -> Arc<Poller> {
        self.queue.poller.clone()
    }

    /// Stops reporting `socket` to the queue's thread, which read its end.
    pub fn stop_reading(&self, socket: RawFd) {
        self.queue.poller.remove(socket);
        let reader = self.queue.readers().connections.get(&self.id).cloned();
        if let Some(reader) = reader {
            reader.stop_writing();
        }
    }

    /// Stops the queue's thread from reading `socket`, before it is closed.
    pub fn unwatch(&self, socket: RawFd) {
        self.stop_reading(socket);
        self.queue.readers().connections.remove(&self.id);
    }

    /// Whether the tasks are to read their sockets now, and its changes.
    pub fn lending(&self) -> watch::Receiver<bool> {
        self.queue.lent.subscribe()
    }

    /// Asks the Python thread for a bytes object to read a message into.
    pub fn reserve(&self, request: Arc<Request>) {
        self.push(|inbox| inbox.requests.push(request));
    }

    fn push(&self, add: impl FnOnce(&mut Inbox<E>)) {
        let (was_empty, asleep) = {
            let mut inbox = self.queue.lock();
            if inbox.closed {
                return;
            }
            let was_empty = inbox.events.is_empty() && inbox.requests.is_empty();
            add(&mut inbox);
            self.queue.filled.store(true, Ordering::Release);
            (was_empty, inbox.sleepers > 0)
        };
        // Only the first event of a batch wakes Python; the rest ride along.
        if was_empty && (self.queue.for_loop || asleep) {
            // A full pipe already holds a wake-up, so WouldBlock is fine.
            let _ = (&self.queue.wake).write(&[1]);
        }
    }

    /// Whether Python is not behind: readers may read.
    pub fn has_room(&self) -> bool {
        self.queue.weight.load(Ordering::Acquire) <= MAX_PENDING_EVENT_BYTES
    }

    /// Waits while Python has more than [`MAX_PENDING_EVENT_BYTES`] of
    /// messages to handle, so that slow handlers push back on the peer.
    pub async fn wait_for_room(&self) {
        loop {
            let drained = self.queue.drained.notified();
            if self.queue.weight.load(Ordering::Acquire) <= MAX_PENDING_EVENT_BYTES
                || self.queue.lock().closed
            {
                return;
            }
            drained.await;
        }
    }
}

/// A batch of several events that a thread is handling.
#[derive(Clone, Copy)]
pub struct Burst {
    /// Numbered across threads, from 1.
    pub number: u64,
    /// All its events are of one object (a pipelined connection).
    pub one_socket: bool,
}

thread_local! {
    static IN_BURST: Cell<Option<Burst>> = const { Cell::new(None) };
}

/// The batch of several events the calling thread is handling, if it is.
/// Small messages its handlers send to a socket are then left to the I/O
/// thread, which writes them together while Python goes on with the batch,
/// rather than one system call each by the busy Python thread; but in a
/// batch of many sockets' events (many clients, a few messages each), the
/// first few messages to each socket are written at once.
pub fn burst() -> Option<Burst> {
    IN_BURST.get()
}

/// Makes the calling thread handle `burst`, as a batch of events would.
#[cfg(test)]
pub fn set_burst(burst: Option<Burst>) {
    IN_BURST.set(burst);
}

/// [`EVENT_SPIN`], or `WSBIND_SPIN_US` microseconds when it is set.
fn spin() -> Duration {
    static SPIN: OnceLock<Duration> = OnceLock::new();
    *SPIN.get_or_init(|| {
        std::env::var("WSBIND_SPIN_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(EVENT_SPIN, Duration::from_micros)
    })
}

/// How long a wait spins after `slow_waits` waits in a row found their
/// events only after the spin: the whole spin until [`SPIN_GIVE_UP`] of them,
/// then none, but for every [`SPIN_PROBE`]th wait, which looks whether
/// events come quickly again.
fn spin_for(slow_waits: u32) -> Duration {
    if slow_waits < SPIN_GIVE_UP || slow_waits % SPIN_PROBE == 0 {
        spin()
    } else {
        Duration::ZERO
    }
}

/// While connections of the queue are read by its thread: lends their
/// sockets to their tasks when something stayed ready for a whole tick
/// while the thread did not look (a handler is busy, an asyncio loop is
/// blocked). The thread takes them back when it looks again.
async fn lend_while_away<E: Weigh + Send + 'static>(queue: Arc<Queue<E>>) {
    let mut seen = queue.polls.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(LEND_AFTER).await;
        {
            let mut readers = queue.readers();
            if readers.connections.is_empty() {
                readers.watched = false;
                return;
            }
        }
        let polls = queue.polls.load(Ordering::Relaxed);
        if polls == seen && !*queue.lent.borrow() && queue.poller.any_ready() {
            queue.lent.send_replace(true);
        }
        seen = polls;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of the tests: its weight.
    struct Message(usize);

    impl Weigh for Message {
        fn weight(&self) -> usize {
            self.0
        }
    }

    fn queue() -> Arc<Queue<Message>> {
        Queue::new(true).expect("a queue with a wake-up pipe")
    }

    fn pending(queue: &Queue<Message>) -> usize {
        queue.lock().events.len()
    }

    fn wake_bytes(queue: &Queue<Message>) -> usize {
        let mut buf = [0u8; 64];
        (&queue.wake_reader).read(&mut buf).unwrap_or(0)
    }

    #[test]
    fn a_batch_wakes_python_once() {
        let queue = queue();
        let sink = queue.sink(7);
        for _ in 0..100 {
            sink.send(Message(0));
        }
        assert_eq!(pending(&queue), 100);
        assert_eq!(wake_bytes(&queue), 1);
        let taken = queue.take_inbox(&mut queue.lock()).events;
        assert_eq!(taken.len(), 100);
        assert!(taken.iter().all(|(id, _)| *id == 7));
        sink.send(Message(0));
        assert_eq!(wake_bytes(&queue), 1, "the next batch wakes again");
    }

    #[test]
    fn closed_queues_drop_events() {
        let queue = queue();
        queue.close();
        queue.sink(1).send(Message(1));
        assert_eq!(pending(&queue), 0);
        assert_eq!(queue.weight.load(Ordering::Acquire), 0);
    }

    #[test]
    fn a_wake_ends_a_wait_with_nothing_in_it() {
        let queue: Arc<Queue<Message>> = Queue::new(false).unwrap();
        let waiting = std::thread::spawn({
            let queue = queue.clone();
            move || queue.wait(Duration::from_secs(3600)).into_events().len()
        });
        // Until the wait returns, each wake may land before it sleeps or after.
        while !waiting.is_finished() {
            queue.wake();
            std::thread::yield_now();
        }
        assert_eq!(waiting.join().unwrap(), 0);
        // A wake that comes before the wait is taken with its batch: it
        // does not end the wait after that one too. (Not checked above: a
        // wake may land between the wait's return and the loop's look.)
        queue.wake();
        assert_eq!(queue.wait(Duration::from_secs(3600)).into_events().len(), 0);
        assert!(!queue.lock().woken, "taken with the batch");
    }

    #[test]
    fn the_spin_stops_while_events_come_after_it() {
        let queue = queue();
        let spin_now = || spin_for(queue.slow_waits.load(Ordering::Relaxed));
        for _ in 0..SPIN_GIVE_UP {
            assert_eq!(spin_now(), spin());
            // Nothing comes in time, as between messages 10 ms apart.
            queue.wait(Duration::ZERO);
        }
        assert_eq!(spin_now(), Duration::ZERO);
        let probes = (0..2 * SPIN_PROBE)
            .filter(|_| {
                let spun = spin_now() > Duration::ZERO;
                queue.wait(Duration::ZERO);
                spun
            })
            .count();
        assert_eq!(probes, 2, "every {SPIN_PROBE}th wait still spins");
        // Events that were waiting already: the thread is busy, and spins again.
        queue.sink(1).send(Message(0));
        assert_eq!(queue.wait(Duration::from_secs(5)).into_events().len(), 1);
        assert_eq!(spin_now(), spin());
    }

    #[tokio::test]
    async fn readers_pause_while_python_is_behind() {
        let queue = queue();
        let sink = queue.sink(1);
        sink.send(Message(MAX_PENDING_EVENT_BYTES + 1));
        assert!(!sink.has_room());
        let waiting = tokio::spawn({
            let sink = sink.clone();
            async move { sink.wait_for_room().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "over the bound, readers wait");
        queue.take_inbox(&mut queue.lock());
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("taking the events lets readers go on")
            .unwrap();
    }
}
