//! Binary messages written straight into the `bytes` object Python gets.
//!
//! A message is otherwise received into a buffer of ours and copied into a
//! new `bytes` by the Python thread: for a 16 MiB message, a second pass over
//! it and twice its size in memory. From [`LAND_FROM`]
//! bytes, the I/O thread asks the Python thread for an empty `bytes` of the
//! message's size as soon as the frame's header arrives; only a thread
//! holding the GIL may create one. Once it has it, the I/O thread reads the
//! rest of the payload into it (unmasking as it goes) and hands it over
//! whole. Until the Python thread answers (it may be busy in a handler), the
//! message keeps arriving into our buffer, and a message that arrives whole
//! before the answer takes the usual way. A Python thread that reads the
//! socket itself (see `conn/receiver.rs`) makes the object at
//! once, taking the GIL for it.
//!
//! Smaller messages, from [`SPARE_FROM`] bytes,
//! are copied by the I/O thread into a blank `bytes` that the Python
//! thread made ahead of time (see [`Spares`]), while the message is still in
//! the I/O thread's cache: otherwise the Python thread reads it from the other
//! core, and in an echo the I/O thread reads it back once more to send it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::config::{LAND_FROM, MAX_SPARE_BYTES, SPARE_FROM};
use crate::protocol::Binary;

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

    /// Writes `message`, unmasked, into it: one pass over memory that need
    /// not be initialized first. It must be of the message's length.
    pub fn fill(&mut self, message: &Binary) {
        assert_eq!(self.len, message.len(), "a landing of another size");
        // SAFETY: `data` is valid for `len` bytes of writes (see `as_mut_slice`).
        unsafe { message.write_to(self.data) };
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An uninitialized bytes object made at once, taking the GIL for it,
    /// by a thread that reads a socket without it; None should Python fail
    /// to make it (out of memory) or be exiting: the message then takes
    /// the usual way.
    pub fn new_with_gil(len: usize) -> Option<Self> {
        Python::try_attach(|py| Landing::new(py, len).ok()).flatten()
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

/// What a [`Spares`] pool holds: something with a length that is made and
/// dropped on the Python thread ([`Landing`]; plain buffers in tests).
pub trait Blank {
    /// Its length in bytes.
    fn size(&self) -> usize;
}

impl Blank for Landing {
    fn size(&self) -> usize {
        self.len
    }
}

/// Blank `bytes` objects of the sizes that messages have lately had, made
/// by the Python thread of one event queue for its I/O threads to fill.
///
/// Each message the I/O thread fills one for asks for the next of its size,
/// as does a message of the same size as the last that found none; the
/// Python thread makes what was asked for whenever it takes its events. A
/// steady stream of messages of one size thus finds a blank ready for each,
/// and messages of ever new sizes cost nothing but a look. Beyond
/// [`MAX_SPARE_BYTES`] the oldest blanks go, so that a queue never holds more.
pub struct Spares<B = Landing> {
    state: Mutex<SpareState<B>>,
}

struct SpareState<B> {
    /// Ready to fill, oldest first.
    blanks: VecDeque<B>,
    /// What `blanks` hold in all.
    bytes: usize,
    /// The sizes to make a blank of, one each.
    wanted: Vec<usize>,
    /// What `wanted` adds up to.
    wanted_bytes: usize,
    /// The size of the last message that found no blank.
    missed: usize,
}

impl<B> Default for Spares<B> {
    fn default() -> Self {
        Spares {
            state: Mutex::new(SpareState {
                blanks: VecDeque::new(),
                bytes: 0,
                wanted: Vec::new(),
                wanted_bytes: 0,
                missed: 0,
            }),
        }
    }
}

impl<B: Blank> Spares<B> {
    fn lock(&self) -> MutexGuard<'_, SpareState<B>> {
        // Nothing here is left half-changed by a panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A blank of exactly `len` bytes, if one is ready; only messages from
    /// [`SPARE_FROM`] up to [`LAND_FROM`] take one.
    pub fn take(&self, len: usize) -> Option<B> {
        if !(SPARE_FROM..LAND_FROM).contains(&len) {
            return None;
        }
        let mut state = self.lock();
        let found = state.blanks.iter().position(|b| b.size() == len);
        let again = match found {
            Some(_) => true,
            None => std::mem::replace(&mut state.missed, len) == len,
        };
        // More than a queue's worth would only be made to be dropped.
        if again && state.wanted_bytes + len <= MAX_SPARE_BYTES {
            state.wanted.push(len);
            state.wanted_bytes += len;
        }
        let blank = state.blanks.remove(found?)?;
        state.bytes -= len;
        Some(blank)
    }

    /// Makes the blanks asked for with `make` (None: it could not, and the
    /// message takes the usual way), and drops the oldest beyond the bound.
    /// Called on the Python thread, which alone may create and free objects.
    pub fn refill(&self, mut make: impl FnMut(usize) -> Option<B>) {
        let wanted = {
            let mut state = self.lock();
            state.wanted_bytes = 0;
            std::mem::take(&mut state.wanted)
        };
        if wanted.is_empty() {
            return;
        }
        let made: Vec<B> = wanted.into_iter().filter_map(&mut make).collect();
        let mut dropped = Vec::new();
        let mut state = self.lock();
        for blank in made {
            state.bytes += blank.size();
            state.blanks.push_back(blank);
        }
        while state.bytes > MAX_SPARE_BYTES {
            let Some(old) = state.blanks.pop_front() else {
                break;
            };
            state.bytes -= old.size();
            dropped.push(old);
        }
        drop(state);
        // Dropped here, by the caller's thread, not under the lock.
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Blank for Vec<u8> {
        fn size(&self) -> usize {
            self.len()
        }
    }

    fn refill(spares: &Spares<Vec<u8>>) -> Vec<usize> {
        let mut made = Vec::new();
        spares.refill(|len| {
            made.push(len);
            Some(vec![0; len])
        });
        made
    }

    #[test]
    fn a_size_that_recurs_finds_a_blank_for_each_message() {
        let spares = Spares::<Vec<u8>>::default();
        let size = 64 << 10;
        assert!(spares.take(size).is_none());
        assert!(
            refill(&spares).is_empty(),
            "one message of a size asks for nothing"
        );
        assert!(spares.take(size).is_none());
        assert_eq!(refill(&spares), [size], "the second of a size asks for one");
        // From here on, each message takes a blank and asks for the next.
        for _ in 0..100 {
            assert_eq!(spares.take(size).map(|b| b.len()), Some(size));
            assert_eq!(refill(&spares), [size]);
        }
        // Several messages between two refills: as many blanks as they took.
        assert!(spares.take(size).is_some());
        assert!(spares.take(size).is_none());
        assert_eq!(refill(&spares), [size, size]);
        assert!(spares.take(size).is_some() && spares.take(size).is_some());
    }

    #[test]
    fn sizes_that_do_not_recur_or_are_out_of_range_cost_no_blank() {
        let spares = Spares::<Vec<u8>>::default();
        for len in (SPARE_FROM..SPARE_FROM + 100).chain([SPARE_FROM - 1, LAND_FROM, 1, 0]) {
            assert!(spares.take(len).is_none());
        }
        // Out of range even when the size comes again.
        assert!(spares.take(LAND_FROM).is_none());
        assert!(spares.take(SPARE_FROM - 1).is_none());
        assert!(refill(&spares).is_empty());
        // A blank of another size is no use: exact sizes only.
        spares.take(SPARE_FROM * 2);
        spares.take(SPARE_FROM * 2);
        refill(&spares);
        assert!(spares.take(SPARE_FROM * 2 + 1).is_none());
        assert_eq!(spares.lock().blanks.len(), 1);
    }

    #[test]
    fn a_queue_never_holds_more_than_its_bound_and_drops_the_oldest() {
        let spares = Spares::<Vec<u8>>::default();
        let size = LAND_FROM - 1;
        // A burst asks for blanks up to the bound, not one per message.
        spares.take(size);
        for _ in 0..100 {
            spares.take(size);
        }
        let made = refill(&spares);
        assert_eq!(made.len(), MAX_SPARE_BYTES / size);
        // Another size comes into use: its blanks push the old ones out.
        let small = SPARE_FROM;
        for _ in 0..=MAX_SPARE_BYTES / small {
            spares.take(small);
        }
        refill(&spares);
        let state = spares.lock();
        assert!(state.bytes <= MAX_SPARE_BYTES);
        assert_eq!(
            state.bytes,
            state.blanks.iter().map(Vec::len).sum::<usize>()
        );
        assert!(state.blanks.iter().all(|b| b.len() == small));
    }
}
