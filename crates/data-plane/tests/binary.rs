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

/// A replay file that stops answering, as a hung network file system does: the watchdog makes
/// the plane not ready and it exits 66 naming the file, rather than staying up, ready and
/// publishing nothing.
///
/// The file is a FIFO whose writer sends rows and then goes silent while keeping it open, so the
/// reader blocks in `read`. The plane opens the file twice (`Replay::open` to read it, then
/// `run::stream_name` to hash its first 64 KiB); both opens share the one pipe, so the writer
/// sends far more than 64 KiB: the hash takes its 64 KiB and returns (had it been left waiting
/// for the end of the file, start-up would have blocked there, before the watchdog exists), and
/// the reader gets the rest. Where the hash's share was cut out, a row may be malformed; the
/// plane counts it and reads on.
#[test]
fn a_replay_file_that_stops_answering_stops_the_plane_with_66() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    // Header and rows: more than the reader's first read (its buffer is 1 MiB) and the hash's
    // 64 KiB together, so each open gets data however the reads interleave.
    let (fifo, done_tx) = silent_fifo(dir.path(), 3 << 19);

    let port = free_port();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = data_plane(dir.path())
        .env("REPLAY_PATH", &fifo)
        .env("REPLAY_SPEED", "max")
        .env("ALGOTRADER__DATA_PLANE__REPLAY__STALL_TIMEOUT_S", "5")
        .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
        .env("KAFKA_TOPIC_PREFIX", unique("stall_"))
        .env("DATA_PLANE_PORT", port.to_string())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Ready while the reader is silent (the watchdog gives it 5 s), then stopped by the watchdog.
    let mut seen_ready = false;
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(150) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!(
                "still running after 150 s with the replay file silent (ready seen: {seen_ready}):\n{}",
                std::fs::read_to_string(&stdout).unwrap()
            );
        }
        seen_ready |= http_get(addr, "/health/ready").is_ok_and(|(code, _)| code == 200);
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = done_tx.send(());
    let (stdout, stderr) = (std::fs::read_to_string(&stdout).unwrap(), std::fs::read_to_string(&stderr).unwrap());
    assert_eq!(status.code(), Some(66), "{stderr}\n{stdout}");
    assert!(seen_ready, "the plane was never ready before the stall:\n{stdout}");
    let stalled = stdout.lines().find(|l| l.contains("Replay reader stalled")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(stalled.contains("stuck.csv") && stalled.contains("not ready"), "{stalled}");
    // It stalled mid-file, after rows, as a file system that stops answering does.
    let rows: u64 = stalled.split("rows=").nth(1).and_then(|r| r.split(' ').next()?.parse().ok()).unwrap();
    assert!(rows > 1000, "{stalled}");
    assert!(stderr.contains("stuck.csv") && stderr.contains("made no progress"), "{stderr}");
}

/// A FIFO `stuck.csv` in `dir` whose writer sends the sample's header and rows, at least `bytes`
/// of them, and then goes silent while keeping it open (as a hung network file system does); the
/// sender ends the writer.
fn silent_fifo(dir: &Path, bytes: usize) -> (PathBuf, std::sync::mpsc::Sender<()>) {
    use std::io::Write;
    let fifo = dir.join("stuck.csv");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let sample = std::fs::read_to_string(repo().join("data/binance-usdm-btcusdt-2024-08-08.csv")).unwrap();
    let mut data = String::new();
    for line in sample.lines() {
        data.push_str(line);
        data.push('\n');
        if data.len() > bytes {
            break;
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let writer_path = fifo.clone();
    // Not joined: should the plane never open the FIFO, the writer stays blocked in `open`.
    std::thread::spawn(move || {
        // Opening blocks until the plane opens the other end; the write blocks while the pipe is
        // full, until the plane reads on.
        let mut w = std::fs::OpenOptions::new().write(true).open(writer_path).unwrap();
        let _ = w.write_all(data.as_bytes());
        // Silent but open: a read blocks instead of seeing the end of the file.
        let _ = done_rx.recv_timeout(Duration::from_secs(600));
    });
    (fifo, done_tx)
}

/// A replay file that stops answering while the plane starts (here in the read of its first
/// 64 KiB that names the replay's stream): the plane exits 66 naming it within the stall limit,
/// rather than staying not ready for good.
#[test]
fn a_replay_file_that_hangs_at_start_up_stops_the_plane_with_66() {
    let dir = tempfile::tempdir().unwrap();
    // A few rows: the reader's open takes them all, and the stream's 64 KiB read then waits.
    let (fifo, done_tx) = silent_fifo(dir.path(), 1_000);
    let started = std::time::Instant::now();
    let mut child = data_plane(dir.path())
        .env("REPLAY_PATH", &fifo)
        .env("ALGOTRADER__DATA_PLANE__REPLAY__STALL_TIMEOUT_S", "5")
        .env("DATA_PLANE_PORT", free_port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(Duration::from_secs(120), "exit while the replay file hangs", || child.try_wait().unwrap());
    let _ = done_tx.send(());
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(status.code(), Some(66), "{stderr}\n{stdout}");
    assert!(started.elapsed() >= Duration::from_secs(5), "not before the stall limit");
    assert!(stdout.contains("did not answer while being opened") && stdout.contains("stuck.csv"), "{stdout}");
    assert!(stderr.contains("stuck.csv") && stderr.contains("made no progress"), "{stderr}");
}
