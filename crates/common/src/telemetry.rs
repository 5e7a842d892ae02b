//! Logging: `tracing` to stdout and, when a log folder is configured, to a daily file in it, as
//! text lines or as one JSON object per line (`log.format`).

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogConfig;

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// One output's layer. JSON puts the event's fields beside `timestamp`, `level`, `target` and
/// `message` (not under a `fields` key), so a log shipper indexes `symbol` or `error` directly.
fn layer<W>(json: bool, ansi: bool, target: bool, writer: W) -> BoxedLayer
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    if json { layer.json().flatten_event(true).boxed() } else { layer.with_target(target).with_ansi(ansi).boxed() }
}

/// Starts logging as `log` says: its level (a `log.level` value such as `INFO` or
/// `data_plane=debug,info`) and format, to stdout and to `<dir>/<name>.log.<date>` when `dir` is
/// not empty, keeping `retention_days` of those files. Keep the returned guard alive: dropping
/// it flushes the file.
///
/// # Errors
/// The level is not one ([`crate::config::log_filter`]), or the log folder cannot be created or
/// written; the message names `log.level` or `log.dir`.
pub fn init(log: &LogConfig, name: &str) -> Result<Option<WorkerGuard>, String> {
    let filter = crate::config::log_filter(&log.level)
        .and_then(|filter| EnvFilter::try_new(filter).map_err(|e| e.to_string()))
        .map_err(|e| format!("invalid configuration:\n  - log.level: {e}"))?;
    let json = log.json();
    let mut layers = vec![layer(json, std::io::stdout().is_terminal(), false, std::io::stdout)];
    let mut guard = None;
    if !log.dir.as_os_str().is_empty() {
        let appender = tracing_appender::rolling::RollingFileAppender::builder()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix(format!("{name}.log"))
            .max_log_files(log.retention_days)
            .build(&log.dir)
            .map_err(|e| {
                format!("invalid configuration:\n  - log.dir: cannot write logs to {}: {e}", log.dir.display())
            })?;
        let (writer, file_guard) = tracing_appender::non_blocking(appender);
        layers.push(layer(json, false, true, writer));
        guard = Some(file_guard);
    }
    // Outermost, so one filter decides for both outputs (inside, it would be typed per layer).
    let _ = tracing_subscriber::registry().with(layers).with(filter).try_init();
    Ok(guard)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::{init, layer};
    use crate::config::LogConfig;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_the_fields_at_the_top() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry().with(layer(true, false, true, move || writer.clone()));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(symbol = "BTCUSDT", qty = 3, "Order placed.");
            tracing::warn!(error = "broker gone", "Consumer error; continuing.");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["message"], "Order placed.");
        assert_eq!(lines[0]["symbol"], "BTCUSDT");
        assert_eq!(lines[0]["qty"], 3);
        assert!(lines[0]["timestamp"].is_string(), "{}", lines[0]);
        assert_eq!(lines[1]["error"], "broker gone");
    }

    #[test]
    fn only_the_newest_daily_files_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=5 {
            std::fs::write(dir.path().join(format!("plane.log.2020-01-0{day}")), "old\n").unwrap();
        }
        std::fs::write(dir.path().join("other.log.2020-01-01"), "another plane's\n").unwrap();
        let log = LogConfig { dir: dir.path().to_owned(), retention_days: 2, ..LogConfig::default() };
        let _guard = init(&log, "plane").unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        let ours: Vec<&String> = names.iter().filter(|n| n.starts_with("plane.log")).collect();
        assert_eq!(ours.len(), 2, "today's file and the newest old one: {names:?}");
        assert!(names.contains(&"other.log.2020-01-01".to_owned()), "another plane's files are its own: {names:?}");
    }
}
