//! Close codes (RFC 6455 §7.4): their names, which may be sent and which
//! received, and [`Failure`], the close code and sentence of a failed
//! connection.

use std::fmt;

/// A close code. The constants name the codes wsbind sends or reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection is fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint goes away (a server that stops).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1005: the peer's close frame carried no code. Reported, never sent.
    pub const NO_STATUS_RECEIVED: CloseCode = CloseCode(1005);
    /// 1006: the connection ended without a close frame. Reported, never sent.
    pub const ABNORMAL_CLOSURE: CloseCode = CloseCode(1006);
    /// 1007: a text message (or close reason) that is not UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: a policy refused the peer (a server's origin check).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message over the receiving limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the endpoint cannot go on (a peer that stopped answering pings).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// Whether an endpoint may put the code in a close frame it sends
    /// (§7.4.1: the codes in use; 1012-1014, which IANA registered after RFC
    /// 6455, such as a server's 1012 "service restart", which websockets
    /// sends too; and 3000-4999 for libraries and applications).
    pub fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether a received close frame may carry the code: the sendable ones.
    pub fn is_receivable(self) -> bool {
        self.is_sendable()
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Longest close reason: a control frame holds 125 bytes, two are the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// Checks a close code and reason as the caller of `close()` gives them.
pub fn check_sendable(code: u16, reason: &str) -> Result<(), String> {
    if !CloseCode(code).is_sendable() {
        return Err(format!(
            "close code {code} cannot be sent: use 1000-1003, 1007-1014 or 3000-4999"
        ));
    }
    if reason.len() > MAX_CLOSE_REASON {
        return Err(format!(
            "close reason is {} bytes of UTF-8, over the limit of {MAX_CLOSE_REASON}",
            reason.len()
        ));
    }
    Ok(())
}

/// What a failed connection tells the user: the close code we send (or
/// report) and a sentence for `error_string`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// 1002, 1007, 1009 or 1011 when we tell the peer why we drop it,
    /// otherwise 1006 (no close frame).
    pub code: CloseCode,
    /// A readable description, for `error_string`.
    pub message: String,
}

impl Failure {
    pub fn new(code: CloseCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// A connection that ended without a close frame: nothing is sent.
    pub fn abnormal(message: impl Into<String>) -> Self {
        Failure::new(CloseCode::ABNORMAL_CLOSURE, message)
    }

    /// Whether the code is one we send to the peer before dropping it.
    pub fn is_sent(&self) -> bool {
        self.code.is_sendable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sending_and_receiving_rules() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(CloseCode(code).is_sendable(), "{code}");
            assert!(CloseCode(code).is_receivable(), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
            assert!(!CloseCode(code).is_receivable(), "{code}");
        }
    }

    #[test]
    fn close_reasons_are_bounded() {
        assert!(check_sendable(1000, "bye").is_ok());
        assert!(check_sendable(1005, "").is_err());
        assert!(check_sendable(1000, &"x".repeat(MAX_CLOSE_REASON)).is_ok());
        assert!(check_sendable(1000, &"x".repeat(MAX_CLOSE_REASON + 1)).is_err());
    }

    #[test]
    fn only_real_codes_are_sent() {
        assert!(Failure::new(CloseCode::PROTOCOL_ERROR, "x").is_sent());
        assert!(!Failure::abnormal("x").is_sent());
    }
}
