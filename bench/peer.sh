#!/usr/bin/python3
"""peer -- convergence time and memory of the peer role (docs/peering.md) for a
full-size table sent over one session, side by side with BIRD 2 exchanging the
same prefixes over BGP, in the same run (issue 6). docs/benchmarks-peering.md
explains the method and holds the figures of a recorded run.

(A Python 3 script, standard library only, despite the .sh name, like
bench/dns.sh: run it directly or through bench/run.sh.)

The table, generated in a temporary directory (seeded, the same every run):
  BENCH_PEER_PREFIXES distinct IPv4 prefixes (default 1,000,000), /16../24 in
  a mix like the real table's (60% /24, 11% /23, 11% /22, ...; first octets
  1-223 but 10 and 127; host bits zero; more-specifics of one another occur,
  as in the real table), and BENCH_PEER_UNITS content units (default
  100,000): half publishers pNNNNN.example.test, half URI prefixes
  https://pNNNNN.example.test/path/.

Each run starts two fresh processes of one tool on 127.0.10.0/24, the sender
under `taskset -c 1` and the receiver under `taskset -c 0`:
  bird         BIRD 2 (`bird -f`; config, control socket, pid file and log in
               the temporary directory, never /etc/bird; no kernel protocol,
               so the kernel routing table is never touched: checked before
               and after). Sender 127.0.10.1: `protocol static` with the
               prefixes as `route P blackhole;` (an include), exported to
               `protocol bgp` (AS 65001, passive, `ipv4 { import none; export
               all; }`). Receiver 127.0.10.2: `protocol bgp` (AS 65002, `ipv4
               { import all; export none; }`, `debug { states, events,
               packets }` for its End-of-RIB) started `disabled`. Both
               `multihop` and `strict bind` (two BIRDs on one host, on loopback
               addresses, which BIRD does not take for a directly connected
               network; the next hop stays unresolved: routes "unreachable").
  ferry        ferryd, a `peer` block and an `admin` block each. Sender
               127.0.10.11 (cdn tx): `aggregate off` and an `area_file` with
               the prefixes, a passive neighbor rx. Receiver 127.0.10.12 (cdn
               rx): started without a neighbor. Both pinned by a throwaway CA
               (openssl; certificates with the URI SAN ferry-cdn:ID, as in
               tests/system/test_peer.py).
  ferry+units  the same, the sender with `content_file` too: prefixes + units
               in the one session.
A run: start the sender and wait until it holds its whole table (BIRD: the
static protocol's import count; Ferry: the speaker's destinations in
/api/v1/peers); start the receiver and wait until it answers; take its VmRSS
(and BIRD's `show memory`, Ferry's rib_bytes) as the baseline; then the
trigger: BIRD `enable rx_bgp` on the receiver's control socket, Ferry a
SIGHUP after adding the neighbor tx to the receiver's config (the analogue of
`birdc enable`: the neighbor is added by a reload).

Measured from the trigger:
  - from the receivers' logs (ms timestamps): Established, End-of-RIB
    received (= the whole table in: both send it last and process messages
    in order);
  - polled every BENCH_PEER_POLL_MS (50 ms): BIRD `show protocols all
    rx_bgp` (N imported), Ferry GET /api/v1/peers (neighbor tx: routes N and
    end_of_rib): "convergence seen by the poll", and, for BIRD, since when it
    held the table but its last UPDATE (BIRD 2.0 sends that UPDATE and
    End-of-RIB about 3 s after the rest, idle meanwhile). How late each poll
    is answered is recorded (Ferry's loop is busy with the table);
  - utime+stime of the receiver and of the sender (/proc/PID/stat), in s and
    µs per route; hypervisor steal and the other load (busy jiffies in
    /proc/stat not spent by the two processes or this script), in % of one
    core (a run with either above 25% of a core is retried once while the
    time budget allows);
  - the receiver's VmRSS, sampled every 20 ms: at End-of-RIB, for Ferry just
    before the feed to the router is built (after feed_delay), and settled
    (BENCH_PEER_SETTLE s after convergence; Ferry: after that feed); VmHWM;
    bytes per route = (RSS - baseline) / routes, and by the tool's own
    accounting (BIRD `show memory` total, Ferry rib_bytes).

Cases, in this order in odd rounds and reversed in even ones, so that bird
and ferry are always neighbours: bird, ferry, ferry+units. Then (unless
BENCH_UNPINNED=0) one unpinned ("shared") round of bird and ferry, every
process free to use CPUs 0-1; and with BENCH_PEER_PERF=1 a profiled run of
bird and of ferry+units: `perf record -e cpu-clock --call-graph dwarf` of the
receiver and of the sender over the convergence (top symbols in the report;
these runs are not in the medians).

Environment:
  BENCH_ROUNDS=3              pinned rounds (>= 3 for a median with min/max)
  BENCH_PEER_PREFIXES=1000000 IPv4 prefixes
  BENCH_PEER_UNITS=100000     content units in the ferry+units case
  BENCH_PEER_POLL_MS=50       poll interval
  BENCH_PEER_SETTLE=2         seconds after convergence before the settled RSS
  BENCH_PEER_TIMEOUT=300      seconds a convergence (or a table load) may take
  BENCH_UNPINNED=1            0: no shared round
  BENCH_PEER_PERF=0           1: the profiled runs (needs perf)
  BENCH_LOAD_WAIT=15          before each run, wait (bounded) while the other
  BENCH_LOAD_WAIT_TOTAL=60    load, sampled over 0.5 s, exceeds 25% of a core
  BENCH_BUDGET=900            seconds; a retry is made only within it
  BENCH_KEEP=0                1: keep the work directory (configs, logs) after a good run
  FERRY_BUILD=build           where ferryd is
  FERRY_COMMIT=               the commit to name in the report (default: HEAD)
  BENCH_RESULTS=bench/results

Output: Markdown on stdout and in bench/results/peer-<date>.md (a copy in
bench/results/peer.md), every run as a JSON line in
bench/results/peer-<date>.jsonl. Exit status 1 if a run failed (a process
died, no convergence in time, a route count off). About 2 minutes with the
defaults on a 2-core VM (the data generation included), 2.5 with
BENCH_PEER_PERF=1.
"""
import datetime
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (helpers shared with the other benchmarks)
from benchlib import write, tail, cpu_ticks, status_kib, proc_stat, loadavg, pid_ticks, on_signal  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.abspath(os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build")))
FERRYD = os.path.join(BUILD, "ferryd")
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))
BIRD = "/usr/sbin/bird"


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def env_float(name, default):
    return float(os.environ.get(name, str(default)))


def env_on(name, default):
    return os.environ.get(name, default) not in ("0", "no", "off", "")


ROUNDS = env_int("BENCH_ROUNDS", 3)
NPREFIXES = env_int("BENCH_PEER_PREFIXES", 1000000)
NUNITS = env_int("BENCH_PEER_UNITS", 100000)
POLL = env_int("BENCH_PEER_POLL_MS", 50) / 1000.0
SETTLE = env_float("BENCH_PEER_SETTLE", 2)
TIMEOUT = env_float("BENCH_PEER_TIMEOUT", 300)
UNPINNED = env_on("BENCH_UNPINNED", "1")
PERF = env_on("BENCH_PEER_PERF", "0")
LOAD_WAIT = env_float("BENCH_LOAD_WAIT", 15)
LOAD_WAIT_TOTAL = env_float("BENCH_LOAD_WAIT_TOTAL", 60)
BUDGET = env_float("BENCH_BUDGET", 900)
RETRY_LIMIT = 25.0  # % of one core, steal or other load

NET = "127.0.10"
BIRD_TX, BIRD_RX = NET + ".1", NET + ".2"
FERRY_TX, FERRY_RX = NET + ".11", NET + ".12"
PEER_PORT, ADMIN_PORT = 7179, 9000
RX_CPU, TX_CPU = "0", "1"
TOKEN = "bench-peer-token-0123456789"
HZ = os.sysconf("SC_CLK_TCK")
SEED = 20261204
T0 = time.monotonic()
waited_total = 0.0
failures = []
RUNS = []
JSONL = None

CASES = ["bird", "ferry", "ferry+units"]
AGGREGATE_OFF = True  # the sender's `aggregate off;` (dropped for a ferryd that does not know it)
SHARED_CASES = ["bird", "ferry"]


def log(msg):
    print("peer: " + msg, file=sys.stderr, flush=True)


def elapsed():
    return time.monotonic() - T0


class Fail(Exception):
    """A run that failed: recorded, the benchmark goes on with the next one."""


# ---- processes -------------------------------------------------------------

def start(argv, logpath, cpus):
    return benchlib.start(argv, logpath, cpus)


def stop(p, timeout=20):
    benchlib.stop(p, timeout)


def stop_all():
    benchlib.stop_all(log, stop)


def self_ticks():
    t = os.times()
    return (t.user + t.system) * HZ  # this script (the poller); its children are the servers, not counted


OTHERS = {}  # comm -> how many pre-run samples saw it busy (>= 10% of a core)


def other_load(window=0.5):
    """The machine's busy time over `window` s (nothing of ours runs then), in % of one core;
    notes the processes that used >= 10% of a core."""
    p0, s0, t0 = pid_ticks(), proc_stat(), time.monotonic()
    time.sleep(window)
    p1, s1, el = pid_ticks(), proc_stat(), time.monotonic() - t0
    for pid, (comm, ticks) in p1.items():
        if pid in p0 and pid != os.getpid() and 100.0 * (ticks - p0[pid][1]) / HZ / el >= 10:
            OTHERS[comm] = OTHERS.get(comm, 0) + 1
    return 100.0 * (s1["busy"] - s0["busy"]) / HZ / el


def wait_quiet():
    """Waits (bounded) while the other load exceeds RETRY_LIMIT; -> (last sample %, seconds waited)."""
    global waited_total
    t = time.monotonic()
    while True:
        pct = other_load()
        waited = time.monotonic() - t
        if pct <= RETRY_LIMIT or waited >= LOAD_WAIT or waited_total + waited >= LOAD_WAIT_TOTAL:
            break
    waited_total += waited
    return pct, waited


class RssSampler(threading.Thread):
    """Samples a process's VmRSS every 20 ms (from /proc: never blocked by the process's own loop)."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, [], threading.Event()

    def run(self):
        while not self.done.is_set():
            self.samples.append((time.time(), status_kib(self.pid, "VmRSS")))
            self.done.wait(0.02)

    def at(self, wall):
        """The last sample taken at or before wall (epoch s)."""
        best = None
        for t, kib in self.samples:
            if t <= wall:
                best = kib
        return best


def kernel_routes():
    """Lines in every kernel routing table, IPv4 and IPv6 (BIRD must not change them)."""
    n = 0
    for fam in ("-4", "-6"):
        r = subprocess.run(["ip", fam, "route", "show", "table", "all"], capture_output=True, text=True, timeout=30)
        n += len(r.stdout.splitlines())
    return n


# ---- data ------------------------------------------------------------------

# Prefix lengths of the generated table, in % (roughly the IPv4 DFZ's mix).
V4_LEN_WEIGHTS = [(16, 2), (17, 1), (18, 2), (19, 3), (20, 5), (21, 5), (22, 11), (23, 11), (24, 60)]


def gen_prefixes(n):
    """-> sorted list of distinct (network int, plen), seeded."""
    rng = random.Random(SEED)
    lens = [l for l, w in V4_LEN_WEIGHTS for _ in range(w)]
    first = [x for x in range(1, 224) if x not in (10, 127)]
    seen = set()
    while len(seen) < n:
        plen = rng.choice(lens)
        net = ((rng.choice(first) << 24) | rng.getrandbits(24)) >> (32 - plen) << (32 - plen)
        seen.add((net, plen))
    return sorted(seen)


def fmt_prefix(net, plen):
    return f"{socket.inet_ntoa(net.to_bytes(4, 'big'))}/{plen}"


def gen_units(n):
    out = []
    for i in range((n + 1) // 2):
        out.append(f"p{i:05d}.example.test")
        if len(out) < n:
            out.append(f"https://p{i:05d}.example.test/path/")
    return out


def write_data(d):
    t = time.monotonic()
    prefixes = gen_prefixes(NPREFIXES)
    texts = [fmt_prefix(net, plen) for net, plen in prefixes]
    files = {
        "areas": write(os.path.join(d, "areas.txt"), "\n".join(texts) + "\n"),
        "routes": write(os.path.join(d, "bird-routes.conf"), "".join(f"route {p} blackhole;\n" for p in texts)),
        "content": write(os.path.join(d, "content.txt"), "\n".join(gen_units(NUNITS)) + "\n"),
    }
    mix = {}
    for _, plen in prefixes:
        mix[plen] = mix.get(plen, 0) + 1
    log(f"generated {len(prefixes):,} prefixes and {NUNITS:,} content units in {time.monotonic() - t:.1f}s")
    return files, {k: mix[k] for k in sorted(mix)}


def make_pki(d):
    """A throwaway CA and a certificate per CDN id with the URI SAN ferry-cdn:ID."""
    def run(*a):
        subprocess.run(a, cwd=d, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench-peer-ca",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    for cdn in ("tx", "rx"):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{cdn}.key", "-out", f"{cdn}.csr", "-subj", f"/CN={cdn}")
        write(os.path.join(d, f"{cdn}.ext"),
              f"subjectAltName=URI:ferry-cdn:{cdn}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "x509", "-req", "-in", f"{cdn}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{cdn}.pem", "-days", "2", "-extfile", f"{cdn}.ext")
    token = write(os.path.join(d, "token"), TOKEN + "\n")
    os.chmod(token, 0o600)
    return {"ca": os.path.join(d, "ca.pem"), "token": token,
            "tx": (os.path.join(d, "tx.pem"), os.path.join(d, "tx.key")),
            "rx": (os.path.join(d, "rx.pem"), os.path.join(d, "rx.key"))}


# ---- BIRD ------------------------------------------------------------------


def bird_conf(w, role, routes):
    if role == "tx":
        proto = f"""protocol static st {{
    ipv4;
include "{routes}";
}}

protocol bgp tx_bgp {{
    local {BIRD_TX} as 65001;
    neighbor {BIRD_RX} as 65002;
    multihop;
    strict bind on;
    passive on;
    hold time 240;
    ipv4 {{ import none; export all; }};
}}
"""
    else:
        proto = f"""protocol bgp rx_bgp {{
    disabled;
    local {BIRD_RX} as 65002;
    neighbor {BIRD_TX} as 65001;
    multihop;
    strict bind on;
    hold time 240;
    connect delay time 1;
    ipv4 {{ import all; export none; }};
}}
"""
    return write(os.path.join(w, "bird.conf"), f"""# bench/peer.sh: BIRD {role}. No kernel protocol: the kernel's routing table is never touched.
log "{w}/bird.log" all;
timeformat log "%F %T.%3f";
router id {BIRD_TX if role == "tx" else BIRD_RX};
debug protocols {{ states, events{", packets" if role == "rx" else ""} }};

protocol device {{ scan time 3600; }}

{proto}""")


class BirdCtl:
    """BIRD's control socket: one connection, commands answered line by line."""

    def __init__(self, path, timeout=30):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.f = self.s.makefile("rb")
        greet = self.f.readline().decode()
        if not greet.startswith("0001 "):
            raise OSError(f"BIRD said {greet!r}")

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\n")
        out = []
        while True:
            line = self.f.readline().decode(errors="replace")
            if not line:
                raise OSError("BIRD closed the control socket")
            out.append(line.rstrip("\n"))
            if len(line) >= 5 and line[:4].isdigit() and line[4] == " ":
                break
        return "\n".join(l[5:] if l[:4].isdigit() else l[1:] for l in out)

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


def bird_wait_ctl(p, sock, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if p.poll() is not None:
            raise Fail(f"bird exited with {p.returncode}:\n{tail(p.logpath)}")
        try:
            return BirdCtl(sock)
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise Fail(f"bird: no control socket {sock} after {timeout:.0f}s")
        time.sleep(0.02)


def bird_imported(ctl, proto):
    m = re.search(r"Routes:\s+(\d+) imported", ctl.cmd(f"show protocols all {proto}"))
    return int(m.group(1)) if m else 0


UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def bird_memory(ctl):
    """-> (effective, overhead) bytes of `show memory`'s Total line."""
    m = re.search(r"Total:\s+([\d.]+)\s+(\w+)\s+([\d.]+)\s+(\w+)", ctl.cmd("show memory"))
    if not m:
        return None, None
    return float(m.group(1)) * UNITS.get(m.group(2), 1), float(m.group(3)) * UNITS.get(m.group(4), 1)


def log_time(path, pattern, fmt):
    """Wall-clock time (epoch s) of the last log line matching pattern."""
    found = None
    try:
        with open(path, errors="replace") as f:
            for line in f:
                if re.search(pattern, line):
                    found = line
    except OSError:
        return None
    if not found:
        return None
    if fmt == "bird":  # 2026-12-04 20:41:46.263 (local time)
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})", found)
        return datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp() if m else None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z", found)  # ferryd, UTC
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(
        tzinfo=datetime.timezone.utc).timestamp()


class BirdPair:
    tool = "bird"

    def __init__(self, d, files, case, pinned):
        self.d, self.files, self.case, self.pinned = d, files, case, pinned
        self.want = NPREFIXES
        self.tx = self.rx = self.txctl = self.rxctl = None
        self.w = {r: os.path.join(d, f"{case}-{r}") for r in ("tx", "rx")}
        for w in self.w.values():
            shutil.rmtree(w, ignore_errors=True)
            os.makedirs(w)

    def start_sender(self):
        w = self.w["tx"]
        conf = bird_conf(w, "tx", self.files["routes"])
        self.tx = start([BIRD, "-f", "-c", conf, "-s", f"{w}/bird.ctl", "-P", f"{w}/bird.pid"],
                        f"{w}/out.log", TX_CPU if self.pinned else None)
        self.txctl = bird_wait_ctl(self.tx, f"{w}/bird.ctl", TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while bird_imported(self.txctl, "st") < NPREFIXES:
            if self.tx.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"bird sender: static table not loaded:\n{tail(self.tx.logpath)}")
            time.sleep(0.05)
        return time.monotonic() - self.tx.t_spawn

    def start_receiver(self):
        w = self.w["rx"]
        conf = bird_conf(w, "rx", None)
        self.rx = start([BIRD, "-f", "-c", conf, "-s", f"{w}/bird.ctl", "-P", f"{w}/bird.pid"],
                        f"{w}/out.log", RX_CPU if self.pinned else None)
        self.rxctl = bird_wait_ctl(self.rx, f"{w}/bird.ctl", 60)
        return time.monotonic() - self.rx.t_spawn

    def own_bytes(self):
        return bird_memory(self.rxctl)[0]

    def trigger(self):
        out = self.rxctl.cmd("enable rx_bgp")
        if "enabled" not in out:
            raise Fail(f"birdc enable rx_bgp: {out}")

    def count(self):
        return bird_imported(self.rxctl, "rx_bgp"), None

    def converged(self, st):
        return st[0] >= self.want

    def settle(self):
        time.sleep(SETTLE)
        return {}

    def established_wall(self):
        return log_time(os.path.join(self.w["rx"], "bird.log"), r"rx_bgp: BGP session established", "bird")

    def extra(self):
        eff, ovh = bird_memory(self.rxctl)
        r = {"own_bytes": eff, "own_overhead": ovh, "sender_own_bytes": bird_memory(self.txctl)[0]}
        # End-of-RIB from the receiver's message trace (debug packets; BIRD folds the repeated "Got UPDATE"
        # lines into "...", so they neither count the messages nor time them, but End-of-RIB is its own line)
        up = False
        with open(os.path.join(self.w["rx"], "bird.log"), errors="replace") as f:
            for line in f:
                up = up or "rx_bgp: BGP session established" in line
                if up and "rx_bgp: Got END-OF-RIB" in line:
                    m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})", line)
                    if m:
                        r["eor_wall"] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
                    break
        return r

    def stop(self):
        for c in (self.rxctl, self.txctl):
            if c:
                c.close()
        for p in (self.rx, self.tx):
            if p:
                stop(p)


# ---- Ferry -----------------------------------------------------------------


def ferry_conf(w, role, pki, files=None, units=False, neighbor=False):
    addr = FERRY_TX if role == "tx" else FERRY_RX
    cert, key = pki[role]
    if role == "tx":
        # every prefix as it is, like BIRD's static routes (the default aggregates covered and sibling prefixes)
        own = "    aggregate off;\n" if AGGREGATE_OFF else ""
        own += f"    area_file {files['areas']};\n"
        if units:
            own += f"    content_file {files['content']};\n"
        nb = f"    neighbor rx {{\n        ca {pki['ca']};\n    }}\n"
    else:
        own = ""
        nb = (f"    neighbor tx {{\n        address {FERRY_TX}:{PEER_PORT};\n        ca {pki['ca']};\n    }}\n"
              if neighbor else "")
    return write(os.path.join(w, "ferryd.conf"), f"""# bench/peer.sh: ferryd {role}
workers 1;
log_level info;
error_log {w}/ferryd.log;
peer {{
    cdn {role};
    listen {addr}:{PEER_PORT};
    cert {cert};
    key {key};
    hold_time 240s;
{own}    handoff cname cdn.{role}.test;
{nb}}}
admin {{
    listen {addr}:{ADMIN_PORT};
    token_file {pki['token']};
}}
""")


def api(addr, path, timeout=10):
    req = urllib.request.Request(f"http://{addr}:{ADMIN_PORT}/api/v1{path}")
    req.add_header("Authorization", "Bearer " + TOKEN)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


def ferry_wait_api(p, addr, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if p.poll() is not None:
            raise Fail(f"ferryd exited with {p.returncode}:\n{tail(p.logpath)}")
        try:
            return api(addr, "/peers", timeout=2)
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise Fail(f"ferryd: no admin API on {addr}:{ADMIN_PORT} after {timeout:.0f}s:\n{tail(p.logpath)}")
        time.sleep(0.02)


class FerryPair:
    tool = "ferry"

    def __init__(self, d, files, case, pinned, pki):
        self.d, self.files, self.case, self.pinned, self.pki = d, files, case, pinned, pki
        self.units = case == "ferry+units"
        self.want = NPREFIXES + (NUNITS if self.units else 0)
        self.tx = self.rx = None
        self.peers = None
        self.w = {r: os.path.join(d, f"{case}-{r}") for r in ("tx", "rx")}
        for w in self.w.values():
            shutil.rmtree(w, ignore_errors=True)
            os.makedirs(w)

    def start_sender(self):
        w = self.w["tx"]
        conf = ferry_conf(w, "tx", self.pki, self.files, self.units)
        self.tx = start([FERRYD, "-c", conf], f"{w}/out.log", TX_CPU if self.pinned else None)
        ferry_wait_api(self.tx, FERRY_TX, TIMEOUT)
        deadline = time.monotonic() + TIMEOUT
        while api(FERRY_TX, "/peers")["destinations"] < self.want:
            if self.tx.poll() is not None or time.monotonic() > deadline:
                raise Fail(f"ferry sender: table not loaded:\n{tail(self.tx.logpath)}")
            time.sleep(0.05)
        return time.monotonic() - self.tx.t_spawn

    def start_receiver(self):
        w = self.w["rx"]
        self.rxconf = ferry_conf(w, "rx", self.pki)
        self.rx = start([FERRYD, "-c", self.rxconf], f"{w}/out.log", RX_CPU if self.pinned else None)
        ferry_wait_api(self.rx, FERRY_RX, 60)
        started = time.monotonic() - self.rx.t_spawn
        # a ferryd that builds the router's feed builds an empty one at start; one without a router to
        # feed (newer builds) builds none, then or later
        time.sleep(0.2)
        self.feed_builds0 = api(FERRY_RX, "/peers")["feed"]["builds"]
        return started

    def own_bytes(self):
        return api(FERRY_RX, "/peers")["rib_bytes"]

    def trigger(self):
        # the analogue of `birdc enable`: the neighbor added by a reload
        ferry_conf(self.w["rx"], "rx", self.pki, neighbor=True)
        os.kill(self.rx.pid, signal.SIGHUP)

    def count(self):
        try:
            self.peers = api(FERRY_RX, "/peers")
        except (OSError, ValueError):
            return 0, False
        for n in self.peers["neighbors"]:
            if n["cdn"] == "tx":
                return n["routes"], n["end_of_rib"]
        return 0, False

    def converged(self, st):
        return st[0] >= self.want and st[1]

    def settle(self):
        """Waits for the feed to the router (built after feed_delay of quiet) if this ferryd builds one,
        then SETTLE s."""
        t = time.monotonic()
        deadline = t + max(30, TIMEOUT / 4)
        while self.feed_builds0 and time.monotonic() < deadline:
            p = api(FERRY_RX, "/peers")
            if not p["feed"]["pending"] and log_time(os.path.join(self.w["rx"], "ferryd.log"),
                                                     rf"router given {NPREFIXES} learned",
                                                     "ferry"):
                break
            time.sleep(POLL)
        feed_wait = time.monotonic() - t
        time.sleep(SETTLE)
        return {"feed_wait_s": feed_wait}

    def established_wall(self):
        return log_time(os.path.join(self.w["rx"], "ferryd.log"), r"peer tx: session with tx established", "ferry")

    def extra(self):
        p = api(FERRY_RX, "/peers")
        n = [x for x in p["neighbors"] if x["cdn"] == "tx"][0]
        lines = open(os.path.join(self.w["rx"], "ferryd.log"), errors="replace").read().splitlines()
        feeds = [l for l in lines if "router given" in l]
        eor = log_time(os.path.join(self.w["rx"], "ferryd.log"), r"peer tx: End-of-RIB received", "ferry")
        feed_end = log_time(os.path.join(self.w["rx"], "ferryd.log"), rf"router given {NPREFIXES} learned", "ferry")
        m = re.search(r"\((\d+) ms\)", feeds[-1]) if feeds else None
        txp = api(FERRY_TX, "/peers")
        return {"own_bytes": p["rib_bytes"], "attribute_sets": p["attribute_sets"],
                "destinations": p["destinations"], "feed_builds": p["feed"]["builds"],
                "feed_build_ms": p["feed"]["build_ms"], "updates_in": n["updates_in"],
                "feed_log": feeds[-1].split(": ", 1)[-1] if feeds else None,
                "eor_wall": eor,
                "feed_start_wall": feed_end - int(m.group(1)) / 1000.0 if feed_end and m else None,
                "requeued": sum(1 for l in lines if "too many changes queued" in l),
                "warnings": [l for l in lines if " error: " in l or " warning: " in l or "session down" in l
                             or "connection closed" in l][:10],
                "sender_own_bytes": txp["rib_bytes"],
                "sender_withdrawn": sum(x["withdrawn"] for x in txp["neighbors"] if x["cdn"] == "rx")}

    def stop(self):
        for p in (self.rx, self.tx):
            if p:
                stop(p)


# ---- one run ---------------------------------------------------------------


def perf_start(pid, out):
    return subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384", "-o", out, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def perf_stop(p):
    if p.poll() is None:
        os.kill(p.pid, signal.SIGINT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def perf_report(data, label):
    def rep(*extra):
        r = subprocess.run(["perf", "report", "--stdio", "--no-children", "-i", data, "-g", "none",
                            "--percent-limit", "1.5"] + list(extra), capture_output=True, text=True, timeout=300)
        return [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
    sym = rep("--sort", "dso,symbol")[:25]
    r = subprocess.run(["perf", "report", "--stdio", "--children", "-i", data, "-g", "none", "--percent-limit", "4",
                        "--sort", "symbol"], capture_output=True, text=True, timeout=300)
    incl = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")][:25]
    return (f"{label}, self time by object and symbol (>= 1.5%):\n" + "\n".join(sym)
            + "\nwith callees (children, >= 4%):\n" + "\n".join(incl))


def one_run(pair, rnd, variant, profile=False):
    quiet, waited = wait_quiet()
    la = loadavg()
    r = {"variant": variant, "case": pair.case, "round": rnd, "tool": pair.tool, "routes_want": pair.want,
         "loadavg": la, "pre_other_pct": quiet, "waited_s": waited}
    perfs = []
    sampler = None
    try:
        r["sender_load_s"] = pair.start_sender()
        r["sender_rss_kib"] = status_kib(pair.tx.pid, "VmRSS")
        r["receiver_start_s"] = pair.start_receiver()
        time.sleep(0.3)  # let the receiver finish starting up
        rx, tx = pair.rx.pid, pair.tx.pid
        r["rss0_kib"] = status_kib(rx, "VmRSS")
        r["own0_bytes"] = pair.own_bytes()
        if profile:
            for who, pid in (("receiver", rx), ("sender", tx)):
                data = os.path.join(pair.d, f"perf-{pair.case}-{who}.data")
                perfs.append((who, data, perf_start(pid, data)))
            time.sleep(1)
        sampler = RssSampler(rx)
        sampler.start()
        s0, rx0, tx0, me0 = proc_stat(), cpu_ticks(rx), cpu_ticks(tx), self_ticks()
        wall0, t0 = time.time(), time.monotonic()
        pair.trigger()
        polls = 0
        st = (0, None)
        series = []
        max_poll = 0.0
        while True:
            nxt = t0 + (polls + 1) * POLL
            time.sleep(max(0.0, nxt - time.monotonic()))
            polls += 1
            tp = time.monotonic()
            st = pair.count()
            max_poll = max(max_poll, time.monotonic() - tp)
            series.append((time.monotonic() - t0, st[0]))
            if pair.converged(st):
                break
            if pair.rx.poll() is not None or pair.tx.poll() is not None:
                raise Fail(f"{pair.case}: a process died: receiver {pair.rx.poll()}, sender {pair.tx.poll()}\n"
                           f"receiver:\n{tail(pair.rx.logpath)}\nsender:\n{tail(pair.tx.logpath)}")
            if time.monotonic() - t0 > TIMEOUT:
                raise Fail(f"{pair.case}: no convergence after {TIMEOUT:.0f}s ({st[0]:,} of {pair.want:,} routes)")
        t1 = time.monotonic()
        s1, rx1, tx1, me1 = proc_stat(), cpu_ticks(rx), cpu_ticks(tx), self_ticks()
        for who, data, p in perfs:
            perf_stop(p)
        el = t1 - t0
        r.update({"conv_s": el, "polls": polls, "routes": st[0], "max_poll_ms": max_poll * 1000,
                  "rx_cpu_s": (rx1 - rx0) / HZ, "tx_cpu_s": (tx1 - tx0) / HZ, "poller_cpu_s": (me1 - me0) / HZ,
                  "rss_conv_kib": status_kib(rx, "VmRSS"),
                  "steal_pct": 100.0 * (s1["steal"] - s0["steal"]) / HZ / el,
                  "other_pct": max(0.0, 100.0 * ((s1["busy"] - s0["busy"]) - (rx1 - rx0) - (tx1 - tx0)
                                                 - (me1 - me0)) / HZ / el)})
        r["rx_cpu_pct"] = 100.0 * r["rx_cpu_s"] / el
        r["tx_cpu_pct"] = 100.0 * r["tx_cpu_s"] / el
        r["rx_us_per_route"] = r["rx_cpu_s"] * 1e6 / pair.want
        r["tx_us_per_route"] = r["tx_cpu_s"] * 1e6 / pair.want
        # the count before the last jump, and since when the receiver held it (BIRD: the table but its last
        # UPDATE, which comes after a quiet ~3 s; only meaningful where the polls are answered at once)
        before = [c for _, c in series if c < pair.want]
        if before:
            r["plateau_routes"] = before[-1]
            r["plateau_s"] = next(t for t, c in series if c == before[-1])
        est = pair.established_wall()
        r["to_established_s"] = est - wall0 if est else None
        r["transfer_s"] = el - r["to_established_s"] if est else None
        r.update(pair.settle())
        sampler.done.set()
        sampler.join()
        r["rss_settled_kib"] = status_kib(rx, "VmRSS")
        r["hwm_kib"] = status_kib(rx, "VmHWM")
        r.update(pair.extra())
        if r.get("eor_wall"):
            r["eor_after_trigger_s"] = r["eor_wall"] - wall0
            if est:
                r["eor_after_established_s"] = r["eor_wall"] - est
        if r.get("plateau_s") is not None and est:
            r["plateau_after_established_s"] = r["plateau_s"] - (est - wall0)
        if r.get("eor_wall"):
            r["rss_eor_kib"] = sampler.at(r["eor_wall"])
        if r.get("feed_start_wall"):  # Ferry: the RIB alone, before the feed to the router was built
            kib = sampler.at(r["feed_start_wall"])
            if kib:
                r["rss_prefeed_kib"] = kib
                r["bytes_per_route_rss_prefeed"] = (kib - r["rss0_kib"]) * 1024.0 / pair.want
        r["bytes_per_route_rss"] = (r["rss_settled_kib"] - r["rss0_kib"]) * 1024.0 / pair.want
        r["bytes_per_route_rss_conv"] = (r["rss_conv_kib"] - r["rss0_kib"]) * 1024.0 / pair.want
        if pair.tool == "ferry" and not r.get("feed_start_wall") and not getattr(pair, "feed_builds0", 1):
            r["bytes_per_route_rss_prefeed"] = r["bytes_per_route_rss"]  # no feed built at all
        if r.get("own_bytes") is not None and r.get("own0_bytes") is not None:
            r["bytes_per_route_own"] = (r["own_bytes"] - r["own0_bytes"]) / pair.want
        if st[0] != pair.want:
            r["error"] = f"{st[0]:,} routes, want {pair.want:,}"
        for p in (pair.rx, pair.tx):
            if p.poll() is not None:
                r["error"] = f"a process exited ({p.returncode})"
        if profile:
            r["profile"] = "\n\n".join(perf_report(data, f"{pair.case} {who} (perf record -e cpu-clock -F 499 --call-graph dwarf, "
                                                         f"{el:.1f} s of convergence)")
                                       for who, data, _ in perfs)
    except Fail as e:
        r["error"] = str(e).splitlines()[0]
        log(str(e))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:  # a failed run, not the benchmark
        import traceback
        r["error"] = f"{type(e).__name__}: {e}"
        log("".join(traceback.format_exc()))
    finally:
        if sampler:
            sampler.done.set()
        for who, data, p in perfs:
            perf_stop(p)
        pair.stop()
    return r


def record(r):
    RUNS.append(r)
    if JSONL:
        JSONL.write(json.dumps({k: v for k, v in r.items() if k != "profile"}) + "\n")
        JSONL.flush()


def describe(r):
    if "conv_s" not in r:
        return f"{r['variant']} round {r['round']} {r['case']}: FAILED {r.get('error')}"
    return (f"{r['variant']} round {r['round']} {r['case']}: {r['routes']:,} routes, End-of-RIB after "
            f"{fmt(r.get('eor_after_trigger_s'), 2)}s (Established after {fmt(r.get('to_established_s'), 3)}s, "
            f"table after Established {fmt(derive(r).get('table_after_established_s'), 2)}s, poll "
            f"{r['conv_s']:.2f}s), "
            f"receiver {r['rx_cpu_s']:.2f}s CPU ({r['rx_us_per_route']:.2f} µs/route), sender {r['tx_cpu_s']:.2f}s, "
            f"RSS {r['rss0_kib'] / 1024:.1f} -> {r['rss_conv_kib'] / 1024:.1f} -> {r['rss_settled_kib'] / 1024:.1f} MiB "
            f"({r['bytes_per_route_rss']:.0f} B/route; own {fmt(r.get('bytes_per_route_own'))} B/route), "
            f"steal {r['steal_pct']:.0f}% other {r['other_pct']:.0f}% [{elapsed():.0f}s]")


def measure(make, rnd, variant, profile=False):
    r = one_run(make(), rnd, variant, profile)
    if ("error" not in r and not profile and (r["steal_pct"] > RETRY_LIMIT or r["other_pct"] > RETRY_LIMIT)
            and elapsed() + 2 * r.get("conv_s", 0) + 60 < BUDGET):
        log(f"{variant} {r['case']} round {rnd}: steal {r['steal_pct']:.0f}% other {r['other_pct']:.0f}%, "
            "retrying once")
        r2 = one_run(make(), rnd, variant, profile)
        r2["retried_after"] = {"steal_pct": r["steal_pct"], "other_pct": r["other_pct"], "conv_s": r["conv_s"]}
        r = r2
    if not profile:
        record(r)
    log(describe(r))
    if "error" in r:
        failures.append(f"{variant} {r['case']} round {rnd}: {r['error']}")
    return r


# ---- report ----------------------------------------------------------------


def fmt(v, digits=0):
    if v is None:
        return "—"
    return f"{v:,.{digits}f}"


def med(vals, digits=0):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "—"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt(m, digits)
    return f"{fmt(m, digits)} ({fmt(min(vals), digits)}–{fmt(max(vals), digits)})"


def rows(variant, case):
    return sorted((r for r in RUNS if r["variant"] == variant and r["case"] == case and "conv_s" in r),
                  key=lambda r: r["round"])


def ratio_vals(variant, a, b, key):
    ra, rb = rows(variant, a), {r["round"]: r for r in rows(variant, b)}
    return [x[key] / rb[x["round"]][key] for x in ra
            if x["round"] in rb and x.get(key) and rb[x["round"]].get(key)]


RATIOS = [("Ferry 1M / BIRD 1M", "ferry", "bird"), ("Ferry 1M + units / BIRD 1M", "ferry+units", "bird")]
RATIO_KEYS = [  # (label, key, digits)
    ("End-of-RIB after trigger", "eor_after_trigger_s", 2),
    ("End-of-RIB after Established", "eor_after_established_s", 2),
    ("table after Established (BIRD: but its last UPDATE)", "table_after_established_s", 2),
    ("convergence seen by the poll", "conv_s", 2),
    ("receiver CPU per route", "rx_us_per_route", 2),
    ("sender CPU per route", "tx_us_per_route", 2),
    ("B/route (RSS)", "bytes_per_route_rss", 2),
    ("B/route (RSS) before the feed build", "bytes_per_route_rss_prefeed", 2),
    ("B/route (own accounting)", "bytes_per_route_own", 2),
]


def derive(r):
    """Per-run figures compared across tools: the table in, without BIRD's quiet tail."""
    if r.get("tool") == "bird":
        r["table_after_established_s"] = r.get("plateau_after_established_s")
        if r.get("bytes_per_route_rss") is not None:  # BIRD builds nothing after the table: the same figure
            r["bytes_per_route_rss_prefeed"] = r["bytes_per_route_rss"]
    else:
        r["table_after_established_s"] = r.get("eor_after_established_s")
    return r


def report(meta, mix, profiles):
    for r in RUNS:
        derive(r)
    out = []
    w = out.append
    w(f"# Peering convergence benchmark, {meta['date']}\n")
    w(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; {meta['bird']}; {meta['openssl']}.")
    w(f"Ferry commit {meta['commit']}{meta['dirty']}, ferryd from {BUILD} (built {meta['built']}"
      + ("; OLDER than the last commit to src/: rebuild" if meta["stale"] else "") + ").")
    w(f"Command: `{meta['command']}` ({meta['wall']:.0f} s).")
    w(f"Table: {NPREFIXES:,} distinct IPv4 prefixes (" + ", ".join(f"/{k} {v:,}" for k, v in mix.items())
      + f"); content units: {NUNITS:,} ({(NUNITS + 1) // 2:,} publishers pNNNNN.example.test, {NUNITS // 2:,} "
      "URI prefixes https://pNNNNN.example.test/path/), in the ferry+units case only. Ferry's sender has "
      + ("`aggregate off` (every prefix goes out as it is, as BIRD's static routes do)." if AGGREGATE_OFF
         else "no `aggregate` option in this build."))
    w(f"Pinned: receivers on CPU {RX_CPU}, senders on CPU {TX_CPU} (`taskset -c`); this script unpinned. "
      "Medians (min–max) over the rounds.\n")
    w("Trigger: BIRD `enable rx_bgp` on the idle receiver's control socket; Ferry SIGHUP to the idle receiver "
      "after adding the neighbor to its config. From the receivers' logs (ms timestamps): the session "
      "Established and End-of-RIB received. BIRD sends End-of-RIB after its last UPDATE, Ferry after its whole "
      "dump, and both process messages in order, so End-of-RIB received = the whole table in. BIRD sends its "
      "last UPDATE (and End-of-RIB) about 3 s after the rest: \"table\" for BIRD is when its import count "
      "reached the value it held just before the final jump (polled: ± the poll interval); for Ferry, "
      "End-of-RIB. The poll (every "
      f"{POLL * 1000:.0f} ms: BIRD `show protocols all`, N imported; Ferry /api/v1/peers, routes N and "
      "end_of_rib) also gives \"convergence seen by the poll\", bounded by the poll interval and by how late "
      "the receiver answers while it takes the table (slowest answer below). CPU = utime+stime from "
      "/proc/PID/stat from the trigger to the poll's convergence.\n")
    w(f"## Pinned, {ROUNDS} rounds\n")
    w("| case | routes | End-of-RIB after trigger s | Established after trigger s | End-of-RIB after Established s "
      "| table after Established s | (BIRD: routes before its last UPDATE) | convergence seen by the poll s | "
      "slowest poll answer ms |")
    w("|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        rs = rows("pinned", case)
        if rs:
            w(f"| {case} | {rs[0]['routes_want']:,} | {med([r.get('eor_after_trigger_s') for r in rs], 2)} | "
              f"{med([r.get('to_established_s') for r in rs], 3)} | "
              f"{med([r.get('eor_after_established_s') for r in rs], 2)} | "
              f"{med([r.get('table_after_established_s') for r in rs], 2)} | "
              f"{med([r.get('plateau_routes') if r['tool'] == 'bird' else None for r in rs])} | "
              f"{med([r['conv_s'] for r in rs], 2)} | {med([r.get('max_poll_ms') for r in rs])} |")
    w("")
    w("| case | receiver CPU s | receiver µs/route | receiver CPU % | sender CPU s | sender µs/route | "
      "sender CPU % | steal % | other % |")
    w("|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        rs = rows("pinned", case)
        if rs:
            w(f"| {case} | {med([r['rx_cpu_s'] for r in rs], 2)} | {med([r['rx_us_per_route'] for r in rs], 2)} | "
              f"{med([r['rx_cpu_pct'] for r in rs])} | {med([r['tx_cpu_s'] for r in rs], 2)} | "
              f"{med([r['tx_us_per_route'] for r in rs], 2)} | {med([r['tx_cpu_pct'] for r in rs])} | "
              f"{med([r['steal_pct'] for r in rs])} | {med([r['other_pct'] for r in rs])} |")
    w("")
    w(f"Memory of the receiver: VmRSS of the idle receiver (before), at End-of-RIB (sampled every 20 ms), "
      f"and settled ({SETTLE:g} s after the poll's convergence; Ferry: after its feed to the router was "
      "built, where this ferryd, which has no router block, builds one); Ferry also just before that feed "
      "build began (the settled figure again where no feed is built, and for BIRD, which builds nothing "
      "of the kind). B/route = (RSS − before) / routes. Own accounting: BIRD's `show memory` total (effective), "
      "Ferry's rib_bytes, after − before.\n")
    w("| case | RSS before MiB | RSS at End-of-RIB MiB | RSS settled MiB | VmHWM MiB | B/route (RSS) | "
      "B/route (RSS) before the feed build | own accounting MiB | B/route (own) |")
    w("|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        rs = rows("pinned", case)
        if rs:
            w(f"| {case} | {med([r['rss0_kib'] / 1024 for r in rs], 1)} | "
              f"{med([r['rss_eor_kib'] / 1024 if r.get('rss_eor_kib') else None for r in rs], 1)} | "
              f"{med([r['rss_settled_kib'] / 1024 for r in rs], 1)} | "
              f"{med([r['hwm_kib'] / 1024 for r in rs], 1)} | {med([r['bytes_per_route_rss'] for r in rs])} | "
              f"{med([r.get('bytes_per_route_rss_prefeed') for r in rs])} | "
              f"{med([r['own_bytes'] / 2 ** 20 if r.get('own_bytes') else None for r in rs], 1)} | "
              f"{med([r.get('bytes_per_route_own') for r in rs])} |")
    w("")
    w("Ratios, per round (the runs of a round are under a minute apart), median (min–max). Times and CPU: "
      "want ≤ 1; bytes per route: want < 1.\n")
    w("| ratio | " + " | ".join(k for k, _, _ in RATIO_KEYS) + " |")
    w("|---|" + "---|" * len(RATIO_KEYS))
    for label, a, b in RATIOS:
        w(f"| {label} | " + " | ".join(med(ratio_vals("pinned", a, b, key), d) for _, key, d in RATIO_KEYS) + " |")
    w("")
    w("Every pinned run: End-of-RIB after trigger s / table after Established s / receiver CPU s / B/route (RSS) "
      "(round 1 ran bird, ferry, ferry+units; each later round reverses the previous one's order):\n")
    w("| case | " + " | ".join(f"round {i}" for i in range(1, ROUNDS + 1)) + " |")
    w("|---|" + "---|" * ROUNDS)
    for case in CASES:
        rs = {r["round"]: r for r in rows("pinned", case)}
        if rs:
            w(f"| {case} | " + " | ".join(
                f"{fmt(rs[i].get('eor_after_trigger_s'), 2)} / {fmt(rs[i].get('table_after_established_s'), 2)} / "
                f"{rs[i]['rx_cpu_s']:.2f} / {rs[i]['bytes_per_route_rss']:.0f}"
                if i in rs else "—" for i in range(1, ROUNDS + 1)) + " |")
    w("")
    w("Start-up (medians): the sender from spawn until it holds its table (BIRD: config parse with the "
      "static routes; Ferry: config load with area_file/content_file and origination into the RIB), its RSS "
      "then and its own accounting; the idle receiver from spawn until it answers.\n")
    w("| case | sender load s | sender RSS MiB | sender own MiB | receiver start s |")
    w("|---|---|---|---|---|")
    for case in CASES:
        rs = rows("pinned", case)
        if rs:
            w(f"| {case} | {med([r['sender_load_s'] for r in rs], 2)} | "
              f"{med([r['sender_rss_kib'] / 1024 for r in rs], 1)} | "
              f"{med([r['sender_own_bytes'] / 2 ** 20 if r.get('sender_own_bytes') else None for r in rs], 1)} | "
              f"{med([r['receiver_start_s'] for r in rs], 3)} |")
    w("")
    fr = [r for c in ("ferry", "ferry+units") for r in rows("pinned", c)]
    if fr:
        w("Ferry's receiver, from its log and /api/v1/peers (medians):\n")
        w("| case | UPDATEs received | attribute sets | feed builds | last feed build ms | "
          "wait for the feed after convergence s | \"too many changes queued\" |")
        w("|---|---|---|---|---|---|---|")
        for case in ("ferry", "ferry+units"):
            rs = rows("pinned", case)
            if rs:
                w(f"| {case} | {med([r.get('updates_in') for r in rs])} | {med([r.get('attribute_sets') for r in rs])} | "
                  f"{med([r.get('feed_builds') for r in rs])} | {med([r.get('feed_build_ms') for r in rs])} | "
                  f"{med([r.get('feed_wait_s') for r in rs], 2)} | {med([r.get('requeued') for r in rs])} |")
        last = [r.get("feed_log") for r in fr if r.get("feed_log")]
        if last:
            w(f"\nLast feed line of the last run: `{last[-1]}`.")
        echo = [r.get("sender_withdrawn") for r in fr if r.get("sender_withdrawn") is not None]
        if echo:
            w(f"\nWithdrawals the receiver sent back to the sender during a run, for routes it had learned from "
              f"the sender and never advertised to it (the sender's `withdrawn` counter for the receiver): "
              f"median {med(echo)}.")
        warn = sorted({l.split(": ", 1)[-1] for r in fr for l in r.get("warnings", [])})
        if warn:
            w("\nReceiver log lines worth a look (errors, warnings, sessions down), deduplicated:\n")
            w("```\n" + "\n".join(warn[:15]) + "\n```")
        w("")
    if any(r["variant"] == "shared" for r in RUNS):
        w("## Unpinned (\"shared\"): every process free to use CPUs 0-1, one round\n")
        w("| case | End-of-RIB after trigger s | table after Established s | convergence seen by the poll s | "
          "receiver CPU s | sender CPU s | B/route (RSS) | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|---|")
        for case in SHARED_CASES:
            for r in rows("shared", case):
                w(f"| {case} | {fmt(r.get('eor_after_trigger_s'), 2)} | {fmt(r.get('table_after_established_s'), 2)} | "
                  f"{r['conv_s']:.2f} | {r['rx_cpu_s']:.2f} | {r['tx_cpu_s']:.2f} | {r['bytes_per_route_rss']:.0f} | "
                  f"{r['steal_pct']:.0f} | {r['other_pct']:.0f} |")
        for label, key in (("End-of-RIB after trigger", "eor_after_trigger_s"),
                           ("table after Established", "table_after_established_s")):
            v = ratio_vals("shared", "ferry", "bird", key)
            if v:
                w(f"\nFerry 1M / BIRD 1M, shared, {label}: {v[0]:.2f}.")
        w("")
    if profiles:
        w("## Profiles (BENCH_PEER_PERF=1; separate runs, not in the medians)\n")
        w("BIRD's binary has no symbols (Debian strips it), so its samples show as addresses.\n")
        for p in profiles:
            w("```\n" + p + "\n```\n")
    retried = [r for r in RUNS if "retried_after" in r]
    w(f"Runs retried for steal or other load above {RETRY_LIMIT:.0f}% of a core: {len(retried)}"
      + (" (" + ", ".join(f"{r['variant']} {r['case']} round {r['round']}: steal "
                           f"{r['retried_after']['steal_pct']:.0f}%, other {r['retried_after']['other_pct']:.0f}%"
                           for r in retried) + ")" if retried else "")
      + f". Waited for a quiet machine before runs: {waited_total:.0f} s in all.")
    if OTHERS:
        w("Other processes seen using >= 10% of a core in the 0.5 s samples before runs (times seen): "
          + ", ".join(f"{k} ({v})" for k, v in sorted(OTHERS.items(), key=lambda kv: -kv[1])[:12]) + ".")
    w(f"Kernel routing table lines (ip -4/-6 route show table all) before and after: {meta.get('kroutes0')} / "
      f"{meta.get('kroutes1')}.")
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
            r = subprocess.run(a, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except OSError:
            return "?"
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    bird = re.search(r"BIRD version ([\d.]+)", sh(BIRD, "--version"))
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": os.uname().release,
        "bird": "BIRD " + (bird.group(1) if bird else "?"),
        "openssl": sh("openssl", "version").split(" (")[0],
        "commit": os.environ.get("FERRY_COMMIT") or sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD") or "?",
        "dirty": " (+ uncommitted changes in src/)" if not os.environ.get("FERRY_COMMIT")
        and sh("git", "-C", ROOT, "status", "--porcelain", "src") else "",
        "built": datetime.datetime.fromtimestamp(os.path.getmtime(FERRYD)).strftime("%Y-%m-%d %H:%M"),
        "stale": os.path.getmtime(FERRYD) < int(sh("git", "-C", ROOT, "log", "-1", "--format=%ct", "--", "src")
                                                 or 0),
    }


def main():
    global JSONL, AGGREGATE_OFF
    for tool in (BIRD, "taskset", "openssl", "ip"):
        if shutil.which(tool) is None:
            raise SystemExit(f"peer: {tool} not found (scripts/install-deps.sh --bench installs bird2)")
    if PERF and shutil.which("perf") is None:
        raise SystemExit("peer: BENCH_PEER_PERF=1 needs perf (linux-perf)")
    if not os.access(FERRYD, os.X_OK):
        raise SystemExit(f"peer: {FERRYD} not built")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("peer: needs 2 CPUs for the pinning")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    os.makedirs(RESULTS, exist_ok=True)
    meta = machine()
    meta["kroutes0"] = kernel_routes()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    JSONL = open(os.path.join(RESULTS, f"peer-{stamp}.jsonl"), "w")
    d = tempfile.mkdtemp(prefix="ferry-bench-peer-")
    log(f"work dir {d}; load average {loadavg():.2f}")
    mix = {}
    profiles = []
    rc = 0
    try:
        files, mix = write_data(d)
        pki = make_pki(d)
        # the configs must load (and the table parse) before anything is measured
        for role in ("tx",):
            w = os.path.join(d, "check")
            os.makedirs(w, exist_ok=True)
            t = time.monotonic()
            r = subprocess.run([FERRYD, "-t", "-c", ferry_conf(w, role, pki, files, True)], capture_output=True,
                               text=True, timeout=TIMEOUT)
            if r.returncode != 0 and "aggregate" in r.stderr:
                AGGREGATE_OFF = False
                log("this ferryd has no `aggregate` option: the sender's areas go out as they are anyway")
                t = time.monotonic()
                r = subprocess.run([FERRYD, "-t", "-c", ferry_conf(w, role, pki, files, True)], capture_output=True,
                                   text=True, timeout=TIMEOUT)
            if r.returncode != 0:
                raise SystemExit(f"peer: ferryd -t failed:\n{r.stdout}{r.stderr}")
            meta["ferry_check_s"] = time.monotonic() - t
            t = time.monotonic()
            r = subprocess.run([BIRD, "-p", "-c", bird_conf(w, "tx", files["routes"])], capture_output=True,
                               text=True, timeout=TIMEOUT)
            if r.returncode != 0:
                raise SystemExit(f"peer: bird -p failed:\n{r.stdout}{r.stderr}")
            meta["bird_check_s"] = time.monotonic() - t
            log(f"config checks: ferryd -t {meta['ferry_check_s']:.1f}s, bird -p {meta['bird_check_s']:.1f}s")

        def maker(case, pinned):
            if case == "bird":
                return lambda: BirdPair(d, files, case, pinned)
            return lambda: FerryPair(d, files, case, pinned, pki)

        log(f"{ROUNDS} pinned rounds of {len(CASES)} runs")
        for rnd in range(1, ROUNDS + 1):
            order = CASES if rnd % 2 else list(reversed(CASES))
            for case in order:
                measure(maker(case, True), rnd, "pinned")
        if UNPINNED:
            for case in (SHARED_CASES if ROUNDS % 2 == 0 else list(reversed(SHARED_CASES))):
                measure(maker(case, False), 1, "shared")
        if PERF:
            for case in ("bird", "ferry+units"):
                r = measure(maker(case, True), 1, "profiled", profile=True)
                if r.get("profile"):
                    profiles.append(r["profile"])
    except SystemExit as e:
        print(str(e), file=sys.stderr, flush=True)
        failures.append(str(e).splitlines()[0] if str(e) else "aborted")
        rc = 1
    except KeyboardInterrupt:
        failures.append("interrupted")
        rc = 1
    finally:
        stop_all()
        for f in ("areas.txt", "bird-routes.conf", "content.txt"):
            try:
                os.unlink(os.path.join(d, f))
            except OSError:
                pass
        for f in os.listdir(d) if os.path.isdir(d) else []:
            if f.endswith(".data"):
                os.unlink(os.path.join(d, f))
        if not (rc or failures) and not env_on("BENCH_KEEP", False):
            shutil.rmtree(d, ignore_errors=True)
        elif env_on("BENCH_KEEP", False):
            print(f"peer: work directory kept (BENCH_KEEP): {d}", flush=True)
    meta["kroutes1"] = kernel_routes()
    if meta["kroutes1"] != meta["kroutes0"]:
        log(f"note: the kernel routing tables changed during the run ({meta['kroutes0']} -> {meta['kroutes1']} "
            "lines); BIRD has no kernel protocol here, so something else did it")
    meta["wall"] = elapsed()
    env = [f"{k}={os.environ[k]}" for k in sorted(os.environ)
           if k.startswith(("BENCH_", "FERRY_")) and k != "BENCH_RESULTS"]
    meta["command"] = " ".join(env + [os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:])
    text = report(meta, mix, profiles)
    path = os.path.join(RESULTS, f"peer-{stamp}.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    shutil.copyfile(path, os.path.join(RESULTS, "peer.md"))
    JSONL.close()
    print(text)
    log(f"results in {path} (and peer.md) ({elapsed():.0f}s)" + (f"; logs in {d}" if os.path.isdir(d) else ""))
    return 1 if (rc or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
