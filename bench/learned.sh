#!/usr/bin/python3
"""learned -- how long a router's main loop stops answering while the router
rebuilds its learned routes (docs/router.md, "Learned routes"), at a full
table. One ferryd (rx) runs a peer speaker and a router; another (tx)
advertises BENCH_PEER_PREFIXES prefixes to it over one session, as in
bench/peer.sh, whose table generator, certificates, configs and process
helpers this script loads and uses (so the two stay the same).

(A Python 3 script, standard library only, despite the .sh name.)

A run, on 127.0.10.0/24 (bench/peer.sh's addresses), tx under `taskset -c 1`,
rx under `taskset -c 0`:
  1. tx starts and loads its table; rx starts with the neighbor tx and a
     router block (`learned_delay 200ms`, the default);
  2. "table": from rx's start until its router has the whole table as learned
     areas (GET /api/v1/router: learned.areas = N): the session, the RIB, the
     feed and the first build of the learned layer;
  3. "rebuild": one more prefix is added to tx's area file and tx reloaded;
     rx learns it, publishes a new feed, and its router rebuilds the whole
     learned layer (N + 1 areas); until the API shows it.
During both phases a thread asks rx's admin endpoint (GET /api/v1/status,
answered by the main loop) every BENCH_LEARNED_POLL_MS (10 ms) and records how
long each answer took: the longest answer is how long the main loop stood
still. Also recorded: the build time the router reports (learned.built_ms).

Environment:
  FERRY_BUILDS=build        comma-separated build directories to compare, each
                            run in turn (for instance build,/tmp/old/build)
  BENCH_ROUNDS=3            runs per build (alternating the builds)
  BENCH_PEER_PREFIXES=1000000
  BENCH_LEARNED_POLL_MS=10
  BENCH_LEARNED_PERF=0      1: profile rx's main thread during each rebuild
                            (perf record -e cpu-clock; its top symbols printed)

Output: a Markdown table on stdout (medians, min-max), and every run as a
JSON line in bench/results/learned-<date>.jsonl.
"""
import datetime
import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
_loader = importlib.machinery.SourceFileLoader("peerbench", os.path.join(HERE, "peer.sh"))
_spec = importlib.util.spec_from_loader("peerbench", _loader)
pb = importlib.util.module_from_spec(_spec)
_loader.exec_module(pb)

BUILDS = [os.path.abspath(b) for b in os.environ.get("FERRY_BUILDS", pb.BUILD).split(",") if b.strip()]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
POLL = float(os.environ.get("BENCH_LEARNED_POLL_MS", "10")) / 1000.0
PERF = os.environ.get("BENCH_LEARNED_PERF", "0") == "1"
N = pb.NPREFIXES
ROUTER = """router {
    cdn rx;
    listen %s:5300;
    node r1 { address 192.0.2.1; }
    area 0.0.0.0/0 r1;
    zone example.test {
        ns ns1.example.test;
        record ns1 A 192.0.2.53;
        service www;
    }
}
"""


class Poller(threading.Thread):
    """Asks rx's admin endpoint every POLL s; keeps (start, seconds) per answer."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.halt = threading.Event()

    def run(self):
        url = f"http://{pb.FERRY_RX}:{pb.ADMIN_PORT}/api/v1/status"
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                req = urllib.request.Request(url, headers={"Authorization": "Bearer " + pb.TOKEN})
                with urllib.request.urlopen(req, timeout=30) as r:
                    r.read()
                self.samples.append((t, time.monotonic() - t))
            except OSError:
                pass
            time.sleep(POLL)

    def window(self, t0, t1):
        v = [d for t, d in self.samples if t0 <= t <= t1]
        return {"polls": len(v), "max_ms": 1000 * max(v) if v else None,
                "p50_ms": 1000 * statistics.median(v) if v else None}


def learned(addr):
    return pb.api(addr, "/router")["learned"]


def one_run(build, d, files, pki, rnd):
    ferryd = os.path.join(build, "ferryd")
    w = {r: os.path.join(d, f"r{rnd}-{os.path.basename(os.path.dirname(build))}-{r}") for r in ("tx", "rx")}
    for x in w.values():
        os.makedirs(x)
    areas = os.path.join(w["tx"], "areas.txt")
    with open(files["areas"]) as src, open(areas, "w") as dst:
        dst.write(src.read())
    conf = pb.ferry_conf(w["tx"], "tx", pki, {"areas": areas})
    tx = pb.start([ferryd, "-c", conf], f"{w['tx']}/out.log", pb.TX_CPU)
    rx = None
    poller = Poller()
    try:
        pb.ferry_wait_api(tx, pb.FERRY_TX, pb.TIMEOUT)
        while pb.api(pb.FERRY_TX, "/peers")["destinations"] < N:
            time.sleep(0.05)
        rconf = pb.ferry_conf(w["rx"], "rx", pki, neighbor=True)
        with open(rconf, "a") as f:
            f.write(ROUTER % pb.FERRY_RX)
        t0 = time.monotonic()
        rx = pb.start([ferryd, "-c", rconf], f"{w['rx']}/out.log", pb.RX_CPU)
        pb.ferry_wait_api(rx, pb.FERRY_RX, 60)
        poller.start()
        deadline = time.monotonic() + pb.TIMEOUT
        while learned(pb.FERRY_RX)["areas"] < N:
            if time.monotonic() > deadline or rx.poll() is not None:
                raise pb.Fail("rx: the learned areas did not reach the table")
            time.sleep(0.05)
        t1 = time.monotonic()
        first = learned(pb.FERRY_RX)
        time.sleep(1.0)
        # one more prefix: a whole rebuild of the learned layer
        with open(areas, "a") as f:
            f.write("223.255.255.0/24\n")
        perf = None
        if PERF:
            pdata = os.path.join(w["rx"], "perf.data")
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g", "-o", pdata,
                                     "-p", str(rx.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        t2 = time.monotonic()
        os.kill(tx.pid, signal.SIGHUP)
        while learned(pb.FERRY_RX)["areas"] < N + 1:
            if time.monotonic() > t2 + pb.TIMEOUT or rx.poll() is not None:
                raise pb.Fail("rx: the rebuild did not come")
            time.sleep(0.02)
        t3 = time.monotonic()
        time.sleep(0.3)
        if perf:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
            rep = subprocess.run(["perf", "report", "-i", pdata, "--tid", str(rx.pid), "--no-children",
                                  "--sort", "sym", "--stdio", "-g", "none", "--percent-limit", "2"],
                                 capture_output=True, text=True).stdout
            pb.log("rx main thread during the rebuild:\n" + "\n".join(
                l for l in rep.splitlines() if l.strip() and not l.startswith("#"))[:3000])
        second = learned(pb.FERRY_RX)
        poller.halt.set()
        poller.join()
        return {"build": build, "round": rnd,
                "table_s": t1 - t0, "table": poller.window(t0, t1), "table_built_ms": first["built_ms"],
                "rebuild_s": t3 - t2, "rebuild": poller.window(t2, t3 + 0.3),
                "rebuild_built_ms": second["built_ms"], "rebuilds": second["rebuilds"]}
    finally:
        poller.halt.set()
        for p in (rx, tx):
            if p:
                pb.stop(p)


def med(v, fmt="{:.0f}"):
    v = [x for x in v if x is not None]
    if not v:
        return "-"
    return f"{fmt.format(statistics.median(v))} ({fmt.format(min(v))}–{fmt.format(max(v))})"


def main():
    os.makedirs(pb.RESULTS, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    out = open(os.path.join(pb.RESULTS, f"learned-{stamp}.jsonl"), "w")
    d = tempfile.mkdtemp(prefix="ferry-bench-learned-")
    pb.log(f"work dir {d}; {N:,} prefixes; builds {', '.join(BUILDS)}")
    files, _ = pb.write_data(d)
    pki = pb.make_pki(d)
    runs = []
    for rnd in range(1, ROUNDS + 1):
        for build in (BUILDS if rnd % 2 else list(reversed(BUILDS))):
            r = one_run(build, d, files, pki, rnd)
            out.write(json.dumps(r) + "\n")
            out.flush()
            pb.log(f"{build} r{rnd}: table {r['table_s']:.2f} s, longest answer {r['table']['max_ms']:.0f} ms; "
                   f"rebuild {r['rebuild_s']:.2f} s (built in {r['rebuild_built_ms']} ms), longest answer "
                   f"{r['rebuild']['max_ms']:.0f} ms over {r['rebuild']['polls']} polls")
            runs.append(r)
    print(f"\n{N:,} learned prefixes, {ROUNDS} runs per build; medians (min–max). "
          f"Poll every {POLL * 1000:.0f} ms of GET /api/v1/status (the main loop).\n")
    print("| build | table in, s | longest answer during it, ms | rebuild of N + 1, s | built in, ms "
          "| longest answer during the rebuild, ms | median answer, ms |")
    print("|---|---|---|---|---|---|---|")
    for b in BUILDS:
        rs = [r for r in runs if r["build"] == b]
        print(f"| {b} | {med([r['table_s'] for r in rs], '{:.2f}')} | {med([r['table']['max_ms'] for r in rs])} "
              f"| {med([r['rebuild_s'] for r in rs], '{:.2f}')} | {med([r['rebuild_built_ms'] for r in rs])} "
              f"| {med([r['rebuild']['max_ms'] for r in rs])} | {med([r['rebuild']['p50_ms'] for r in rs], '{:.1f}')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
