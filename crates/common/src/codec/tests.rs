use super::canonical::{Cursor, canonical_payload};
use super::*;
use crate::events::*;
use crate::types::*;
use rust_decimal::{Decimal, dec};
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
            venue_mid: None,
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

/// One well-formed report with quantities of 10^20 made both consumer planes exit 101
/// (`Multiplication overflowed`) live and at every restart after, since the ledger is kept
/// forever. Every decimal on every topic is bounded by the contract, so the decoder refuses it.
#[test]
fn a_decimal_beyond_the_contract_bound_is_refused_on_every_topic() {
    let report = r#"{"schema_version":1,"event_id":"01913c6e-aa00-7000-8000-000000000001","event_type":"exec_report","source":{"plane":"order-plane","instance":"t"},"ts_event":1723161600001692584,"ts_init":1723161600101000000,"causation_id":null,"payload":{"intent_id":"01913c6e-aa00-7000-8000-000000000002","order_id":"SIM-1","symbol":"BTCUSDT","side":"buy","status":"filled","reason":null,"detail":null,"venue":"simulated","order_qty":"1","exec_id":"SIM-1-1","last_px":"61686","last_qty":"1","cum_qty":"1","avg_px":"61686","leaves_qty":"0","commission":"0.1","cum_commission":"0.1","arrival_mid":"61686","slippage_bps":"0"}}"#;
    assert!(decode::<ExecEvent>(report.as_bytes()).is_ok(), "the valid report");
    let huge = "\"100000000000000000000\"";
    for field in ["order_qty", "last_px", "last_qty", "cum_qty", "avg_px", "commission", "arrival_mid", "slippage_bps"]
    {
        let start = report.find(&format!("\"{field}\":")).unwrap() + field.len() + 3;
        let end = start + report[start..].find([',', '}']).unwrap();
        let bad = format!("{}{huge}{}", &report[..start], &report[end..]);
        let err = decode::<ExecEvent>(bad.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "invalid_payload", "{field}: {err}");
    }
    let at_bound = report.replace("\"last_qty\":\"1\"", "\"last_qty\":\"1000000000000\"");
    assert!(decode::<ExecEvent>(at_bound.as_bytes()).is_ok(), "10^12 itself is inside the bound");

    let intent = r#"{"schema_version":1,"event_id":"01913c6e-aa00-7000-8000-000000000001","event_type":"order_intent","source":{"plane":"strategy-plane","instance":"t"},"ts_event":1723161600001692584,"ts_init":1723161600101000000,"causation_id":null,"payload":{"intent_id":"01913c6e-aa00-7000-8000-000000000002","symbol":"BTCUSDT","side":"buy","quantity":"1","order_type":"market","limit_price":null,"time_in_force":"ioc","arrival_mid":"61686","expected_cost_bps":"1","signals":[]}}"#;
    assert!(decode::<IntentEvent>(intent.as_bytes()).is_ok(), "the valid intent");
    let bad = intent.replace("\"arrival_mid\":\"61686\"", &format!("\"arrival_mid\":{huge}"));
    assert_eq!(decode::<IntentEvent>(bad.as_bytes()).unwrap_err().reason(), "invalid_payload");

    let window = r#"{"schema_version":1,"event_id":"01913c6e-aa00-7000-8000-000000000001","event_type":"ofi_window","source":{"plane":"data-plane","instance":"t"},"ts_event":1723161601000000000,"ts_init":1723161601000000000,"causation_id":null,"payload":{"symbol":"BTCUSDT","window_start":1723161600000000000,"window_end":1723161601000000000,"ofi":"1.5","n_quotes":3,"n_trades":1,"mid_open":"61686","mid_close":"61687","mid_change":"1","mean_depth":"2","mean_spread":"0.01","ofi_normalized":"0.75","trade_imbalance":"0.1","mlofi":null,"data_gap":false}}"#;
    assert!(decode::<OfiEvent>(window.as_bytes()).is_ok(), "the valid window");
    let bad = window.replace("\"ofi\":\"1.5\"", &format!("\"ofi\":{huge}"));
    assert_eq!(decode::<OfiEvent>(bad.as_bytes()).unwrap_err().reason(), "invalid_payload");
    let bad = window.replace("\"mlofi\":null", &format!("\"mlofi\":[\"1\",{huge}]"));
    assert_eq!(decode::<OfiEvent>(bad.as_bytes()).unwrap_err().reason(), "invalid_payload");
    let bad = window.replace("\"mid_close\":\"61687\"", "\"mid_close\":\"10000000000000\"");
    assert_eq!(decode::<OfiEvent>(bad.as_bytes()).unwrap_err().reason(), "invalid_payload", "a price past 10^12");
    // Sums of sizes over a window may pass 10^12 (many large quotes), up to 10^18.
    let big_sum = window.replace("\"ofi\":\"1.5\"", "\"ofi\":\"1000000000000000000\"");
    assert!(decode::<OfiEvent>(big_sum.as_bytes()).is_ok());
    assert_eq!(crate::events::MAX_WINDOW_SUM, dec!(1000000000000000000));
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
        assert!(canonical_payload::<MarketEvent>(event_type, body.as_bytes()).is_some(), "{event_type} read directly");
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
            venue_mid: None,
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
