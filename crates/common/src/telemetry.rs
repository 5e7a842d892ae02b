//! Logging: `tracing` to stdout and, when a log folder is configured, to a daily file in it.

use std::io::IsTerminal;
use std::path::Path;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Starts logging at `level` (a `log.level` value such as `INFO` or `data_plane=debug,info`), to
/// stdout and to `<dir>/<name>.log.<date>` when `dir` is not empty. Keep the returned guard
/// alive: dropping it flushes the file.
///
/// # Errors
/// The level is not one ([`crate::config::log_filter`]), or the log folder cannot be created or
/// written; the message names `log.level` or `log.dir`.
pub fn init(level: &str, dir: &Path, name: &str) -> Result<Option<WorkerGuard>, String> {
    let filter = crate::config::log_filter(level)
        .and_then(|filter| EnvFilter::try_new(filter).map_err(|e| e.to_string()))
        .map_err(|e| format!("invalid configuration:\n  - log.level: {e}"))?;
    let stdout = tracing_subscriber::fmt::layer().with_target(false).with_ansi(std::io::stdout().is_terminal());
    if dir.as_os_str().is_empty() {
        let _ = tracing_subscriber::registry().with(filter).with(stdout).try_init();
        return Ok(None);
    }
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(format!("{name}.log"))
        .build(dir)
        .map_err(|e| format!("invalid configuration:\n  - log.dir: cannot write logs to {}: {e}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let file = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer);
    let _ = tracing_subscriber::registry().with(filter).with(stdout).with(file).try_init();
    Ok(Some(guard))
}
