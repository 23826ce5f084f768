//! Pylon as a library: the pure modules (configuration, path normalisation,
//! routing, header handling, rewriting) and the Pingora glue, so that the
//! `pylon` binary and the fuzz targets under `fuzz/` use the same code.

pub mod access_log;
pub mod admin;
pub mod client_deadlines;
pub mod config;
pub mod connection_guard;
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod hostport;
pub mod lifecycle;
pub mod metrics;
pub mod path;
pub mod proxy;
pub mod redirect;
pub mod rewrite;
pub mod routing;
pub mod status;
pub mod upstream;
pub mod upstream_uri;
