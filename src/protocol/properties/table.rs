//! The MQTT 5.0 properties (spec 2.2.2.2, table 2-4), one row each. The rows expand into the
//! `PropertyValues` struct, the `id` constants, the `allowed` check and the per-property
//! decode, length, encode and copy code, so that adding or fixing a property is one edit.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use super::wire::{Binary, Bool, Byte, FourByte, Slot, TwoByte, Utf8, Utf8Pair, VarInt, Wire};
use super::PropertyContext;
use crate::protocol::error::{DecodeError, EncodeError};
use crate::protocol::topic::valid_topic_name;

/// A row: identifier, constant name, field and its type (`Option` for a property allowed once,
/// `Vec` for a list), wire type, the property's name in encode errors and the packets it may
/// appear on; then optionally the packets on which a list may hold one only, and the values
/// that are a protocol error, with the error's text.
macro_rules! properties {
    ($(
        $(#[$doc:meta])*
        $id:literal $ID:ident $field:ident: $ty:ty = $wire:ident $what:literal
            in [$($ctx:ident)|+]
            $(once in [$($once:ident)|+])?
            $(refuse $refuse:expr => $why:literal)?;
    )*) => {
        /// A property block's values: `None` or empty for a property that is absent.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct PropertyValues {
            $($(#[$doc])* pub $field: $ty,)*
        }

        /// Property identifiers (spec 2.2.2.2).
        pub mod id {
            $(pub const $ID: u32 = $id;)*
        }

        /// Whether property `id` may appear in `ctx` (spec 2.2.2.2, table 2-4).
        pub fn allowed(property: u32, ctx: PropertyContext) -> bool {
            match property {
                $(id::$ID => matches!(ctx, $(PropertyContext::$ctx)|+),)*
                _ => false,
            }
        }

        impl PropertyValues {
            pub const EMPTY: PropertyValues = PropertyValues {
                $($field: <$ty as Slot>::EMPTY,)*
            };

            /// Reads one property's value after its identifier, which `allowed` has passed.
            pub(super) fn read_one(
                &mut self,
                property: u32,
                buf: &mut Bytes,
                ctx: PropertyContext,
            ) -> Result<(), DecodeError> {
                match property {
                    $(id::$ID => {
                        let value = $wire::read(buf)?;
                        $(
                            let refused: fn(&<$wire as Wire>::Value) -> bool = $refuse;
                            if refused(&value) {
                                return Err(DecodeError::Protocol($why));
                            }
                        )?
                        let once = false $(|| matches!(ctx, $(PropertyContext::$once)|+))?;
                        self.$field.store(value, once)
                    })*
                    _ => Err(DecodeError::Malformed("unknown property identifier")),
                }
            }

            /// Bytes of the properties themselves, without the length prefix.
            pub fn body_len(&self) -> usize {
                0 $(+ self.$field.items().map(|v| 1 + $wire::wire_len(v)).sum::<usize>())*
            }

            /// Writes the properties without the length prefix, in row (identifier) order.
            pub(super) fn write_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
                $(for value in self.$field.items() {
                    dst.put_u8($id);
                    $wire::write(dst, value, $what)?;
                })*
                Ok(())
            }

            /// A copy whose strings and binary values own their bytes.
            pub(super) fn owned(&self) -> PropertyValues {
                PropertyValues {
                    $($field: self.$field.map_items($wire::owned),)*
                }
            }

            /// What the values cost a stored message: see `Properties::stored_len`.
            pub(super) fn stored_len(&self) -> usize {
                0 $(+ self.$field.items().map($wire::stored_len).sum::<usize>())*
            }
        }
    };
}

// Rows in identifier order, which is the order properties are written in.
properties! {
    0x01 PAYLOAD_FORMAT_INDICATOR payload_format_indicator: Option<u8> = Byte
        "payload format indicator" in [Publish | Will]
        refuse |&v| v > 1 => "payload format indicator not 0 or 1";
    0x02 MESSAGE_EXPIRY_INTERVAL message_expiry_interval: Option<u32> = FourByte
        "message expiry interval" in [Publish | Will];
    0x03 CONTENT_TYPE content_type: Option<ByteString> = Utf8
        "content type" in [Publish | Will];
    0x08 RESPONSE_TOPIC response_topic: Option<ByteString> = Utf8
        "response topic" in [Publish | Will]
        refuse |topic| !valid_topic_name(topic) => "response topic is not a valid topic name";
    0x09 CORRELATION_DATA correlation_data: Option<Bytes> = Binary
        "correlation data" in [Publish | Will];
    /// One in SUBSCRIBE; any number on a PUBLISH sent to a subscriber.
    0x0B SUBSCRIPTION_IDENTIFIER subscription_identifiers: Vec<u32> = VarInt
        "subscription identifier" in [Publish | Subscribe]
        once in [Subscribe]
        refuse |&v| v == 0 => "subscription identifier 0";
    0x11 SESSION_EXPIRY_INTERVAL session_expiry_interval: Option<u32> = FourByte
        "session expiry interval" in [Connect | ConnAck | Disconnect];
    0x12 ASSIGNED_CLIENT_IDENTIFIER assigned_client_identifier: Option<ByteString> = Utf8
        "assigned client identifier" in [ConnAck];
    0x13 SERVER_KEEP_ALIVE server_keep_alive: Option<u16> = TwoByte
        "server keep alive" in [ConnAck];
    0x15 AUTHENTICATION_METHOD authentication_method: Option<ByteString> = Utf8
        "authentication method" in [Connect | ConnAck | Auth];
    0x16 AUTHENTICATION_DATA authentication_data: Option<Bytes> = Binary
        "authentication data" in [Connect | ConnAck | Auth];
    0x17 REQUEST_PROBLEM_INFORMATION request_problem_information: Option<bool> = Bool
        "request problem information" in [Connect];
    0x18 WILL_DELAY_INTERVAL will_delay_interval: Option<u32> = FourByte
        "will delay interval" in [Will];
    0x19 REQUEST_RESPONSE_INFORMATION request_response_information: Option<bool> = Bool
        "request response information" in [Connect];
    0x1A RESPONSE_INFORMATION response_information: Option<ByteString> = Utf8
        "response information" in [ConnAck];
    0x1C SERVER_REFERENCE server_reference: Option<ByteString> = Utf8
        "server reference" in [ConnAck | Disconnect];
    0x1F REASON_STRING reason_string: Option<ByteString> = Utf8
        "reason string" in [ConnAck | PubAck | SubAck | UnsubAck | Disconnect | Auth];
    0x21 RECEIVE_MAXIMUM receive_maximum: Option<u16> = TwoByte
        "receive maximum" in [Connect | ConnAck]
        refuse |&v| v == 0 => "receive maximum 0";
    0x22 TOPIC_ALIAS_MAXIMUM topic_alias_maximum: Option<u16> = TwoByte
        "topic alias maximum" in [Connect | ConnAck];
    // Alias 0 is the receiver's to refuse with 0x94 Topic Alias invalid, like one above its
    // maximum (MQTT-3.3.2-8): not a decoding error.
    0x23 TOPIC_ALIAS topic_alias: Option<u16> = TwoByte
        "topic alias" in [Publish];
    0x24 MAXIMUM_QOS maximum_qos: Option<u8> = Byte
        "maximum QoS" in [ConnAck]
        refuse |&v| v > 1 => "maximum QoS not 0 or 1";
    0x25 RETAIN_AVAILABLE retain_available: Option<bool> = Bool
        "retain available" in [ConnAck];
    /// Kept in the order they arrived, duplicates included (spec 3.3.2.3.7).
    0x26 USER_PROPERTY user_properties: Vec<(ByteString, ByteString)> = Utf8Pair
        "user property" in [Connect | Will | ConnAck | Publish | PubAck | Subscribe | SubAck
            | Unsubscribe | UnsubAck | Disconnect | Auth];
    0x27 MAXIMUM_PACKET_SIZE maximum_packet_size: Option<u32> = FourByte
        "maximum packet size" in [Connect | ConnAck]
        refuse |&v| v == 0 => "maximum packet size 0";
    0x28 WILDCARD_SUBSCRIPTION_AVAILABLE wildcard_subscription_available: Option<bool> = Bool
        "wildcard subscription available" in [ConnAck];
    0x29 SUBSCRIPTION_IDENTIFIER_AVAILABLE subscription_identifier_available: Option<bool> = Bool
        "subscription identifier available" in [ConnAck];
    0x2A SHARED_SUBSCRIPTION_AVAILABLE shared_subscription_available: Option<bool> = Bool
        "shared subscription available" in [ConnAck];
}
