//! Message boundaries on a byte stream (our TCP mapping of ASAP and ENRP).
//!
//! ASAP and ENRP messages are self-delimiting: bytes 2..4 of the 4-byte common header give the
//! length of the whole message, header included. Over TCP they are sent back to back, unframed;
//! [`Deframer`] cuts a received byte stream into messages. A length below 4 cannot be resynchronised
//! and is reported as an error (the connection must then be closed). rsplib pads every message to
//! a multiple of 4 and counts the padding in the length; a sender that does not pad is accepted
//! (the length is taken as given).

/// Size of the common message header.
pub const HEADER_SIZE: usize = 4;

/// An empty deframer keeps at most this much buffer capacity.
const KEEP_CAPACITY: usize = 4096;

/// The stream is unusable: a header announced a length below the header size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message header announces length {0}, below the 4-byte header")]
pub struct BadLength(pub u16);

/// Cuts a byte stream into messages.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes. What was already returned is dropped first, so the buffer holds
    /// no more than [`Deframer::pending`] bytes plus `bytes`. When they leave the first message
    /// incomplete, room for all of it is reserved at once: a message arriving in pieces costs
    /// one allocation of its own size, not a doubling series that may end near twice that.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        let have = self.buf.len();
        let total = have + bytes.len();
        if total >= HEADER_SIZE {
            let at = |i: usize| {
                if i < have {
                    self.buf[i]
                } else {
                    bytes[i - have]
                }
            };
            let len = u16::from_be_bytes([at(2), at(3)]) as usize;
            if len > total {
                self.buf.reserve_exact(len - have);
            }
        }
        self.buf.extend_from_slice(bytes);
    }

    /// True if [`Deframer::next_message`] has an answer without more input: a whole message,
    /// or a header it must reject.
    pub fn has_message(&self) -> bool {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_SIZE {
            return false;
        }
        let len = u16::from_be_bytes([avail[2], avail[3]]) as usize;
        len < HEADER_SIZE || avail.len() >= len
    }

    /// The next complete message, if one has arrived.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, BadLength> {
        let mut msg = Vec::new();
        Ok(self.next_message_into(&mut msg)?.then_some(msg))
    }

    /// The next complete message, if one has arrived, into `msg` (replacing what it held; its
    /// capacity is reused): true if there was one.
    pub fn next_message_into(&mut self, msg: &mut Vec<u8>) -> Result<bool, BadLength> {
        let avail = &self.buf[self.start..];
        if avail.len() < HEADER_SIZE {
            self.compact();
            return Ok(false);
        }
        let len = u16::from_be_bytes([avail[2], avail[3]]);
        if (len as usize) < HEADER_SIZE {
            return Err(BadLength(len));
        }
        if avail.len() < len as usize {
            self.compact();
            return Ok(false);
        }
        msg.clear();
        msg.extend_from_slice(&avail[..len as usize]);
        self.start += len as usize;
        Ok(true)
    }

    /// Bytes received but not yet returned as a message.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Drops what was returned; an emptied buffer that grew beyond [`KEEP_CAPACITY`] is
    /// freed (thousands of idle connections must not each keep a burst's 64 KiB).
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_in_pieces_is_buffered_in_one_allocation_of_its_size() {
        let mut msg = vec![0u8; 65532];
        msg[..4].copy_from_slice(&[0x05, 0x00, 0xff, 0xfc]);
        let mut d = Deframer::new();
        d.push(&msg[..3]);
        assert!(d.buf.capacity() < 4096);
        d.push(&msg[3..1000]);
        assert_eq!(d.buf.capacity(), 65532);
        let mut at = 1000;
        for step in [7000, 13, 20000, 30000] {
            d.push(&msg[at..at + step]);
            at += step;
            assert_eq!(d.buf.capacity(), 65532, "after {at} bytes");
        }
        d.push(&msg[at..]);
        assert_eq!(d.buf.capacity(), 65532);
        assert_eq!(d.next_message().unwrap(), Some(msg));
    }

    #[test]
    fn splits_back_to_back_messages_in_any_chunking() {
        let a = [0x07u8, 0x00, 0x00, 0x08, 1, 2, 3, 4];
        let b = [0x08u8, 0x01, 0x00, 0x04];
        let stream: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for chunk in 1..=stream.len() {
            let mut d = Deframer::new();
            let mut out = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(m) = d.next_message().unwrap() {
                    out.push(m);
                }
            }
            assert_eq!(out, vec![a.to_vec(), b.to_vec()], "chunk size {chunk}");
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn has_message_tells_whole_messages_from_fragments_and_frees_a_drained_burst() {
        let mut d = Deframer::new();
        d.push(&[0x07, 0x00, 0x00]);
        assert!(!d.has_message());
        d.push(&[0x08, 1, 2, 3]);
        assert!(!d.has_message());
        d.push(&[4]);
        assert!(d.has_message());
        assert_eq!(d.next_message().unwrap().unwrap().len(), 8);
        assert!(!d.has_message());

        let mut big = vec![0u8; 65532];
        big[..4].copy_from_slice(&[1, 0, 0xff, 0xfc]);
        d.push(&big);
        assert!(d.has_message());
        assert_eq!(d.next_message().unwrap().unwrap().len(), 65532);
        assert_eq!(d.next_message(), Ok(None));
        assert_eq!(d.pending(), 0);
        assert!(d.buf.capacity() <= KEEP_CAPACITY);

        d.push(&[1, 0, 0, 3]);
        assert!(d.has_message(), "a bad length is an answer too");
    }

    #[test]
    fn next_message_into_replaces_the_buffer_contents() {
        let mut d = Deframer::new();
        d.push(&[
            0x07, 0x00, 0x00, 0x08, 1, 2, 3, 4, 0x08, 0x01, 0x00, 0x04, 9,
        ]);
        let mut msg = vec![0xee; 100];
        assert_eq!(d.next_message_into(&mut msg), Ok(true));
        assert_eq!(msg, [0x07, 0x00, 0x00, 0x08, 1, 2, 3, 4]);
        assert_eq!(d.next_message_into(&mut msg), Ok(true));
        assert_eq!(msg, [0x08, 0x01, 0x00, 0x04]);
        assert_eq!(d.next_message_into(&mut msg), Ok(false));
        assert_eq!(
            msg,
            [0x08, 0x01, 0x00, 0x04],
            "left alone without a message"
        );
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn rejects_lengths_below_the_header() {
        let mut d = Deframer::new();
        d.push(&[1, 0, 0, 3]);
        assert_eq!(d.next_message(), Err(BadLength(3)));
    }
}
