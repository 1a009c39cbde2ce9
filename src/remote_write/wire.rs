//! A minimal protobuf wire-format reader and writer over byte slices.
//!
//! The hot paths (counting, validating and rewriting the labels of thousands of series) walk
//! the wire format directly instead of building prost messages: no allocation per label, and
//! the bytes that are not rewritten are copied through untouched. The reader is at least as
//! strict as prost's decoder, so anything accepted here also decodes with the generated types
//! (the fuzz target checks exactly that).

/// Wire type 0: varint.
pub const VARINT: u8 = 0;
/// Wire type 1: 64-bit little-endian.
pub const FIXED64: u8 = 1;
/// Wire type 2: length-delimited.
pub const LEN: u8 = 2;
/// Wire type 5: 32-bit little-endian.
pub const FIXED32: u8 = 5;

/// Why bytes are not a well-formed protobuf message. Static text: the caller adds where.
pub type WireError = &'static str;

/// A cursor over one message's bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field: number, wire type, and where it starts (for copying it through unchanged).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// Field number (≥ 1).
    pub number: u32,
    /// Wire type.
    pub wire_type: u8,
    /// Offset of the field's key.
    pub start: usize,
}

impl<'a> Reader<'a> {
    /// A reader over a whole message.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// `true` once every byte is consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The bytes from `start` to the current offset.
    pub fn since(&self, start: usize) -> &'a [u8] {
        &self.buf[start..self.pos]
    }

    /// Reads a varint. Like prost: at most 10 bytes, and the 10th may only carry one bit.
    #[inline]
    pub fn varint(&mut self) -> Result<u64, WireError> {
        // Keys, lengths of labels and symbol references are almost always one byte.
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("truncated varint");
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (i * 7);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err("varint overflows 64 bits");
                }
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    /// Reads a field key. Groups (wire types 3 and 4, absent from proto3) and the undefined
    /// wire types 6 and 7 are refused, as is field number 0.
    #[inline]
    pub fn field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let key = self.varint()?;
        if key > u64::from(u32::MAX) {
            return Err("field key out of range");
        }
        let wire_type = (key & 7) as u8;
        let number = (key >> 3) as u32;
        if number == 0 {
            return Err("field number 0");
        }
        if !matches!(wire_type, VARINT | FIXED64 | LEN | FIXED32) {
            return Err("unsupported wire type");
        }
        Ok(Field {
            number,
            wire_type,
            start,
        })
    }

    /// Reads a length-delimited payload, bounds-checked against the message.
    #[inline]
    pub fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err("length-delimited field runs past the end of its message");
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// Skips `n` fixed bytes.
    #[inline]
    fn fixed(&mut self, n: usize) -> Result<(), WireError> {
        if self.buf.len() - self.pos < n {
            return Err("truncated fixed-width field");
        }
        self.pos += n;
        Ok(())
    }

    /// Skips a field's value of the given wire type.
    #[inline]
    pub fn skip(&mut self, wire_type: u8) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed(8),
            LEN => self.bytes().map(drop),
            FIXED32 => self.fixed(4),
            _ => Err("unsupported wire type"),
        }
    }
}

/// Bytes a varint of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits; 0 still takes one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `v` as a varint.
#[inline]
pub fn put_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a length-delimited field's key and length (the payload follows).
#[inline]
pub fn put_len_header(number: u32, len: usize, out: &mut Vec<u8>) {
    put_varint(u64::from(number << 3 | u32::from(LEN)), out);
    put_varint(len as u64, out);
}

/// Bytes a length-delimited field with a `len`-byte payload takes, key included (field
/// numbers here are all below 16, so the key is one byte).
#[inline]
pub fn len_field_size(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(v, &mut out);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(Reader::new(&out).varint(), Ok(v));
        }
        assert!(Reader::new(&[0x80; 11]).varint().is_err());
        // Ten bytes whose last carries more than the 64th bit.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert!(Reader::new(&over).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn a_length_beyond_the_message_is_refused_without_reading_it() {
        // Field 1, LEN, declared length 2^40 in a 7-byte message.
        let mut msg = vec![0x0a];
        put_varint(1 << 40, &mut msg);
        let mut r = Reader::new(&msg);
        r.field().unwrap();
        assert!(r.bytes().is_err());
    }

    #[test]
    fn groups_and_field_zero_are_refused() {
        assert!(Reader::new(&[0x0b]).field().is_err()); // field 1, start group
        assert!(Reader::new(&[0x02]).field().is_err()); // field 0
        assert!(Reader::new(&[0x0e]).field().is_err()); // wire type 6
    }
}
