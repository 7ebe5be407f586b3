//! The one tokio runtime that owns every socket.
//!
//! Its threads never hold the GIL and never run Python: whatever they learn
//! reaches Python through a [`Queue`](crate::bridge::Queue).

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;
use std::task::Poll;
use std::time::Duration;

use tokio::runtime::{Builder, Runtime};

use crate::errors::Error;

/// I/O threads when `WSBIND_IO_THREADS` is not set: one. Python's handlers,
/// not the network, are the bottleneck of a Python program, and one thread
/// leaves the other cores to Python.
const DEFAULT_IO_THREADS: usize = 1;

fn runtime() -> Result<&'static Runtime, Error> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let threads = std::env::var("WSBIND_IO_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&n: &usize| n > 0)
                .unwrap_or(DEFAULT_IO_THREADS);
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("wsbind-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Runtime(e.clone()))
}

/// `future`'s output, or None once `limit` passed; without a limit, it
/// takes as long as it takes (Qt's negative handshake timeout).
pub async fn within<F: Future>(limit: Option<Duration>, future: F) -> Option<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, future).await.ok(),
        None => Some(future.await),
    }
}

/// Runs `future` on the runtime's threads. Should it panic (a bug in
/// wsbind), `on_panic` gets the message, so that Python hears of it instead
/// of waiting for ever.
pub fn spawn<F>(future: F, on_panic: impl FnOnce(String) + Send + 'static) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    // The panic is caught inside the task, not by a second task awaiting
    // it: a server spawns one of these per connection, and the second
    // task's memory counted against every idle connection.
    // Boxed out here: moved into the task's own state, the future would
    // have taken its room twice (the captured value, then the pinned one).
    let mut future = Box::pin(future);
    runtime()?.spawn(async move {
        let polled = std::future::poll_fn(|cx| {
            match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
                Ok(polled) => polled.map(Ok),
                Err(payload) => Poll::Ready(Err(payload)),
            }
        })
        .await;
        if let Err(payload) = polled {
            on_panic(panic_message(payload));
        }
    });
    Ok(())
}

/// Runs `future` on the runtime's threads and gives its handle.
pub fn spawn_joinable<F>(future: F) -> Result<tokio::task::JoinHandle<()>, Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    Ok(runtime()?.spawn(future))
}

/// Builds the runtime now, if it is not built yet; the error says why it
/// cannot be.
pub fn ready() -> Result<(), Error> {
    runtime().map(drop)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_task_that_panics_reports_its_message_and_the_runtime_goes_on() {
        let (told, heard) = std::sync::mpsc::channel();
        let crash = told.clone();
        spawn(
            async {
                tokio::task::yield_now().await;
                panic!("a bug, after a first poll");
            },
            move |message| crash.send(message).unwrap(),
        )
        .unwrap();
        let wait = Duration::from_secs(10);
        assert_eq!(
            heard.recv_timeout(wait).unwrap(),
            "a bug, after a first poll"
        );
        spawn(async {}, move |message| told.send(message).unwrap()).unwrap();
        // The last sender goes with the task, unused.
        assert_eq!(
            heard.recv_timeout(wait),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected),
            "a task that ends well reports nothing"
        );
    }
}
