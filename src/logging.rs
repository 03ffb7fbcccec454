//! `tracing` setup: text or JSON lines on stderr; the level from `RUST_LOG` when set, else
//! from `log.level`. Pingora's own `log` records are captured too.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::file::LogFormat;
use crate::config::LogSettings;

/// Installs the global subscriber. Calling it twice is harmless (the second is ignored).
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
