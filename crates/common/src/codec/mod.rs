//! Strict JSON encoding and decoding of envelopes.
//!
//! Decoding never panics: anything that is not exactly a current-version envelope of the
//! topic's family is a [`DecodeError`] whose [`reason`](DecodeError::reason) is a metric label.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::events::{Envelope, Payload, PayloadError, SCHEMA_VERSION, Source};
use crate::types::{EventId, UnixNanos};

use canonical::{decode_canonical, encode_canonical};

mod canonical;
#[cfg(test)]
mod tests;

/// Largest record a consumer will parse; larger ones are skipped as `too_large`.
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Why a record could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The record has no value (a tombstone or an empty message).
    #[error("record has no payload")]
    Empty,
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("record of {0} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON, or JSON that is not an envelope (missing, unknown or mistyped field).
    #[error("not a valid envelope: {0}")]
    Envelope(#[source] serde_json::Error),
    /// An envelope of a schema version this build does not read.
    #[error("unknown schema_version {0} (this build reads {SCHEMA_VERSION})")]
    SchemaVersion(u16),
    /// An `event_type` that does not travel on this topic.
    #[error("unknown event_type {0:?} for this topic")]
    EventType(String),
    /// The payload does not match its `event_type`.
    #[error("{0}")]
    Payload(#[source] PayloadError),
}

impl DecodeError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge(_) => "too_large",
            Self::Envelope(e) if e.is_syntax() || e.is_eof() => "invalid_json",
            Self::Envelope(_) => "invalid_envelope",
            Self::SchemaVersion(_) => "unknown_schema_version",
            Self::EventType(_) => "unknown_event_type",
            Self::Payload(_) => "invalid_payload",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope<'a> {
    schema_version: u16,
    event_id: EventId,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    source: WireSource<'a>,
    ts_event: UnixNanos,
    ts_init: UnixNanos,
    causation_id: Option<EventId>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// [`Source`] as read, borrowed from the record when it holds no escapes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireSource<'a> {
    #[serde(borrow)]
    plane: Cow<'a, str>,
    #[serde(borrow)]
    instance: Cow<'a, str>,
}

thread_local! {
    /// The writer of the last record this thread decoded: a topic has few writers, so
    /// consecutive records share one `Arc<Source>` instead of allocating three times each.
    static LAST_SOURCE: std::cell::RefCell<Option<Arc<Source>>> = const { std::cell::RefCell::new(None) };
}

fn shared_source(wire: &WireSource<'_>) -> Arc<Source> {
    LAST_SOURCE.with(|cell| {
        let mut last = cell.borrow_mut();
        if let Some(s) = last.as_ref().filter(|s| *s.plane == *wire.plane && *s.instance == *wire.instance) {
            return Arc::clone(s);
        }
        let s = Arc::new(Source { plane: Arc::from(wire.plane.as_ref()), instance: Arc::from(wire.instance.as_ref()) });
        *last = Some(Arc::clone(&s));
        s
    })
}

/// Appends the JSON of `envelope` to `out`.
pub fn encode_into<P: Payload + 'static>(envelope: &Envelope<P>, out: &mut Vec<u8>) {
    if encode_canonical(envelope, out) {
        return;
    }
    // Serializing our own types to a Vec cannot fail: every map key is a string and every number
    // is finite by construction (signal values are checked where they are made).
    if let Err(e) = serde_json::to_writer(&mut *out, envelope) {
        unreachable!("encoding an envelope failed: {e}");
    }
}

/// The JSON of `envelope`.
pub fn encode<P: Payload + 'static>(envelope: &Envelope<P>) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    encode_into(envelope, &mut out);
    out
}

/// Decodes one record of `P`'s topic.
pub fn decode<P: Payload + 'static>(bytes: &[u8]) -> Result<Envelope<P>, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    if let Some(envelope) = decode_canonical(bytes) {
        return Ok(envelope);
    }
    decode_general(bytes)
}

/// [`decode`] of any valid layout (fields in any order, whitespace, escapes), and the source of
/// every refusal and its reason.
fn decode_general<P: Payload>(bytes: &[u8]) -> Result<Envelope<P>, DecodeError> {
    let wire: WireEnvelope<'_> = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
    if wire.schema_version != SCHEMA_VERSION {
        return Err(DecodeError::SchemaVersion(wire.schema_version));
    }
    if !P::EVENT_TYPES.contains(&wire.event_type.as_ref()) {
        return Err(DecodeError::EventType(wire.event_type.into_owned()));
    }
    let payload = P::deserialize_payload(&wire.event_type, wire.payload.get()).map_err(DecodeError::Payload)?;
    Ok(Envelope {
        schema_version: wire.schema_version,
        event_id: wire.event_id,
        source: shared_source(&wire.source),
        ts_event: wire.ts_event,
        ts_init: wire.ts_init,
        causation_id: wire.causation_id,
        payload,
    })
}
