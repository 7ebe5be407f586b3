//! Reading the HTTP head of a handshake (or of a proxy's answer).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::handshake::head_end;

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
    loop {
        if let Some(end) = head_end(&buffer) {
            let head = buffer.split_to(end);
            return Ok(Some((head, buffer)));
        }
        if buffer.len() > limit {
            return Ok(None);
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
