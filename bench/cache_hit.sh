#!/usr/bin/python3
"""cache_hit -- cache-hit throughput of ferryd against nginx proxy_cache and Varnish.

(A Python 3 script, standard library only, despite the .sh name: run it
directly or through `make bench` / bench/run.sh.)

One run starts:
  * an origin: nginx serving /1k (1 KiB) and /100k (100 KiB), both with
    Cache-Control: max-age=3600;
  * nginx proxy_cache, 1 worker, HTTP and HTTPS (sendfile on, tcp_nopush off,
    tcp_nodelay on, cache files on tmpfs, proxy_cache_valid 200 10m,
    keep-alive upstream);
  * Varnish, -s malloc,256m, the built-in VCL with the origin as backend
    (-b), HTTP only;
  * ferryd, the cache role, workers 1, HTTP and HTTPS.
Both TLS servers use the same ECDSA P-256 certificate and TLS 1.3 only.
Every server is started under `taskset -c 0`; wrk runs under `taskset -c 1`.

Each server is warmed (one miss, then a hit is checked: X-Cache: HIT for
ferryd and nginx, a second transaction id in X-Varnish for Varnish), then
the rounds alternate anchor and Ferry: for each round and each case
(protocol x size) the servers run one after the other (the order flips every
round), each with
    wrk -t1 -c64 -d<D>s --latency -H 'Host: bench.test' URL
Per run it records requests/s, p99 latency, server CPU per request
(utime+stime of the server's whole process tree from /proc/PID/stat, over the
run, divided by wrk's request count), the hypervisor steal and the other load
(busy jiffies in /proc/stat not spent by the server or wrk), both in % of one
core. A run whose steal or other load exceeds 25% of a core is retried once
(unless the retry would take the whole run past BENCH_BUDGET seconds).
At the end it checks that the origin saw only the warm-up requests.

An unpinned ("shared") variant follows: the same servers, their affinity
widened to both CPUs, wrk unpinned, 1 KiB over HTTP only.

Environment:
  BENCH_DURATION=10     seconds per wrk run (pinned)
  BENCH_ROUNDS=3        rounds (>= 3 for a median with min/max)
  BENCH_CONNECTIONS=64  wrk connections
  BENCH_UNPINNED=1      0 skips the unpinned variant
  BENCH_UNPINNED_DURATION=5
  BENCH_BUDGET=540      seconds; no retries once they would pass it
  FERRY_BUILD=build     where ferryd is
  BENCH_RESULTS=bench/results

Output: Markdown tables on stdout and in bench/results/cache_hit-<date>.md.
Exit status 1 if any run had errors (non-2xx, socket errors, a server died,
a miss during the load).
"""
import datetime
import http.client
import os
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (helpers shared with the other benchmarks)
from benchlib import proc_stat, stop_all, tail, proc_tree, tree_cpu_ticks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build"))
FERRYD = os.path.join(BUILD, "ferryd")
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
UNPINNED = os.environ.get("BENCH_UNPINNED", "1") not in ("0", "no", "off")
UNPINNED_DURATION = int(os.environ.get("BENCH_UNPINNED_DURATION", "5"))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))
HOST = "bench.test"
HZ = os.sysconf("SC_CLK_TCK")
SIZES = {"1k": 1024, "100k": 100 * 1024}
RETRY_LIMIT = 25.0  # % of one core, steal or other load
# Retries stop when they would push the whole benchmark past this many seconds.
BUDGET = float(os.environ.get("BENCH_BUDGET", "540"))
RUN_OVERHEAD = 0.5  # seconds per wrk run beyond -d
T0 = time.monotonic()


def time_left(needed):
    return time.monotonic() - T0 + needed <= BUDGET


def log(msg):
    print("cache_hit: " + msg, file=sys.stderr, flush=True)


# ---- processes -------------------------------------------------------------

def start(argv, logname, workdir):
    return benchlib.start(argv, os.path.join(workdir, logname))


def wait_port(p, addr, port, what, timeout=15):
    benchlib.wait_port(p, addr, port, what, timeout, name="cache_hit")


def set_affinity_tree(pid, cpus):
    for p in proc_tree(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)], capture_output=True, timeout=10)


# ---- configs ---------------------------------------------------------------


def make_pki(d):
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Ferry Bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=" + HOST)
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "srv.ext")
    return os.path.join(d, "ca.pem"), os.path.join(d, "srv.pem"), os.path.join(d, "srv.key")


NGINX_COMMON = """
user root;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {dir}/tmp_body;
    proxy_temp_path {dir}/tmp_proxy;
    fastcgi_temp_path {dir}/tmp_fcgi;
    uwsgi_temp_path {dir}/tmp_uwsgi;
    scgi_temp_path {dir}/tmp_scgi;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush off;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
{body}
}}
"""


def origin_conf(d, addr, port):
    return NGINX_COMMON.format(dir=d, body=f"""
    access_log {d}/access.log;
    server {{
        listen {addr}:{port};
        root {d}/www;
        location / {{ add_header Cache-Control "max-age=3600"; }}
    }}""")


def nginx_cache_conf(d, addr, port, tport, origin, cert, key):
    return NGINX_COMMON.format(dir=d, body=f"""
    access_log off;
    proxy_cache_path {d}/cache levels=1:2 keys_zone=bench:16m max_size=256m inactive=60m use_temp_path=off;
    upstream origin {{
        server {origin};
        keepalive 16;
    }}
    server {{
        listen {addr}:{port};
        listen {addr}:{tport} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.3;
        location / {{
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_cache bench;
            proxy_cache_valid 200 10m;
            add_header X-Cache $upstream_cache_status;
        }}
    }}""")


def ferry_conf(d, addr, port, tport, origin, cert, key):
    return f"""
workers 1;
error_log {d}/ferryd.log;
admin {{
    listen {addr}:9000;
}}
cache {{
    name bench;
    listen {addr}:{port};
    listen_tls {addr}:{tport};
    certificate {cert} {key};
    tls_min_version TLSv1.3;
    memory 256m;
    publisher {HOST} {{
        origin http://{origin};
    }}
}}
"""


# ---- HTTP checks -----------------------------------------------------------


def fetch(scheme, addr, port, path, ca):
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
        ctx.check_hostname = False  # connecting by address; the chain is still verified
        c = http.client.HTTPSConnection(addr, port, timeout=10, context=ctx)
    else:
        c = http.client.HTTPConnection(addr, port, timeout=10)
    try:
        c.request("GET", path, headers={"Host": HOST})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


def is_hit(server, headers):
    if server == "varnish":
        return len(headers.get("x-varnish", "").split()) == 2
    return headers.get("x-cache", "").upper() == "HIT"


def origin_requests(origin_dir):
    try:
        with open(os.path.join(origin_dir, "access.log")) as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


# ---- wrk -------------------------------------------------------------------

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(out):
    r = {"rps": None, "p99_ms": None, "requests": None, "non2xx": 0, "sockerr": 0}
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    if m:
        r["p99_ms"] = float(m.group(1)) * UNIT[m.group(2)]
    m = re.search(r"(\d+) requests in", out)
    if m:
        r["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        r["sockerr"] = sum(int(x) for x in m.groups())
        r["sockerr_text"] = m.group(0)
    return r


def run_wrk(server_pid, url, duration, pinned):
    argv = ["wrk", "-t1", f"-c{CONNS}", f"-d{duration}s", "--latency", "-H", f"Host: {HOST}", url]
    if pinned:
        argv = ["taskset", "-c", "1"] + argv
    s0, c0, t0 = proc_stat(), tree_cpu_ticks(server_pid), time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + duration + 30
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(p.pid, signal.SIGKILL)
            pid, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.02)
    p.returncode = os.waitstatus_to_exitcode(status)
    t1, c1, s1 = time.monotonic(), tree_cpu_ticks(server_pid), proc_stat()
    out = p.stdout.read().decode(errors="replace")
    p.stdout.close()
    el = t1 - t0
    server_ticks = c1 - c0
    wrk_ticks = (ru.ru_utime + ru.ru_stime) * HZ
    r = parse_wrk(out)
    r["rc"] = p.returncode
    r["out"] = out
    r["elapsed"] = el
    r["server_cpu_pct"] = 100.0 * server_ticks / HZ / el
    r["steal_pct"] = 100.0 * (s1["steal"] - s0["steal"]) / HZ / el
    r["other_pct"] = max(0.0, 100.0 * ((s1["busy"] - s0["busy"]) - server_ticks - wrk_ticks) / HZ / el)
    r["cpu_us_per_req"] = (server_ticks / HZ * 1e6 / r["requests"]) if r["requests"] else None
    return r


# ---- the benchmark ---------------------------------------------------------


class Server:
    def __init__(self, name, label, proc, addr, port, tport=None):
        self.name, self.label, self.proc = name, label, proc
        self.addr, self.port, self.tport = addr, port, tport

    def url(self, scheme, size):
        port = self.tport if scheme == "https" else self.port
        return f"{scheme}://{self.addr}:{port}/{size}"


def fmt_num(v, digits=0):
    if v is None:
        return "—"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def med_range(vals, digits=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt_num(m, digits)
    return f"{fmt_num(m, digits)} ({fmt_num(min(vals), digits)}–{fmt_num(max(vals), digits)})"


def median(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "—"
    return f"{a / b:.2f}"


def machine_facts():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    ver = lambda argv: subprocess.run(argv, capture_output=True, text=True, timeout=10)
    nginx_v = ver(["nginx", "-v"]).stderr.strip().replace("nginx version: ", "")
    varnish_v = (ver(["varnishd", "-V"]).stderr.strip().splitlines() or ["varnish"])[0]
    wrk_v = (ver(["wrk", "-v"]).stdout.strip().splitlines() or ["wrk"])[0]
    ossl = ver(["openssl", "version"]).stdout.strip()
    try:
        rev = ver(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]).stdout.strip() or "?"
        dirty = ver(["git", "-C", ROOT, "status", "--porcelain", "--", "src"]).stdout.strip()
        rev += " (with uncommitted changes in src/)" if dirty else ""
    except Exception:
        rev = "?"
    try:
        built = datetime.datetime.fromtimestamp(os.stat(FERRYD).st_mtime).strftime("%Y-%m-%d %H:%M:%S")
        rev += f", {FERRYD} built {built}"
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "model": model, "kernel": os.uname().release,
            "nginx": nginx_v, "varnish": varnish_v, "wrk": wrk_v.split(" [")[0], "openssl": ossl,
            "ferry": rev}


def main():
    for tool in ("nginx", "varnishd", "wrk", "taskset", "openssl"):
        if shutil.which(tool) is None:
            raise SystemExit(f"cache_hit: {tool} not found (scripts/install-deps.sh --bench)")
    if not os.access(FERRYD, os.X_OK):
        raise SystemExit(f"cache_hit: {FERRYD} not built (make build)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("cache_hit: needs 2 CPUs (server on CPU0, wrk on CPU1)")

    net = "127.%d.%d" % (random.randint(100, 199), random.randint(1, 254))
    o_addr, n_addr, v_addr, f_addr = (f"{net}.{i}" for i in (1, 2, 3, 4))
    PORT, TPORT = 8080, 8443
    work = f"/dev/shm/ferry-bench-{os.getpid()}"
    os.makedirs(work)
    dirs = {k: os.path.join(work, k) for k in ("pki", "origin", "nginx", "varnish", "ferry")}
    for d in dirs.values():
        os.makedirs(d)
    os.makedirs(os.path.join(dirs["origin"], "www"))
    os.chmod(work, 0o755)
    os.chmod(dirs["varnish"], 0o777)
    rng = random.Random(1)
    for name, n in SIZES.items():
        with open(os.path.join(dirs["origin"], "www", name), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(n)))

    a = proc_stat()
    time.sleep(2)
    b = proc_stat()
    idle_busy = 100.0 * (b["busy"] - a["busy"]) / HZ / 2
    idle_steal = 100.0 * (b["steal"] - a["steal"]) / HZ / 2
    if idle_busy > RETRY_LIMIT:
        log(f"warning: the machine is already busy ({idle_busy:.0f}% of a core); requests/s will be noisy, "
            "CPU per request less so")
    facts = machine_facts()
    ca, cert, key = make_pki(dirs["pki"])
    origin = f"{o_addr}:{PORT}"
    errors = []

    try:
        # origin (unpinned; idle once the caches are warm)
        with open(os.path.join(dirs["origin"], "nginx.conf"), "w") as f:
            f.write(origin_conf(dirs["origin"], o_addr, PORT))
        op = start(["nginx", "-c", os.path.join(dirs["origin"], "nginx.conf"), "-p", dirs["origin"],
                    "-g", "daemon off;"], "stdout.log", dirs["origin"])
        wait_port(op, o_addr, PORT, "origin nginx")

        with open(os.path.join(dirs["nginx"], "nginx.conf"), "w") as f:
            f.write(nginx_cache_conf(dirs["nginx"], n_addr, PORT, TPORT, origin, cert, key))
        np_ = start(["taskset", "-c", "0", "nginx", "-c", os.path.join(dirs["nginx"], "nginx.conf"),
                     "-p", dirs["nginx"], "-g", "daemon off;"], "stdout.log", dirs["nginx"])

        vp = start(["taskset", "-c", "0", "varnishd", "-F", "-n", dirs["varnish"], "-a", f"{v_addr}:{PORT}",
                    "-b", origin, "-s", "malloc,256m", "-T", "none"], "stdout.log", dirs["varnish"])

        fconf = os.path.join(dirs["ferry"], "ferryd.conf")
        with open(fconf, "w") as f:
            f.write(ferry_conf(dirs["ferry"], f_addr, PORT, TPORT, origin, cert, key))
        fp = start(["taskset", "-c", "0", FERRYD, "-c", fconf], "stdout.log", dirs["ferry"])

        wait_port(np_, n_addr, PORT, "nginx proxy_cache")
        wait_port(np_, n_addr, TPORT, "nginx proxy_cache (TLS)")
        wait_port(vp, v_addr, PORT, "varnishd", timeout=30)
        wait_port(fp, f_addr, PORT, "ferryd")
        wait_port(fp, f_addr, TPORT, "ferryd (TLS)")

        servers = {
            "nginx": Server("nginx", "nginx proxy_cache", np_, n_addr, PORT, TPORT),
            "varnish": Server("varnish", "Varnish", vp, v_addr, PORT),
            "ferry": Server("ferry", "ferryd", fp, f_addr, PORT, TPORT),
        }
        cases = [("http", "1k"), ("http", "100k"), ("https", "1k"), ("https", "100k")]

        def servers_for(scheme):
            return ["nginx", "ferry"] + (["varnish"] if scheme == "http" else [])

        # warm-up: one request per server and object fills the cache; the next must be a hit
        for scheme, size in cases:
            for s in servers_for(scheme):
                srv = servers[s]
                port = srv.tport if scheme == "https" else srv.port
                fetch(scheme, srv.addr, port, "/" + size, ca)
                st, h, body = fetch(scheme, srv.addr, port, "/" + size, ca)
                if st != 200 or len(body) != SIZES[size] or not is_hit(s, h):
                    raise SystemExit(f"cache_hit: warm-up of {s} {scheme} /{size}: status {st}, "
                                     f"{len(body)} bytes, headers {h}")
        warm_origin = origin_requests(dirs["origin"])
        log(f"warm: origin saw {warm_origin} requests during warm-up; servers on CPU0, wrk on CPU1")

        results = {}  # (variant, scheme, size, server) -> [run]
        runs_log = []

        def one(variant, scheme, size, s, duration, pinned, rnd, remaining):
            srv = servers[s]
            url = srv.url(scheme, size)
            for attempt in (1, 2):
                r = run_wrk(srv.proc.pid, url, duration, pinned)
                r.update(variant=variant, scheme=scheme, size=size, server=s, round=rnd, attempt=attempt)
                runs_log.append(r)
                bad = []
                if srv.proc.poll() is not None:
                    bad.append(f"{s} exited with {srv.proc.returncode}")
                if r["rc"] != 0 or r["rps"] is None:
                    bad.append(f"wrk failed (rc {r['rc']})")
                if r["non2xx"]:
                    bad.append(f"{r['non2xx']} non-2xx responses")
                if r["sockerr"]:
                    bad.append(r["sockerr_text"])
                if bad:
                    msg = (f"{variant} {s} {scheme} /{size} round {rnd}: " + "; ".join(bad) +
                           f"\n  command: wrk -t1 -c{CONNS} -d{duration}s --latency -H 'Host: {HOST}' {url}"
                           f"\n  wrk output:\n{r['out']}\n  server log ({srv.proc.logpath} and dir):\n"
                           + tail(srv.proc.logpath) + ("\n" + tail(os.path.join(dirs["ferry"], "ferryd.log"))
                                                       if s == "ferry" else ""))
                    errors.append(msg)
                    log("ERROR " + msg)
                log(f"{variant:8} r{rnd} {s:7} {scheme:5} {size:4}: {fmt_num(r['rps'])} req/s, "
                    f"p99 {fmt_num(r['p99_ms'], 2)} ms, {fmt_num(r['cpu_us_per_req'], 1)} us CPU/req, "
                    f"server {r['server_cpu_pct']:.0f}%, steal {r['steal_pct']:.1f}%, other {r['other_pct']:.1f}%"
                    + (" (retrying)" if attempt == 1 and max(r["steal_pct"], r["other_pct"]) > RETRY_LIMIT
                       and time_left(duration + RUN_OVERHEAD + remaining) else ""))
                if srv.proc.poll() is not None:
                    raise SystemExit(f"cache_hit: {s} died; stopping.\n" + errors[-1])
                if max(r["steal_pct"], r["other_pct"]) > RETRY_LIMIT:
                    if attempt == 1 and time_left(duration + RUN_OVERHEAD + remaining):
                        r["discarded"] = True
                        continue
                    r["noisy"] = "not retried (time budget)" if attempt == 1 else "busy on retry too"
                results.setdefault((variant, scheme, size, s), []).append(r)
                return

        plan = []
        for rnd in range(1, ROUNDS + 1):
            for scheme, size in cases:
                order = servers_for(scheme)
                if rnd % 2 == 0:
                    order = list(reversed(order))
                plan += [("pinned", scheme, size, s, DURATION, True, rnd) for s in order]
        if UNPINNED:
            for rnd in range(1, ROUNDS + 1):
                order = ["nginx", "ferry", "varnish"]
                if rnd % 2 == 0:
                    order = list(reversed(order))
                plan += [("unpinned", "http", "1k", s, UNPINNED_DURATION, False, rnd) for s in order]
        for i, step in enumerate(plan):
            if step[0] == "unpinned" and plan[i - 1][0] == "pinned":
                for srv in servers.values():
                    set_affinity_tree(srv.proc.pid, "0-%d" % (os.cpu_count() - 1))
            remaining = sum(st[4] + RUN_OVERHEAD for st in plan[i + 1:])
            one(*step, remaining=remaining)

        after = origin_requests(dirs["origin"])
        if after != warm_origin:
            errors.append(f"origin saw {after - warm_origin} requests during the load (expected 0)")
        # ferryd's own view: the hit counter should account for every request
        ferry_metrics = ""
        try:
            with socket.create_connection((f_addr, 9000), timeout=5) as sck:
                sck.sendall("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                chunks = []
                while True:
                    chunk = sck.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
            ferry_metrics = b"".join(chunks).decode(errors="replace")
        except OSError as e:
            ferry_metrics = f"(metrics unavailable: {e})"
    except BaseException:
        stop_all()
        log(f"logs kept in {work}")
        raise
    stop_all()

    facts["idle"] = f"{idle_busy:.0f}% of a core busy, {idle_steal:.0f}% steal"
    report = render(results, runs_log, errors, warm_origin, after, facts, ferry_metrics)
    print(report)
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, "cache_hit-%s.md" % datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S"))
    with open(path, "w") as f:
        f.write(report)
    shutil.rmtree(work, ignore_errors=True)
    log(f"results in {path}")
    return 1 if errors else 0


def render(results, runs_log, errors, warm_origin, after, facts, ferry_metrics):
    L = []
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    L.append(f"# Cache hits: ferryd against nginx proxy_cache and Varnish ({now})\n")
    L.append(f"- machine: {facts['nproc']} CPUs, {facts['model']}, kernel {facts['kernel']}")
    L.append(f"- before the run (2 s, nothing of ours running): {facts['idle']}")
    L.append(f"- {facts['nginx']}, {facts['varnish']}, {facts['wrk']}, {facts['openssl']}; ferry {facts['ferry']}")
    L.append(f"- load: `wrk -t1 -c{CONNS} -d{DURATION}s --latency` on CPU1, keep-alive; servers on CPU0, "
             f"1 worker each; {ROUNDS} rounds alternating the servers; median (min–max)")
    L.append(f"- objects: 1 KiB and 100 KiB, Cache-Control: max-age=3600, all hits "
             f"(origin requests: {warm_origin} during warm-up, {after - warm_origin} during the load)")
    L.append("- HTTPS: TLS 1.3, ECDSA P-256, same certificate for nginx and ferryd; keep-alive, so handshakes "
             "are only the 64 initial ones")
    L.append("")

    def table(variant, cases, title):
        servers = ["nginx", "varnish", "ferry"]
        metrics = [("rps", "requests/s", 0, "higher is better"),
                   ("p99_ms", "p99 latency, ms", 2, "lower is better"),
                   ("cpu_us_per_req", "server CPU per request, µs", 1, "lower is better")]
        L.append(f"## {title}\n")
        for key, name, digits, hint in metrics:
            L.append(f"### {name} ({hint})\n")
            L.append("| case | nginx | Varnish | ferryd | ferry/nginx | ferry/varnish |")
            L.append("| --- | ---: | ---: | ---: | ---: | ---: |")
            for scheme, size in cases:
                cells, meds = [], {}
                for s in servers:
                    rs = results.get((variant, scheme, size, s))
                    if not rs:
                        cells.append("—")
                        meds[s] = None
                        continue
                    vals = [r[key] for r in rs]
                    cells.append(med_range(vals, digits))
                    meds[s] = median(vals)
                L.append(f"| {scheme.upper()} {size.replace('k', ' KiB')} | " + " | ".join(cells) +
                         f" | {ratio(meds['ferry'], meds['nginx'])} | {ratio(meds['ferry'], meds['varnish'])} |")
            L.append("")

    table("pinned", [("http", "1k"), ("http", "100k"), ("https", "1k"), ("https", "100k")],
          "Pinned: server on CPU0, wrk on CPU1")
    if any(k[0] == "unpinned" for k in results):
        table("unpinned", [("http", "1k")], f"Unpinned (shared): both on both CPUs, {UNPINNED_DURATION} s runs")

    L.append("## Every run\n")
    L.append("Steal and other load are % of one core over the run (other = busy CPU not used by the server or "
             "wrk). Runs over 25% are retried once (time budget permitting); the discarded attempt is marked.\n")
    L.append("| variant | round | server | case | req/s | p99 ms | CPU µs/req | server CPU % | steal % | other % | errors |")
    L.append("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in runs_log:
        err = []
        if r["non2xx"]:
            err.append(f"{r['non2xx']} non-2xx")
        if r["sockerr"]:
            err.append(r["sockerr_text"])
        if r.get("discarded"):
            err.append("discarded (load), retried")
        if r.get("noisy"):
            err.append("load over 25%: " + r["noisy"])
        L.append(f"| {r['variant']} | {r['round']} | {r['server']} | {r['scheme'].upper()} {r['size']} | "
                 f"{fmt_num(r['rps'])} | {fmt_num(r['p99_ms'], 2)} | {fmt_num(r['cpu_us_per_req'], 1)} | "
                 f"{r['server_cpu_pct']:.0f} | {r['steal_pct']:.1f} | {r['other_pct']:.1f} | {', '.join(err)} |")
    L.append("")
    if errors:
        L.append("## ERRORS\n")
        for e in errors:
            L.append("```\n" + e + "\n```")
        L.append("")
    hits = [l for l in ferry_metrics.splitlines() if l.startswith("ferry_cache_") and not l.startswith("#")]
    if hits:
        L.append("## ferryd cache counters after the run\n")
        L.append("```")
        L.extend(hits[:30])
        L.append("```\n")
    return "\n".join(L)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
