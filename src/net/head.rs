//! Reading the HTTP head of a handshake (or of a proxy's answer).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::handshake::head_end;

/// How much of an HTTP head of at most `limit` bytes the bytes read so far hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// It is the first this many bytes, its blank line included.
    Whole(usize),
    /// Its end has not arrived yet.
    Partial,
    /// It is longer than `limit`.
    TooLarge,
}

/// Where the head in `buffer` ends, of whose bytes the first `scanned` were
/// looked at before (a head that arrives a byte at a time is then not
/// searched from its start at each byte). The answer does not depend on how
/// the bytes arrived: a head one byte over `limit` is too large whether it
/// came in one read or many.
pub fn find_head(buffer: &[u8], scanned: usize, limit: usize) -> Head {
    // The blank line may have begun in the last three bytes looked at.
    let from = scanned.saturating_sub(3).min(buffer.len());
    match head_end(&buffer[from..]) {
        Some(end) if from + end <= limit => Head::Whole(from + end),
        Some(_) => Head::TooLarge,
        None if buffer.len() >= limit => Head::TooLarge,
        None => Head::Partial,
    }
}

/// Reads an HTTP head (up to its blank line) of at most `limit` bytes;
/// returns it and whatever arrived after it, or None if it is too large.
/// Bytes that cannot start an HTTP head (a TLS ClientHello sent to a plain
/// port starts with 0x16) fail at once with `InvalidData`, rather than
/// leaving both sides to wait for a blank line that never comes.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: usize,
) -> std::io::Result<Option<(BytesMut, BytesMut)>> {
    let mut buffer = BytesMut::with_capacity(1024);
    let mut scanned = 0;
    loop {
        match find_head(&buffer, scanned, limit) {
            Head::Whole(end) => {
                let head = buffer.split_to(end);
                return Ok(Some((head, buffer)));
            }
            Head::TooLarge => return Ok(None),
            Head::Partial => scanned = buffer.len(),
        }
        if stream.read_buf(&mut buffer).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(&first) = buffer.first() {
            // A method, "HTTP/", or the empty lines RFC 9112 §2.2 lets a server skip.
            if !(first.is_ascii_alphabetic() || first == b'\r' || first == b'\n') {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not HTTP",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_over_the_limit_is_too_large_however_it_arrived() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let whole = find_head(head, 0, head.len());
        assert_eq!(whole, Head::Whole(head.len()));
        assert_eq!(find_head(head, 0, head.len() - 1), Head::TooLarge);
        // Looked at a byte at a time, the blank line found across reads.
        for scanned in 0..head.len() {
            assert_eq!(find_head(head, scanned, head.len()), whole, "{scanned}");
            assert_eq!(find_head(&head[..scanned], 0, 100), Head::Partial);
        }
    }
}
