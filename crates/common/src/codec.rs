//! Strict JSON encoding and decoding of envelopes.
//!
//! Decoding never panics: anything that is not exactly a current-version envelope of the
//! topic's family is a [`DecodeError`] whose [`reason`](DecodeError::reason) is a metric label.

use std::borrow::Cow;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde_json::value::RawValue;

use crate::events::{Envelope, MarketEvent, Payload, PayloadError, Quote, SCHEMA_VERSION, Source, Trade};
use crate::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};

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

/// Writes a quote or a trade (most of what the Data Plane publishes) directly, byte for byte as
/// serde writes it, when none of its strings needs an escape and its decimals are non-negative
/// and fit in 64 bits; answers `false` with `out` unchanged for anything else, which serde then
/// writes.
fn encode_canonical<P: Payload + 'static>(envelope: &Envelope<P>, out: &mut Vec<u8>) -> bool {
    let Some(market) = (&envelope.payload as &dyn std::any::Any).downcast_ref::<MarketEvent>() else {
        return false;
    };
    let start = out.len();
    let written = match market {
        MarketEvent::Quote(q) => write_head(envelope, "quote", out).and_then(|()| {
            write_str_field(out, b"{\"symbol\":", q.symbol.as_str())?;
            write_decimal_field(out, b",\"bid_px\":", q.bid_px.get())?;
            write_decimal_field(out, b",\"bid_sz\":", q.bid_sz.get())?;
            write_decimal_field(out, b",\"ask_px\":", q.ask_px.get())?;
            write_decimal_field(out, b",\"ask_sz\":", q.ask_sz.get())
        }),
        MarketEvent::Trade(t) => write_head(envelope, "trade", out).and_then(|()| {
            write_str_field(out, b"{\"symbol\":", t.symbol.as_str())?;
            write_decimal_field(out, b",\"price\":", t.price.get())?;
            write_decimal_field(out, b",\"size\":", t.size.get())?;
            let aggressor = match t.aggressor {
                Side::Buy => "buy",
                Side::Sell => "sell",
            };
            write_str_field(out, b",\"aggressor\":", aggressor)
        }),
        _ => None,
    };
    if written.is_none() {
        out.truncate(start);
        return false;
    }
    out.extend_from_slice(b"}}");
    true
}

/// The envelope up to and including `"payload":`.
fn write_head<P>(envelope: &Envelope<P>, event_type: &str, out: &mut Vec<u8>) -> Option<()> {
    out.extend_from_slice(b"{\"schema_version\":");
    write_uint(out, u64::from(envelope.schema_version));
    out.extend_from_slice(b",\"event_id\":");
    write_uuid(out, envelope.event_id.0);
    write_str_field(out, b",\"event_type\":", event_type)?;
    write_str_field(out, b",\"source\":{\"plane\":", &envelope.source.plane)?;
    write_str_field(out, b",\"instance\":", &envelope.source.instance)?;
    out.extend_from_slice(b"},\"ts_event\":");
    write_uint(out, envelope.ts_event.0);
    out.extend_from_slice(b",\"ts_init\":");
    write_uint(out, envelope.ts_init.0);
    out.extend_from_slice(b",\"causation_id\":");
    match envelope.causation_id {
        Some(id) => write_uuid(out, id.0),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"payload\":");
    Some(())
}

/// `key` (with its punctuation) and `value` quoted, when `value` needs no escape.
fn write_str_field(out: &mut Vec<u8>, key: &[u8], value: &str) -> Option<()> {
    if value.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        return None;
    }
    out.extend_from_slice(key);
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
    Some(())
}

/// `key` and `value` as rust_decimal's serde writes it (all digits of the mantissa, the point
/// `scale` digits from the right, a `0` before a leading point), for a non-negative value whose
/// mantissa fits in a `u64`.
fn write_decimal_field(out: &mut Vec<u8>, key: &[u8], value: Decimal) -> Option<()> {
    if value.is_sign_negative() {
        return None;
    }
    let mantissa = u64::try_from(value.mantissa()).ok()?;
    let scale = usize::try_from(value.scale()).ok()?;
    let mut buf = [0u8; 20];
    let digits = if mantissa == 0 { &[][..] } else { uint_digits(mantissa, &mut buf) };
    out.extend_from_slice(key);
    out.push(b'"');
    if digits.len() > scale {
        let whole = digits.len() - scale;
        out.extend_from_slice(&digits[..whole]);
        if scale > 0 {
            out.push(b'.');
            out.extend_from_slice(&digits[whole..]);
        }
    } else if scale > 0 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + scale - digits.len(), b'0');
        out.extend_from_slice(digits);
    } else {
        out.push(b'0');
    }
    out.push(b'"');
    Some(())
}

/// The decimal digits of `n` (at least one), written at the end of `buf`.
fn uint_digits(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A remainder of 10 is below 10: the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(uint_digits(n, &mut [0u8; 20]));
}

/// A quoted hyphenated lower-case UUID, as serde writes it.
fn write_uuid(out: &mut Vec<u8>, id: uuid::Uuid) {
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).as_bytes());
    out.push(b'"');
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

/// Reads a record in the exact layout [`encode`] writes (fields in contract order, no whitespace,
/// no escapes in the envelope's strings), or answers `None` for anything else.
///
/// Nearly every record a consumer reads is in this layout, and reading it directly saves the
/// general path's key matching and its extra pass over the payload (kept as raw JSON until
/// `event_type` is known). It accepts only a subset of what [`decode_general`] accepts and
/// builds the same values; on any doubt, including a payload that does not parse, it gives up
/// and [`decode`] asks the general path, so what is accepted and every error's reason are the
/// general path's.
fn decode_canonical<P: Payload + 'static>(bytes: &[u8]) -> Option<Envelope<P>> {
    let mut c = Cursor { bytes, pos: 0 };
    c.literal(b"{\"schema_version\":")?;
    if c.uint()? != u64::from(SCHEMA_VERSION) {
        return None;
    }
    c.literal(b",\"event_id\":")?;
    let event_id = EventId(c.uuid()?);
    c.literal(b",\"event_type\":\"")?;
    let event_type = c.string()?;
    let event_type = *P::EVENT_TYPES.iter().find(|t| t.as_bytes() == event_type)?;
    c.literal(b",\"source\":{\"plane\":\"")?;
    let plane = std::str::from_utf8(c.string()?).ok()?;
    c.literal(b",\"instance\":\"")?;
    let instance = std::str::from_utf8(c.string()?).ok()?;
    c.literal(b"},\"ts_event\":")?;
    let ts_event = UnixNanos(c.uint()?);
    c.literal(b",\"ts_init\":")?;
    let ts_init = UnixNanos(c.uint()?);
    c.literal(b",\"causation_id\":")?;
    let causation_id = if c.literal(b"null").is_some() { None } else { Some(EventId(c.uuid()?)) };
    c.literal(b",\"payload\":")?;
    // The payload runs to the envelope's closing brace, the last byte. Parsing it on its own
    // refuses trailing text, so a payload followed by another field falls back and is refused
    // there as an unknown field.
    let body = bytes.get(c.pos..)?.strip_suffix(b"}")?;
    let payload = match canonical_payload::<P>(event_type, body) {
        Some(payload) => payload,
        None => P::deserialize_payload(event_type, std::str::from_utf8(body).ok()?).ok()?,
    };
    let source = shared_source(&WireSource { plane: Cow::Borrowed(plane), instance: Cow::Borrowed(instance) });
    Some(Envelope { schema_version: SCHEMA_VERSION, event_id, source, ts_event, ts_init, causation_id, payload })
}

/// The payload `body` of a record of `P`'s topic, when it is a payload read directly (quotes and
/// trades, most of what a consumer reads) in the exact layout the encoder writes; `None` sends it
/// to serde.
///
/// `P` is matched by type here rather than given a method of its own, so that the payload types
/// stay unaware of this shortcut of the codec.
fn canonical_payload<P: 'static>(event_type: &str, body: &[u8]) -> Option<P> {
    let mut slot: Option<P> = None;
    if let Some(market) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<MarketEvent>>() {
        *market = match event_type {
            "quote" => canonical_quote(body).map(MarketEvent::Quote),
            "trade" => canonical_trade(body).map(MarketEvent::Trade),
            _ => None,
        };
    }
    slot
}

/// A [`Quote`] as the encoder writes it. Its rule (bid below ask) is the contract's in
/// `events.rs`: a quote that breaks it goes to serde, which refuses it with its reason.
fn canonical_quote(body: &[u8]) -> Option<Quote> {
    let mut c = Cursor { bytes: body, pos: 0 };
    c.literal(b"{\"symbol\":\"")?;
    let symbol = c.symbol()?;
    c.literal(b",\"bid_px\":\"")?;
    let bid_px = Price::new(c.decimal()?).ok()?;
    c.literal(b",\"bid_sz\":\"")?;
    let bid_sz = Quantity::new(c.decimal()?).ok()?;
    c.literal(b",\"ask_px\":\"")?;
    let ask_px = Price::new(c.decimal()?).ok()?;
    c.literal(b",\"ask_sz\":\"")?;
    let ask_sz = Quantity::new(c.decimal()?).ok()?;
    c.literal(b"}")?;
    (c.pos == body.len() && bid_px < ask_px).then_some(Quote { symbol, bid_px, bid_sz, ask_px, ask_sz })
}

/// A [`Trade`] as the encoder writes it.
fn canonical_trade(body: &[u8]) -> Option<Trade> {
    let mut c = Cursor { bytes: body, pos: 0 };
    c.literal(b"{\"symbol\":\"")?;
    let symbol = c.symbol()?;
    c.literal(b",\"price\":\"")?;
    let price = Price::new(c.decimal()?).ok()?;
    c.literal(b",\"size\":\"")?;
    let size = Quantity::new(c.decimal()?).ok()?;
    c.literal(b",\"aggressor\":\"")?;
    let aggressor = match c.string()? {
        b"buy" => Side::Buy,
        b"sell" => Side::Sell,
        _ => return None,
    };
    c.literal(b"}")?;
    (c.pos == body.len()).then_some(Trade { symbol, price, size, aggressor })
}

/// A position in a record read by [`decode_canonical`]; every method answers `None` where the
/// record leaves the canonical layout.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over `expected`.
    fn literal(&mut self, expected: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(expected.len())?;
        (self.bytes.get(self.pos..end)? == expected).then(|| self.pos = end)
    }

    /// An unsigned integer as JSON writes it (no sign, no leading zero, no fraction or exponent,
    /// which the next literal refuses) that fits in a `u64`.
    fn uint(&mut self) -> Option<u64> {
        let digits = self.bytes.get(self.pos..)?.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.bytes[self.pos] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for &b in &self.bytes[self.pos..self.pos + digits] {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        self.pos += digits;
        Some(value)
    }

    /// The bytes of a string whose opening quote was already read, up to its closing quote,
    /// which is stepped over. Escapes and control characters are left to the general path.
    fn string(&mut self) -> Option<&'a [u8]> {
        let rest = self.bytes.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.pos += len + 1;
        Some(&rest[..len])
    }

    /// A symbol string whose opening quote was already read, through serde's constructor, which
    /// checks it and shares it with the symbols decoded before.
    fn symbol(&mut self) -> Option<Symbol> {
        let text = std::str::from_utf8(self.string()?).ok()?;
        Symbol::deserialize(BorrowedStrDeserializer::<serde::de::value::Error>::new(text)).ok()
    }

    /// A decimal string whose opening quote was already read, as the encoder writes it: digits
    /// with no sign, no leading zero and no exponent, and at most one point with digits after
    /// it, 19 digits at most (so that they fit in a `u64`). Its value and scale are what
    /// `Decimal::from_str` makes of it: the digits as an integer, the digits after the point as
    /// the scale.
    fn decimal(&mut self) -> Option<Decimal> {
        const MAX_DIGITS: u32 = 19;
        let text = self.string()?;
        let (whole, fraction) = match text.iter().position(|&b| b == b'.') {
            Some(point) => (&text[..point], Some(&text[point + 1..])),
            None => (text, None),
        };
        let plain = |digits: &[u8]| !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
        if !plain(whole) || (whole.len() > 1 && whole[0] == b'0') || fraction.is_some_and(|f| !plain(f)) {
            return None;
        }
        let scale = u32::try_from(fraction.map_or(0, <[u8]>::len)).ok()?;
        if u32::try_from(whole.len()).ok()? + scale > MAX_DIGITS {
            return None;
        }
        let mantissa =
            whole.iter().chain(fraction.unwrap_or_default()).fold(0u64, |m, &b| m * 10 + u64::from(b - b'0'));
        Some(Decimal::from_i128_with_scale(i128::from(mantissa), scale))
    }

    /// A quoted hyphenated UUID, the form the encoder writes.
    fn uuid(&mut self) -> Option<uuid::Uuid> {
        const LEN: usize = 36;
        let quoted = self.bytes.get(self.pos..self.pos.checked_add(LEN + 2)?)?;
        if quoted[0] != b'"' || quoted[LEN + 1] != b'"' {
            return None;
        }
        let id = uuid::Uuid::try_parse_ascii(&quoted[1..=LEN]).ok()?;
        self.pos += LEN + 2;
        Some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::*;
    use crate::types::*;
    use rust_decimal::dec;
    use uuid::Uuid;

    fn source() -> Arc<Source> {
        Arc::new(Source { plane: "data-plane".into(), instance: "test".into() })
    }

    fn quote_envelope() -> Envelope<MarketEvent> {
        Envelope {
            schema_version: SCHEMA_VERSION,
            event_id: EventId(Uuid::from_u128(0x0191_3c6e_aa00_7000_8000_0000_0000_0001)),
            source: source(),
            ts_event: UnixNanos(1_723_161_600_001_692_584),
            ts_init: UnixNanos(1_723_161_600_101_000_000),
            causation_id: None,
            payload: MarketEvent::Quote(Quote {
                symbol: Symbol::new("BTCUSDT").unwrap(),
                bid_px: Price::new(dec!(61685.99)).unwrap(),
                bid_sz: Quantity::new(dec!(1.25869)).unwrap(),
                ask_px: Price::new(dec!(61686)).unwrap(),
                ask_sz: Quantity::new(dec!(2.44816)).unwrap(),
            }),
        }
    }

    const QUOTE_JSON: &str = r#"{"schema_version":1,"event_id":"01913c6e-aa00-7000-8000-000000000001","event_type":"quote","source":{"plane":"data-plane","instance":"test"},"ts_event":1723161600001692584,"ts_init":1723161600101000000,"causation_id":null,"payload":{"symbol":"BTCUSDT","bid_px":"61685.99","bid_sz":"1.25869","ask_px":"61686","ask_sz":"2.44816"}}"#;

    #[test]
    fn encodes_the_documented_layout() {
        assert_eq!(String::from_utf8(encode(&quote_envelope())).unwrap(), QUOTE_JSON);
    }

    #[test]
    fn round_trips_every_family() {
        let env = quote_envelope();
        assert_eq!(decode::<MarketEvent>(&encode(&env)).unwrap(), env);

        let report = Envelope {
            payload: ExecEvent::Report(ExecReport {
                intent_id: IntentId(Uuid::from_u128(7)),
                order_id: "SIM-1".into(),
                symbol: Symbol::new("BTCUSDT").unwrap(),
                side: Side::Buy,
                status: ExecStatus::Rejected,
                reason: Some(RejectReason::MaxGrossExposure),
                detail: Some("gross 120000 > 100000".into()),
                venue: "risk".into(),
                order_qty: dec!(2),
                exec_id: None,
                last_px: None,
                last_qty: dec!(0),
                cum_qty: dec!(0),
                avg_px: None,
                leaves_qty: dec!(0),
                commission: dec!(0),
                cum_commission: dec!(0),
                arrival_mid: dec!(61686),
                slippage_bps: None,
            }),
            schema_version: env.schema_version,
            event_id: env.event_id,
            source: env.source.clone(),
            ts_event: env.ts_event,
            ts_init: env.ts_init,
            causation_id: Some(env.event_id),
        };
        assert_eq!(decode::<ExecEvent>(&encode(&report)).unwrap(), report);
    }

    #[test]
    fn accepts_fields_in_any_order() {
        let reordered = r#"{"payload":{"ask_sz":"2.44816","symbol":"BTCUSDT","bid_px":"61685.99","bid_sz":"1.25869","ask_px":"61686"},"causation_id":null,"ts_init":1723161600101000000,"ts_event":1723161600001692584,"source":{"instance":"test","plane":"data-plane"},"event_type":"quote","event_id":"01913c6e-aa00-7000-8000-000000000001","schema_version":1}"#;
        assert_eq!(decode::<MarketEvent>(reordered.as_bytes()).unwrap(), quote_envelope());
    }

    #[test]
    fn rejects_with_a_reason_and_never_panics() {
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("not json".into(), "invalid_json"),
            ("{\"schema_version\":1".into(), "invalid_json"),
            ("[1,2,3]".into(), "invalid_envelope"),
            (QUOTE_JSON.replace("\"schema_version\":1", "\"schema_version\":2"), "unknown_schema_version"),
            (QUOTE_JSON.replace("\"ts_init\":1723161600101000000,", ""), "invalid_envelope"),
            (QUOTE_JSON.replace("\"ts_event\":1723161600001692584", "\"ts_event\":\"soon\""), "invalid_envelope"),
            (QUOTE_JSON.replace("\"causation_id\":null", "\"causation_id\":null,\"extra\":1"), "invalid_envelope"),
            (QUOTE_JSON.replace("\"quote\"", "\"ofi_window\""), "unknown_event_type"),
            (QUOTE_JSON.replace("\"61685.99\"", "\"-1\""), "invalid_payload"),
            (QUOTE_JSON.replace("\"61685.99\"", "\"NaN\""), "invalid_payload"),
            (QUOTE_JSON.replace("\"1.25869\"", "\"-0.5\""), "invalid_payload"),
            (QUOTE_JSON.replace("\"61685.99\"", "\"61687\""), "invalid_payload"),
            (QUOTE_JSON.replace("\"BTCUSDT\"", "\"BTC USDT\""), "invalid_payload"),
            (QUOTE_JSON.replace("\"ask_sz\":\"2.44816\"", "\"ask_sz\":\"2.44816\",\"x\":0"), "invalid_payload"),
            (" ".repeat(MAX_RECORD_BYTES + 1), "too_large"),
        ];
        for (input, reason) in cases {
            let err = decode::<MarketEvent>(input.as_bytes()).unwrap_err();
            assert_eq!(err.reason(), reason, "input {:.120}: {err}", input);
        }
    }

    /// Whether the canonical reader took `bytes`; when it did, its value must be the general
    /// path's, down to the scale of every decimal (which `==` does not compare but the encoder
    /// writes).
    fn canonical_agrees<P: Payload + PartialEq + std::fmt::Debug + 'static>(bytes: &[u8]) -> bool {
        let Some(fast) = decode_canonical::<P>(bytes) else { return false };
        let general = decode_general::<P>(bytes);
        assert!(
            matches!(&general, Ok(g) if *g == fast && encode(g) == encode(&fast)),
            "canonical reader accepted {:?} as {fast:?}, general path: {general:?}",
            String::from_utf8_lossy(bytes)
        );
        true
    }

    /// Every record with one byte deleted, replaced or inserted, with bytes that matter to JSON.
    fn one_byte_changes(record: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..record.len() {
            let mut deleted = record.to_vec();
            deleted.remove(i);
            out.push(deleted);
            for &b in b" \"\\,:{}[]0159-.eanx\x01\xff" {
                let mut replaced = record.to_vec();
                replaced[i] = b;
                out.push(replaced);
                let mut inserted = record.to_vec();
                inserted.insert(i, b);
                out.push(inserted);
            }
        }
        out
    }

    const TRADE_JSON: &str = r#"{"schema_version":1,"event_id":"01913c6e-aa00-7000-8000-000000000002","event_type":"trade","source":{"plane":"data-plane","instance":"test"},"ts_event":1723161600001692584,"ts_init":1723161600101000000,"causation_id":null,"payload":{"symbol":"ETHUSDT","price":"2610.50","size":"0.0040","aggressor":"sell"}}"#;

    #[test]
    fn the_canonical_reader_accepts_only_what_the_general_path_accepts_alike() {
        for (record, event_type) in [(QUOTE_JSON, "quote"), (TRADE_JSON, "trade")] {
            let body = record.split_once(",\"payload\":").unwrap().1.strip_suffix('}').unwrap();
            assert!(
                canonical_payload::<MarketEvent>(event_type, body.as_bytes()).is_some(),
                "{event_type} read directly"
            );
            let record = record.as_bytes();
            assert!(canonical_agrees::<MarketEvent>(record), "the encoder's layout takes the canonical path");
            let taken = one_byte_changes(record).iter().filter(|m| canonical_agrees::<MarketEvent>(m)).count();
            assert!(taken > 0, "some changes (digits of a number or a name) stay canonical");
        }
        let trade: Envelope<MarketEvent> = decode(TRADE_JSON.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(encode(&trade)).unwrap(), TRADE_JSON, "trailing zeros are kept");

        let caused = Envelope {
            causation_id: Some(EventId(Uuid::from_u128(9))),
            source: Arc::new(Source { plane: "order-plane".into(), instance: "é".into() }),
            payload: ExecEvent::Report(ExecReport {
                intent_id: IntentId(Uuid::from_u128(7)),
                order_id: "SIM-\"1\"".into(),
                symbol: Symbol::new("BTCUSDT").unwrap(),
                side: Side::Sell,
                status: ExecStatus::Filled,
                reason: None,
                detail: None,
                venue: "sim".into(),
                order_qty: dec!(2),
                exec_id: Some("E1".into()),
                last_px: Some(dec!(61686)),
                last_qty: dec!(2),
                cum_qty: dec!(2),
                avg_px: Some(dec!(61686)),
                leaves_qty: dec!(0),
                commission: dec!(0.1),
                cum_commission: dec!(0.1),
                arrival_mid: dec!(61686),
                slippage_bps: Some(dec!(0.5)),
            }),
            schema_version: SCHEMA_VERSION,
            event_id: EventId(Uuid::from_u128(8)),
            ts_event: UnixNanos(1),
            ts_init: UnixNanos(0),
        };
        let report = encode(&caused);
        assert!(canonical_agrees::<ExecEvent>(&report));
        assert_eq!(decode::<ExecEvent>(&report).unwrap(), caused);
        for changed in one_byte_changes(&report) {
            canonical_agrees::<ExecEvent>(&changed);
        }
    }

    /// serde's bytes of `envelope`.
    fn serde_bytes<P: Payload>(envelope: &Envelope<P>) -> Vec<u8> {
        serde_json::to_vec(envelope).unwrap()
    }

    /// Whether the direct writer took `envelope`; when it did, its bytes must be serde's.
    fn writer_agrees<P: Payload + std::fmt::Debug + 'static>(envelope: &Envelope<P>) -> bool {
        let mut fast = b"kept".to_vec();
        if !encode_canonical(envelope, &mut fast) {
            assert_eq!(fast, b"kept", "a refusal leaves the buffer as it was");
            return false;
        }
        assert_eq!(
            String::from_utf8_lossy(&fast[4..]),
            String::from_utf8_lossy(&serde_bytes(envelope)),
            "direct writer of {envelope:?}"
        );
        true
    }

    #[test]
    fn the_direct_writer_writes_what_serde_writes_or_nothing() {
        for record in [QUOTE_JSON, TRADE_JSON] {
            let envelope: Envelope<MarketEvent> = decode(record.as_bytes()).unwrap();
            assert!(writer_agrees(&envelope), "quotes and trades are written directly");
            // Every variation of the record that still decodes: other digits, scales, names.
            let taken = one_byte_changes(record.as_bytes())
                .iter()
                .filter_map(|changed| decode_general::<MarketEvent>(changed).ok())
                .filter(writer_agrees)
                .count();
            assert!(taken > 0);
        }
        let mut envelope = quote_envelope();
        for (plane, direct) in [("data-plane", true), ("a\"b", false), ("a\\b", false), ("a\nb", false), ("é", true)] {
            envelope.source = Arc::new(Source { plane: plane.into(), instance: "i".into() });
            assert_eq!(writer_agrees(&envelope), direct, "{plane:?}");
        }
        envelope.causation_id = Some(EventId(Uuid::from_u128(u128::MAX)));
        assert!(writer_agrees(&envelope));
        let sizes = [
            (dec!(0), true),
            (dec!(0.00), true),
            (dec!(0.005), true),
            (dec!(1.50), true),
            (dec!(10), true),
            (dec!(0.0000000000000000000000000001), true),
            (dec!(1844674407.3709551615), true),
            (dec!(1844674407.37095516150), false),
            (dec!(999999999999.9999999999999999), false),
        ];
        for (size, direct) in sizes {
            let trade = Trade {
                symbol: Symbol::new("ETHUSDT").unwrap(),
                price: Price::new(dec!(2610.5)).unwrap(),
                size: Quantity::new(size).unwrap(),
                aggressor: Side::Buy,
            };
            let envelope = Envelope { payload: MarketEvent::Trade(trade), ..quote_envelope() };
            assert_eq!(writer_agrees(&envelope), direct, "{size}");
        }
        let depth = Envelope {
            payload: MarketEvent::Depth(DepthUpdate {
                symbol: Symbol::new("BTCUSDT").unwrap(),
                bids: vec![],
                asks: vec![],
            }),
            ..quote_envelope()
        };
        assert!(!writer_agrees(&depth), "other payloads are serde's");
    }

    /// The payload reader's numbers are `Decimal::from_str`'s, value and scale, or left to serde.
    #[test]
    fn the_canonical_decimal_is_from_str_or_nothing() {
        let cases = [
            "0",
            "1",
            "9",
            "10",
            "0.1",
            "0.0",
            "0.000",
            "1.50",
            "61685.99",
            "00",
            "01",
            "01.5",
            ".5",
            "5.",
            "1..2",
            "1.2.3",
            "-1",
            "+1",
            "1e5",
            "1E5",
            "1_000",
            " 1",
            "1 ",
            "",
            "9999999999999999999",
            "99999999999999999999",
            "0.000000000000000001",
            "0.0000000000000000001",
            "1234567890.123456789",
            "1000000000000",
            "1000000000000.1",
            "18446744073709551615",
            "18446744073709551616",
        ];
        for case in cases {
            let quoted = format!("{case}\"");
            let fast = Cursor { bytes: quoted.as_bytes(), pos: 0 }.decimal();
            if let Some(fast) = fast {
                let slow: Decimal = case.parse().unwrap();
                assert_eq!((fast.mantissa(), fast.scale()), (slow.mantissa(), slow.scale()), "{case}");
            }
        }
        let taken = |case: &str| Cursor { bytes: format!("{case}\"").as_bytes(), pos: 0 }.decimal().is_some();
        assert!(taken("61685.99") && taken("0.000") && taken("9999999999999999999"));
        assert!(!taken("01") && !taken("5.") && !taken("1e5") && !taken("99999999999999999999"));
    }

    #[test]
    fn a_record_of_another_topic_is_refused() {
        let err = decode::<ExecEvent>(QUOTE_JSON.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "unknown_event_type");
    }
}
