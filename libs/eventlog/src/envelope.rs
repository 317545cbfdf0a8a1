//! The `Envelope` around every event: stream, seq, writer epoch, time, trace context and the payload.

use aloft_core::notify::DeliveryEvent;
use aloft_core::{ExecutionEvent, RegistryEvent, ScheduleEvent};
use aloft_proto::v1 as wire;
use prost::Message;

use crate::Error;

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
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing our own event types to JSON cannot fail: they hold no non-string map keys.
        let payload = match &self.payload {
            Payload::Registry(event) => {
                wire::envelope::Payload::RegistryEventJson(serde_json::to_vec(event).unwrap_or_default())
            }
            Payload::Execution(event) => {
                wire::envelope::Payload::ExecutionEventJson(serde_json::to_vec(event).unwrap_or_default())
            }
            Payload::Schedule(event) => {
                wire::envelope::Payload::ScheduleEventJson(serde_json::to_vec(event).unwrap_or_default())
            }
            Payload::Delivery(event) => {
                wire::envelope::Payload::DeliveryEventJson(serde_json::to_vec(event).unwrap_or_default())
            }
        };
        wire::Envelope {
            stream: self.stream.clone(),
            seq: self.seq,
            writer_epoch: self.writer_epoch,
            occurred_at_millis: self.occurred_at,
            traceparent: self.traceparent.clone(),
            payload: Some(payload),
        }
        .encode_to_vec()
    }

    pub fn decode(bytes: &[u8]) -> Result<Envelope, Error> {
        let wire = wire::Envelope::decode(bytes).map_err(|e| Error::Decode(e.to_string()))?;
        let payload = match wire.payload {
            Some(wire::envelope::Payload::RegistryEventJson(json)) => Payload::Registry(
                serde_json::from_slice(&json).map_err(|e| Error::Decode(format!("registry event: {e}")))?,
            ),
            Some(wire::envelope::Payload::ExecutionEventJson(json)) => Payload::Execution(
                serde_json::from_slice(&json).map_err(|e| Error::Decode(format!("execution event: {e}")))?,
            ),
            Some(wire::envelope::Payload::ScheduleEventJson(json)) => Payload::Schedule(
                serde_json::from_slice(&json).map_err(|e| Error::Decode(format!("schedule event: {e}")))?,
            ),
            Some(wire::envelope::Payload::DeliveryEventJson(json)) => Payload::Delivery(
                serde_json::from_slice(&json).map_err(|e| Error::Decode(format!("delivery event: {e}")))?,
            ),
            None => {
                return Err(Error::Decode(format!(
                    "envelope of stream {} has no payload",
                    wire.stream
                )))
            }
        };
        Ok(Envelope {
            stream: wire.stream,
            seq: wire.seq,
            writer_epoch: wire.writer_epoch,
            occurred_at: wire.occurred_at_millis,
            traceparent: wire.traceparent,
            payload,
        })
    }
}
