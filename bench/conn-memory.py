#!/usr/bin/env python3
"""Memory per client connection of the built Pylon.

    bench/conn-memory.py [N] [idle|heads|both]

Starts target/release/pylon (or $PYLON) with `threads: 2` ($THREADS) and a
local upstream, opens N client connections that are idle after one
keep-alive request (`idle`), stalled in the middle of a request head
(`heads`) or half each (`both`), and prints Pylon's VmRSS before, with them
open (and per connection), and 3 s after they closed. Loopback only; takes
a few seconds. See "Memory per connection" in docs/benchmarks.md.
"""
import os, socket, subprocess, sys, time, threading, resource, tempfile
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
MODE = sys.argv[2] if len(sys.argv) > 2 else "idle"   # idle | heads | both
BIN = os.environ.get("PYLON", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                           "..", "target", "release", "pylon"))
h = resource.getrlimit(resource.RLIMIT_NOFILE)[1]; resource.setrlimit(resource.RLIMIT_NOFILE, (h, h))
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = b"x" * 100
        self.send_response(200); self.send_header("Content-Length", "100"); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
up = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=up.serve_forever, daemon=True).start()
def fp():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port, adm = fp(), fp()
d = tempfile.mkdtemp(prefix="pylon-conn-memory-")
conf = f"""version: 1
threads: {os.environ.get('THREADS','2')}
pid_file: {d}/pid
upgrade_sock: {d}/sock
grace_period_seconds: 1
graceful_shutdown_timeout_seconds: 1
pylon:
  listen: ["127.0.0.1:{port}"]
  admin_listen: "127.0.0.1:{adm}"
  access_log: off
  limits:
    max_connections: 100000
  routes:
    rest-server:
      upstream: http://127.0.0.1:{up.server_address[1]}
"""
open(f"{d}/c.yaml", "w").write(conf)
env = dict(os.environ)
p = subprocess.Popen([BIN, "-c", f"{d}/c.yaml"], stdout=subprocess.DEVNULL, stderr=open(os.environ.get("ERRLOG", f"{d}/err"),"w"), env=env)
def rss():
    for l in open(f"/proc/{p.pid}/status"):
        if l.startswith("VmRSS"): return int(l.split()[1])
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.1)
# warm up: a few requests
def req(s):
    s.sendall(b"GET /rest-server/x HTTP/1.1\r\nHost: a\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n",1)[1]) < 100:
        c = s.recv(65536)
        if not c: raise RuntimeError("closed: %r" % data)
        data += c
    return data
for _ in range(20):
    s = socket.create_connection(("127.0.0.1", port)); req(s); s.close()
time.sleep(0.5)
r0 = rss()
conns = []
for i in range(N):
    s = socket.create_connection(("127.0.0.1", port))
    if MODE == "idle" or (MODE == "both" and i % 2 == 0):
        req(s)
    else:
        s.sendall(b"GET /rest-server/x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    conns.append(s)
time.sleep(1.0)
r1 = rss()
for s in conns: s.close()
conns = []
time.sleep(3.0)
r2 = rss()
s = socket.create_connection(("127.0.0.1", port)); ok = b" 200 " in req(s)[:20]; s.close()
print(f"mode={MODE} N={N} idle={r0/1024:.1f}MiB held={r1/1024:.1f}MiB per_conn={(r1-r0)/N:.2f}KiB after_close_3s={r2/1024:.1f}MiB served_after={ok}")
p.terminate(); p.wait()
