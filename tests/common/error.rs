//! The one error type of the test phone.

use std::fmt;

/// Why a phone operation failed. Tests usually just `unwrap()` it; the message says what went wrong.
#[derive(Debug)]
pub enum PhoneError {
    /// A socket operation failed (bind, connect, send, TCP closed by the peer).
    Io(std::io::Error),
    /// Nothing (or not the expected thing) arrived in time.
    Timeout(String),
    /// Bytes that are not a SIP message, SDP or RTP packet we can read.
    Parse(String),
    /// The peer answered, but not in a way the phone can continue with.
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, PhoneError>;

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneError::Io(e) => write!(f, "socket error: {e}"),
            PhoneError::Timeout(what) => write!(f, "timed out: {what}"),
            PhoneError::Parse(what) => write!(f, "cannot parse: {what}"),
            PhoneError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl std::error::Error for PhoneError {}

impl From<std::io::Error> for PhoneError {
    fn from(e: std::io::Error) -> Self {
        PhoneError::Io(e)
    }
}
