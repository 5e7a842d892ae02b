//! Any replay file: the CSV reader must turn every line into a row or a named row error, and the
//! Data Plane's core (quality checks, OFI) must take whatever rows come out, never panicking.
#![no_main]

use std::sync::Arc;

use common::clock::ManualClock;
use common::config::DataPlaneConfig;
use common::events::Source;
use common::types::UnixNanos;
use data_plane::core::DataCore;
use data_plane::source::Replay;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("algotrader-fuzz-{}.csv", std::process::id()));
    let mut text = b"ts_event_ns,symbol,kind,bid_px,bid_sz,ask_px,ask_sz,price,size,aggressor\n".to_vec();
    text.extend_from_slice(data);
    std::fs::write(&path, &text).expect("temp file");
    let Ok(replay) = Replay::open(&path, 2) else { return };
    let source = Arc::new(Source { plane: "data-plane".into(), instance: "fuzz".into() });
    let mut core = DataCore::new(&DataPlaneConfig::default(), "fuzz", source, ManualClock::new(UnixNanos(1)));
    let mut out = Vec::new();
    for item in replay.flatten() {
        core.process(item, &mut out);
        out.clear();
    }
    core.finish(&mut out);
});
