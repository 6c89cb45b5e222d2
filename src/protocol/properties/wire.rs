//! The MQTT 5.0 data types a property value can have (spec 1.5), and the two ways a
//! `PropertyValues` field holds a property: once (`Option`) or as a list (`Vec`). Each row of
//! the property table names one of each, and the code it expands into calls them.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::primitives::{
    prefixed_len, read_binary, read_string, read_u16, read_u32, read_u8, read_varint, varint_len,
    write_binary, write_string, write_varint,
};

/// A data type: what it decodes to and how it is encoded after the property identifier. The
/// implementors are empty enums that name an encoding, as one Rust type has two (`u32`: Four
/// Byte or Variable Byte Integer).
pub(super) trait Wire {
    type Value: Clone;
    fn read(buf: &mut Bytes) -> Result<Self::Value, DecodeError>;
    fn wire_len(value: &Self::Value) -> usize;
    /// `what` names the property when a string or binary value is too long to send.
    fn write(
        dst: &mut BytesMut,
        value: &Self::Value,
        what: &'static str,
    ) -> Result<(), EncodeError>;
    /// A copy that owns its bytes: decoded strings and binary data slice the read buffer.
    fn owned(value: &Self::Value) -> Self::Value {
        value.clone()
    }
    /// What the value costs a stored message (`Properties::stored_len`): nothing for a
    /// number held in its field.
    fn stored_len(_: &Self::Value) -> usize {
        0
    }
}

// The fixed-width integers differ only in width.
macro_rules! integers {
    ($($(#[$doc:meta])* $wire:ident: $int:ty, $read:ident, $put:ident;)*) => {$(
        $(#[$doc])*
        pub(super) enum $wire {}

        impl Wire for $wire {
            type Value = $int;
            fn read(buf: &mut Bytes) -> Result<$int, DecodeError> {
                $read(buf)
            }
            fn wire_len(_: &$int) -> usize {
                size_of::<$int>()
            }
            fn write(dst: &mut BytesMut, value: &$int, _: &'static str) -> Result<(), EncodeError> {
                dst.$put(*value);
                Ok(())
            }
        }
    )*};
}

integers! {
    /// Byte.
    Byte: u8, read_u8, put_u8;
    /// Two Byte Integer, big-endian.
    TwoByte: u16, read_u16, put_u16;
    /// Four Byte Integer, big-endian.
    FourByte: u32, read_u32, put_u32;
}

/// A Byte that must be 0 or 1.
pub(super) enum Bool {}

impl Wire for Bool {
    type Value = bool;
    fn read(buf: &mut Bytes) -> Result<bool, DecodeError> {
        match read_u8(buf)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Protocol("boolean property is neither 0 nor 1")),
        }
    }
    fn wire_len(_: &bool) -> usize {
        1
    }
    fn write(dst: &mut BytesMut, value: &bool, _: &'static str) -> Result<(), EncodeError> {
        dst.put_u8(u8::from(*value));
        Ok(())
    }
}

/// Variable Byte Integer.
pub(super) enum VarInt {}

impl Wire for VarInt {
    type Value = u32;
    fn read(buf: &mut Bytes) -> Result<u32, DecodeError> {
        read_varint(buf)
    }
    fn wire_len(value: &u32) -> usize {
        varint_len(*value)
    }
    fn write(dst: &mut BytesMut, value: &u32, _: &'static str) -> Result<(), EncodeError> {
        write_varint(dst, *value);
        Ok(())
    }
    /// The only one, the subscription identifier, is kept in a `Vec`: it costs its `u32`.
    fn stored_len(_: &u32) -> usize {
        size_of::<u32>()
    }
}

/// UTF-8 Encoded String.
pub(super) enum Utf8 {}

impl Wire for Utf8 {
    type Value = ByteString;
    fn read(buf: &mut Bytes) -> Result<ByteString, DecodeError> {
        read_string(buf)
    }
    fn wire_len(value: &ByteString) -> usize {
        prefixed_len(value.as_bytes())
    }
    fn write(
        dst: &mut BytesMut,
        value: &ByteString,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        write_string(dst, value, what)
    }
    fn owned(value: &ByteString) -> ByteString {
        ByteString::from(&**value)
    }
    fn stored_len(value: &ByteString) -> usize {
        value.len()
    }
}

/// Binary Data.
pub(super) enum Binary {}

impl Wire for Binary {
    type Value = Bytes;
    fn read(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
        read_binary(buf)
    }
    fn wire_len(value: &Bytes) -> usize {
        prefixed_len(value)
    }
    fn write(dst: &mut BytesMut, value: &Bytes, what: &'static str) -> Result<(), EncodeError> {
        write_binary(dst, value, what)
    }
    fn owned(value: &Bytes) -> Bytes {
        Bytes::copy_from_slice(value)
    }
    fn stored_len(value: &Bytes) -> usize {
        value.len()
    }
}

/// UTF-8 String Pair: a user property's key and value.
pub(super) enum Utf8Pair {}

impl Wire for Utf8Pair {
    type Value = (ByteString, ByteString);
    fn read(buf: &mut Bytes) -> Result<Self::Value, DecodeError> {
        let key = read_string(buf)?;
        Ok((key, read_string(buf)?))
    }
    fn wire_len((key, value): &Self::Value) -> usize {
        Utf8::wire_len(key) + Utf8::wire_len(value)
    }
    fn write(
        dst: &mut BytesMut,
        (key, value): &Self::Value,
        what: &'static str,
    ) -> Result<(), EncodeError> {
        Utf8::write(dst, key, what)?;
        Utf8::write(dst, value, what)
    }
    fn owned((key, value): &Self::Value) -> Self::Value {
        (Utf8::owned(key), Utf8::owned(value))
    }
    fn stored_len((key, value): &Self::Value) -> usize {
        key.len() + value.len()
    }
}

const REPEATED: DecodeError = DecodeError::Protocol("property appears more than once");

/// How a field holds its property: `Option` takes it once, `Vec` as often as it comes unless
/// the packet allows only one (`once`).
pub(super) trait Slot {
    type Item;
    const EMPTY: Self;
    fn items(&self) -> std::slice::Iter<'_, Self::Item>;
    fn store(&mut self, item: Self::Item, once: bool) -> Result<(), DecodeError>;
    fn map_items(&self, f: impl Fn(&Self::Item) -> Self::Item) -> Self;
}

impl<T> Slot for Option<T> {
    type Item = T;
    const EMPTY: Self = None;
    fn items(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }
    fn store(&mut self, item: T, _: bool) -> Result<(), DecodeError> {
        if self.is_some() {
            return Err(REPEATED);
        }
        *self = Some(item);
        Ok(())
    }
    fn map_items(&self, f: impl Fn(&T) -> T) -> Self {
        self.as_ref().map(f)
    }
}

impl<T> Slot for Vec<T> {
    type Item = T;
    const EMPTY: Self = Vec::new();
    fn items(&self) -> std::slice::Iter<'_, T> {
        self.iter()
    }
    fn store(&mut self, item: T, once: bool) -> Result<(), DecodeError> {
        if once && !self.is_empty() {
            return Err(REPEATED);
        }
        self.push(item);
        Ok(())
    }
    fn map_items(&self, f: impl Fn(&T) -> T) -> Self {
        self.iter().map(f).collect()
    }
}
