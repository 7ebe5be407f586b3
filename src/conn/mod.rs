//! Connections at work: the task of each open connection (reading, writing,
//! driving its [`Session`](crate::protocol::Session)), the outbox that keeps
//! the order of what is sent from any thread, the receiver that reads on
//! whichever thread has it, and the client and server that open
//! connections. Knows the protocol, the network and the bridge; holds no
//! `#[pyclass]` (see `py/`).

pub mod broadcast;
pub mod broker;
pub mod client;
pub mod commands;
pub mod connection;
pub mod event;
pub mod groups;
pub mod http;
pub mod members;
pub mod outbox;
pub mod receiver;
pub mod server;
pub mod settings;
pub mod takeover;
pub mod task;
pub mod writer;

pub use connection::Connection;
pub use event::{Accepted, Agreed, Event, EventQueue, EventSink};
pub use http::{HttpAsk, HttpConfig};
pub use server::{Server, ServerConfig};
pub use settings::Settings;
