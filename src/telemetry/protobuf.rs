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

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
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

    /// An embedded message, written by `build`.
    pub(crate) fn message(&mut self, number: u64, build: impl FnOnce(&mut Writer)) {
        let mut inner = Writer::default();
        build(&mut inner);
        self.bytes(number, &inner.buf);
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
