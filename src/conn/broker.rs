//! The broker: group broadcasts that reach the members of a group in every
//! server process attached to the same Redis, through Redis pub/sub.
//!
//! One task per server, on the I/O thread, holds two connections to Redis:
//! one that publishes, one subscribed to the channel `<namespace>:<group>`
//! of every group that has a member here ([`Groups`]). A broadcast to a
//! group goes to the local members at once and is queued for publishing
//! ([`Broker::publish`], which never waits); what arrives on a channel is
//! sent to the local members of its group, framed once, with no Python
//! involved. Each publication carries the process's node id, so a process
//! does not deliver its own broadcasts a second time.
//!
//! Delivery is at most once: what is published while Redis is unreachable,
//! or past [`BROKER_QUEUE_SIZE`], is dropped (and counted), and Redis pub/sub
//! itself keeps nothing for a subscriber that is away.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink};
use redis::{AsyncConnectionConfig, Client, Msg};
use tokio::sync::{watch, Notify};
use tokio::time::{sleep, timeout, Instant};

use super::event::{Event, EventSink};
use super::groups::Groups;
use crate::config::{
    BROKER_PING_INTERVAL, BROKER_PIPELINE, BROKER_QUEUE_SIZE, BROKER_RETRY_FIRST, BROKER_RETRY_MAX,
    BROKER_TIMEOUT, QUEUED_MESSAGE_COST,
};
use crate::net::runtime;

/// Where the broker's connection to Redis stands, as Python's
/// `wsbind.BrokerState` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BrokerState {
    /// No broker, or the server stopped.
    Disconnected = 0,
    /// Connecting, or connecting again after a failure.
    Connecting = 1,
    /// Publishing and subscribed to every group with a member here.
    Connected = 2,
    /// Redis cannot be reached or went away; the broker tries again after
    /// a wait (`error_string` says why).
    Error = 3,
}

/// The first byte of every publication: the format, so that a later one
/// can be told apart, and messages that are not wsbind's are refused.
const FORMAT: u8 = 1;
/// The format byte, the kind byte and the node id.
const HEADER: usize = 10;

/// Publications waiting for the broker's task.
#[derive(Default)]
struct Outgoing {
    /// (channel, the publication).
    queue: VecDeque<(String, Bytes)>,
    /// What the queue counts against [`BROKER_QUEUE_SIZE`].
    cost: usize,
}

/// The broker of one server.
pub struct Broker {
    /// This process's mark on its publications: random, so that two
    /// processes (on one host or many) never share it.
    node: u64,
    /// Channel names are `<namespace>:<group>`.
    namespace: String,
    groups: Arc<Groups>,
    outgoing: Mutex<Outgoing>,
    /// Set while both connections to Redis are up; publications wait in
    /// `outgoing` only then.
    connected: AtomicBool,
    /// Publications that were not carried: published while Redis was
    /// unreachable or over the queue's bound, or received in a form that
    /// is not wsbind's.
    dropped: AtomicU64,
    /// Wakes the task: something to publish.
    published: Notify,
    /// Wakes the task: the set of groups changed.
    regrouped: Notify,
    stop: watch::Sender<bool>,
    /// Whether [`stop`](Self::stop) was called; events are sent under this
    /// lock, so that none comes from a broker once it is stopped (a newer
    /// one may be reporting by then).
    stopped: Mutex<bool>,
    events: EventSink,
}

impl Broker {
    /// Starts the broker of a server whose groups are `groups`, attached to
    /// the Redis at `url` (redis://, rediss:// or redis+unix://). Its state
    /// goes to `events` as [`Event::Broker`]. A URL that cannot be parsed
    /// is reported there as [`BrokerState::Error`], as a Redis that cannot
    /// be reached is.
    pub fn start(
        url: &str,
        namespace: String,
        groups: Arc<Groups>,
        events: EventSink,
    ) -> Arc<Broker> {
        let (broker, stopped) = Broker::new(namespace, groups, events);
        match Client::open(url) {
            Ok(client) => {
                let on_panic = {
                    let broker = Arc::clone(&broker);
                    move |message| {
                        broker.report(
                            BrokerState::Error,
                            format!("internal error in wsbind (please report it): {message}"),
                        )
                    }
                };
                let running = run(Arc::clone(&broker), client, stopped);
                if let Err(e) = runtime::spawn(running, on_panic) {
                    broker.report(BrokerState::Error, e.to_string());
                }
            }
            Err(e) => broker.report(BrokerState::Error, format!("bad broker URL {url:?}: {e}")),
        }
        broker
    }

    /// A broker with no task yet, and the receiver its task waits on.
    fn new(
        namespace: String,
        groups: Arc<Groups>,
        events: EventSink,
    ) -> (Arc<Broker>, watch::Receiver<bool>) {
        let (stop, stopped) = watch::channel(false);
        let broker = Arc::new(Broker {
            node: rand::random(),
            namespace,
            groups,
            outgoing: Mutex::new(Outgoing::default()),
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            published: Notify::new(),
            regrouped: Notify::new(),
            stop,
            stopped: Mutex::new(false),
            events,
        });
        (broker, stopped)
    }

    /// Stops the task; its connections close, and Redis drops its
    /// subscriptions with them. Its state is not reported any more.
    pub fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.stop.send_replace(true);
    }

    /// Tells Python the broker's state, unless it was stopped.
    fn report(&self, state: BrokerState, error: String) {
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if !*stopped {
            self.events.send(Event::Broker { state, error });
        }
    }

    /// Publications not carried so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Tells the task that groups were made or ended, so that it
    /// subscribes or unsubscribes.
    pub fn regroup(&self) {
        self.regrouped.notify_one();
    }

    /// The channel of `group`.
    pub fn channel(&self, group: &str) -> String {
        format!("{}:{group}", self.namespace)
    }

    /// Queues a broadcast to `group` for the other processes; never waits.
    /// Returns false (and counts it) when it is dropped: Redis is not
    /// connected, or the queue is full.
    pub fn publish(&self, group: &str, text: bool, payload: &[u8]) -> bool {
        if !self.connected.load(Ordering::Acquire) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let cost = HEADER + payload.len() + QUEUED_MESSAGE_COST;
        {
            let mut outgoing = self.outgoing();
            if outgoing.cost + cost > BROKER_QUEUE_SIZE {
                drop(outgoing);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let mut message = BytesMut::with_capacity(HEADER + payload.len());
            message.put_u8(FORMAT);
            message.put_u8(u8::from(text));
            message.put_u64(self.node);
            message.put_slice(payload);
            outgoing.cost += cost;
            outgoing
                .queue
                .push_back((self.channel(group), message.freeze()));
        }
        self.published.notify_one();
        true
    }

    fn outgoing(&self) -> MutexGuard<'_, Outgoing> {
        self.outgoing.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up to [`BROKER_PIPELINE`] queued publications.
    fn take_outgoing(&self) -> Vec<(String, Bytes)> {
        let mut outgoing = self.outgoing();
        let count = outgoing.queue.len().min(BROKER_PIPELINE);
        let taken: Vec<_> = outgoing.queue.drain(..count).collect();
        let freed: usize = taken
            .iter()
            .map(|(_, m)| m.len() + QUEUED_MESSAGE_COST)
            .sum();
        outgoing.cost -= freed;
        taken
    }

    /// Drops (and counts) whatever waits: Redis went away.
    fn drop_outgoing(&self) {
        let mut outgoing = self.outgoing();
        let count = outgoing.queue.len() as u64;
        outgoing.queue.clear();
        outgoing.cost = 0;
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// Sends a publication from Redis to this process's members of its group.
    fn deliver(&self, message: &Msg) {
        let payload = message.get_payload_bytes();
        let group = message
            .get_channel_name()
            .strip_prefix(self.namespace.as_str())
            .and_then(|rest| rest.strip_prefix(':'));
        let (Some(group), Some(header)) = (group, payload.get(..HEADER)) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let node = u64::from_be_bytes(header[2..].try_into().unwrap_or_default());
        if node == self.node {
            // Its local members had it when it was published.
            return;
        }
        let body = &payload[HEADER..];
        let text = match header[..2] {
            [FORMAT, 0] => false,
            // Sent by a wsbind, but a text frame of invalid UTF-8 would fail
            // every receiving connection with 1007: refused here instead.
            [FORMAT, 1] if std::str::from_utf8(body).is_ok() => true,
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.groups
            .broadcast(group, text, &Bytes::copy_from_slice(body));
    }
}

/// The broker's task: connects, serves, and after a failure waits and
/// connects again, until stopped.
async fn run(broker: Arc<Broker>, client: Client, mut stopped: watch::Receiver<bool>) {
    let mut delay = BROKER_RETRY_FIRST;
    loop {
        broker.report(BrokerState::Connecting, String::new());
        let started = Instant::now();
        let failure = tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            failure = serve(&broker, &client) => failure,
        };
        broker.connected.store(false, Ordering::Release);
        broker.drop_outgoing();
        broker.report(BrokerState::Error, failure);
        // A connection that lasted starts the waits afresh.
        if started.elapsed() > BROKER_RETRY_MAX {
            delay = BROKER_RETRY_FIRST;
        }
        tokio::select! {
            biased;
            _ = stopped.wait_for(|s| *s) => break,
            () = sleep(delay) => {}
        }
        delay = (delay * 2).min(BROKER_RETRY_MAX);
    }
    broker.connected.store(false, Ordering::Release);
    broker.drop_outgoing();
}

/// One life of the connections to Redis; returns why it ended.
async fn serve(broker: &Broker, client: &Client) -> String {
    let connect = async {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(BROKER_TIMEOUT))
            .set_response_timeout(Some(BROKER_TIMEOUT));
        let publisher = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let subscriber = client.get_async_pubsub().await?;
        Ok::<_, redis::RedisError>((publisher, subscriber))
    };
    let (mut publisher, subscriber) = match timeout(BROKER_TIMEOUT, connect).await {
        Ok(Ok(connections)) => connections,
        Ok(Err(e)) => return format!("cannot reach the broker: {e}"),
        Err(_) => {
            return format!(
                "cannot reach the broker: no answer within {} s",
                BROKER_TIMEOUT.as_secs()
            )
        }
    };
    let (mut sink, mut stream) = subscriber.split();
    let mut subscribed = HashSet::new();
    if let Err(e) = resubscribe(broker, &mut sink, &mut subscribed).await {
        return e;
    }
    broker.connected.store(true, Ordering::Release);
    broker.report(BrokerState::Connected, String::new());
    let mut ping = tokio::time::interval(BROKER_PING_INTERVAL);
    ping.reset();
    loop {
        let step = tokio::select! {
            message = stream.next() => match message {
                Some(message) => {
                    broker.deliver(&message);
                    Ok(())
                }
                None => Err("lost the connection to the broker".to_string()),
            },
            () = broker.regrouped.notified() => resubscribe(broker, &mut sink, &mut subscribed).await,
            () = broker.published.notified() => publish(broker, &mut publisher).await,
            // Subscribed, Redis answers a ping with ["pong", ""], not "PONG".
            _ = ping.tick() => match timeout(BROKER_TIMEOUT, sink.ping::<redis::Value>()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("the broker failed: {e}")),
                Err(_) => Err(format!("the broker did not answer a ping within {} s", BROKER_TIMEOUT.as_secs())),
            },
        };
        if let Err(e) = step {
            return e;
        }
    }
}

/// Subscribes to the channels of groups made since the last call and
/// unsubscribes from those of groups that ended.
async fn resubscribe(
    broker: &Broker,
    sink: &mut PubSubSink,
    subscribed: &mut HashSet<String>,
) -> Result<(), String> {
    let wanted: HashSet<String> = broker
        .groups
        .names()
        .iter()
        .map(|g| broker.channel(g))
        .collect();
    let new: Vec<&String> = wanted.difference(subscribed).collect();
    let old: Vec<&String> = subscribed.difference(&wanted).collect();
    let answered = async {
        if !new.is_empty() {
            sink.subscribe(&new).await?;
        }
        if !old.is_empty() {
            sink.unsubscribe(&old).await?;
        }
        Ok::<_, redis::RedisError>(())
    };
    match timeout(BROKER_TIMEOUT, answered).await {
        Ok(Ok(())) => {
            *subscribed = wanted;
            Ok(())
        }
        Ok(Err(e)) => Err(format!("the broker refused a subscription: {e}")),
        Err(_) => Err(format!(
            "the broker did not answer a subscription within {} s",
            BROKER_TIMEOUT.as_secs()
        )),
    }
}

/// Publishes what is queued, a pipeline at a time.
async fn publish(broker: &Broker, publisher: &mut MultiplexedConnection) -> Result<(), String> {
    loop {
        let taken = broker.take_outgoing();
        if taken.is_empty() {
            return Ok(());
        }
        let mut pipeline = redis::pipe();
        for (channel, message) in &taken {
            pipeline
                .cmd("PUBLISH")
                .arg(channel)
                .arg(message.as_ref())
                .ignore();
        }
        if let Err(e) = pipeline.exec_async(publisher).await {
            broker
                .dropped
                .fetch_add(taken.len() as u64, Ordering::Relaxed);
            return Err(format!("the broker failed to publish: {e}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publication_over_the_bound_is_dropped_and_counted() {
        let queue = crate::conn::EventQueue::new(false).unwrap();
        // No task: nothing else changes `connected`.
        let (broker, _) = Broker::new("test".into(), Arc::default(), queue.sink(1));
        assert!(!broker.publish("room", true, b"hi"), "not connected");
        broker.connected.store(true, Ordering::Release);
        let big = vec![0; BROKER_QUEUE_SIZE / 2];
        assert!(broker.publish("room", false, &big));
        assert!(!broker.publish("room", false, &big));
        assert_eq!(broker.dropped(), 2);
        let taken = broker.take_outgoing();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, "test:room");
        assert_eq!(broker.outgoing().cost, 0);
    }

    #[test]
    fn a_bad_url_is_reported_as_an_error() {
        let queue = crate::conn::EventQueue::new(false).unwrap();
        Broker::start("http://nowhere", "t".into(), Arc::default(), queue.sink(1));
        let events = queue.take().into_events();
        assert!(matches!(
            &events[..],
            [(1, Event::Broker { state: BrokerState::Error, error })] if error.contains("bad broker URL")
        ));
    }
}
