//! How records sit in a log segment: `length (u32) | crc32 of the rest (u32) | record`, both
//! numbers little-endian. Reading a segment back never fails as a whole: it yields every record
//! up to the first damage and says where and what the damage is, so that recovery can cut a
//! torn tail (a crash in the middle of a write) and set a corrupt segment aside.
//!
//! A log may end in zeros: the writer fills the file with zeros ahead of its records, so that a
//! synchronous write overwrites blocks that exist instead of growing the file (no journal commit
//! per write). Zeros to the end are the end of the log, and a damaged record followed only by
//! zeros is a torn tail.

use bytes::{BufMut, Bytes, BytesMut};

use super::record::Record;
use crate::protocol::EncodeError;

/// Bytes before each record: its length and checksum.
pub const FRAME_HEADER: usize = 8;

/// The largest record accepted back: anything longer is damage, not a record (a message is at
/// most a maximum packet size, 256 MiB by the spec).
pub const MAX_RECORD: usize = 268_435_460;

/// Appends one framed record.
pub fn write_frame(record: &Record, out: &mut BytesMut) -> Result<(), EncodeError> {
    write_frame_with(out, |out| record.encode(out))
}

/// Appends one framed record, its kind byte and body written by `encode` (one of the
/// `record::encode_*` functions: the hot path frames records it never builds).
pub fn write_frame_with(
    out: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u64_le(0); // length and checksum, filled in below
    if let Err(error) = encode(out) {
        out.truncate(start);
        return Err(error);
    }
    let body = &out[start + FRAME_HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What reading a segment found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: Vec<Record>,
    /// Bytes of whole, sound records from the start: where appending may go on.
    pub sound_len: usize,
    pub damage: Option<Damage>,
}

/// The first thing wrong in a segment, at `sound_len`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// The last record is incomplete: the write it came from did not finish. Nothing after it.
    TornTail,
    /// A record whose checksum, length or contents are wrong.
    Corrupt(String),
}

/// Reads every record of a segment up to the first damage, or to the zeros it ends in.
pub fn scan(segment: &Bytes) -> Scan {
    let mut scan = Scan::default();
    let mut at = 0;
    // Only zeros from `from` to the end of the segment.
    let zeros_from = |from: usize| segment[from.min(segment.len())..].iter().all(|&b| b == 0);
    while at < segment.len() {
        if zeros_from(at) {
            break;
        }
        let rest = segment.len() - at;
        if rest < FRAME_HEADER {
            scan.damage = Some(Damage::TornTail);
            break;
        }
        let len = u32::from_le_bytes(segment[at..at + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(segment[at + 4..at + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD {
            scan.damage = Some(Damage::Corrupt(format!("record length {len}")));
            break;
        }
        if rest - FRAME_HEADER < len {
            scan.damage = Some(Damage::TornTail);
            break;
        }
        let end = at + FRAME_HEADER + len;
        let body = segment.slice(at + FRAME_HEADER..end);
        if crc32fast::hash(&body) != crc {
            // A torn write can leave a whole-looking last frame with garbage (or the zeros
            // that were there) in it: damage with nothing but zeros after it is a torn tail,
            // anywhere else corruption.
            scan.damage = Some(if zeros_from(end) {
                Damage::TornTail
            } else {
                Damage::Corrupt("checksum mismatch".into())
            });
            break;
        }
        match Record::decode(body) {
            Ok(record) => scan.records.push(record),
            Err(error) => {
                scan.damage = Some(Damage::Corrupt(error.to_string()));
                break;
            }
        }
        at += FRAME_HEADER + len;
        scan.sound_len = at;
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::store::record::{Owing, StoredMessage};
    use crate::protocol::{QoS, SubscriptionOptions};

    fn sample() -> Vec<Record> {
        let message = StoredMessage {
            topic: "t/1".into(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Default::default(),
        };
        vec![
            Record::SessionOpen {
                client_id: "c".into(),
                expiry: u32::MAX,
            },
            Record::Subscribe {
                client_id: "c".into(),
                filter: "t/+".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    ..Default::default()
                },
                id: 7,
            },
            Record::RetainSet { seq: 9, message },
            Record::Qos2Received {
                client_id: "c".into(),
                pkid: 9,
                receipt: 65,
            },
        ]
    }

    fn segment(records: &[Record]) -> BytesMut {
        let mut out = BytesMut::new();
        for r in records {
            write_frame(r, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn records_come_back_as_written() {
        let records = sample();
        let bytes = segment(&records).freeze();
        let scan = scan(&bytes);
        assert_eq!(scan.records, records);
        assert_eq!(scan.sound_len, bytes.len());
        assert_eq!(scan.damage, None);
    }

    #[test]
    fn a_cut_anywhere_gives_the_whole_records_before_it_and_a_torn_tail() {
        let records = sample();
        let bytes = segment(&records).freeze();
        let mut ends = vec![0];
        let mut at = 0;
        for r in &records {
            at += segment(std::slice::from_ref(r)).len();
            ends.push(at);
        }
        for cut in 0..bytes.len() {
            let scan = scan(&bytes.slice(..cut));
            let whole = ends.iter().filter(|&&e| e <= cut).count() - 1;
            assert_eq!(scan.records, records[..whole], "cut at {cut}");
            assert_eq!(scan.sound_len, ends[whole]);
            let torn = ends[whole] != cut;
            assert_eq!(scan.damage.is_some(), torn, "cut at {cut}");
        }
    }

    #[test]
    fn zeros_after_the_records_are_the_end_and_a_torn_record_before_them_a_torn_tail() {
        let records = sample();
        let mut bytes = segment(&records).to_vec();
        let end = bytes.len();
        bytes.resize(end + 4096, 0);
        let whole = scan(&Bytes::from(bytes.clone()));
        assert_eq!(whole.records, records);
        assert_eq!((whole.sound_len, whole.damage), (end, None));
        // The last record half written over the zeros.
        let last = segment(&records[records.len() - 1..]).len();
        for b in &mut bytes[end - last / 2..end] {
            *b = 0;
        }
        let torn = scan(&Bytes::from(bytes.clone()));
        assert_eq!(torn.records, records[..records.len() - 1]);
        assert_eq!(torn.damage, Some(Damage::TornTail));
        // Something after the zeros is not the end.
        let n = bytes.len();
        bytes[n - 1] = 1;
        let corrupt = scan(&Bytes::from(bytes));
        assert!(matches!(corrupt.damage, Some(Damage::Corrupt(_))));
    }

    #[test]
    fn a_flipped_bit_is_found_and_what_precedes_it_is_kept() {
        let records = sample();
        let bytes = segment(&records).to_vec();
        for byte in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[byte] ^= 0x10;
            let scan = scan(&Bytes::from(damaged));
            assert!(
                scan.damage.is_some() || scan.records.len() < records.len(),
                "byte {byte}"
            );
            assert_eq!(
                scan.records[..],
                records[..scan.records.len()],
                "byte {byte}"
            );
        }
    }

    mod props {
        use proptest::prelude::*;

        use super::*;
        use crate::protocol::RetainHandling;

        fn text() -> impl Strategy<Value = bytestring::ByteString> {
            "[a-z/+#é]{0,12}".prop_map(bytestring::ByteString::from)
        }

        fn qos() -> impl Strategy<Value = QoS> {
            prop_oneof![
                Just(QoS::AtMostOnce),
                Just(QoS::AtLeastOnce),
                Just(QoS::ExactlyOnce)
            ]
        }

        fn message() -> impl Strategy<Value = StoredMessage> {
            (
                text(),
                proptest::collection::vec(any::<u8>(), 0..40),
                qos(),
                any::<bool>(),
            )
                .prop_map(|(topic, payload, qos, retain)| StoredMessage {
                    topic,
                    payload: Bytes::from(payload),
                    qos,
                    retain,
                    properties: Default::default(),
                })
        }

        fn record() -> impl Strategy<Value = Record> {
            let options =
                (qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(|(qos, nl, rap, rh)| {
                    SubscriptionOptions {
                        qos,
                        no_local: nl,
                        retain_as_published: rap,
                        retain_handling: match rh {
                            0 => RetainHandling::OnSubscribe,
                            1 => RetainHandling::OnNewSubscribe,
                            _ => RetainHandling::Never,
                        },
                    }
                });
            prop_oneof![
                (text(), any::<u32>())
                    .prop_map(|(client_id, expiry)| Record::SessionOpen { client_id, expiry }),
                text().prop_map(|client_id| Record::SessionEnd { client_id }),
                (text(), text(), options, any::<u32>()).prop_map(
                    |(client_id, filter, options, id)| Record::Subscribe {
                        client_id,
                        filter,
                        options,
                        id
                    }
                ),
                (text(), text())
                    .prop_map(|(client_id, filter)| Record::Unsubscribe { client_id, filter }),
                (any::<u64>(), message())
                    .prop_map(|(seq, message)| Record::RetainSet { seq, message }),
                (any::<u64>(), text()).prop_map(|(seq, topic)| Record::RetainClear { seq, topic }),
                (text(), any::<u16>(), any::<u64>()).prop_map(|(client_id, pkid, receipt)| {
                    Record::Qos2Received {
                        client_id,
                        pkid,
                        receipt,
                    }
                }),
                (text(), any::<u64>())
                    .prop_map(|(client_id, receipt)| Record::Receipt { client_id, receipt }),
                (text(), any::<u16>())
                    .prop_map(|(client_id, pkid)| Record::Qos2Released { client_id, pkid }),
                (text(), any::<u32>(), message()).prop_map(|(client_id, delay, message)| {
                    Record::Will {
                        client_id,
                        delay,
                        message,
                    }
                }),
                text().prop_map(|client_id| Record::WillDone { client_id }),
                (any::<u64>(), message()).prop_map(|(id, message)| Record::Message { id, message }),
                (
                    text(),
                    any::<u64>(),
                    qos(),
                    any::<bool>(),
                    proptest::collection::vec(any::<u32>(), 0..3),
                    (any::<u16>(), any::<u64>())
                )
                    .prop_map(
                        |(client_id, id, qos, retain, subscription_ids, (pkid, receipt))| {
                            let owing = Owing {
                                id,
                                qos,
                                retain,
                                subscription_ids,
                                pkid,
                                receipt,
                            };
                            Record::Owed { client_id, owing }
                        }
                    ),
                (text(), any::<u64>(), any::<u16>()).prop_map(|(client_id, id, pkid)| {
                    Record::Sent {
                        client_id,
                        id,
                        pkid,
                    }
                }),
                (text(), any::<u64>())
                    .prop_map(|(client_id, id)| Record::Released { client_id, id }),
                (text(), any::<u64>())
                    .prop_map(|(client_id, id)| Record::Delivered { client_id, id }),
            ]
        }

        proptest! {
            #[test]
            fn any_records_come_back_and_any_cut_keeps_a_prefix(
                records in proptest::collection::vec(record(), 0..20),
                cut in any::<proptest::sample::Index>(),
            ) {
                let bytes = segment(&records).freeze();
                let whole = scan(&bytes);
                prop_assert_eq!(&whole.records, &records);
                prop_assert_eq!(whole.damage, None);
                let cut = cut.index(bytes.len() + 1);
                let part = scan(&bytes.slice(..cut));
                prop_assert_eq!(&part.records[..], &records[..part.records.len()]);
                prop_assert!(part.sound_len <= cut);
            }

            #[test]
            fn any_bytes_scan_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                let scan = scan(&Bytes::from(bytes.clone()));
                prop_assert!(scan.sound_len <= bytes.len());
                let zeros_after = bytes[scan.sound_len..].iter().all(|&b| b == 0);
                prop_assert_eq!(scan.damage.is_none(), zeros_after);
            }

            #[test]
            fn a_zero_filled_log_cut_anywhere_keeps_a_prefix_and_never_reads_corrupt(
                records in proptest::collection::vec(record(), 1..12),
                cut in any::<proptest::sample::Index>(),
                zeros in 0usize..64,
            ) {
                // What a crash leaves in a log filled with zeros ahead: a prefix of the
                // writes, the rest still zeros.
                let bytes = segment(&records).to_vec();
                let cut = cut.index(bytes.len() + 1);
                let mut file = bytes[..cut].to_vec();
                file.resize(bytes.len() + zeros, 0);
                let scan = scan(&Bytes::from(file));
                prop_assert_eq!(&scan.records[..], &records[..scan.records.len()]);
                prop_assert!(!matches!(scan.damage, Some(Damage::Corrupt(_))), "{:?}", scan.damage);
            }
        }
    }
}
