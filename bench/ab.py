#!/usr/bin/env python3
"""Two Pylon binaries side by side with nginx, in bench.py's topology.

    python3 bench/ab.py --before path/to/old/pylon [--rounds 8]

Starts bench.py's backend and nginx, Pylon from target/release/pylon
("after") and the binary given with --before, each with the same YAML
(one worker, pinned to the proxy core), and alternates `wrk -t1 -c64` 3 s
saturation runs of the 100 B keep-alive route over the three, in reversed
order every other round. Prints each run and the medians: CPU per request
and req/s, each Pylon against nginx and after against before. Runs that
other processes disturbed are repeated, as in bench.py.

On this VM a single proxy's CPU per request moves by up to ±25 % between
runs a few seconds apart; the pairs of adjacent runs are what compare the
binaries. About 2 minutes for 8 rounds; docs/ is left alone.
"""

import argparse
import os
import shutil
import signal
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True, metavar="BIN", help="the Pylon binary to compare with")
    ap.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    a = ap.parse_args()
    args = argparse.Namespace(rounds=1, secs=3, open_secs=4, extra_rounds=0, retries=3,
                              max_wait=60, no_profile=True, only_memory=False, no_docs=True,
                              keep=False, started=None, command=None, render=None)
    b = bench.Bench(args)
    try:
        b.start()
        port = bench.free_port()
        yaml = b.dir / "pylon-before.yaml"
        yaml.write_text(bench.pylon_config(b.dir, "pylon-before", port, b.ports["backend"], "off",
                                           bench.free_port()))
        env = {k: v for k, v in os.environ.items() if k not in bench.ROUTE_ENV}
        env["RUST_LOG"] = "warn"
        binary = b.dir / "pylon-before"
        shutil.copy2(a.before, binary)
        before = b.spawn("pylon-before", [str(binary), "-c", str(yaml)], bench.PROXY_CORE,
                         stop_signal=signal.SIGINT, env=env)
        b.targets["pylon-before"] = (port, "/rest-server/api", before)
        bench.wait_ready(port, "/rest-server/api/small", before, "pylon-before")
        targets = ["pylon", "pylon-before", "nginx"]
        cpu = {t: [] for t in targets}
        rps = {t: [] for t in targets}
        for t in targets:
            bench.wrk(b.url(t, "/small"), 64, 1)  # warm-up
        for r in range(a.rounds):
            for t in b.order(targets, r):
                run = b.saturate(t, "small")
                cpu[t].append(run["cpu_us_per_req"])
                rps[t].append(run["rps"])
                print(f"round {r}: {t:13} {run['cpu_us_per_req']:6.2f} µs/req "
                      f"{run['rps']:8.0f} req/s", flush=True)
        c = {t: statistics.median(v) for t, v in cpu.items()}
        q = {t: statistics.median(v) for t, v in rps.items()}
        for t in targets:
            print(f"{t:13} CPU {c[t]:6.2f} µs/req (range {min(cpu[t]):.2f}–{max(cpu[t]):.2f}), "
                  f"{q[t]:,.0f} req/s")
        wins = sum(n < o for n, o in zip(cpu["pylon"], cpu["pylon-before"]))
        print(f"CPU per request: after/nginx {c['pylon'] / c['nginx']:.2f}, "
              f"before/nginx {c['pylon-before'] / c['nginx']:.2f}, "
              f"after/before {c['pylon'] / c['pylon-before']:.2f} "
              f"(after lower in {wins} of {a.rounds} rounds)")
        print(f"req/s: after/nginx {q['pylon'] / q['nginx']:.2f}, "
              f"before/nginx {q['pylon-before'] / q['nginx']:.2f}")
    finally:
        b.stop()


if __name__ == "__main__":
    main()
