//! Rust futures as Python awaitables, through pyo3-async-runtimes.
//!
//! Some waits are Rust's alone: binding a server's address (which may wait
//! for another server of this process to let it go, see
//! [`takeover`](crate::conn::takeover)) or a sender's queue draining.
//! [`awaitable`] turns such a future into an `asyncio.Future` of the running
//! loop. The future runs on wsbind's own tokio runtime, whose threads never
//! take the GIL; its result is handed to the loop (`call_soon_threadsafe`,
//! which needs the GIL) by one thread kept for that, `wsbind-await`.
//! pyo3-async-runtimes does that hand-over in its runtime's `spawn_blocking`,
//! which here is that thread.
//!
//! Cancelling the Python future drops the Rust one.
//!
//! Once Python exits, that thread must not touch it: CPython frees the
//! states of other threads while it finalizes, and one that runs Python
//! then crashes the process. An `atexit` hook, which runs before that,
//! waits for the job under way and has the thread drop the others.

use std::any::Any;
use std::cell::OnceCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex, OnceLock, TryLockError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, JoinError};
use pyo3_async_runtimes::TaskLocals;
use tokio::sync::oneshot;

use crate::config::EXIT_WAIT;
use crate::net::runtime;

/// An `asyncio.Future` of the running loop, done when `future` is.
pub fn awaitable<'py, F, T>(py: Python<'py>, future: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    runtime::ready().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    if EXITED.load(Ordering::Acquire) {
        // An atexit handler that runs after wsbind's: its await would never end.
        return Err(PyRuntimeError::new_err(
            "Python is exiting: wsbind hands no more results to an asyncio loop",
        ));
    }
    if handing_over().is_none() {
        return Err(PyRuntimeError::new_err(
            "wsbind cannot start its wsbind-await thread",
        ));
    }
    generic::future_into_py::<Awaits, F, T>(py, future)
}

/// Work for the `wsbind-await` thread: a result handed to a loop.
type Job = Box<dyn FnOnce() + Send>;

/// Whether Python is exiting: no job runs once it is set.
static EXITED: AtomicBool = AtomicBool::new(false);
/// Held while a job runs, so that the `atexit` hook can wait for the job
/// that saw `EXITED` unset to end.
static RUNNING: Mutex<()> = Mutex::new(());

/// The `atexit` hook: no job touches Python from now on.
#[pyfunction]
pub fn python_exits(py: Python<'_>) {
    EXITED.store(true, Ordering::Release);
    // Detached while it waits: the job under way may need the GIL to end.
    // Bounded: a child process forked while a job ran has the lock held
    // by a thread it does not have.
    py.detach(|| {
        let deadline = std::time::Instant::now() + EXIT_WAIT;
        while let Err(TryLockError::WouldBlock) = RUNNING.try_lock() {
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    });
}

/// Where jobs go to the `wsbind-await` thread, started on first use; None
/// if the thread could not start.
fn handing_over() -> Option<&'static mpsc::Sender<Job>> {
    static SENDER: OnceLock<Option<mpsc::Sender<Job>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (sender, jobs) = mpsc::channel::<Job>();
            std::thread::Builder::new()
                .name("wsbind-await".into())
                .spawn(move || {
                    for job in jobs {
                        job();
                    }
                })
                .ok()
                .map(|_| sender)
        })
        .as_ref()
}

/// pyo3-async-runtimes' view of wsbind's runtime.
struct Awaits;

tokio::task_local! {
    /// The loop and context of the Python code that awaits a future.
    static LOCALS: OnceCell<TaskLocals>;
}

/// Why a spawned future or hand-over did not finish: its panic, if it
/// panicked (a bug in wsbind, reported to the awaiting code), else nothing.
struct Joined(Option<Box<dyn Any + Send>>);

impl JoinError for Joined {
    fn is_panic(&self) -> bool {
        self.0.is_some()
    }

    fn into_panic(self) -> Box<dyn Any + Send> {
        self.0.unwrap_or_else(|| Box::new("the task was cancelled"))
    }
}

type Joining = Pin<Box<dyn Future<Output = Result<(), Joined>> + Send>>;

impl generic::Runtime for Awaits {
    type JoinError = Joined;
    type JoinHandle = Joining;

    fn spawn<F>(future: F) -> Joining
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // `awaitable` checked that the runtime is there.
        match runtime::spawn_joinable(future) {
            Ok(task) => Box::pin(async move {
                task.await.map_err(|e| match e.try_into_panic() {
                    Ok(panic) => Joined(Some(panic)),
                    Err(_) => Joined(None),
                })
            }),
            Err(_) => Box::pin(std::future::ready(Err(Joined(None)))),
        }
    }

    fn spawn_blocking<F>(job: F) -> Joining
    where
        F: FnOnce() + Send + 'static,
    {
        let (done, finished) = oneshot::channel();
        let job: Job = Box::new(move || {
            let running = RUNNING.lock().unwrap_or_else(|e| e.into_inner());
            // No loop is left to take the result: dropped, which only
            // queues the references it holds for release (pyo3's pool).
            let ran = if EXITED.load(Ordering::Acquire) {
                Ok(())
            } else {
                catch_unwind(AssertUnwindSafe(job))
            };
            drop(running);
            let _ = done.send(ran);
        });
        // `awaitable` checked that the thread is there.
        if let Some(sender) = handing_over() {
            let _ = sender.send(job);
        }
        Box::pin(async move {
            match finished.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(panic)) => Err(Joined(Some(panic))),
                Err(_) => Err(Joined(None)),
            }
        })
    }
}

impl ContextExt for Awaits {
    fn scope<F, R>(locals: TaskLocals, future: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        let _ = cell.set(locals);
        Box::pin(LOCALS.scope(cell, future))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        LOCALS
            .try_with(|cell| cell.get().cloned())
            .unwrap_or_default()
    }
}
