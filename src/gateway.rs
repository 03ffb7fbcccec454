//! Assembly: validated [`Settings`] → shared state → a Pingora `Server` with two services
//! (the proxy and the admin listener), and running it until a shutdown signal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::Notify;

use crate::admin::AdminApp;
use crate::assertion::AssertionCache;
use crate::cache::IdentityCache;
use crate::config::{ConfigError, Settings};
use crate::metrics::Metrics;
use crate::policy::Mode;
use crate::provider::metered::Metered;
use crate::provider::Provider;
use crate::proxy::{GatewayState, Proxy};
use crate::route::{Route, RouteAuth, RouteTable, UpstreamTarget};
use crate::token::TokenHasher;

/// A gateway ready to run.
pub struct Gateway {
    settings: Settings,
    state: Arc<GatewayState>,
}

impl Gateway {
    /// Builds the shared state: metrics, instrumented providers, routes, cache. Upstream
    /// host names are resolved here, once; a name that does not resolve is an error
    /// naming the upstream.
    pub fn new(settings: Settings) -> Result<Self, ConfigError> {
        let metrics = Metrics::new();
        let mut resolved: HashMap<String, UpstreamTarget> = HashMap::new();
        for r in &settings.routes {
            if let UpstreamTarget::Http(up) = &r.upstream {
                if !resolved.contains_key(&up.name) {
                    let up2 = up
                        .resolved()
                        .map_err(|e| ConfigError::at(format!("upstreams.{}", up.name), e))?;
                    resolved.insert(up.name.clone(), UpstreamTarget::Http(Arc::new(up2)));
                }
            }
        }
        let routes = settings
            .routes
            .iter()
            .map(|r| Route {
                name: r.name.as_str().into(),
                path_prefix: r.path_prefix.clone(),
                host: r.host.clone(),
                auth: if r.providers.is_empty() {
                    RouteAuth::None
                } else {
                    RouteAuth::Providers(
                        r.providers
                            .iter()
                            .map(|name| {
                                let inner = settings.providers[name].clone();
                                let name: Arc<str> = name.as_str().into();
                                let provider: Arc<dyn Provider> =
                                    Arc::new(Metered::new(name.clone(), inner, metrics.clone()));
                                (name, provider)
                            })
                            .collect(),
                    )
                },
                upstream: match &r.upstream {
                    UpstreamTarget::Http(up) => resolved[&up.name].clone(),
                    UpstreamTarget::Echo => UpstreamTarget::Echo,
                },
                policy: r.policy.clone(),
                forward_authorization: r.forward_authorization,
                assertion: r.assertion.clone(),
            })
            .collect();
        let routes: Vec<Route> = routes;
        let upstreams: Vec<&str> = routes
            .iter()
            .filter_map(|r| match &r.upstream {
                UpstreamTarget::Http(u) => Some(u.name.as_str()),
                UpstreamTarget::Echo => None,
            })
            .collect();
        metrics.init_series(
            routes.iter().map(|r| &*r.name),
            routes.iter().flat_map(|r| match &r.auth {
                RouteAuth::Providers(list) => list.iter().map(|(n, _)| &**n).collect::<Vec<_>>(),
                RouteAuth::None => Vec::new(),
            }),
            upstreams,
        );
        for r in routes.iter().filter(|r| r.auth_duration_applies()) {
            metrics.auth_duration.with_label_values(&[&*r.name]);
        }
        for r in routes.iter().filter(|r| r.policy.mode == Mode::Report) {
            for reason in ["insufficient_scope", "ip_not_allowed"] {
                metrics.would_deny.with_label_values(&[&*r.name, reason]);
            }
        }
        let state = Arc::new(GatewayState {
            routes: RouteTable::new(routes),
            cache: IdentityCache::with_eviction_counter(
                settings.cache.clone(),
                Some(metrics.cache_evictions.clone()),
            ),
            hasher: TokenHasher::random(),
            identity_headers: settings.identity_headers.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            assertions: AssertionCache::default(),
            jwks: crate::assertion::jwks(&settings.assertion_keys),
            metrics,
        });
        Ok(Gateway { settings, state })
    }

    /// State shared by the proxy and admin services.
    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// The Pingora server with both services added.
    pub fn into_server(self) -> Server {
        let grace = self.settings.shutdown_grace_period;
        let conf = ServerConf {
            threads: self.settings.threads,
            // Pingora counts whole seconds; round up so a grace period is never cut short.
            grace_period_seconds: Some(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)),
            graceful_shutdown_timeout_seconds: Some(1),
            pid_file: "/tmp/sessiongate.pid".into(),
            upgrade_sock: "/tmp/sessiongate_upgrade.sock".into(),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();

        let mut proxy = pingora::proxy::http_proxy_service_with_name(
            &server.configuration,
            Proxy::new(self.state.clone()),
            "sessiongate proxy",
        );
        proxy.add_tcp(&self.settings.listen);

        let proxy_addr: SocketAddr = self
            .settings
            .listen
            .parse()
            .expect("validated as a socket address");
        let mut admin = Service::new(
            "sessiongate admin".to_string(),
            AdminApp::new(self.state.clone(), proxy_addr),
        );
        admin.add_tcp(&self.settings.admin_listen);
        // The admin listener needs no more than one thread.
        admin.threads = Some(1);

        let providers: Vec<(Arc<str>, Arc<dyn Provider>)> = self
            .state
            .routes
            .iter()
            .flat_map(|r| match &r.auth {
                RouteAuth::Providers(list) => list.clone(),
                RouteAuth::None => Vec::new(),
            })
            .collect();
        let warm_up = pingora::services::background::background_service(
            "sessiongate warm-up",
            WarmUp { providers },
        );

        server.add_service(proxy);
        server.add_service(admin);
        server.add_service(warm_up);
        server
    }

    /// Runs until SIGTERM (graceful), SIGINT (fast) or SIGQUIT (hand-over), then returns.
    pub fn run(self) {
        self.into_server().run(RunArgs::default());
    }

    /// Runs on a new thread until [`GatewayHandle::shutdown`] (tests and embedding).
    pub fn spawn(self) -> GatewayHandle {
        let proxy_addr = self.settings.listen.parse().expect("validated");
        let admin_addr = self.settings.admin_listen.parse().expect("validated");
        let state = self.state.clone();
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
            state,
            stop,
            thread: Some(thread),
        }
    }
}

/// Runs each provider's warm-up (JWKS fetches) once at start, then idles until shutdown
/// so that connections it opened stay served by its runtime.
struct WarmUp {
    providers: Vec<(Arc<str>, Arc<dyn Provider>)>,
}

#[async_trait]
impl pingora::services::background::BackgroundService for WarmUp {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut done: Vec<&str> = Vec::new();
        for (name, provider) in &self.providers {
            if done.contains(&&**name) {
                continue;
            }
            done.push(name);
            if let Err(e) = provider.warm_up().await {
                tracing::warn!(provider = %name, error = %e, "warm-up failed; the first request will try again");
            }
        }
        let _ = shutdown.changed().await;
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

/// A gateway running on its own thread.
pub struct GatewayHandle {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<GatewayState>,
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

    /// Asks the gateway to stop gracefully and waits for its thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
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
