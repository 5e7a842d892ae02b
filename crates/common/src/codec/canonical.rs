//! The fast paths of [`super::encode`] and [`super::decode`]: the exact layout the encoder writes,
//! written and read directly; anything else goes to serde.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;

use super::{WireSource, shared_source};
use crate::events::{Envelope, MarketEvent, Payload, Quote, SCHEMA_VERSION, Trade};
use crate::types::{EventId, Price, Quantity, Side, Symbol, UnixNanos};

/// Writes a quote or a trade (most of what the Data Plane publishes) directly, byte for byte as
/// serde writes it, when none of its strings needs an escape and its decimals are non-negative
/// and fit in 64 bits; answers `false` with `out` unchanged for anything else, which serde then
/// writes.
pub(super) fn encode_canonical<P: Payload + 'static>(envelope: &Envelope<P>, out: &mut Vec<u8>) -> bool {
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

/// no escapes in the envelope's strings), or answers `None` for anything else.
///
/// Nearly every record a consumer reads is in this layout, and reading it directly saves the
/// general path's key matching and its extra pass over the payload (kept as raw JSON until
/// `event_type` is known). It accepts only a subset of what [`decode_general`](super::decode_general) accepts and
/// builds the same values; on any doubt, including a payload that does not parse, it gives up
/// and [`decode`](super::decode) asks the general path, so what is accepted and every error's reason are the
/// general path's.
pub(super) fn decode_canonical<P: Payload + 'static>(bytes: &[u8]) -> Option<Envelope<P>> {
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
pub(super) fn canonical_payload<P: 'static>(event_type: &str, body: &[u8]) -> Option<P> {
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
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
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
    pub(super) fn decimal(&mut self) -> Option<Decimal> {
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
