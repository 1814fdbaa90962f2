#!/usr/bin/python3
"""switch -- the switch benchmarks of issue 3: Ferry's switch against HAProxy
(TCP mode, stick on the SSL session ID), both in front of the same three
ferryd caches (tls_label 1..3, prefix codec).

(A Python 3 script, standard library only, despite the .sh name: run it
directly or through bench/run.sh.)

One run starts, all on 127.61.0.0/24:
  * an origin (ferryd, origin role) serving /1k (1 KiB) and /big (50 MiB),
    Cache-Control: max-age=3600                          127.61.0.10:8080
  * three caches (ferryd, cache role, workers 1, tls_label 1..3, prefix
    codec, ECDSA P-256 certificate), warmed: both objects are hits on each
                                                         127.61.0.11-13:8443
  * Ferry's switch (workers 1, health_check http)        127.61.0.20:8443
  * HAProxy 2.6, nbthread 1, mode tcp, balance roundrobin, with the
    session-ID stick table of the anchor setup in BENCHMARKING.md plus
    `tcp-response inspect-delay 5s` (without it HAProxy 2.6 learns nothing
    from the ServerHello)                                127.61.0.21:8443
    and the same config exactly as written there         127.61.0.22:8443
Neither front sends a PROXY header (the caches' listeners have none).

Pinning ("pinned"): the switch, HAProxy and the three caches run under
`taskset -c 0`, the load generator under `taskset -c 1`. The bulk benchmark
also has an unpinned ("shared") variant: the servers' affinity is widened to
both CPUs and the load generator is unpinned.

The load generator is bench/resume_clients.c (OpenSSL), built into
$FERRY_BUILD/resume_clients. Every client binds its own source address
127.A.B.C before connecting, keeps its session and reconnects with
SSL_set_session. wrk is not used for connection rates: it reconnects from one
address and resumes however its OpenSSL client cache decides, which is
neither "all full" nor "what a returning client does".

Benchmarks:
  rate     connections/s with one request (GET /1k, Connection: close) per
           connection: BENCH_RATE_CLIENTS clients (default 1000), each first
           connects once (untimed), then they reconnect in turn offering
           their latest session for BENCH_RATE_DURATION s with 32 threads.
           Cases: TLS 1.2 with the caches' tls_tickets off (session IDs,
           HAProxy's best case), TLS 1.2 and TLS 1.3 with tls_tickets on.
           Also: the front's and the caches' CPU per connection.
  bulk     GET /big (50 MiB) BENCH_BULK_REQUESTS times (default 40) on one
           keep-alive TLS 1.3 connection: direct to cache-1, through the
           switch, through HAProxy. Pinned and shared.
  latency  BENCH_LAT_CONNS (default 400) connections one after another,
           each fresh (full TLS 1.3 handshake) with GET /1k: p50/p99 from
           connect to the last byte; direct, switch, HAProxy. Then the same
           with each connection resuming the previous one's session.
  resume   BENCH_CLIENTS clients (default 10000) each connect once (full
           handshake) and save the session, then each reconnects once
           offering it. For TLS 1.2 and 1.3, caches' tls_tickets off and on,
           and each front: switch `policy roundrobin`, HAProxy, switch with
           the default chain `psk ticket session_id sticky hash`, `sticky`,
           `hash`, `leastconn`; for TLS 1.2 with tickets off also HAProxy
           with the config as written. Order: TLS 1.3 and 1.2 with tickets
           on, then TLS 1.2 and 1.3 with tickets off; variants that would
           end past BENCH_BUDGET are skipped (and listed as skipped).
  moved    the same with BENCH_MOVE_CLIENTS clients (default 3000) that
           reconnect from another source address (NAT rebinding, a phone
           changing networks), for TLS 1.2 with tickets off and TLS 1.3 with
           tickets on: HAProxy, the chain, `sticky`, `hash`. The switch is restarted for each variant (a
           fresh sticky table and fresh counters). Client-side counts are
           cross-checked with the switch's ferry_switch_handshakes_total and
           the caches' ferry_tls_handshakes_total (deltas).
Rounds alternate the fronts (HAProxy first in odd rounds, Ferry first in even
ones); the medians with min and max are reported. Every run records the 1-min
load average before it, and the hypervisor steal and other load (busy
jiffies in /proc/stat not spent by our servers or the load generator), in %
of one core. Before each run the script waits (bounded, see BENCH_LOAD_WAIT)
for the load average to fall below BENCH_LOAD_MAX.

Environment:
  BENCH_SECTIONS=rate,bulk,latency,resume
  BENCH_ROUNDS=3            rounds for rate, bulk, latency
  BENCH_CLIENTS=10000       clients per resumption variant
  BENCH_MOVE_CLIENTS=3000   clients per "moved" variant (0: none)
  BENCH_TICKETS=on,off      the caches' tls_tickets settings for `resume`
  BENCH_RATE_DURATION=5     seconds per rate run
  BENCH_RATE_CLIENTS=1000
  BENCH_HANDOFF=0           1: the caches listen on hand-off sockets and Ferry's
                            switch hands each connection over to them instead
                            of relaying it (`handoff`, docs/switch.md);
                            HAProxy relays as always
  BENCH_STRACE=0            1: count the fronts' system calls per connection in
                            the rate runs (strace -c; slows the fronts)
  BENCH_BULK_REQUESTS=40
  BENCH_LAT_CONNS=400
  BENCH_LOAD_MAX=1.0        wait for the 1-min load average to fall below this
  BENCH_LOAD_WAIT=20        ... at most this many seconds before a run
  BENCH_LOAD_WAIT_TOTAL=120 ... and this many over the whole benchmark
  BENCH_BUDGET=900          seconds; later resume variants are skipped past it
  FERRY_BUILD=build         where ferryd is (and resume_clients is built)
  FERRY_COMMIT              the commit the binaries were built from, for the
                            report (default: git HEAD of this tree)
  BENCH_RESULTS=bench/results

Output: Markdown tables on stdout and in bench/results/switch-<date>.md, every
run as a JSON line in bench/results/switch-<date>.jsonl. Exit status 1 if a
run had errors (failed connections, a server died).
"""
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (helpers shared with the other benchmarks)
from benchlib import write, tail, proc_stat, loadavg, stop, stop_all  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.abspath(os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build")))
FERRYD = os.path.join(BUILD, "ferryd")
LOADGEN = os.path.join(BUILD, "resume_clients")
LOADGEN_SRC = os.path.join(ROOT, "bench", "resume_clients.c")
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def env_float(name, default):
    return float(os.environ.get(name, str(default)))


SECTIONS = [s.strip() for s in os.environ.get("BENCH_SECTIONS", "rate,bulk,latency,resume").split(",") if s.strip()]
ROUNDS = env_int("BENCH_ROUNDS", 3)
CLIENTS = env_int("BENCH_CLIENTS", 10000)
MOVE_CLIENTS = env_int("BENCH_MOVE_CLIENTS", 3000)
TICKETS = [s.strip() for s in os.environ.get("BENCH_TICKETS", "on,off").split(",") if s.strip()]
RATE_DURATION = env_float("BENCH_RATE_DURATION", 5)
RATE_CLIENTS = env_int("BENCH_RATE_CLIENTS", 1000)
RATE_THREADS = 32
STRACE = os.environ.get("BENCH_STRACE") == "1"
HANDOFF = os.environ.get("BENCH_HANDOFF") == "1"
BULK_REQUESTS = env_int("BENCH_BULK_REQUESTS", 40)
LAT_CONNS = env_int("BENCH_LAT_CONNS", 400)
LOAD_MAX = env_float("BENCH_LOAD_MAX", 1.0)
LOAD_WAIT = env_float("BENCH_LOAD_WAIT", 20)
LOAD_WAIT_TOTAL = env_float("BENCH_LOAD_WAIT_TOTAL", 120)
BUDGET = env_float("BENCH_BUDGET", 900)

HOST = "bench.test"
NET = "127.61.0"
ORIGIN = NET + ".10"
CACHES = {1: NET + ".11", 2: NET + ".12", 3: NET + ".13"}
SWITCH = NET + ".20"
HAPROXY = NET + ".21"
HAPROXY_AS_WRITTEN = NET + ".22"
TLS_PORT = 8443
BIG = 50 * 1024 * 1024
HZ = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADGEN_CPU = "0", "1"
POLICIES = [  # (variant name, policy line)
    ("ferry roundrobin", "roundrobin"),
    ("haproxy stick session-id", None),
    ("haproxy, BENCHMARKING.md config as written", None),  # TLS 1.2, tickets off only
    ("ferry chain psk ticket session_id sticky hash", "psk ticket session_id sticky hash"),
    ("ferry sticky", "sticky"),
    ("ferry hash", "hash"),
    ("ferry leastconn", "leastconn"),
]
T0 = time.monotonic()
waited_total = 0.0
failures = []


def log(msg):
    print("switch: " + msg, file=sys.stderr, flush=True)


def elapsed():
    return time.monotonic() - T0


# ---- processes -------------------------------------------------------------

def start(argv, logpath, cpus=SERVER_CPU):
    return benchlib.start(argv, logpath, cpus)


def wait_port(p, addr, port, what, timeout=15):
    benchlib.wait_port(p, addr, port, what, timeout, name="switch")


def cpu_ticks(pid):
    return benchlib.cpu_ticks(pid, reaped=True)


def wait_load(limit=None):
    """Waits (bounded) for the 1-min load average to fall below LOAD_MAX."""
    global waited_total
    limit = LOAD_WAIT if limit is None else limit
    t = time.monotonic()
    while loadavg() >= LOAD_MAX and time.monotonic() - t < limit and waited_total + (time.monotonic() - t) < LOAD_WAIT_TOTAL:
        time.sleep(1)
    waited_total += time.monotonic() - t
    return loadavg()


def set_affinity(pid, cpus):
    subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], capture_output=True, timeout=10)


# ---- setup -----------------------------------------------------------------


def build_loadgen():
    if os.path.exists(LOADGEN) and os.path.getmtime(LOADGEN) >= os.path.getmtime(LOADGEN_SRC):
        return
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", LOADGEN, LOADGEN_SRC, "-lssl", "-lcrypto"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("switch: building resume_clients failed:\n" + r.stderr)


def make_pki(d):
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True, timeout=60)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Ferry bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "bench.key", "-out", "bench.csr", "-subj", "/CN=" + HOST)
    with open(os.path.join(d, "bench.ext"), "w") as f:
        f.write(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "bench.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "bench.pem", "-days", "2", "-extfile", "bench.ext")


class Node:
    def __init__(self, d):
        self.d = d
        self.token = os.path.join(d, "token")
        write(self.token, "bench-token-0123456789abcdef\n")
        os.chmod(self.token, 0o600)
        os.makedirs(os.path.join(d, "www"), exist_ok=True)
        with open(os.path.join(d, "www", "1k"), "wb") as f:
            f.write(b"x" * 1023 + b"\n")
        with open(os.path.join(d, "www", "big"), "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(BIG >> 20):
                f.write(chunk)
        self.origin = self.switch = self.haproxy = None
        self.caches = {}
        self.tickets = None

    # origin -------------------------------------------------------------
    def start_origin(self):
        conf = write(os.path.join(self.d, "origin.conf"), f"""error_log {self.d}/origin.log;
origin {{
    listen {ORIGIN}:8080;
    root {self.d}/www;
    cache_control / "max-age=3600";
}}
""")
        self.origin = start([FERRYD, "-c", conf], os.path.join(self.d, "origin.out"), cpus=None)
        wait_port(self.origin, ORIGIN, 8080, "origin")

    # caches -------------------------------------------------------------
    def cache_conf(self, i, tickets):
        a = CACHES[i]
        return write(os.path.join(self.d, f"cache{i}.conf"), f"""workers 1;
error_log {self.d}/cache{i}.log;
admin {{
    listen {a}:9000;
    token_file {self.token};
}}
cache {{
    name cache-{i};
    listen {a}:8080;
    listen_tls {a}:{TLS_PORT};
    certificate {self.d}/bench.pem {self.d}/bench.key;
    tls_label {i};
    tls_label_codec prefix;
    tls_tickets {tickets};
    {f"handoff {self.d}/cache{i}.sock;" if HANDOFF else ""}
    memory 256m;
    max_object_size 64m;
    publisher {HOST} {{
        origin http://{ORIGIN}:8080;
    }}
}}
""")

    def start_caches(self, tickets):
        for p in self.caches.values():
            stop(p)
        self.caches = {}
        for i in CACHES:
            conf = self.cache_conf(i, tickets)
            self.caches[i] = start([FERRYD, "-c", conf], os.path.join(self.d, f"cache{i}.out"))
        for i, a in CACHES.items():
            wait_port(self.caches[i], a, TLS_PORT, f"cache-{i}")
            wait_port(self.caches[i], a, 9000, f"cache-{i} admin")
        self.tickets = tickets
        # Warm: each object is fetched until the cache answers it as a hit.
        for i, a in CACHES.items():
            for path in ("/1k", "/big"):
                for attempt in range(5):
                    req = urllib.request.Request(f"http://{a}:8080{path}", headers={"Host": HOST})
                    with urllib.request.urlopen(req, timeout=30) as r:
                        body = r.read()
                        xc = r.headers.get("X-Cache", "")
                    if "HIT" in xc.upper():
                        break
                    time.sleep(0.1)
                else:
                    raise SystemExit(f"switch: cache-{i} does not answer {path} as a hit (X-Cache: {xc})")
                if path == "/big" and len(body) != BIG:
                    raise SystemExit(f"switch: cache-{i} /big has {len(body)} bytes")

    # switch -------------------------------------------------------------
    def start_switch(self, policy):
        if self.switch:
            stop(self.switch)
        backends = "".join(
            f"    backend cache-{i} {a}:{TLS_PORT} label {i} check {a}:9000"
            + (f" handoff {self.d}/cache{i}.sock" if HANDOFF else "") + ";\n" for i, a in CACHES.items())
        conf = write(os.path.join(self.d, "switch.conf"), f"""workers 1;
error_log {self.d}/switch.log;
admin {{
    listen {SWITCH}:9000;
    token_file {self.token};
}}
switch {{
    listen {SWITCH}:{TLS_PORT};
    policy {policy};
    label_codec prefix;
    health_check http;
    max_connections 20000;
{backends}}}
""")
        self.switch = start([FERRYD, "-c", conf], os.path.join(self.d, "switch.out"))
        wait_port(self.switch, SWITCH, TLS_PORT, "switch")
        wait_port(self.switch, SWITCH, 9000, "switch admin")
        # All backends up (optimistic at start; make sure a check has passed).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            m = metrics(SWITCH)
            if sum(v for k, v in m.items() if k.startswith("ferry_switch_backend_up")) == len(CACHES):
                break
            time.sleep(0.1)
        self.switch.policy = policy

    # haproxy ------------------------------------------------------------
    def start_haproxy(self):
        servers = "".join(f"    server cache-{i} {a}:{TLS_PORT}\n" for i, a in CACHES.items())
        stick = """    mode tcp
    balance roundrobin
    stick-table type binary len 32 size 200k expire 30m
    acl clienthello req.ssl_hello_type 1
    acl serverhello res.ssl_hello_type 2
    tcp-request inspect-delay 5s
{extra}    tcp-request content accept if clienthello
    tcp-response content accept if serverhello
    stick on req.payload_lv(43,1) if clienthello
    stick store-response res.payload_lv(43,1) if serverhello
"""
        # Backend b: the anchor of BENCHMARKING.md plus `tcp-response inspect-delay`. Without it
        # HAProxy 2.6 runs the response rules before the ServerHello has arrived, learns nothing
        # from it, and its stickiness is round robin (see docs/benchmarks-switch.md). Backend
        # b_as_written is the config exactly as BENCHMARKING.md gives it.
        fixed = stick.format(extra="    tcp-response inspect-delay 5s\n")
        as_written = stick.format(extra="")
        conf = write(os.path.join(self.d, "haproxy.cfg"), f"""global
    nbthread 1
    maxconn 8000

defaults
    mode tcp
    timeout connect 3s
    timeout client 60s
    timeout server 60s

frontend f
    bind {HAPROXY}:{TLS_PORT}
    default_backend b

frontend f_as_written
    bind {HAPROXY_AS_WRITTEN}:{TLS_PORT}
    default_backend b_as_written

backend b
{fixed}{servers}
backend b_as_written
{as_written}{servers}""")
        r = subprocess.run(["haproxy", "-c", "-f", conf], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SystemExit("switch: haproxy config check failed:\n" + r.stdout + r.stderr)
        self.haproxy = start(["haproxy", "-db", "-f", conf], os.path.join(self.d, "haproxy.out"))
        wait_port(self.haproxy, HAPROXY, TLS_PORT, "haproxy")
        wait_port(self.haproxy, HAPROXY_AS_WRITTEN, TLS_PORT, "haproxy")

    def servers(self, front=None):
        """{name: pid} of the processes whose CPU counts as ours."""
        s = {f"cache-{i}": p.pid for i, p in self.caches.items()}
        if self.switch:
            s["switch"] = self.switch.pid
        if self.haproxy:
            s["haproxy"] = self.haproxy.pid
        if self.origin:
            s["origin"] = self.origin.pid
        return s

    def check_alive(self):
        for name, p in [("origin", self.origin), ("switch", self.switch), ("haproxy", self.haproxy)] + \
                [(f"cache-{i}", p) for i, p in self.caches.items()]:
            if p is not None and p.poll() is not None:
                failures.append(f"{name} exited with {p.returncode}: {tail(p.logpath, 10)}")
                raise SystemExit(f"switch: {name} died (exit {p.returncode}):\n{tail(p.logpath)}")


def metrics(addr):
    """{name{labels}: value} from a ferryd's /metrics."""
    try:
        with urllib.request.urlopen(f"http://{addr}:9000/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def msum(m, name, *labels):
    return int(sum(v for k, v in m.items() if k.split("{")[0] == name and all(l in k for l in labels)))


# ---- one measured run ------------------------------------------------------


def parse_kv(line):
    out = {}
    for tok in line.split():
        k, sep, v = tok.partition("=")
        if not sep:
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


def run_loadgen(node, args, timeout, pinned=True, front=None):
    """Runs resume_clients; returns its key=value output plus the run's CPU figures."""
    node.check_alive()
    la = wait_load()
    servers = node.servers()
    before = {n: cpu_ticks(p) for n, p in servers.items()}
    st0 = proc_stat()
    t0 = time.monotonic()
    ru0 = os.times()
    argv = [LOADGEN] + args
    if pinned:
        argv = ["taskset", "-c", LOADGEN_CPU] + argv
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        failures.append(f"load generator timed out: {' '.join(args)}")
    # The load generator's own CPU: it has exited and been reaped by communicate().
    wall = time.monotonic() - t0
    st1 = proc_stat()
    after = {n: cpu_ticks(p_) for n, p_ in servers.items()}
    res = parse_kv(out.strip().splitlines()[-1]) if out.strip() else {}
    res["stderr"] = err.strip()
    res["rc"] = p.returncode
    res["argv"] = " ".join(argv).replace(LOADGEN, "resume_clients")
    cpu = {n: (after[n] - before[n]) / HZ for n in servers}
    res["cpu_s"] = cpu
    ru1 = os.times()  # children times: only the load generator was reaped since ru0
    res["wall"] = wall
    res["loadavg"] = la
    ours = sum(after[n] - before[n] for n in servers)
    lg_s = (ru1.children_user + ru1.children_system) - (ru0.children_user + ru0.children_system)
    res["loadgen_cpu_s"] = lg_s
    busy = st1["busy"] - st0["busy"]
    res["steal_pct"] = 100.0 * (st1["steal"] - st0["steal"]) / HZ / wall
    res["other_pct"] = max(0.0, 100.0 * (busy - ours - lg_s * HZ) / HZ / wall)
    if err.strip():
        for l in err.strip().splitlines()[:5]:
            log("  loadgen: " + l)
    node.check_alive()
    return res


# ---- benchmarks ------------------------------------------------------------

RUNS = []  # every run, for the .jsonl


def record(section, case, target, rnd, res, **extra):
    row = {"section": section, "case": case, "target": target, "round": rnd}
    row.update(extra)
    row.update(res)
    RUNS.append(row)
    if JSONL:
        JSONL.write(json.dumps(row) + "\n")
        JSONL.flush()
    return row


def front_addr(target):
    return {"switch": SWITCH, "haproxy": HAPROXY, "haproxy-as-written": HAPROXY_AS_WRITTEN,
            "direct": CACHES[1]}[target] + f":{TLS_PORT}"


def front_cpu(res, target):
    c = res["cpu_s"]
    return c.get(target, 0.0) if target in ("switch", "haproxy") else 0.0


def caches_cpu(res):
    return sum(v for k, v in res["cpu_s"].items() if k.startswith("cache-"))


def order(rnd, targets):
    return targets if rnd % 2 == 1 else list(reversed(targets))


def strace_start(node, target):
    """BENCH_STRACE=1: counts the front's system calls during a rate run
    (strace -c slows the front, so its rates are not comparable)."""
    pid = node.servers().get(target)
    if pid is None:
        return None
    out = os.path.join(RESULTS, f"strace-{target}-{os.getpid()}.txt")
    p = subprocess.Popen(["strace", "-c", "-f", "-qq", "-o", out, "-p", str(pid)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return (p, out)


def strace_report(tracer, case, target, conns):
    p, out = tracer
    p.send_signal(signal.SIGINT)
    p.wait(timeout=30)
    calls = {}
    with open(out) as f:
        for line in f:
            w = line.split()
            if len(w) >= 5 and w[0][0].isdigit() and w[-1] not in ("total",):
                n = int(w[3])
                calls[w[-1]] = n
    os.unlink(out)
    total = sum(calls.values())
    per = ", ".join(f"{k} {v / max(conns, 1):.2f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1]))
    log(f"strace {case} {target}: {total / max(conns, 1):.1f} syscalls/conn over {conns} conns: {per}")


def bench_rate(node):
    cases = [("TLS 1.2, tickets off", "1.2", "off"), ("TLS 1.2, tickets on", "1.2", "on"),
             ("TLS 1.3, tickets on", "1.3", "on")]
    src = 10
    for case, ver, tickets in cases:
        if node.tickets != tickets:
            node.start_caches(tickets)
        for rnd in range(1, ROUNDS + 1):
            for target in order(rnd, ["haproxy", "switch"]):
                src += 1
                args = ["-m", "rate", "-c", front_addr(target), "-v", ver, "-t", str(RATE_THREADS),
                        "-k", str(RATE_CLIENTS), "-d", str(RATE_DURATION), "-a", str(src),
                        "-D", str(RATE_DURATION + 60)]
                tracer = strace_start(node, target) if STRACE else None
                res = run_loadgen(node, args, timeout=RATE_DURATION + 90)
                ok = res.get("ok", 0)
                if tracer:
                    strace_report(tracer, case, target, ok)
                row = record("rate", case, target, rnd, res,
                             front_us=1e6 * front_cpu(res, target) / max(ok, 1),
                             caches_us=1e6 * caches_cpu(res) / max(ok, 1),
                             loadgen_us=1e6 * res["loadgen_cpu_s"] / max(ok, 1))
                log(f"rate {case} {target} r{rnd}: {res.get('rate', 0):.0f} conn/s, "
                    f"{res.get('resumed', 0)}/{ok} resumed, err {res.get('err', '?')}, "
                    f"front {row['front_us']:.0f} us/conn, caches {row['caches_us']:.0f} us/conn, "
                    f"load {res['loadavg']:.2f} steal {res['steal_pct']:.0f}% other {res['other_pct']:.0f}%")
                if res.get("err", 1) or res.get("warm_err", 0):
                    failures.append(f"rate {case} {target} r{rnd}: {res.get('err')} errors "
                                    f"(+{res.get('warm_err')} in warm-up)")


def bench_bulk(node):
    if node.tickets is None:
        node.start_caches("on")
    src = 60
    for variant, pinned in (("pinned", True), ("shared", False)):
        if not pinned:
            for pid in node.servers().values():
                set_affinity(pid, "0,1")
        for rnd in range(1, ROUNDS + 1):
            for target in order(rnd, ["haproxy", "switch", "direct"]):
                src += 1
                args = ["-m", "bulk", "-c", front_addr(target), "-v", "1.3", "-t", "1", "-n", str(BULK_REQUESTS),
                        "-p", "/big", "-a", str(src), "-D", "120", "-o", "30"]
                res = run_loadgen(node, args, timeout=150, pinned=pinned)
                gib = res.get("bytes", 0) / (1 << 30)
                row = record("bulk", variant, target, rnd, res,
                             front_s_per_gib=front_cpu(res, target) / gib if gib else 0,
                             caches_s_per_gib=caches_cpu(res) / gib if gib else 0)
                log(f"bulk {variant} {target} r{rnd}: {res.get('mib_per_s', 0):.0f} MiB/s, "
                    f"front {row['front_s_per_gib']:.2f} CPU-s/GiB, caches {row['caches_s_per_gib']:.2f}, "
                    f"err {res.get('err', '?')}, load {res['loadavg']:.2f} steal {res['steal_pct']:.0f}% "
                    f"other {res['other_pct']:.0f}%")
                if res.get("err", 1) or res.get("ok", 0) != BULK_REQUESTS:
                    failures.append(f"bulk {variant} {target} r{rnd}: {res.get('ok')} of {BULK_REQUESTS} ok")
        if not pinned:
            for pid in node.servers().values():
                set_affinity(pid, SERVER_CPU)


def bench_latency(node):
    if node.tickets is None:
        node.start_caches("on")
    src = 90
    for case, reuse in (("fresh, full handshake", False), ("fresh, resumed", True)):
        for rnd in range(1, ROUNDS + 1):
            for target in order(rnd, ["haproxy", "switch", "direct"]):
                src += 1
                args = ["-m", "latency", "-c", front_addr(target), "-v", "1.3", "-t", "1",
                        "-n", str(LAT_CONNS), "-a", str(src), "-D", "60"] + (["-r"] if reuse else [])
                res = run_loadgen(node, args, timeout=90)
                record("latency", case, target, rnd, res)
                log(f"latency {case} {target} r{rnd}: p50 {res.get('p50_ms', 0):.3f} ms "
                    f"p99 {res.get('p99_ms', 0):.3f} ms, {res.get('resumed', 0)}/{res.get('ok', 0)} resumed, "
                    f"err {res.get('err', '?')}, load {res['loadavg']:.2f} steal {res['steal_pct']:.0f}% "
                    f"other {res['other_pct']:.0f}%")
                if res.get("err", 1):
                    failures.append(f"latency {case} {target} r{rnd}: {res.get('err')} errors")


MOVE_CASES = (("1.2", "off"), ("1.3", "on"))
MOVE_POLICIES = [
    ("haproxy stick session-id", None),
    ("ferry chain psk ticket session_id sticky hash", "psk ticket session_id sticky hash"),
    ("ferry sticky", "sticky"),
    ("ferry hash", "hash"),
]
_src = [120]


def next_src(clients):
    """A fresh 127.A block of source addresses for `clients` clients."""
    width = 1 + clients // 62500
    if _src[0] + width > 250:
        _src[0] = 120
    a = _src[0]
    _src[0] += width
    return a


def resume_variant(node, section, case, ver, name, policy, clients, moved, progress):
    # Budget: skip what would not fit (a variant takes about as long as the last one).
    last = [r for r in RUNS if r["section"] in ("resume", "moved") and not r.get("skipped")]
    est = last[-1]["wall"] * clients / max(last[-1].get("clients", clients), 1) if last else 20
    if elapsed() + est + 5 > BUDGET:
        log(f"{section}: budget reached, skipping {case} {name}")
        record(section, case, name, 1, {"skipped": True})
        return
    target = "switch" if policy else "haproxy-as-written" if "as written" in name else "haproxy"
    if policy is not None:
        node.start_switch(policy)
    c0 = {i: metrics(a) for i, a in CACHES.items()}
    args = ["-m", "resume", "-c", front_addr(target), "-v", ver, "-t", "16", "-n", str(clients),
            "-a", str(next_src(clients)), "-D", "150"]
    if moved:
        args += ["-b", str(next_src(clients))]
    res = run_loadgen(node, args, timeout=180)
    c1 = {i: metrics(a) for i, a in CACHES.items()}
    cache_res = sum(msum(c1[i], "ferry_tls_handshakes_total", 'handshake="resumed"') -
                    msum(c0[i], "ferry_tls_handshakes_total", 'handshake="resumed"') for i in CACHES)
    cache_full = sum(msum(c1[i], "ferry_tls_handshakes_total", 'handshake="full"') -
                     msum(c0[i], "ferry_tls_handshakes_total", 'handshake="full"') for i in CACHES)
    extra = {"cache_resumed": cache_res, "cache_full": cache_full, "policy": policy, "clients": clients}
    if policy is not None:
        m = metrics(SWITCH)
        extra["switch_resumed"] = msum(m, "ferry_switch_handshakes_total", 'handshake="resumed"')
        extra["switch_full"] = msum(m, "ferry_switch_handshakes_total", 'handshake="full"')
        steps = {}
        for k, v in m.items():
            if k.startswith("ferry_switch_connections_total{") and v:
                st = re.search(r'step="([^"]+)"', k).group(1)
                steps[st] = steps.get(st, 0) + int(v)
        extra["switch_steps"] = steps
        extra["switch_rejected"] = msum(m, "ferry_switch_rejected_total")
    record(section, case, name, 1, res, **extra)
    progress[0] += 1
    p2 = res.get("p2_ok", 0)
    log(f"{section} {case} {name}: {res.get('p2_resumed', 0)}/{p2} resumed "
        f"({100.0 * res.get('p2_resumed', 0) / max(p2, 1):.2f}%), same cache "
        f"{res.get('p2_same_backend', 0)}, errors {res.get('p1_err', '?')}+{res.get('p2_err', '?')}, "
        f"caches {cache_res} resumed/{cache_full} full"
        + (f", switch {extra['switch_resumed']}/{extra['switch_full']} steps {extra['switch_steps']}"
           if policy else "")
        + f", {res['wall']:.1f}s, load {res['loadavg']:.2f} steal {res['steal_pct']:.0f}% "
        f"other {res['other_pct']:.0f}% [{progress[0]}/{progress[1]}]")
    if res.get("p1_err", 1) or res.get("p2_err", 1) or res.get("deadline_hit"):
        failures.append(f"{section} {case} {name}: errors {res.get('p1_err')}+{res.get('p2_err')}, "
                        f"deadline_hit {res.get('deadline_hit')}")


def bench_resume(node):
    # Most telling first, so that the time budget cuts the least telling ones on a busy machine:
    # the caches' default (stateless tickets) for TLS 1.3 and 1.2, then session IDs and
    # stateful TLS 1.3 tickets.
    cases = [(t, v) for t in ("on", "off") if t in TICKETS
             for v in (("1.3", "1.2") if t == "on" else ("1.2", "1.3"))]
    n = sum(len(POLICIES) - (0 if (v, t) == ("1.2", "off") else 1) for t, v in cases)
    n += sum(len(MOVE_POLICIES) for t, v in cases if (v, t) in MOVE_CASES) if MOVE_CLIENTS else 0
    progress = [0, n]
    for tickets, ver in cases:
        if node.tickets != tickets:
            node.start_caches(tickets)
        case = f"TLS {ver}, tickets {tickets}"
        for name, policy in POLICIES:
            if "as written" in name and (ver != "1.2" or tickets != "off"):
                continue
            resume_variant(node, "resume", case, ver, name, policy, CLIENTS, False, progress)
        if MOVE_CLIENTS and (ver, tickets) in MOVE_CASES:
            for name, policy in MOVE_POLICIES:
                resume_variant(node, "moved", case, ver, name, policy, MOVE_CLIENTS, True, progress)
    if node.switch:
        stop(node.switch)
        node.switch = None


# ---- report ----------------------------------------------------------------


def med(vals, fmt="{:.0f}"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return fmt.format(vals[0])
    return (fmt.format(statistics.median(vals)) + " (" + fmt.format(min(vals)) + "–" + fmt.format(max(vals)) + ")")


def rows(section, case=None, target=None):
    return [r for r in RUNS if r["section"] == section and (case is None or r["case"] == case)
            and (target is None or r["target"] == target) and not r.get("skipped")]


def conditions(rs):
    return (med([r["loadavg"] for r in rs], "{:.1f}") + " | " + med([r["steal_pct"] for r in rs]) + " | "
            + med([r["other_pct"] for r in rs]))


def report(meta):
    out = []
    w = out.append
    w(f"# Switch benchmark, {meta['date']}\n")
    w(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; {meta['openssl']}; {meta['haproxy']}.")
    w(f"Ferry commit {meta['commit']}, binaries from {BUILD}."
      + (" Ferry's switch hands connections over to the caches (BENCH_HANDOFF=1)." if HANDOFF else ""))
    w(f"Pinned: switch, HAProxy and the three caches on CPU {SERVER_CPU}, the load generator on CPU {LOADGEN_CPU}. "
      "Medians (min–max) over the rounds. Load = 1-min load average before each run; steal and other = % of one "
      "core during the run.\n")
    if rows("rate"):
        w(f"## Connections per second, one request per connection (pinned, {RATE_CLIENTS} clients, "
          f"{RATE_THREADS} threads, {RATE_DURATION:g} s per run)\n")
        w("| case | front | conn/s | resumed % | front µs/conn | caches µs/conn | loadgen µs/conn | errors | "
          "load | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        cases = list(dict.fromkeys(r["case"] for r in rows("rate")))
        for case in cases:
            for target in ("haproxy", "switch"):
                rs = rows("rate", case, target)
                if not rs:
                    continue
                w(f"| {case} | {target} | {med([r.get('rate') for r in rs])} | "
                  f"{med([100.0 * r.get('resumed', 0) / max(r.get('ok', 0), 1) for r in rs], '{:.1f}')} | "
                  f"{med([r['front_us'] for r in rs])} | {med([r['caches_us'] for r in rs])} | "
                  f"{med([r['loadgen_us'] for r in rs])} | {sum(r.get('err', 0) for r in rs)} | {conditions(rs)} |")
            h = rows("rate", case, "haproxy")
            s = rows("rate", case, "switch")
            if h and s:
                ratios = [b.get("rate", 0) / max(a.get("rate", 0), 1e-9) for a, b in zip(h, s)]
                w(f"| {case} | switch / haproxy | {med(ratios, '{:.2f}')} | | | | | | | | |")
        w("")
    if rows("bulk"):
        w(f"## Bulk: GET /big (50 MiB) x{BULK_REQUESTS} on one keep-alive TLS 1.3 connection\n")
        w("| variant | path | MiB/s | % of direct | front CPU-s/GiB | caches CPU-s/GiB | errors | load | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for variant in ("pinned", "shared"):
            d = rows("bulk", variant, "direct")
            for target in ("direct", "switch", "haproxy"):
                rs = rows("bulk", variant, target)
                if not rs:
                    continue
                pct = "-"
                if d and target != "direct":
                    pct = med([100.0 * r.get("mib_per_s", 0) / max(dd.get("mib_per_s", 0), 1e-9)
                               for r, dd in zip(rs, d)], "{:.0f}")
                w(f"| {variant} | {target} | {med([r.get('mib_per_s') for r in rs])} | {pct} | "
                  f"{med([r['front_s_per_gib'] for r in rs], '{:.2f}')} | "
                  f"{med([r['caches_s_per_gib'] for r in rs], '{:.2f}')} | "
                  f"{sum(r.get('err', 0) for r in rs)} | {conditions(rs)} |")
        w("")
    if rows("latency"):
        w(f"## Latency of GET /1k over a fresh TLS 1.3 connection ({LAT_CONNS} in a row per run, pinned)\n")
        w("| case | path | p50 ms | p90 ms | p99 ms | p50 added vs direct, ms | resumed % | errors | load | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for case in dict.fromkeys(r["case"] for r in rows("latency")):
            d = rows("latency", case, "direct")
            for target in ("direct", "switch", "haproxy"):
                rs = rows("latency", case, target)
                if not rs:
                    continue
                add = "-"
                if d and target != "direct":
                    add = med([r.get("p50_ms", 0) - dd.get("p50_ms", 0) for r, dd in zip(rs, d)], "{:+.3f}")
                w(f"| {case} | {target} | {med([r.get('p50_ms') for r in rs], '{:.3f}')} | "
                  f"{med([r.get('p90_ms') for r in rs], '{:.3f}')} | {med([r.get('p99_ms') for r in rs], '{:.3f}')} | "
                  f"{add} | {med([100.0 * r.get('resumed', 0) / max(r.get('ok', 0), 1) for r in rs], '{:.1f}')} | "
                  f"{sum(r.get('err', 0) for r in rs)} | {conditions(rs)} |")
        w("")
    for section, title in (("resume", f"## Resumption: {CLIENTS} clients connect, save the session, reconnect once "
                                      "(3 caches)\n"),
                           ("moved", f"## Resumption when clients change address: {MOVE_CLIENTS} clients, the "
                                     "reconnection from another source address\n")):
        sr = [r for r in RUNS if r["section"] == section]
        if not sr:
            continue
        w(title)
        w("Full handshakes = phase 1 (one per client) + phase-2 connections not resumed. "
          "\"same cache\" = phase-2 connections served by the cache of phase 1 (Via). Caches and switch: "
          "their counters over the variant (both phases), resumed/full.\n")
        w("| TLS, caches' tickets | front / policy | resumed % | resumed | full handshakes | same cache | errors | "
          "caches resumed/full | switch resumed/full | switch steps | s | load | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in sr:
            if r.get("skipped"):
                w(f"| {r['case']} | {r['target']} | skipped (time budget) | | | | | | | | | | | |")
                continue
            p2 = r.get("p2_ok", 0)
            full = r.get("p1_ok", 0) + r.get("p2_full", 0)
            sw = f"{r['switch_resumed']}/{r['switch_full']}" if "switch_resumed" in r else "-"
            steps = " ".join(f"{k}:{v}" for k, v in sorted(r.get("switch_steps", {}).items())) or "-"
            w(f"| {r['case']} | {r['target']} | {100.0 * r.get('p2_resumed', 0) / max(p2, 1):.2f} | "
              f"{r.get('p2_resumed', 0)}/{p2} | {full} | {r.get('p2_same_backend', 0)} | "
              f"{r.get('p1_err', 0) + r.get('p2_err', 0)} | {r['cache_resumed']}/{r['cache_full']} | {sw} | {steps} | "
              f"{r['wall']:.0f} | {r['loadavg']:.1f} | {r['steal_pct']:.0f} | {r['other_pct']:.0f} |")
        w("")
    if failures:
        w("## Errors\n")
        for f in failures:
            w("- " + f)
        w("")
    return "\n".join(out)


def machine():
    def sh(*a):
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": os.uname().release,
        "openssl": sh("openssl", "version"),
        "haproxy": sh("haproxy", "-v").splitlines()[0] if sh("haproxy", "-v") else "?",
        "commit": os.environ.get("FERRY_COMMIT") or sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD") or "?",
    }


JSONL = None


def main():
    global JSONL
    for tool in ("haproxy", "taskset", "openssl"):
        if subprocess.run(["which", tool], capture_output=True).returncode != 0:
            raise SystemExit(f"switch: {tool} not found (scripts/install-deps.sh --bench)")
    if not os.access(FERRYD, os.X_OK):
        raise SystemExit(f"switch: {FERRYD} not built")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("switch: needs 2 CPUs for the pinning")
    build_loadgen()
    os.makedirs(RESULTS, exist_ok=True)
    meta = machine()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    JSONL = open(os.path.join(RESULTS, f"switch-{stamp}.jsonl"), "w")
    d = tempfile.mkdtemp(prefix="ferry-bench-switch-")
    log(f"work dir {d}; load average {loadavg():.2f}")
    rc = 0
    try:
        make_pki(d)
        node = Node(d)
        node.start_origin()
        node.start_haproxy()
        node.start_switch("psk ticket session_id sticky hash")
        if "rate" in SECTIONS:
            bench_rate(node)
        if "bulk" in SECTIONS or "latency" in SECTIONS:
            if node.tickets != "on":
                node.start_caches("on")
            if not node.switch:
                node.start_switch("psk ticket session_id sticky hash")
            if "bulk" in SECTIONS:
                bench_bulk(node)
            if "latency" in SECTIONS:
                bench_latency(node)
        if "resume" in SECTIONS:
            bench_resume(node)
    except SystemExit as e:
        print(str(e), file=sys.stderr, flush=True)
        failures.append(str(e).splitlines()[0] if str(e) else "aborted")
        rc = 1
    except KeyboardInterrupt:
        failures.append("interrupted")
        rc = 1
    finally:
        stop_all()
        if rc or failures:  # keep the logs, drop the content
            for name in ("big", "1k"):
                try:
                    os.unlink(os.path.join(d, "www", name))
                except OSError:
                    pass
        else:
            shutil.rmtree(d, ignore_errors=True)
    text = report(meta)
    path = os.path.join(RESULTS, f"switch-{stamp}.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    JSONL.close()
    print(text)
    log(f"results in {path} ({elapsed():.0f}s)" + (f"; logs in {d}" if os.path.isdir(d) else ""))
    return 1 if (rc or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
