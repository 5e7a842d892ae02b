//! Test harness shared by the planes' system tests.
//!
//! [`Broker::start`] runs a real Kafka-protocol broker — tansu with in-memory storage — on a free
//! loopback port and stops it when dropped. There is no fallback and no skipping: when tansu is
//! not installed the test fails and says how to install it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A tansu broker owned by one test.
pub struct Broker {
    child: Child,
    addr: SocketAddr,
    log: tempfile::NamedTempFile,
}

/// Where the tansu binary is: `$TANSU_BIN`, then `tansu` on `PATH`, then `~/.cargo/bin/tansu`.
pub fn tansu_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("tansu")).find(|p| p.is_file()));
    on_path.or_else(|| {
        let home = PathBuf::from(std::env::var_os("HOME")?);
        Some(home.join(".cargo/bin/tansu")).filter(|p| p.is_file())
    })
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    /// Starts tansu with in-memory storage and waits until it accepts connections.
    ///
    /// # Panics
    /// When tansu is not installed or does not come up within 30 s.
    pub fn start() -> Self {
        let bin = tansu_binary().unwrap_or_else(|| {
            panic!(
                "tansu (the Kafka-protocol broker the system tests run against) is not installed. \
                 Install it with ./docker/docker-helper.sh deps (or: cargo install --locked tansu \
                 --features dynostore,libsql), or point TANSU_BIN at it."
            )
        });
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = tempfile::Builder::new().prefix("tansu-").suffix(".log").tempfile().unwrap();
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env_remove("STORAGE_ENGINE")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut broker = Self { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&broker.addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!("tansu exited with {status} before listening; its log:\n{}", broker.log_text());
            }
            assert!(Instant::now() < deadline, "tansu did not listen within 30 s; its log:\n{}", broker.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// What the broker printed so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spot sample shipped in `data/` (BTCUSDT and ETHUSDT).
pub const SPOT_SAMPLE: &str = "binance-spot-btcusdt-ethusdt-2024-08-09.csv";

/// Writes the header and the first `rows` rows of the spot sample to `dir/fixture.csv`; returns
/// its path and its lines (header first).
pub fn spot_fixture(dir: &std::path::Path, rows: usize) -> (PathBuf, Vec<String>) {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data").join(SPOT_SAMPLE);
    let text = std::fs::read_to_string(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let lines: Vec<String> = text.lines().take(rows + 1).map(str::to_owned).collect();
    let path = dir.join("fixture.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines)
}

/// A name no other test run uses, for topic prefixes and consumer groups.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("{prefix}{}_{nanos}", std::process::id())
}

/// The value of the sample `name` (with its labels, exactly as exposed) in a Prometheus text
/// body.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A plain HTTP/1.1 GET; returns the status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    http_request(addr, "GET", path, &[], "")
}

/// A plain HTTP/1.1 request with extra headers and a body; returns the status code and body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let extra: String = headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
