"""Where Pylon's CPU time goes: sampled call stacks (perf, DWARF unwinding,
since the release binary has no frame pointers) folded into three views:

- phases: inclusive share of the stages of one proxied request and of
  Pylon's own hooks (a sample counts once for every stage on its stack);
- groups: exclusive (self) time by kind of work, summing to 100 %;
- top: the hottest functions by self time.

perf's cpu-clock event is used because VMs often expose no hardware
counters; it samples on a timer, so time spent with interrupts disabled is
charged to the point where they are re-enabled (_raw_spin_unlock_irqrestore),
which on this path means waking the peer process on the other core.
"""

import collections
import os
import re
import subprocess

# glibc's and mimalloc's entry points and internals, and Rust's shims to them.
ALLOC = (r"^(malloc|_int_malloc|_int_free|_int_realloc|free|cfree|malloc_consolidate|unlink_chunk.*|"
         r"__GI___libc_malloc|__GI___libc_free|__GI___libc_realloc|__libc_malloc|__libc_free|realloc|"
         r"_?mi_[a-z_]+|__rust_(alloc|dealloc|realloc)|__rdl_[a-z]+)$")

PHASES = [
    ("Pylon hook request_filter", r"Pylon as .*ProxyHttp>::request_filter"),
    ("Pylon hook upstream_peer", r"Pylon as .*ProxyHttp>::upstream_peer"),
    ("Pylon hook upstream_request_filter", r"Pylon as .*ProxyHttp>::upstream_request_filter"),
    ("Pylon hook response_filter", r"Pylon as .*ProxyHttp>::response_filter"),
    ("Pylon hook logging", r"Pylon as .*ProxyHttp>::logging"),
    ("Pylon read clock (ClockedStream)", r"pylon::connection_guard::ClockedStream"),
    # The connection guard's process_new encloses all of Pingora's work on a
    # connection; it is the frame that contains everything, not Pylon's cost.
    ("all Pylon code (any pylon:: frame but the guard's wrapper)",
     r"pylon::(?!connection_guard::Guarded)"),
    ("Pingora: read client request", r"v1::server::HttpSession::read_request"),
    ("Pingora: write upstream request", r"v1::client::HttpSession::write_request_header"),
    ("Pingora: read upstream response", r"v1::client::HttpSession::read_resp"),
    ("Pingora: write client response", r"write_response_tasks|response_duplex_vec"),
    ("Pingora: upstream connection pool (return, reuse)",
     r"release_http_session|TransportConnector::reused_stream|ConnectionPool"),
    ("Pingora: copy request/response headers", r"(Request|Response)Header as core::clone::Clone"),
    ("Pingora: drop request/response headers", r"drop_in_place<.*pingora_http::(Request|Response)Header"),
    ("timers (pingora_timeout, tokio time)", r"pingora_timeout::timer|tokio::runtime::time"),
    ("kernel: send (incl. loopback delivery to the peer)", r"__x64_sys_sendto|__x64_sys_write|__x64_sys_writev"),
    ("kernel: receive", r"__x64_sys_recvfrom|__x64_sys_read\b|__x64_sys_readv"),
    ("kernel: epoll_wait", r"__x64_sys_epoll_wait|__x64_sys_epoll_pwait"),
    ("memory allocator (all callers)", ALLOC),
]


def group(dso, sym):
    # Names first: perf often cannot tell which object a libc leaf is in.
    if re.search(ALLOC, sym) or re.search(r"^tcache|memalign|^_mi_|^mi_", sym):
        return "memory allocator"
    if re.search(r"^__(memcpy|memmove|memset|memcmp)", sym):
        return "libc memcpy/memmove"
    if dso.startswith("[kernel"):
        if re.search(r"spin_unlock_irqrestore|try_to_wake|ttwu|select_task|enqueue|schedule|"
                     r"finish_task|wake|idle", sym):
            return "kernel: waking the peer, scheduling"
        return "kernel: TCP/IP and syscalls"
    if dso.startswith("libc"):
        return "libc other"
    if dso == "[vdso]" or "clock_gettime" in sym:
        return "clock_gettime (vdso)"
    if "pylon::" in sym:
        return "Pylon code (self)"
    if "httparse" in sym:
        return "httparse"
    if re.search(r"^<?tokio|mio::", sym):
        return "tokio/mio runtime"
    if re.search(r"pingora_http|http::header|HeaderMap|HeaderName|HeaderValue|http::", sym):
        return "header maps (pingora_http, http)"
    if "pingora" in sym:
        return "Pingora other"
    if "bytes::" in sym:
        return "bytes (refcounted buffers)"
    if re.search(r"^<?(core|alloc|std)::", sym):
        return "Rust std (Vec, String, fmt, drop)"
    return "other"


def read_samples(text):
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
            continue
        if not line[0].isspace():
            cur = []
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$", line)
        if m and cur is not None:
            cur.append((m.group(1), m.group(2), os.path.basename(m.group(3))))
    if cur:
        samples.append(cur)
    # perf prints inlined functions as extra frames at the address of the
    # function they were inlined into; give them that function's object.
    out = []
    for s in samples:
        frames, owner, owner_addr = [], "?", None
        for addr, sym, dso in reversed(s):
            if dso == "inlined":
                dso = owner if addr == owner_addr else "?"
            else:
                owner, owner_addr = dso, addr
            frames.append((sym, dso))
        out.append(frames[::-1])
    samples = out
    return samples


def analyse(perf_data, binary_name="pylon"):
    env = dict(os.environ, DEBUGINFOD_URLS="")
    text = subprocess.run(["perf", "script", "-i", str(perf_data), "-F", "comm,tid,ip,sym,dso"],
                          capture_output=True, text=True, env=env, timeout=300).stdout
    samples = [s for s in read_samples(text) if s]
    n = len(samples)
    if n == 0:
        return None
    phases = []
    for name, pat in PHASES:
        r = re.compile(pat)
        hits = sum(1 for s in samples if any(r.search(f) for f, _ in s))
        phases.append((name, hits / n * 100))
    groups = collections.Counter()
    top = collections.Counter()
    for s in samples:
        sym, dso = s[0]
        groups[group(dso, sym)] += 1
        top[("kernel" if dso.startswith("[kernel") else dso, sym)] += 1
    hooks = {}
    for hook in ("upstream_request_filter", "response_filter", "request_filter"):
        r = re.compile(rf"Pylon as .*ProxyHttp>::{hook}\b")
        callees = collections.Counter()
        for s in samples:
            idx = [i for i, (f, _) in enumerate(s) if r.search(f)]
            if idx:
                i = max(idx)
                callees[s[i - 1][0] if i > 0 else "(self)"] += 1
        hooks[hook] = [(f, c / n * 100) for f, c in callees.most_common(5)]
    return {
        "samples": n,
        "phases": phases,
        "groups": [(g, c / n * 100) for g, c in groups.most_common()],
        "top": [(d, f, c / n * 100) for (d, f), c in top.most_common(20)],
        "hook_callees": hooks,
    }


def markdown(p, cpu_us):
    """Tables for docs/benchmarks.md; cpu_us converts shares to µs per request."""
    def us(share):
        return f"{share / 100 * cpu_us:.2f}" if cpu_us else "—"

    out = [f"{p['samples']:,} samples; µs per request = share × Pylon's measured "
           f"{cpu_us:.1f} µs/request." if cpu_us else f"{p['samples']:,} samples.", "",
           "| stage (inclusive) | share | µs/req |", "|---|---:|---:|"]
    for name, share in p["phases"]:
        out.append(f"| {name} | {share:.1f} % | {us(share)} |")
    out += ["", "| kind of work (self time) | share | µs/req |", "|---|---:|---:|"]
    for name, share in p["groups"]:
        out.append(f"| {name} | {share:.1f} % | {us(share)} |")
    out += ["", "| hottest functions (self time) | object | share |", "|---|---|---:|"]
    for dso, sym, share in p["top"][:15]:
        s = sym if len(sym) <= 100 else sym[:97] + "…"
        out.append(f"| `{s.replace('|', '/')}` | {dso} | {share:.1f} % |")
    return out
