//! wsbind's errors as Python exceptions. The classes are Python's
//! (python/wsbind/errors.py), so that the tree can mix in ValueError and be
//! read in one place.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::PyErr;

use crate::errors::Error;

pyo3::import_exception!(wsbind.errors, NotOpenError);
pyo3::import_exception!(wsbind.errors, InvalidURL);
pyo3::import_exception!(wsbind.errors, BufferFullError);

impl From<Error> for PyErr {
    fn from(err: Error) -> PyErr {
        let message = err.to_string();
        match err {
            Error::InvalidUrl(_) => InvalidURL::new_err(message),
            Error::NotOpen => NotOpenError::new_err(message),
            Error::BufferFull { .. } => BufferFullError::new_err(message),
            Error::FragmentKind { .. } => PyTypeError::new_err(message),
            Error::Runtime(_) => PyRuntimeError::new_err(message),
        }
    }
}
