//! The Pingora floor: the least a proxy built on Pingora's HTTP/1 codec and connection
//! pool can do per request — read the request, forward a clone of its head to one
//! upstream over a pooled connection, stream the response back. No auth, no routing, no
//! header hygiene, no metrics, no logs. It exists to be measured beside nginx and the
//! gateway (`benches/load/floor.sh`), so that "how far is sessiongate from what Pingora
//! can do at all" is a figure, not a guess. Not a product: never deploy it.
//!
//! `cargo build --release --example pingora_floor`, then
//! `target/release/examples/pingora_floor LISTEN UPSTREAM` (one thread, one runtime per
//! thread, as the gateway runs with `threads: 1`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::connectors::http::Connector;
use pingora::prelude::*;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::listening::Service;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    connector: Connector,
    peer: HttpPeer,
}

impl Floor {
    async fn forward(&self, session: &mut ServerSession) -> Result<()> {
        let (mut upstream, _reused) = self.connector.get_http_session(&self.peer).await?;
        upstream
            .write_request_header(Box::new(session.req_header().clone()))
            .await?;
        upstream.finish_request_body().await?;
        upstream.read_response_header().await?;
        let resp = upstream
            .response_header()
            .ok_or_else(|| Error::explain(ErrorType::InvalidHTTPHeader, "no response"))?
            .clone();
        session.write_response_header(Box::new(resp)).await?;
        while let Some(chunk) = upstream.read_response_body().await? {
            session.write_response_body(chunk, false).await?;
        }
        session.write_response_body(Bytes::new(), true).await?;
        self.connector
            .release_http_session(upstream, &self.peer, None)
            .await;
        Ok(())
    }
}

#[async_trait]
impl HttpServerApp for Floor {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        if self.forward(&mut session).await.is_err() {
            session.shutdown().await;
            return None;
        }
        let settings = HttpPersistentSettings::for_session(&session);
        match session.finish().await {
            Ok(Some(reusable)) => Some(ReusedHttpStream::from_reusable_stream(reusable, settings)),
            _ => None,
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: pingora_floor LISTEN UPSTREAM (host:port each)");
        std::process::exit(2);
    };
    let conf = ServerConf {
        threads: 1,
        work_stealing: false,
        // SIGTERM (the harness's cleanup) ends it at once: Pingora's default grace
        // period is 300 s, which the harness's `wait` sat out in every CI run.
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let app = Floor {
        connector: Connector::new(None),
        peer: HttpPeer::new(upstream, false, String::new()),
    };
    let mut service = Service::new("floor".to_string(), app);
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever();
}
