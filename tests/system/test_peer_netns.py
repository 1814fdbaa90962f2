"""Three CDNs in a triangle, each in its own network namespace, linked
pairwise by veth pairs: alpha (a router and a speaker in one ferryd), beta
and gamma (speakers), every speaker re-advertising (transit on). The test
process sits in a fourth namespace with a management link to each, for the
admin APIs and DNS queries.

Cutting the alpha-gamma link with nft drop rules inside alpha's namespace
ends that session by hold timer; gamma's area is then reached through beta,
and alpha's DNS answers for gamma's clients change from gamma's hand-off to
beta's. Restoring the link brings the direct route and the answer back. A
gamma with a certificate from another CA is refused. Flapping a link for a
minute leaves every RIB as it was after a fresh start."""
import json
import time
import itertools
import os
import subprocess

import dns.rdatatype
import pytest

from conftest import FERRYD, SLOW, Ferryd, Proc, port_open, wait_for
from test_peer import established, nbr, peer_pki, routes, speaker_conf  # noqa: F401 (peer_pki: a fixture)

_seq = itertools.count()
# The host's network namespace, opened at import (before any test moves into
# its own): veth pairs are made there.
HOST_NS = os.open("/proc/self/ns/net", os.O_RDONLY)


def sh(*args, fds=()):
    r = subprocess.run(list(args), capture_output=True, text=True, pass_fds=fds)
    assert r.returncode == 0, (args, r.stderr)


def veth(ns1, name1, ns2, name2, tag):
    """A veth pair with one end in each namespace. This kernel creates veth
    devices only in the host's namespace, so the pair is made there (through
    namespace we started in) under temporary names, then moved and renamed."""
    t1, t2 = f"v{tag}a", f"v{tag}b"
    host = ["nsenter", f"--net=/proc/self/fd/{HOST_NS}"]
    sh(*host, "ip", "link", "add", t1, "type", "veth", "peer", "name", t2, fds=(HOST_NS,))
    sh(*host, "ip", "link", "set", t1, "netns", ns1, fds=(HOST_NS,))
    sh(*host, "ip", "link", "set", t2, "netns", ns2, fds=(HOST_NS,))
    sh("ip", "-n", ns1, "link", "set", "dev", t1, "name", name1)
    sh("ip", "-n", ns2, "link", "set", "dev", t2, "name", name2)


class NsFerryd(Ferryd):
    """A ferryd started inside a network namespace."""

    def __init__(self, ns, *a, **kw):
        super().__init__(*a, **kw)
        self.ns = ns

    def start(self, wait_ports=()):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        self.proc = Proc(["ip", "netns", "exec", self.ns, FERRYD, "-c", self.conf],
                         os.path.join(self.dir, "ferryd.log"), env=env)
        for addr, port in wait_ports:
            wait_for(lambda: port_open(addr, port) or not self.proc.alive(), 10, f"{self.name} on {addr}:{port}")
            assert self.proc.alive(), "ferryd exited:\n" + self.proc.output()
        return self


@pytest.fixture
def triangle(netns):
    """Namespaces a, b, c: management links 10.9.N.1 (here) - 10.9.N.2 (there),
    and the triangle: a-b 10.0.12.1/.2, a-c 10.0.13.1/.2, b-c 10.0.23.1/.2."""
    tag = f"{os.getpid() % 100000}{next(_seq)}"
    names = {x: f"fp-{x}-{tag}" for x in "abc"}
    made = []
    links = itertools.count()
    try:
        for i, x in enumerate("abc", 1):
            sh("ip", "netns", "add", names[x])
            made.append(names[x])
            sh("ip", "-n", names[x], "link", "set", "lo", "up")
            veth(netns, f"m{x}", names[x], "mgmt", f"{tag}{next(links)}")
            # `ip -n` for our own namespace too: it mounts that namespace's /sys
            sh("ip", "-n", netns, "addr", "add", f"10.9.{i}.1/24", "dev", f"m{x}")
            sh("ip", "-n", netns, "link", "set", "dev", f"m{x}", "up")
            sh("ip", "-n", names[x], "addr", "add", f"10.9.{i}.2/24", "dev", "mgmt")
            sh("ip", "-n", names[x], "link", "set", "dev", "mgmt", "up")
        for (x, y), net in ((("a", "b"), 12), (("a", "c"), 13), (("b", "c"), 23)):
            veth(names[x], x + y, names[y], y + x, f"{tag}{next(links)}")
            sh("ip", "-n", names[x], "addr", "add", f"10.0.{net}.1/24", "dev", x + y)
            sh("ip", "-n", names[y], "addr", "add", f"10.0.{net}.2/24", "dev", y + x)
            sh("ip", "-n", names[x], "link", "set", "dev", x + y, "up")
            sh("ip", "-n", names[y], "link", "set", "dev", y + x, "up")
        yield names
    finally:
        for n in made:
            subprocess.run(["ip", "netns", "del", n], check=False)


ALPHA_ROUTER = """router {
    cdn alpha;
    listen 10.9.1.2:5300;
    learned_delay 0;
    node a1 { address 192.0.2.1; }
    area 0.0.0.0/0 a1;
    zone example.test {
        ns ns1.example.test;
        record ns1 A 192.0.2.53;
        service www;
    }
}
"""


PLAN = {  # cdn: (namespace, management address, area, neighbors)
    "alpha": ("a", "10.9.1.2", "10.1.0.0/16", [("beta", "10.0.12.2"), ("gamma", "10.0.13.2")]),
    "beta": ("b", "10.9.2.2", "10.2.0.0/16", [("alpha", "10.0.12.1"), ("gamma", "10.0.23.2")]),
    "gamma": ("c", "10.9.3.2", "10.3.0.0/16", [("alpha", "10.0.13.1"), ("beta", "10.0.23.1")]),
}


def start_cdn(triangle, tmp_path, procs, pki, cdn, router=False, cert=None, name=None, units=False):
    """One CDN of the triangle; units: it also advertises a publisher (which would limit its
    areas, at alpha's router, to that publisher's names)."""
    ns, mgmt, area, nbrs = PLAN[cdn]
    unit = f"    publisher www.{cdn}.test;\n" if units else ""
    conf = speaker_conf(pki, cdn, "0.0.0.0", [(n, a, "transit on") for n, a in nbrs],
                        f"    area {area};\n{unit}    handoff cname cdn.{cdn}.test;", cert=cert, hold="3s")
    if router:
        conf += ALPHA_ROUTER
    f = NsFerryd(triangle[ns], str(tmp_path), name or cdn, conf, admin_addr=f"{mgmt}:9000")
    procs.append(f)
    f.start([(mgmt, 9000)] + ([(mgmt, 5300)] if router else []))
    return f


def start_triangle(triangle, tmp_path, procs, pki, units=False):
    spk = {cdn: start_cdn(triangle, tmp_path, procs, pki, cdn, router=cdn == "alpha", units=units) for cdn in PLAN}
    for x, y in (("alpha", "beta"), ("alpha", "gamma"), ("beta", "gamma")):
        wait_for(lambda: established(spk[x], y) and established(spk[y], x), 15 * SLOW, f"{x}-{y}")
    return spk


def nft_in(ns, *rules):
    for r in rules:
        sh("ip", "netns", "exec", ns, "nft", r)


def test_triangle_in_namespaces_link_cut_and_restore(triangle, tmp_path, procs, peer_pki):
    from test_router import addrs, query
    spk = start_triangle(triangle, tmp_path, procs, peer_pki)

    def gamma_paths():
        r = routes(spk["alpha"], "10.3.0.0/16")
        return [c["path"] for c in r[0]["routes"]] if r else []
    wait_for(lambda: gamma_paths() == [["gamma"], ["beta", "gamma"]], 10 * SLOW, "gamma's area by two paths")
    for cdn, f in spk.items():
        for d in routes(f):
            assert all(cdn not in c["path"] for c in d["routes"]), (cdn, d)

    def answer():
        r = query("10.9.1.2", "www.example.test", "A", ecs=("10.3.0.9", 32))
        cname = [str(rr.target) for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME for rr in rrset]
        return cname[0] if cname else ",".join(addrs(r))
    wait_for(lambda: answer().endswith(".cdn.gamma.test."), 10 * SLOW, "gamma's clients handed to gamma")

    # cut alpha-gamma inside alpha's namespace: packets on that link are dropped both ways
    ns_a = triangle["a"]
    sh("ip", "netns", "exec", ns_a, "nft", "add", "table", "inet", "cut")
    sh("ip", "netns", "exec", ns_a, "nft", "add chain inet cut in { type filter hook input priority 0 ; }")
    sh("ip", "netns", "exec", ns_a, "nft", "add chain inet cut out { type filter hook output priority 0 ; }")
    sh("ip", "netns", "exec", ns_a, "nft", "add rule inet cut in iifname ac drop")
    sh("ip", "netns", "exec", ns_a, "nft", "add rule inet cut out oifname ac drop")
    wait_for(lambda: answer().endswith(".cdn.beta.test."), 20 * SLOW, "gamma's clients handed to beta")
    assert gamma_paths() == [["beta", "gamma"]]
    assert "hold timer" in nbr(spk["alpha"], "gamma")["last_error"], nbr(spk["alpha"], "gamma")
    assert established(spk["alpha"], "beta") and established(spk["beta"], "gamma")

    sh("ip", "netns", "exec", ns_a, "nft", "delete", "table", "inet", "cut")
    wait_for(lambda: answer().endswith(".cdn.gamma.test."), 30 * SLOW, "gamma's clients back with gamma")
    assert gamma_paths() == [["gamma"], ["beta", "gamma"]]
    assert nbr(spk["alpha"], "gamma")["established"] >= 2

    # gamma comes back with a certificate from another CA: alpha and beta refuse it, and
    # gamma's area is gone from alpha's RIB and from its DNS answers
    gamma = spk["gamma"]
    gamma.stop()
    procs.remove(gamma)
    start_cdn(triangle, tmp_path, procs, peer_pki, "gamma", cert="rogue-beta", name="gamma-rogue")
    wait_for(lambda: "matches no configured peer" in spk["alpha"].proc.output(), 15 * SLOW, "the rogue refused")
    assert not established(spk["alpha"], "gamma") and not established(spk["beta"], "gamma")
    wait_for(lambda: routes(spk["alpha"], "10.3.0.0/16") == [], 10 * SLOW, "gamma's area withdrawn")
    assert answer() == "192.0.2.1"


def test_flapping_link_leaves_the_ribs_as_a_fresh_start(triangle, tmp_path, procs, peer_pki):
    """The alpha-beta link is cut and restored (nft in alpha's namespace) for a
    minute, with cuts longer and shorter than the 3 s hold time. Afterwards
    every speaker's RIB is what it was after the first convergence from a
    fresh start: every destination, every candidate route, in the same order."""
    spk = start_triangle(triangle, tmp_path, procs, peer_pki, units=True)

    def snapshot():
        return {cdn: json.dumps(routes(f), sort_keys=True) for cdn, f in spk.items()}

    def settled():
        s1 = snapshot()
        time.sleep(0.5)
        return s1 if s1 == snapshot() else None
    # 3 own areas and 3 own publishers; each of the others' by two paths everywhere
    wait_for(lambda: all(len(routes(f)) == 6 for f in spk.values()) and
             all(sum(len(d["routes"]) for d in routes(f)) == 10 for f in spk.values()), 15 * SLOW, "converged")
    fresh = wait_for(settled, 10 * SLOW, "a stable state")

    ns_a = triangle["a"]
    end = time.monotonic() + 60
    i = 0
    while time.monotonic() < end:
        nft_in(ns_a, "add table inet flap", "add chain inet flap io { type filter hook input priority 0 ; }",
               "add chain inet flap oo { type filter hook output priority 0 ; }",
               "add rule inet flap io iifname ab drop", "add rule inet flap oo oifname ab drop")
        time.sleep((0.5, 4.0, 1.5, 5.0)[i % 4])
        nft_in(ns_a, "delete table inet flap")
        time.sleep((1.0, 3.0, 0.3, 4.0)[i % 4])
        i += 1
    assert all(f.proc.alive() for f in spk.values())
    # the long cuts outlived the hold time: the session really went down and came back
    assert nbr(spk["alpha"], "beta")["established"] >= 3
    wait_for(lambda: snapshot() == fresh, 30 * SLOW, "every RIB back to the fresh start")
    time.sleep(3.5)  # past one more hold time: nothing left to change
    assert snapshot() == fresh
    assert spk["alpha"].metric("ferry_peer_sessions_established") == 2
