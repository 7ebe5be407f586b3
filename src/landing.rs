//! Large binary messages read straight into the `bytes` object Python gets.
//!
//! A message is otherwise received into a buffer of ours and copied into a
//! new `bytes` by the Python thread: for a 16 MiB message, a second pass over
//! it and twice its size in memory. From [`LAND_FROM`](crate::config::LAND_FROM)
//! bytes, the I/O thread asks the Python thread for an empty `bytes` of the
//! message's size as soon as the frame's header arrives; only a thread
//! holding the GIL may create one. Once it has it, the I/O thread reads the
//! rest of the payload into it (unmasking as it goes) and hands it over
//! whole. Until the Python thread answers (it may be busy in a handler), the
//! message keeps arriving into our buffer, and a message that arrives whole
//! before the answer takes the usual way.

use std::sync::{Arc, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;

/// A new Python `bytes` object that nothing else refers to yet, open for
/// writing until it is handed to Python.
pub struct Landing {
    bytes: Py<PyAny>,
    data: *mut u8,
    len: usize,
}

// SAFETY: `data` points into the object `bytes` keeps alive, which no other
// thread sees until `into_bytes` hands it over, so one thread at a time
// writes to it.
unsafe impl Send for Landing {}

impl Landing {
    /// An uninitialized bytes object of `len` bytes.
    pub fn new(py: Python<'_>, len: usize) -> PyResult<Self> {
        let size = ffi::Py_ssize_t::try_from(len)
            .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("message too large"))?;
        // SAFETY: a NULL source asks for an uninitialized object, which we
        // own alone; its buffer lives as long as the object.
        unsafe {
            let bytes = Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
            )?;
            let data = ffi::PyBytes_AsString(bytes.as_ptr()).cast::<u8>();
            Ok(Landing {
                bytes: bytes.unbind(),
                data,
                len,
            })
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: see `unsafe impl Send`; `&mut self` makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.data, self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The filled object, for Python.
    pub fn into_bytes(self) -> Py<PyAny> {
        self.bytes
    }
}

/// The I/O thread's request for a [`Landing`], which the Python thread
/// fulfils when it takes its events.
pub struct Request {
    len: usize,
    landing: Mutex<Option<Landing>>,
}

impl Request {
    pub fn new(len: usize) -> Arc<Self> {
        Arc::new(Request {
            len,
            landing: Mutex::new(None),
        })
    }

    /// Creates the bytes object, unless the connection stopped waiting for
    /// it. Should that fail (out of memory), the message takes the usual
    /// way, whose own copy then reports the failure.
    pub fn fulfil(self: &Arc<Self>, py: Python<'_>) {
        if Arc::strong_count(self) == 1 {
            return;
        }
        if let Ok(landing) = Landing::new(py, self.len) {
            *self.landing.lock().unwrap_or_else(|e| e.into_inner()) = Some(landing);
        }
    }

    /// The size of the bytes object asked for.
    pub fn size(&self) -> usize {
        self.len
    }

    /// The bytes object, once the Python thread made it.
    pub fn take(&self) -> Option<Landing> {
        self.landing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}
