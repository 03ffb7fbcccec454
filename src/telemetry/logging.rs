//! `tracing` setup: text or JSON lines on stderr; the level from `RUST_LOG` when set, else
//! from `log.level`. Pingora's own `log` records are captured too.
//!
//! Tokens never reach the logs, at any level: the gateway logs only a short keyed-hash
//! prefix of a token, and the libraries underneath, whose debug/trace output dumps whole
//! request headers (`Authorization` included), are capped at `info` whatever the filter says.

use std::io::IsTerminal;

use tracing_subscriber::filter::Directive;
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Log settings (`log:`).
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive (`info`, `sessiongate=debug`).
    pub level: String,
}

/// Crates whose debug/trace events print request headers verbatim.
const HEADER_DUMPING_CRATES: &[&str] = &[
    "pingora",
    "pingora_core",
    "pingora_proxy",
    "pingora_http",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
];

/// The filter for `level` (a `tracing` filter string), with the header-dumping crates capped.
pub fn filter(level: &str) -> EnvFilter {
    let mut filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    for krate in HEADER_DUMPING_CRATES {
        let directive: Directive = format!("{krate}=info")
            .parse()
            .expect("a crate name with a level is a valid directive");
        filter = filter.add_directive(directive);
    }
    filter
}

/// Installs the global subscriber. Calling it twice is harmless (the second is ignored).
pub fn init(settings: &LogSettings) {
    let level = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| settings.level.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
