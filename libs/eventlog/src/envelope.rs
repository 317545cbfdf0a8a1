//! The `Envelope` around every event: stream, seq, writer epoch, time, trace context and the payload.

use aloft_core::notify::DeliveryEvent;
use aloft_core::principal::{AuthMethod, Principal};
use aloft_core::{ExecutionEvent, RegistryEvent, ScheduleEvent};
use aloft_proto::v1 as wire;
use prost::Message;

use crate::error::Error;

/// The version of the event schema this build writes. Raise it with any change that an older reader
/// would misread (a renamed or retyped field, a new required field), and keep decoding every older one: the
/// log is the audit record, and events written today must replay in every later version.
///
/// 2: `GateWaiting.waiting_for` is a typed `WaitingFor` (version 1 carried its text; still read).
/// 3: the payload may be zstd-compressed JSON (`payload_encoding`), and a value may be `offloaded` (a
/// reference into the blob store). Only compressed envelopes are written with version 3, so a reader of
/// version 2 reads every other event of a newer writer during a rolling upgrade; one holding an offloaded
/// value it refuses by the unknown variant instead (it could not use the value either).
pub const SCHEMA_VERSION: u32 = 3;

/// The version an envelope with a plain JSON payload is written with.
const PLAIN_SCHEMA_VERSION: u32 = 2;

/// A payload's JSON larger than this is compressed: a workflow of 20,000 nodes registers as one event
/// (its JSON repeats each node's task, and compresses about fiftyfold).
pub const COMPRESS_ABOVE_BYTES: usize = 64 * 1024;
/// zstd's level: its default, fast on both sides.
const ZSTD_LEVEL: i32 = 3;
/// The most a compressed payload may expand to, so a damaged or hostile record cannot exhaust memory.
const MAX_PAYLOAD_BYTES: usize = 256 * 1024 * 1024;

// Payloads are decoded and handled one at a time, never stored in bulk: the size gap between variants
// costs nothing worth a box on every registry event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Registry(RegistryEvent),
    Execution(ExecutionEvent),
    Schedule(ScheduleEvent),
    Delivery(DeliveryEvent),
}

impl Payload {
    /// Which family of events it holds, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Registry(_) => "registry",
            Payload::Execution(_) => "execution",
            Payload::Schedule(_) => "schedule",
            Payload::Delivery(_) => "delivery",
        }
    }
}

/// One record on the log. Its identity is `stream#seq`, deterministic, so every consumer dedupes by it
/// (for execution decisions through `aloft_core::state::admit`).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub stream: String,
    pub seq: u64,
    pub writer_epoch: u64,
    pub occurred_at: i64,
    pub traceparent: String,
    pub payload: Payload,
    /// Who caused it (the API caller of a request or registration); `None` for engine decisions.
    pub principal: Option<Principal>,
}

impl Envelope {
    /// An envelope for a one-event stream (registrations, requests, scheduler progress): seq 1 and no
    /// writer epoch, since only partition owners sequence and fence their decisions.
    pub fn unsequenced(stream: String, occurred_at: i64, payload: Payload) -> Envelope {
        Envelope {
            stream,
            seq: 1,
            writer_epoch: 0,
            occurred_at,
            traceparent: String::new(),
            payload,
            principal: None,
        }
    }

    /// This envelope, recorded as caused by `principal`.
    pub fn by(mut self, principal: Option<Principal>) -> Envelope {
        self.principal = principal;
        self
    }

    /// The record holding this one envelope.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        Ok(self.to_wire()?.encode_to_vec())
    }

    /// `envelopes` in order as few records as hold at most `max_bytes` each (an envelope larger than that
    /// is a record of its own); `decode_all` gives them back.
    pub fn pack(envelopes: &[Envelope], max_bytes: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut records = Vec::new();
        let mut group: Vec<wire::Envelope> = Vec::new();
        let mut group_bytes = 0;
        for envelope in envelopes {
            let wire = envelope.to_wire()?;
            // Nested, an envelope also costs its field tag and length prefix.
            let bytes = wire.encoded_len() + 8;
            if !group.is_empty() && group_bytes + bytes > max_bytes {
                records.push(record_of(std::mem::take(&mut group)));
                group_bytes = 0;
            }
            group_bytes += bytes;
            group.push(wire);
        }
        if !group.is_empty() {
            records.push(record_of(group));
        }
        Ok(records)
    }

    fn to_wire(&self) -> Result<wire::Envelope, Error> {
        let encode_error = |error: serde_json::Error| {
            Error::Encode(format!(
                "{} event of stream {}: {error}",
                self.payload.kind(),
                self.stream
            ))
        };
        let json = match &self.payload {
            Payload::Registry(event) => serde_json::to_vec(event),
            Payload::Execution(event) => serde_json::to_vec(event),
            Payload::Schedule(event) => serde_json::to_vec(event),
            Payload::Delivery(event) => serde_json::to_vec(event),
        }
        .map_err(encode_error)?;
        let (bytes, encoding, schema_version) = if json.len() > COMPRESS_ABOVE_BYTES {
            let compressed = zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(|error| {
                Error::Encode(format!(
                    "compressing the {} event of stream {}: {error}",
                    self.payload.kind(),
                    self.stream
                ))
            })?;
            (compressed, wire::PayloadEncoding::ZstdJson, SCHEMA_VERSION)
        } else {
            (json, wire::PayloadEncoding::Json, PLAIN_SCHEMA_VERSION)
        };
        let payload = match &self.payload {
            Payload::Registry(_) => wire::envelope::Payload::RegistryEventJson(bytes),
            Payload::Execution(_) => wire::envelope::Payload::ExecutionEventJson(bytes),
            Payload::Schedule(_) => wire::envelope::Payload::ScheduleEventJson(bytes),
            Payload::Delivery(_) => wire::envelope::Payload::DeliveryEventJson(bytes),
        };
        Ok(wire::Envelope {
            stream: self.stream.clone(),
            seq: self.seq,
            writer_epoch: self.writer_epoch,
            occurred_at_millis: self.occurred_at,
            traceparent: self.traceparent.clone(),
            payload: Some(payload),
            then: Vec::new(),
            schema_version,
            payload_encoding: encoding as i32,
            principal: self.principal.as_ref().map(|p| wire::EventPrincipal {
                subject: p.subject.clone(),
                name: p.name.clone(),
                via: p.via.as_str().to_string(),
            }),
        })
    }

    /// Every envelope a record holds, in order: one, or several a propeller appended together.
    pub fn decode_all(bytes: &[u8]) -> Result<Vec<Envelope>, Error> {
        let mut outer = wire::Envelope::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        let then = std::mem::take(&mut outer.then);
        let mut envelopes = Vec::with_capacity(1 + then.len());
        envelopes.push(Envelope::from_wire(outer)?);
        for inner in then {
            if !inner.then.is_empty() {
                return Err(Error::Decode(format!(
                    "envelope of stream {} nests envelopes more than one level deep",
                    inner.stream
                )));
            }
            envelopes.push(Envelope::from_wire(inner)?);
        }
        Ok(envelopes)
    }

    /// The one envelope of a record that holds exactly one (registrations, requests, deliveries).
    pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
        let mut envelopes = Envelope::decode_all(bytes)?;
        match envelopes.len() {
            1 => Ok(envelopes.remove(0)),
            count => Err(Error::Decode(format!(
                "the record holds {count} envelopes where one was expected"
            ))),
        }
    }

    fn from_wire(wire: wire::Envelope) -> Result<Envelope, Error> {
        if wire.schema_version > SCHEMA_VERSION {
            return Err(Error::Decode(format!(
                "envelope of stream {} was written with event schema version {}, newer than version {SCHEMA_VERSION} \
                 this build reads; upgrade this service",
                wire.stream, wire.schema_version
            )));
        }
        let encoding = wire::PayloadEncoding::try_from(wire.payload_encoding).map_err(|_| {
            Error::Decode(format!(
                "envelope of stream {} has an unknown payload encoding {}",
                wire.stream, wire.payload_encoding
            ))
        })?;
        let json = |bytes: Vec<u8>| -> Result<Vec<u8>, Error> {
            match encoding {
                wire::PayloadEncoding::Json => Ok(bytes),
                wire::PayloadEncoding::ZstdJson => decompress(&bytes).map_err(|error| {
                    Error::Decode(format!(
                        "envelope of stream {}: its compressed payload does not decompress: {error}",
                        wire.stream
                    ))
                }),
            }
        };
        let payload = match wire.payload {
            Some(wire::envelope::Payload::RegistryEventJson(bytes)) => Payload::Registry(
                serde_json::from_slice(&json(bytes)?)
                    .map_err(|e| Error::Decode(format!("registry event: {e}")))?,
            ),
            Some(wire::envelope::Payload::ExecutionEventJson(bytes)) => Payload::Execution(
                serde_json::from_slice(&json(bytes)?)
                    .map_err(|e| Error::Decode(format!("execution event: {e}")))?,
            ),
            Some(wire::envelope::Payload::ScheduleEventJson(bytes)) => Payload::Schedule(
                serde_json::from_slice(&json(bytes)?)
                    .map_err(|e| Error::Decode(format!("schedule event: {e}")))?,
            ),
            Some(wire::envelope::Payload::DeliveryEventJson(bytes)) => Payload::Delivery(
                serde_json::from_slice(&json(bytes)?)
                    .map_err(|e| Error::Decode(format!("delivery event: {e}")))?,
            ),
            None => {
                return Err(Error::Decode(format!(
                    "envelope of stream {} has no payload",
                    wire.stream
                )))
            }
        };
        let principal = match wire.principal {
            None => None,
            Some(p) => Some(Principal {
                via: AuthMethod::parse(&p.via).ok_or_else(|| {
                    Error::Decode(format!(
                        "envelope of stream {} names an unknown authentication method {:?}",
                        wire.stream, p.via
                    ))
                })?,
                subject: p.subject,
                name: p.name,
            }),
        };
        Ok(Envelope {
            stream: wire.stream,
            seq: wire.seq,
            writer_epoch: wire.writer_epoch,
            occurred_at: wire.occurred_at_millis,
            traceparent: wire.traceparent,
            payload,
            principal,
        })
    }
}

/// A zstd payload's JSON, refused when it would expand past `MAX_PAYLOAD_BYTES`.
fn decompress(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut json = Vec::new();
    zstd::stream::read::Decoder::new(bytes)?
        .take(MAX_PAYLOAD_BYTES as u64 + 1)
        .read_to_end(&mut json)?;
    if json.len() > MAX_PAYLOAD_BYTES {
        return Err(std::io::Error::other(format!(
            "it expands past {MAX_PAYLOAD_BYTES} bytes"
        )));
    }
    Ok(json)
}

/// One record of `group` (not empty): the first envelope, carrying the others in `then`.
fn record_of(mut group: Vec<wire::Envelope>) -> Vec<u8> {
    let rest = group.split_off(1);
    let mut first = group.remove(0);
    first.then = rest;
    first.encode_to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    fn envelope(seq: u64, padding: usize) -> Envelope {
        Envelope {
            stream: "execution/p/d/e".into(),
            seq,
            writer_epoch: 3,
            occurred_at: 1_000 + seq as i64,
            traceparent: String::new(),
            payload: Payload::Execution(ExecutionEvent::TerminateRequested {
                execution: aloft_core::ExecutionId {
                    project: "p".into(),
                    domain: "d".into(),
                    name: "e".into(),
                },
                reason: "x".repeat(padding),
                requested_at: 7,
            }),
            principal: seq.is_multiple_of(2).then(|| Principal {
                subject: "u-1".into(),
                name: "ada@example.com".into(),
                via: AuthMethod::Oidc,
            }),
        }
    }

    #[test]
    fn packed_envelopes_come_back_in_order_in_records_under_the_size_limit() {
        let envelopes: Vec<Envelope> = (1..=50).map(|seq| envelope(seq, 100)).collect();
        let records = Envelope::pack(&envelopes, 1_000).unwrap();
        assert!(
            records.len() > 1 && records.len() < 50,
            "{} records",
            records.len()
        );
        assert!(records.iter().all(|r| r.len() <= 1_000));
        let unpacked: Vec<Envelope> = records
            .iter()
            .flat_map(|r| Envelope::decode_all(r).unwrap())
            .collect();
        assert_eq!(unpacked, envelopes);
        // An envelope over the limit is a record of its own, not dropped.
        let big = vec![envelope(1, 10), envelope(2, 5_000), envelope(3, 10)];
        let records = Envelope::pack(&big, 1_000).unwrap();
        assert_eq!(records.len(), 3);
        let unpacked: Vec<Envelope> = records
            .iter()
            .flat_map(|r| Envelope::decode_all(r).unwrap())
            .collect();
        assert_eq!(unpacked, big);
        assert!(Envelope::pack(&[], 1_000).unwrap().is_empty());
    }

    #[test]
    fn decode_refuses_a_record_of_several_envelopes_and_decode_all_reads_one() {
        let records = Envelope::pack(&[envelope(1, 1), envelope(2, 1)], 1_000_000).unwrap();
        assert_eq!(records.len(), 1);
        let error = Envelope::decode(&records[0]).unwrap_err().to_string();
        assert!(error.contains("holds 2 envelopes"), "{error}");
        let single = envelope(1, 1).encode().unwrap();
        assert_eq!(Envelope::decode_all(&single).unwrap(), vec![envelope(1, 1)]);
        assert_eq!(Envelope::decode(&single).unwrap(), envelope(1, 1));
    }

    #[test]
    fn an_envelope_of_a_newer_schema_is_refused_naming_both_versions_and_an_unversioned_one_is_read() {
        let mut wire = envelope(1, 1).to_wire().unwrap();
        assert_eq!(wire.schema_version, PLAIN_SCHEMA_VERSION);
        wire.schema_version = SCHEMA_VERSION + 1;
        let error = Envelope::decode(&wire.encode_to_vec()).unwrap_err().to_string();
        assert!(
            error.contains(&format!("schema version {}", SCHEMA_VERSION + 1))
                && error.contains(&format!("version {SCHEMA_VERSION}"))
                && error.contains("execution/p/d/e"),
            "{error}"
        );
        // Records written before versions were recorded carry none (0) and read as they always did.
        wire.schema_version = 0;
        assert_eq!(Envelope::decode(&wire.encode_to_vec()).unwrap(), envelope(1, 1));
    }

    #[test]
    fn a_large_payload_is_compressed_as_version_3_and_a_small_one_stays_plain_json_of_version_2() {
        let large = envelope(2, 2 * COMPRESS_ABOVE_BYTES);
        let wire = large.to_wire().unwrap();
        assert_eq!(wire.payload_encoding, wire::PayloadEncoding::ZstdJson as i32);
        assert_eq!(wire.schema_version, SCHEMA_VERSION);
        assert!(
            wire.encoded_len() < COMPRESS_ABOVE_BYTES / 10,
            "{}",
            wire.encoded_len()
        );
        assert_eq!(Envelope::decode(&wire.encode_to_vec()).unwrap(), large);
        // Packed with others, it still reads back in order.
        let batch = [envelope(1, 1), large.clone(), envelope(3, 1)];
        let records = Envelope::pack(&batch, 1_000_000).unwrap();
        assert_eq!(Envelope::decode_all(&records[0]).unwrap(), batch);

        let small = envelope(1, 100).to_wire().unwrap();
        assert_eq!(small.payload_encoding, wire::PayloadEncoding::Json as i32);
        assert_eq!(small.schema_version, PLAIN_SCHEMA_VERSION);
    }

    #[test]
    fn a_damaged_compressed_payload_or_an_unknown_encoding_is_refused_naming_the_stream() {
        let mut wire = envelope(1, 1).to_wire().unwrap();
        wire.payload_encoding = wire::PayloadEncoding::ZstdJson as i32;
        let error = Envelope::decode(&wire.encode_to_vec()).unwrap_err().to_string();
        assert!(
            error.contains("execution/p/d/e") && error.contains("does not decompress"),
            "{error}"
        );
        wire.payload_encoding = 9;
        let error = Envelope::decode(&wire.encode_to_vec()).unwrap_err().to_string();
        assert!(error.contains("unknown payload encoding 9"), "{error}");
    }
}
