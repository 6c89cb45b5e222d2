//! The data representations of MQTT section 1.5: integers, variable byte integers, UTF-8 strings
//! and binary data, read from a `Bytes` cursor (slices share the read buffer) and written to a
//! `BytesMut`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::error::{DecodeError, EncodeError};

/// The largest value a variable byte integer can hold (four bytes).
pub const VARINT_MAX: u32 = 268_435_455;

pub fn read_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.is_empty() {
        return Err(DecodeError::Malformed("packet ends early"));
    }
    Ok(buf.get_u8())
}

pub fn read_u16(buf: &mut Bytes) -> Result<u16, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Malformed("packet ends early"));
    }
    Ok(buf.get_u16())
}

pub fn read_u32(buf: &mut Bytes) -> Result<u32, DecodeError> {
    if buf.len() < 4 {
        return Err(DecodeError::Malformed("packet ends early"));
    }
    Ok(buf.get_u32())
}

/// Outcome of parsing a variable byte integer from a prefix of `bytes`.
#[derive(Debug, PartialEq, Eq)]
pub enum Varint {
    /// The value and how many bytes it took.
    Complete(u32, usize),
    /// More bytes are needed.
    Incomplete,
}

/// Parses a variable byte integer: at most four bytes, in its minimal form.
pub fn parse_varint(bytes: &[u8]) -> Result<Varint, DecodeError> {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = bytes.get(i) else {
            return Ok(Varint::Incomplete);
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if byte == 0 && i > 0 {
                return Err(DecodeError::Malformed("variable byte integer not minimal"));
            }
            return Ok(Varint::Complete(value, i + 1));
        }
    }
    Err(DecodeError::Malformed(
        "variable byte integer longer than 4 bytes",
    ))
}

pub fn read_varint(buf: &mut Bytes) -> Result<u32, DecodeError> {
    match parse_varint(buf)? {
        Varint::Complete(value, len) => {
            buf.advance(len);
            Ok(value)
        }
        Varint::Incomplete => Err(DecodeError::Malformed("packet ends early")),
    }
}

pub fn varint_len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub fn write_varint(dst: &mut BytesMut, mut value: u32) {
    debug_assert!(value <= VARINT_MAX);
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

pub fn read_binary(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = read_u16(buf)? as usize;
    if buf.len() < len {
        return Err(DecodeError::Malformed("length prefix runs past the packet"));
    }
    Ok(buf.split_to(len))
}

/// Checks the rules of MQTT 1.5.4: well-formed UTF-8 (which excludes surrogates) and no U+0000.
pub fn validate_utf8(bytes: &[u8]) -> Result<&str, DecodeError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::Malformed("invalid UTF-8"))?;
    if bytes.contains(&0) {
        return Err(DecodeError::Malformed("U+0000 in a UTF-8 string"));
    }
    Ok(text)
}

/// Checks a topic name: a UTF-8 string (as [`read_string`]) without `+` or `#`. One pass over
/// the bytes for the common all-ASCII topic instead of three: it is on every PUBLISH.
#[inline]
pub fn validate_topic_name(bytes: &[u8]) -> Result<&str, DecodeError> {
    // No early exit, so the loop vectorizes; topics are short.
    let (mut high, mut special) = (false, false);
    for &b in bytes {
        high |= b >= 0x80;
        special |= b == 0 || b == b'+' || b == b'#';
    }
    if high {
        validate_utf8(bytes)?;
    }
    if special {
        if bytes.contains(&0) {
            return Err(DecodeError::Malformed("U+0000 in a UTF-8 string"));
        }
        return Err(DecodeError::TopicNameInvalid);
    }
    // SAFETY: all ASCII, or checked by validate_utf8 above.
    Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
}

pub fn read_string(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
    let bytes = read_binary(buf)?;
    validate_utf8(&bytes)?;
    // SAFETY: validate_utf8 has just checked that the bytes are UTF-8.
    Ok(unsafe { ByteString::from_bytes_unchecked(bytes) })
}

pub fn write_binary(
    dst: &mut BytesMut,
    bytes: &[u8],
    what: &'static str,
) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong(what))?;
    dst.put_u16(len);
    dst.put_slice(bytes);
    Ok(())
}

pub fn write_string(dst: &mut BytesMut, text: &str, what: &'static str) -> Result<(), EncodeError> {
    write_binary(dst, text.as_bytes(), what)
}

/// Bytes a length-prefixed field takes on the wire.
pub fn prefixed_len(bytes: &[u8]) -> usize {
    2 + bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_spec_boundaries_round_trip() {
        // Table 1-1 of MQTT 3.1.1 / 2-1 of 5.0.
        let cases: [(u32, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, wire) in cases {
            assert_eq!(parse_varint(wire), Ok(Varint::Complete(value, wire.len())));
            let mut out = BytesMut::new();
            write_varint(&mut out, value);
            assert_eq!(&out[..], wire);
            assert_eq!(varint_len(value), wire.len());
        }
    }

    #[test]
    fn varint_rejects_five_bytes_and_non_minimal_forms() {
        assert!(parse_varint(&[0xFF, 0xFF, 0xFF, 0xFF, 0x7F]).is_err());
        assert!(parse_varint(&[0x80, 0x00]).is_err());
        assert_eq!(parse_varint(&[0x80, 0x80]), Ok(Varint::Incomplete));
        assert_eq!(parse_varint(&[]), Ok(Varint::Incomplete));
    }

    #[test]
    fn strings_reject_bad_utf8_nul_and_surrogates() {
        let mut ok = Bytes::from_static(b"\x00\x03a/b");
        assert_eq!(&read_string(&mut ok).unwrap()[..], "a/b");
        let mut nul = Bytes::from_static(b"\x00\x02a\x00");
        assert!(read_string(&mut nul).is_err());
        // U+D800 encoded as UTF-8 is ill-formed (MQTT-1.5.3-1).
        let mut surrogate = Bytes::from_static(b"\x00\x03\xED\xA0\x80");
        assert!(read_string(&mut surrogate).is_err());
        let mut short = Bytes::from_static(b"\x00\x05ab");
        assert!(read_string(&mut short).is_err());
    }

    #[test]
    fn strings_are_slices_of_the_buffer() {
        let buf = Bytes::from_static(b"\x00\x03abc");
        let base = buf.as_ptr() as usize;
        let mut cursor = buf.clone();
        let s = read_string(&mut cursor).unwrap();
        assert_eq!(s.as_bytes().as_ptr() as usize, base + 2);
    }
}
