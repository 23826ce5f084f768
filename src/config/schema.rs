//! The file as written: serde's view of `pylon:`, every field optional,
//! unknown keys refused. `check` turns it into the model.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::rewrite::RuleSpec;

// ---------------------------------------------------------------- raw schema

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPylon {
    pub(super) listen: Option<Vec<String>>,
    #[serde(rename = "server-port", alias = "server_port")]
    pub(super) server_port: Option<u16>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) resolve_interval: Option<Scalar>,
    pub(super) keepalive_timeout: Option<Scalar>,
    pub(super) shutdown_notice: Option<Scalar>,
    pub(super) access_log: Option<String>,
    pub(super) admin_listen: Option<String>,
    pub(super) server_names: Option<Vec<String>>,
    pub(super) tls: Option<RawTls>,
    pub(super) limits: Option<RawLimits>,
    pub(super) hostport: Option<RawHostPort>,
    pub(super) routes: Option<BTreeMap<String, RawRoute>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) prefix: Option<String>,
    pub(super) upstream: Option<UpstreamSpec>,
    pub(super) upstream_env: Option<String>,
    pub(super) health_check: Option<RawHealthCheck>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) deny: Option<Vec<String>>,
    pub(super) rate_limit: Option<u64>,
    pub(super) rewrite: Option<Vec<RuleSpec>>,
    pub(super) rewrite_types: Option<Vec<String>>,
    pub(super) proxy_redirect: Option<bool>,
    pub(super) portal_rewrite: Option<bool>,
    pub(super) enabled: Option<bool>,
    pub(super) add_slash: Option<bool>,
    pub(super) preserve_host: Option<bool>,
    pub(super) connect_timeout: Option<Scalar>,
    pub(super) read_timeout: Option<Scalar>,
    pub(super) write_timeout: Option<Scalar>,
    pub(super) idle_timeout: Option<Scalar>,
    pub(super) max_body_size: Option<Scalar>,
    pub(super) tls_verify: Option<bool>,
    pub(super) tls_ca_file: Option<String>,
    pub(super) tls_sni: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) listen: Option<Vec<String>>,
    pub(super) cert: Option<String>,
    pub(super) key: Option<String>,
    pub(super) http2: Option<bool>,
    pub(super) redirect_http: Option<bool>,
    pub(super) public_port: Option<u16>,
    pub(super) hsts: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHostPort {
    pub(super) prefixes: Option<Vec<String>>,
    pub(super) allow: Option<Vec<String>>,
    pub(super) ports: Option<Vec<u16>>,
    pub(super) allow_loopback: Option<bool>,
    pub(super) signing_key_file: Option<String>,
    pub(super) previous_signing_key_file: Option<String>,
    pub(super) previous_key_grace: Option<Scalar>,
    pub(super) require_signature: Option<bool>,
    pub(super) redirect_expiry: Option<Scalar>,
    pub(super) link_expiry: Option<Scalar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_uri_length: Option<Scalar>,
    pub(super) max_header_count: Option<u64>,
    pub(super) max_header_bytes: Option<Scalar>,
    pub(super) header_timeout: Option<Scalar>,
    pub(super) body_timeout: Option<Scalar>,
    pub(super) body_min_rate: Option<Scalar>,
    pub(super) max_connections: Option<u64>,
}

/// One upstream URI, or several endpoints of the same service.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum UpstreamSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub(super) enabled: Option<bool>,
    pub(super) interval: Option<Scalar>,
    pub(super) timeout: Option<Scalar>,
    pub(super) path: Option<String>,
}

/// A YAML scalar that may be written as a number or a string (`30`, `"30s"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Int(u64),
    Str(String),
}

impl Scalar {
    pub(super) fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}
