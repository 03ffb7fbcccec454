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
    /// With --check: secrets that are not there (an unset `${VAR}`, a missing `*_file`)
    /// are accepted as placeholders — for CI, which has no production secrets.
    #[arg(long, requires = "check")]
    no_secrets: bool,
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
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Talk to the running gateway's admin API (address and token from the same config:
    /// `admin.listen` or `admin_listen`, `admin.token_file` / `admin.token`) — e.g. with
    /// `kubectl exec` into its container. Prints the API's JSON answer; exits 0 on 2xx.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(clap::Subcommand)]
enum AdminAction {
    /// Remove cached identities, here and (with `cluster:`) on every replica.
    Purge {
        /// Every identity of this subject.
        #[arg(long, conflicts_with_all = ["session_id", "token_stdin"])]
        subject: Option<String>,
        /// Every identity of this session id.
        #[arg(long, conflicts_with_all = ["subject", "token_stdin"])]
        session_id: Option<String>,
        /// One token, read from standard input (never on the command line, where `ps`
        /// and shell history would keep it).
        #[arg(long, conflicts_with_all = ["subject", "session_id"])]
        token_stdin: bool,
        /// Only identities from this provider (by subject or session id).
        #[arg(long)]
        provider: Option<String>,
    },
    /// How the gateway would decide a request (nothing is forwarded).
    Explain {
        /// The request path, with its query if any.
        #[arg(long)]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        client_ip: Option<String>,
        /// The request's token, read from standard input.
        #[arg(long)]
        token_stdin: bool,
        /// `proxy` (default): as the proxy listener judges it; `decision`: as the decision
        /// listener judges a front proxy's question about it.
        #[arg(long, default_value = "proxy")]
        mode: String,
    },
    /// Reload the configuration file (as SIGHUP does).
    Reload,
}

/// `sessiongate admin …`: one call to the admin API named by `settings`.
fn admin_command(settings: &sessiongate::config::Settings, action: AdminAction) -> ExitCode {
    let (Some(addr), Some(token)) = (settings.admin_api_address(), settings.admin_token.as_ref())
    else {
        eprintln!("sessiongate: the admin API is not enabled in this config (set `admin.token_file` or `admin.token`)");
        return ExitCode::FAILURE;
    };
    let read_token = || -> Result<String, String> {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("reading the token from standard input: {e}"))?;
        let token = text.trim().to_string();
        if token.is_empty() {
            return Err("no token on standard input".into());
        }
        Ok(token)
    };
    let request = match action {
        AdminAction::Purge {
            subject,
            session_id,
            token_stdin,
            provider,
        } => {
            let mut body = serde_json::Map::new();
            match (subject, session_id, token_stdin) {
                (Some(s), None, false) => body.insert("subject".into(), s.into()),
                (None, Some(s), false) => body.insert("session_id".into(), s.into()),
                (None, None, true) => match read_token() {
                    Ok(t) => body.insert("token".into(), t.into()),
                    Err(e) => {
                        eprintln!("sessiongate: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => {
                    eprintln!("sessiongate: give one of --subject, --session-id, --token-stdin");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(p) = provider {
                body.insert("provider".into(), p.into());
            }
            ("POST", "/admin/purge", serde_json::Value::Object(body))
        }
        AdminAction::Explain {
            path,
            method,
            host,
            client_ip,
            token_stdin,
            mode,
        } => {
            let mut body = serde_json::json!({ "path": path, "method": method, "mode": mode });
            if let Some(h) = host {
                body["host"] = h.into();
            }
            if let Some(ip) = client_ip {
                body["client_ip"] = ip.into();
            }
            if token_stdin {
                match read_token() {
                    Ok(t) => body["token"] = t.into(),
                    Err(e) => {
                        eprintln!("sessiongate: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ("POST", "/admin/explain", body)
        }
        AdminAction::Reload => ("POST", "/admin/reload", serde_json::json!({})),
    };
    let (method, path, body) = request;
    let sent = sessiongate::admin::call(
        addr,
        token.expose(),
        method,
        path,
        body.to_string().as_bytes(),
        std::time::Duration::from_secs(10),
    );
    match sent {
        Ok((status, answer)) => {
            println!("{}", answer.trim_end());
            if (200..300).contains(&status) {
                ExitCode::SUCCESS
            } else {
                eprintln!("sessiongate: the admin API answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("sessiongate: {e}");
            ExitCode::FAILURE
        }
    }
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
    let loaded = if args.no_secrets {
        sessiongate::config::load_without_secrets(&config)
    } else {
        sessiongate::config::load_all(&config).map(|s| (s, 0))
    };
    let (settings, placeholders) = match loaded {
        Ok(s) => s,
        Err(errors) => {
            if let [e] = errors.as_slice() {
                eprintln!(
                    "sessiongate: invalid configuration in {}: {e}",
                    config.display()
                );
            } else {
                eprintln!(
                    "sessiongate: invalid configuration in {}: {} errors",
                    config.display(),
                    errors.len()
                );
                for e in &errors {
                    eprintln!("  {e}");
                }
            }
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let (Some(Command::Admin { action }), false) = (args.command, args.check) {
        return admin_command(&settings, action);
    }
    if args.check {
        for warning in settings.warnings() {
            eprintln!("sessiongate: warning: {warning}");
        }
        if args.no_secrets {
            println!(
                "sessiongate: configuration {} is valid (secrets not checked: {placeholders} absent, accepted as placeholders)",
                config.display()
            );
        } else {
            println!("sessiongate: configuration {} is valid", config.display());
        }
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
