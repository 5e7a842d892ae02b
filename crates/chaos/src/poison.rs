//! Poison records: what a buggy or hostile producer could write to each topic.
//!
//! Each topic gets, in rotation: bytes that are not JSON, JSON of the wrong shape, an envelope of
//! an unknown schema version, an oversized record, NaN / negative / zero quantities, an event for
//! an unknown symbol (valid, so it is counted, not decoded away), and exact copies of real records
//! (duplicated event ids). Records of the wrong shape are built from real ones, so they are wrong
//! in one field at a time. Only what the broker acknowledged counts as written: Kafka refuses an
//! oversized record (over its `message.max.bytes`, 1 MiB by default), and that refusal is counted
//! apart.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use common::codec;
use common::config::AppConfig;
use common::events::{ExecEvent, IntentEvent, MarketEvent, OfiEvent};
use common::kafka;
use common::topics;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};
use serde_json::{Value, json};

/// `source.plane` of the valid poison records (`unknown_symbol`).
pub const POISON_PLANE: &str = "chaos";

/// The kinds of poison, in rotation; every 250th record is `oversized` instead (few, because they
/// cost the broker real storage).
pub const KINDS: [&str; 8] = [
    "not_json",
    "truncated_json",
    "wrong_shape",
    "unknown_schema_version",
    "nan_quantity",
    "negative_quantity",
    "unknown_symbol",
    "duplicate",
];

/// Whether a poison kind must be refused by the decoder (the rest decode, and are dropped or
/// refused further on: unknown symbols are counted, duplicates dropped, bad quantities refused).
pub fn undecodable(kind: &str) -> bool {
    !matches!(kind, "unknown_symbol" | "duplicate")
}

/// The `n`-th poison record for a topic whose real records include `sample` (a decoded JSON
/// envelope), or `None` when this kind needs a sample and there is none.
pub fn record(kind: &str, n: usize, sample: Option<&Value>) -> Option<Vec<u8>> {
    let mutate = |f: &dyn Fn(&mut Value)| {
        let mut v = sample?.clone();
        f(&mut v);
        serde_json::to_vec(&v).ok()
    };
    match kind {
        "not_json" => Some(vec![0xff, 0xfe, b'{', 0x00, (n % 251) as u8]),
        "truncated_json" => Some(format!(r#"{{"schema_version":1,"event_id":"{n}"#).into_bytes()),
        "wrong_shape" => {
            Some(if n.is_multiple_of(2) { b"[1,2,3]".to_vec() } else { json!({"hello": n}).to_string().into_bytes() })
        }
        "unknown_schema_version" => mutate(&|v| v["schema_version"] = json!(99)),
        // Past the decoder's limit (1 MiB), under the poison producer's.
        "oversized" => Some(json!({"schema_version": 1, "padding": "x".repeat(1_200_000)}).to_string().into_bytes()),
        "nan_quantity" => mutate(&|v| set_quantity(v, json!("NaN"))),
        "negative_quantity" => mutate(&|v| set_quantity(v, json!(if n.is_multiple_of(2) { "-1" } else { "0" }))),
        "unknown_symbol" => mutate(&|v| {
            v["event_id"] = json!(uuid::Uuid::now_v7().to_string());
            // Marked, so the checker can tell the suite's own valid records from the planes'.
            v["source"]["plane"] = json!(POISON_PLANE);
            v["payload"]["symbol"] = json!("ZZZCHAOS");
            if v["payload"].get("intent_id").is_some() {
                v["payload"]["intent_id"] = json!(uuid::Uuid::now_v7().to_string());
            }
        }),
        "duplicate" => sample.and_then(|v| serde_json::to_vec(v).ok()),
        _ => None,
    }
}

/// Whether the topic's consumers decode `bytes` (a zero size, say, is a valid empty book side).
pub fn decodes(topic: &str, bytes: &[u8]) -> bool {
    match topic {
        topics::MARKET_EVENTS => codec::decode::<MarketEvent>(bytes).is_ok(),
        topics::OFI_EVENTS => codec::decode::<OfiEvent>(bytes).is_ok(),
        topics::ORDER_INTENTS => codec::decode::<IntentEvent>(bytes).is_ok(),
        _ => codec::decode::<ExecEvent>(bytes).is_ok(),
    }
}

/// Sets the payload's quantity field, whichever its event type has.
fn set_quantity(v: &mut Value, q: Value) {
    let Some(payload) = v.get_mut("payload").and_then(Value::as_object_mut) else { return };
    for field in ["bid_sz", "size", "quantity", "last_qty", "n_quotes"] {
        if let Some(slot) = payload.get_mut(field) {
            *slot = q;
            return;
        }
    }
}

/// What the broker did with one topic's poison records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Acknowledged by the broker: the topic's consumers will meet them.
    pub written: usize,
    /// Of those, the ones the decoder must refuse.
    pub undecodable: usize,
    /// Refused by the broker (too large for it, say).
    pub refused: usize,
}

/// Counts each delivery report under its record's opaque: `topic index * 2 + undecodable`.
#[derive(Default)]
struct Tally(Mutex<Vec<Outcome>>);

impl ClientContext for Tally {}

impl ProducerContext for Tally {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        let mut outcomes = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if outcomes.len() <= opaque / 2 {
            outcomes.resize(opaque / 2 + 1, Outcome::default());
        }
        let o = &mut outcomes[opaque / 2];
        match result {
            Ok(m) if m.offset() >= 0 => {
                o.written += 1;
                o.undecodable += opaque % 2;
            }
            _ => o.refused += 1,
        }
    }
}

/// Writes `per_topic` poison records to every topic; returns, per topic, what the broker took.
pub fn inject(cfg: &AppConfig, per_topic: usize) -> anyhow::Result<Vec<(String, Outcome)>> {
    let producer: ThreadedProducer<Tally> = ClientConfig::new()
        .set("bootstrap.servers", &cfg.kafka.bootstrap_servers)
        .set("message.max.bytes", "4000000")
        .create_with_context(Tally::default())
        .context("creating the poison producer")?;
    let mut names = Vec::new();
    for (index, base) in topics::ALL.into_iter().enumerate() {
        let topic = cfg.kafka.topic(base);
        let samples: Vec<Value> = kafka::read_to_end(&cfg.kafka, &topic, Duration::from_secs(30))
            .with_context(|| format!("reading {topic}"))?
            .iter()
            .filter_map(|r| serde_json::from_slice(&r.payload).ok())
            .collect();
        for i in 0..per_topic {
            let kind = if i.is_multiple_of(250) { "oversized" } else { KINDS[i % KINDS.len()] };
            let sample = (!samples.is_empty()).then(|| &samples[i * 7919 % samples.len()]);
            let Some(bytes) = record(kind, i, sample) else { continue };
            // Keys spread the records over every partition, as real symbols do.
            let key = sample
                .and_then(|v| v["payload"]["symbol"].as_str())
                .map_or_else(|| format!("poison{i}"), str::to_owned);
            let opaque = index * 2 + usize::from(!decodes(base, &bytes));
            let mut rec = BaseRecord::<str, [u8], usize>::with_opaque_to(&topic, opaque).key(&key).payload(&bytes);
            loop {
                match producer.send(rec) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        rec = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
        names.push(topic);
    }
    producer.flush(Duration::from_secs(30)).context("flushing poison records")?;
    let outcomes = producer.context().0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(names.into_iter().enumerate().map(|(i, t)| (t, outcomes.get(i).copied().unwrap_or_default())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUOTE: &str = r#"{"schema_version":1,"event_id":"0191352c-2a41-7c1e-8b0e-0f5e5c1d2a3b","event_type":"quote","source":{"plane":"data-plane","instance":"t"},"ts_event":1723161600001692584,"ts_init":1723161600001692584,"causation_id":null,"payload":{"symbol":"BTCUSDT","bid_px":"61000","bid_sz":"1","ask_px":"61001","ask_sz":"2"}}"#;

    #[test]
    fn each_poison_kind_is_what_it_claims() {
        let sample: Value = serde_json::from_str(QUOTE).unwrap();
        assert!(codec::decode::<MarketEvent>(QUOTE.as_bytes()).is_ok(), "the sample is valid");
        for (n, kind) in KINDS.iter().chain(&["oversized"]).enumerate() {
            // Even n: the negative quantity is -1 (odd n gives 0, a valid empty book side).
            let bytes = record(kind, 2 * n, Some(&sample)).unwrap();
            let decoded = codec::decode::<MarketEvent>(&bytes);
            assert_eq!(decoded.is_err(), undecodable(kind), "{kind}: {decoded:?}");
            assert_eq!(decodes(topics::MARKET_EVENTS, &bytes), decoded.is_ok());
        }
        let odd = codec::decode::<MarketEvent>(&record("unknown_symbol", 0, Some(&sample)).unwrap()).unwrap();
        assert_eq!(odd.payload.symbol().as_str(), "ZZZCHAOS");
    }
}
