//! Every example in docs/events.md is a record the strict decoder accepts, of the family its
//! `event_type` belongs to, and re-encodes to the same JSON.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use common::codec::{decode, encode};
use common::events::{ExecEvent, IntentEvent, MarketEvent, OfiEvent, Payload};

fn check<P: Payload + std::fmt::Debug + 'static>(json: &str) {
    let env = decode::<P>(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(String::from_utf8(encode(&env)).unwrap(), json, "examples are in canonical form");
}

#[test]
fn every_documented_example_decodes() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/events.md")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for block in doc.split("```json\n").skip(1) {
        let json = block.split("\n```").next().unwrap().trim();
        let event_type = json.split("\"event_type\":\"").nth(1).unwrap().split('"').next().unwrap();
        match event_type {
            t if MarketEvent::EVENT_TYPES.contains(&t) => check::<MarketEvent>(json),
            t if OfiEvent::EVENT_TYPES.contains(&t) => check::<OfiEvent>(json),
            t if IntentEvent::EVENT_TYPES.contains(&t) => check::<IntentEvent>(json),
            t if ExecEvent::EVENT_TYPES.contains(&t) => check::<ExecEvent>(json),
            other => panic!("unknown event_type {other}"),
        }
        seen.insert(event_type.to_owned());
    }
    let all: std::collections::BTreeSet<String> =
        [MarketEvent::EVENT_TYPES, OfiEvent::EVENT_TYPES, IntentEvent::EVENT_TYPES, ExecEvent::EVENT_TYPES]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect();
    assert_eq!(seen, all, "one example per event type");
}
