//! CPU cost of signed host:port links: N rounds of making a token (as for
//! a WebHDFS redirect or a rewritten page link), of checking one (what a
//! signed request costs), or both.
//!
//!   cargo run --release --example link-signing-cost -- N [sign|verify|both]
//!
//! bench/link-signing.sh runs it under callgrind for two values of N and
//! prints instructions per round; the wall-clock figure printed here is only
//! indicative on a shared machine.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let mode = args.next().unwrap_or_else(|| "both".to_string());
    let (sign, verify) = match mode.as_str() {
        "sign" => (true, false),
        "verify" => (false, true),
        _ => (true, true),
    };
    let start = Instant::now();
    let sum = pylon::link_signing::cost_rounds(black_box(n), sign, verify);
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("{n} rounds ({mode}): {ns:.0} ns per round (checksum {sum})");
}
