//! Reading the HTTP head of a handshake (or of a proxy's answer).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::protocol::handshake::head_end;

/// Reads an HTTP head (up to its blank line) of at most `limit` bytes;
/// returns it and whatever arrived after it, or None if it is too large.
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
    }
}
