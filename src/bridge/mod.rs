//! The bridge between tokio and Python threads: the queue of events to one
//! Python thread, the poller with which that thread reads its sockets, the
//! `bytes` objects large messages land in, and the questions tasks ask
//! Python's handlers.
//!
//! Knows the protocol's message types, not connections: a connection is a
//! [`Reader`] to it, and an event whatever type the connection layer sends.
//! Holds no `#[pyclass]`; it takes the GIL only to make `bytes` objects.

pub mod landing;
pub mod poller;
pub mod question;
pub mod queue;

pub use landing::{Landing, Request};
pub use poller::Poller;
pub use question::Question;
pub use queue::{burst, Batch, Queue, ReadOutcome, Reader, Sink, Weigh};
