use super::*;
use bytestring::ByteString;

fn decode(bytes: &'static [u8], ctx: PropertyContext) -> Result<Properties, DecodeError> {
    let mut buf = Bytes::from_static(bytes);
    let props = Properties::read(&mut buf, ctx)?;
    assert!(buf.is_empty());
    Ok(props)
}

#[test]
fn reads_hand_written_connect_properties() {
    // Session expiry 10, receive maximum 20, user property ("a", "b") twice kept in order.
    let props = decode(
        b"\x16\x11\x00\x00\x00\x0a\x21\x00\x14\x26\x00\x01a\x00\x01b\x26\x00\x01a\x00\x01c",
        PropertyContext::Connect,
    )
    .unwrap();
    assert_eq!(props.session_expiry_interval, Some(10));
    assert_eq!(props.receive_maximum, Some(20));
    assert_eq!(props.user_properties.len(), 2);
    assert_eq!(&props.user_properties[1].1[..], "c");
}

#[test]
fn rejects_duplicates_wrong_packet_and_bad_values() {
    // Session expiry twice.
    assert_eq!(
        decode(
            b"\x0a\x11\x00\x00\x00\x01\x11\x00\x00\x00\x02",
            PropertyContext::Connect
        ),
        Err(DecodeError::Protocol("property appears more than once"))
    );
    // Topic alias on CONNECT.
    assert!(matches!(
        decode(b"\x03\x23\x00\x01", PropertyContext::Connect),
        Err(DecodeError::Malformed(_))
    ));
    // Receive maximum 0.
    assert!(matches!(
        decode(b"\x03\x21\x00\x00", PropertyContext::Connect),
        Err(DecodeError::Protocol(_))
    ));
    // Length past the end.
    assert!(decode(b"\x05\x21\x00", PropertyContext::Connect).is_err());
    // Unknown identifier.
    assert!(decode(b"\x02\x7f\x00", PropertyContext::Publish).is_err());
    // Two subscription identifiers in SUBSCRIBE, but allowed on PUBLISH.
    assert!(decode(b"\x04\x0b\x01\x0b\x02", PropertyContext::Subscribe).is_err());
    assert_eq!(
        decode(b"\x04\x0b\x01\x0b\x02", PropertyContext::Publish)
            .unwrap()
            .subscription_identifiers,
        vec![1, 2]
    );
    // Authentication data without a method.
    assert!(decode(b"\x03\x16\x00\x00", PropertyContext::Connect).is_err());
}

#[test]
fn written_length_matches_computed_length() {
    let props: Properties = PropertyValues {
        message_expiry_interval: Some(5),
        subscription_identifiers: vec![1, 300_000],
        user_properties: vec![("k".into(), "v".into())],
        correlation_data: Some(Bytes::from_static(b"xyz")),
        ..Default::default()
    }
    .into();
    let mut out = BytesMut::new();
    props.write(&mut out).unwrap();
    assert_eq!(out.len(), props.wire_len());
    let mut buf = out.freeze();
    assert_eq!(
        Properties::read(&mut buf, PropertyContext::Publish).unwrap(),
        props
    );
}

#[test]
fn compacted_properties_own_their_bytes_and_are_equal() {
    let buffer = Bytes::from_static(b"text/plainreply/toCORRkeyvalue");
    let slice = |a: usize, b: usize| buffer.slice(a..b);
    let text = |a: usize, b: usize| ByteString::try_from(slice(a, b)).unwrap();
    let properties: Properties = PropertyValues {
        content_type: Some(text(0, 10)),
        response_topic: Some(text(10, 18)),
        correlation_data: Some(slice(18, 22)),
        user_properties: vec![(text(22, 25), text(25, 30))],
        message_expiry_interval: Some(9),
        ..PropertyValues::default()
    }
    .into();
    let compact = properties.compacted();
    assert_eq!(compact, properties);
    assert_eq!(compact.stored_len(), 30);
    assert_eq!(Properties::default().stored_len(), 0);
    let inside = |p: &[u8]| buffer.as_ptr_range().contains(&p.as_ptr());
    let c = &*compact;
    assert!(!inside(c.content_type.as_ref().unwrap().as_bytes()));
    assert!(!inside(c.response_topic.as_ref().unwrap().as_bytes()));
    assert!(!inside(c.correlation_data.as_ref().unwrap()));
    assert!(!inside(c.user_properties[0].0.as_bytes()));
    assert!(!inside(c.user_properties[0].1.as_bytes()));
    assert!(inside(properties.content_type.as_ref().unwrap().as_bytes()));
}

const ALL_CONTEXTS: [PropertyContext; 11] = PropertyContext::ALL;

/// One property set by hand: its identifier, the field it fills, the bytes it encodes to
/// (spec 2.2.2.2 and 1.5) and what `stored_len` counts for it.
type Case = (u32, fn(&mut PropertyValues), &'static [u8], usize);

/// Every property, written out from the spec rather than taken from the codec, so that a
/// property wired to the wrong identifier, field or wire type fails here.
#[rustfmt::skip] // one property a line reads as the table it checks
const CASES: &[Case] = &[
    (0x01, |p| p.payload_format_indicator = Some(1), b"\x01\x01", 0),
    (0x02, |p| p.message_expiry_interval = Some(0x0102_0304), b"\x02\x01\x02\x03\x04", 0),
    (0x03, |p| p.content_type = Some("ab".into()), b"\x03\x00\x02ab", 2),
    (0x08, |p| p.response_topic = Some("a/b".into()), b"\x08\x00\x03a/b", 3),
    (0x09, |p| p.correlation_data = Some(Bytes::from_static(b"\xff\x00")), b"\x09\x00\x02\xff\x00", 2),
    (0x0B, |p| p.subscription_identifiers = vec![200], b"\x0b\xc8\x01", 4),
    (0x11, |p| p.session_expiry_interval = Some(0x0a0b_0c0d), b"\x11\x0a\x0b\x0c\x0d", 0),
    (0x12, |p| p.assigned_client_identifier = Some("id".into()), b"\x12\x00\x02id", 2),
    (0x13, |p| p.server_keep_alive = Some(0x0102), b"\x13\x01\x02", 0),
    (0x15, |p| p.authentication_method = Some("m".into()), b"\x15\x00\x01m", 1),
    // Data needs a method (spec 3.1.2.11.10), which is allowed on the same packets.
    (0x16, |p| {
        p.authentication_method = Some("m".into());
        p.authentication_data = Some(Bytes::from_static(b"\x07"));
    }, b"\x15\x00\x01m\x16\x00\x01\x07", 2),
    (0x17, |p| p.request_problem_information = Some(false), b"\x17\x00", 0),
    (0x18, |p| p.will_delay_interval = Some(5), b"\x18\x00\x00\x00\x05", 0),
    (0x19, |p| p.request_response_information = Some(true), b"\x19\x01", 0),
    (0x1A, |p| p.response_information = Some("r".into()), b"\x1a\x00\x01r", 1),
    (0x1C, |p| p.server_reference = Some("s".into()), b"\x1c\x00\x01s", 1),
    (0x1F, |p| p.reason_string = Some("why".into()), b"\x1f\x00\x03why", 3),
    (0x21, |p| p.receive_maximum = Some(0x0102), b"\x21\x01\x02", 0),
    (0x22, |p| p.topic_alias_maximum = Some(3), b"\x22\x00\x03", 0),
    (0x23, |p| p.topic_alias = Some(4), b"\x23\x00\x04", 0),
    (0x24, |p| p.maximum_qos = Some(1), b"\x24\x01", 0),
    (0x25, |p| p.retain_available = Some(false), b"\x25\x00", 0),
    (0x26, |p| p.user_properties = vec![("k".into(), "v".into())], b"\x26\x00\x01k\x00\x01v", 2),
    (0x27, |p| p.maximum_packet_size = Some(0x0001_0000), b"\x27\x00\x01\x00\x00", 0),
    (0x28, |p| p.wildcard_subscription_available = Some(true), b"\x28\x01", 0),
    (0x29, |p| p.subscription_identifier_available = Some(false), b"\x29\x00", 0),
    (0x2A, |p| p.shared_subscription_available = Some(true), b"\x2a\x01", 0),
];

fn block(body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    write_varint(&mut out, body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

#[test]
fn every_property_encodes_as_the_spec_says_and_decodes_only_where_allowed() {
    for property in 0..=0x7F {
        assert_eq!(
            CASES.iter().any(|case| case.0 == property),
            ALL_CONTEXTS.iter().any(|&ctx| allowed(property, ctx)),
            "property {property:#04x} has a case exactly when it is allowed somewhere"
        );
    }
    for &(property, set, body, stored) in CASES {
        let mut values = PropertyValues::EMPTY;
        set(&mut values);
        let props = Properties::from(values);
        let mut out = BytesMut::new();
        props.write(&mut out).unwrap();
        assert_eq!(out.freeze(), block(body), "{property:#04x} on the wire");
        assert_eq!(
            props.wire_len(),
            block(body).len(),
            "{property:#04x} length"
        );
        assert_eq!(props.stored_len(), stored, "{property:#04x} stored length");
        assert_eq!(props.compacted(), props, "{property:#04x} compacted");
        for ctx in ALL_CONTEXTS {
            let decoded = Properties::read(&mut block(body), ctx);
            if allowed(property, ctx) {
                assert_eq!(decoded.as_ref(), Ok(&props), "{property:#04x} on {ctx:?}");
            } else {
                assert_eq!(
                    decoded,
                    Err(DecodeError::Malformed(
                        "property not allowed on this packet"
                    )),
                    "{property:#04x} on {ctx:?}"
                );
            }
        }
    }
}

#[test]
fn properties_are_written_in_identifier_order() {
    let mut all = PropertyValues::EMPTY;
    let mut expected = Vec::new();
    // The 0x16 case writes the method of 0x15 too.
    for &(_, set, body, _) in CASES.iter().filter(|case| case.0 != 0x15) {
        set(&mut all);
        expected.extend_from_slice(body);
    }
    let props = Properties::from(all);
    let mut out = BytesMut::new();
    props.write(&mut out).unwrap();
    assert_eq!(out.freeze(), block(&expected));
    assert_eq!(props.wire_len(), block(&expected).len());
}

#[test]
fn single_valued_properties_are_refused_twice_and_lists_are_not() {
    for &(property, _, body, _) in CASES {
        let twice = block(&[body, body].concat());
        for ctx in ALL_CONTEXTS
            .into_iter()
            .filter(|&ctx| allowed(property, ctx))
        {
            let decoded = Properties::read(&mut twice.clone(), ctx);
            let repeatable = property == id::USER_PROPERTY
                || (property == id::SUBSCRIPTION_IDENTIFIER && ctx == PropertyContext::Publish);
            if repeatable {
                assert!(decoded.is_ok(), "{property:#04x} twice on {ctx:?}");
            } else {
                assert_eq!(
                    decoded,
                    Err(DecodeError::Protocol("property appears more than once")),
                    "{property:#04x} twice on {ctx:?}"
                );
            }
        }
    }
}

#[test]
fn refused_values_name_the_rule_they_break() {
    use PropertyContext::{ConnAck, Connect, Publish};
    let cases: &[(&'static [u8], PropertyContext, &str)] = &[
        (
            b"\x02\x01\x02",
            Publish,
            "payload format indicator not 0 or 1",
        ),
        (
            b"\x06\x08\x00\x03a/+",
            Publish,
            "response topic is not a valid topic name",
        ),
        (b"\x02\x0b\x00", Publish, "subscription identifier 0"),
        (b"\x03\x21\x00\x00", Connect, "receive maximum 0"),
        (b"\x02\x24\x02", ConnAck, "maximum QoS not 0 or 1"),
        (
            b"\x05\x27\x00\x00\x00\x00",
            ConnAck,
            "maximum packet size 0",
        ),
        (
            b"\x02\x25\x02",
            ConnAck,
            "boolean property is neither 0 nor 1",
        ),
        // A bad value is reported before the repeat it makes.
        (
            b"\x04\x01\x01\x01\x02",
            Publish,
            "payload format indicator not 0 or 1",
        ),
    ];
    for &(bytes, ctx, rule) in cases {
        assert_eq!(
            decode(bytes, ctx),
            Err(DecodeError::Protocol(rule)),
            "{rule}"
        );
    }
    // A value cut short by the block's end.
    assert!(matches!(
        decode(b"\x02\x21\x00", Connect),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn empty_properties_allocate_nothing() {
    assert!(Properties::default().0.is_none());
    assert!(Properties::from(PropertyValues::EMPTY).0.is_none());
    assert!(decode(b"\x00", PropertyContext::Publish)
        .unwrap()
        .0
        .is_none());
    let mut out = BytesMut::new();
    Properties::default().write(&mut out).unwrap();
    assert_eq!(&out[..], b"\x00");
}
