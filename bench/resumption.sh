#!/usr/bin/python3
"""resumption -- the resumption study of issue 4: how many returning TLS
clients resume, and what the node pays, for every way of sharing or routing
sessions, in steady state and across three events.

(A Python 3 script, standard library only, despite the .sh name: run it with
/usr/bin/python3 or directly. It follows bench/switch.sh, whose helpers it
does not import so that each benchmark stays readable on its own.)

For n = 3 and n = 8 caches (BENCH_NS), each run starts, on 127.62.0.0/24:
  * an origin (ferryd, origin role) serving /1k, max-age=3600 (one for the
    whole study)                                          127.62.0.10:8080
  * n caches (ferryd, cache role, workers 1, ECDSA P-256 certificate, admin
    endpoint on :9000, group UDP on :7400), /1k warmed to a hit on each
                                                127.62.0.11-18:8443 (and :8080)
  * a Ferry switch (workers 1, health_check tcp on the caches' admin port
    every 200 ms, fall 2, passive_fall 1)                 127.62.0.20:8443
  * for the redis strategy, a redis-server in the foreground
    (--save '' --appendonly no)                           127.62.0.30:6379
Pinning as in switch.sh: every server (caches, switch, redis-server) under
`taskset -c 0`, the load generator under `taskset -c 1`.

Strategies (BENCH_STRATEGIES):
  roundrobin  switch `policy roundrobin`; caches' default local store and
              stateless tickets with per-process keys: the baseline.
  label       switch `policy psk ticket session_id hash`; caches `tls_label
              i` (prefix codec): resumptions routed back to their issuer.
  sticky      switch `policy sticky` (the client-address table; a client
              with no entry goes by the fallback, the client-address hash).
  hash        switch `policy hash` (rendezvous hash of the client address).
  group       switch `policy roundrobin`; caches `tls_tickets off;
              tls_session_store group` (stateful sessions replicated over
              UDP, sealed with the group key).
  redis       switch `policy roundrobin`; caches `tls_tickets off;
              tls_session_store redis`.
  tickets     switch `policy roundrobin`; caches `tls_tickets on;
              tls_session_store group; tls_ticket_keys group` (stateless
              tickets under keys every cache derives from the group key).
  sticky-rr   (not in the default list) `policy sticky roundrobin`: a sticky
              table whose first decision is round robin, so that losing the
              table (a switch restart) shows.
  label-group (not in the default list) both answers at once: label routing
              in front of caches that also share stateful sessions (group).

Scenarios (BENCH_SCENARIOS), each with fresh processes (caches, switch and
redis-server are started for the run and stopped after it; only the origin
stays), so no session of an earlier run can help a later one. A run is one
`resume_clients -m resume -E PAUSE`: BENCH_CLIENTS clients (default 10000,
16 threads, each client its own source address 127.A.B.C) connect once
(phase 1: a full handshake, GET /1k) and keep the session; the load
generator pauses; the script acts; then every client reconnects once, in a
random order, offering its session (phase 2).
  steady          nothing happens in the pause.
  fail            cache-1 is killed (SIGKILL) in the pause; phase 2 starts
                  once the switch reports it down (ferry_switch_backend_up).
  join            phase 1 runs with caches 1..n-1 only: cache-n is not
                  running. In the pause cache-n is started (for group and
                  redis it catches up on the live sessions: a sync request
                  to its peers, or a SCAN of Redis; the script waits until
                  its received counter stops growing), warmed, and the
                  switch is reloaded (SIGHUP) with all n backends.
  switch-restart  the switch is stopped (SIGTERM) and started again.

Measured per run:
  * resumed %: phase-2 connections resumed / phase-2 connections completed
    (the ideal is 100: every client offers a live session);
  * full handshakes: phase 1 + phase-2 connections not resumed;
  * the caches' CPU seconds in phase 2 (utime+stime from /proc/PID/stat of
    every cache alive at the start of phase 2), and the switch's and
    redis-server's;
  * the node's handshakes/s in phase 2: phase-2 connections / phase-2 wall
    time (p2_secs), one GET /1k per connection;
  * cross-checks: the caches' ferry_tls_handshakes_total{handshake=...}
    over the run (the killed cache's as read in the pause) against the
    client's counts, and the switch's decisions by step in phase 2.
Reference (BENCH_REFERENCE=1): `openssl s_time -connect CACHE:8443 -new`
and `-reuse` (with `-www /1k`, one request per connection as in the study)
for BENCH_STIME seconds (default 5) against one cache alone (no switch),
pinned the same way, with the caches' default stateless tickets and with
tls_tickets off (the store), for each TLS version: one s_time process, and
BENCH_STIME_PAR processes at once; plus the cache's CPU per handshake.

Every run records the 1-min load average before it, and the hypervisor steal
and other load (busy jiffies in /proc/stat not spent by our servers or the
load generator) during phase 2, in % of one core.

Environment:
  BENCH_CLIENTS=10000       clients per run
  BENCH_THREADS=16          load generator threads
  BENCH_VERSIONS=1.3,1.2    TLS versions, in this order (about 20 and 15
                            minutes on a 2-CPU VM; the budget skips what
                            does not fit)
  BENCH_NS=3,8              node group sizes
  BENCH_STRATEGIES=roundrobin,label,sticky,hash,group,redis,tickets
  BENCH_SCENARIOS=steady,fail,join,switch-restart
  BENCH_HANDOFF=0           1: every cache listens on a hand-off socket and
                            the switch hands each connection over to it
                            (`handoff`, docs/switch.md) instead of relaying
  BENCH_REFERENCE=1         the openssl s_time reference (0: skip)
  BENCH_STIME=5             seconds per s_time run
  BENCH_STIME_PAR=4         also run this many s_time processes at once
                            (one s_time makes one connection at a time)
  BENCH_BUDGET=2400         seconds; runs that would end past it are skipped
                            (and listed as skipped)
  BENCH_LOAD_MAX=1.0        wait for the 1-min load average to fall below this
  BENCH_LOAD_WAIT=5         ... at most this many seconds before a run
  BENCH_LOAD_WAIT_TOTAL=60  ... and this many over the whole study
  FERRY_BUILD=build         where ferryd is (and resume_clients is built)
  FERRY_COMMIT              the commit the binaries were built from, for the
                            report (default: git HEAD of this tree)
  BENCH_RESULTS=bench/results

Output: Markdown tables on stdout and in bench/results/resumption-<date>.md,
an SVG plot of resumed % per strategy and scenario in
bench/results/resumption-<date>.svg, every run as a JSON line in
bench/results/resumption-<date>.jsonl. Exit status 1 if a run had errors
(failed connections, a server died, an event that did not complete).

Quick smoke run (a few minutes):
  BENCH_CLIENTS=300 BENCH_STIME=2 bench/resumption.sh
The plot of one or more earlier runs (for instance a TLS 1.3 and a TLS 1.2
run) is drawn again from their .jsonl files, on stdout:
  bench/resumption.sh --plot A.jsonl [B.jsonl ...] > plot.svg
"""
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (helpers shared with the other benchmarks)
from benchlib import tail, proc_stat, loadavg, stop, stop_all  # noqa: E402

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


def env_list(name, default):
    return [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]


CLIENTS = env_int("BENCH_CLIENTS", 10000)
THREADS = env_int("BENCH_THREADS", 16)
VERSIONS = env_list("BENCH_VERSIONS", "1.3,1.2")
NS = [int(x) for x in env_list("BENCH_NS", "3,8")]
STRATEGY_NAMES = env_list("BENCH_STRATEGIES", "roundrobin,label,sticky,hash,group,redis,tickets")
SCENARIOS = env_list("BENCH_SCENARIOS", "steady,fail,join,switch-restart")
REFERENCE = os.environ.get("BENCH_REFERENCE", "1") == "1"
HANDOFF = os.environ.get("BENCH_HANDOFF", "0") == "1"
STIME = env_float("BENCH_STIME", 5)
STIME_PAR = env_int("BENCH_STIME_PAR", 4)
BUDGET = env_float("BENCH_BUDGET", 2400)
LOAD_MAX = env_float("BENCH_LOAD_MAX", 1.0)
LOAD_WAIT = env_float("BENCH_LOAD_WAIT", 5)
LOAD_WAIT_TOTAL = env_float("BENCH_LOAD_WAIT_TOTAL", 60)

HOST = "bench.test"
NET = "127.62.0"
ORIGIN = NET + ".10"
MAX_N = 8
CACHE_ADDR = {i: f"{NET}.{10 + i}" for i in range(1, MAX_N + 1)}
SWITCH = NET + ".20"
REDIS = NET + ".30"
REDIS_PORT = 6379
TLS_PORT, HTTP_PORT, ADMIN_PORT, GROUP_PORT = 8443, 8080, 9000, 7400
HZ = os.sysconf("SC_CLK_TCK")
SERVER_CPU, LOADGEN_CPU = "0", "1"
TOKEN = "bench-token-0123456789abcdef"
# Client source blocks 127.A.x.y: switch.sh uses A from 11 to 250, the system
# tests' servers 20 to 250, the demo 127.0; this study uses 1-10 and 251-254,
# in turn, so that a block is reused only minutes later (TIME_WAIT).
SRC_BLOCKS = list(range(1, 11)) + list(range(251, 255))

STRATEGIES = {
    # name: (switch policy, cache lines; {i}, {group}, {redis} filled in per cache)
    "roundrobin": ("roundrobin", "tls_tickets on;"),
    "label": ("psk ticket session_id hash", "tls_label {i};\n    tls_label_codec prefix;\n    tls_tickets on;"),
    "sticky": ("sticky", "tls_tickets on;"),
    "sticky-rr": ("sticky roundrobin", "tls_tickets on;"),
    "hash": ("hash", "tls_tickets on;"),
    "group": ("roundrobin", "tls_tickets off;\n    tls_session_store group;\n{group}"),
    "redis": ("roundrobin", "tls_tickets off;\n    tls_session_store redis;\n{redis}"),
    "tickets": ("roundrobin", "tls_tickets on;\n    tls_session_store group;\n    tls_ticket_keys group;\n{group}"),
    "label-group": ("psk ticket session_id hash",
                    "tls_label {i};\n    tls_label_codec prefix;\n    tls_tickets off;\n    tls_session_store group;\n{group}"),
    # Only for the s_time reference: one cache with its local store and stateful tickets.
    "_store": ("roundrobin", "tls_tickets off;"),
}
SCENARIO_TEXT = {
    "steady": "steady state",
    "fail": "cache-1 killed after phase 1",
    "join": "cache-n joins after phase 1",
    "switch-restart": "switch restarted after phase 1",
}
T0 = time.monotonic()
waited_total = 0.0
failures = []
RUNS = []
JSONL = None


def log(msg):
    print("resumption: " + msg, file=sys.stderr, flush=True)


def elapsed():
    return time.monotonic() - T0


# ---- processes -------------------------------------------------------------

def start(argv, logpath, cpus=SERVER_CPU):
    return benchlib.start(argv, logpath, cpus)


def wait_port(p, addr, port, what, timeout=15):
    benchlib.wait_port(p, addr, port, what, timeout, name="resumption")


def cpu_ticks(pid):
    return benchlib.cpu_ticks(pid, reaped=True, gone=None)


def wait_load():
    """Waits (bounded) for the 1-min load average to fall below LOAD_MAX."""
    global waited_total
    t = time.monotonic()
    while (loadavg() >= LOAD_MAX and time.monotonic() - t < LOAD_WAIT
           and waited_total + (time.monotonic() - t) < LOAD_WAIT_TOTAL):
        time.sleep(1)
    waited_total += time.monotonic() - t
    return loadavg()


def wait_until(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


# ---- admin endpoint ----------------------------------------------------------


def metrics(addr):
    """{name{labels}: value} from a ferryd's /metrics ({} if it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://{addr}:{ADMIN_PORT}/metrics", timeout=5) as r:
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


def api(addr, path):
    req = urllib.request.Request(f"http://{addr}:{ADMIN_PORT}{path}", headers={"Authorization": "Bearer " + TOKEN})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read().decode())
    except (OSError, ValueError):
        return {}


def session_stats(addr):
    """The cache's tls_sessions, tls_group and tls_redis counters ({} if absent)."""
    j = api(addr, "/api/v1/sessions")
    return {k: j.get(k, {}) for k in ("tls_sessions", "tls_group", "tls_redis")}


def backends_up(m):
    return {re.search(r'backend="([^"]+)"', k).group(1): int(v) for k, v in m.items()
            if k.startswith("ferry_switch_backend_up{")}


def steps_of(m):
    steps = {}
    for k, v in m.items():
        if k.startswith("ferry_switch_connections_total{") and v:
            st = re.search(r'step="([^"]+)"', k).group(1)
            steps[st] = steps.get(st, 0) + int(v)
    return steps


# ---- setup -----------------------------------------------------------------


def build_loadgen():
    if os.path.exists(LOADGEN) and os.path.getmtime(LOADGEN) >= os.path.getmtime(LOADGEN_SRC):
        return
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", LOADGEN, LOADGEN_SRC, "-lssl", "-lcrypto"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit("resumption: building resume_clients failed:\n" + r.stderr)


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


def write(path, text, mode=None):
    with open(path, "w") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


class Node:
    """The processes of one run (and the origin, which outlives runs)."""

    def __init__(self, d):
        self.d = d
        self.token = write(os.path.join(d, "token"), TOKEN + "\n", 0o600)
        # One group key (id 1, 32 bytes): for the group datagrams and for Redis' sealed values.
        self.keys = write(os.path.join(d, "group.keys"), "1 " + os.urandom(32).hex() + "\n", 0o600)
        os.makedirs(os.path.join(d, "www"), exist_ok=True)
        with open(os.path.join(d, "www", "1k"), "wb") as f:
            f.write(b"x" * 1023 + b"\n")
        self.origin = self.switch = self.redis = None
        self.caches = {}
        self.n = 0
        self.strategy = None

    def start_origin(self):
        conf = write(os.path.join(self.d, "origin.conf"), f"""error_log {self.d}/origin.log;
origin {{
    listen {ORIGIN}:{HTTP_PORT};
    root {self.d}/www;
    cache_control / "max-age=3600";
}}
""")
        self.origin = start([FERRYD, "-c", conf], os.path.join(self.d, "origin.out"), cpus=None)
        wait_port(self.origin, ORIGIN, HTTP_PORT, "origin")

    # caches -------------------------------------------------------------
    def cache_conf(self, i, strategy, n):
        a = CACHE_ADDR[i]
        peers = "".join(f"        peer {CACHE_ADDR[j]}:{GROUP_PORT};\n" for j in range(1, n + 1) if j != i)
        group = f"""    tls_group {{
        listen {a}:{GROUP_PORT};
{peers}        key_file {self.keys};
        sender {i};
    }}"""
        redis = f"""    tls_redis {{
        server {REDIS}:{REDIS_PORT};
        key_file {self.keys};
        sender {i};
    }}"""
        lines = STRATEGIES[strategy][1].format(i=i, group=group, redis=redis)
        return write(os.path.join(self.d, f"cache{i}.conf"), f"""workers 1;
error_log {self.d}/cache{i}.log;
admin {{
    listen {a}:{ADMIN_PORT};
    token_file {self.token};
}}
cache {{
    name cache-{i};
    listen {a}:{HTTP_PORT};
    listen_tls {a}:{TLS_PORT};
    certificate {self.d}/bench.pem {self.d}/bench.key;
    memory 16m;
    {f"handoff {self.d}/cache{i}.sock;" if HANDOFF else ""}
    {lines}
    publisher {HOST} {{
        origin http://{ORIGIN}:{HTTP_PORT};
    }}
}}
""")

    def start_cache(self, i, strategy, n):
        conf = self.cache_conf(i, strategy, n)
        self.caches[i] = start([FERRYD, "-c", conf], os.path.join(self.d, f"cache{i}.out"))
        return self.caches[i]

    def ready_cache(self, i):
        a = CACHE_ADDR[i]
        wait_port(self.caches[i], a, TLS_PORT, f"cache-{i}")
        wait_port(self.caches[i], a, ADMIN_PORT, f"cache-{i} admin")
        # Warm: /1k is fetched until the cache answers it as a hit, so that the
        # measured connections cost a handshake and a hit, never an origin fetch.
        xc = ""
        for _ in range(20):
            req = urllib.request.Request(f"http://{a}:{HTTP_PORT}/1k", headers={"Host": HOST})
            with urllib.request.urlopen(req, timeout=10) as r:
                r.read()
                xc = r.headers.get("X-Cache", "")
            if "HIT" in xc.upper():
                return
            time.sleep(0.05)
        raise SystemExit(f"resumption: cache-{i} does not answer /1k as a hit (X-Cache: {xc})")

    def start_redis(self):
        rd = os.path.join(self.d, "redis")
        os.makedirs(rd, exist_ok=True)
        self.redis = start(["redis-server", "--bind", REDIS, "--port", str(REDIS_PORT), "--save", "",
                            "--appendonly", "no", "--dir", rd], os.path.join(self.d, "redis.out"))
        wait_port(self.redis, REDIS, REDIS_PORT, "redis-server")

    # switch -------------------------------------------------------------
    def switch_conf(self, policy, members):
        backends = "".join(f"    backend cache-{i} {CACHE_ADDR[i]}:{TLS_PORT} label {i} "
                           f"check {CACHE_ADDR[i]}:{ADMIN_PORT}"
                           + (f" handoff {self.d}/cache{i}.sock" if HANDOFF else "") + ";\n"
                           for i in members)
        return write(os.path.join(self.d, "switch.conf"), f"""workers 1;
error_log {self.d}/switch.log;
admin {{
    listen {SWITCH}:{ADMIN_PORT};
    token_file {self.token};
}}
switch {{
    listen {SWITCH}:{TLS_PORT};
    policy {policy};
    label_codec prefix;
    health_check tcp;
    health_check_interval 200ms;
    health_check_timeout 200ms;
    health_check_fall 2;
    health_check_rise 1;
    passive_fall 1;
    max_connections 20000;
{backends}}}
""")

    def start_switch(self, policy, members):
        conf = self.switch_conf(policy, members)
        self.switch = start([FERRYD, "-c", conf], os.path.join(self.d, "switch.out"))
        wait_port(self.switch, SWITCH, TLS_PORT, "switch")
        wait_port(self.switch, SWITCH, ADMIN_PORT, "switch admin")
        self.wait_backends(members)

    def wait_backends(self, members, timeout=10):
        """Until the switch has exactly `members`, all up (a check has passed)."""
        want = {f"cache-{i}": 1 for i in members}
        if not wait_until(lambda: backends_up(metrics(SWITCH)) == want, timeout):
            raise SystemExit(f"resumption: switch backends {backends_up(metrics(SWITCH))}, want {want}")

    def servers(self):
        """{name: pid} of the processes whose CPU counts as the node's."""
        s = {f"cache-{i}": p.pid for i, p in self.caches.items() if p.poll() is None}
        if self.switch and self.switch.poll() is None:
            s["switch"] = self.switch.pid
        if self.redis and self.redis.poll() is None:
            s["redis"] = self.redis.pid
        return s

    def check_alive(self, killed=()):
        procs = [("origin", self.origin), ("switch", self.switch), ("redis", self.redis)] + \
            [(f"cache-{i}", p) for i, p in self.caches.items() if i not in killed]
        for name, p in procs:
            if p is not None and p.poll() is not None:
                raise SystemExit(f"resumption: {name} died (exit {p.returncode}):\n{tail(p.logpath)}")

    def stop_run(self):
        stop(self.switch)
        self.switch = None
        for p in self.caches.values():
            stop(p)
        self.caches = {}
        stop(self.redis)
        self.redis = None


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


def record(row):
    RUNS.append(row)
    if JSONL:
        JSONL.write(json.dumps(row) + "\n")
        JSONL.flush()
    return row


# ---- the reference: openssl s_time against one cache ------------------------


def s_time(addr, ver, mode, secs, par=1):
    """Runs openssl s_time pinned on the load generator's CPU, with one GET /1k
    per connection (-www: without reading a response, a TLS 1.3 client never
    receives its ticket and -reuse resumes nothing). Returns (connections,
    seconds, command). s_time reports its "real seconds" rounded to whole
    seconds, so the wall time is measured here (it includes the process start,
    a few ms). With par > 1, that many s_time processes run at once (s_time
    makes one connection at a time) and their connections are added up."""
    argv = ["taskset", "-c", LOADGEN_CPU, "openssl", "s_time", "-connect", f"{addr}:{TLS_PORT}", mode,
            "-www", "/1k", "-time", str(int(max(1, secs))), "-tls1_3" if ver == "1.3" else "-tls1_2"]
    t0 = time.monotonic()
    ps = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for _ in range(par)]
    outs = [p.communicate(timeout=secs + 60)[0] for p in ps]
    wall = time.monotonic() - t0
    conns = 0
    for out in outs:
        m = re.findall(r"(\d+) connections in \d+ real seconds", out)
        conns += int(m[-1]) if m else 0
    return conns, wall, " ".join(argv[3:])


def bench_reference(node, ver):
    """s_time -new and -reuse against cache-1 alone, with stateless tickets and with the store."""
    a = CACHE_ADDR[1]
    for strategy, what in (("roundrobin", "tls_tickets on (stateless tickets)"),
                           ("_store", "tls_tickets off (local session store)")):
        node.start_cache(1, strategy, 1)
        node.ready_cache(1)
        done = set()
        for mode, par in (("-new", 1), ("-reuse", 1), ("-new", STIME_PAR), ("-reuse", STIME_PAR)):
            if par < 1 or (par == 1 and (mode, par) in done):
                continue
            done.add((mode, par))
            la = wait_load()
            pid = node.caches[1].pid
            c0, st0 = cpu_ticks(pid), proc_stat()
            m0 = metrics(a)
            conns, real, cmd = s_time(a, ver, mode, STIME, par)
            c1, st1 = cpu_ticks(pid), proc_stat()
            m1 = metrics(a)
            res = msum(m1, "ferry_tls_handshakes_total", 'handshake="resumed"') - \
                msum(m0, "ferry_tls_handshakes_total", 'handshake="resumed"')
            full = msum(m1, "ferry_tls_handshakes_total", 'handshake="full"') - \
                msum(m0, "ferry_tls_handshakes_total", 'handshake="full"')
            cpu = (c1 - c0) / HZ
            hs = res + full
            row = record({"section": "reference", "version": ver, "cache": what, "mode": mode, "par": par,
                          "cmd": cmd,
                          "connections": conns, "real_s": real, "rate": conns / real if real else 0,
                          "cache_resumed": res, "cache_full": full, "cache_cpu_s": cpu,
                          "cache_us_per_hs": 1e6 * cpu / hs if hs else 0,
                          "loadavg": la, "steal_pct": 100.0 * (st1["steal"] - st0["steal"]) / HZ / max(real, 1e-9)})
            log(f"reference TLS {ver} {what} s_time {mode} x{par}: {conns} connections in {real:.2f}s = "
                f"{row['rate']:.0f}/s; cache counted {res} resumed, {full} full; "
                f"cache {row['cache_us_per_hs']:.0f} us/handshake")
            if conns == 0:
                failures.append(f"reference TLS {ver} {what} {mode}: s_time made no connection")
        node.stop_run()


# ---- one run of the study ---------------------------------------------------

_src = [0]


def next_src():
    width = 1 + CLIENTS // 62500
    if width > 10:
        raise SystemExit("resumption: BENCH_CLIENTS too large (at most 625000)")
    while True:
        a = SRC_BLOCKS[_src[0] % len(SRC_BLOCKS)]
        _src[0] += 1
        if all(b in SRC_BLOCKS for b in range(a, a + width)):
            return a


def udp_drops():
    """The kernel's UDP receive-buffer drops so far (RcvbufErrors, /proc/net/snmp)."""
    try:
        with open("/proc/net/snmp") as f:
            lines = [l.split() for l in f if l.startswith("Udp:")]
        return int(dict(zip(lines[0][1:], lines[1][1:])).get("RcvbufErrors", 0))
    except (OSError, IndexError, ValueError):
        return None


def wait_caught_up(addr, kind, minimum, timeout=15):
    """A joining cache of the group or redis store: waits at least `minimum` s
    (the group resends its sync request after 2 s), then until its received
    counter has not grown for 0.5 s. Returns (received, seconds)."""
    t0 = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - t0 < timeout:
        st = session_stats(addr)
        rec = st.get(kind, {}).get("received", 0)
        if rec != last:
            last, since = rec, time.monotonic()
        elif time.monotonic() - t0 >= minimum and time.monotonic() - since >= 0.5:
            break
        time.sleep(0.1)
    return last, time.monotonic() - t0


def run_one(node, ver, n, strategy, scenario, progress, est):
    key = {"section": "study", "version": ver, "n": n, "strategy": strategy, "scenario": scenario}
    if elapsed() + est > BUDGET:
        log(f"budget reached, skipping TLS {ver} n={n} {strategy} {scenario}")
        record(dict(key, skipped=True))
        return None
    policy = STRATEGIES[strategy][0]
    members = list(range(1, n + 1)) if scenario != "join" else list(range(1, n))
    t_run = time.monotonic()
    if strategy == "redis":
        node.start_redis()
    for i in members:
        node.start_cache(i, strategy, n)
    for i in members:
        node.ready_cache(i)
    if strategy == "redis":
        if not wait_until(lambda: all(session_stats(CACHE_ADDR[i]).get("tls_redis", {}).get("up")
                                      for i in members), 10):
            raise SystemExit("resumption: the caches did not connect to redis-server")
    if "group" in STRATEGIES[strategy][1]:
        # A group cache asks its peers for their sessions at start and again 2 s
        # later; let both answers pass before phase 1 (the stores are empty).
        time.sleep(max(0.0, 2.5 - (time.monotonic() - t_run)))
    node.start_switch(policy, members)
    event = {}
    pause = os.path.join(node.d, f"pause-{len(RUNS)}")
    for p_ in (pause, pause + ".go"):
        if os.path.exists(p_):
            os.unlink(p_)
    src = next_src()
    args = ["-m", "resume", "-c", f"{SWITCH}:{TLS_PORT}", "-v", ver, "-t", str(THREADS), "-n", str(CLIENTS),
            "-a", str(src), "-D", str(max(240, CLIENTS / 20)), "-E", pause]
    argv = ["taskset", "-c", LOADGEN_CPU, LOADGEN] + args
    setup_s = time.monotonic() - t_run
    la = wait_load()
    m0 = {i: metrics(CACHE_ADDR[i]) for i in members}
    cpu0 = {k: cpu_ticks(p) for k, p in node.servers().items()}
    t_p1 = time.monotonic()
    lg = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed = ()
    try:
        # Phase 1 ends when the load generator creates the pause file.
        while not os.path.exists(pause):
            if lg.poll() is not None:
                raise SystemExit(f"resumption: resume_clients exited during phase 1 (rc {lg.returncode}): "
                                 f"{lg.stderr.read()[-2000:]}")
            if time.monotonic() - t_p1 > max(240, CLIENTS / 20):
                raise SystemExit("resumption: phase 1 did not end")
            time.sleep(0.02)
        p1_wall = time.monotonic() - t_p1
        with open(pause) as f:
            p1 = parse_kv(f.read())
        node.check_alive()
        cpu1 = {k: cpu_ticks(p) for k, p in node.servers().items()}
        m1 = {i: metrics(CACHE_ADDR[i]) for i in members}
        s1 = metrics(SWITCH)
        t_ev = time.monotonic()
        # ---- the event ----
        if scenario == "fail":
            victim = 1
            stop(node.caches[victim], sig=signal.SIGKILL)
            killed = (victim,)
            down = wait_until(lambda: backends_up(metrics(SWITCH)).get(f"cache-{victim}") == 0, 10, 0.01)
            event["detect_s"] = round(time.monotonic() - t_ev, 3)
            if not down:
                failures.append(f"TLS {ver} n={n} {strategy} fail: the switch did not mark cache-{victim} down")
        elif scenario == "join":
            j = n
            drops0 = udp_drops()
            node.start_cache(j, strategy, n)
            node.ready_cache(j)
            if strategy in ("group", "label-group"):
                event["caught_up"], event["catch_up_s"] = wait_caught_up(CACHE_ADDR[j], "tls_group", 2.5)
            elif strategy == "redis":
                wait_until(lambda: session_stats(CACHE_ADDR[j]).get("tls_redis", {}).get("up"), 10)
                event["caught_up"], event["catch_up_s"] = wait_caught_up(CACHE_ADDR[j], "tls_redis", 0.5)
            event["joiner_entries"] = session_stats(CACHE_ADDR[j]).get("tls_sessions", {}).get("entries")
            event["peer_entries"] = session_stats(CACHE_ADDR[1]).get("tls_sessions", {}).get("entries")
            if drops0 is not None and "group" in STRATEGIES[strategy][1]:
                event["udp_drops"] = udp_drops() - drops0
            node.switch_conf(policy, list(range(1, n + 1)))
            os.kill(node.switch.pid, signal.SIGHUP)
            node.wait_backends(range(1, n + 1))
            s1 = metrics(SWITCH)  # the reload keeps counters; phase 2 is the difference
        elif scenario == "switch-restart":
            stop(node.switch)
            node.start_switch(policy, members)
            s1 = {}
        event["event_s"] = round(time.monotonic() - t_ev, 3)
        node.check_alive(killed)
        # ---- phase 2 ----
        servers2 = node.servers()
        cpu2 = {k: cpu_ticks(p) for k, p in servers2.items()}
        st2 = proc_stat()
        t_p2 = time.monotonic()
        with open(pause + ".go", "w"):
            pass
        try:
            out, err = lg.communicate(timeout=max(240, CLIENTS / 20) + 60)
        except subprocess.TimeoutExpired:
            os.kill(lg.pid, signal.SIGKILL)
            out, err = lg.communicate()
            failures.append(f"TLS {ver} n={n} {strategy} {scenario}: the load generator timed out")
        p2_wall = time.monotonic() - t_p2
        st3 = proc_stat()
        cpu3 = {k: cpu_ticks(p) for k, p in servers2.items()}
        node.check_alive(killed)
        m2 = {i: metrics(CACHE_ADDR[i]) for i in node.caches if i not in killed}
        s2 = metrics(SWITCH)
    finally:
        if lg.poll() is None:
            os.kill(lg.pid, signal.SIGKILL)
            lg.wait()
    res = parse_kv(out.strip().splitlines()[-1]) if out.strip() else {}
    res["stderr"] = err.strip()[-2000:]
    if err.strip():
        for l in err.strip().splitlines()[:5]:
            log("  loadgen: " + l)
    # Caches' counters over the run: the last reading of each (the killed one's in the pause).
    last = dict(m1)
    last.update(m2)
    cres = cfull = 0
    for i, m in last.items():
        base = m0.get(i, {})
        cres += msum(m, "ferry_tls_handshakes_total", 'handshake="resumed"') - \
            msum(base, "ferry_tls_handshakes_total", 'handshake="resumed"')
        cfull += msum(m, "ferry_tls_handshakes_total", 'handshake="full"') - \
            msum(base, "ferry_tls_handshakes_total", 'handshake="full"')
    # Per-cache session-store counters at the end (group/redis: what crossed).
    shared = {}
    if "group" in STRATEGIES[strategy][1] or strategy == "redis":
        for i in node.caches:
            if i in killed:
                continue
            st = session_stats(CACHE_ADDR[i])
            shared[f"cache-{i}"] = {"entries": st.get("tls_sessions", {}).get("entries"),
                                    "received": st.get("tls_sessions", {}).get("received"),
                                    "hits": st.get("tls_sessions", {}).get("hits"),
                                    "misses": st.get("tls_sessions", {}).get("misses"),
                                    "rejected": (st.get("tls_group") or st.get("tls_redis") or {}).get("rejected"),
                                    "group": {k: st.get("tls_group", {}).get(k) for k in
                                              ("replicated", "datagrams_out", "send_errors", "received",
                                               "sync_requests", "sync_sent")} if st.get("tls_group") else None}
    p2cpu = {k: (cpu3[k] - cpu2[k]) / HZ for k in servers2 if cpu3.get(k) is not None and cpu2.get(k) is not None}
    p1cpu = {k: (cpu1[k] - cpu0[k]) / HZ for k in cpu0 if cpu1.get(k) is not None and cpu0.get(k) is not None}
    caches_p2 = sum(v for k, v in p2cpu.items() if k.startswith("cache-"))
    caches_p1 = sum(v for k, v in p1cpu.items() if k.startswith("cache-"))
    # The load generator's own CPU in phase 2 (it reports it; os.times() would
    # also count the servers reaped during the run).
    lg_s = res.get("p2_cpu_secs", 0.0)
    ours = sum(p2cpu.values())
    p2_ok = res.get("p2_ok", 0)
    p2_secs = res.get("p2_secs", 0) or p2_wall
    row = dict(key)
    row.update(res)
    row.update({
        "argv": " ".join(argv).replace(LOADGEN, "resume_clients"),
        "policy": policy,
        "members_p1": members,
        "event": event,
        "resumed_pct": 100.0 * res.get("p2_resumed", 0) / max(p2_ok, 1),
        "full_handshakes": res.get("p1_ok", 0) + res.get("p2_full", 0),
        "cache_resumed": cres, "cache_full": cfull,
        "caches_cpu_p2": caches_p2, "caches_cpu_p1": caches_p1,
        "caches_us_p2": 1e6 * caches_p2 / max(p2_ok, 1),
        "caches_us_p1": 1e6 * caches_p1 / max(res.get("p1_ok", 0), 1),
        "switch_cpu_p2": p2cpu.get("switch", 0.0), "redis_cpu_p2": p2cpu.get("redis", 0.0),
        "cpu_p2": p2cpu,
        "hs_per_s": p2_ok / p2_secs if p2_secs else 0,
        "switch_p2_resumed": msum(s2, "ferry_switch_handshakes_total", 'handshake="resumed"') -
        msum(s1, "ferry_switch_handshakes_total", 'handshake="resumed"'),
        "switch_p2_full": msum(s2, "ferry_switch_handshakes_total", 'handshake="full"') -
        msum(s1, "ferry_switch_handshakes_total", 'handshake="full"'),
        "switch_p2_steps": {k: v - steps_of(s1).get(k, 0) for k, v in steps_of(s2).items()
                            if v - steps_of(s1).get(k, 0)},
        "shared": shared,
        "p1_wall": p1_wall, "p2_wall": p2_wall, "setup_s": setup_s, "run_wall": time.monotonic() - t_run,
        "loadavg": la, "loadgen_cpu_s": lg_s,
        "steal_pct": 100.0 * (st3["steal"] - st2["steal"]) / HZ / max(p2_wall, 1e-9),
        "other_pct": max(0.0, 100.0 * (st3["busy"] - st2["busy"] - (ours + lg_s) * HZ) / HZ / max(p2_wall, 1e-9)),
    })
    node.stop_run()
    row["run_wall"] = time.monotonic() - t_run
    record(row)
    progress[0] += 1
    ok_counts = cres == res.get("p2_resumed", -1) and cfull == row["full_handshakes"]
    row["counts_agree"] = ok_counts
    log(f"TLS {ver} n={n} {strategy:10s} {scenario:14s}: {res.get('p2_resumed', 0)}/{p2_ok} resumed "
        f"({row['resumed_pct']:.2f}%), full {row['full_handshakes']}, caches {cres}/{cfull}"
        f"{'' if ok_counts else ' (DIFFER)'}, p2 {row['hs_per_s']:.0f} hs/s, caches {caches_p2:.2f} CPU-s "
        f"({row['caches_us_p2']:.0f} us/conn), switch {row['switch_cpu_p2']:.2f}, steps {row['switch_p2_steps']}, "
        f"event {event}, errors {res.get('p1_err', '?')}+{res.get('p2_err', '?')}, {row['run_wall']:.1f}s "
        f"(setup {setup_s:.1f}, p1 {p1_wall:.1f}, p2 {p2_wall:.1f}), "
        f"load {la:.2f} steal {row['steal_pct']:.0f}% other {row['other_pct']:.0f}% [{progress[0]}/{progress[1]}]")
    if res.get("p1_err", 1) or res.get("p2_err", 1) or res.get("deadline_hit") or p2_ok == 0:
        failures.append(f"TLS {ver} n={n} {strategy} {scenario}: errors {res.get('p1_err')}+{res.get('p2_err')}, "
                        f"deadline_hit {res.get('deadline_hit')}")
    return row


def bench_study(node):
    plan = [(v, n, s, sc) for v in VERSIONS for n in NS for s in STRATEGY_NAMES for sc in SCENARIOS]
    progress = [0, len(plan)]
    for ver, n, strategy, scenario in plan:
        done = [r for r in RUNS if r["section"] == "study" and not r.get("skipped")]
        # A run takes about as long as the last one of the same n (the first: a guess).
        same = [r for r in done if r["n"] == n] or done
        est = same[-1]["run_wall"] if same else 2 + CLIENTS / 500
        run_one(node, ver, n, strategy, scenario, progress, est + 5)


# ---- report ----------------------------------------------------------------


def study_rows(ver=None, n=None):
    return [r for r in RUNS if r["section"] == "study" and (ver is None or r["version"] == ver)
            and (n is None or r["n"] == n)]


def find(ver, n, strategy, scenario):
    for r in study_rows(ver, n):
        if r["strategy"] == strategy and r["scenario"] == scenario:
            return r
    return None


def fmt_event(r):
    e = r.get("event", {})
    parts = []
    if "detect_s" in e:
        parts.append(f"down after {e['detect_s']:.2f} s")
    if "caught_up" in e:
        parts.append(f"caught up {e['caught_up']} in {e['catch_up_s']:.1f} s")
    if e.get("joiner_entries") is not None and r["strategy"] in ("group", "redis", "label-group"):
        parts.append(f"{e['joiner_entries']} entries" +
                     (f" (cache-1: {e['peer_entries']})" if e.get("peer_entries") is not None else ""))
    if e.get("udp_drops"):
        parts.append(f"{e['udp_drops']} UDP datagrams dropped (receive buffer)")
    return ", ".join(parts) or "-"


def report(meta):
    out = []
    w = out.append
    w(f"# Resumption study, {meta['date']}\n")
    w(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; {meta['openssl']}; {meta['redis']}.")
    w(f"Ferry commit {meta['commit']}, binaries from {BUILD}. {CLIENTS} clients, {THREADS} threads. "
      f"Pinned: caches, switch and redis-server on CPU {SERVER_CPU}, the load generator and s_time on CPU "
      f"{LOADGEN_CPU}. Wall time {elapsed():.0f} s."
      + (" The switch hands connections over to the caches (BENCH_HANDOFF=1)." if meta.get("handoff") else "")
      + "\n")
    ref = [r for r in RUNS if r["section"] == "reference"]
    if ref:
        w(f"## Reference: openssl s_time against one cache directly ({STIME:g} s per run)\n")
        w("| TLS | cache | s_time | processes | handshakes/s | connections | cache resumed/full | "
          "cache µs/handshake | load |")
        w("|---|---|---|---|---|---|---|---|---|")
        for r in ref:
            w(f"| {r['version']} | {r['cache']} | `{r['mode']}` | {r['par']} | {r['rate']:.0f} | {r['connections']} | "
              f"{r['cache_resumed']}/{r['cache_full']} | {r['cache_us_per_hs']:.0f} | {r['loadavg']:.1f} |")
        w("")
    for ver in VERSIONS:
        for n in NS:
            rs = study_rows(ver, n)
            if not rs:
                continue
            w(f"## TLS {ver}, n = {n}: resumed % of phase-2 connections\n")
            w("| strategy | " + " | ".join(SCENARIOS) + " |")
            w("|---" * (len(SCENARIOS) + 1) + "|")
            for s in STRATEGY_NAMES:
                cells = []
                for sc in SCENARIOS:
                    r = find(ver, n, s, sc)
                    cells.append("-" if r is None else "skipped" if r.get("skipped") else f"{r['resumed_pct']:.2f}")
                w(f"| {s} | " + " | ".join(cells) + " |")
            w("")
            w(f"### TLS {ver}, n = {n}: every run\n")
            w("Full = phase 1 + phase-2 connections not resumed. Caches CPU-s: utime+stime of the caches during "
              "phase 2; µs/conn divides it by the phase-2 connections. Node hs/s: phase-2 connections / phase-2 "
              "wall time. Caches' counters: ferry_tls_handshakes_total over the run, resumed/full (✓ when equal "
              "to the client's). Switch steps: its decisions in phase 2.\n")
            w("| strategy | scenario | resumed % | resumed | full | caches CPU-s p2 | caches µs/conn p2 | "
              "switch CPU-s p2 | redis CPU-s p2 | node hs/s p2 | caches' counters | switch steps p2 | event | "
              "errors | s | load | steal % | other % |")
            w("|---" * 18 + "|")
            for r in rs:
                if r.get("skipped"):
                    w(f"| {r['strategy']} | {r['scenario']} | skipped (time budget) |" + " |" * 15)
                    continue
                agree = "✓" if r["cache_resumed"] == r.get("p2_resumed") and r["cache_full"] == r["full_handshakes"] \
                    else "✗"
                steps = " ".join(f"{k}:{v}" for k, v in sorted(r["switch_p2_steps"].items())) or "-"
                w(f"| {r['strategy']} | {r['scenario']} | {r['resumed_pct']:.2f} | {r.get('p2_resumed', 0)}/"
                  f"{r.get('p2_ok', 0)} | {r['full_handshakes']} | {r['caches_cpu_p2']:.2f} | {r['caches_us_p2']:.0f} | "
                  f"{r['switch_cpu_p2']:.2f} | {r['redis_cpu_p2']:.2f} | {r['hs_per_s']:.0f} | "
                  f"{r['cache_resumed']}/{r['cache_full']} {agree} | {steps} | {fmt_event(r)} | "
                  f"{r.get('p1_err', 0) + r.get('p2_err', 0)} | {r['run_wall']:.0f} | {r['loadavg']:.1f} | "
                  f"{r['steal_pct']:.0f} | {r['other_pct']:.0f} |")
            w("")
    shared = [r for r in study_rows() if r.get("shared") and not r.get("skipped")]
    if shared:
        w("## Shared stores at the end of each run\n")
        w("Per cache: entries / received from peers (or Redis) / store hits / misses / rejected.\n")
        w("| TLS | n | strategy | scenario | caches |")
        w("|---|---|---|---|---|")
        for r in shared:
            cells = "; ".join(f"{k}: {v['entries']}/{v['received']}/{v['hits']}/{v['misses']}/{v['rejected']}"
                              for k, v in sorted(r["shared"].items()))
            w(f"| {r['version']} | {r['n']} | {r['strategy']} | {r['scenario']} | {cells} |")
        w("")
    w("## Commands\n")
    w("```")
    w(" ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith(("BENCH_", "FERRY_")))
      + (" " if any(k.startswith(("BENCH_", "FERRY_")) for k in os.environ) else "") + "bench/resumption.sh")
    for r in RUNS:
        if r.get("argv"):
            w(r["argv"])
            break
    for r in ref[:2]:
        w(r["cmd"])
    w("```\n")
    if failures:
        w("## Errors\n")
        for f in failures:
            w("- " + f)
        w("")
    return "\n".join(out)


# ---- the plot (SVG, written by hand) -----------------------------------------

COLORS = {"steady": "#1f77b4", "fail": "#d62728", "join": "#2ca02c", "switch-restart": "#ff7f0e"}


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(meta):
    """Grouped bars: resumed % per strategy (groups) and scenario (bars), one
    panel per TLS version (rows) and n (columns)."""
    clients = sorted({r.get("p1_ok", 0) + r.get("p1_err", 0) for r in study_rows() if not r.get("skipped")})
    clients = "/".join(str(c) for c in clients) or str(CLIENTS)
    panels = [(v, n) for v in VERSIONS for n in NS if any(not r.get("skipped") for r in study_rows(v, n))]
    if not panels:
        return None
    vers = [v for v in VERSIONS if any(p[0] == v for p in panels)]
    ns = [n for n in NS if any(p[1] == n for p in panels)]
    strategies = STRATEGY_NAMES
    bar, gap, left, right, top, ph, bottom = 12, 18, 52, 16, 44, 200, 46
    pw = len(strategies) * (len(SCENARIOS) * bar + gap) + gap
    W = max(880, left + len(ns) * (pw + right + left) - left)
    H = 64 + len(vers) * (top + ph + bottom) + 30
    o = []
    a = o.append
    a(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
      f'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">')
    a(f'<rect width="{W}" height="{H}" fill="white"/>')
    a(f'<text x="{W / 2:.0f}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
      f'Resumed % of returning TLS clients ({clients} clients), by strategy and event</text>')
    # legend
    x = left
    for sc in SCENARIOS:
        a(f'<rect x="{x}" y="32" width="12" height="12" fill="{COLORS.get(sc, "#777")}"/>')
        a(f'<text x="{x + 16}" y="42">{esc(SCENARIO_TEXT.get(sc, sc))}</text>')
        x += 16 + 7 * len(SCENARIO_TEXT.get(sc, sc)) + 18
    a(f'<line x1="{x}" y1="38" x2="{x + 20}" y2="38" stroke="#444" stroke-dasharray="4,3"/>')
    a(f'<text x="{x + 24}" y="42">95% (goal: within 5% of ideal)</text>')
    for vi, ver in enumerate(vers):
        for ni, n in enumerate(ns):
            ox = left + ni * (pw + right + left)
            oy = 64 + vi * (top + ph + bottom) + top
            a(f'<text x="{ox + pw / 2:.0f}" y="{oy - 10}" text-anchor="middle" font-size="13" font-weight="bold">'
              f'TLS {esc(ver)}, n = {n} caches</text>')
            for t in range(0, 101, 25):
                y = oy + ph - ph * t / 100
                a(f'<line x1="{ox}" y1="{y:.1f}" x2="{ox + pw}" y2="{y:.1f}" stroke="#ddd"/>')
                a(f'<text x="{ox - 6}" y="{y + 4:.1f}" text-anchor="end">{t}%</text>')
            y95 = oy + ph - ph * 0.95
            a(f'<line x1="{ox}" y1="{y95:.1f}" x2="{ox + pw}" y2="{y95:.1f}" stroke="#444" stroke-dasharray="4,3"/>')
            a(f'<line x1="{ox}" y1="{oy}" x2="{ox}" y2="{oy + ph}" stroke="#000"/>')
            a(f'<line x1="{ox}" y1="{oy + ph}" x2="{ox + pw}" y2="{oy + ph}" stroke="#000"/>')
            for si, s in enumerate(strategies):
                gx = ox + gap + si * (len(SCENARIOS) * bar + gap)
                for ci, sc in enumerate(SCENARIOS):
                    r = find(ver, n, s, sc)
                    bx = gx + ci * bar
                    if r is None or r.get("skipped"):
                        a(f'<text x="{bx + bar / 2:.1f}" y="{oy + ph - 3}" text-anchor="middle" fill="#999" '
                          f'font-size="9">–</text>')
                        continue
                    v = max(0.0, min(100.0, r["resumed_pct"]))
                    h = ph * v / 100
                    a(f'<rect x="{bx + 1}" y="{oy + ph - h:.1f}" width="{bar - 2}" height="{h:.1f}" '
                      f'fill="{COLORS.get(sc, "#777")}"><title>TLS {esc(ver)}, n={n}, {esc(s)}, {esc(sc)}: '
                      f'{v:.2f}% resumed</title></rect>')
                a(f'<text x="{gx + len(SCENARIOS) * bar / 2:.1f}" y="{oy + ph + 15}" text-anchor="middle">'
                  f'{esc(s)}</text>')
    a(f'<text x="{left}" y="{H - 10}" fill="#555" font-size="10">Measured by bench/resumption.sh on '
      f'{esc(meta["date"])}, Ferry {esc(meta["commit"])}; {meta["nproc"]} CPUs (shared VM). '
      f'A dash: not measured (time budget).</text>')
    a("</svg>")
    return "\n".join(o) + "\n"


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
        "redis": (sh("redis-server", "--version").split(" sha=")[0] or "?"),
        "handoff": HANDOFF,
        "commit": os.environ.get("FERRY_COMMIT") or sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD") or "?",
    }


def plot_main(paths):
    """--plot: the SVG of earlier runs, from their .jsonl files."""
    global VERSIONS, NS, STRATEGY_NAMES, SCENARIOS
    metas = []
    for path in paths:
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if row.get("section") == "meta":
                    metas.append(row)
                else:
                    RUNS.append(row)
    rows = study_rows()
    if not rows:
        raise SystemExit("resumption: no study runs in " + " ".join(paths))
    order = lambda vals, known: [v for v in known if v in vals] + sorted(v for v in vals if v not in known)
    VERSIONS = order({r["version"] for r in rows}, ["1.3", "1.2"])
    NS = sorted({r["n"] for r in rows})
    STRATEGY_NAMES = order({r["strategy"] for r in rows}, list(STRATEGIES))
    SCENARIOS = order({r["scenario"] for r in rows}, list(SCENARIO_TEXT))
    meta = dict(metas[0]) if metas else machine()
    if metas:
        meta["date"] = ", ".join(dict.fromkeys(m["date"] for m in metas))
        meta["commit"] = ", ".join(dict.fromkeys(m["commit"] for m in metas))
    sys.stdout.write(svg(meta))
    return 0


def main():
    global JSONL
    if len(sys.argv) > 1:
        if sys.argv[1] == "--plot" and len(sys.argv) > 2:
            return plot_main(sys.argv[2:])
        raise SystemExit("usage: resumption.sh (settings in BENCH_* variables) | resumption.sh --plot FILE.jsonl...")
    for tool in ("taskset", "openssl") + (("redis-server",) if "redis" in STRATEGY_NAMES else ()):
        if shutil.which(tool) is None:
            raise SystemExit(f"resumption: {tool} not found")
    if not os.access(FERRYD, os.X_OK):
        raise SystemExit(f"resumption: {FERRYD} not built (make)")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("resumption: needs 2 CPUs for the pinning")
    for s in STRATEGY_NAMES:
        if s not in STRATEGIES:
            raise SystemExit(f"resumption: unknown strategy {s} (known: {', '.join(STRATEGIES)})")
    for sc in SCENARIOS:
        if sc not in SCENARIO_TEXT:
            raise SystemExit(f"resumption: unknown scenario {sc} (known: {', '.join(SCENARIO_TEXT)})")
    for n in NS:
        if not 2 <= n <= MAX_N:
            raise SystemExit(f"resumption: n must be 2..{MAX_N}")
    build_loadgen()
    os.makedirs(RESULTS, exist_ok=True)
    meta = machine()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    JSONL = open(os.path.join(RESULTS, f"resumption-{stamp}.jsonl"), "w")
    JSONL.write(json.dumps(dict(meta, section="meta", clients=CLIENTS, threads=THREADS)) + "\n")
    d = tempfile.mkdtemp(prefix="ferry-bench-resumption-")
    log(f"work dir {d}; load average {loadavg():.2f}")
    rc = 0
    try:
        make_pki(d)
        node = Node(d)
        node.start_origin()
        if REFERENCE:
            for ver in VERSIONS:
                bench_reference(node, ver)
        bench_study(node)
    except SystemExit as e:
        print(str(e), file=sys.stderr, flush=True)
        failures.append(str(e).splitlines()[0] if str(e) else "aborted")
        rc = 1
    except KeyboardInterrupt:
        failures.append("interrupted")
        rc = 1
    finally:
        stop_all()
        if not (rc or failures):
            shutil.rmtree(d, ignore_errors=True)
    text = report(meta)
    path = os.path.join(RESULTS, f"resumption-{stamp}.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    plot = svg(meta)
    if plot:
        with open(os.path.join(RESULTS, f"resumption-{stamp}.svg"), "w") as f:
            f.write(plot)
    JSONL.close()
    print(text)
    log(f"results in {path}" + (" and .svg" if plot else "") + f" ({elapsed():.0f}s)"
        + (f"; logs in {d}" if os.path.isdir(d) else ""))
    return 1 if (rc or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
