//! The admin listener: `/metrics`, `/status` and `/healthz` on an address
//! of their own (loopback by default), never through the public routes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::status::{self, Endpoint, RouteStatus, Status};
use crate::upstream::Upstream;

pub struct AdminRoute {
    pub name: String,
    pub prefix: String,
    pub upstream: Arc<Upstream>,
}

pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub routes: Vec<AdminRoute>,
    /// The prefixes of `/a/<host>:<port>/…` destinations, when enabled:
    /// their traffic gets a row of its own.
    pub hostport: Option<String>,
    pub version: &'static str,
    pub config_hash: String,
    pub lifecycle: Arc<Lifecycle>,
}

fn reply(code: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    if let Ok(v) = r.body().len().to_string().parse() {
        r.headers_mut().insert(http::header::CONTENT_LENGTH, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

impl Admin {
    fn status(&self) -> Status<'_> {
        let windows = self.metrics.window();
        Status {
            version: self.version,
            config_hash: &self.config_hash,
            uptime: self.metrics.started.elapsed(),
            draining: self.lifecycle.is_draining(),
            routes: self
                .routes
                .iter()
                .map(|r| RouteStatus {
                    name: &r.name,
                    prefix: &r.prefix,
                    upstream: r.upstream.display.clone(),
                    checked: r.upstream.health_interval.is_some(),
                    endpoints: r
                        .upstream
                        .endpoint_health()
                        .into_iter()
                        .map(|(a, up)| Endpoint {
                            address: a.to_string(),
                            up,
                        })
                        .collect(),
                    window: windows.iter().find(|w| w.route == r.name).cloned(),
                })
                .chain(self.hostport.as_deref().map(|prefixes| {
                    RouteStatus {
                        name: crate::metrics::HOSTPORT,
                        prefix: prefixes,
                        upstream: "<host>:<port> in hostport.allow".to_string(),
                        checked: false,
                        endpoints: Vec::new(),
                        window: windows
                            .iter()
                            .find(|w| w.route == crate::metrics::HOSTPORT)
                            .cloned(),
                    }
                }))
                .collect(),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let uri = &session.req_header().uri;
        let json = uri
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "format=json"));
        match uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics.render(),
            ),
            "/status" if json => reply(
                StatusCode::OK,
                "application/json",
                status::json(&self.status()).into_bytes(),
            ),
            "/status" | "/" => reply(
                StatusCode::OK,
                "text/html; charset=utf-8",
                status::html(&self.status()).into_bytes(),
            ),
            "/healthz" if self.lifecycle.is_leaving() => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                b"Pylon draining.".to_vec(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", b"Pylon ready.".to_vec()),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"Not found. Try /status, /metrics or /healthz.\n".to_vec(),
            ),
        }
    }
}

/// Samples the counters for the status page's one-minute window.
pub struct Sampler {
    pub metrics: Arc<Metrics>,
    pub every: Duration,
}

#[async_trait]
impl BackgroundService for Sampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.metrics.sample();
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.every) => {}
            }
        }
    }
}
