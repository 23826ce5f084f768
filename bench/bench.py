#!/usr/bin/env python3
"""Pylon benchmark: direct vs nginx vs HAProxy vs Pylon on one machine.

Started by bench/run.sh, which installs the tools and builds the binaries.
Every proxy gets one worker pinned to PROXY_CORE; the backend (nginx serving
static files) and the load generators share LOAD_CORE, so the proxy's core
does nothing but proxy and its CPU time per request can be read from
/proc/<pid>/stat.

Each measurement is repeated ROUNDS times with the targets in alternating
order (A B C D, then D C B A, ...), so slow drift of the machine hits every
target alike; the median of the rounds is reported.

Writes: the table on stdout, docs/benchmarks.svg, the generated section of
docs/benchmarks.md (between the bench:results markers) and the raw figures
as JSON in bench/.results/.
"""

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import resource
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
import chart  # noqa: E402
import hotpath  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
PYLON_BIN = REPO / "target" / "release" / "pylon"
LOADGEN_BIN = BENCH / "loadgen" / "target" / "release" / "pylon-bench-loadgen"
DOC = REPO / "docs" / "benchmarks.md"
SVG = REPO / "docs" / "benchmarks.svg"
BEGIN = "<!-- bench:results:begin -->"
END = "<!-- bench:results:end -->"

PROXY_CORE = "1"
# A run is repeated when other processes used more than this share of a core.
FOREIGN_MAX = 0.05
LOAD_CORE = "0"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SIZES = {"small": 100, "medium": 16 * 1024, "large": 1024 * 1024}
# Enough connections to keep one worker busy; fewer for 1 MiB bodies, where
# more would only grow socket buffers.
SAT_CONNS = {"small": 64, "medium": 64, "large": 16, "close": 64}
OPEN_CONNS = 32
UPLOAD_BYTES = 1 << 30
HOLD_CONNS = 1000
# Seconds after the held connections close before RSS is read again.
CLOSED_WAIT = 2
PORTAL_PAGE = "/portal.js"
PORTAL_BYTES = 1024 * 1024

# The web portal embeds the services' internal URIs; the original Pylon
# rewrote them to its public prefixes with sub_filter (one rule per service).
REWRITES = [
    ("http://10.0.3.9:9186", "/rest-server"),
    ("http://10.0.3.9:8080", "/kubernetes"),
    ("http://10.0.1.9:9091/prometheus", "/prometheus"),
    ("http://10.0.3.9:9090", "/kubernetes-dashboard"),
    ("http://10.0.1.9:3000", "/grafana"),
    ("http://10.0.3.9:8088", "/yarn"),
    ("http://10.0.1.9:9093/alert-manager", "/alert-manager"),
]

# ---- Pylon body rewriting ---------------------------------------------------
# The portal route gets the same 7 literal substitutions as nginx's
# sub_filter, through Pylon's per-route `rewrite:` list (pylon_rewrite_yaml()),
# and the correctness check requires every internal URI to be gone from
# Pylon's answer before the row is measured. Set to False to leave Pylon out
# of that row (for a build without `rewrite:`); the row then reads
# "not implemented".
PYLON_REWRITE = True

# Standard route variables would silently override the benchmark's upstreams.
ROUTE_ENV = (
    "REST_SERVER_URI", "K8S_API_SERVER_URI", "WEBHDFS_URI", "PROMETHEUS_URI",
    "K8S_DASHBOARD_URI", "YARN_WEB_PORTAL_URI", "GRAFANA_URI", "PAI_WEB_PORTAL_URI",
)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- processes

def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime + stime, all threads
    return total / CLK_TCK


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def other_processes_cpu():
    """CPU seconds (own plus reaped children) of every process that is not
    this script or one of its descendants, keyed by (pid, start time)."""
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        f = stat[stat.rindex(")") + 2:].split()
        stats[int(d)] = (int(f[1]), int(f[19]), sum(int(x) for x in f[11:15]))
    kids = {}
    for pid, (ppid, _, _) in stats.items():
        kids.setdefault(ppid, []).append(pid)
    ours, todo = set(), [os.getpid()]
    while todo:
        pid = todo.pop()
        ours.add(pid)
        todo.extend(kids.get(pid, []))
    return {(pid, start): ticks / CLK_TCK
            for pid, (_, start, ticks) in stats.items() if pid not in ours}


def core_busy():
    """Busy and steal seconds per core, to spot interference from other load."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            v = [int(x) for x in m.group(2).split()]
            user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
            out[m.group(1)] = ((user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK)
    return out


class Proc:
    """A server started on one core. For nginx the serving process is the
    single worker; its master only forks and handles signals."""

    def __init__(self, name, argv, core, workdir, stop_signal=signal.SIGTERM,
                 stdout=None, env=None, forks_worker=False):
        self.name = name
        self.stop_signal = stop_signal
        self.forks_worker = forks_worker
        self.err = open(workdir / f"{name}.stderr", "wb")
        self.popen = subprocess.Popen(
            ["taskset", "-c", core] + argv,
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
            stderr=self.err, env=env, cwd=workdir)

    def pids(self):
        return [self.popen.pid] + children(self.popen.pid)

    def serving_pid(self):
        if self.forks_worker:
            kids = children(self.popen.pid)
            if len(kids) != 1:
                raise RuntimeError(f"{self.name}: expected one worker, found {kids}")
            return kids[0]
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def stop(self):
        if self.alive():
            self.popen.send_signal(self.stop_signal)
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.err.close()


# ---------------------------------------------------------------- configs

def nginx_common(workdir, name):
    user = "user root;\n" if os.geteuid() == 0 else ""
    tmp = workdir / f"{name}-tmp"
    tmp.mkdir(exist_ok=True)
    return f"""{user}daemon off;
master_process on;
worker_processes 1;
pid {workdir}/{name}.pid;
error_log {workdir}/{name}.error.log warn;
"""


def nginx_temp_paths(workdir, name):
    tmp = workdir / f"{name}-tmp"
    return "\n".join(
        f"    {d}_temp_path {tmp}/{d};"
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))


def backend_config(workdir, port, www):
    return nginx_common(workdir, "backend") + f"""
events {{ worker_connections 65536; }}
http {{
{nginx_temp_paths(workdir, "backend")}
    access_log off;
    default_type application/octet-stream;
    types {{ application/javascript js; }}
    sendfile on;
    tcp_nopush on;
    open_file_cache max=64 inactive=3600s;
    open_file_cache_valid 3600s;
    # The proxies' pooled connections must not be cut every 1000 requests.
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {www};
        location = /__status {{ stub_status; }}
        # 1 GiB upload sink: the answer comes only after the whole body.
        location = /api/upload {{
            dav_methods PUT;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }}
    }}
}}
"""


def nginx_locations(backend):
    subs = "\n".join(f"        sub_filter '{a}' '{b}';" for a, b in REWRITES)
    return f"""
    location = /healthz {{ default_type text/plain; return 200 "Pylon ready."; }}

    # The original's REST route, plus the forwarded headers Pylon also sends
    # (so both proxies send the same request upstream) and upstream
    # keep-alive (HTTP/1.1, empty Connection), nginx's best setting.
    location ~ ^/rest-server/api(.*)$ {{
        proxy_pass http://rest_server/api$1$is_args$args;
        proxy_redirect http://{backend}/api http://$http_host/rest-server/api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {backend};
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header X-Forwarded-Prefix /rest-server;
    }}

    # The original's web-portal catch-all with its sub_filter rewriting.
    location ~ ^(.*)$ {{
        proxy_pass http://portal$1$is_args$args;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {backend};
        proxy_set_header Accept-Encoding "";
        sub_filter_types *;
        sub_filter_once off;
{subs}
    }}
"""


def nginx_proxy_config(workdir, port, log_port, backend_port):
    backend = f"127.0.0.1:{backend_port}"
    (workdir / "nginx-locations.conf").write_text(nginx_locations(backend))
    return nginx_common(workdir, "nginx") + f"""
# The original had 1024; 1,000 held client connections plus pooled upstream
# connections need more.
events {{ worker_connections 4096; }}
http {{
{nginx_temp_paths(workdir, "nginx")}
    default_type application/octet-stream;
    # The original's server-level settings.
    client_max_body_size 0;
    client_body_buffer_size 256m;
    proxy_connect_timeout 60m;
    proxy_send_timeout 60m;
    proxy_read_timeout 60m;
    send_timeout 60m;
    keepalive_timeout 65;
    # nginx closes a client connection after 1000 requests by default (100
    # in the original's 1.13); Pylon has no such limit.
    keepalive_requests 100000000;

    upstream rest_server {{
        server {backend};
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}
    upstream portal {{
        server {backend};
        keepalive 128;
        keepalive_requests 100000000;
        keepalive_timeout 600s;
    }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log off;
        include {workdir}/nginx-locations.conf;
    }}
    # Same routes with the original's access log (combined, to stdout).
    server {{
        listen 127.0.0.1:{log_port} backlog=4096;
        access_log /dev/stdout combined;
        include {workdir}/nginx-locations.conf;
    }}
}}
"""


def haproxy_config(port, backend_port):
    backend = f"127.0.0.1:{backend_port}"
    return f"""global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 10s
    timeout client 3600s
    timeout server 3600s
    timeout http-keep-alive 65s
    timeout http-request 60s
    option http-keep-alive
    # Reuse idle server connections across clients (HAProxy's best setting).
    http-reuse always

frontend pylon
    bind 127.0.0.1:{port}
    maxconn 4096
    use_backend rest_server if {{ path_beg /rest-server/ }}
    default_backend portal

backend rest_server
    # The same request upstream as nginx and Pylon send.
    option forwardfor
    http-request set-header X-Real-IP %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header X-Forwarded-Prefix /rest-server
    http-request replace-path ^/rest-server(/.*)$ \\1
    http-request set-header Host {backend}
    server backend {backend}

backend portal
    server backend {backend}
"""


def pylon_rewrite_yaml():
    # portal_rewrite off: it would add a rule per other route's upstream, and
    # nginx gets exactly these 7; types "*" as nginx's sub_filter_types *.
    lines = ["      portal_rewrite: false", '      rewrite_types: ["*"]', "      rewrite:"]
    for a, b in REWRITES:
        lines.append(f'        - {{pattern: "{a}", replacement: "{b}"}}')
    return "\n".join(lines) + "\n"


def pylon_config(workdir, name, port, backend_port, access_log, admin_port):
    portal_extra = pylon_rewrite_yaml() if PYLON_REWRITE else ""
    return f"""version: 1
threads: 1
pid_file: {workdir}/{name}.pid
upgrade_sock: {workdir}/{name}-upgrade.sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
upstream_keepalive_pool_size: 128
pylon:
  listen: ["127.0.0.1:{port}"]
  # Its own port: the default (9191) would clash between the two instances.
  admin_listen: "127.0.0.1:{admin_port}"
  access_log: "{access_log}"
  routes:
    rest-server:
      upstream: "http://127.0.0.1:{backend_port}"
    portal:
      upstream: "http://127.0.0.1:{backend_port}"
{portal_extra}"""


def portal_page():
    """About 1 MiB of portal JavaScript with an internal URI every ~2 KiB."""
    parts, i = [], 0
    size = 0
    while size < PORTAL_BYTES:
        uri = REWRITES[i % len(REWRITES)][0]
        chunk = (f'/* view {i} */ window.__cfg{i} = {{"endpoint":"{uri}/api/v1/item/{i}",'
                 f'"title":"{"lorem ipsum dolor sit amet " * 70}"}};\n')
        parts.append(chunk)
        size += len(chunk)
        i += 1
    return "".join(parts).encode()[:PORTAL_BYTES]


# ---------------------------------------------------------------- clients

def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_ready(port, path, proc, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{what} exited; see {proc.err.name}")
        try:
            status, _ = http_get(port, path, timeout=1)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready on port {port}")


def backend_accepts(backend_port):
    _, body = http_get(backend_port, "/__status")
    m = re.search(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)", body)
    return int(m.group(1))


def wrk(url, conns, secs, close=False):
    cmd = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{conns}", f"-d{secs}s",
           "--timeout", "10s", url]
    if close:
        cmd[5:5] = ["-H", "Connection: close"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30)
    out = p.stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m or not rps:
        raise RuntimeError(f"wrk {url} failed: {out}{p.stderr}".strip())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "requests": int(m.group(1)),
        "rps": float(rps.group(1)),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": [int(x) for x in sock.groups()] if sock else [0, 0, 0, 0],
    }


def loadgen(*args, timeout=120):
    cmd = ["taskset", "-c", LOAD_CORE, str(LOADGEN_BIN)] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"loadgen {args[0]} failed: {p.stderr.strip()}")
    return json.loads(p.stdout)


# ---------------------------------------------------------------- the bench

class Bench:
    def __init__(self, args):
        self.args = args
        self.rounds = args.rounds
        self.secs = args.secs
        self.procs = []
        self.raw = {"runs": []}
        self.med = {}
        self.started = time.time()
        self.finished = None

    # -- setup ---------------------------------------------------------------

    def start(self):
        base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
        self.dir = Path(tempfile.mkdtemp(prefix="pylon-bench-", dir=base))
        # nginx workers may run unprivileged; let them read the files.
        self.dir.chmod(0o755)
        www = self.dir / "www"
        (www / "api").mkdir(parents=True)
        for name, size in SIZES.items():
            (www / "api" / name).write_bytes(b"x" * size)
        self.portal = portal_page()
        (www / PORTAL_PAGE.lstrip("/")).write_bytes(self.portal)
        for p in www.rglob("*"):
            p.chmod(0o777 if p.is_dir() else 0o644)

        self.ports = {k: free_port() for k in
                      ("backend", "nginx", "nginx+log", "haproxy", "pylon", "pylon+log")}
        bp = self.ports["backend"]
        (self.dir / "backend.conf").write_text(backend_config(self.dir, bp, www))
        (self.dir / "nginx.conf").write_text(
            nginx_proxy_config(self.dir, self.ports["nginx"], self.ports["nginx+log"], bp))
        (self.dir / "haproxy.cfg").write_text(haproxy_config(self.ports["haproxy"], bp))
        for name, fmt in (("pylon", "off"), ("pylon+log", "combined")):
            (self.dir / f"{name}.yaml").write_text(
                pylon_config(self.dir, name.replace("+", "-"), self.ports[name], bp, fmt, free_port()))

        self.backend = self.spawn("backend", ["nginx", "-c", str(self.dir / "backend.conf"),
                                              "-p", str(self.dir)], LOAD_CORE, forks_worker=True)
        nginx = self.spawn("nginx", ["nginx", "-c", str(self.dir / "nginx.conf"),
                                     "-p", str(self.dir)], PROXY_CORE, forks_worker=True)
        haproxy = self.spawn("haproxy", ["haproxy", "-db", "-f", str(self.dir / "haproxy.cfg")],
                             PROXY_CORE, stop_signal=signal.SIGUSR1)
        # A private copy: a rebuild during the run must not change the binary
        # being measured, nor the one perf reads symbols from.
        pylon_bin = self.dir / "pylon"
        shutil.copy2(PYLON_BIN, pylon_bin)
        env = {k: v for k, v in os.environ.items() if k not in ROUTE_ENV}
        env["RUST_LOG"] = "warn"
        pylon = self.spawn("pylon", [str(pylon_bin), "-c", str(self.dir / "pylon.yaml")],
                           PROXY_CORE, stop_signal=signal.SIGINT, env=env)
        pylon_log = self.spawn("pylon-log", [str(pylon_bin), "-c", str(self.dir / "pylon+log.yaml")],
                               PROXY_CORE, stop_signal=signal.SIGINT, env=env)

        # name -> (port, path prefix, process doing the proxying)
        self.targets = {
            "direct": (bp, "/api", None),
            "nginx": (self.ports["nginx"], "/rest-server/api", nginx),
            "haproxy": (self.ports["haproxy"], "/rest-server/api", haproxy),
            "pylon": (self.ports["pylon"], "/rest-server/api", pylon),
            "nginx+log": (self.ports["nginx+log"], "/rest-server/api", nginx),
            "pylon+log": (self.ports["pylon+log"], "/rest-server/api", pylon_log),
        }
        wait_ready(bp, "/api/small", self.backend, "backend")
        for name, (port, prefix, proc) in self.targets.items():
            wait_ready(port, prefix + "/small", proc, name)

    def spawn(self, name, argv, core, **kw):
        p = Proc(name, argv, core, self.dir, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            p.stop()
        if getattr(self, "dir", None) and not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def check(self):
        """Every target must answer every request of the benchmark correctly
        before any figure is taken."""
        for name, (port, prefix, _) in self.targets.items():
            for size_name, size in SIZES.items():
                status, body = http_get(port, f"{prefix}/{size_name}")
                if status != 200 or len(body) != size:
                    raise RuntimeError(f"{name}: {prefix}/{size_name} gave {status}, "
                                       f"{len(body)} bytes (want 200, {size})")
        internal = [a.encode() for a, _ in REWRITES]
        status, body = http_get(self.ports["nginx"], PORTAL_PAGE)
        if status != 200 or any(u in body for u in internal) or b"/rest-server/api/v1" not in body:
            raise RuntimeError("nginx sub_filter did not rewrite the portal page")
        status, body = http_get(self.ports["pylon"], PORTAL_PAGE)
        if status != 200:
            raise RuntimeError(f"pylon: portal page gave {status}")
        if PYLON_REWRITE and any(u in body for u in internal):
            raise RuntimeError("pylon: internal URIs left in the portal page")

    def pids(self, target):
        proc = self.targets[target][2] or self.backend
        return proc.pids()

    def serving(self, target):
        proc = self.targets[target][2] or self.backend
        return proc.serving_pid()

    def url(self, target, path):
        port, prefix, _ = self.targets[target]
        return f"http://127.0.0.1:{port}{prefix}{path}"

    def order(self, targets, r):
        return list(targets) if r % 2 == 0 else list(reversed(targets))

    def record(self, metric, target, value):
        self.raw.setdefault(metric, {}).setdefault(target, []).append(value)

    # -- measurements ----------------------------------------------------------

    # -- interference --------------------------------------------------------
    # The machine may be shared: a run during which anything but the
    # benchmark's own processes used a noticeable share of either core is
    # repeated, after waiting for the machine to be quiet.

    def snapshot(self, target):
        own = 0.0 if target == "direct" else cpu_seconds(self.pids(target))
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"t": time.monotonic(), "busy": core_busy(), "proxy": own,
                "backend": cpu_seconds(self.backend.pids()), "load": kids.ru_utime + kids.ru_stime,
                "others": other_processes_cpu()}

    @staticmethod
    def foreign(s0, s1):
        """Share of a core used by processes outside the benchmark's own tree
        (kernel threads included) between two snapshots."""
        wall = s1["t"] - s0["t"]
        used = sum(v - s0["others"].get(k, 0.0) for k, v in s1["others"].items())
        return max(used, 0.0) / wall

    def wait_quiet(self):
        waited = 0.0
        while True:
            s0 = self.snapshot("direct")
            time.sleep(0.25)
            s1 = self.snapshot("direct")
            if self.foreign(s0, s1) < FOREIGN_MAX:
                break
            if waited >= self.args.max_wait:
                log(f"  machine still busy after {waited:.0f} s of waiting; measuring anyway")
                break
            time.sleep(1.0)
            waited += 1.25
        self.raw["waited_s"] = self.raw.get("waited_s", 0.0) + waited

    def clean(self, label, target, fn):
        """Runs fn() until no foreign load disturbed it (or retries run out);
        returns its result and the counter snapshots around the kept run."""
        for attempt in range(1 + self.args.retries):
            self.wait_quiet()
            s0 = self.snapshot(target)
            res = fn()
            s1 = self.snapshot(target)
            f = self.foreign(s0, s1)
            if f < FOREIGN_MAX:
                break
            self.raw["repeated"] = self.raw.get("repeated", 0) + 1
            log(f"  {label} on {target}: {f:.0%} of a core used by other processes; repeating")
        res["foreign_share"] = f
        return res, s0, s1

    # -- measurements ----------------------------------------------------------

    def saturate(self, target, case, url=None, conns=None, secs=None):
        size = "small" if case in ("close", "log") else case
        url = url or self.url(target, f"/{size}")
        conns = conns or SAT_CONNS.get(case, 64)
        secs = secs or self.secs

        def once():
            acc0 = backend_accepts(self.ports["backend"])
            w = wrk(url, conns, secs, close=(case == "close"))
            w["new_backend_conns"] = backend_accepts(self.ports["backend"]) - acc0 - 1
            return w

        w, s0, s1 = self.clean(case, target, once)
        proc = self.targets[target][2] if target in self.targets else None
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{target} died; see {proc.err.name}")
        if w["non2xx"]:
            raise RuntimeError(f"{target} {case}: {w['non2xx']} non-2xx answers")
        wall = s1["t"] - s0["t"]
        cpu = (s1["backend"] - s0["backend"]) if target == "direct" else (s1["proxy"] - s0["proxy"])
        run = {
            "case": case, "target": target, "rps": w["rps"], "requests": w["requests"],
            "cpu_s": cpu, "cpu_us_per_req": cpu / w["requests"] * 1e6,
            "proxy_busy": cpu / wall,
            "backend_cpu_us_per_req": (s1["backend"] - s0["backend"]) / w["requests"] * 1e6,
            "load_cpu_us_per_req": (s1["load"] - s0["load"]) / w["requests"] * 1e6,
            "backend_conns_per_1k": w["new_backend_conns"] / w["requests"] * 1000,
            "socket_errors": w["socket_errors"],
            "foreign_share": w["foreign_share"],
            "steal_s": sum(s1["busy"][k][1] - s0["busy"][k][1] for k in s1["busy"]),
            "wall_s": wall,
        }
        self.raw["runs"].append(run)
        return run

    def rounds_of(self, label, targets, measure, key):
        """Runs measure(target, round) over the alternating rounds; when a
        target's results disagree (max/min of key over 1.2, which this
        machine's host produces now and then for a minute), adds rounds, up
        to --extra-rounds, so the median stays with the majority."""
        r = 0
        while True:
            for t in self.order(targets, r):
                measure(t, r)
            r += 1
            if r < self.rounds:
                continue
            spread = max(max(v) / min(v) for v in (self.raw[key][t] for t in targets))
            if spread <= 1.2 or r >= self.rounds + self.args.extra_rounds:
                break
            self.raw["extra_rounds"] = self.raw.get("extra_rounds", 0) + 1
            log(f"  {label}: results differ by {spread - 1:.0%} between rounds; one more round")

    def saturation_cases(self):
        targets = ["direct", "nginx", "haproxy", "pylon"]
        for case in ("small", "medium", "large", "close"):
            def measure(t, r, case=case):
                run = self.saturate(t, case)
                self.record(f"rps.{case}", t, run["rps"])
                self.record(f"cpu.{case}", t, run["cpu_us_per_req"])
                self.record(f"busy.{case}", t, run["proxy_busy"])
                self.record(f"upconn.{case}", t, run["backend_conns_per_1k"])
            self.rounds_of(case, targets, measure, f"rps.{case}")
            log(f"  {case:6}: " + ", ".join(
                f"{t} {statistics.median(self.raw[f'rps.{case}'][t]):,.0f} rps" for t in targets))

    def logging_case(self):
        targets = ["nginx", "nginx+log", "pylon", "pylon+log"]

        def measure(t, r):
            run = self.saturate(t, "log")
            self.record("rps.log", t, run["rps"])
            self.record("cpu.log", t, run["cpu_us_per_req"])
        self.rounds_of("access log", targets, measure, "rps.log")
        log("  access log: " + ", ".join(
            f"{t} {statistics.median(self.raw['rps.log'][t]):,.0f} rps" for t in targets))

    def open_loop(self):
        # Half of what nginx sustains, and a quarter of it: a load every
        # proxy here can carry, so that one row is latency and not queueing
        # even for the slowest proxy.
        nginx_max = statistics.median(self.raw["rps.small"]["nginx"])
        targets = ["direct", "nginx", "haproxy", "pylon"]
        for key, share in (("lat", 0.5), ("lat25", 0.25)):
            rate = round(nginx_max * share, -2)
            self.raw[f"{key}_rate"] = rate
            for r in range(self.rounds):
                for t in self.order(targets, r):
                    port, prefix, _ = self.targets[t]
                    res, s0, s1 = self.clean("open loop", t, lambda: loadgen(
                        "rate", "--addr", f"127.0.0.1:{port}", "--path", f"{prefix}/small",
                        "--rate", rate, "--conns", OPEN_CONNS,
                        "--secs", self.args.open_secs + 1, "--warmup", 1,
                        timeout=self.args.open_secs + 120))
                    if res["errors"] or res["bad_status"]:
                        raise RuntimeError(f"{t}: open-loop errors {res}")
                    cpu = (s1["backend"] - s0["backend"]) if t == "direct" else (s1["proxy"] - s0["proxy"])
                    res.update(target=t, case=f"open {share:.0%}", rate=rate,
                               cpu_us_per_req=cpu / max(res["answered"], 1) * 1e6)
                    self.raw["runs"].append(res)
                    self.record(f"{key}.cpu", t, res["cpu_us_per_req"])
                    for q in ("p50", "p90", "p99", "p999"):
                        self.record(f"{key}.{q}", t, res[f"{q}_us"])
            log(f"  open loop at {rate:,.0f} req/s: " + ", ".join(
                f"{t} p50 {statistics.median(self.raw[f'{key}.p50'][t]):,.0f} µs "
                f"p99 {statistics.median(self.raw[f'{key}.p99'][t]):,.0f} µs" for t in targets))

    def rewrite(self):
        targets = ["nginx"] + (["pylon"] if PYLON_REWRITE else [])

        def measure(t, r):
            url = f"http://127.0.0.1:{self.targets[t][0]}{PORTAL_PAGE}"
            run = self.saturate(t, "rewrite", url=url, conns=8)
            mb = run["rps"] * PORTAL_BYTES / 1e6
            self.record("rewrite.mbps", t, mb)
            self.record("rewrite.mbps_core", t, mb / run["proxy_busy"])
        self.rounds_of("body rewrite", targets, measure, "rewrite.mbps_core")
        log("  body rewrite: " + ", ".join(
            f"{t} {statistics.median(self.raw['rewrite.mbps_core'][t]):,.0f} MB/s per core"
            for t in targets))

    def upload(self):
        targets = ["direct", "nginx", "haproxy", "pylon"]
        for r in range(self.rounds):
            for t in self.order(targets, r):
                port, prefix, _ = self.targets[t]
                pids, spid = self.pids(t), self.serving(t)
                self.wait_quiet()
                c0 = cpu_seconds(pids)
                cmd = ["taskset", "-c", LOAD_CORE, str(LOADGEN_BIN), "upload",
                       "--addr", f"127.0.0.1:{port}", "--path", f"{prefix}/upload",
                       "--bytes", str(UPLOAD_BYTES)]
                p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                peak = rss_mib(spid)
                deadline = time.monotonic() + 300
                while p.poll() is None:
                    peak = max(peak, rss_mib(spid))
                    if time.monotonic() > deadline:
                        p.kill()
                        raise RuntimeError(f"{t}: 1 GiB upload took over 300 s")
                    time.sleep(0.02)
                out, err = p.communicate()
                if p.returncode != 0:
                    raise RuntimeError(f"{t}: upload failed: {err.strip()}")
                res = json.loads(out)
                if not 200 <= res["status"] < 300:
                    raise RuntimeError(f"{t}: upload answered {res['status']}")
                cpu = cpu_seconds(pids) - c0
                res.update(target=t, case="upload", cpu_s=cpu, rss_peak_mib=peak)
                self.raw["runs"].append(res)
                self.record("upload.mbps", t, UPLOAD_BYTES / res["secs"] / 1e6)
                self.record("upload.cpu", t, cpu)
                self.record("upload.rss", t, peak)
        log("  1 GiB upload: " + ", ".join(
            f"{t} {statistics.median(self.raw['upload.mbps'][t]):,.0f} MB/s" for t in targets))

    def memory(self, label):
        for t in ("nginx", "haproxy", "pylon"):
            self.record(f"rss.{label}", t, rss_mib(self.serving(t)))
        self.raw.setdefault("nginx_master_rss", []).append(rss_mib(self.targets["nginx"][2].popen.pid))

    def hold(self):
        """RSS with HOLD_CONNS client connections open, idle after one
        keep-alive request or stalled in the middle of a request head, and
        RSS again once they have been closed for CLOSED_WAIT seconds."""
        targets = ["nginx", "haproxy", "pylon"]
        for r in range(self.rounds):
            for t in self.order(targets, r):
                port, prefix, _ = self.targets[t]
                for case, heads in (("hold", 0), ("heads", HOLD_CONNS)):
                    self.wait_quiet()
                    before = rss_mib(self.serving(t))
                    p = subprocess.Popen(
                        ["taskset", "-c", LOAD_CORE, str(LOADGEN_BIN), "hold",
                         "--addr", f"127.0.0.1:{port}", "--path", f"{prefix}/small",
                         "--conns", str(HOLD_CONNS), "--heads", str(heads)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                    res = json.loads(p.stdout.readline())
                    time.sleep(0.3)
                    rss = rss_mib(self.serving(t))
                    p.stdin.close()
                    p.wait(timeout=30)
                    if res["held"] != HOLD_CONNS:
                        raise RuntimeError(f"{t}: held only {res['held']} connections")
                    self.record(f"rss.{case}", t, rss)
                    self.record(f"kib.{case}", t, (rss - before) * 1024 / HOLD_CONNS)
                    time.sleep(CLOSED_WAIT)
                    self.record(f"rss.{case}_closed", t, rss_mib(self.serving(t)))
        log("  RSS with 1,000 connections: " + ", ".join(
            f"{t} {statistics.median(self.raw['rss.hold'][t]):.1f} MiB" for t in targets))
        log("  KiB per idle keep-alive connection: " + ", ".join(
            f"{t} {statistics.median(self.raw['kib.hold'][t]):.1f}" for t in targets))
        log("  KiB per stalled request head: " + ", ".join(
            f"{t} {statistics.median(self.raw['kib.heads'][t]):.1f}" for t in targets))
        log(f"  RSS {CLOSED_WAIT} s after they closed: " + ", ".join(
            f"{t} {statistics.median(self.raw['rss.hold_closed'][t]):.1f} MiB" for t in targets))

    def profile(self):
        """perf samples with call stacks of Pylon in the 100 B keep-alive case,
        folded by bench/profile.py."""
        if self.args.no_profile or not shutil.which("perf"):
            self.raw["profile"] = None
            return
        data = self.dir / "perf.data"
        pid = str(self.serving("pylon"))
        self.wait_quiet()
        rec = subprocess.Popen(["perf", "record", "--no-buildid-cache", "-e", "cpu-clock", "-F", "999",
                                "--call-graph", "dwarf,16384", "-p", pid, "-o", str(data),
                                "--", "sleep", str(self.secs)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.3)
        wrk(self.url("pylon", "/small"), SAT_CONNS["small"], self.secs)
        _, err = rec.communicate(timeout=60)
        if rec.returncode != 0 or not data.exists():
            self.raw["profile"] = {"error": err.decode(errors="replace").strip()[-300:]}
            log("  perf record failed; no profile")
            return
        try:
            result = hotpath.analyse(data)
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            result = {"error": f"analysis failed: {e}"}
        data.unlink()
        self.raw["profile"] = result or {"error": "no samples"}
        if result and "groups" in result:
            log("  profile: " + ", ".join(f"{g} {p:.0f}%" for g, p in result["groups"][:4]))

    # -- run -------------------------------------------------------------------

    def run(self):
        log(f"work dir {self.dir}; {self.rounds} rounds, {self.secs} s per saturation run")
        self.check()
        self.memory("idle")
        if self.args.only_memory:
            log("memory")
            self.hold()
            self.memory("after")
            self.medians()
            return
        for t in ("direct", "nginx", "haproxy", "pylon", "nginx+log", "pylon+log"):
            wrk(self.url(t, "/small"), 64, 1)
        log("saturation with keep-alive (wrk, 1 thread) and with a new connection per request")
        self.saturation_cases()
        log("access log on vs off")
        self.logging_case()
        log("latency at a fixed rate (open loop)")
        self.open_loop()
        log("body rewriting on the portal route")
        self.rewrite()
        log("1 GiB upload")
        self.upload()
        log("memory")
        self.hold()
        self.memory("after")
        log("profile")
        self.profile()
        self.medians()

    def medians(self):
        for metric, per_target in self.raw.items():
            if isinstance(per_target, dict) and metric not in ("profile",):
                self.med[metric] = {t: statistics.median(v) for t, v in per_target.items()
                                    if isinstance(v, list) and v}


# ---------------------------------------------------------------- reporting

def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) / 1024 / 1024

    def version(cmd, pattern):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            m = re.search(pattern, p.stdout + p.stderr)
            return m.group(1) if m else "?"
        except OSError:
            return "?"

    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    git = os.environ.get("PYLON_BENCH_COMMIT") or subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True, text=True).stdout.strip() or "?"
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "mem_gib": round(mem, 1), "debian": debian,
        "nginx": version(["nginx", "-v"], r"nginx/(\S+)"),
        "haproxy": version(["haproxy", "-v"], r"version (\S+)"),
        "wrk": version(["wrk", "-v"], r"wrk (\S+)"),
        "rustc": version(["rustc", "--version"], r"rustc (\S+)"),
        "pylon": git,
    }


def fmt_num(v, kind):
    if v is None:
        return "—"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "1":
        return f"{v:,.1f}"
    if kind == "2":
        return f"{v:,.2f}"
    return str(v)


def fmt_ratio(r):
    if r >= 100:
        return f"{r:,.0f}"
    if r >= 10:
        return f"{r:.1f}"
    return f"{r:.2f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rows(med):
    """(label, better, kind, {target: value}, note). better: 'up' or 'down'."""
    def m(metric, *targets):
        return {t: med.get(metric, {}).get(t) for t in targets}

    four = ("direct", "nginx", "haproxy", "pylon")
    three = ("nginx", "haproxy", "pylon")
    out = [
        ("100 B, keep-alive: req/s", "up", "int", m("rps.small", *four)),
        ("100 B, keep-alive: proxy CPU µs/req", "down", "2", m("cpu.small", *four)),
        ("16 KiB, keep-alive: req/s", "up", "int", m("rps.medium", *four)),
        ("16 KiB, keep-alive: proxy CPU µs/req", "down", "2", m("cpu.medium", *four)),
        ("1 MiB, keep-alive: req/s", "up", "int", m("rps.large", *four)),
        ("1 MiB, keep-alive: proxy CPU µs/req", "down", "1", m("cpu.large", *four)),
        ("100 B, new connection per request: req/s", "up", "int", m("rps.close", *four)),
        ("100 B, new connection per request: proxy CPU µs/req", "down", "2", m("cpu.close", *four)),
        ("100 B at 50 % of nginx's max rate: p50 µs", "down", "int", m("lat.p50", *four)),
        ("100 B at 50 % of nginx's max rate: p99 µs", "down", "int", m("lat.p99", *four)),
        ("100 B at 25 % of nginx's max rate: p50 µs", "down", "int", m("lat25.p50", *four)),
        ("100 B at 25 % of nginx's max rate: p99 µs", "down", "int", m("lat25.p99", *four)),
        ("100 B at 25 % of nginx's max rate: proxy CPU µs/req", "down", "2", m("lat25.cpu", *four)),
        ("1 GiB upload: MB/s", "up", "int", m("upload.mbps", *four)),
        ("1 GiB upload: proxy CPU s", "down", "2", m("upload.cpu", *four)),
        ("1 GiB upload: peak RSS MiB", "down", "1", m("upload.rss", *three)),
        ("RSS idle, MiB", "down", "1", m("rss.idle", *three)),
        ("RSS with 1,000 keep-alive connections, MiB", "down", "1", m("rss.hold", *three)),
        ("RSS per idle keep-alive connection, KiB", "down", "1", m("kib.hold", *three)),
        ("RSS per stalled request head, KiB", "down", "1", m("kib.heads", *three)),
        (f"RSS {CLOSED_WAIT} s after 1,000 connections closed, MiB", "down", "1",
         m("rss.hold_closed", *three)),
        ("RSS idle after the run, MiB", "down", "1", m("rss.after", *three)),
        ("body rewrite (portal, 7 rules): MB/s per core", "up", "int",
         m("rewrite.mbps_core", "nginx", "pylon")),
        ("access log on (combined): req/s", "up", "int",
         {"nginx": med.get("rps.log", {}).get("nginx+log"),
          "pylon": med.get("rps.log", {}).get("pylon+log")}),
        ("access log on (combined): proxy CPU µs/req", "down", "2",
         {"nginx": med.get("cpu.log", {}).get("nginx+log"),
          "pylon": med.get("cpu.log", {}).get("pylon+log")}),
    ]
    return out


def table(med):
    head = ["measure", "direct", "nginx", "HAProxy", "Pylon", "Pylon/nginx", "Pylon/HAProxy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for label, better, kind, vals in rows(med):
        arrow = "↑" if better == "up" else "↓"
        cells = [f"{label} {arrow}"]
        for t in ("direct", "nginx", "haproxy", "pylon"):
            v = vals.get(t)
            if t == "pylon" and v is None and label.startswith("body rewrite"):
                cells.append("not implemented")
            elif t == "haproxy" and label.startswith("body rewrite"):
                cells.append("n/a")
            else:
                cells.append(fmt_num(v, kind))
        for other in ("nginx", "haproxy"):
            r = ratio(vals.get("pylon"), vals.get(other))
            cells.append(fmt_ratio(r) if r is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart_panels(med):
    up, down = [], []
    short = {
        "100 B, keep-alive: req/s": "100 B keep-alive, req/s",
        "16 KiB, keep-alive: req/s": "16 KiB keep-alive, req/s",
        "1 MiB, keep-alive: req/s": "1 MiB keep-alive, req/s",
        "100 B, new connection per request: req/s": "100 B new conn., req/s",
        "1 GiB upload: MB/s": "1 GiB upload, MB/s",
        "body rewrite (portal, 7 rules): MB/s per core": "body rewrite, MB/s/core",
        "100 B, keep-alive: proxy CPU µs/req": "100 B keep-alive, CPU µs/req",
        "16 KiB, keep-alive: proxy CPU µs/req": "16 KiB keep-alive, CPU µs/req",
        "1 MiB, keep-alive: proxy CPU µs/req": "1 MiB keep-alive, CPU µs/req",
        "100 B, new connection per request: proxy CPU µs/req": "100 B new conn., CPU µs/req",
        "100 B at 50 % of nginx's max rate: p50 µs": "p50 µs, 50 % of nginx max",
        "100 B at 50 % of nginx's max rate: p99 µs": "p99 µs, 50 % of nginx max",
        "100 B at 25 % of nginx's max rate: p50 µs": "p50 µs, 25 % of nginx max",
        "100 B at 25 % of nginx's max rate: p99 µs": "p99 µs, 25 % of nginx max",
        "100 B at 25 % of nginx's max rate: proxy CPU µs/req": "CPU µs/req, 25 % of nginx max",
        "1 GiB upload: proxy CPU s": "1 GiB upload, CPU s",
        "1 GiB upload: peak RSS MiB": "1 GiB upload, peak RSS MiB",
        "RSS idle, MiB": "RSS idle, MiB",
        "RSS with 1,000 keep-alive connections, MiB": "RSS 1,000 connections, MiB",
        "RSS per idle keep-alive connection, KiB": "RSS per idle connection, KiB",
    }
    for label, better, kind, vals in rows(med):
        if label not in short:
            continue
        base = vals.get("nginx")
        bars = []
        for t in ("direct", "haproxy", "pylon"):
            v = vals.get(t)
            if t == "direct" and "CPU" in label:
                v = None  # the backend's own cost, not a proxy's
            r = ratio(v, base)
            if r is not None:
                bars.append((t, r, fmt_num(v, kind)))
            elif t == "pylon" and label.startswith("body rewrite"):
                bars.append((t, None, "not implemented"))
        (up if better == "up" else down).append((short[label], fmt_num(base, kind), bars))
    return [("Throughput, relative to nginx", "right", up),
            ("Cost: CPU, latency, memory, relative to nginx", "left", down)]


def headline(b):
    med = b.med

    def r(metric):
        return ratio(med.get(metric, {}).get("pylon"), med.get(metric, {}).get("nginx"))

    parts = []
    for metric, what in (("rps.small", "req/s"), ("cpu.small", "CPU per request"),
                         ("lat.p99", "p99 at 50 % of nginx's maximum rate"),
                         ("lat25.p99", "p99 at 25 %"), ("rss.idle", "idle RSS")):
        if r(metric) is not None:
            parts.append(f"{what} {fmt_ratio(r(metric))}")
    text = "**100 B, keep-alive, one worker, Pylon/nginx:** " + ", ".join(parts) + "."
    pylon_max = med.get("rps.small", {}).get("pylon")
    rate = b.raw.get("lat_rate")
    if pylon_max and rate and pylon_max < rate:
        text += (f" At 50 % of nginx's maximum ({rate:,.0f} req/s) Pylon is past its own maximum "
                 f"({pylon_max:,.0f} req/s), so its latency there is queueing; the 25 % row "
                 "compares latency at a load every proxy carries.")
    return text


def markdown(b, info, elapsed, command):
    med = b.med
    now = b.finished
    lines = [
        BEGIN,
        "<!-- Generated by bench/run.sh; edits between these markers are overwritten. -->",
        "",
        f"### Results of {now}",
        "",
        f"- Machine: {info['nproc']} cores, {info['cpu']}, {info['mem_gib']} GiB, "
        f"kernel {info['kernel']}, Debian {info['debian']}",
        f"- Software: Pylon `{info['pylon']}` (rustc {info['rustc']}), nginx {info['nginx']}, "
        f"HAProxy {info['haproxy']}, wrk {info['wrk']}",
        f"- Command: `{command}` ({b.rounds} alternating rounds"
        + (f", {b.raw['extra_rounds']} added where rounds disagreed" if b.raw.get("extra_rounds") else "")
        + "; median reported; "
        f"{b.secs} s per saturation run; whole run {elapsed / 60:.1f} min including installs and builds"
        + (f", of which {b.raw['waited_s'] / 60:.1f} min waiting for other processes to leave the cores "
           f"and {b.raw.get('repeated', 0)} disturbed runs repeated" if b.raw.get("waited_s", 0) >= 30 else "")
        + ")",
        f"- Fixed rates for the latency rows: {b.raw.get('lat_rate', 0):,.0f} and "
        f"{b.raw.get('lat25_rate', 0):,.0f} req/s (50 % and 25 % of nginx's 100 B keep-alive "
        f"maximum), {OPEN_CONNS} connections, open loop, latency counted from when each request was due",
        "",
        headline(b),
        "",
        table(med),
        "",
        "↑ higher is better, ↓ lower is better. \"proxy CPU\" is user+system time of the proxy's "
        "process(es) from `/proc/<pid>/stat` divided by the requests served; in the *direct* "
        "column it is the backend's own cost. RSS is the serving process (nginx: the worker; "
        f"its master adds {statistics.median(b.raw.get('nginx_master_rss', [0])):.1f} MiB).",
        "",
        "![Pylon and HAProxy relative to nginx](benchmarks.svg)",
        "",
    ]
    busy = [(run["target"], run["case"], run["proxy_busy"]) for run in b.raw["runs"]
            if "proxy_busy" in run and run["target"] not in ("direct",)
            and run["case"] in ("small", "medium", "close")]
    if busy:
        low = [x for x in busy if x[2] < 0.9]
        lines.append(
            f"Proxy core busy during saturation runs: {min(x[2] for x in busy) * 100:.0f}–"
            f"{max(x[2] for x in busy) * 100:.0f} %"
            + (f" ({len(low)} runs below 90 %: there the load core, not the proxy, set the rate)"
               if low else "") + ".")
    foreign = [run.get("foreign_share") or 0 for run in b.raw["runs"]]
    steal = [run.get("steal_s") or 0 for run in b.raw["runs"]]
    lines.append(f"Load from other processes during a kept run: at most {max(foreign) * 100:.1f} % of a core "
                 f"({b.raw.get('repeated', 0)} disturbed runs repeated, "
                 f"{b.raw.get('waited_s', 0):.0f} s spent waiting for a quiet machine); "
                 f"steal time at most {max(steal):.2f} s per run.")
    cl = med.get("cpu.log", {})
    if all(k in cl for k in ("nginx", "nginx+log", "pylon", "pylon+log")):
        lines.append(f"Access log (combined) cost per request: nginx "
                     f"{cl['nginx+log'] - cl['nginx']:+.2f} µs, Pylon {cl['pylon+log'] - cl['pylon']:+.2f} µs.")
    upc = med.get("upconn.small", {})
    if upc:
        lines.append("New backend connections per 1,000 requests (100 B keep-alive): " + ", ".join(
            f"{t} {upc[t]:.2f}" for t in ("nginx", "haproxy", "pylon") if t in upc)
            + "; with a new client connection per request: " + ", ".join(
            f"{t} {med['upconn.close'][t]:.2f}" for t in ("nginx", "haproxy", "pylon")
            if t in med.get("upconn.close", {})) + ".")
    lines.append("")
    prof = b.raw.get("profile")
    if prof and "phases" in prof:
        lines += ["#### Profile of Pylon, 100 B keep-alive at saturation", ""]
        lines += hotpath.markdown(prof, med.get("cpu.small", {}).get("pylon"))
        lines.append("")
    elif prof:
        lines += [f"Profile: perf failed ({prof.get('error', '?')}).", ""]
    lines += ["<details><summary>Every run</summary>", "", "```"]
    for run in b.raw["runs"]:
        lines.append(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                 for k, v in run.items()}))
    lines += ["```", "", "</details>", END]
    return "\n".join(lines)


def write_doc(section):
    DOC.parent.mkdir(exist_ok=True)
    if DOC.exists() and BEGIN in DOC.read_text():
        text = DOC.read_text()
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1] if END in rest else ""
        DOC.write_text(head + section + tail)
    else:
        DOC.write_text("# Pylon benchmarks\n\nRun `bench/run.sh`.\n\n## Results\n\n" + section + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="alternating repetitions (default 3)")
    ap.add_argument("--secs", type=int, default=3, help="seconds per saturation run (default 3)")
    ap.add_argument("--open-secs", type=int, default=4,
                    help="measured seconds per fixed-rate run, after 1 s of warm-up (default 4)")
    ap.add_argument("--extra-rounds", type=int, default=2,
                    help="rounds added when a target's req/s differ by over 20 %% (default 2)")
    ap.add_argument("--retries", type=int, default=3,
                    help="repeat a run disturbed by other load up to this often (default 3)")
    ap.add_argument("--max-wait", type=float, default=60,
                    help="seconds to wait for a quiet machine before each run (default 60)")
    ap.add_argument("--no-profile", action="store_true", help="skip the perf profile of Pylon")
    ap.add_argument("--only-memory", action="store_true",
                    help="measure only RSS idle, with 1,000 connections and after (prints; docs/ untouched)")
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/ alone")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs)")
    ap.add_argument("--started", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--command", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--render", metavar="JSON",
                    help="rewrite docs/ from a saved bench/.results file, without measuring")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        b = Bench(args)
        b.raw, b.med = saved["raw"], saved["medians"]
        b.rounds, b.secs = saved.get("rounds", args.rounds), saved.get("secs", args.secs)
        b.finished = saved["finished"]
        write_outputs(b, saved["machine"], saved["elapsed_s"], saved.get("command", "bench/run.sh"))
        return
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs at least 2 cores (proxy on one, backend and load on the other)")

    b = Bench(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        b.start()
        b.run()
    finally:
        b.stop()

    b.finished = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if args.only_memory:
        print()
        print(table({k: v for k, v in b.med.items() if k.startswith(("rss.", "kib."))}))
        return
    info = machine()
    elapsed = time.time() - (args.started or b.started)
    command = args.command or "bench/run.sh"
    print()
    print(table(b.med))
    results = BENCH / ".results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (results / f"{stamp}.json").write_text(json.dumps(
        {"machine": info, "medians": b.med, "raw": b.raw, "elapsed_s": elapsed,
         "rounds": b.rounds, "secs": b.secs, "command": command, "finished": b.finished}, indent=1))
    if not args.no_docs:
        write_outputs(b, info, elapsed, command)
    print(f"whole run: {elapsed / 60:.1f} min")


def write_outputs(b, info, elapsed, command):
    chart.write_svg(SVG, chart_panels(b.med),
                    f"Pylon vs nginx vs HAProxy, one worker on one core ({info['cpu']}, "
                    f"{b.finished[:10]}, Pylon {info['pylon']})")
    write_doc(markdown(b, info, elapsed, command))
    print(f"\nwrote {DOC.relative_to(REPO)} and {SVG.relative_to(REPO)}")


if __name__ == "__main__":
    main()
