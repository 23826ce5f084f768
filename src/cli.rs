//! The `pylon` command line: flags, `--help` and `--version` in Pylon's
//! words. Pingora's `Server` still receives the flags it acts on (`-d`,
//! `-u`) through its own `Opt`, built here.

use clap::Parser;
use pingora::prelude::Opt;

pub const DEFAULT_CONFIG: &str = "/etc/pylon/pylon.yaml";

/// What `pylon --help` prints. README's "Run" section carries the same flag
/// and signal tables (tests/config_check.rs compares them).
pub const HELP: &str = "\
pylon: the single entry point of an AI cluster, a reverse proxy on Pingora
that routes by path prefix to the cluster's services and rewrites their pages.

Usage: pylon [-c FILE] [-t | -T | -d | -u]
       pylon -h | -V

Flags:
  -c, --conf FILE     configuration file (default /etc/pylon/pylon.yaml)
  -t, --test          check the configuration, list the active routes, exit
                      (0: valid, 2: refused, with file:line:column and key)
  -T, --test-print    check like -t, then print the effective configuration
                      (defaults filled in, environment overrides marked) as
                      YAML that -t accepts
  -d, --daemon        run in the background (writes pid_file)
  -u, --upgrade       take the listening sockets over from a running Pylon
                      (binary upgrade or reload; see deploy/pylon-reload)
  -h, --help          this text
  -V, --version       version, commit, compiler, Pingora release, features

Signals:
  SIGTERM   graceful stop: /healthz 503 and Connection: close for
            shutdown_notice, then the listeners close and in-flight
            requests get up to grace_period_seconds
  SIGINT    stop at once
  SIGQUIT   hand the listening sockets to a new process started with -u,
            finish in-flight requests, exit

Environment: REST_SERVER_URI, K8S_API_SERVER_URI, WEBHDFS_URI,
PROMETHEUS_URI, K8S_DASHBOARD_URI, YARN_WEB_PORTAL_URI, GRAFANA_URI and
PAI_WEB_PORTAL_URI override the standard routes' upstreams; RUST_LOG sets
the log level (default info).

Manual: README.md in Pylon's source tree; conf/pylon.yaml there is a
complete, commented configuration.
";

#[derive(Debug, Parser)]
#[command(
    name = "pylon",
    disable_help_flag = true,
    disable_version_flag = true,
    override_usage = "pylon [-c FILE] [-t | -T | -d | -u]"
)]
pub struct Cli {
    #[arg(short = 'c', long = "conf", value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub conf: String,
    #[arg(short = 't', long = "test")]
    pub test: bool,
    #[arg(short = 'T', long = "test-print", conflicts_with = "test")]
    pub test_print: bool,
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,
    #[arg(short = 'h', long = "help")]
    pub help: bool,
    #[arg(short = 'V', long = "version")]
    pub version: bool,
    /// `cargo test` may pass it to a test binary that starts a server;
    /// Pingora's `Opt` accepts it, so Pylon does too.
    #[arg(long = "nocapture", hide = true)]
    pub nocapture: bool,
}

impl Cli {
    /// The flags Pingora's `Server` acts on. The configuration is read by
    /// Pylon, not by Pingora, so `conf` stays unset.
    pub fn pingora_opt(&self) -> Opt {
        Opt {
            upgrade: self.upgrade,
            daemon: self.daemon,
            nocapture: self.nocapture,
            test: false,
            conf: None,
        }
    }
}

/// What `pylon -V` prints.
pub fn version() -> String {
    format!(
        "pylon {} (commit {})\n\
         built with {}\n\
         Pingora {} + {} patches (vendor/patches), features: {}\n\
         allocator: mimalloc\n",
        env!("CARGO_PKG_VERSION"),
        env!("PYLON_GIT_COMMIT"),
        env!("PYLON_RUSTC"),
        env!("PYLON_PINGORA"),
        env!("PYLON_PINGORA_PATCHES"),
        env!("PYLON_PINGORA_FEATURES").replace(',', ", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("pylon").chain(args.iter().copied()))
    }

    #[test]
    fn pingora_flags_are_accepted_and_passed_on() {
        let cli = parse(&["-d", "-u", "-c", "/x.yaml"]).expect("flags");
        let opt = cli.pingora_opt();
        assert!(opt.daemon && opt.upgrade && !opt.test);
        assert_eq!(cli.conf, "/x.yaml");
        let cli = parse(&["--daemon", "--upgrade", "--conf=/y.yaml", "--test"]).expect("long");
        assert!(cli.daemon && cli.upgrade && cli.test);
        assert_eq!(cli.conf, "/y.yaml");
        assert_eq!(parse(&[]).expect("none").conf, DEFAULT_CONFIG);
        assert!(parse(&["-tc", "/z.yaml"]).expect("bundled").test);
        assert!(
            parse(&["-t", "-T"]).is_err(),
            "-t and -T exclude each other"
        );
        assert!(parse(&["-x"]).is_err());
    }

    #[test]
    fn help_names_every_flag_and_the_default_path() {
        for flag in [
            "-c, --conf",
            "-t, --test",
            "-T, --test-print",
            "-d, --daemon",
        ] {
            assert!(HELP.contains(flag), "{flag}");
        }
        for flag in [
            "-u, --upgrade",
            "-h, --help",
            "-V, --version",
            DEFAULT_CONFIG,
        ] {
            assert!(HELP.contains(flag), "{flag}");
        }
        // Every line fits an 80-column terminal.
        assert!(HELP.lines().all(|l| l.chars().count() <= 80));
    }

    #[test]
    fn version_names_the_build() {
        let v = version();
        assert!(v.starts_with(&format!("pylon {} (commit ", env!("CARGO_PKG_VERSION"))));
        assert!(v.contains("rustc "), "{v}");
        assert!(v.contains("Pingora 0.9."), "{v}");
        assert!(v.contains("features: proxy, lb, rustls"), "{v}");
    }
}
