//! SIGINT/SIGTERM → a cancellation token. The first signal asks for a graceful stop; a second one
//! exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Exit code after a second signal (128 + SIGINT).
pub const EXIT_FORCED: i32 = 130;

/// Returns a token cancelled by the first SIGINT or SIGTERM. Must be called inside a runtime.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let token = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let trigger = token.clone();
    tokio::spawn(async move {
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("Shutdown requested; finishing in-flight work (signal again to exit now).");
        trigger.cancel();
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::warn!("Second signal; exiting without draining.");
        std::process::exit(EXIT_FORCED);
    });
    Ok(token)
}
