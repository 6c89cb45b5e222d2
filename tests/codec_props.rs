//! Property-based tests of the sans-IO MQTT codec (`ringmq::protocol`).
//!
//! 1. The decoder never panics and always makes progress, on arbitrary bytes, on well-framed
//!    garbage and on mutated valid packets, in every version and with any maximum packet size;
//!    whatever it does accept re-encodes to the same packet.
//! 2. `decode(encode(p)) == p` for every valid packet of every type in every version.
//! 3. Feeding a stream one byte (or one arbitrary chunk) at a time yields the same packets as
//!    decoding it all at once, each exactly when its last byte arrives.
//! 4. A decoded PUBLISH's topic and payload point into the read buffer (zero-copy).
//! 5. A packet larger than the maximum fails with `PacketTooLarge` as soon as its fixed header
//!    is buffered, whatever part of the body is there.
//!
//! Plain tests after them pin down what random sampling reaches rarely: AUTH being 5.0-only,
//! a four-byte remaining length, the exact short forms, the longest fields, and the codec's
//! property and reason-code tables (which the generators rely on) against the spec.
//!
//! Each property runs proptest's default number of cases (256); `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` are honoured for longer or reproducible runs, e.g.
//! `PROPTEST_CASES=100000 cargo test --release --test codec_props`.

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;

use ringmq::protocol::properties::{allowed, id};
use ringmq::protocol::{
    encode, read_frame, Ack, Auth, ConnAck, Connect, DecodeError, Decoder, Disconnect, EncodeError,
    Packet, PacketType, Properties, PropertyContext, ProtocolVersion, Publish, QoS, ReasonCode,
    ReasonContext, RetainHandling, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions,
    UnsubAck, Unsubscribe, Will, MAX_PACKET_SIZE,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

const VERSIONS: [ProtocolVersion; 3] = [V3_1, V3_1_1, V5];

/// The largest variable byte integer (spec 1.5.5).
const VARINT_MAX: u32 = 268_435_455;

/// Values on either side of each variable byte integer length.
const VARINT_BOUNDARIES: [u32; 8] = [
    0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, VARINT_MAX,
];

// ---------------------------------------------------------------------------------------------
// Scalars, strings and topics
// ---------------------------------------------------------------------------------------------

fn any_version() -> impl Strategy<Value = ProtocolVersion> {
    select(VERSIONS.to_vec())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// A packet identifier: never 0 (spec 2.2.1).
fn packet_id() -> impl Strategy<Value = u16> {
    prop_oneof![1 => Just(1u16), 1 => Just(u16::MAX), 6 => 1..=u16::MAX]
}

/// Replaces U+0000, which MQTT strings may not contain (spec 1.5.4).
fn without_nul(chars: Vec<char>) -> String {
    chars
        .into_iter()
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}

/// A UTF-8 string as MQTT allows it: mostly short printable ASCII, sometimes any scalar value
/// (multi-byte, control characters, noncharacters) except U+0000, now and then a few hundred
/// bytes (so that property blocks need a two-byte length).
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        12 => "[ -~]{0,12}",
        4 => vec(any::<char>(), 0..12).prop_map(without_nul),
        1 => "[ -~]{100,300}",
    ]
    .boxed()
}

fn string() -> BoxedStrategy<ByteString> {
    text().prop_map(ByteString::from).boxed()
}

fn binary(max_len: usize) -> BoxedStrategy<Bytes> {
    vec(any::<u8>(), 0..max_len).prop_map(Bytes::from).boxed()
}

/// PUBLISH payloads: mostly small, sometimes large enough for a 2- or 3-byte remaining length.
fn payload() -> BoxedStrategy<Bytes> {
    prop_oneof![
        12 => binary(64),
        3 => binary(600),
        1 => vec(any::<u8>(), 16_300..16_450).prop_map(Bytes::from),
    ]
    .boxed()
}

/// One topic level: no `/`, no wildcard, no U+0000; may be empty. Never `$share`, so that a
/// plain filter cannot turn into a malformed shared subscription by accident.
fn level() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z0-9$_ ]{0,6}",
        1 => vec(any::<char>(), 0..6).prop_map(without_nul),
    ]
    .prop_map(|level| {
        let level: String = level
            .chars()
            .map(|c| if matches!(c, '/' | '+' | '#') { '_' } else { c })
            .collect();
        if level == "$share" {
            "share".to_string()
        } else {
            level
        }
    })
    .boxed()
}

/// A topic name (spec 4.7): non-empty, no wildcards; empty levels and `$` are fine.
fn topic_name() -> BoxedStrategy<String> {
    vec(level(), 1..5)
        .prop_map(|levels| {
            let name = levels.join("/");
            if name.is_empty() {
                "t".to_string()
            } else {
                name
            }
        })
        .boxed()
}

/// A topic filter: levels, `+` in place of any level, optionally `#` as the last level.
fn plain_filter() -> BoxedStrategy<String> {
    (
        vec(prop_oneof![3 => level(), 1 => Just("+".to_string())], 0..5),
        any::<bool>(),
    )
        .prop_map(|(mut levels, multi_level)| {
            if multi_level {
                levels.push("#".to_string());
            }
            let filter = levels.join("/");
            if filter.is_empty() {
                "#".to_string()
            } else {
                filter
            }
        })
        .boxed()
}

/// A filter for SUBSCRIBE/UNSUBSCRIBE and whether it is shared (`$share/{group}/{filter}`,
/// 5.0 only). In 3.x a filter starting with `$share/` is an ordinary one, so there it may be
/// `$share/` + any filter, such as `$share/+/a` or `$share/#`, which 5.0 would reject.
fn filter(version: ProtocolVersion) -> BoxedStrategy<(ByteString, bool)> {
    let plain = plain_filter().prop_map(|f| (ByteString::from(f), false));
    if !version.is_v5() {
        let dollar_share =
            plain_filter().prop_map(|f| (ByteString::from(format!("$share/{f}")), false));
        return prop_oneof![4 => plain, 1 => dollar_share].boxed();
    }
    let shared = (level(), plain_filter()).prop_map(|(group, filter)| {
        let group = if group.is_empty() {
            "g".to_string()
        } else {
            group
        };
        (ByteString::from(format!("$share/{group}/{filter}")), true)
    });
    prop_oneof![3 => plain, 1 => shared].boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties (5.0) and reason codes
// ---------------------------------------------------------------------------------------------

/// One property as it appears on the wire.
#[derive(Debug, Clone)]
enum Prop {
    PayloadFormatIndicator(u8),
    MessageExpiryInterval(u32),
    ContentType(ByteString),
    ResponseTopic(ByteString),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(ByteString),
    ServerKeepAlive(u16),
    AuthenticationMethod(ByteString),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(ByteString),
    ServerReference(ByteString),
    ReasonString(ByteString),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQos(u8),
    RetainAvailable(bool),
    UserProperty(ByteString, ByteString),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

fn any_u32() -> BoxedStrategy<u32> {
    prop_oneof![1 => Just(0u32), 1 => Just(u32::MAX), 4 => any::<u32>()].boxed()
}

fn nonzero_u16() -> BoxedStrategy<u16> {
    prop_oneof![1 => Just(1u16), 1 => Just(u16::MAX), 4 => 1..=u16::MAX].boxed()
}

/// Every property with a strategy for the values the spec allows (section 3.x.2.x).
fn property_strategies() -> Vec<(u32, BoxedStrategy<Prop>)> {
    let user_key = prop_oneof![
        // A small pool, so that repeated keys (which must be kept, in order) are common.
        2 => select(vec!["k", "key", ""]).prop_map(ByteString::from),
        3 => string(),
    ];
    let subscription_identifier = prop_oneof![
        1 => select(VARINT_BOUNDARIES[1..].to_vec()),
        3 => 1..=VARINT_MAX,
    ];
    vec![
        (
            id::PAYLOAD_FORMAT_INDICATOR,
            (0u8..=1).prop_map(Prop::PayloadFormatIndicator).boxed(),
        ),
        (
            id::MESSAGE_EXPIRY_INTERVAL,
            any_u32().prop_map(Prop::MessageExpiryInterval).boxed(),
        ),
        (
            id::CONTENT_TYPE,
            string().prop_map(Prop::ContentType).boxed(),
        ),
        (
            id::RESPONSE_TOPIC,
            topic_name()
                .prop_map(|t| Prop::ResponseTopic(t.into()))
                .boxed(),
        ),
        (
            id::CORRELATION_DATA,
            binary(24).prop_map(Prop::CorrelationData).boxed(),
        ),
        (
            id::SUBSCRIPTION_IDENTIFIER,
            subscription_identifier
                .prop_map(Prop::SubscriptionIdentifier)
                .boxed(),
        ),
        (
            id::SESSION_EXPIRY_INTERVAL,
            any_u32().prop_map(Prop::SessionExpiryInterval).boxed(),
        ),
        (
            id::ASSIGNED_CLIENT_IDENTIFIER,
            string().prop_map(Prop::AssignedClientIdentifier).boxed(),
        ),
        (
            id::SERVER_KEEP_ALIVE,
            any::<u16>().prop_map(Prop::ServerKeepAlive).boxed(),
        ),
        (
            id::AUTHENTICATION_METHOD,
            string().prop_map(Prop::AuthenticationMethod).boxed(),
        ),
        (
            id::AUTHENTICATION_DATA,
            binary(24).prop_map(Prop::AuthenticationData).boxed(),
        ),
        (
            id::REQUEST_PROBLEM_INFORMATION,
            any::<bool>()
                .prop_map(Prop::RequestProblemInformation)
                .boxed(),
        ),
        (
            id::WILL_DELAY_INTERVAL,
            any_u32().prop_map(Prop::WillDelayInterval).boxed(),
        ),
        (
            id::REQUEST_RESPONSE_INFORMATION,
            any::<bool>()
                .prop_map(Prop::RequestResponseInformation)
                .boxed(),
        ),
        (
            id::RESPONSE_INFORMATION,
            string().prop_map(Prop::ResponseInformation).boxed(),
        ),
        (
            id::SERVER_REFERENCE,
            string().prop_map(Prop::ServerReference).boxed(),
        ),
        (
            id::REASON_STRING,
            string().prop_map(Prop::ReasonString).boxed(),
        ),
        (
            id::RECEIVE_MAXIMUM,
            nonzero_u16().prop_map(Prop::ReceiveMaximum).boxed(),
        ),
        (
            id::TOPIC_ALIAS_MAXIMUM,
            any::<u16>().prop_map(Prop::TopicAliasMaximum).boxed(),
        ),
        (
            id::TOPIC_ALIAS,
            nonzero_u16().prop_map(Prop::TopicAlias).boxed(),
        ),
        (
            id::MAXIMUM_QOS,
            (0u8..=1).prop_map(Prop::MaximumQos).boxed(),
        ),
        (
            id::RETAIN_AVAILABLE,
            any::<bool>().prop_map(Prop::RetainAvailable).boxed(),
        ),
        (
            id::USER_PROPERTY,
            (user_key, string())
                .prop_map(|(k, v)| Prop::UserProperty(k, v))
                .boxed(),
        ),
        (
            id::MAXIMUM_PACKET_SIZE,
            prop_oneof![Just(1u32), Just(u32::MAX), 1..=u32::MAX]
                .prop_map(Prop::MaximumPacketSize)
                .boxed(),
        ),
        (
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            any::<bool>()
                .prop_map(Prop::WildcardSubscriptionAvailable)
                .boxed(),
        ),
        (
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            any::<bool>()
                .prop_map(Prop::SubscriptionIdentifierAvailable)
                .boxed(),
        ),
        (
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            any::<bool>()
                .prop_map(Prop::SharedSubscriptionAvailable)
                .boxed(),
        ),
    ]
}

/// Adds one property; a later single-valued property replaces an earlier one, as the decoder
/// would reject the duplicate.
fn apply(props: &mut Properties, prop: Prop, ctx: PropertyContext) {
    match prop {
        Prop::PayloadFormatIndicator(v) => props.payload_format_indicator = Some(v),
        Prop::MessageExpiryInterval(v) => props.message_expiry_interval = Some(v),
        Prop::ContentType(v) => props.content_type = Some(v),
        Prop::ResponseTopic(v) => props.response_topic = Some(v),
        Prop::CorrelationData(v) => props.correlation_data = Some(v),
        Prop::SubscriptionIdentifier(v) => {
            // Any number on PUBLISH, at most one on SUBSCRIBE (spec 3.8.2.1.2).
            if ctx == PropertyContext::Subscribe {
                props.subscription_identifiers.clear();
            }
            props.subscription_identifiers.push(v);
        }
        Prop::SessionExpiryInterval(v) => props.session_expiry_interval = Some(v),
        Prop::AssignedClientIdentifier(v) => props.assigned_client_identifier = Some(v),
        Prop::ServerKeepAlive(v) => props.server_keep_alive = Some(v),
        Prop::AuthenticationMethod(v) => props.authentication_method = Some(v),
        Prop::AuthenticationData(v) => props.authentication_data = Some(v),
        Prop::RequestProblemInformation(v) => props.request_problem_information = Some(v),
        Prop::WillDelayInterval(v) => props.will_delay_interval = Some(v),
        Prop::RequestResponseInformation(v) => props.request_response_information = Some(v),
        Prop::ResponseInformation(v) => props.response_information = Some(v),
        Prop::ServerReference(v) => props.server_reference = Some(v),
        Prop::ReasonString(v) => props.reason_string = Some(v),
        Prop::ReceiveMaximum(v) => props.receive_maximum = Some(v),
        Prop::TopicAliasMaximum(v) => props.topic_alias_maximum = Some(v),
        Prop::TopicAlias(v) => props.topic_alias = Some(v),
        Prop::MaximumQos(v) => props.maximum_qos = Some(v),
        Prop::RetainAvailable(v) => props.retain_available = Some(v),
        Prop::UserProperty(k, v) => props.user_properties.push((k, v)),
        Prop::MaximumPacketSize(v) => props.maximum_packet_size = Some(v),
        Prop::WildcardSubscriptionAvailable(v) => props.wildcard_subscription_available = Some(v),
        Prop::SubscriptionIdentifierAvailable(v) => {
            props.subscription_identifier_available = Some(v)
        }
        Prop::SharedSubscriptionAvailable(v) => props.shared_subscription_available = Some(v),
    }
}

/// A property block for `ctx`: only properties `properties::allowed` there, none in 3.x.
fn properties(ctx: PropertyContext, version: ProtocolVersion) -> BoxedStrategy<Properties> {
    if !version.is_v5() {
        return Just(Properties::default()).boxed();
    }
    // Repeatable properties (user properties; subscription identifiers on PUBLISH) come up
    // more often, so that repeats are common.
    let entries: Vec<(u32, BoxedStrategy<Prop>)> = property_strategies()
        .into_iter()
        .filter(|(property, _)| allowed(*property, ctx))
        .map(|(property, strategy)| match property {
            id::USER_PROPERTY => (4, strategy),
            id::SUBSCRIPTION_IDENTIFIER => (2, strategy),
            _ => (1, strategy),
        })
        .collect();
    let some = vec(Union::new_weighted(entries), 1..9).prop_map(move |list| {
        let mut props = Properties::default();
        for prop in list {
            apply(&mut props, prop, ctx);
        }
        // Authentication data needs a method (spec 3.1.2.11.10).
        if props.authentication_data.is_some() && props.authentication_method.is_none() {
            props.authentication_method = Some("SCRAM-SHA-1".into());
        }
        props
    });
    prop_oneof![1 => Just(Properties::default()), 3 => some].boxed()
}

/// A 5.0 reason code the spec allows on `ctx`, Success more often than the others.
fn reason(ctx: ReasonContext) -> BoxedStrategy<ReasonCode> {
    let codes: Vec<ReasonCode> = ReasonCode::ALL
        .into_iter()
        .filter(|code| code.allowed_in(ctx))
        .collect();
    prop_oneof![1 => Just(ReasonCode::Success), 3 => select(codes)].boxed()
}

// ---------------------------------------------------------------------------------------------
// Packets
// ---------------------------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> BoxedStrategy<Will> {
    (
        topic_name(),
        binary(48),
        qos(),
        any::<bool>(),
        properties(PropertyContext::Will, version),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic: topic.into(),
            payload,
            qos,
            retain,
            properties,
        })
        .boxed()
}

/// User name and password: any combination in 5.0; in 3.x a password needs a user name
/// (MQTT-3.1.2-22), and in 3.1 the password is a string.
fn credentials(version: ProtocolVersion) -> BoxedStrategy<(Option<ByteString>, Option<Bytes>)> {
    let password = match version {
        V3_1 => text().prop_map(Bytes::from).boxed(),
        _ => binary(32),
    };
    if version.is_v5() {
        return (option::of(string()), option::of(password)).boxed();
    }
    option::of((string(), option::of(password)))
        .prop_map(|credentials| match credentials {
            Some((username, password)) => (Some(username), password),
            None => (None, None),
        })
        .boxed()
}

/// 3.1 wants 1 to 23 characters; 3.1.1 and 5.0 accept any string, including an empty one.
fn client_id(version: ProtocolVersion) -> BoxedStrategy<ByteString> {
    match version {
        V3_1 => "[0-9a-zA-Z]{1,23}".prop_map(ByteString::from).boxed(),
        _ => string(),
    }
}

fn connect(version: ProtocolVersion) -> BoxedStrategy<Connect> {
    (
        any::<bool>(),
        any::<u16>(),
        client_id(version),
        option::of(will(version)),
        credentials(version),
        properties(PropertyContext::Connect, version),
        any::<bool>(),
    )
        .prop_map(
            move |(
                clean_start,
                keep_alive,
                client_id,
                will,
                (username, password),
                properties,
                bridge,
            )| {
                Connect {
                    version,
                    // An empty client identifier needs Clean Session in 3.1.1 (MQTT-3.1.3-7).
                    clean_start: clean_start || (version == V3_1_1 && client_id.is_empty()),
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                    // A bridge's level (top bit set) exists in 3.x only.
                    bridge: bridge && version != V5,
                }
            },
        )
        .boxed()
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<ConnAck> {
    let code = if version.is_v5() {
        reason(ReasonContext::ConnAck)
    } else {
        // The six 3.x return codes.
        (0u8..=5)
            .prop_map(|code| ReasonCode::from_v3_connack(code).unwrap())
            .boxed()
    };
    (
        any::<bool>(),
        code,
        properties(PropertyContext::ConnAck, version),
    )
        .prop_map(move |(session_present, code, properties)| ConnAck {
            // 0 with a refusal (MQTT-3.2.2-4, MQTT-3.2.2-6); the byte is reserved in 3.1.
            session_present: session_present && code == ReasonCode::Success && version != V3_1,
            code,
            properties,
        })
        .boxed()
}

fn publish(version: ProtocolVersion) -> BoxedStrategy<Publish> {
    (
        qos(),
        any::<bool>(),
        packet_id(),
        any::<bool>(),
        topic_name(),
        properties(PropertyContext::Publish, version),
        payload(),
        any::<bool>(),
    )
        .prop_map(
            |(qos, dup, packet_id, retain, topic, properties, payload, alias_only)| {
                let at_most_once = qos == QoS::AtMostOnce;
                // With a topic alias, the topic name may be empty (spec 3.3.2.3.4).
                let topic = if alias_only && properties.topic_alias.is_some() {
                    ByteString::new()
                } else {
                    ByteString::from(topic)
                };
                let packet_id = if at_most_once { 0 } else { packet_id };
                let mut publish = Publish::new(&topic, &payload).with_qos(qos, packet_id);
                // QoS 0: no DUP (MQTT-3.3.1-2) and no packet identifier.
                publish.dup = dup && !at_most_once;
                publish.retain = retain;
                publish.properties = properties;
                publish
            },
        )
        .boxed()
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP; 3.x has only the packet identifier.
fn ack(kind: PacketType, version: ProtocolVersion) -> BoxedStrategy<Ack> {
    if !version.is_v5() {
        return packet_id().prop_map(Ack::new).boxed();
    }
    let ctx = match kind {
        PacketType::PubAck => ReasonContext::PubAck,
        PacketType::PubRec => ReasonContext::PubRec,
        PacketType::PubRel => ReasonContext::PubRel,
        PacketType::PubComp => ReasonContext::PubComp,
        _ => unreachable!("not an acknowledgement: {kind:?}"),
    };
    (
        packet_id(),
        reason(ctx),
        properties(PropertyContext::PubAck, version),
    )
        .prop_map(|(packet_id, reason, properties)| Ack {
            packet_id,
            reason,
            properties,
        })
        .boxed()
}

fn subscription(version: ProtocolVersion) -> BoxedStrategy<SubscribeFilter> {
    let retain_handling = select(vec![
        RetainHandling::OnSubscribe,
        RetainHandling::OnNewSubscribe,
        RetainHandling::Never,
    ]);
    (
        filter(version),
        qos(),
        any::<bool>(),
        any::<bool>(),
        retain_handling,
    )
        .prop_map(
            move |((filter, shared), qos, no_local, retain_as_published, retain_handling)| {
                let options = if version.is_v5() {
                    SubscriptionOptions {
                        qos,
                        // No Local on a shared subscription is a protocol error (MQTT-3.8.3-4).
                        no_local: no_local && !shared,
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions {
                        qos,
                        ..SubscriptionOptions::default()
                    }
                };
                SubscribeFilter { filter, options }
            },
        )
        .boxed()
}

fn subscribe(version: ProtocolVersion) -> BoxedStrategy<Subscribe> {
    (
        packet_id(),
        properties(PropertyContext::Subscribe, version),
        vec(subscription(version), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| Subscribe {
            packet_id,
            properties,
            filters,
        })
        .boxed()
}

fn suback(version: ProtocolVersion) -> BoxedStrategy<SubAck> {
    use ReasonCode::{GrantedQoS1, GrantedQoS2, Success, UnspecifiedError};
    let code = match version {
        V5 => reason(ReasonContext::SubAck),
        // 3.1.1: granted QoS 0, 1, 2 or failure 0x80.
        V3_1_1 => select(vec![Success, GrantedQoS1, GrantedQoS2, UnspecifiedError]).boxed(),
        // 3.1 has no failure code.
        V3_1 => select(vec![Success, GrantedQoS1, GrantedQoS2]).boxed(),
    };
    (
        packet_id(),
        properties(PropertyContext::SubAck, version),
        vec(code, 1..8),
    )
        .prop_map(|(packet_id, properties, codes)| SubAck {
            packet_id,
            properties,
            codes,
        })
        .boxed()
}

fn unsubscribe(version: ProtocolVersion) -> BoxedStrategy<Unsubscribe> {
    (
        packet_id(),
        properties(PropertyContext::Unsubscribe, version),
        vec(filter(version).prop_map(|(filter, _)| filter), 1..5),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
        .boxed()
}

/// One reason code per filter in 5.0; nothing but the packet identifier in 3.x.
fn unsuback(version: ProtocolVersion) -> BoxedStrategy<UnsubAck> {
    if !version.is_v5() {
        return packet_id()
            .prop_map(|packet_id| UnsubAck {
                packet_id,
                ..UnsubAck::default()
            })
            .boxed();
    }
    (
        packet_id(),
        properties(PropertyContext::UnsubAck, version),
        vec(reason(ReasonContext::UnsubAck), 1..8),
    )
        .prop_map(|(packet_id, properties, codes)| UnsubAck {
            packet_id,
            properties,
            codes,
        })
        .boxed()
}

/// Empty in 3.x.
fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Disconnect> {
    if !version.is_v5() {
        return Just(Disconnect::default()).boxed();
    }
    (
        reason(ReasonContext::Disconnect),
        properties(PropertyContext::Disconnect, version),
    )
        .prop_map(|(reason, properties)| Disconnect { reason, properties })
        .boxed()
}

/// 5.0 only: the empty form, or a reason code with properties including the authentication
/// method, which the spec requires whenever properties are present (spec 3.15.2.2.2).
fn auth() -> BoxedStrategy<Auth> {
    let full = (
        reason(ReasonContext::Auth),
        properties(PropertyContext::Auth, V5),
        string(),
    )
        .prop_map(|(reason, mut properties, method)| {
            if properties.authentication_method.is_none() {
                properties.authentication_method = Some(method);
            }
            Auth { reason, properties }
        });
    prop_oneof![1 => Just(Auth::default()), 3 => full].boxed()
}

/// Any valid packet to send on a `version` connection. CONNECT carries its own version.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut kinds = vec![
        any_version()
            .prop_flat_map(connect)
            .prop_map(|c| Packet::Connect(Box::new(c)))
            .boxed(),
        connack(version).prop_map(Packet::ConnAck).boxed(),
        publish(version).prop_map(Packet::Publish).boxed(),
        ack(PacketType::PubAck, version)
            .prop_map(Packet::PubAck)
            .boxed(),
        ack(PacketType::PubRec, version)
            .prop_map(Packet::PubRec)
            .boxed(),
        ack(PacketType::PubRel, version)
            .prop_map(Packet::PubRel)
            .boxed(),
        ack(PacketType::PubComp, version)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(version).prop_map(Packet::Subscribe).boxed(),
        suback(version).prop_map(Packet::SubAck).boxed(),
        unsubscribe(version).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(version).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).prop_map(Packet::Disconnect).boxed(),
    ];
    if version.is_v5() {
        kinds.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(kinds).boxed()
}

fn versioned_packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    any_version().prop_flat_map(|version| (Just(version), packet(version)))
}

fn packet_stream() -> impl Strategy<Value = (ProtocolVersion, Vec<Packet>)> {
    any_version().prop_flat_map(|version| (Just(version), vec(packet(version), 1..8)))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn max_packet_size() -> impl Strategy<Value = u32> {
    prop_oneof![Just(MAX_PACKET_SIZE), 0u32..300, any::<u32>()]
}

/// A variable byte integer, written independently of the codec.
fn varint(mut value: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn encoded(packets: &[Packet], version: ProtocolVersion) -> Result<BytesMut, TestCaseError> {
    let mut wire = BytesMut::new();
    for packet in packets {
        encode(packet, version, &mut wire)
            .map_err(|e| TestCaseError::fail(format!("{packet:?} did not encode: {e}")))?;
    }
    Ok(wire)
}

/// Decodes until the decoder wants more bytes or fails. Every packet returned must have taken
/// bytes off the buffer, `Ok(None)` must leave it untouched, and whatever decodes must encode
/// back to the same packet.
fn drain(decoder: Decoder, bytes: &[u8]) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::from(bytes);
    // A packet is at least two bytes, so at most len / 2 calls return one.
    for _ in 0..=bytes.len() / 2 {
        let before = buf.to_vec();
        match decoder.decode(&mut buf) {
            Ok(Some(packet)) => {
                prop_assert!(
                    buf.len() + 2 <= before.len(),
                    "a packet was decoded from fewer than two bytes"
                );
                reencodes(decoder.version, &packet)?;
            }
            Ok(None) => {
                prop_assert_eq!(&buf[..], &before[..], "Ok(None) changed the buffer");
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
    Err(TestCaseError::fail("decoding did not stop"))
}

/// A packet the decoder accepted must survive encode and decode unchanged.
fn reencodes(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    let mut wire = encoded(std::slice::from_ref(packet), version)?;
    let again = Decoder::new(version, MAX_PACKET_SIZE).decode(&mut wire);
    prop_assert_eq!(
        again,
        Ok(Some(packet.clone())),
        "accepted packet did not re-encode"
    );
    prop_assert!(wire.is_empty());
    Ok(())
}

/// Property 2 for one packet: it encodes, in its short form where there is one, and every
/// decoder that may read it gives it back whole.
fn round_trips(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    let wire = encoded(std::slice::from_ref(packet), version)?;
    prop_assert_eq!(wire[0] >> 4, packet.packet_type() as u8);
    match packet {
        Packet::Publish(publish) => {
            // The broker's path: header, then the payload appended (or chained) separately.
            prop_assert_eq!(publish.wire_len(version), wire.len());
            let mut split = BytesMut::new();
            publish
                .write_header(version, &mut split)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            split.extend_from_slice(publish.payload());
            prop_assert_eq!(&split[..], &wire[..]);
        }
        // The short forms: Success without properties is just the packet identifier (5.0,
        // 3.4.2.1), and DISCONNECT / AUTH without reason or properties are empty.
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a)
            if a.reason == ReasonCode::Success && a.properties.is_empty() =>
        {
            prop_assert_eq!(wire.len(), 4);
        }
        Packet::Disconnect(d) if d.reason == ReasonCode::Success && d.properties.is_empty() => {
            prop_assert_eq!(wire.len(), 2);
        }
        Packet::Auth(a) if *a == Auth::default() => prop_assert_eq!(wire.len(), 2),
        _ => {}
    }
    let decoders: &[ProtocolVersion] = match packet {
        Packet::Connect(_) => &VERSIONS,
        _ => std::slice::from_ref(&version),
    };
    for &decoder_version in decoders {
        let mut buf = wire.clone();
        let decoded = Decoder::new(decoder_version, MAX_PACKET_SIZE).decode(&mut buf);
        prop_assert_eq!(
            decoded,
            Ok(Some(packet.clone())),
            "decoded as {:?}",
            decoder_version
        );
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    }
    Ok(())
}

/// The first byte of a packet of type `kind` with the flags its type requires (spec 2.1.3).
fn with_required_flags(kind: u8) -> u8 {
    let flags = if matches!(kind, 6 | 8 | 10) {
        0b0010
    } else {
        0
    };
    kind << 4 | flags
}

/// A first byte: anything, or a valid packet type with its required flags, or any PUBLISH.
fn first_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        any::<u8>(),
        (0u8..16).prop_map(with_required_flags),
        (0u8..16).prop_map(|flags| 0x30 | flags),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::FlipBit(i, bit)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(wire: &mut Vec<u8>, mutation: &Mutation) {
    if wire.is_empty() {
        return;
    }
    match *mutation {
        Mutation::FlipBit(i, bit) => {
            let i = i.index(wire.len());
            wire[i] ^= 1 << bit;
        }
        Mutation::Set(i, byte) => {
            let i = i.index(wire.len());
            wire[i] = byte;
        }
        Mutation::Insert(i, byte) => wire.insert(i.index(wire.len() + 1), byte),
        Mutation::Remove(i) => {
            wire.remove(i.index(wire.len()));
        }
        Mutation::Truncate(i) => wire.truncate(i.index(wire.len())),
    }
}

fn pointer_within(what: &str, bytes: &[u8], start: usize, end: usize) -> Result<(), TestCaseError> {
    let ptr = bytes.as_ptr() as usize;
    prop_assert!(
        start <= ptr && ptr + bytes.len() <= end,
        "{} at {:#x}..{:#x} is outside the packet's bytes {:#x}..{:#x}",
        what,
        ptr,
        ptr + bytes.len(),
        start,
        end
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------------------------

proptest! {
    // ProptestConfig::default() reads PROPTEST_CASES, PROPTEST_RNG_SEED and friends.
    #![proptest_config(ProptestConfig::default())]

    /// Property 1a: arbitrary bytes.
    #[test]
    fn decoder_survives_arbitrary_bytes(
        version in any_version(),
        max in max_packet_size(),
        bytes in vec(any::<u8>(), 0..512),
    ) {
        drain(Decoder::new(version, max), &bytes)?;
    }

    /// Property 1b: well-framed packets (right remaining length) with garbage bodies, so that
    /// every packet type's parser sees arbitrary input.
    #[test]
    fn decoder_survives_framed_garbage(
        version in any_version(),
        max in max_packet_size(),
        frames in vec((first_byte(), vec(any::<u8>(), 0..64)), 1..6),
    ) {
        let mut wire = Vec::new();
        for (first, body) in &frames {
            wire.push(*first);
            wire.extend(varint(body.len() as u32));
            wire.extend_from_slice(body);
        }
        drain(Decoder::new(version, max), &wire)?;
    }

    /// Property 1c: valid packet streams with a few bytes flipped, set, inserted or removed,
    /// which reaches the deeper checks (properties, strings, flags, reason codes).
    #[test]
    fn decoder_survives_mutated_packets(
        (version, packets) in packet_stream(),
        max in max_packet_size(),
        mutations in vec(mutation(), 1..5),
    ) {
        let mut wire = encoded(&packets, version)?.to_vec();
        for m in &mutations {
            mutate(&mut wire, m);
        }
        drain(Decoder::new(version, max), &wire)?;
    }

    /// Property 2: every valid packet decodes back to itself; CONNECT with any decoder. Each
    /// case checks several packets of one version (shrinking keeps only the failing one).
    #[test]
    fn valid_packets_round_trip(
        (version, packets) in any_version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..16))),
    ) {
        for packet in &packets {
            round_trips(version, packet)?;
        }
    }

    /// Property 3a: one byte at a time gives the same packets as the whole buffer, each one
    /// exactly when its last byte arrives (and `Ok(None)` before).
    #[test]
    fn byte_at_a_time_matches_all_at_once((version, packets) in packet_stream()) {
        let mut wire = BytesMut::new();
        let mut ends = Vec::new();
        for packet in &packets {
            wire.extend_from_slice(&encoded(std::slice::from_ref(packet), version)?);
            ends.push(wire.len());
        }
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);

        let mut whole = wire.clone();
        let mut at_once = Vec::new();
        while let Some(packet) = decoder.decode(&mut whole).map_err(|e| TestCaseError::fail(e.to_string()))? {
            at_once.push(packet);
        }
        prop_assert!(whole.is_empty());
        prop_assert_eq!(&at_once, &packets);

        let mut buf = BytesMut::new();
        let mut trickled = Vec::new();
        for (i, &byte) in wire.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let complete = ends.get(trickled.len()) == Some(&(i + 1));
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    prop_assert!(complete, "a packet came out after byte {} of {}", i + 1, wire.len());
                    trickled.push(packet);
                }
                Ok(None) => prop_assert!(!complete, "no packet after its last byte {}", i + 1),
                Err(e) => return Err(TestCaseError::fail(format!("byte {}: {e}", i + 1))),
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
        prop_assert_eq!(trickled, at_once);
    }

    /// Property 3b: arbitrary chunk sizes give the same packets too.
    #[test]
    fn arbitrary_chunks_match_all_at_once(
        (version, packets) in packet_stream(),
        chunk_sizes in vec(1usize..300, 1..16),
    ) {
        let wire = encoded(&packets, version)?;
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut rest = &wire[..];
        for &size in chunk_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            rest = tail;
            buf.extend_from_slice(chunk);
            while let Some(packet) = decoder.decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                decoded.push(packet);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packets);
    }

    /// Property 4: PUBLISH topic and payload are slices of the read buffer, at the offsets the
    /// wire format puts them.
    #[test]
    fn publish_borrows_the_read_buffer(
        (version, publishes) in any_version().prop_flat_map(|v| (Just(v), vec(publish(v), 1..5))),
    ) {
        let packets: Vec<Packet> = publishes.iter().cloned().map(Packet::Publish).collect();
        let mut buf = encoded(&packets, version)?;
        let base = buf.as_ptr() as usize;
        let decoder = Decoder::new(version, MAX_PACKET_SIZE);
        let mut offset = 0;
        for expected in &publishes {
            let frame = read_frame(&buf, MAX_PACKET_SIZE)
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .ok_or_else(|| TestCaseError::fail("no fixed header"))?;
            let (start, end) = (base + offset, base + offset + frame.total_len());
            offset += frame.total_len();
            let Ok(Some(Packet::Publish(publish))) = decoder.decode(&mut buf) else {
                return Err(TestCaseError::fail("no PUBLISH decoded"));
            };
            prop_assert_eq!(&publish, expected);
            // Empty slices need not point anywhere in particular.
            if !publish.topic().is_empty() {
                pointer_within("topic", publish.topic().as_bytes(), start, end)?;
                // Right after the fixed header and the topic's length prefix.
                prop_assert_eq!(publish.topic().as_bytes().as_ptr() as usize, start + frame.header_len + 2);
            }
            if !publish.payload().is_empty() {
                pointer_within("payload", publish.payload(), start, end)?;
                // The payload is the end of the packet.
                prop_assert_eq!(publish.payload().as_ptr() as usize, end - publish.payload().len());
            }
        }
        prop_assert!(buf.is_empty());
    }

    /// Property 5a: a real packet over the limit fails once its fixed header is buffered, with
    /// any part of its body; at exactly the limit it decodes.
    #[test]
    fn oversized_packet_fails_at_its_fixed_header(
        (version, packet) in versioned_packet(),
        max_pick in any::<Index>(),
        body_pick in any::<Index>(),
    ) {
        let wire = encoded(std::slice::from_ref(&packet), version)?;
        let total = wire.len();
        let frame = read_frame(&wire, MAX_PACKET_SIZE).unwrap().unwrap();
        prop_assert_eq!(frame.total_len(), total);
        let max = max_pick.index(total) as u32;
        let decoder = Decoder::new(version, max);
        // Part of the fixed header is not enough to tell.
        for cut in 0..frame.header_len {
            prop_assert_eq!(decoder.decode(&mut BytesMut::from(&wire[..cut])), Ok(None));
        }
        let have = frame.header_len + body_pick.index(frame.remaining_len + 1);
        let mut buf = BytesMut::from(&wire[..have]);
        prop_assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { size: total, max })
        );
        let mut full = wire.clone();
        prop_assert_eq!(
            Decoder::new(version, total as u32).decode(&mut full),
            Ok(Some(packet))
        );
    }

    /// Property 5b: any fixed header claiming more than the limit fails on its own, whatever
    /// the type and however long the claimed body (up to the 256 MB maximum).
    #[test]
    fn oversized_fixed_header_alone_fails(
        version in any_version(),
        first in any::<u8>(),
        remaining in prop_oneof![select(VARINT_BOUNDARIES.to_vec()), 0..=VARINT_MAX],
        max_pick in any::<Index>(),
        body in vec(any::<u8>(), 0..32),
    ) {
        let mut header = vec![first];
        header.extend(varint(remaining));
        let total = header.len() + remaining as usize;
        let max = max_pick.index(total) as u32;
        let mut wire = header.clone();
        wire.extend_from_slice(&body[..body.len().min(remaining as usize)]);
        prop_assert_eq!(
            Decoder::new(version, max).decode(&mut BytesMut::from(&wire[..])),
            Err(DecodeError::PacketTooLarge { size: total, max })
        );
        // Within the limit, the same bytes only wait for the rest of the body.
        if wire.len() < total {
            let mut buf = BytesMut::from(&wire[..]);
            prop_assert_eq!(Decoder::new(version, total as u32).decode(&mut buf), Ok(None));
            prop_assert_eq!(&buf[..], &wire[..]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed cases the strategies reach rarely or never
// ---------------------------------------------------------------------------------------------

/// AUTH exists only in 5.0: it does not encode for, and is not accepted on, a 3.x connection.
#[test]
fn auth_is_v5_only() {
    let auth = Packet::Auth(Auth::default());
    for version in [V3_1, V3_1_1] {
        assert!(matches!(
            encode(&auth, version, &mut BytesMut::new()),
            Err(EncodeError::NotInVersion(_))
        ));
        let mut buf = BytesMut::from(&[0xF0, 0x00][..]);
        assert!(Decoder::new(version, MAX_PACKET_SIZE)
            .decode(&mut buf)
            .is_err());
    }
    let mut buf = BytesMut::from(&[0xF0, 0x00][..]);
    assert_eq!(
        Decoder::new(V5, MAX_PACKET_SIZE).decode(&mut buf),
        Ok(Some(auth))
    );
}

/// A PUBLISH big enough for a four-byte remaining length round-trips in every version.
#[test]
fn four_byte_remaining_length_round_trips() {
    for version in VERSIONS {
        let publish = Packet::Publish(
            Publish::new("big", &vec![0xA5; 2_097_152]).with_qos(QoS::AtLeastOnce, 7),
        );
        let mut wire = BytesMut::new();
        encode(&publish, version, &mut wire).unwrap();
        assert_eq!(wire[1..5].iter().filter(|b| *b & 0x80 != 0).count(), 3);
        let decoded = Decoder::new(version, MAX_PACKET_SIZE).decode(&mut wire);
        assert_eq!(decoded, Ok(Some(publish)));
        assert!(wire.is_empty());
    }
}

/// The exact bytes of the short forms, and of their long forms with a reason code.
#[test]
fn short_forms_are_exact() {
    let wire = |packet: &Packet, version| {
        let mut out = BytesMut::new();
        encode(packet, version, &mut out).unwrap();
        out.to_vec()
    };
    for (packet, first) in [
        (Packet::PubAck(Ack::new(0x1234)), 0x40),
        (Packet::PubRec(Ack::new(0x1234)), 0x50),
        (Packet::PubRel(Ack::new(0x1234)), 0x62),
        (Packet::PubComp(Ack::new(0x1234)), 0x70),
    ] {
        for version in VERSIONS {
            assert_eq!(wire(&packet, version), [first, 2, 0x12, 0x34]);
        }
    }
    let not_found = Packet::PubRel(Ack {
        reason: ReasonCode::PacketIdentifierNotFound,
        ..Ack::new(1)
    });
    assert_eq!(wire(&not_found, V5), [0x62, 3, 0, 1, 0x92]);
    for version in VERSIONS {
        assert_eq!(
            wire(&Packet::Disconnect(Disconnect::default()), version),
            [0xE0, 0]
        );
    }
    let with_will = Packet::Disconnect(Disconnect::new(ReasonCode::DisconnectWithWillMessage));
    assert_eq!(wire(&with_will, V5), [0xE0, 1, 0x04]);
    assert_eq!(wire(&Packet::Auth(Auth::default()), V5), [0xF0, 0]);
    let reauth = Packet::Auth(Auth {
        reason: ReasonCode::ReAuthenticate,
        ..Auth::default()
    });
    assert_eq!(wire(&reauth, V5), [0xF0, 2, 0x19, 0]);
    for packet in [not_found, with_will, reauth] {
        let mut buf = BytesMut::from(&wire(&packet, V5)[..]);
        assert_eq!(
            Decoder::new(V5, MAX_PACKET_SIZE).decode(&mut buf),
            Ok(Some(packet))
        );
    }
}

/// The generators take the allowed properties and reason codes from the codec's own tables
/// (`properties::allowed`, `ReasonCode::allowed_in`); this checks those tables against the
/// spec, written out again here from MQTT 5.0 table 2-4 and the reason code lists of sections
/// 3.2.2.2, 3.4.2.1-3.7.2.1, 3.9.3, 3.11.3, 3.14.2.1 and 3.15.2.1.
#[test]
fn codec_tables_match_the_spec() {
    use PropertyContext as P;
    let all = [
        P::Connect,
        P::Will,
        P::ConnAck,
        P::Publish,
        P::PubAck,
        P::Subscribe,
        P::SubAck,
        P::Unsubscribe,
        P::UnsubAck,
        P::Disconnect,
        P::Auth,
    ];
    let properties: &[(u32, &[PropertyContext])] = &[
        (0x01, &[P::Publish, P::Will]),
        (0x02, &[P::Publish, P::Will]),
        (0x03, &[P::Publish, P::Will]),
        (0x08, &[P::Publish, P::Will]),
        (0x09, &[P::Publish, P::Will]),
        (0x0B, &[P::Publish, P::Subscribe]),
        (0x11, &[P::Connect, P::ConnAck, P::Disconnect]),
        (0x12, &[P::ConnAck]),
        (0x13, &[P::ConnAck]),
        (0x15, &[P::Connect, P::ConnAck, P::Auth]),
        (0x16, &[P::Connect, P::ConnAck, P::Auth]),
        (0x17, &[P::Connect]),
        (0x18, &[P::Will]),
        (0x19, &[P::Connect]),
        (0x1A, &[P::ConnAck]),
        (0x1C, &[P::ConnAck, P::Disconnect]),
        (
            0x1F,
            &[
                P::ConnAck,
                P::PubAck,
                P::SubAck,
                P::UnsubAck,
                P::Disconnect,
                P::Auth,
            ],
        ),
        (0x21, &[P::Connect, P::ConnAck]),
        (0x22, &[P::Connect, P::ConnAck]),
        (0x23, &[P::Publish]),
        (0x24, &[P::ConnAck]),
        (0x25, &[P::ConnAck]),
        (0x26, &all),
        (0x27, &[P::Connect, P::ConnAck]),
        (0x28, &[P::ConnAck]),
        (0x29, &[P::ConnAck]),
        (0x2A, &[P::ConnAck]),
    ];
    for property in 0..=0x7F_u32 {
        let spec = properties
            .iter()
            .find(|(p, _)| *p == property)
            .map_or(&[][..], |(_, contexts)| *contexts);
        for ctx in all {
            assert_eq!(
                allowed(property, ctx),
                spec.contains(&ctx),
                "property {property:#04x} on {ctx:?}"
            );
        }
    }

    use ReasonContext as R;
    let reasons: &[(ReasonContext, &[u8])] = &[
        (
            R::ConnAck,
            &[
                0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90,
                0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F,
            ],
        ),
        (
            R::PubAck,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        ),
        (
            R::PubRec,
            &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99],
        ),
        (R::PubRel, &[0x00, 0x92]),
        (R::PubComp, &[0x00, 0x92]),
        (
            R::SubAck,
            &[
                0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2,
            ],
        ),
        (R::UnsubAck, &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91]),
        (
            R::Disconnect,
            &[
                0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93,
                0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1,
                0xA2,
            ],
        ),
        (R::Auth, &[0x00, 0x18, 0x19]),
    ];
    for &(ctx, codes) in reasons {
        for byte in 0..=u8::MAX {
            let codec = ReasonCode::from_u8(byte).is_some_and(|code| code.allowed_in(ctx));
            assert_eq!(
                codec,
                codes.contains(&byte),
                "reason {byte:#04x} on {ctx:?}"
            );
        }
    }
}

/// Strings and binary fields of the largest length a two-byte prefix allows round-trip, and one
/// byte more is refused when encoding rather than written with a wrapped length.
#[test]
fn longest_fields_round_trip() {
    let longest = "a".repeat(65_535);
    for version in VERSIONS {
        let packets = [
            Packet::Publish(Publish::new(&longest, b"")),
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                filters: vec![SubscribeFilter {
                    filter: longest.as_str().into(),
                    options: SubscriptionOptions::default(),
                }],
                ..Subscribe::default()
            }),
            Packet::Connect(Box::new(Connect {
                version,
                clean_start: true,
                keep_alive: 0,
                client_id: longest.as_str().into(),
                will: None,
                username: Some(longest.as_str().into()),
                password: Some(Bytes::from(vec![0; 65_535])),
                properties: Properties::default(),
                bridge: false,
            })),
        ];
        for packet in packets {
            let mut wire = BytesMut::new();
            encode(&packet, version, &mut wire).unwrap();
            let decoded = Decoder::new(version, MAX_PACKET_SIZE).decode(&mut wire);
            assert_eq!(decoded, Ok(Some(packet)));
        }
        let too_long = Packet::Publish(Publish::new(&format!("{longest}a"), b""));
        assert!(matches!(
            encode(&too_long, version, &mut BytesMut::new()),
            Err(EncodeError::FieldTooLong(_))
        ));
    }
}
