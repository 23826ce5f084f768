//! The file as written: serde's view of `pylon:`, every field optional,
//! unknown keys refused. `check` turns it into the model.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::rewrite::RuleSpec;

// ---------------------------------------------------------------- raw schema

/// The whole file: `pylon:`, and Pingora's server settings, whose values
/// Pingora's own `ServerConf` reads. A top-level key that is neither is
/// refused like an unknown key anywhere else.
#[derive(Debug, Default)]
pub(super) struct RawFile {
    pub(super) pylon: Option<RawPylon>,
}

impl<'de> Deserialize<'de> for RawFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct File;
        impl<'de> Visitor<'de> for File {
            type Value = RawFile;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of settings")
            }
            // An empty file.
            fn visit_unit<E: de::Error>(self) -> Result<RawFile, E> {
                Ok(RawFile::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<RawFile, E> {
                Ok(RawFile::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawFile, A::Error> {
                let mut file = RawFile::default();
                while let Some(is_pylon) = map.next_key_seed(TopKey)? {
                    match is_pylon {
                        true => file.pylon = map.next_value()?,
                        false => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(file)
            }
        }
        d.deserialize_any(File)
    }
}

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

/// A top-level key: `pylon` (true) or one of Pingora's (false). Refused
/// while the key itself is read, so the error carries the key's position.
struct TopKey;

impl<'de> de::DeserializeSeed<'de> for TopKey {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for TopKey {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a setting's name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        let known = super::read::server_keys();
        match key {
            "pylon" => Ok(true),
            k if known.contains(&k) => Ok(false),
            k => Err(E::unknown_field(k, known)),
        }
    }
}

/// One upstream URI, or several endpoints of the same service.
#[derive(Debug, Clone)]
pub(super) enum UpstreamSpec {
    One(String),
    Many(Vec<String>),
}

// Written out rather than `#[serde(untagged)]`, whose only error is "data
// did not match any variant", without the value's type or position.
impl<'de> Deserialize<'de> for UpstreamSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Spec;
        impl<'de> Visitor<'de> for Spec {
            type Value = UpstreamSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an http:// or https:// URI, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UpstreamSpec, E> {
                Ok(UpstreamSpec::One(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UpstreamSpec, A::Error> {
                let mut list = Vec::new();
                while let Some(uri) = seq.next_element::<String>()? {
                    list.push(uri);
                }
                Ok(UpstreamSpec::Many(list))
            }
        }
        d.deserialize_any(Spec)
    }
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
#[derive(Debug, Clone)]
pub(super) enum Scalar {
    Int(u64),
    Str(String),
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Num;
        impl Visitor<'_> for Num {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a text such as 30s or 512k")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_string()))
            }
        }
        d.deserialize_any(Num)
    }
}

impl Scalar {
    pub(super) fn text(&self) -> String {
        match self {
            Scalar::Int(n) => n.to_string(),
            Scalar::Str(s) => s.clone(),
        }
    }
}
