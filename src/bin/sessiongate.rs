//! `sessiongate --config FILE [--check]`: validate the config, then run the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: measured faster than glibc malloc for Pingora's per-request allocations on
/// these machines (and jemalloc slower); see BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (EX_USAGE, as linkerd and others use).
const EXIT_BAD_CONFIG: u8 = 64;

/// Reverse-proxy authentication gateway: bearer token → identity → trusted identity headers.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Path of the YAML configuration file.
    #[arg(short, long, env = "SESSIONGATE_CONFIG")]
    config: PathBuf,
    /// Validate the configuration and exit: 0 when valid, 64 with the error otherwise.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let settings = match sessiongate::config::load(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "sessiongate: invalid configuration in {}: {e}",
                args.config.display()
            );
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.check {
        println!(
            "sessiongate: configuration {} is valid",
            args.config.display()
        );
        return ExitCode::SUCCESS;
    }
    sessiongate::logging::init(&settings.log);
    tracing::info!(
        listen = %settings.listen,
        admin_listen = %settings.admin_listen,
        routes = settings.routes.len(),
        providers = settings.providers.len(),
        "sessiongate starting"
    );
    sessiongate::Gateway::new(settings).run();
    ExitCode::SUCCESS
}
