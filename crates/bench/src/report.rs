//! The machine a run was measured on, and the summary files.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use serde_json::{Value, json};

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn cpuinfo_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|l| l.strip_prefix("model name")).map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
}

fn mem_total_gib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 = text.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.split_whitespace().next()?.parse().ok()?;
    Some((kib / 1024.0 / 1024.0 * 10.0).round() / 10.0)
}

/// Date, machine, toolchain and commit of this run.
pub fn environment(command: &str) -> Value {
    json!({
        "date_utc": command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "command": command,
        "git_commit": command_output("git", &["rev-parse", "--short", "HEAD"]),
        "cpus": std::thread::available_parallelism().map(std::num::NonZero::get).ok(),
        "cpu_model": cpuinfo_model(),
        "memory_gib": mem_total_gib(),
        "kernel": command_output("uname", &["-sr"]),
        "rustc": command_output("rustc", &["--version"]),
        "broker": command_output("bash", &[&test_support::kafka_script().to_string_lossy(), "version"])
            .map(|v| format!("Apache Kafka {v}")),
        "load_average_at_start": std::fs::read_to_string("/proc/loadavg").ok().map(|s| s.trim().to_owned()),
    })
}

/// Writes `summary` as pretty JSON to `path` (creating its folder).
pub fn write_json(path: &Path, summary: &Value) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(summary)? + "\n")?;
    Ok(())
}
