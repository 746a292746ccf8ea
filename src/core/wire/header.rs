//! The common message header (RFC 5352 §2.1, RFC 5353 §2): type, flags, length.

use super::error::WireError;

/// Offset of the message type byte.
pub const TYPE: usize = 0;
/// Offset of the flags byte.
pub const FLAGS: usize = 1;
/// Offset of the 16-bit message length (whole message including this header).
pub const LENGTH: usize = 2;
/// Size of the common header.
pub const HEADER_LEN: usize = 4;

/// Rounds up to the next multiple of 4 (the TLV alignment).
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// A checked view of one message: the header's length has been validated against the buffer.
///
/// The buffer may hold the message plus up to 3 bytes of final padding when the length field is
/// not a multiple of 4 (rsplib always sends padded lengths; we accept both).
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    buf: &'a [u8],
}

impl<'a> MessageView<'a> {
    /// Validates the header and the length against `buf`, which must hold exactly one message.
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        let len = match message_length(buf)? {
            Some(len) => len,
            None => {
                let need = if buf.len() < HEADER_LEN {
                    HEADER_LEN
                } else {
                    u16::from_be_bytes([buf[LENGTH], buf[LENGTH + 1]]) as usize
                };
                return Err(WireError::Truncated {
                    what: if buf.len() < HEADER_LEN {
                        "message header"
                    } else {
                        "message"
                    },
                    need,
                    have: buf.len(),
                });
            }
        };
        if buf.len() > pad4(len) {
            return Err(WireError::TrailingBytes {
                extra: buf.len() - pad4(len),
            });
        }
        Ok(MessageView { buf })
    }

    /// The message type byte.
    pub fn msg_type(&self) -> u8 {
        self.buf[TYPE]
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buf[FLAGS]
    }

    /// The length field.
    pub fn length(&self) -> usize {
        u16::from_be_bytes([self.buf[LENGTH], self.buf[LENGTH + 1]]) as usize
    }

    /// Everything after the header up to the buffer end (the last TLV's padding may be there).
    pub fn body(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..]
    }

    /// The bytes the length field covers after the header (fixed fields and parameters).
    pub fn params(&self) -> &'a [u8] {
        &self.buf[HEADER_LEN..self.length()]
    }

    /// The whole message as received.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }
}

/// For stream transports: how many bytes the first message in `buf` occupies, or `None` if
/// `buf` does not hold it completely yet. The result includes the final padding when the length
/// field is not a multiple of 4 and the padding is present (otherwise the unpadded length).
/// Errors on a length field below the header size.
pub fn message_length(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[LENGTH], buf[LENGTH + 1]]) as usize;
    if len < HEADER_LEN {
        return Err(WireError::BadLength {
            what: "message",
            len,
            tlv: None,
        });
    }
    if len > buf.len() {
        return Ok(None);
    }
    Ok(Some(pad4(len).min(buf.len())))
}

/// Writes a header with length 0 at the end of `buf`; returns its offset for [`finish_message`].
pub(crate) fn start_message(buf: &mut Vec<u8>, msg_type: u8, flags: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[msg_type, flags, 0, 0]);
    at
}

/// Patches the length of the message that starts at `at` (padded total, as rsplib sends it).
pub(crate) fn finish_message(buf: &mut [u8], at: usize) -> Result<(), WireError> {
    let len = buf.len() - at;
    debug_assert_eq!(len % 4, 0);
    let len = u16::try_from(len).map_err(|_| WireError::TooLong {
        what: "message",
        len,
    })?;
    buf[at + LENGTH..at + LENGTH + 2].copy_from_slice(&len.to_be_bytes());
    Ok(())
}
