//! The one tokio runtime that owns every socket.
//!
//! Its threads never hold the GIL and never run Python: whatever they learn
//! reaches Python through an [`EventQueue`](crate::events::EventQueue).

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

/// Runs `future` on the runtime's threads.
pub fn spawn<F>(future: F) -> Result<(), Error>
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime()?.spawn(future);
    Ok(())
}
