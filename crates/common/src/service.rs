//! What every plane's binary does the same way: load and check the configuration, start logging,
//! start the runtime, install signal handlers, open the HTTP port, run, and map the outcome to
//! an exit code (sysexits.h).

use std::fmt::Display;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::AppConfig;
use crate::kafka::BrokerError;

/// An error that knows its process exit code.
pub trait ExitStatus {
    /// The exit code.
    fn exit_code(&self) -> u8;
}

/// Failures every plane shares.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Kafka failed in a way retries did not fix.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The HTTP port could not be opened.
    #[error("cannot listen on {addr}: {source} (is another {plane} running? set {setting}, or HTTP_BIND)")]
    Bind {
        /// The plane.
        plane: &'static str,
        /// The address and port.
        addr: SocketAddr,
        /// The environment name that moves it.
        setting: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Metrics could not be registered (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The runtime or signal handlers could not be set up.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// An execution venue (IBKR) could not be used.
    #[error("{venue} venue: {message}")]
    Venue {
        /// `ibkr`.
        venue: &'static str,
        /// Why, with the remedy when one is known.
        message: String,
    },
    /// The venue contradicts the configuration (a live account while live trading is off): a
    /// configuration error found once connected.
    #[error("{venue} venue refused: {message}")]
    Refused {
        /// `ibkr`.
        venue: &'static str,
        /// Why, and what would allow it.
        message: String,
    },
}

impl ExitStatus for ServiceError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Broker(_) | Self::Venue { .. } => 69,
            Self::Bind { .. } => 75,
            Self::Refused { .. } => crate::EXIT_CONFIG,
            Self::Metrics(_) | Self::Runtime(_) => 70,
        }
    }
}

/// Where a plane listens: its name, address, port, and the environment name that moves the port.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `data-plane`, …
    pub plane: &'static str,
    /// The interface address (`HTTP_BIND`, [`AppConfig::http_bind`]).
    pub bind: IpAddr,
    /// The port.
    pub port: u16,
    /// E.g. `DATA_PLANE_PORT`.
    pub setting: &'static str,
}

/// Starts a runtime, installs SIGINT/SIGTERM handling, opens the HTTP port and runs `run` with
/// the listener and the shutdown token.
pub fn serve<E, Fut>(endpoint: Endpoint, run: impl FnOnce(TcpListener, CancellationToken) -> Fut) -> Result<(), E>
where
    Fut: Future<Output = Result<(), E>>,
    E: From<ServiceError>,
{
    let runtime = tokio::runtime::Runtime::new().map_err(|e| E::from(ServiceError::Runtime(e)))?;
    let result = runtime.block_on(async {
        let shutdown = crate::shutdown::on_signal().map_err(|e| E::from(ServiceError::Runtime(e)))?;
        let Endpoint { plane, bind, port, setting } = endpoint;
        let addr = SocketAddr::new(bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| E::from(ServiceError::Bind { plane, addr, setting, source }))?;
        run(listener, shutdown).await
    });
    // A blocking task still waiting on a broker that does not answer (a read at start-up, a
    // metadata request) must not hold the exit: dropping the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// The whole `main` of a plane binary after argument parsing.
pub fn main<E: Display + ExitStatus>(
    plane: &str,
    config_dir: &Path,
    check_config: bool,
    run: impl FnOnce(AppConfig) -> Result<(), E>,
) -> ExitCode {
    let fail = |message: &dyn Display, code: u8| {
        eprintln!("{plane}: {message}");
        ExitCode::from(code)
    };
    let cfg = match crate::config::load(config_dir) {
        Ok(cfg) => cfg,
        Err(e) => return fail(&e, crate::EXIT_CONFIG),
    };
    if check_config {
        println!("{plane}: configuration OK");
        return ExitCode::SUCCESS;
    }
    let _log_guard = match crate::telemetry::init(&cfg.log, plane) {
        Ok(guard) => guard,
        Err(e) => return fail(&e, crate::EXIT_CONFIG),
    };
    match run(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{plane} stopped.");
            fail(&e, e.exit_code())
        }
    }
}
