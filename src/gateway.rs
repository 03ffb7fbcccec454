//! Assembly: validated [`Settings`] → shared state → a Pingora `Server` with two services
//! (the proxy and the admin listener), and running it until a shutdown signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::Notify;

use crate::admin::{AdminApp, AdminRole};
use crate::clock::{self, SharedClock};
use crate::config::{ConfigError, Settings};
use crate::proxy::connection::Limited;
use crate::proxy::direct::Direct;
use crate::proxy::front::FrontDoor;
use crate::proxy::Proxy;
use crate::reload::{ReloadQueue, Reloads};
use crate::state::{GatewayState, Process};

/// A gateway ready to run.
pub struct Gateway {
    settings: Settings,
    process: Arc<Process>,
    /// The state the request path shares (`process.shared`).
    state: Arc<GatewayState>,
    /// Reload requests (the admin API), served by the background task with SIGHUP.
    reloads: Reloads,
    queue: std::sync::Mutex<Option<ReloadQueue>>,
    /// Take the listeners over from a running instance (Pingora's `-u`).
    upgrade: bool,
    /// Poll the config file this often and reload when its content changes.
    watch: Option<Duration>,
    /// The TLS listener's rustls configuration (`tls:`), built with the state.
    tls_config: Option<Arc<rustls::ServerConfig>>,
}

impl Gateway {
    /// Builds the shared state: metrics, instrumented providers, routes, cache. Upstream
    /// host names are resolved here, once; a name that does not resolve is an error
    /// naming the upstream.
    pub fn new(settings: Settings) -> Result<Self, ConfigError> {
        Self::with_options(settings, None, clock::system())
    }

    /// Like [`Gateway::new`], remembering the config file for reloads (SIGHUP,
    /// `POST /admin/reload`) and deciding on `clock`.
    pub fn with_options(
        settings: Settings,
        config_path: Option<PathBuf>,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        let process = Arc::new(crate::state::start(settings.clone(), clock, config_path)?);
        let tls_config = match (&settings.tls, &process.tls) {
            (Some(listener), Some(store)) => Some(Arc::new(
                crate::tls::server_config(store.clone(), listener)
                    .map_err(|e| ConfigError::at("tls", e))?,
            )),
            _ => None,
        };
        let (reloads, queue) = crate::reload::channel();
        Ok(Gateway {
            settings,
            state: process.shared.clone(),
            process,
            reloads,
            queue: std::sync::Mutex::new(Some(queue)),
            upgrade: false,
            watch: None,
            tls_config,
        })
    }

    /// Start by taking over the listening sockets of a running instance that is told to
    /// hand them over with SIGQUIT (zero-downtime binary upgrade).
    pub fn upgrade(mut self, upgrade: bool) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Also reload when the config file's content changes, checked every `interval`
    /// (a ConfigMap update replaces the file behind a symlink: content is what counts).
    pub fn watch_config(mut self, interval: Option<Duration>) -> Self {
        self.watch = interval.filter(|i| !i.is_zero());
        self
    }

    /// What the admin listeners get: the shared state, the cluster link (purge fan-out,
    /// `/readyz`'s Redis line) and a way to ask for reloads.
    fn admin_context(&self) -> crate::admin::AdminContext {
        crate::admin::AdminContext {
            state: self.state.clone(),
            cluster: self.process.cluster.clone(),
            reloads: self.reloads.clone(),
        }
    }

    /// What serves each connection of the proxy listener: connection limits and deadlines
    /// around the direct path, with Pingora's full proxy behind it for everything else
    /// (see `proxy::direct`); both run the same `Proxy` steps. Public so a benchmark can
    /// drive the whole request path over an in-memory connection.
    pub fn proxy_app(&self, conf: &Arc<ServerConf>) -> Limited<Direct> {
        self.app_for(conf, FrontDoor::Proxy)
    }

    /// The proxy listener's application, or the decision listener's: the same steps and
    /// limits, answering front proxies instead of forwarding.
    fn app_for(&self, conf: &Arc<ServerConf>, front: FrontDoor) -> Limited<Direct> {
        let make = || match front {
            FrontDoor::Proxy => Proxy::new(self.state.clone()),
            FrontDoor::Decision => Proxy::deciding(
                self.state.clone(),
                self.settings
                    .decision
                    .as_ref()
                    .and_then(|d| d.envoy_http_prefix.clone()),
            ),
        };
        let mut full_proxy = pingora::proxy::http_proxy(conf, make());
        let mut options = pingora::apps::HttpServerOptions::default();
        // HTTP/2 with prior knowledge on the plain listener, when asked for (on TLS,
        // ALPN decides); never by `Upgrade: h2c`.
        // The decision listener always takes it: Envoy's ext_authz calls are gRPC.
        options.h2c = self.settings.h2c || front == FrontDoor::Decision;
        // An HTTP/2 connection with no stream open is idle (the stream wrapper bounds its
        // opening: the preface and the client's SETTINGS).
        options.h2_idle_timeout = Some(self.settings.connections.idle_timeout);
        let options_h2c = options.h2c;
        full_proxy.server_options = Some(options);
        // Pingora's bounded defaults (header list size), with our stream limit.
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        h2.max_concurrent_streams(self.settings.connections.http2_max_concurrent_streams);
        full_proxy.h2_options = Some(h2);
        let upstreams = pingora::connectors::http::Connector::new(Some(
            pingora::connectors::ConnectorOptions::from_server_conf(conf),
        ));
        let direct = Direct::new(make(), full_proxy, upstreams, self.settings.direct_path);
        Limited::new(direct, self.state.clone()).h2c(options_h2c)
    }

    /// The Pingora server with both services added.
    pub(crate) fn into_server(self) -> Server {
        let grace = self.settings.shutdown_grace_period;
        let conf = ServerConf {
            threads: self.settings.threads,
            work_stealing: self.settings.work_stealing,
            // Pingora counts whole seconds; round up so a grace period is never cut short.
            grace_period_seconds: Some(crate::clock::ceil_seconds(grace)),
            graceful_shutdown_timeout_seconds: Some(1),
            pid_file: self.settings.pid_file.clone(),
            upgrade_sock: self.settings.upgrade_sock.clone(),
            ..ServerConf::default()
        };
        let opt = Opt {
            upgrade: self.upgrade,
            ..Opt::default()
        };
        let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
        server.bootstrap();

        let app = self.proxy_app(&server.configuration);
        // The TLS listener serves the same application and shares the connection count;
        // the handshake is made by the application (see `proxy::connection`).
        let tls_proxy =
            self.settings
                .tls
                .as_ref()
                .zip(self.tls_config.clone())
                .map(|(tls, config)| {
                    let acceptor = pingora::listeners::tls::Acceptor::from_server_config(config);
                    let mut service =
                        Service::new("sessiongate proxy tls".to_string(), app.with_tls(acceptor));
                    service.add_listener(proxy_listener(tls.listen));
                    service
                });
        let mut proxy = Service::new("sessiongate proxy".to_string(), app);
        proxy.add_listener(proxy_listener(self.settings.listen));
        let decision = self.settings.decision.as_ref().map(|d| {
            let app = self.app_for(&server.configuration, FrontDoor::Decision);
            let mut service = Service::new("sessiongate decision".to_string(), app);
            service.add_listener(proxy_listener(d.listen));
            service
        });

        let proxy_addr: SocketAddr = self.settings.listen;
        let api_listen = self.settings.admin_api_listen;
        let role = if api_listen.is_some() {
            AdminRole::Observe
        } else {
            AdminRole::All
        };
        let mut admin = Service::new(
            "sessiongate admin".to_string(),
            AdminApp::new(self.admin_context(), proxy_addr, role),
        );
        admin.add_tcp(&self.settings.admin_listen.to_string());
        // The admin listener needs no more than one thread.
        admin.threads = Some(1);
        if let Some(addr) = api_listen {
            let mut api = Service::new(
                "sessiongate admin api".to_string(),
                AdminApp::new(self.admin_context(), proxy_addr, AdminRole::Api),
            );
            api.add_tcp(&addr.to_string());
            api.threads = Some(1);
            server.add_service(api);
        }

        let warm_up = pingora::services::background::background_service(
            "sessiongate warm-up and reload",
            WarmUpAndReload {
                process: self.process.clone(),
                queue: std::sync::Mutex::new(
                    self.queue.lock().unwrap_or_else(|e| e.into_inner()).take(),
                ),
                watch: self.watch,
                certificates: self.settings.tls.as_ref().and_then(|t| t.watch),
            },
        );

        server.add_service(proxy);
        if let Some(tls) = tls_proxy {
            server.add_service(tls);
        }
        if let Some(decision) = decision {
            server.add_service(decision);
        }
        server.add_service(admin);
        server.add_service(warm_up);
        server
    }

    /// Runs until SIGTERM (graceful), SIGINT (fast) or SIGQUIT (hand-over), then returns.
    ///
    /// Writes the process id to `pid_file` once the listeners are set up — for an
    /// `--upgrade` start, only after the old process handed its sockets over, so until
    /// then the file still names the old process (the one to send SIGQUIT to). Pingora
    /// itself writes it only when daemonizing, which sessiongate never does.
    pub fn run(self) {
        let pid_file = self.settings.pid_file.clone();
        let server = self.into_server();
        if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
            tracing::warn!(pid_file = %pid_file, error = %e, "cannot write the pid file");
        }
        server.run(RunArgs::default());
    }

    /// Runs on a new thread until [`GatewayHandle::shutdown`] (tests and embedding).
    ///
    /// Always on one shared runtime (`work_stealing: true`), whatever the settings say:
    /// Pingora keeps the handles of per-thread runtimes in thread-locals that outlive a
    /// stopped server, so a process that starts servers one after another — what
    /// embedding allows — would hand a new server the old one's dead runtimes. The binary
    /// runs one server per process and honours the setting.
    pub fn spawn(mut self) -> GatewayHandle {
        self.settings.work_stealing = true;
        let proxy_addr = self.settings.listen;
        let admin_addr = self.settings.admin_listen;
        let stop = Arc::new(Notify::new());
        let signal = NotifiedShutdown(stop.clone());
        let thread = std::thread::spawn(move || {
            self.into_server().run(RunArgs {
                shutdown_signal: Box::new(signal),
            });
        });
        GatewayHandle {
            proxy_addr,
            admin_addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Runs each provider's warm-up (JWKS fetches) once at start, then reloads the
/// configuration on every SIGHUP until shutdown. Connections it opened stay served by its
/// runtime.
struct WarmUpAndReload {
    process: Arc<Process>,
    /// Reload requests from the admin API (taken by the first start).
    queue: std::sync::Mutex<Option<ReloadQueue>>,
    watch: Option<Duration>,
    /// How often the TLS certificate files are checked (`tls.watch`).
    certificates: Option<Duration>,
}

/// An interval whose first tick is one period away.
fn ticker(every: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

/// A digest of the config file's content, `None` when it cannot be read.
fn file_digest(path: &std::path::Path) -> Option<[u8; 32]> {
    use sha2::{Digest, Sha256};
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

#[async_trait]
impl pingora::services::background::BackgroundService for WarmUpAndReload {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        // Installed first: SIGHUP's default action would end the process.
        let mut hangups = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::hangup(),
        ) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                None
            }
        };
        let process = &self.process;
        let exporter = process
            .trace_exporter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(exporter) = exporter {
            let mut stop = shutdown.clone();
            tokio::spawn(exporter.run(async move {
                let _ = stop.changed().await;
            }));
        }
        if let Some(cluster) = &process.cluster {
            tokio::spawn(cluster.clone().run(shutdown.clone()));
            if let Some(limits) = cluster.limits() {
                tokio::spawn(limits.clone().run(shutdown.clone()));
            }
        }
        for p in &process.shared.snapshot().providers {
            if let Err(e) = p.provider.warm_up().await {
                tracing::warn!(provider = %p.name(), error = %e, "warm-up failed; the first request will try again");
            }
        }
        let watched = self.watch.zip(process.config_path().map(Path::to_path_buf));
        let mut last_digest = watched.as_ref().and_then(|(_, p)| file_digest(p));
        // Changed content seen once, waiting to be seen unchanged on the next check.
        let mut settling: Option<[u8; 32]> = None;
        let mut ticks = watched.as_ref().map(|(every, _)| ticker(*every));
        let mut certificate_ticks = self.certificates.map(ticker);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(answer) = async { match &mut queue { Some(q) => q.next().await, None => std::future::pending().await } } => {
                    let outcome = process.reload_from_file().await;
                    ReloadQueue::answer(answer, outcome);
                    last_digest = watched.as_ref().and_then(|(_, p)| file_digest(p));
                    settling = None;
                }
                Some(()) = async { match &mut hangups { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading the configuration");
                    // Errors are logged and counted by the reload itself.
                    let _ = process.reload_from_file().await;
                    last_digest = watched.as_ref().and_then(|(_, p)| file_digest(p));
                    settling = None;
                }
                _ = async { match &mut certificate_ticks { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => {
                    process.check_certificates();
                }
                _ = async { match &mut ticks { Some(t) => { t.tick().await; } None => std::future::pending::<()>().await } } => {
                    let Some((_, path)) = &watched else { continue };
                    let digest = file_digest(path);
                    // A file being replaced may be briefly unreadable, and one written in
                    // place (truncated, then written) briefly half-written: new content is
                    // loaded once it has stayed the same for one more check, so a save is
                    // one reload of what was saved, never one of a partial file.
                    if digest.is_none() || digest == last_digest {
                        settling = None;
                    } else if digest == settling {
                        settling = None;
                        last_digest = digest;
                        tracing::info!(path = %path.display(), "config file changed: reloading");
                        let _ = process.reload_from_file().await;
                    } else {
                        settling = digest;
                    }
                }
            }
        }
    }
}

struct NotifiedShutdown(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifiedShutdown {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::GracefulTerminate
    }
}

/// A gateway running on its own thread; dropping the handle stops it gracefully and
/// waits for the thread.
pub struct GatewayHandle {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GatewayHandle {
    /// Waits until the admin `/readyz` answers 200 (both listeners up), or `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        use std::io::{Read, Write};
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(self.admin_addr) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = "GET /readyz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n";
                let mut buf = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut buf).is_ok()
                    && buf.starts_with("HTTP/1.1 200")
                {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn stop_and_join(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.notify_one();
            let _ = t.join();
        }
    }
}

impl Drop for GatewayHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// A proxy listener. Its connections read the socket directly (no L4 read buffer):
/// Pingora's HTTP/1 and HTTP/2 codecs and rustls read into buffers of their own, so the
/// 64 KiB read buffer Pingora puts in front of every connection by default only copied
/// bytes once more — and cost 64 KiB for every open connection, idle or silent ones
/// included (BENCHMARKS.md, "Memory per connection").
fn proxy_listener(addr: SocketAddr) -> pingora::listeners::ListenerConfig {
    use pingora::listeners::{L4BufferSettings, ListenerConfig, DEFAULT_L4_WRITE_BUFFER_SIZE};
    ListenerConfig::tcp(addr.to_string())
        .l4_buffer(L4BufferSettings::new(0, DEFAULT_L4_WRITE_BUFFER_SIZE))
}
