//! What Python (or the thread that reads the socket) asks a connection's
//! task to do, and the queue that carries it there.
//!
//! A plain deque under a lock, not a tokio channel: commands are rare (a
//! ping, a close, a wake-up), and a tokio channel allocates a block of 32
//! slots when it is made, which an idle server paid 2.3 KiB a connection for.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use super::connection::Connection;
use super::receiver::Received;
use super::settings::Settings;
use crate::protocol::session::End;

/// What Python (or the thread that reads the socket) asks a connection's
/// task to do.
pub enum Command {
    Ping(Bytes),
    Close(u16, String),
    Abort,
    /// New limits, keepalive and timeouts, from the next frame on.
    Configure(Settings),
    /// How the Python thread's reading of the socket ended.
    Received(Received),
    /// The session ended on the thread that read the socket.
    Ended(End),
    /// The session's deadline may have moved, or reading was paused or
    /// resumed; sent through [`Connection::wake`](super::Connection::wake),
    /// one at a time.
    Wake,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Command>,
    /// The task let go of its end: commands are dropped, and waits for
    /// the connection (see [`Commands::closed`]) are over.
    closed: bool,
}

/// The sending end, which the connection holds.
#[derive(Default)]
pub struct Commands {
    state: Mutex<State>,
    /// Wakes the task when a command comes.
    ready: Notify,
    /// Wakes whoever waits for the task to be gone.
    gone: Notify,
}

impl Commands {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `command` for the task; dropped once the task is gone.
    pub fn send(&self, command: Command) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.queue.push_back(command);
        drop(state);
        self.ready.notify_one();
    }

    /// Whether the task let go of its end.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Waits until the task let go of its end.
    pub async fn closed(&self) {
        loop {
            let gone = self.gone.notified();
            tokio::pin!(gone);
            // Registered before the look, so that the end is not missed.
            gone.as_mut().enable();
            if self.is_closed() {
                return;
            }
            gone.await;
        }
    }
}

/// The task's end, which hands the connection's commands over in order.
pub struct CommandReceiver {
    connection: Arc<Connection>,
}

impl CommandReceiver {
    pub fn new(connection: Arc<Connection>) -> Self {
        CommandReceiver { connection }
    }

    fn commands(&self) -> &Commands {
        &self.connection.commands
    }

    /// The next command, when one comes.
    pub async fn recv(&mut self) -> Command {
        loop {
            // Made before the look: notify_one keeps a wake-up for it.
            let ready = self.commands().ready.notified();
            if let Some(command) = self.try_recv() {
                return command;
            }
            ready.await;
        }
    }

    /// The next command, if one is queued.
    pub fn try_recv(&self) -> Option<Command> {
        let mut state = self.commands().lock();
        let command = state.queue.pop_front();
        if command.is_none() && state.queue.capacity() > 0 {
            // Drained: an idle connection keeps no room for commands (a
            // socket's limits set once cost each server client 288 bytes).
            state.queue = VecDeque::new();
        }
        command
    }
}

impl Drop for CommandReceiver {
    fn drop(&mut self) {
        let commands = self.commands();
        {
            let mut state = commands.lock();
            state.closed = true;
            state.queue = VecDeque::new();
        }
        commands.gone.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Role;

    #[tokio::test]
    async fn commands_arrive_in_order_and_the_end_of_the_receiver_is_heard() {
        let (connection, mut receiver) = Connection::new(Role::Client);
        let commands = &connection.commands;
        commands.send(Command::Abort);
        commands.send(Command::Close(1000, "bye".into()));
        assert!(matches!(receiver.recv().await, Command::Abort));
        assert!(matches!(receiver.try_recv(), Some(Command::Close(1000, _))));
        assert!(commands.lock().queue.capacity() > 0);
        assert!(receiver.try_recv().is_none());
        assert_eq!(
            commands.lock().queue.capacity(),
            0,
            "drained, it keeps no room"
        );
        // A command sent while the task waits wakes it.
        let waiting = tokio::spawn(async move {
            let command = receiver.recv().await;
            (matches!(command, Command::Wake), receiver)
        });
        commands.send(Command::Wake);
        let (woken, receiver) = waiting.await.unwrap();
        assert!(woken);
        let watcher = {
            let connection = connection.clone();
            tokio::spawn(async move { connection.commands.closed().await })
        };
        assert!(!commands.is_closed());
        drop(receiver);
        watcher.await.unwrap();
        assert!(commands.is_closed());
        commands.send(Command::Abort);
        assert!(
            commands.lock().queue.is_empty(),
            "dropped once the task is gone"
        );
    }
}
