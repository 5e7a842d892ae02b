//! Test harness shared by the planes' system tests.
//!
//! [`Broker::shared`] is a real Apache Kafka (one KRaft node, started by `docker/kafka/kafka.sh`)
//! on free loopback ports, shared by the tests of one test binary: they keep apart by topic
//! prefix and group name ([`unique`]). [`KafkaNode`] runs one node of any shape (a cluster
//! member, a node with its state in a given folder) for tools such as the benchmark. There is no
//! fallback and no skipping: when Kafka cannot start the test fails with the broker's log and
//! the command that installs it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The script that installs Kafka and runs a node: the one place that knows how.
pub fn kafka_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docker/kafka/kafka.sh")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What [`KafkaNode::start`] runs: `kafka.sh run`'s options.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's folder (properties, log segments, pid file).
    pub dir: PathBuf,
    /// Where the node's output goes; `None`: `dir/kafka.log`.
    pub log: Option<PathBuf>,
    /// Client listener port.
    pub port: u16,
    /// KRaft controller listener port.
    pub controller_port: u16,
    /// `node.id`.
    pub node_id: u32,
    /// The controller quorum (`1@127.0.0.1:p,...`); `None`: this node alone.
    pub voters: Option<String>,
    /// The cluster id every member shares; `None`: the one stored in `dir`, made on first start.
    pub cluster_id: Option<String>,
    /// Replication factor of topics and internal topics.
    pub replication: u32,
    /// `min.insync.replicas`.
    pub min_isr: u32,
    /// Stop the node and delete `dir` when the process that started it ends, however it ends.
    pub ephemeral: bool,
}

impl NodeSpec {
    /// A single node on free ports with its state in `dir`.
    pub fn single(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            log: None,
            port: free_port(),
            controller_port: free_port(),
            node_id: 1,
            voters: None,
            cluster_id: None,
            replication: 1,
            min_isr: 1,
            ephemeral: false,
        }
    }
}

/// One running Kafka node, stopped (`kill -9`, as a crash would) when dropped.
pub struct KafkaNode {
    child: Child,
    // Held open for an ephemeral node: its closing tells kafka.sh to stop the node.
    stdin: Option<ChildStdin>,
    spec: NodeSpec,
}

impl KafkaNode {
    /// Starts a node and waits until it accepts connections.
    ///
    /// # Errors
    /// When Kafka is not installed, a port is taken, the storage belongs to another cluster, or
    /// the node does not listen within 90 s; the message holds the node's log.
    pub fn start(spec: &NodeSpec) -> Result<Self, String> {
        std::fs::create_dir_all(&spec.dir).map_err(|e| format!("{}: {e}", spec.dir.display()))?;
        // A pid file left by an earlier run names a process that may be anything by now.
        let _ = std::fs::remove_file(spec.dir.join("kafka.pid"));
        let log_path = spec.log.clone().unwrap_or_else(|| spec.dir.join("kafka.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = Command::new("bash");
        cmd.arg(kafka_script()).arg("run").arg("--dir").arg(&spec.dir);
        cmd.args(["--port", &spec.port.to_string(), "--controller-port", &spec.controller_port.to_string()]);
        cmd.args(["--node-id", &spec.node_id.to_string()]);
        cmd.args(["--replication", &spec.replication.to_string(), "--min-isr", &spec.min_isr.to_string()]);
        if let Some(voters) = &spec.voters {
            cmd.args(["--voters", voters]);
        }
        if let Some(id) = &spec.cluster_id {
            cmd.args(["--cluster-id", id]);
        }
        if spec.ephemeral {
            cmd.arg("--ephemeral");
        }
        let stdin = if spec.ephemeral { Stdio::piped() } else { Stdio::null() };
        let stderr = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = cmd
            .stdin(stdin)
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", kafka_script().display()))?;
        let stdin = child.stdin.take();
        let node = Self { child, stdin, spec: NodeSpec { log: Some(log_path), ..spec.clone() } };
        node.wait_listening(Duration::from_secs(90))
    }

    fn wait_listening(mut self, timeout: Duration) -> Result<Self, String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.spec.port));
        let deadline = Instant::now() + timeout;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.failure(&format!("Kafka exited with {status} before listening")));
            }
            if Instant::now() > deadline {
                return Err(self.failure(&format!("Kafka did not listen on {addr} within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(self)
    }

    fn failure(&self, what: &str) -> String {
        let log = self.log_text();
        let hint = if log.contains("is not installed") {
            format!(" Install it with ./docker/docker-helper.sh deps (or {} install).", kafka_script().display())
        } else {
            String::new()
        };
        format!("{what}.{hint} Its log:\n{log}")
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.spec.port)
    }

    /// The Kafka JVM's process id (not the launcher's).
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.spec.dir.join("kafka.pid")).ok()?.trim().parse().ok()
    }

    /// What the node printed so far.
    pub fn log_text(&self) -> String {
        self.spec.log.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default()
    }

    /// Kills the node with SIGKILL (a crash: nothing flushed, no controlled shutdown) and waits
    /// for it to be gone.
    fn kill(&mut self) {
        // Only while the launcher lives: once it is gone, the pid may belong to another process.
        if matches!(self.child.try_wait(), Ok(None))
            && let Some(pid) = self.pid()
        {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }
}

impl Drop for KafkaNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Kafka broker of one test binary.
pub struct Broker {
    node: KafkaNode,
}

impl Broker {
    /// The test binary's broker, started by the first test that asks for it and stopped when the
    /// test process ends. Tests share it through distinct topic prefixes and group names.
    ///
    /// # Panics
    /// When Kafka is not installed or does not start; the message holds its log.
    pub fn shared() -> &'static Self {
        // The outcome, failure included, is kept: a broker that cannot start fails every test
        // of the binary at once instead of being tried again, for 90 s, by each of them.
        static BROKER: OnceLock<Result<Broker, String>> = OnceLock::new();
        let started = BROKER.get_or_init(|| {
            let dir = tempfile::Builder::new().prefix("algotrader-kafka-").tempdir().map_err(|e| e.to_string())?.keep();
            let spec = NodeSpec { ephemeral: true, ..NodeSpec::single(&dir) };
            KafkaNode::start(&spec).map(|node| Self { node })
        });
        started.as_ref().unwrap_or_else(|e| panic!("{e}"))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.node.bootstrap()
    }

    /// What the broker printed so far.
    pub fn log_text(&self) -> String {
        self.node.log_text()
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
