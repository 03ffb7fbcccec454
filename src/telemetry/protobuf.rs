//! Protobuf output, by hand: the few messages the gateway writes (Envoy's `CheckResponse`
//! in decision mode, OTLP trace exports) are small and fixed, and a writer of five
//! methods costs less than a code generator and its runtime. Callers skip default values
//! themselves (proto3 leaves them out); the tests of each caller decode its bytes with
//! the message's own generated classes.

/// A protobuf message being written.
#[derive(Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

/// `v` as a varint: the bytes and how many of them are used.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut out = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        out[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    out[n] = v as u8;
    (out, n + 1)
}

impl Writer {
    fn varint(&mut self, v: u64) {
        let (bytes, n) = varint_bytes(v);
        self.buf.extend_from_slice(&bytes[..n]);
    }

    /// A varint field (written even when zero: callers skip defaults themselves).
    pub(crate) fn uint(&mut self, number: u64, v: u64) {
        self.varint(number << 3);
        self.varint(v);
    }

    /// A `fixed64` field (wire type 1).
    pub(crate) fn fixed64(&mut self, number: u64, v: u64) {
        self.varint((number << 3) | 1);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// A length-delimited field: bytes, a string, or a message already written.
    pub(crate) fn bytes(&mut self, number: u64, b: &[u8]) {
        self.varint((number << 3) | 2);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// An embedded message, written by `build` in place. Its length, known only then, goes
    /// in a byte kept in front of it; a message of 128 bytes or more moves by the 1–2
    /// bytes more its length needs. (A buffer per message cost an allocation and a copy
    /// each, and OTLP exports nest thousands of small ones.)
    pub(crate) fn message(&mut self, number: u64, build: impl FnOnce(&mut Writer)) {
        self.varint((number << 3) | 2);
        let at = self.buf.len();
        self.buf.push(0);
        build(self);
        let end = self.buf.len();
        let len = (end - at - 1) as u64;
        if len < 0x80 {
            self.buf[at] = len as u8;
            return;
        }
        let (prefix, n) = varint_bytes(len);
        self.buf.resize(end + n - 1, 0);
        self.buf.copy_within(at + 1..end, at + n);
        self.buf[at..at + n].copy_from_slice(&prefix[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_have_their_wire_types() {
        let mut w = Writer::default();
        w.uint(1, 300);
        w.fixed64(7, 1);
        w.bytes(5, b"ab");
        w.message(2, |m| m.bytes(1, &[7; 200]));
        assert_eq!(
            &w.buf[w.buf.len() - 206..w.buf.len() - 200],
            [0x12, 0xcb, 0x01, 0x0a, 0xc8, 0x01]
        );
        w.buf.truncate(w.buf.len() - 206);
        let mut big = Writer::default();
        big.message(1, |m| m.bytes(2, &[1; 20_000]));
        assert_eq!(big.buf[..7], [0x0a, 0xa4, 0x9c, 0x01, 0x12, 0xa0, 0x9c]);
        assert_eq!(big.buf.len(), 1 + 3 + 20_004);
        assert_eq!(
            w.buf,
            [
                0x08, 0xac, 0x02, // 1: varint 300
                0x39, 1, 0, 0, 0, 0, 0, 0, 0, // 7: fixed64 1
                0x2a, 2, b'a', b'b', // 5: bytes
            ]
        );
    }
}
