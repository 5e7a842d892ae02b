//! Peak memory of replaying hostile CSV rows: a 50 MB field and a 50 MB line of commas, each
//! between two good rows. Prints the process's peak resident memory (Linux `VmHWM`) before and
//! after reading each file, and what the reader reported.
//!
//! `cargo run -p data-plane --example hostile_csv` (memory does not depend on the profile; add
//! `--release` for speed).

use std::io::Write;
use std::path::Path;

use data_plane::source::Replay;

const HEADER: &str = "ts_event_ns,symbol,kind,bid_px,bid_sz,ask_px,ask_sz,price,size,aggressor\n";
const GOOD: &str = "1000,AAA,quote,1,1,2,1,,,\n";
const MIB: usize = 1 << 20;

fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn write(path: &Path, prefix: &str, byte: u8, suffix: &str) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    write!(f, "{HEADER}{GOOD}{prefix}")?;
    let chunk = vec![byte; MIB];
    for _ in 0..50 {
        f.write_all(&chunk)?;
    }
    write!(f, "{suffix}\n{GOOD}")?;
    f.flush()
}

fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cases = [("field", "1000,AAA,quote,", b'9', ",1,2,1,,,"), ("commas", "", b',', "")];
    for (name, prefix, byte, suffix) in cases {
        let path = dir.path().join(format!("{name}.csv"));
        write(&path, prefix, byte, suffix)?;
        let before = peak_kib();
        let (mut good, mut bad) = (0, Vec::new());
        for item in Replay::open(&path, 1)? {
            match item {
                Ok(_) => good += 1,
                Err(e) => bad.push(format!("line {}: {}", e.line, e.reason)),
            }
        }
        let after = peak_kib();
        println!(
            "50 MB {name:6}: peak RSS {:.1} MiB before, {:.1} MiB after (+{:.1} MiB); {good} good rows; {bad:?}",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / 1024.0
        );
    }
    Ok(())
}
