//! Byte vectors written by hand from the spec's text (not produced by our encoder), decoded and
//! re-encoded; plus the receiver checks each one must fail.

use bytes::{Bytes, BytesMut};

use super::*;

fn decode_all(version: ProtocolVersion, wire: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    let decoder = Decoder::new(version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(wire);
    let mut packets = Vec::new();
    while let Some(p) = decoder.decode(&mut buf)? {
        packets.push(p);
    }
    assert!(buf.is_empty(), "trailing bytes left: {buf:?}");
    Ok(packets)
}

fn decode_one(version: ProtocolVersion, wire: &[u8]) -> Result<Packet, DecodeError> {
    let mut packets = decode_all(version, wire)?;
    assert_eq!(packets.len(), 1);
    Ok(packets.remove(0))
}

/// Decodes `wire`, checks the encoder writes the very same bytes back.
fn round_trip(version: ProtocolVersion, wire: &[u8]) -> Packet {
    let packet = decode_one(version, wire).expect("decodes");
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).expect("encodes");
    assert_eq!(&out[..], wire, "re-encoding {packet:?}");
    packet
}

const V3: ProtocolVersion = ProtocolVersion::V3_1;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn connect_3_1_1_spec_example() {
    // 3.1.2.10 example variable header: "MQTT", level 4, flags 0xCE (user, password, will QoS 1,
    // will, clean session), keep alive 10; then the payload.
    let wire = b"\x10\x24\x00\x04MQTT\x04\xce\x00\x0a\
\x00\x03cid\x00\x03w/t\x00\x02wp\x00\x04user\x00\x04pass";
    let Packet::Connect(c) = round_trip(V4, wire) else {
        panic!()
    };
    assert_eq!(c.version, V4);
    assert!(c.clean_start);
    assert_eq!(c.keep_alive, 10);
    assert_eq!(&c.client_id[..], "cid");
    let will = c.will.as_ref().unwrap();
    assert_eq!(
        (&will.topic[..], &will.payload[..], will.qos, will.retain),
        ("w/t", &b"wp"[..], QoS::AtLeastOnce, false)
    );
    assert_eq!(c.username.as_deref(), Some("user"));
    assert_eq!(c.password.as_deref(), Some(&b"pass"[..]));
}

#[test]
fn connect_3_1_mqisdp() {
    let wire = b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc";
    let Packet::Connect(c) = round_trip(V4, wire) else {
        panic!()
    };
    assert_eq!(c.version, V3);
    assert_eq!(c.keep_alive, 60);
}

#[test]
fn connect_5_with_properties() {
    // 3.1.2.11 properties: session expiry 120, receive maximum 10; will with delay 5.
    let wire = b"\x10\x25\x00\x04MQTT\x05\x06\x00\x1e\
\x08\x11\x00\x00\x00\x78\x21\x00\x0a\
\x00\x02id\
\x05\x18\x00\x00\x00\x05\x00\x01t\x00\x03bye";
    let Packet::Connect(c) = round_trip(V4, wire) else {
        panic!()
    };
    assert_eq!(c.version, V5);
    assert_eq!(c.properties.session_expiry_interval, Some(120));
    assert_eq!(c.properties.receive_maximum, Some(10));
    assert_eq!(c.will.unwrap().properties.will_delay_interval, Some(5));
}

#[test]
fn connect_rejections() {
    // Unknown protocol level 6 -> 0x84 / v3 return code 1.
    let err = decode_one(V4, b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x00\x00\x00").unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocol { level: 6 });
    assert_eq!(err.reason_code(), ReasonCode::UnsupportedProtocolVersion);
    // Wrong protocol name.
    assert!(matches!(
        decode_one(V4, b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x00\x00\x00"),
        Err(DecodeError::UnsupportedProtocol { .. })
    ));
    // Reserved flag bit 0 set (MQTT-3.1.2-3).
    assert!(matches!(
        decode_one(V4, b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x00\x00\x00"),
        Err(DecodeError::Malformed(_))
    ));
    // Will QoS without will flag (MQTT-3.1.2-13).
    assert!(matches!(
        decode_one(V4, b"\x10\x0c\x00\x04MQTT\x04\x0a\x00\x00\x00\x00"),
        Err(DecodeError::Malformed(_))
    ));
    // Will QoS 3 (MQTT-3.1.2-14).
    assert!(decode_one(
        V4,
        b"\x10\x11\x00\x04MQTT\x04\x1c\x00\x00\x00\x00\x00\x01t\x00\x00"
    )
    .is_err());
    // Password without user name in 3.1.1 (MQTT-3.1.2-22).
    assert!(decode_one(V4, b"\x10\x0e\x00\x04MQTT\x04\x40\x00\x00\x00\x00\x00\x00").is_err());
    // Non-zero fixed-header flags.
    assert!(decode_one(V4, b"\x11\x0c\x00\x04MQTT\x04\x02\x00\x00\x00\x00").is_err());
    // Will topic with a wildcard.
    assert_eq!(
        decode_one(
            V4,
            b"\x10\x11\x00\x04MQTT\x04\x06\x00\x00\x00\x00\x00\x01#\x00\x00"
        ),
        Err(DecodeError::TopicNameInvalid)
    );
    // Bytes after the last field.
    assert!(decode_one(V4, b"\x10\x0d\x00\x04MQTT\x04\x02\x00\x00\x00\x00\x00").is_err());
}

#[test]
fn connack_both_versions() {
    let Packet::ConnAck(a) = round_trip(V4, b"\x20\x02\x01\x00") else {
        panic!()
    };
    assert!(a.session_present);
    let Packet::ConnAck(a) = round_trip(V4, b"\x20\x02\x00\x05") else {
        panic!()
    };
    assert_eq!(a.code, ReasonCode::NotAuthorized);
    let Packet::ConnAck(a) = round_trip(V5, b"\x20\x08\x00\x00\x05\x22\x00\x0a\x2a\x01") else {
        panic!()
    };
    assert_eq!(a.properties.topic_alias_maximum, Some(10));
    assert_eq!(a.properties.shared_subscription_available, Some(true));
    // Reserved acknowledge flags, and return code 6 in 3.1.1.
    assert!(decode_one(V4, b"\x20\x02\x02\x00").is_err());
    assert!(decode_one(V4, b"\x20\x02\x00\x06").is_err());
    // 3.1 has no session present flag: its first byte is reserved, written 0.
    let mut out = BytesMut::new();
    let with_session = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    encode(&Packet::ConnAck(with_session), V3, &mut out).unwrap();
    assert_eq!(&out[..], b"\x20\x02\x00\x00");
}

#[test]
fn connect_from_a_mosquitto_bridge() {
    // Mosquitto bridges set the level's top bit (try_private): 0x84 for 3.1.1, 0x83 for 3.1.
    let wire = b"\x10\x0e\x00\x04MQTT\x84\x02\x00\x3c\x00\x02br";
    let Packet::Connect(c) = round_trip(V4, wire) else {
        panic!()
    };
    assert!(c.bridge && c.version == V4);
    let wire = b"\x10\x10\x00\x06MQIsdp\x83\x02\x00\x3c\x00\x02br";
    let Packet::Connect(c) = round_trip(V4, wire) else {
        panic!()
    };
    assert!(c.bridge && c.version == V3);
    // 5.0 has no such level.
    assert!(decode_one(V4, b"\x10\x0f\x00\x04MQTT\x85\x02\x00\x3c\x00\x00\x02br").is_err());
}

#[test]
fn publish_qos0_qos1_qos2() {
    let Packet::Publish(p) = round_trip(V4, b"\x30\x0a\x00\x03a/bhello") else {
        panic!()
    };
    assert_eq!(
        (p.topic(), p.payload(), p.qos, p.packet_id),
        ("a/b", &b"hello"[..], QoS::AtMostOnce, 0)
    );
    // 3.3.2.3 example: topic "a/b", packet id 10, QoS 1, retain.
    let Packet::Publish(p) = round_trip(V4, b"\x33\x07\x00\x03a/b\x00\x0a") else {
        panic!()
    };
    assert_eq!(
        (p.qos, p.retain, p.packet_id, p.payload().len()),
        (QoS::AtLeastOnce, true, 10, 0)
    );
    let Packet::Publish(p) = round_trip(V4, b"\x3c\x08\x00\x03a/b\x12\x34x") else {
        panic!()
    };
    assert!(p.dup);
    assert_eq!((p.qos, p.packet_id), (QoS::ExactlyOnce, 0x1234));
}

#[test]
fn publish_5_with_properties_and_alias() {
    // QoS 1, topic alias 3, message expiry 60, user property ("k","v"), payload "x".
    let wire =
        b"\x32\x16\x00\x01t\x00\x01\x0f\x23\x00\x03\x02\x00\x00\x00\x3c\x26\x00\x01k\x00\x01vx";
    let Packet::Publish(p) = decode_one(V5, wire).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties.topic_alias, Some(3));
    assert_eq!(p.properties.message_expiry_interval, Some(60));
    assert_eq!(&p.properties.user_properties[0].0[..], "k");
    assert_eq!(p.payload(), b"x");
    // Empty topic with an alias is fine in 5.0, but not without one nor in 3.1.1.
    assert!(decode_one(V5, b"\x30\x06\x00\x00\x03\x23\x00\x01").is_ok());
    assert_eq!(
        decode_one(V5, b"\x30\x03\x00\x00\x00"),
        Err(DecodeError::TopicNameInvalid)
    );
    assert_eq!(
        decode_one(V4, b"\x30\x02\x00\x00"),
        Err(DecodeError::TopicNameInvalid)
    );
}

#[test]
fn publish_rejections() {
    // QoS 3 (MQTT-3.3.1-4).
    assert!(matches!(
        decode_one(V4, b"\x36\x05\x00\x01a\x00\x01"),
        Err(DecodeError::Malformed(_))
    ));
    // DUP on QoS 0 (MQTT-3.3.1-2).
    assert!(decode_one(V4, b"\x38\x03\x00\x01a").is_err());
    // Wildcard in a topic name (MQTT-3.3.2-2).
    assert_eq!(
        decode_one(V4, b"\x30\x05\x00\x03a/+"),
        Err(DecodeError::TopicNameInvalid)
    );
    // Packet id 0 on QoS 1 (MQTT-2.3.1-1).
    assert!(matches!(
        decode_one(V4, b"\x32\x05\x00\x01a\x00\x00"),
        Err(DecodeError::Protocol(_))
    ));
    // Invalid UTF-8 topic.
    assert!(matches!(
        decode_one(V4, b"\x30\x04\x00\x02\xc3\x28"),
        Err(DecodeError::Malformed(_))
    ));
    // Topic length past the packet.
    assert!(decode_one(V4, b"\x30\x03\x00\x05a").is_err());
    // Property not allowed on PUBLISH (session expiry).
    assert!(decode_one(V5, b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01").is_err());
}

#[test]
fn acks_both_versions() {
    assert_eq!(
        round_trip(V4, b"\x40\x02\x00\x07"),
        Packet::PubAck(Ack::new(7))
    );
    assert_eq!(
        round_trip(V4, b"\x50\x02\x00\x07"),
        Packet::PubRec(Ack::new(7))
    );
    assert_eq!(
        round_trip(V4, b"\x62\x02\x00\x07"),
        Packet::PubRel(Ack::new(7))
    );
    assert_eq!(
        round_trip(V4, b"\x70\x02\x00\x07"),
        Packet::PubComp(Ack::new(7))
    );
    // 5.0: short form, reason only, reason with a reason string.
    assert_eq!(
        round_trip(V5, b"\x40\x02\x00\x07"),
        Packet::PubAck(Ack::new(7))
    );
    let Packet::PubAck(a) = round_trip(V5, b"\x40\x03\x00\x07\x10") else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::NoMatchingSubscribers);
    let Packet::PubRec(a) = round_trip(V5, b"\x50\x08\x00\x07\x97\x04\x1f\x00\x01q") else {
        panic!()
    };
    assert_eq!(a.properties.reason_string.as_deref(), Some("q"));
    // "Reason code 0, no properties" written long decodes to the same packet.
    assert_eq!(
        decode_one(V5, b"\x40\x04\x00\x07\x00\x00").unwrap(),
        Packet::PubAck(Ack::new(7))
    );
    // PUBREL needs flags 0010 (MQTT-3.6.1-1); a reason code not allowed on PUBREL.
    assert!(decode_one(V4, b"\x60\x02\x00\x07").is_err());
    assert!(decode_one(V5, b"\x62\x03\x00\x07\x10").is_err());
    // 3.1.1 acks are exactly 2 bytes.
    assert!(decode_one(V4, b"\x40\x03\x00\x07\x00").is_err());
}

#[test]
fn subscribe_and_suback() {
    // 3.8.3.1 example: "a/b" QoS 1, "c/d" QoS 2, packet id 10.
    let wire = b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/d\x02";
    let Packet::Subscribe(s) = round_trip(V4, wire) else {
        panic!()
    };
    assert_eq!(s.packet_id, 10);
    assert_eq!(s.filters[1].options.qos, QoS::ExactlyOnce);
    // 3.9.3 example: granted 0, 2 and a failure.
    let Packet::SubAck(a) = round_trip(V4, b"\x90\x05\x00\x0a\x00\x02\x80") else {
        panic!()
    };
    assert_eq!(
        a.codes,
        vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS2,
            ReasonCode::UnspecifiedError
        ]
    );
    // 5.0 options: QoS 1, no local, retain as published, retain handling 2; subscription id 5.
    let wire = b"\x82\x0b\x00\x01\x02\x0b\x05\x00\x03a/#\x2d";
    let Packet::Subscribe(s) = round_trip(V5, wire) else {
        panic!()
    };
    let o = s.filters[0].options;
    assert_eq!(
        (o.qos, o.no_local, o.retain_as_published, o.retain_handling),
        (QoS::AtLeastOnce, true, true, RetainHandling::Never)
    );
    assert_eq!(s.properties.subscription_identifiers, vec![5]);
    let Packet::SubAck(a) = round_trip(V5, b"\x90\x05\x00\x01\x00\x01\x8f") else {
        panic!()
    };
    assert_eq!(
        a.codes,
        vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid]
    );
}

#[test]
fn subscribe_rejections() {
    // Flags not 0010 (MQTT-3.8.1-1).
    assert!(decode_one(V4, b"\x80\x08\x00\x01\x00\x03a/b\x00").is_err());
    // No filter (MQTT-3.8.3-3).
    assert!(decode_one(V4, b"\x82\x02\x00\x01").is_err());
    // Reserved option bits in 3.1.1 (MQTT-3.8.3-4), and QoS 3.
    assert!(decode_one(V4, b"\x82\x08\x00\x01\x00\x03a/b\x04").is_err());
    assert!(decode_one(V4, b"\x82\x08\x00\x01\x00\x03a/b\x03").is_err());
    // Bad filters.
    assert_eq!(
        decode_one(V4, b"\x82\x0a\x00\x01\x00\x05a/#/b\x00"),
        Err(DecodeError::TopicFilterInvalid)
    );
    assert_eq!(
        decode_one(V4, b"\x82\x08\x00\x01\x00\x03a+b\x00"),
        Err(DecodeError::TopicFilterInvalid)
    );
    // Retain handling 3; No Local on a shared subscription (5.0).
    assert!(decode_one(V5, b"\x82\x09\x00\x01\x00\x00\x03a/b\x30").is_err());
    assert!(decode_one(V5, b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04").is_err());
    assert!(decode_one(V5, b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x01").is_ok());
}

#[test]
fn unsubscribe_and_unsuback() {
    let Packet::Unsubscribe(u) = round_trip(V4, b"\xa2\x0c\x00\x0b\x00\x03a/b\x00\x03c/d") else {
        panic!()
    };
    assert_eq!(u.filters.len(), 2);
    assert_eq!(
        round_trip(V4, b"\xb0\x02\x00\x0b"),
        Packet::UnsubAck(UnsubAck {
            packet_id: 11,
            ..Default::default()
        })
    );
    let Packet::UnsubAck(a) = round_trip(V5, b"\xb0\x05\x00\x0b\x00\x00\x11") else {
        panic!()
    };
    assert_eq!(
        a.codes,
        vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    assert!(decode_one(V4, b"\xa2\x02\x00\x0b").is_err());
}

#[test]
fn ping_disconnect_auth() {
    assert_eq!(round_trip(V4, b"\xc0\x00"), Packet::PingReq);
    assert_eq!(round_trip(V4, b"\xd0\x00"), Packet::PingResp);
    assert!(decode_one(V4, b"\xc0\x01\x00").is_err());
    assert_eq!(
        round_trip(V4, b"\xe0\x00"),
        Packet::Disconnect(Disconnect::default())
    );
    assert!(decode_one(V4, b"\xe0\x01\x00").is_err());
    let Packet::Disconnect(d) = round_trip(V5, b"\xe0\x01\x04") else {
        panic!()
    };
    assert_eq!(d.reason, ReasonCode::DisconnectWithWillMessage);
    let Packet::Disconnect(d) = round_trip(V5, b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00") else {
        panic!()
    };
    assert_eq!(d.properties.session_expiry_interval, Some(0));
    let Packet::Auth(a) = round_trip(V5, b"\xf0\x08\x18\x06\x15\x00\x03abc") else {
        panic!()
    };
    assert_eq!(a.reason, ReasonCode::ContinueAuthentication);
    assert!(decode_one(V4, b"\xf0\x00").is_err());
    assert!(decode_one(V4, b"\x00\x00").is_err());
}

#[test]
fn remaining_length_rules_and_size_limit() {
    // Five-byte remaining length (MQTT 2.2.3).
    assert!(decode_one(V4, b"\x30\xff\xff\xff\xff\x7f").is_err());
    // Non-minimal remaining length.
    assert!(decode_one(V4, b"\xc0\x80\x00").is_err());
    // Too large: fails from the header alone, before the body has arrived.
    let decoder = Decoder::new(V4, 100);
    let mut buf = BytesMut::from(&b"\x30\xc8\x01"[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 203,
            max: 100
        })
    );
    assert_eq!(
        DecodeError::PacketTooLarge {
            size: 203,
            max: 100
        }
        .reason_code(),
        ReasonCode::PacketTooLarge
    );
}

#[test]
fn pipelined_packets_and_partial_input() {
    let wire = b"\x30\x0a\x00\x03a/bhello\x40\x02\x00\x07\xc0\x00";
    let packets = decode_all(V4, wire).unwrap();
    assert_eq!(packets.len(), 3);
    let decoder = Decoder::new(V4, MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some(p) = decoder.decode(&mut buf).unwrap() {
            out.push(p);
        }
    }
    assert_eq!(out, packets);
}

#[test]
fn publish_payload_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"\x30\x0a\x00\x03a/bhello"[..]);
    let base = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = Decoder::default().decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(p.payload().as_ptr() as usize, base + 7);
    assert_eq!(p.topic().as_bytes().as_ptr() as usize, base + 4);
}

#[test]
fn one_payload_encoded_for_many_subscribers() {
    let payload = Bytes::from_static(b"shared");
    let mut out = BytesMut::new();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let p = Publish::new("t", &payload)
            .with_qos(qos, if qos == QoS::AtMostOnce { 0 } else { i as u16 });
        p.write(V4, &mut out).unwrap();
    }
    let packets = decode_all(V4, &out).unwrap();
    assert_eq!(packets.len(), 3);
    for p in packets {
        let Packet::Publish(p) = p else { panic!() };
        assert_eq!(p.payload(), payload);
    }
}

#[test]
fn packets_stay_small_for_the_hot_path() {
    // Properties are boxed only when present and topic and payload share one buffer, so a
    // 3.1.1 PUBLISH moves as 64 bytes.
    assert!(std::mem::size_of::<Properties>() <= 8);
    assert!(
        std::mem::size_of::<Packet>() <= 72,
        "{}",
        std::mem::size_of::<Packet>()
    );
}

#[test]
fn a_failed_encode_leaves_the_buffer_as_it_was() {
    let mut out = BytesMut::from(&b"keep"[..]);
    let too_long = Packet::Publish(Publish::new(&"t".repeat(70_000), b""));
    assert!(encode(&too_long, V4, &mut out).is_err());
    assert_eq!(&out[..], b"keep");
}

#[test]
fn a_large_header_does_not_reserve_the_whole_packet() {
    let decoder = Decoder::new(V4, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&b"\x30\xff\xff\xff\x7f"[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.capacity() < 1024 * 1024, "reserved {}", buf.capacity());
}
