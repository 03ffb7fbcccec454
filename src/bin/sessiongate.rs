//! `sessiongate --config FILE [--check]`: validate the config, then run the gateway.
//! `sessiongate --config FILE --upgrade`: take the listeners over from a running instance.
//! `sessiongate --healthcheck URL`: probe a local admin endpoint (container HEALTHCHECK,
//! for images without curl).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: measured faster than glibc malloc for Pingora's per-request allocations on
/// these machines (and jemalloc slower); see BENCHMARKS.md. The `system-allocator`
/// feature leaves it out, for heap profilers that hook malloc (heaptrack).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives the calling thread's free mimalloc pages back to the system (their purge delay
/// passed; mimalloc itself only purges when the thread allocates or frees again).
#[cfg(not(feature = "system-allocator"))]
fn give_back_memory() {
    // SAFETY: mi_collect takes no arguments to trust; it walks the calling thread's heap.
    unsafe { libmimalloc_sys::mi_collect(false) }
}

/// Exit code for an invalid configuration (EX_USAGE, as linkerd and others use).
const EXIT_BAD_CONFIG: u8 = 64;

/// Reverse-proxy authentication gateway: bearer token → identity → trusted identity headers.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Path of the YAML configuration file.
    #[arg(
        short,
        long,
        env = "SESSIONGATE_CONFIG",
        required_unless_present = "healthcheck"
    )]
    config: Option<PathBuf>,
    /// Validate the configuration and exit: 0 when valid, 64 with the error otherwise.
    #[arg(long)]
    check: bool,
    /// GET this plain-HTTP URL (e.g. http://127.0.0.1:9090/healthz) and exit 0 on a 200.
    #[arg(long, value_name = "URL", conflicts_with = "check")]
    healthcheck: Option<String>,
    /// Zero-downtime upgrade: take over the listening sockets of the running instance,
    /// which hands them over when it receives SIGQUIT (both must use the same
    /// `upgrade_sock`).
    #[arg(short = 'u', long, conflicts_with_all = ["check", "healthcheck"])]
    upgrade: bool,
    /// Also reload when the config file's content changes, checked every SECONDS
    /// (besides SIGHUP and POST /admin/reload). 0 or absent: no watch.
    #[arg(long, value_name = "SECONDS", conflicts_with_all = ["check", "healthcheck"])]
    watch_config: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(url) = &args.healthcheck {
        return match sessiongate::admin::probe(url, std::time::Duration::from_secs(3)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sessiongate: healthcheck {url}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = args
        .config
        .expect("clap requires --config without --healthcheck");
    let settings = match sessiongate::config::load(&config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "sessiongate: invalid configuration in {}: {e}",
                config.display()
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        for warning in settings.warnings() {
            eprintln!("sessiongate: warning: {warning}");
        }
        println!("sessiongate: configuration {} is valid", config.display());
        return ExitCode::SUCCESS;
    }
    #[cfg(not(feature = "system-allocator"))]
    sessiongate::proxy::connection::set_memory_give_back(give_back_memory);
    sessiongate::telemetry::logging::init(&settings.log);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        listen = %settings.listen,
        admin_listen = %settings.admin_listen,
        routes = settings.routes.len(),
        providers = settings.providers.len(),
        "sessiongate starting"
    );
    // Reloads (SIGHUP, POST /admin/reload) read the same file, whatever the working
    // directory is by then.
    let path = std::path::absolute(&config).unwrap_or(config.clone());
    match sessiongate::Gateway::with_options(settings, Some(path), sessiongate::clock::system()) {
        Ok(gateway) => gateway
            .upgrade(args.upgrade)
            .watch_config(args.watch_config.map(std::time::Duration::from_secs))
            .run(),
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            sessiongate::telemetry::logging::flush();
            eprintln!("sessiongate: cannot start with {}: {e}", config.display());
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    }
    // The access lines of the last requests may still be buffered.
    sessiongate::telemetry::logging::flush();
    ExitCode::SUCCESS
}
