#!/usr/bin/python3
"""dns -- the router role's authoritative DNS (docs/router.md) against Knot
DNS and NSD, static answers and answers by decision ("geo").

(A Python 3 script, standard library only, despite the .sh name, like
bench/switch.sh and bench/cache_hit.sh: run it directly or through
bench/run.sh.)

One run starts, all on 127.0.9.0/24, every server under `taskset -c 0`:
  knot        knotd 3.2, zone example.test from a zone file: SOA, NS, glue
              and h0..h999 A; udp-workers 1, tcp-workers 1,
              background-workers 1                          127.0.9.1:5301
  nsd         nsd 4.6 -d, the same zone file, server-count 1  127.0.9.2:5302
  ferry       ferryd, router role, workers 1, the same 1,000 names as
              `record hN A ...` in `zone example.test` (ns + glue)
                                                            127.0.9.3:5303
  ferry-geo   ferryd, router role, workers 1, the 1,000 names as
              `service hN;`, 8 nodes, and an area_file of BENCH_DNS_PREFIXES
              prefixes (default 1,000,000: ~85% IPv4 /16-/24, ~15% IPv6
              /29-/48, a third of them more-specifics of others, each to one
              of the 8 nodes, plus 0.0.0.0/0 and ::/0 to n0)  127.0.9.4:5304
  knot-geo    knotd with mod-geoip, mode subnet, over the same prefixes as
              views of the wildcard *.example.test (one view list shared by
              every name, as Ferry's area table is), edns-client-subnet on
              (BENCH_KNOT_GEO=0 skips it)                   127.0.9.5:5305
The zone file, the area file and knot-geo's module file are generated in a
temporary directory (seeded, so every run has the same table).

Before measuring, each server is asked for h7.example.test A with dig; the
static servers' answers must agree (and carry AA); the geo servers, asked
with an ECS option (an IPv4 /24 and an IPv6 /48 from the table), must answer
with the address of the node the table gives for it (computed here by a
longest-prefix match over the generated list). A capture of one dnsperf
query checks that `-E` puts the ECS option on the wire as intended.

Load: dnsperf 2.10 under `taskset -c 1`,
    dnsperf -s ADDR -p PORT -d QUERIES -c 4 -q 200 -l BENCH_DURATION
over a file of the 1,000 names (type A) shuffled, repeated to 100,000
lines. The ECS cases add `-E 8:00011800AABBCC` (family 1, source /24,
scope 0, the 3 address bytes of a /24 taken from the table, which maps it
to a node, not to the default).

Cases, in this order in odd rounds and reversed in even ones (anchors and
Ferry alternate, and the two cases of each ratio run next to each other, but
ferry and nsd one apart):
  nsd                         static answers, no ECS
  ferry +ECS                  static answers, the ECS option in every query
  ferry                       static answers, no ECS
  knot                        static answers, no ECS
  ferry-geo +ECS              decided answers over the 1M-prefix table
  knot-geo +ECS               mod-geoip over the same table
Per run: queries/s, lost queries, average latency (dnsperf), the server's
CPU per query (utime+stime of its process tree from /proc/PID/stat over the
run / completed queries), the server's and dnsperf's CPU in % of one core,
the hypervisor steal and the other load (busy jiffies in /proc/stat not
spent by the server or dnsperf), in % of one core. A run with steal or other
load above 25% of a core is retried once while the time budget allows.
Then an unpinned ("shared") round for knot and ferry: the servers' affinity
widened to CPUs 0-1, dnsperf unpinned.

Also reported: VmRSS and VmHWM of each server once loaded, and its start-up
time (spawn to the first correct answer; for ferry-geo that is config load
plus the area table build, for knot-geo the zone load with the module).

Environment:
  BENCH_ROUNDS=5              pinned rounds (>= 3 for a median with min/max)
  BENCH_DURATION=10           dnsperf -l, seconds
  BENCH_CLIENTS=4             dnsperf -c
  BENCH_OUTSTANDING=200       dnsperf -q
  BENCH_DNS_PREFIXES=1000000  prefixes in the area table
  BENCH_KNOT_GEO=1            0: no knot-geo
  BENCH_UNPINNED=1            0: no shared round
  BENCH_CPU_CAP=40            % of a core each server gets in the capped rounds
                              (cgroup v1 cpu quota), where the server and not
                              dnsperf is the bottleneck; 0: no capped rounds
  BENCH_CAP_ROUNDS=3          capped rounds
  BENCH_DNS_PERF=0            1: after the rounds, `perf record -g` and
                              `perf stat` of ferry and ferry-geo under load
                              (top symbols in the report)
  BENCH_LOAD_WAIT=15          before each run, wait (bounded) while the other
  BENCH_LOAD_WAIT_TOTAL=60    load, sampled over 0.5 s, exceeds 25% of a core:
                              at most this many seconds a run and in all
  BENCH_BUDGET=660            seconds; a retry is made only if the runs still
                              to come would end before it
  FERRY_BUILD=build           where ferryd is
  BENCH_RESULTS=bench/results

Output: Markdown tables on stdout and in bench/results/dns-<date>.md, every
run as a JSON line in bench/results/dns-<date>.jsonl. Exit status 1 if a
check failed, a server died, or a run had errors (responses other than
NOERROR, dnsperf failing). About 6-7 minutes with the defaults (8 with
BENCH_DNS_PERF=1).
"""
import datetime
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402  (helpers shared with the other benchmarks)
from benchlib import write, proc_stat, loadavg, pid_ticks, on_signal, proc_tree, tree_cpu_ticks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
BUILD = os.path.abspath(os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build")))
FERRYD = os.path.join(BUILD, "ferryd")
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


def env_float(name, default):
    return float(os.environ.get(name, str(default)))


ROUNDS = env_int("BENCH_ROUNDS", 5)
DURATION = env_int("BENCH_DURATION", 10)
CLIENTS = env_int("BENCH_CLIENTS", 4)
OUTSTANDING = env_int("BENCH_OUTSTANDING", 200)
NPREFIXES = env_int("BENCH_DNS_PREFIXES", 1000000)
KNOT_GEO = os.environ.get("BENCH_KNOT_GEO", "1") not in ("0", "no", "off")
UNPINNED = os.environ.get("BENCH_UNPINNED", "1") not in ("0", "no", "off")
PERF = os.environ.get("BENCH_DNS_PERF", "0") not in ("0", "no", "off", "")
LOAD_WAIT = env_float("BENCH_LOAD_WAIT", 15)
LOAD_WAIT_TOTAL = env_float("BENCH_LOAD_WAIT_TOTAL", 60)
BUDGET = env_float("BENCH_BUDGET", 660)
CAP_PCT = env_int("BENCH_CPU_CAP", 40)          # % of a core for the capped rounds; 0 = none
CAP_ROUNDS = env_int("BENCH_CAP_ROUNDS", 3)
CGROUP = "/sys/fs/cgroup/cpu/ferry-bench-dns"    # cgroup v1 cpu controller (this kernel has no v2)
RETRY_LIMIT = 25.0  # % of one core, steal or other load

ZONE = "example.test"
NNAMES = 1000
QUERY_LINES = 100000
NNODES = 8
NET = "127.0.9"
ADDR = {"knot": (NET + ".1", 5301), "nsd": (NET + ".2", 5302), "ferry": (NET + ".3", 5303),
        "ferry-geo": (NET + ".4", 5304), "knot-geo": (NET + ".5", 5305)}
CAPTURE = (NET + ".9", 5309)  # where one dnsperf query is captured to check -E
GLUE = NET + ".53"
SERVER_CPU, LOADGEN_CPU = "0", "1"
HZ = os.sysconf("SC_CLK_TCK")
SEED = 20261123
T0 = time.monotonic()
waited_total = 0.0
failures = []
RUNS = []


def static_addr(i):
    return f"10.{i // 256}.{i % 256}.1"


def node_addr(k):
    return f"198.51.100.{10 + k}"


def log(msg):
    print("dns: " + msg, file=sys.stderr, flush=True)


def elapsed():
    return time.monotonic() - T0


# ---- processes -------------------------------------------------------------

def start(argv, logpath, cpus=SERVER_CPU):
    return benchlib.start(argv, logpath, cpus)


def stop(p, timeout=15):
    benchlib.stop(p, timeout, tree=True)  # NSD forks


def stop_all():
    benchlib.stop_all(log, stop)


def status_kib(pid, field):
    """Sum of a /proc/PID/status field (VmRSS, VmHWM) over the process tree, KiB."""
    return sum(benchlib.status_kib(p, field) for p in proc_tree(pid))


OTHERS = {}  # comm -> how many pre-run samples saw it busy (>= 10% of a core)


def other_load(window=0.5):
    """The machine's busy time over `window` s (our servers are idle then), in % of one core;
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


def set_affinity_tree(pid, cpus):
    for p in proc_tree(pid):
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(p)], capture_output=True, timeout=10)


def threads_of(pid):
    out = []
    for p in proc_tree(pid):
        try:
            out += [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            pass
    return out


def cap_server(pid, pct):
    """Moves every thread of a server into a cgroup allowed pct% of one core (pct 0: back out)."""
    if pct:
        os.makedirs(CGROUP, exist_ok=True)
        write(os.path.join(CGROUP, "cpu.cfs_period_us"), "100000")
        write(os.path.join(CGROUP, "cpu.cfs_quota_us"), str(pct * 1000))
    target = os.path.join(CGROUP if pct else os.path.dirname(CGROUP), "tasks")
    for t in threads_of(pid):
        try:
            with open(target, "w") as f:
                f.write(str(t))
        except OSError:
            pass


def cap_cleanup():
    if os.path.isdir(CGROUP):
        for line in open(os.path.join(CGROUP, "tasks")).read().split():
            try:
                with open(os.path.join(os.path.dirname(CGROUP), "tasks"), "w") as f:
                    f.write(line)
            except OSError:
                pass
        try:
            os.rmdir(CGROUP)
        except OSError:
            pass


# ---- DNS wire (readiness polls and the dnsperf capture) ---------------------


def dns_query(name, qid=0x4242, ecs=None):
    """A query with EDNS0 (RD clear); ecs = (family, source, address bytes)."""
    q = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    q += b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack("!HH", 1, 1)
    opts = b""
    if ecs:
        fam, src, addr = ecs
        data = struct.pack("!HBB", fam, src, 0) + addr
        opts = struct.pack("!HH", 8, len(data)) + data
    q += b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(opts)) + opts
    return q


def skip_name(m, i):
    while True:
        n = m[i]
        if n == 0:
            return i + 1
        if n & 0xC0 == 0xC0:
            return i + 2
        i += 1 + n


def dns_parse(m):
    """-> {id, rcode, aa, a: [addresses], opts: {code: data}}"""
    qid, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", m[:12])
    r = {"id": qid, "rcode": flags & 15, "aa": bool(flags & 0x0400), "a": [], "opts": {}}
    i = 12
    for _ in range(qd):
        i = skip_name(m, i) + 4
    for k in range(an + ns + ar):
        i = skip_name(m, i)
        t, c, ttl, ln = struct.unpack("!HHIH", m[i:i + 10])
        i += 10
        rd = m[i:i + ln]
        i += ln
        if k < an and t == 1 and ln == 4:
            r["a"].append(socket.inet_ntoa(rd))
        if t == 41:
            j = 0
            while j + 4 <= len(rd):
                code, olen = struct.unpack("!HH", rd[j:j + 4])
                r["opts"][code] = rd[j + 4:j + 4 + olen]
                j += 4 + olen
    return r


def ask(addr, port, name, ecs=None, timeout=0.3):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.sendto(dns_query(name, ecs=ecs), (addr, port))
        m, _ = s.recvfrom(4096)
        return dns_parse(m)
    except (OSError, struct.error, IndexError):
        return None
    finally:
        s.close()


def wait_answer(p, name, what, ecs=None, want=None, timeout=300):
    """Polls until the server answers NOERROR with an A record; -> seconds since spawn."""
    addr, port = ADDR[name]

    def answered():
        r = ask(addr, port, f"h7.{ZONE}", ecs=ecs, timeout=0.05)
        return r and r["rcode"] == 0 and r["a"] and (want is None or r["a"] == want)
    benchlib.wait_ready(p, answered, what, f"gave no answer on {addr}:{port}", timeout, "dns", 0.01)
    return time.monotonic() - p.t_spawn


# ---- data ------------------------------------------------------------------


def gen_zone(d):
    lines = [f"$ORIGIN {ZONE}.", "$TTL 3600",
             f"@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 604800 60",
             f"@ IN NS ns1.{ZONE}.", f"ns1 IN A {GLUE}"]
    lines += [f"h{i} IN A {static_addr(i)}" for i in range(NNAMES)]
    return write(os.path.join(d, ZONE + ".zone"), "\n".join(lines) + "\n")


def gen_queries(d):
    rng = random.Random(SEED)
    names = [f"h{i}.{ZONE} A" for i in range(NNAMES)]
    out = []
    while len(out) < QUERY_LINES:
        rng.shuffle(names)
        out += names
    return write(os.path.join(d, "queries.txt"), "\n".join(out) + "\n")


V4_LEN_WEIGHTS = [(16, 4), (17, 2), (18, 4), (19, 6), (20, 9), (21, 10), (22, 14), (23, 11), (24, 40)]


def gen_prefixes(n):
    """-> [(family, network int, plen, node)]: ~85% IPv4 /16-/24, ~15% IPv6 /29-/48,
    a third of them more-specifics of earlier ones; unique; seeded."""
    rng = random.Random(SEED)
    v4_lens = [l for l, w in V4_LEN_WEIGHTS for _ in range(w)]
    v4_first = [x for x in range(1, 224) if x not in (10, 127)]  # 10/8: the static answers; 127/8: us
    seen = set()
    out = []
    while len(out) < n:
        if out and rng.randrange(3) == 0:
            fam, net, plen, node = out[rng.randrange(len(out))]
            width, maxlen = (32, 24) if fam == 4 else (128, 48)
            if plen >= maxlen:
                continue
            nl = plen + 1 + rng.randrange(maxlen - plen)
            bits = rng.getrandbits(nl - plen) << (width - nl)
            net = net | bits
            plen = nl
            if rng.randrange(2):
                node = rng.randrange(NNODES)
        elif rng.randrange(1000) < 125:  # their more-specifics bring IPv6 to ~15%
            fam, plen = 6, 29 + rng.randrange(20)
            net = ((1 << 125) | rng.getrandbits(125)) >> (128 - plen) << (128 - plen)  # in 2000::/3
            node = rng.randrange(NNODES)
        else:
            fam, plen = 4, rng.choice(v4_lens)
            first = rng.choice(v4_first)
            net = ((first << 24) | rng.getrandbits(24)) >> (32 - plen) << (32 - plen)
            node = rng.randrange(NNODES)
        key = (fam, net, plen)
        if key in seen:
            continue
        seen.add(key)
        out.append((fam, net, plen, node))
    return out


def fmt_prefix(fam, net, plen):
    if fam == 4:
        return f"{socket.inet_ntoa(net.to_bytes(4, 'big'))}/{plen}"
    return f"{socket.inet_ntop(socket.AF_INET6, net.to_bytes(16, 'big'))}/{plen}"


def lpm(prefixes, fam, addr):
    """Longest-prefix match by brute force: -> node (default n0)."""
    width = 32 if fam == 4 else 128
    best, node = -1, 0
    for f, net, plen, nd in prefixes:
        if f == fam and plen > best and (addr ^ net) >> (width - plen) == 0:
            best, node = plen, nd
    return node


def pick_subnets(prefixes):
    """An IPv4 /24 and an IPv6 /48 of the table that lie inside a shorter prefix of it."""
    have = {(f, n, p) for f, n, p, _ in prefixes}
    res = {}
    for fam, net, plen, node in prefixes:
        width, want = (32, 24) if fam == 4 else (128, 48)
        if fam in res or plen != want:
            continue
        if any((fam, net >> (width - l) << (width - l), l) in have for l in range(1, plen)):
            res[fam] = net
        if len(res) == 2:
            break
    for fam, net, plen, node in prefixes:  # small tables: any /24 or /48 will do
        if fam not in res and plen == (24 if fam == 4 else 48):
            res[fam] = net
    return res[4], res[6]


def write_areas(d, prefixes):
    path = os.path.join(d, "areas.txt")
    with open(path, "w") as f:
        f.write("0.0.0.0/0 n0\n::/0 n0\n")
        for fam, net, plen, node in prefixes:
            f.write(f"{fmt_prefix(fam, net, plen)} n{node}\n")
    return path


def write_geoip(d, prefixes):
    path = os.path.join(d, "knot-geo", "geo.yaml")
    with open(path, "w") as f:
        f.write(f"*.{ZONE}:\n  - net: 0.0.0.0/0\n    A: {node_addr(0)}\n"
                f"  - net: ::/0\n    A: {node_addr(0)}\n")
        for fam, net, plen, node in prefixes:
            f.write(f"  - net: {fmt_prefix(fam, net, plen)}\n    A: {node_addr(node)}\n")
    return path


# ---- configs ---------------------------------------------------------------


def knot_conf(d, name, zonefile, geo=None):
    w = os.path.join(d, name)
    addr, port = ADDR[name]
    geo_srv = "    edns-client-subnet: on\n" if geo else ""
    geo_mod = (f"mod-geoip:\n  - id: geo\n    config-file: {geo}\n    ttl: 20\n    mode: subnet\n"
               if geo else "")
    return write(os.path.join(w, "knot.conf"), f"""server:
    rundir: {w}
    pidfile: {w}/knot.pid
    listen: {addr}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
{geo_srv}log:
  - target: stderr
    any: notice
database:
    storage: {w}
control:
    listen: {w}/knot.sock
{geo_mod}template:
  - id: default
    storage: {w}
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
  - domain: {ZONE}
    file: {zonefile}
{"    module: mod-geoip/geo" if geo else ""}
""")


def nsd_conf(d, zonefile):
    w = os.path.join(d, "nsd")
    addr, port = ADDR["nsd"]
    return write(os.path.join(w, "nsd.conf"), f"""server:
    ip-address: {addr}@{port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{w}"
    pidfile: "{w}/nsd.pid"
    database: ""
    zonelistfile: "{w}/zone.list"
    xfrdfile: "{w}/xfrd.state"
    xfrdir: "{w}"
    logfile: "{w}/nsd.log"
    verbosity: 0
remote-control:
    control-enable: no
zone:
    name: {ZONE}
    zonefile: {zonefile}
""")


def ferry_conf(d, name, areas=None):
    addr, port = ADDR[name]
    if areas:
        names = "\n".join(f"        service h{i};" for i in range(NNAMES))
        nodes = "\n".join(f"    node n{k} {{ address {node_addr(k)}; }}" for k in range(NNODES))
        extra = f"    area_file {areas};\n"
    else:
        names = "\n".join(f"        record h{i} A {static_addr(i)};" for i in range(NNAMES))
        nodes = f"    node n0 {{ address {node_addr(0)}; }}"  # the router needs one node
        extra = ""
    return write(os.path.join(d, name, "ferryd.conf"), f"""workers 1;
error_log {d}/{name}/ferryd.log;
router {{
    cdn bench;
    listen {addr}:{port};
    ttl 20s;
    zone {ZONE} {{
        ns ns1.{ZONE};
        record ns1 A {GLUE};
{names}
    }}
{nodes}
{extra}}}
""")


# ---- checks ----------------------------------------------------------------


def dig(name, qname=f"h7.{ZONE}", subnet=None):
    addr, port = ADDR[name]
    argv = ["dig", f"@{addr}", "-p", str(port), qname, "A", "+norec", "+time=2", "+tries=2"]
    if subnet:
        argv.append(f"+subnet={subnet}")
    r = subprocess.run(argv, capture_output=True, text=True, timeout=15)
    out = r.stdout
    flags = re.search(r";; flags: ([a-z ]+);", out)
    status = re.search(r"status: (\w+)", out)
    ans = sorted(" ".join(l.split()) for l in out.split(";; ANSWER SECTION:\n", 1)[-1].split("\n\n")[0]
                 .splitlines() if "ANSWER SECTION" in out and l and not l.startswith(";"))
    scope = re.search(r"CLIENT-SUBNET: (\S+)", out)
    return {"status": status.group(1) if status else None, "aa": bool(flags and "aa" in flags.group(1).split()),
            "answer": ans, "ecs": scope.group(1) if scope else None, "out": out}


def check_answers(servers, prefixes, sub4, sub6):
    """dig every server for h7 and compare; the geo servers with ECS must name the right node."""
    results = {}
    want = f"h7.{ZONE}. 3600 IN A {static_addr(7)}"
    for name in ("knot", "nsd", "ferry"):
        if name not in servers:
            continue
        r = dig(name)
        results[name] = r
        log(f"check {name}: {r['status']} aa={r['aa']} {r['answer']}")
        if r["status"] != "NOERROR" or not r["aa"] or r["answer"] != [want]:
            failures.append(f"check: {name} answered h7.{ZONE} with {r['status']} aa={r['aa']} {r['answer']}, "
                            f"want [{want}]")
    answers = {n: tuple(r["answer"]) for n, r in results.items()}
    if len(set(answers.values())) > 1:
        failures.append(f"check: the static servers disagree: {answers}")
    s4 = fmt_prefix(4, sub4, 24)
    r = dig("ferry", subnet=s4)
    log(f"check ferry +subnet={s4}: {r['status']} {r['answer']} ECS {r['ecs']}")
    if r["answer"] != [want]:
        failures.append(f"check: ferry with ECS answered {r['answer']}, want [{want}]")
    for fam, net, plen in ((4, sub4, 24), (6, sub6, 48)):
        sub = fmt_prefix(fam, net, plen)
        node = lpm(prefixes, fam, net)
        for name in ("ferry-geo", "knot-geo"):
            if name not in servers:
                continue
            r = dig(name, subnet=sub)
            got = [a.split()[-1] for a in r["answer"]]
            log(f"check {name} +subnet={sub}: {r['status']} aa={r['aa']} {got} ECS {r['ecs']} "
                f"(table: n{node} = {node_addr(node)})")
            if r["status"] != "NOERROR" or got != [node_addr(node)]:
                failures.append(f"check: {name} answered h7.{ZONE} for {sub} with {r['status']} {got}, "
                                f"want n{node} [{node_addr(node)}]")
    # A name outside the zone's records and services: NXDOMAIN (knot-geo's views hang on the
    # wildcard *.example.test, so it answers every name).
    for name in servers:
        if name == "knot-geo":
            continue
        r = dig(name, qname=f"nosuch.{ZONE}")
        if r["status"] != "NXDOMAIN":
            failures.append(f"check: {name} answered nosuch.{ZONE} with {r['status']}, want NXDOMAIN")


def check_dnsperf_ecs(d, queries, ecs_hex, sub4):
    """Captures one query dnsperf sends with -E and checks its ECS option."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(CAPTURE)
    s.settimeout(5)
    p = subprocess.Popen(["dnsperf", "-s", CAPTURE[0], "-p", str(CAPTURE[1]), "-d", queries, "-c", "1",
                          "-q", "1", "-n", "1", "-l", "2", "-t", "1", "-E", f"8:{ecs_hex}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        m, _ = s.recvfrom(4096)
        r = dns_parse(m)
        got = r["opts"].get(8)
        want = struct.pack("!HBB", 1, 24, 0) + sub4.to_bytes(4, "big")[:3]
        if got != want:
            failures.append(f"check: dnsperf -E sent ECS {got!r}, want {want!r}")
        else:
            log(f"check dnsperf -E 8:{ecs_hex}: the query carries ECS {fmt_prefix(4, sub4, 24)}")
    except OSError as e:
        failures.append(f"check: no query from dnsperf captured ({e})")
    finally:
        s.close()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---- dnsperf ---------------------------------------------------------------


def parse_dnsperf(out):
    r = {}
    for key, pat in (("sent", r"Queries sent:\s*(\d+)"), ("completed", r"Queries completed:\s*(\d+)"),
                     ("lost", r"Queries lost:\s*(\d+)"), ("qps", r"Queries per second:\s*([\d.]+)"),
                     ("lat_ms", r"Average Latency \(s\):\s*([\d.]+)"),
                     ("lat_sd_ms", r"Latency StdDev \(s\):\s*([\d.]+)"),
                     ("runtime", r"Run time \(s\):\s*([\d.]+)")):
        m = re.search(pat, out)
        if m:
            r[key] = float(m.group(1)) if "." in m.group(1) else int(m.group(1))
    for k in ("lat_ms", "lat_sd_ms"):
        if k in r:
            r[k] *= 1000.0
    m = re.search(r"Response codes:\s*(.*)", out)
    r["rcodes"] = m.group(1).strip() if m else ""
    r["non_noerror"] = sum(int(n) for c, n in re.findall(r"(\w+) (\d+) \(", r["rcodes"]) if c != "NOERROR")
    return r


CURRENT = []  # the dnsperf running, for cleanup


def run_dnsperf(server, queries, ecs_hex, pinned, duration=DURATION, wait=True):
    addr, port = ADDR[server["name"]]
    argv = ["dnsperf", "-s", addr, "-p", str(port), "-d", queries, "-c", str(CLIENTS), "-q", str(OUTSTANDING),
            "-l", str(duration)]
    if ecs_hex:
        argv += ["-E", f"8:{ecs_hex}"]
    if pinned:
        argv = ["taskset", "-c", LOADGEN_CPU] + argv
    pid = server["proc"].pid
    quiet, waited = wait_quiet() if wait else (None, 0.0)
    la = loadavg()
    s0, c0, t0 = proc_stat(), tree_cpu_ticks(pid), time.monotonic()
    out_path = os.path.join(server["dir"], "dnsperf.out")
    with open(out_path, "wb") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        CURRENT.append(p)
        deadline = time.monotonic() + duration + 30
        while True:
            wpid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if wpid:
                break
            if time.monotonic() > deadline:
                os.kill(p.pid, signal.SIGKILL)
                wpid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.02)
        CURRENT.remove(p)
    p.returncode = os.waitstatus_to_exitcode(status)
    t1, c1, s1 = time.monotonic(), tree_cpu_ticks(pid), proc_stat()
    with open(out_path, errors="replace") as f:
        text = f.read()
    el = t1 - t0
    server_ticks = c1 - c0
    gen_ticks = (ru.ru_utime + ru.ru_stime) * HZ
    r = parse_dnsperf(text)
    r.update({"rc": p.returncode, "elapsed": el, "loadavg": la, "pre_other_pct": quiet, "waited_s": waited,
              "server_cpu_pct": 100.0 * server_ticks / HZ / el,
              "loadgen_cpu_pct": 100.0 * gen_ticks / HZ / el,
              "steal_pct": 100.0 * (s1["steal"] - s0["steal"]) / HZ / el,
              "other_pct": max(0.0, 100.0 * ((s1["busy"] - s0["busy"]) - server_ticks - gen_ticks) / HZ / el)})
    r["cpu_us_per_q"] = server_ticks / HZ * 1e6 / r["completed"] if r.get("completed") else None
    r["loadgen_us_per_q"] = gen_ticks / HZ * 1e6 / r["completed"] if r.get("completed") else None
    if p.returncode != 0 or "qps" not in r:
        r["error"] = f"dnsperf exit {p.returncode}: " + " | ".join(text.strip().splitlines()[-3:])
    elif r["non_noerror"]:
        r["error"] = f"responses other than NOERROR: {r['rcodes']}"
    if server["proc"].poll() is not None:
        r["error"] = f"{server['name']} died (exit {server['proc'].returncode})"
    return r


# ---- the benchmark ---------------------------------------------------------

JSONL = None
PLAN = {"runs": 0, "done": 0}  # runs planned and made, for the retry budget


def record(variant, case, rnd, r):
    row = {"variant": variant, "case": case, "round": rnd}
    row.update({k: v for k, v in r.items() if k != "out"})
    RUNS.append(row)
    if JSONL:
        JSONL.write(json.dumps(row) + "\n")
        JSONL.flush()


def one_run(variant, case, server, queries, ecs_hex, rnd, pinned, duration=DURATION):
    r = run_dnsperf(server, queries, ecs_hex, pinned, duration)
    PLAN["done"] += 1
    left = PLAN["runs"] - PLAN["done"]
    if ((r["steal_pct"] > RETRY_LIMIT or r["other_pct"] > RETRY_LIMIT) and "error" not in r
            and elapsed() + (left + 1) * (duration + 2) < BUDGET):
        log(f"{variant} {case} round {rnd}: steal {r['steal_pct']:.0f}% other {r['other_pct']:.0f}%, retrying once")
        r2 = run_dnsperf(server, queries, ecs_hex, pinned, duration)
        r2["retried_after"] = {"steal_pct": r["steal_pct"], "other_pct": r["other_pct"], "qps": r.get("qps")}
        r = r2
    record(variant, case, rnd, r)
    log(f"{variant} round {rnd} {case}: {r.get('qps', 0):,.0f} q/s, lost {r.get('lost', '?')}, "
        f"lat {r.get('lat_ms', 0):.3f} ms, server {r['cpu_us_per_q'] or 0:.2f} µs/q "
        f"({r['server_cpu_pct']:.0f}% CPU), dnsperf {r['loadgen_cpu_pct']:.0f}%, "
        f"steal {r['steal_pct']:.0f}% other {r['other_pct']:.0f}% load {r['loadavg']:.2f} [{elapsed():.0f}s]")
    if "error" in r:
        failures.append(f"{variant} {case} round {rnd}: {r['error']}")
    return r


def profile(server, queries, ecs_hex, d):
    """perf stat and perf record -g of a server under load; -> text for the report."""
    pid = str(server["proc"].pid)
    name = server["name"]
    out = []
    secs = max(3, DURATION - 4)
    for kind, argv in (("stat", ["perf", "stat", "-p", pid, "--", "sleep", str(secs)]),
                       ("record", ["perf", "record", "-e", "cpu-clock", "-g", "-o", os.path.join(d, f"perf-{name}.data"),
                                   "-p", pid, "--", "sleep", str(secs)])):
        wait_quiet()
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        CURRENT.append(p)
        time.sleep(1)
        r = run_dnsperf(server, queries, ecs_hex, True, wait=False)
        PLAN["done"] += 1
        try:
            text = p.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            text = p.communicate()[0].decode(errors="replace")
        CURRENT.remove(p)
        qps = r.get("qps", 0)
        if kind == "stat":
            keep = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
            out.append(f"perf stat -p PID (ferryd {name}, {qps:,.0f} q/s):\n" + "\n".join(keep))
        else:
            rep = subprocess.run(["perf", "report", "--stdio", "--no-children", "-i",
                                  os.path.join(d, f"perf-{name}.data"), "--sort", "symbol",
                                  "--percent-limit", "1", "-g", "none"],
                                 capture_output=True, text=True, timeout=120)
            keep = [l for l in rep.stdout.splitlines() if l.strip() and not l.startswith("#")][:30]
            dso = subprocess.run(["perf", "report", "--stdio", "--no-children", "-i",
                                  os.path.join(d, f"perf-{name}.data"), "--sort", "dso", "-g", "none"],
                                 capture_output=True, text=True, timeout=120)
            by_dso = [l for l in dso.stdout.splitlines() if l.strip() and not l.startswith("#")][:6]
            own = subprocess.run(["perf", "report", "--stdio", "--no-children", "-i",
                                  os.path.join(d, f"perf-{name}.data"), "--dsos", "ferryd", "--sort", "symbol",
                                  "-g", "none"], capture_output=True, text=True, timeout=120)
            by_own = [l for l in own.stdout.splitlines() if l.strip() and not l.startswith("#")][:12]
            out.append(f"perf record -e cpu-clock -g -p PID, self time by symbol (ferryd {name}, {qps:,.0f} q/s):\n"
                       + "\n".join(keep) + "\nby object:\n" + "\n".join(by_dso)
                       + "\nferryd's own symbols (% of all samples):\n" + "\n".join(by_own))
    return "\n\n".join(out)


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
    return sorted((r for r in RUNS if r["variant"] == variant and r["case"] == case), key=lambda r: r["round"])


CASES = [  # (case, server, ECS?), in the order of odd rounds (even rounds reverse it): each ratio's
    # two cases are neighbours (but ferry / nsd, one apart), as this VM's speed drifts within minutes
    ("nsd", "nsd", False),
    ("ferry +ECS", "ferry", True),
    ("ferry", "ferry", False),
    ("knot", "knot", False),
    ("ferry-geo +ECS", "ferry-geo", True),
    ("knot-geo +ECS", "knot-geo", True),
]
TABLE_ORDER = ["knot", "nsd", "ferry", "ferry +ECS", "ferry-geo +ECS", "knot-geo +ECS"]
CAPPED_CASES = ["knot", "nsd", "ferry", "ferry-geo +ECS"]
RATIOS = [  # (label, numerator case, denominator case)
    ("Ferry static / Knot", "ferry", "knot"),
    ("Ferry geo / Knot", "ferry-geo +ECS", "knot"),
    ("Ferry static / NSD", "ferry", "nsd"),
    ("Ferry static +ECS / Ferry static", "ferry +ECS", "ferry"),
    ("Ferry geo / Knot geo", "ferry-geo +ECS", "knot-geo +ECS"),
]


def report(meta, servers, sub4, sub6, prof):
    out = []
    w = out.append
    w(f"# DNS benchmark, {meta['date']}\n")
    w(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; {meta['knot']}; {meta['nsd']}; "
      f"{meta['dnsperf']}.")
    w(f"Ferry commit {meta['commit']}{meta['dirty']}, ferryd from {BUILD} (built {meta['built']}"
      + ("; OLDER than the last commit to src/: rebuild" if meta["stale"] else "") + ").")
    w(f"Command: `{meta['command']}` ({meta['wall']:.0f} s).")
    w(f"Load: `dnsperf -c {CLIENTS} -q {OUTSTANDING} -l {DURATION}` over {QUERY_LINES:,} queries "
      f"(the {NNAMES:,} names h0..h{NNAMES - 1}.{ZONE}, type A, shuffled); the ECS cases add "
      f"`-E 8:{meta['ecs_hex']}` (ECS {fmt_prefix(4, sub4, 24)}). "
      f"Area table: {NPREFIXES:,} prefixes + 2 defaults, 8 nodes.")
    w(f"Pinned: every server on CPU {SERVER_CPU} (1 UDP worker), dnsperf on CPU {LOADGEN_CPU}. "
      "Medians (min–max) over the rounds. µs/q = the server's CPU (utime+stime) per completed query; "
      "CPU % = of one core; steal and other load in % of one core during the run; load = 1-min load average "
      "before the run.\n")
    w(f"## Pinned, {ROUNDS} rounds\n")
    w("dnsperf on its one core is the limit when its CPU is near 100% and the server's is not: queries/s then "
      "measures dnsperf, and the server's µs/q is the figure that compares the servers. "
      "\"1 core\" = 10⁶ / µs per query, the rate one core would reach at that cost (an extrapolation; "
      "a saturated server batches more and usually does better).\n")
    w("| case | queries/s | lost | avg latency ms | server µs/q | 1 core, q/s | server CPU % | dnsperf CPU % "
      "| steal % | other % | load |")
    w("|---|---|---|---|---|---|---|---|---|---|---|")
    for case in TABLE_ORDER:
        rs = rows("pinned", case)
        if not rs:
            continue
        w(f"| {case} | {med([r.get('qps') for r in rs])} | {med([r.get('lost') for r in rs])} | "
          f"{med([r.get('lat_ms') for r in rs], 3)} | {med([r.get('cpu_us_per_q') for r in rs], 2)} | "
          f"{med([1e6 / r['cpu_us_per_q'] if r.get('cpu_us_per_q') else None for r in rs])} | "
          f"{med([r['server_cpu_pct'] for r in rs])} | {med([r['loadgen_cpu_pct'] for r in rs])} | "
          f"{med([r['steal_pct'] for r in rs])} | {med([r['other_pct'] for r in rs])} | "
          f"{med([r['loadavg'] for r in rs], 2)} |")
    w("")
    w("Ratios, per round (the two runs of a round are minutes apart at most), median (min–max):\n")
    w("| ratio | queries/s | server µs/q |")
    w("|---|---|---|")
    for label, a, b in RATIOS:
        ra, rb = rows("pinned", a), rows("pinned", b)
        if not ra or not rb:
            continue
        bq = {r["round"]: r for r in rb}
        q = [r.get("qps", 0) / bq[r["round"]]["qps"] for r in ra if r["round"] in bq and bq[r["round"]].get("qps")]
        c = [r["cpu_us_per_q"] / bq[r["round"]]["cpu_us_per_q"] for r in ra
             if r["round"] in bq and r.get("cpu_us_per_q") and bq[r["round"]].get("cpu_us_per_q")]
        w(f"| {label} | {med(q, 2)} | {med(c, 2)} |")
    w("")
    w("Every pinned run, queries/s and server µs/q (round 1 ran the cases in the order nsd, ferry +ECS, "
      "ferry, knot, ferry-geo +ECS, knot-geo +ECS; each later round reverses the previous one's order):\n")
    w("| case | " + " | ".join(f"round {i}" for i in range(1, ROUNDS + 1)) + " |")
    w("|---|" + "---|" * ROUNDS)
    for case in TABLE_ORDER:
        rs = {r["round"]: r for r in rows("pinned", case)}
        if rs:
            w(f"| {case} | " + " | ".join(
                f"{fmt(rs[i].get('qps'))} / {fmt(rs[i].get('cpu_us_per_q'), 2)}" if i in rs else "—"
                for i in range(1, ROUNDS + 1)) + " |")
    w("")
    if any(r["variant"] == "capped" for r in RUNS):
        w(f"## Capped: each server held to {CAP_PCT}% of its core, {CAP_ROUNDS} rounds\n")
        w(f"The server runs pinned as above, inside a cgroup (v1 cpu controller, cfs_quota {CAP_PCT}% of a "
          "period): dnsperf then has spare CPU and the server is the bottleneck, so queries/s compares the "
          "servers directly. Latency is not comparable here (the quota throttles in 100 ms periods).\n")
        w("| case | queries/s | lost | server µs/q | server CPU % | dnsperf CPU % | steal % | other % |")
        w("|---|---|---|---|---|---|---|---|")
        for case in CAPPED_CASES:
            rs = rows("capped", case)
            if rs:
                w(f"| {case} | {med([r.get('qps') for r in rs])} | {med([r.get('lost') for r in rs])} | "
                  f"{med([r.get('cpu_us_per_q') for r in rs], 2)} | {med([r['server_cpu_pct'] for r in rs])} | "
                  f"{med([r['loadgen_cpu_pct'] for r in rs])} | {med([r['steal_pct'] for r in rs])} | "
                  f"{med([r['other_pct'] for r in rs])} |")
        w("")
        w("| ratio, capped | queries/s | server µs/q |")
        w("|---|---|---|")
        for label, a, b in RATIOS:
            ra, rb = rows("capped", a), rows("capped", b)
            if not ra or not rb:
                continue
            bq = {r["round"]: r for r in rb}
            q = [r.get("qps", 0) / bq[r["round"]]["qps"] for r in ra if r["round"] in bq and bq[r["round"]].get("qps")]
            c = [r["cpu_us_per_q"] / bq[r["round"]]["cpu_us_per_q"] for r in ra
                 if r["round"] in bq and r.get("cpu_us_per_q") and bq[r["round"]].get("cpu_us_per_q")]
            w(f"| {label} | {med(q, 2)} | {med(c, 2)} |")
        w("")
    if any(r["variant"] == "shared" for r in RUNS):
        w("## Unpinned (\"shared\"): servers and dnsperf free to use both CPUs, one round\n")
        w("| case | queries/s | lost | avg latency ms | server µs/q | server CPU % | dnsperf CPU % | steal % | "
          "other % |")
        w("|---|---|---|---|---|---|---|---|---|")
        for case in ("knot", "ferry"):
            for r in rows("shared", case):
                w(f"| {case} | {fmt(r.get('qps'))} | {fmt(r.get('lost'))} | {fmt(r.get('lat_ms'), 3)} | "
                  f"{fmt(r.get('cpu_us_per_q'), 2)} | {fmt(r['server_cpu_pct'])} | {fmt(r['loadgen_cpu_pct'])} | "
                  f"{fmt(r['steal_pct'])} | {fmt(r['other_pct'])} |")
        ks, fs = rows("shared", "knot"), rows("shared", "ferry")
        if ks and fs and ks[0].get("qps"):
            w(f"\nFerry static / Knot, shared: {fs[0].get('qps', 0) / ks[0]['qps']:.2f} (queries/s).")
        w("")
    w("## Memory and start-up\n")
    w("Start-up = from spawn to the first correct answer for h7 (polled every 10 ms). `ferryd -t` = "
      "the configuration check alone (parse, zones, area table build; no sockets, no threads), wall time. "
      "RSS after loading, and again after the rounds; VmHWM = peak. Summed over the process tree (NSD forks).\n")
    w("| server | start-up s | ferryd -t s | VmRSS MiB loaded | VmRSS MiB after | VmHWM MiB |")
    w("|---|---|---|---|---|---|")
    for name, s in servers.items():
        w(f"| {name} | {s['startup']:.2f} | {fmt(s.get('check_s'), 2)} | {s['rss0'] / 1024:.1f} | "
          f"{s.get('rss1', 0) / 1024:.1f} | {s.get('hwm', 0) / 1024:.1f} |")
    w("")
    w("Notes on the setup:\n")
    w("- knot-geo: mod-geoip keeps a sorted view list per owner name and finds a client's view by binary "
      "search and a walk up to the covering prefix; 1,000 names with 1M views each would be 10⁹ views, so the "
      "views hang on the wildcard `*.example.test` (one list, as Ferry's one area table serves every service). "
      "It therefore answers any name under the zone (nosuch.example.test too), where ferry-geo answers "
      "NXDOMAIN. Its ECS scope is the matched view's prefix length; Ferry's is the decision's own scope "
      "(docs/router.md).")
    w("- Every ECS query carries the same /24, so the table lookups hit the same, cache-hot path: this measures "
      "the DNS path with a decision, not the table's cold lookup cost (bench/area.sh measures that).")
    w("- Static answers: knot, nsd and ferry answer h7 with the same record (checked with dig); dnsperf sends "
      "no EDNS in the static cases (34-byte queries), and the ECS option (OPT, 56-byte queries) in the others.")
    if meta.get("knot_geo_note"):
        w("- " + meta["knot_geo_note"])
    w("")
    if prof:
        w("## Profile (BENCH_DNS_PERF=1)\n")
        w("```\n" + prof + "\n```\n")
    retried = [r for r in RUNS if "retried_after" in r]
    w(f"Runs retried for steal or other load above {RETRY_LIMIT:.0f}% of a core: {len(retried)}"
      + (" (" + ", ".join(f"{r['variant']} {r['case']} round {r['round']}: other "
                           f"{r['retried_after']['other_pct']:.0f}%" for r in retried) + ")" if retried else "")
      + f". Waited for a quiet machine before runs: {waited_total:.0f} s in all.")
    if OTHERS:
        w("Other processes seen using >= 10% of a core in the 0.5 s samples before runs (times seen): "
          + ", ".join(f"{k} ({v})" for k, v in sorted(OTHERS.items(), key=lambda kv: -kv[1])[:12]) + ".")
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
    def sh2(*a):  # stdout and stderr: dnsperf and nsd print their versions on stderr
        try:
            r = subprocess.run(a, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip()
        except OSError:
            return "?"
    dnsperf = re.search(r"Version ([\d.]+)", sh2("dnsperf", "-h"))
    return {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "kernel": os.uname().release,
        "knot": "Knot DNS " + sh("knotd", "-V").split()[-1],
        "nsd": (sh2("nsd", "-v").splitlines() or ["NSD ?"])[0],
        "dnsperf": "dnsperf " + (dnsperf.group(1) if dnsperf else "?"),
        "commit": os.environ.get("FERRY_COMMIT") or sh("git", "-C", ROOT, "rev-parse", "--short", "HEAD") or "?",
        "dirty": " (+ uncommitted changes in src/)" if sh("git", "-C", ROOT, "status", "--porcelain", "src") else "",
        "built": datetime.datetime.fromtimestamp(os.path.getmtime(FERRYD)).strftime("%Y-%m-%d %H:%M"),
        "stale": os.path.getmtime(FERRYD) < int(sh("git", "-C", ROOT, "log", "-1", "--format=%ct", "--", "src")
                                                 or 0),
    }


def main():
    global JSONL
    for tool in ("knotd", "nsd", "dnsperf", "dig", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"dns: {tool} not found (apt-get install knot nsd dnsperf bind9-dnsutils util-linux)")
    if not os.access(FERRYD, os.X_OK):
        raise SystemExit(f"dns: {FERRYD} not built")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("dns: needs 2 CPUs for the pinning")
    knot_geo = KNOT_GEO
    knot_geo_note = None
    if knot_geo and not (glob.glob("/usr/lib/*/knot/modules-*/geoip.so")
                         or glob.glob("/usr/lib*/knot/modules-*/geoip.so")):
        knot_geo = False
        knot_geo_note = "knot-geo skipped: Knot's geoip module is not installed (apt-get install knot-module-geoip)."
        log(knot_geo_note)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: a shell's `&` ignores it
        signal.signal(sig, on_signal)
    os.makedirs(RESULTS, exist_ok=True)
    meta = machine()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    JSONL = open(os.path.join(RESULTS, f"dns-{stamp}.jsonl"), "w")
    d = tempfile.mkdtemp(prefix="ferry-bench-dns-")
    log(f"work dir {d}; load average {loadavg():.2f}")
    servers = {}
    prof = None
    sub4 = sub6 = 0
    rc = 0
    try:
        for name in ADDR:
            os.makedirs(os.path.join(d, name), exist_ok=True)
        zonefile = gen_zone(d)
        queries = gen_queries(d)
        t = time.monotonic()
        prefixes = gen_prefixes(NPREFIXES)
        sub4, sub6 = pick_subnets(prefixes)
        areas = write_areas(d, prefixes)
        geo_yaml = write_geoip(d, prefixes) if knot_geo else None
        log(f"generated {len(prefixes):,} prefixes in {time.monotonic() - t:.1f}s "
            f"({sum(1 for p in prefixes if p[0] == 6):,} IPv6); ECS subnets {fmt_prefix(4, sub4, 24)} "
            f"(n{lpm(prefixes, 4, sub4)}) and {fmt_prefix(6, sub6, 48)} (n{lpm(prefixes, 6, sub6)})")
        ecs_hex = "00011800" + sub4.to_bytes(4, "big")[:3].hex()
        ecs_wire = (1, 24, sub4.to_bytes(4, "big")[:3])
        meta["ecs_hex"] = ecs_hex

        def launch(name, argv, ecs=None, want=None):
            p = start(argv, os.path.join(d, name, "out.log"))
            startup = wait_answer(p, name, name, ecs=ecs, want=want, timeout=max(60, BUDGET / 3))
            servers[name] = {"name": name, "proc": p, "dir": os.path.join(d, name), "startup": startup,
                             "rss0": status_kib(p.pid, "VmRSS")}
            log(f"{name} (pid {p.pid}) answers after {startup:.2f}s, VmRSS {servers[name]['rss0'] / 1024:.1f} MiB")

        launch("knot", ["knotd", "-c", knot_conf(d, "knot", zonefile)])
        launch("nsd", ["nsd", "-d", "-c", nsd_conf(d, zonefile)])
        for name, conf in (("ferry", ferry_conf(d, "ferry")), ("ferry-geo", ferry_conf(d, "ferry-geo", areas))):
            # ferryd -t: config load and area table build alone, without sockets or threads.
            t = time.monotonic()
            r = subprocess.run([FERRYD, "-t", "-c", conf], capture_output=True, text=True, timeout=120)
            check_s = time.monotonic() - t
            if r.returncode != 0:
                raise SystemExit(f"dns: ferryd -t -c {conf} failed:\n{r.stdout}{r.stderr}")
            launch(name, [FERRYD, "-c", conf])
            servers[name]["check_s"] = check_s
        if knot_geo:
            # The module is loaded with the zone, after the server started: wait for a decided answer.
            launch("knot-geo", ["knotd", "-c", knot_conf(d, "knot-geo", zonefile, geo_yaml)], ecs=ecs_wire,
                   want=[node_addr(lpm(prefixes, 4, sub4))])
        check_answers(servers, prefixes, sub4, sub6)
        check_dnsperf_ecs(d, queries, ecs_hex, sub4)
        del prefixes
        if failures:
            raise SystemExit("dns: checks failed:\n  " + "\n  ".join(failures))

        cases = [c for c in CASES if c[1] in servers]
        capped = [c for c in cases if c[0] in CAPPED_CASES] if CAP_PCT and os.path.isdir(os.path.dirname(CGROUP)) else []
        PLAN["runs"] = ROUNDS * len(cases) + CAP_ROUNDS * len(capped) + (2 if UNPINNED else 0) + (4 if PERF else 0)
        log(f"{ROUNDS} rounds of {len(cases)} runs, {DURATION}s each")
        for rnd in range(1, ROUNDS + 1):
            order = cases if rnd % 2 else list(reversed(cases))
            for case, name, ecs in order:
                one_run("pinned", case, servers[name], queries, ecs_hex if ecs else None, rnd, True)
        # Capped: each server limited to CAP_PCT% of its core, so that it, not dnsperf, is
        # the bottleneck and queries/s compares the servers themselves.
        for rnd in range(1, CAP_ROUNDS + 1 if capped else 1):
            order = capped if rnd % 2 else list(reversed(capped))
            for case, name, ecs in order:
                cap_server(servers[name]["proc"].pid, CAP_PCT)
                try:
                    one_run("capped", case, servers[name], queries, ecs_hex if ecs else None, rnd, True)
                finally:
                    cap_server(servers[name]["proc"].pid, 0)
        if PERF:
            if shutil.which("perf") is None:
                prof = "perf not installed"
            else:
                prof = "\n\n".join(profile(servers[n], queries, ecs_hex if n == "ferry-geo" else None, d)
                                   for n in ("ferry", "ferry-geo"))
        if UNPINNED:
            for name in ("knot", "ferry"):
                set_affinity_tree(servers[name]["proc"].pid, "0,1")
            for case in (("knot", "ferry") if ROUNDS % 2 else ("ferry", "knot")):
                one_run("shared", case, servers[case], queries, None, 1, False)
        for name, s in servers.items():
            s["rss1"] = status_kib(s["proc"].pid, "VmRSS")
            s["hwm"] = status_kib(s["proc"].pid, "VmHWM")
            if s["proc"].poll() is not None:
                failures.append(f"{name} died (exit {s['proc'].returncode})")
    except SystemExit as e:
        print(str(e), file=sys.stderr, flush=True)
        if not failures:
            failures.append(str(e).splitlines()[0] if str(e) else "aborted")
        rc = 1
    except KeyboardInterrupt:
        failures.append("interrupted")
        rc = 1
    finally:
        for p in list(CURRENT):
            try:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            except (ProcessLookupError, ChildProcessError):
                pass
        stop_all()
        cap_cleanup()
        if rc or failures:  # keep the logs, drop the big files
            for f in ("areas.txt", "queries.txt", "knot-geo/geo.yaml", "perf-ferry.data", "perf-ferry-geo.data"):
                try:
                    os.unlink(os.path.join(d, f))
                except OSError:
                    pass
        else:
            shutil.rmtree(d, ignore_errors=True)
    meta["knot_geo_note"] = knot_geo_note
    meta["wall"] = elapsed()
    env = [f"{k}={os.environ[k]}" for k in sorted(os.environ)
           if k.startswith(("BENCH_", "FERRY_")) and k != "BENCH_RESULTS"]
    meta["command"] = " ".join(env + [os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:])
    text = report(meta, servers, sub4, sub6, prof)
    path = os.path.join(RESULTS, f"dns-{stamp}.md")
    with open(path, "w") as f:
        f.write(text + "\n")
    JSONL.close()
    print(text)
    log(f"results in {path} ({elapsed():.0f}s)" + (f"; logs in {d}" if os.path.isdir(d) else ""))
    return 1 if (rc or failures) else 0


if __name__ == "__main__":
    sys.exit(main())
