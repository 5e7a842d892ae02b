//! The processes under test: a Kafka broker and the three plane binaries, each started with its
//! own log file under the run folder, free ports and a topic prefix per phase; their metrics are
//! scraped over HTTP and their memory and CPU read from `/proc`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The benchmark's Apache Kafka: one KRaft node with its log under `run_dir/state/kafka`, as
/// `docker-helper.sh start` runs it; stopped when dropped.
pub struct Broker {
    node: test_support::KafkaNode,
}

impl Broker {
    /// Starts Kafka on free ports with its state under `run_dir/state` and its output in
    /// `run_dir/logs/broker.out`.
    pub fn start(run_dir: &Path) -> Result<Self> {
        let spec = test_support::NodeSpec {
            log: Some(run_dir.join("logs/broker.out")),
            ..test_support::NodeSpec::single(&run_dir.join("state/kafka"))
        };
        std::fs::create_dir_all(run_dir.join("logs"))?;
        let node = test_support::KafkaNode::start(&spec).map_err(anyhow::Error::msg)?;
        Ok(Self { node })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.node.bootstrap()
    }

    /// The broker's process id (the JVM's).
    pub fn pid(&self) -> Result<u32> {
        self.node.pid().context("Kafka wrote no pid file")
    }
}

/// One plane process. Stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Plane {
    /// `data-plane`, `strategy-plane` or `order-plane`.
    pub name: &'static str,
    child: Child,
    port: u16,
}

/// The environment variable that sets each plane's HTTP port.
fn port_var(name: &str) -> &'static str {
    match name {
        "data-plane" => "DATA_PLANE_PORT",
        "strategy-plane" => "STRATEGY_PLANE_PORT",
        _ => "ORDER_PLANE_PORT",
    }
}

impl Plane {
    /// Starts the release binary `name` (found next to this one) from the repository root, so
    /// it reads `config/default.toml` like the native stack does; `env` adds phase settings.
    pub fn start(name: &'static str, root: &Path, log_dir: &Path, env: &[(&str, String)]) -> Result<Self> {
        let bin = std::env::current_exe()?.with_file_name(name);
        if !bin.is_file() {
            bail!("{} is missing: build it with cargo build --release -p {name}", bin.display());
        }
        let port = test_support::free_port();
        let log = std::fs::File::create(log_dir.join(format!("{name}.out")))?;
        let mut cmd = Command::new(&bin);
        cmd.current_dir(root)
            .env("LOG_DIR", "")
            .env("INSTANCE_ID", "bench")
            // Tick-to-intent needs intents: the shipped fees exceed every forecast of the samples.
            .env("COST_AVERSION", "0")
            .env(port_var(name), port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Self { name, child, port })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited with {status}; see its log in the run folder", self.name);
        }
        Ok(())
    }

    /// The plane's `/metrics`, parsed (`name{labels}` → value); empty when it does not answer.
    pub fn metrics(&self) -> Metrics {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        match test_support::http_get(addr, "/metrics") {
            Ok((200, body)) => Metrics::parse(&body),
            _ => Metrics::default(),
        }
    }

    /// Whether `/health/ready` answers 200.
    pub fn ready(&self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        matches!(test_support::http_get(addr, "/health/ready"), Ok((200, _)))
    }

    /// Sends SIGTERM and waits up to 20 s, then kills.
    pub fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        // A plane the backlog phase froze handles the SIGTERM only once it runs again.
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Samples of one Prometheus text exposition.
#[derive(Debug, Default, Clone)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    fn parse(body: &str) -> Self {
        let map = body
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' '))
            .filter_map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
            .collect();
        Self(map)
    }

    /// The sum over every series of `name` whose labels contain `label` (e.g. `topic="x"`).
    pub fn get(&self, name: &str, label: Option<&str>) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
            .filter(|(k, _)| label.is_none_or(|l| k.contains(l)))
            .map(|(_, v)| v)
            .sum()
    }
}

/// Memory and CPU of one process, from `/proc/<pid>/status` and `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// Resident set now, KiB.
    pub rss_kib: u64,
    /// Peak resident set, KiB.
    pub hwm_kib: u64,
    /// User + system CPU time, clock ticks.
    pub cpu_ticks: u64,
}

impl ProcSample {
    /// Reads the process `pid`; `None` once it is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Some(Self { rss_kib: field("VmRSS:"), hwm_kib: field("VmHWM:"), cpu_ticks: ticks(11) + ticks(12) })
    }
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// CPU and memory of one process over a measured interval.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    first: Option<(Instant, ProcSample)>,
    last: Option<(Instant, ProcSample)>,
    /// Resident set, KiB, with the seconds since the interval's first sample.
    rss: Vec<(f64, u64)>,
}

/// How the resident set moved over the second half of an interval: a least-squares line through
/// the samples, so the transient peaks of buffering weigh little. Growth that is state kept per
/// event continues through the second half at a steady slope; an allocator's or a buffer's
/// warm-up is over by then.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RssTrend {
    /// Length of the second half, seconds.
    pub seconds: f64,
    /// The fitted resident set where the second half starts, MiB.
    pub start_mib: f64,
    /// The fitted resident set at the end, MiB.
    pub end_mib: f64,
    /// Slope of the fit, MiB per minute.
    pub mib_per_minute: f64,
}

impl Usage {
    /// Adds a sample taken now.
    pub fn sample(&mut self, pid: u32) {
        if let Some(s) = ProcSample::read(pid) {
            let now = Instant::now();
            let (t0, _) = *self.first.get_or_insert((now, s));
            self.last = Some((now, s));
            self.rss.push(((now - t0).as_secs_f64(), s.rss_kib));
        }
    }

    /// Forgets the samples so far (the interval starts now).
    pub fn restart(&mut self) {
        *self = Self::default();
    }

    /// Peak resident set over the process's life, MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.last.map_or(0.0, |(_, s)| s.hwm_kib as f64 / 1024.0)
    }

    /// The resident set at the last sample, MiB.
    pub fn last_rss_mib(&self) -> f64 {
        self.last.map_or(0.0, |(_, s)| s.rss_kib as f64 / 1024.0)
    }

    /// Median resident set over the interval, MiB.
    pub fn median_rss_mib(&self) -> f64 {
        let mut v: Vec<u64> = self.rss.iter().map(|(_, k)| *k).collect();
        v.sort_unstable();
        v.get(v.len() / 2).map_or(0.0, |k| *k as f64 / 1024.0)
    }

    /// The resident set's trend over the second half of the interval; `None` with fewer than
    /// ten samples there.
    pub fn rss_trend(&self) -> Option<RssTrend> {
        rss_trend(&self.rss)
    }

    /// Mean CPU over the interval, percent of one core.
    pub fn cpu_percent(&self, ticks_per_s: u64) -> f64 {
        match (self.first, self.last) {
            (Some((t0, a)), Some((t1, b))) if t1 > t0 => {
                let cpu = (b.cpu_ticks - a.cpu_ticks) as f64 / ticks_per_s as f64;
                100.0 * cpu / (t1 - t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

fn rss_trend(samples: &[(f64, u64)]) -> Option<RssTrend> {
    let end = samples.last()?.0;
    let half: Vec<(f64, f64)> =
        samples.iter().filter(|(t, _)| *t >= end / 2.0).map(|&(t, kib)| (t, kib as f64 / 1024.0)).collect();
    if half.len() < 10 {
        return None;
    }
    let n = half.len() as f64;
    let (mt, mr) = (half.iter().map(|p| p.0).sum::<f64>() / n, half.iter().map(|p| p.1).sum::<f64>() / n);
    let var = half.iter().map(|p| (p.0 - mt).powi(2)).sum::<f64>();
    if var <= 0.0 {
        return None;
    }
    let slope = half.iter().map(|p| (p.0 - mt) * (p.1 - mr)).sum::<f64>() / var;
    let start = half[0].0;
    Some(RssTrend {
        seconds: end - start,
        start_mib: mr + slope * (start - mt),
        end_mib: mr + slope * (end - mt),
        mib_per_minute: slope * 60.0,
    })
}

/// The repository root (where `config/` and `data/` are).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trend_fits_the_second_half_only() {
        // 20 s: a warm-up from 10 to 30 MiB over the first 5 s, then 1 MiB per minute.
        let samples: Vec<(f64, u64)> = (0..=200)
            .map(|i| {
                let t = f64::from(i) * 0.1;
                let mib = if t < 5.0 { 10.0 + 4.0 * t } else { 30.0 + (t - 5.0) / 60.0 };
                (t, (mib * 1024.0).round() as u64)
            })
            .collect();
        let trend = rss_trend(&samples).unwrap();
        assert!((trend.mib_per_minute - 1.0).abs() < 0.01, "{trend:?}");
        assert!((trend.seconds - 10.0).abs() < 1e-9);
        assert!((trend.start_mib - (30.0 + 5.0 / 60.0)).abs() < 0.01, "{trend:?}");
        assert!(rss_trend(&samples[..15]).is_none(), "too few samples");
    }
}
