//! Pylon as a library: the pure modules (configuration, path normalisation,
//! routing, header handling, rewriting) and the Pingora glue, so that the
//! `pylon` binary and the fuzz targets under `fuzz/` use the same code.

pub(crate) mod access_log;
pub(crate) mod admin;
pub mod allocator;
pub mod app;
pub(crate) mod authority;
pub mod cli;
pub mod client_deadlines;
pub(crate) mod config;
pub(crate) mod connection_guard;
// The properties the fuzz targets check: compiled for them (cargo-fuzz
// sets `--cfg fuzzing`) and for the corpus replays under `cargo test`.
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub(crate) mod headers;
pub(crate) mod hostport;
pub mod lifecycle;
// Public for bench/link-signing, which counts its cost.
pub mod link_signing;
pub mod log_demote;
pub(crate) mod metrics;
pub(crate) mod path;
pub(crate) mod proxy;
pub(crate) mod redirect;
pub(crate) mod rewrite;
pub(crate) mod routing;
pub(crate) mod status;
pub(crate) mod transfer_coding;
pub(crate) mod upstream;
pub(crate) mod upstream_uri;
