//! Any replay file in Parquet: the reader must turn every row into a row or a named row error,
//! never panicking, and the Data Plane's core (quality checks, OFI) must take whatever rows come
//! out.
//!
//! The parquet crate can panic on corrupt data, and the reader catches those panics by design
//! (a bad row group becomes a row error). libFuzzer's panic hook would abort on them before they
//! are caught, so the default hook is put back: a panic the reader does not catch still ends the
//! run as a crash, caught by the fuzz harness around each input.
#![no_main]

use std::sync::{Arc, Once};

use common::clock::ManualClock;
use common::config::DataPlaneConfig;
use common::events::Source;
use common::types::UnixNanos;
use data_plane::core::DataCore;
use data_plane::source::Replay;
use libfuzzer_sys::fuzz_target;

static HOOK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(|| drop(std::panic::take_hook()));
    let path = std::env::temp_dir().join(format!("algotrader-fuzz-{}.parquet", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
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
