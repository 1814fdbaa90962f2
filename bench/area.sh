#!/usr/bin/python3
"""area -- the router's area table (src/router/area.c) against python3-radix,
the longest-prefix-match table a user would otherwise reach for, on the same
synthetic table of 1,000,000 prefixes (85% IPv4, 15% IPv6).

(A Python 3 script, standard library only, despite the .sh name, like
bench/switch.sh: run it directly or through bench/run.sh.)

Steps:
  1. gcc -O2 builds bench/area_bench.c with src/router/area.c into
     $FERRY_BUILD/area_bench (default $ROOT/build).
  2. `area_bench gen` writes the prefixes and 1,000,000 lookup addresses a
     family into a temporary directory (see area_bench.c for the mix).
  3. BENCH_AREA_ROUNDS rounds (default 3), each: the anchor, then Ferry, both
     pinned to CPU 1 with taskset:
       anchor  /usr/bin/python3 with python3-radix: add every prefix
               (rtree.add(prefix).data["v"] = value), then search_best() for
               each address of each family, from text. (search_best(packed=)
               fails on Debian's build for Python 3.11: "SystemError:
               PY_SSIZE_T_CLEAN macro must be defined for '#' formats".)
       Ferry   `area_bench run`: area_builder_add for every prefix and
               area_builder_finish, then 10,000,000 lookups a family with
               scope and matched length, from binary addresses, then the
               1,000,000 addresses from text (inet_pton + lookup).
     Each reports build time, RSS before and after the build, lookups/s,
     and its answers for the first 100,000 addresses of each family.
     Ferry's run also times a random memory load (a pointer chase over as
     many bytes as the table holds): the lookups are a few dependent cache
     misses each, and this VM's memory latency drifts by 2-3x with the
     load of its neighbours, so it is the yardstick to read them against.
  4. The answers are compared (mismatches must be 0), and the medians (with
     min and max) and ratios are printed and written to
     $BENCH_RESULTS/area-<date>.md (default $ROOT/bench/results).

Each run records the other load on the machine and the hypervisor steal
from /proc/stat (in % of one core, over the run); a run is retried once
when either exceeds 25% of a core. About 2 minutes with 3 rounds.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(ROOT, "build"))
RESULTS = os.environ.get("BENCH_RESULTS", os.path.join(ROOT, "bench", "results"))
ROUNDS = int(os.environ.get("BENCH_AREA_ROUNDS", "3"))
NPREFIXES = int(os.environ.get("BENCH_AREA_PREFIXES", "1000000"))
LOOKUPS = int(os.environ.get("BENCH_AREA_LOOKUPS", "10000000"))
NSAMPLE = 100000
CPU = "1"
HZ = os.sysconf("SC_CLK_TCK")


def rss_kib(field="VmRSS"):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def radix_worker(d):
    """The anchor, run in its own process: python3-radix on the same files."""
    import radix

    with open(os.path.join(d, "prefixes.txt")) as f:
        items = [(p, int(v)) for p, v in (line.split() for line in f)]
    addrs = {}
    for fam in (4, 6):
        with open(os.path.join(d, "addrs%d.txt" % fam)) as f:
            addrs[fam] = f.read().split()
    out = {}
    out["rss_before_kib"] = rss_kib()
    c0 = time.process_time()
    t0 = time.perf_counter()
    rtree = radix.Radix()
    for p, v in items:
        rtree.add(p).data["v"] = v
    out["build_s"] = time.perf_counter() - t0
    out["build_cpu_s"] = time.process_time() - c0
    out["rss_after_kib"] = rss_kib()
    out["vmhwm_kib"] = rss_kib("VmHWM")
    out["prefixes"] = len(rtree.prefixes())
    search = rtree.search_best
    with open(os.path.join(d, "radix_answers.txt"), "w") as ans:
        for fam in (4, 6):
            a = addrs[fam]
            t0 = time.perf_counter()
            c0 = time.process_time()
            for x in a:
                search(x)
            wall = time.perf_counter() - t0
            out["v%d_lookups" % fam] = len(a)
            out["v%d_lookups_per_s" % fam] = len(a) / wall
            out["v%d_cpu_ns_per_lookup" % fam] = (time.process_time() - c0) * 1e9 / len(a)
            # The interpreter's share: the same loop around a C call that
            # does almost nothing.
            t0 = time.perf_counter()
            for x in a:
                len(x)
            out["v%d_loop_ns" % fam] = (time.perf_counter() - t0) * 1e9 / len(a)
            for x in a[:NSAMPLE]:
                n = search(x)
                ans.write("%s %s\n" % (x, n.data["v"] if n is not None else "-"))
    for k, v in out.items():
        print("%s=%s" % (k, v))


def proc_stat():
    with open("/proc/stat") as f:
        cpu = f.readline().split()[1:]
    v = [int(x) for x in cpu]
    # user nice system idle iowait irq softirq steal (guest is in user)
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, v[7]


def measured(cmd):
    """Runs cmd, returns its key=value output and the machine's other load."""
    for attempt in (1, 2):
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy0, steal0 = proc_stat()
        t0 = time.monotonic()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        wall = time.monotonic() - t0
        busy1, steal1 = proc_stat()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            sys.exit("area: %s failed:\n%s%s" % (" ".join(cmd), r.stdout, r.stderr))
        own = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        other = max(0.0, (busy1 - busy0) / HZ - own) / wall * 100
        steal = (steal1 - steal0) / HZ / wall * 100
        out = {}
        for tok in r.stdout.split():
            k, _, v = tok.partition("=")
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
        out["other_load_pct"] = other
        out["steal_pct"] = steal
        out["wall_s"] = wall
        if (other <= 25 and steal <= 25) or attempt == 2:
            return out
        print("area: other load %.0f%%, steal %.0f%% of a core: running again" % (other, steal),
              file=sys.stderr)


def med(runs, key):
    xs = [r[key] for r in runs]
    return statistics.median(xs), min(xs), max(xs)


def fmt(runs, key, scale=1.0, digits=0, unit=""):
    m, lo, hi = (x * scale for x in med(runs, key))
    f = "{:,.%df}" % digits
    return "%s%s (%s–%s)" % (f.format(m), unit, f.format(lo), f.format(hi))


def compare(d):
    with open(os.path.join(d, "area_answers.txt")) as f:
        a = f.read().split("\n")
    with open(os.path.join(d, "radix_answers.txt")) as f:
        b = f.read().split("\n")
    n = sum(1 for x in a if x)
    mismatches = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
    return n, mismatches


def main():
    os.makedirs(BUILD, exist_ok=True)
    os.makedirs(RESULTS, exist_ok=True)
    exe = os.path.join(BUILD, "area_bench")
    cc = [os.environ.get("CC", "gcc"), "-std=gnu11", "-D_GNU_SOURCE", "-O2",
          "-I" + os.path.join(ROOT, "src"), os.path.join(ROOT, "bench", "area_bench.c"),
          os.path.join(ROOT, "src", "router", "area.c"), "-o", exe]
    subprocess.run(cc, check=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    with tempfile.TemporaryDirectory(prefix="area-bench-") as d:
        subprocess.run([exe, "gen", d, str(NPREFIXES)], check=True, timeout=300)
        ferry, anchor, checks = [], [], []
        for i in range(ROUNDS):
            anchor.append(measured(["taskset", "-c", CPU, sys.executable,
                                    os.path.abspath(__file__), "--radix", d]))
            ferry.append(measured(["taskset", "-c", CPU, exe, "run", d, str(LOOKUPS)]))
            checks.append(compare(d))
            print("area: round %d: Ferry build %.2f s, %.1f/%.1f M lookups/s; radix build "
                  "%.2f s, %.2f/%.2f M lookups/s; %d answers compared, %d mismatches"
                  % (i + 1, ferry[-1]["build_s"], ferry[-1]["v4_lookups_per_s"] / 1e6,
                     ferry[-1]["v6_lookups_per_s"] / 1e6, anchor[-1]["build_s"],
                     anchor[-1]["v4_lookups_per_s"] / 1e6,
                     anchor[-1]["v6_lookups_per_s"] / 1e6, checks[-1][0], checks[-1][1]),
                  file=sys.stderr)
    finished = time.strftime("%H:%M:%S %Z")
    for r in ferry + anchor:
        r["rss_delta_kib"] = r["rss_after_kib"] - r["rss_before_kib"]
    report = render(ferry, anchor, checks, started, finished)
    out = os.path.join(RESULTS, "area-%s.md" % time.strftime("%Y-%m-%d-%H%M%S"))
    with open(out, "w") as f:
        f.write(report)
    print(report)
    print("area: results in %s" % out, file=sys.stderr)
    return 1 if any(m for _, m in checks) else 0


def ratio(a, b):
    return a / b if b else float("inf")


def render(ferry, anchor, checks, started, finished):
    f, a = ferry, anchor
    m = lambda runs, k: med(runs, k)[0]
    lines = []
    w = lines.append
    w("# Area table: Ferry against python3-radix (%s to %s)" % (started, finished))
    w("")
    w("%d prefixes (%d IPv4, %d IPv6), %d rounds (anchor, then Ferry), both pinned to CPU %s. "
      "Medians (min–max)." % (m(f, "prefixes"), m(f, "v4"), m(f, "v6"), len(f), CPU))
    w("")
    w("| | Ferry area table | python3-radix | ratio |")
    w("|---|---|---|---|")
    w("| build (add all + finish), s | %s | %s | radix takes %.0f× as long |"
      % (fmt(f, "build_s", digits=2), fmt(a, "build_s", digits=2),
         ratio(m(a, "build_s"), m(f, "build_s"))))
    w("| of it: area_builder_add × 1M, s | %s | – | |" % fmt(f, "add_s", digits=2))
    w("| (not in the build: parsing the text with area_parse_prefix, s) | %s | – | |"
      % fmt(f, "parse_s", digits=2))
    w("| table memory (area_table_memory), MB | %s | – | |"
      % fmt(f, "table_memory_bytes", 1e-6, 1))
    w("| RSS before build, MB | %s | %s | |"
      % (fmt(f, "rss_before_kib", 1 / 1024, 1), fmt(a, "rss_before_kib", 1 / 1024, 1)))
    w("| RSS after build, MB | %s | %s | |"
      % (fmt(f, "rss_after_kib", 1 / 1024, 1), fmt(a, "rss_after_kib", 1 / 1024, 1)))
    w("| RSS growth by the build, MB | %s | %s | radix uses %.1f× the memory |"
      % (fmt(f, "rss_delta_kib", 1 / 1024, 1), fmt(a, "rss_delta_kib", 1 / 1024, 1),
         ratio(m(a, "rss_delta_kib"), m(f, "rss_delta_kib"))))
    w("| peak RSS (VmHWM), MB | %s | %s | |"
      % (fmt(f, "vmhwm_kib", 1 / 1024, 1), fmt(a, "vmhwm_kib", 1 / 1024, 1)))
    for fam in (4, 6):
        k = "v%d_lookups_per_s" % fam
        w("| IPv%d lookups/s, binary address (Ferry), M | %s | – | %.0f× radix's |"
          % (fam, fmt(f, k, 1e-6, 2), ratio(m(f, k), m(a, k))))
        w("| IPv%d CPU per lookup, binary, ns | %s | – | |"
          % (fam, fmt(f, "v%d_cpu_ns_per_lookup" % fam, digits=1)))
        kt = "v%d_text_lookups_per_s" % fam
        w("| IPv%d lookups/s from text, M | %s | %s | %.1f× radix's |"
          % (fam, fmt(f, kt, 1e-6, 2), fmt(a, k, 1e-6, 2), ratio(m(f, kt), m(a, k))))
        w("| IPv%d CPU per lookup from text (radix), ns; of it the Python loop | – | %s; %s | |"
          % (fam, fmt(a, "v%d_cpu_ns_per_lookup" % fam), fmt(a, "v%d_loop_ns" % fam)))
    w("| one random memory load (pointer chase over the table's size), ns | %s | – | |"
      % fmt(f, "mem_latency_ns", digits=1))
    w("| other load / steal during the runs, %% of a core | %s / %s | %s / %s | |"
      % (fmt(f, "other_load_pct"), fmt(f, "steal_pct"), fmt(a, "other_load_pct"),
         fmt(a, "steal_pct")))
    w("")
    w("Answers compared (first %d addresses of each family, every round): %s; mismatches: %s."
      % (NSAMPLE, ", ".join(str(n) for n, _ in checks), ", ".join(str(x) for _, x in checks)))
    w("")
    w("Per round (Ferry build s, table MB, RSS growth MB, IPv4/IPv6 M lookups/s | radix build s, "
      "RSS growth MB, IPv4/IPv6 M lookups/s):")
    w("")
    for i, (x, y) in enumerate(zip(f, a)):
        w("- round %d: %.3f, %.1f, %.1f, %.2f/%.2f | %.2f, %.1f, %.3f/%.3f"
          % (i + 1, x["build_s"], x["table_memory_bytes"] / 1e6, x["rss_delta_kib"] / 1024,
             x["v4_lookups_per_s"] / 1e6, x["v6_lookups_per_s"] / 1e6, y["build_s"],
             y["rss_delta_kib"] / 1024, y["v4_lookups_per_s"] / 1e6,
             y["v6_lookups_per_s"] / 1e6))
    w("")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--radix":
        radix_worker(sys.argv[2])
        sys.exit(0)
    sys.exit(main())
