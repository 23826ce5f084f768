#!/usr/bin/env python3
"""Instructions and syscalls per request, Pylon and nginx, independent of load.

Started by bench/count.sh. Each proxy runs with one worker under
`valgrind --tool=callgrind` (user-space instructions) and, separately, under
`strace -c -f` (syscalls), while a client outside both sends N sequential
keep-alive GETs of a 100 B file over one connection, through the proxy's
/rest-server/api route, to an nginx backend (also outside). Each measurement
runs for two values of N; the difference divided by the difference of N is
the cost of one request, with start-up, the first request and shutdown
subtracted out. Configurations are bench.py's: the same Pylon YAML, and the
same nginx proxy configuration with `master_process off` so that the one
process valgrind sees is the one that proxies.

Instruction counts do not depend on what else runs on the machine, so the
figures are comparable between runs on a busy machine (timed ones are not).
"""

import argparse
import http.client
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

PATH = "/rest-server/api/small"
BODY = 100


def client(port, n, deadline=120):
    """Connects (retrying until the proxy listens), then sends n keep-alive
    GETs on that one connection; every answer must be 200 with 100 bytes."""
    end = time.monotonic() + deadline
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=60)
            break
        except OSError:
            if time.monotonic() > end:
                raise RuntimeError(f"nothing listens on port {port}")
            time.sleep(0.2)
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.sock = sock
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(n):
        c.request("GET", PATH)
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or len(body) != BODY:
            raise RuntimeError(f"request {i}: {r.status}, {len(body)} bytes")
        if r.will_close:
            raise RuntimeError(f"request {i}: the proxy closed the connection")
    c.close()


def callgrind_total(path):
    for line in Path(path).read_text().splitlines():
        m = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if m:
            return int(m.group(1))
    raise RuntimeError(f"no total in {path}")


def strace_counts(path):
    """syscall name -> calls, from `strace -c` output."""
    out = {}
    for line in Path(path).read_text().splitlines():
        f = line.split()
        # % time, seconds, usecs/call, calls, [errors], syscall
        if len(f) >= 5 and re.match(r"^[\d.]+$", f[0]) and f[3].isdigit():
            out[f[-1]] = int(f[3])
    return out


class Run:
    def __init__(self, d, ports):
        self.dir = d
        self.ports = ports

    def argv(self, proxy):
        if proxy == "pylon":
            return [str(self.dir / "pylon"), "-c", str(self.dir / "pylon.yaml")], signal.SIGINT
        return ["nginx", "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)], signal.SIGQUIT

    def once(self, proxy, tool, n, out):
        argv, stop = self.argv(proxy)
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", self.ports[proxy])) == 0:
                raise RuntimeError(f"port {self.ports[proxy]} is taken: a proxy left running?")
        if tool == "callgrind":
            pre = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        else:
            pre = ["strace", "-c", "-f", "-o", str(out)]
        env = {k: v for k, v in os.environ.items() if k not in bench.ROUTE_ENV}
        env["RUST_LOG"] = "warn"
        err = open(self.dir / f"{proxy}-{tool}-{n}.stderr", "wb")
        p = subprocess.Popen(pre + argv, stdout=subprocess.DEVNULL, stderr=err,
                             env=env, cwd=self.dir)
        try:
            client(self.ports[proxy], n)
        finally:
            # strace detaches when signalled itself: stop the traced proxy
            # instead, and strace ends with it.
            target = p.pid
            if tool == "strace":
                kids = bench.children(p.pid)
                target = kids[0] if kids else p.pid
            os.kill(target, stop)
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            err.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs=2, default=[2000, 4000], metavar=("N1", "N2"),
                    help="the two request counts (default 2000 4000)")
    ap.add_argument("--repeat", type=int, default=3, metavar="R",
                    help="instruction counts: median of R pairs of runs (default 3)")
    ap.add_argument("--only", choices=["pylon", "nginx"], help="measure one proxy only")
    ap.add_argument("--no-strace", action="store_true", help="instructions only")
    ap.add_argument("--pylon", metavar="BIN", default=str(bench.PYLON_BIN),
                    help="the Pylon binary to measure (default target/release/pylon)")
    ap.add_argument("--keep", metavar="DIR",
                    help="keep the callgrind and strace files (for callgrind_annotate) in DIR")
    args = ap.parse_args()
    n1, n2 = args.n
    if n2 <= n1:
        ap.error("N2 must be larger than N1")

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    d = Path(tempfile.mkdtemp(prefix="pylon-count-", dir=base))
    d.chmod(0o755)
    www = d / "www"
    (www / "api").mkdir(parents=True)
    (www / "api" / "small").write_bytes(b"x" * BODY)
    for p in www.rglob("*"):
        p.chmod(0o777 if p.is_dir() else 0o644)
    ports = {k: bench.free_port() for k in ("backend", "nginx", "nginx+log", "pylon")}
    bp = ports["backend"]
    (d / "backend.conf").write_text(bench.backend_config(d, bp, www))
    conf = bench.nginx_proxy_config(d, ports["nginx"], ports["nginx+log"], bp)
    conf = conf.replace("master_process on;", "master_process off;")
    (d / "nginx.conf").write_text(conf)
    (d / "pylon.yaml").write_text(
        bench.pylon_config(d, "pylon", ports["pylon"], bp, "off", bench.free_port()))
    shutil.copy2(args.pylon, d / "pylon")

    backend = subprocess.Popen(["nginx", "-c", str(d / "backend.conf"), "-p", str(d)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxies = [args.only] if args.only else ["pylon", "nginx"]
    tools = ["callgrind"] + ([] if args.no_strace else ["strace"])
    res = {}
    try:
        bench.wait_ready(bp, "/api/small", None, "backend")
        run = Run(d, ports)
        for proxy in proxies:
            for tool in tools:
                if tool == "callgrind":
                    # Work that depends on wall time (timer ticks, how many
                    # polls find the upstream's answer already there) moves
                    # single pairs by about 2 %: take the median of R pairs.
                    per = []
                    for r in range(max(args.repeat, 1)):
                        vals = []
                        for n in (n1, n2):
                            out = d / f"{proxy}.{tool}.{n}.{r}.out"
                            bench.log(f"{proxy}: {n} requests under {tool} ({r + 1}/{args.repeat})")
                            run.once(proxy, tool, n, out)
                            try:
                                vals.append(callgrind_total(out))
                            except RuntimeError:
                                # a proxy that did not exit in time leaves no totals
                                bench.log(f"{proxy}: no totals in {out.name}; running it again")
                                run.once(proxy, tool, n, out)
                                vals.append(callgrind_total(out))
                        per.append((vals[1] - vals[0]) / (n2 - n1))
                    res[(proxy, "ir")] = statistics.median(per)
                    res[(proxy, "ir-range")] = (min(per), max(per))
                    continue
                vals = []
                for n in (n1, n2):
                    out = d / f"{proxy}.{tool}.{n}.out"
                    bench.log(f"{proxy}: {n} requests under {tool}")
                    run.once(proxy, tool, n, out)
                    vals.append(strace_counts(out))
                res[(proxy, "sys")] = {k: (vals[1].get(k, 0) - vals[0].get(k, 0)) / (n2 - n1)
                                       for k in set(vals[0]) | set(vals[1])}
        if args.keep:
            keep = Path(args.keep)
            keep.mkdir(parents=True, exist_ok=True)
            for f in d.glob("*.out"):
                shutil.copy2(f, keep / f.name)
            bench.log(f"kept the raw files in {keep}")
    finally:
        backend.send_signal(signal.SIGQUIT)
        backend.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)

    def fmt_sys(per):
        parts = sorted(((v, k) for k, v in per.items() if k != "total" and abs(v) >= 0.05),
                       reverse=True)
        return ", ".join(f"{v:.2f} {k}" for v, k in parts)

    print()
    print(f"Per request: 100 B keep-alive GET, sequential, one connection, "
          f"({n2} - {n1} requests) / {n2 - n1}")
    print()
    print("| per request | " + " | ".join(proxies)
          + (" | Pylon/nginx |" if len(proxies) == 2 else " |"))
    print("|---|" + "---:|" * (len(proxies) + (1 if len(proxies) == 2 else 0)))
    row = [f"{res[(p, 'ir')]:,.0f}" for p in proxies]
    if len(proxies) == 2:
        row.append(f"{res[('pylon', 'ir')] / res[('nginx', 'ir')]:.2f}")
    print("| user-space instructions (callgrind Ir) | " + " | ".join(row) + " |")
    spread = [f"{p} {res[(p, 'ir-range')][0]:,.0f}–{res[(p, 'ir-range')][1]:,.0f}"
              for p in proxies]
    if not args.no_strace:
        tot = {p: sum(v for k, v in res[(p, "sys")].items() if k != "total") for p in proxies}
        row = [f"{tot[p]:.2f}" for p in proxies]
        if len(proxies) == 2:
            row.append(f"{tot['pylon'] / tot['nginx']:.2f}" if tot["nginx"] else "—")
        print("| syscalls (strace -c -f) | " + " | ".join(row) + " |")
        print()
        for p in proxies:
            print(f"{p} syscalls per request: {fmt_sys(res[(p, 'sys')])}")
    print()
    print(f"Instructions, range of the {args.repeat} pairs: " + "; ".join(spread))


if __name__ == "__main__":
    main()
