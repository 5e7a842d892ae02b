//! The `data-plane` binary as an operator runs it: exit codes and graceful shutdown.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use test_support::{Broker, free_port, http_get, unique, wait_for};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The binary, run from an empty folder (so no developer `.env` is read) with the shipped config.
fn data_plane(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_data-plane"));
    cmd.current_dir(dir)
        .arg("--config-dir")
        .arg(repo().join("config"))
        .env("LOG_DIR", "")
        .env("REPLAY_PATH", repo().join("data/binance-usdm-btcusdt-2024-08-08.csv"))
        .stdin(Stdio::null());
    cmd
}

#[test]
fn bad_configuration_exits_78_naming_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = data_plane(dir.path())
        .env("KAFKA_TOPIC_PARTITIONS", "zero")
        .env("REPLAY_SPEED", "warp")
        .env("ALGOTRADER__KAFKA__NO_SUCH_KEY", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["kafka.partitions", "data_plane.replay.speed", "kafka.no_such_key"] {
        assert!(stderr.contains(field), "{field} not named in: {stderr}");
    }
}

#[test]
fn an_unwritable_log_folder_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = data_plane(dir.path()).env("LOG_DIR", file.join("logs")).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.dir"));
}

#[test]
fn check_config_accepts_the_shipped_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let out = data_plane(dir.path()).arg("--check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_missing_replay_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = data_plane(dir.path())
        .env("REPLAY_PATH", dir.path().join("nope.csv"))
        .env("DATA_PLANE_PORT", free_port().to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.csv"));
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = data_plane(dir.path())
        .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("KAFKA_TOPIC_PREFIX", unique("bin_"))
        .env("DATA_PLANE_PORT", port.to_string())
        .env("REPLAY_SPEED", "10x")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Mid-replay: paced at 10x, the file takes ~35 s, so records are still flowing when we stop it.
    wait_for(Duration::from_secs(60), "rows published", || {
        let (_, body) = http_get(addr, "/metrics").ok()?;
        let line = body.lines().find(|l| l.starts_with("data_plane_replay_position_rows "))?;
        (line.rsplit(' ').next()?.parse::<f64>().ok()? > 100.0).then_some(())
    });
    assert_eq!(http_get(addr, "/health/ready").unwrap().0, 200);
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = wait_for(Duration::from_secs(20), "exit after SIGTERM", || child.try_wait().unwrap());
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
}
