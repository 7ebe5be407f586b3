//! Received messages as the parser hands them over: text whose UTF-8 is
//! checked, and binary data that may still be masked.

use bytes::Bytes;

use super::framer::copy_masked;

/// Text whose UTF-8 the parser has checked, kept as bytes so that it
/// reaches Python without another copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub(super) Bytes);

impl Text {
    pub(super) fn checked(bytes: Bytes) -> Result<Text, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Text(bytes))
    }

    pub fn as_str(&self) -> &str {
        // SAFETY: a Text is only made from bytes that passed from_utf8.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(Bytes::copy_from_slice(s.as_bytes()))
    }
}

/// A binary message as it arrived. A client's message in one frame is left
/// masked: Python copies it into a `bytes` anyway, and unmasks it in that same
/// pass, off the I/O thread.
#[derive(Debug, Clone)]
pub struct Binary {
    pub(super) data: Bytes,
    pub(super) mask: Option<[u8; 4]>,
}

impl Binary {
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Writes the message, unmasked, to `out`: one pass, and no need for
    /// the memory to be initialized first (a new Python bytes object).
    ///
    /// # Safety
    ///
    /// `out` must be valid for `len()` bytes of writes.
    pub unsafe fn write_to(&self, out: *mut u8) {
        let src = &self.data[..];
        // SAFETY: src is len() bytes; the caller vouches for out.
        unsafe {
            match self.mask {
                None => std::ptr::copy_nonoverlapping(src.as_ptr(), out, src.len()),
                Some(mask) => copy_masked(src, out, mask),
            }
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0; self.len()];
        // SAFETY: out holds len() bytes.
        unsafe { self.write_to(out.as_mut_ptr()) };
        out
    }
}

impl From<Bytes> for Binary {
    fn from(data: Bytes) -> Self {
        Binary { data, mask: None }
    }
}

/// The same message, masked or not.
impl PartialEq for Binary {
    fn eq(&self, other: &Self) -> bool {
        self.to_vec() == other.to_vec()
    }
}

impl Eq for Binary {}
