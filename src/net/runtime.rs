//! The one tokio runtime that owns every socket.
//!
//! Its threads never hold the GIL and never run Python: whatever they learn
//! reaches Python through a [`Queue`](crate::bridge::Queue).

use std::future::Future;
use std::sync::OnceLock;

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

/// Runs `future` on the runtime's threads. Should it panic (a bug in
/// wsbind), `on_panic` gets the message, so that Python hears of it instead
/// of waiting for ever.
pub fn spawn<F>(future: F, on_panic: impl FnOnce(String) + Send + 'static) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = runtime()?;
    let task = runtime.spawn(future);
    runtime.spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                on_panic(panic_message(e.into_panic()));
            }
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
