//! `tracing` setup: text or JSON lines on stderr; the level from `RUST_LOG` when set, else
//! from `log.level`. Pingora's own `log` records are captured too.
//!
//! Lines reach stderr through one buffer ([`Sink`]): `warn` and `error` lines are written
//! at once (with whatever was buffered before them, so the order holds), lines below
//! `warn` — the access log, one per request — are written together, at most
//! [`FLUSH_AFTER`] after the first of them or when [`FLUSH_AT`] bytes are waiting. Under
//! load that is one `write` for hundreds of requests instead of one each; at most the
//! last [`FLUSH_AFTER`] of `info` lines are lost if the process is killed (`SIGKILL`);
//! every normal exit writes them ([`flush`]).
//!
//! Tokens never reach the logs, at any level: the gateway logs only a short keyed-hash
//! prefix of a token, and the libraries underneath, whose debug/trace output dumps whole
//! request headers (`Authorization` included), are capped at `info` whatever the filter says.

use std::io::{IsTerminal, Write};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use tracing_subscriber::filter::Directive;
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Log settings (`log:`).
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub(crate) format: LogFormat,
    /// An `EnvFilter` directive (`info`, `sessiongate=debug`).
    pub(crate) level: String,
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
pub(crate) fn filter(level: &str) -> EnvFilter {
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
    let sink = Sink::global();
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&level))
        .with_writer(SinkWriters(sink))
        .with_ansi(ansi);
    let installed = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // The access log's own formatter writes exactly what this subscriber would, without
    // colours: used only when this subscriber is the one installed and writes no colours.
    if installed.is_ok() && !ansi {
        let _ = ACCESS_FORMAT.set(settings.format);
    }
}

/// The format the access log writes itself in (see [`crate::telemetry::access`]); `None`
/// when the access log goes through `tracing` (no [`init`], colours, or another
/// subscriber installed by an embedder).
pub(crate) fn access_format() -> Option<LogFormat> {
    ACCESS_FORMAT.get().copied()
}

static ACCESS_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// Writes every buffered line now. Call before the process exits.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush();
    }
}

/// Lines below `warn` wait at most this long in the buffer.
pub(crate) const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// … or until this many bytes are waiting.
pub(crate) const FLUSH_AT: usize = 64 * 1024;

static SINK: OnceLock<Sink> = OnceLock::new();

/// The buffer in front of stderr (see the module docs).
pub(crate) struct Sink {
    buf: Mutex<Vec<u8>>,
    /// Signalled when the buffer stops being empty: the flusher thread sleeps until then.
    filled: Condvar,
}

impl Sink {
    /// The process's sink, its flusher thread started on first use.
    pub(crate) fn global() -> &'static Sink {
        let mut started = false;
        let sink = SINK.get_or_init(|| {
            started = true;
            Sink {
                buf: Mutex::new(Vec::with_capacity(FLUSH_AT)),
                filled: Condvar::new(),
            }
        });
        if started {
            // Without the thread, lines below `warn` still go out with the next `warn`
            // line, a full buffer or the flush at exit.
            let _ = std::thread::Builder::new()
                .name("sessiongate log".into())
                .spawn(move || sink.flush_forever());
        }
        sink
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds whole lines, written within [`FLUSH_AFTER`].
    pub(crate) fn append(&self, lines: &[u8]) {
        let mut buf = self.lock();
        let was_empty = buf.is_empty();
        buf.extend_from_slice(lines);
        if buf.len() >= FLUSH_AT {
            write_out(&mut buf);
        } else if was_empty {
            self.filled.notify_one();
        }
    }

    /// Writes whatever is buffered, then `lines`, now.
    fn write_now(&self, lines: &[u8]) {
        let mut buf = self.lock();
        buf.extend_from_slice(lines);
        write_out(&mut buf);
    }

    fn flush(&self) {
        let mut buf = self.lock();
        if !buf.is_empty() {
            write_out(&mut buf);
        }
    }

    fn flush_forever(&self) {
        loop {
            let mut buf = self.lock();
            while buf.is_empty() {
                buf = self.filled.wait(buf).unwrap_or_else(|e| e.into_inner());
            }
            drop(buf);
            std::thread::sleep(FLUSH_AFTER);
            self.flush();
        }
    }
}

/// Writes `buf` to stderr (under the sink's lock, so lines keep their order) and empties
/// it. A failed write is dropped, as `tracing`'s own writer does: logging never fails a
/// request.
fn write_out(buf: &mut Vec<u8>) {
    let _ = std::io::stderr().lock().write_all(buf);
    buf.clear();
    if buf.capacity() > 4 * FLUSH_AT {
        buf.shrink_to(FLUSH_AT);
    }
}

/// `tracing`'s writers: urgent (`warn`, `error`) or buffered, by the event's level.
struct SinkWriters(&'static Sink);

impl<'a> MakeWriter<'a> for SinkWriters {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter {
            sink: self.0,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SinkWriter {
        SinkWriter {
            sink: self.0,
            // Levels compare by verbosity: ERROR < WARN < INFO.
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

struct SinkWriter {
    sink: &'static Sink,
    urgent: bool,
}

impl Write for SinkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        // `tracing` writes each formatted event with one `write_all`: whole lines.
        if self.urgent {
            self.sink.write_now(bytes);
        } else {
            self.sink.append(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A transport error with its causes, e.g. "error sending request: connection refused".
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
