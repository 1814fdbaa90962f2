"""The router with others: node health and load polled from status servers
the tests run (with the admin API and metrics), unbound as a recursive
resolver in front of it (curl then fetching from the ferryd cache it
named), and hand-offs between two Ferry CDNs, alpha and beta, each a
ferryd router with its own zones and nodes: by CNAME, by ECS query to the
peer's router, by NS referral and by HTTP redirect; misconfigured pairs
that point at each other (the loop guard ends the chain), a peer router
that is down, and IPv6. Helpers come from test_router.py."""
import os
import signal
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

from conftest import SLOW, Ferryd, Proc, curl, fresh_addr, port_open, wait_for
from test_router import PORT, WWW, ZONE, addrs, api, dig, ecs_of, query, redirect, scope_of, start_router

BETA_ZONE = "cdn.beta.test"
FERRY_PATH_OPT = 65350


# ---- node status servers ----------------------------------------------------

class StatusServer:
    """A node's admin endpoint as the router polls it: /readyz (200 or 503) and
    /metrics with the switch's connection gauge, in two samples and beside a
    metric whose name only starts the same."""

    def __init__(self, ready=True, load=0):
        self.addr, self.port = fresh_addr(), 9100
        self.ready, self.load = ready, load
        self.polls = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/readyz":
                    outer.polls += 1
                    code, body = (200, b"ready\n") if outer.ready else (503, b"draining\n")
                elif self.path == "/metrics":
                    a = outer.load // 2
                    body = ("# TYPE ferry_switch_active_connections gauge\n"
                            f"ferry_switch_active_connections{{listener=\"tls\"}} {a}\n"
                            f"ferry_switch_active_connections{{listener=\"http\"}} {outer.load - a}\n"
                            "ferry_switch_active_connections_peak 99999\n").encode()
                    code = 200
                else:
                    code, body = 404, b""
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer((self.addr, self.port), Handler)
        self.srv.daemon_threads = True
        self.t = threading.Thread(target=self.srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.t.start()

    @property
    def hostport(self):
        return f"{self.addr}:{self.port}"

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.t.join()


class Closer:
    """Closes a socket at teardown (for the procs fixture)."""

    def __init__(self, sock):
        self.sock = sock

    def stop(self):
        self.sock.close()


# ---- 3. decisions and health --------------------------------------------------

def test_health_load_sets_api_and_metrics(tmp_path, procs):
    s1, s2 = StatusServer(load=30), StatusServer(load=50)
    procs.extend([s1, s2])
    # a3's status endpoint accepts connections and never answers; nothing
    # listens on a4's.
    silent = socket.socket()
    silent.bind((fresh_addr(), 9100))
    silent.listen(16)
    procs.append(Closer(silent))
    body = f"""
    poll_interval 500ms;
    poll_timeout 400ms;
    node a1 {{ address 192.0.2.1; status {s1.hostport}; capacity 100; }}
    node a2 {{ address 192.0.2.2; status {s2.hostport}; capacity 200; }}
    node v1 {{ address 192.0.2.10; sets video hd; }}
    node a3 {{ address 192.0.2.3; status {silent.getsockname()[0]}:9100; }}
    node a4 {{ address 192.0.2.4; status {fresh_addr()}:9100; }}
    area 10.0.0.0/8 a1 a2;
    area 30.0.0.0/8 v1;
    zone {ZONE} {{
        ns ns1.{ZONE};
        service www;
        service video set video ttl 5s;
    }}
"""
    r = start_router(tmp_path, procs, "router", body)
    addr = r.addr
    subnets = ["10.1.0.0", "10.77.3.0", "10.200.9.0", "10.33.33.0"]

    def answered(name=WWW):
        got = {tuple(addrs(query(addr, name, ecs=(s, 24)))) for s in subnets}
        return got.pop() if len(got) == 1 else got

    def node(name):
        return [n for n in api(r)["nodes"] if n["name"] == name][0]

    wait_for(lambda: node("a1")["load"] == 30 and node("a2")["load"] == 50 and node("a1")["up"] and node("a2")["up"],
             5, "the first polls")
    # a2 carries more connections but has twice the capacity: 50/200 < 30/100.
    assert answered() == ("192.0.2.2",)
    s2.load = 70  # 70/200 > 30/100
    wait_for(lambda: answered() == ("192.0.2.1",), 3, "a1 to win on load")
    # a1 stops being ready: within a poll interval the router answers a2.
    s1.ready = False
    wait_for(lambda: answered() == ("192.0.2.2",), 1.5, "a2 after a1's /readyz went 503")
    n1 = node("a1")
    assert n1["up"] is False and n1["last_error"] == "/readyz is not 200", n1
    own_before = r.metric("ferry_router_decisions_total", 'reason="own"')
    for s in subnets:
        assert addrs(query(addr, WWW, ecs=(s, 24))) == ["192.0.2.2"]
    assert r.metric("ferry_router_decisions_total", 'reason="own"') == own_before + len(subnets)
    # Back: a1 is answered again.
    s1.ready = True
    wait_for(lambda: answered() == ("192.0.2.1",), 1.5, "a1 back")
    # Both down: the fallback is the best node that is up anywhere, v1.
    s1.ready = s2.ready = False
    wait_for(lambda: not node("a1")["up"] and not node("a2")["up"], 3, "both down")
    fb = r.metric("ferry_router_decisions_total", 'reason="fallback"')
    assert answered() == ("192.0.2.10",)
    assert r.metric("ferry_router_decisions_total", 'reason="fallback"') == fb + len(subnets)
    s1.ready = s2.ready = True
    wait_for(lambda: node("a1")["up"] and node("a2")["up"], 3, "both up")

    # A node set: video is answered only by nodes in set video, from any area.
    resp = query(addr, f"video.{ZONE}", ecs=("10.1.0.0", 24))
    assert addrs(resp) == ["192.0.2.10"] and resp.answer[0].ttl == 5
    assert addrs(query(addr, f"video.{ZONE}", ecs=("30.1.0.0", 24))) == ["192.0.2.10"]
    assert addrs(query(addr, WWW, ecs=("30.1.0.0", 24))) == ["192.0.2.10"]
    assert answered() == ("192.0.2.1",)  # www from 10/8 stays with a1/a2

    # The admin API.
    a = api(r)
    assert a["cdn"] == "alpha" and a["zones"] == [ZONE]
    assert {"address": f"{addr}:{PORT}", "kind": "dns"} in a["listeners"]
    nodes = {n["name"]: n for n in a["nodes"]}
    assert set(nodes) == {"a1", "a2", "v1", "a3", "a4"}
    assert nodes["a3"]["up"] is False and nodes["a3"]["last_error"] == "timed out", nodes["a3"]
    assert nodes["a4"]["up"] is False and nodes["a4"]["last_error"] == "connect failed", nodes["a4"]
    assert nodes["a1"]["status"] == s1.hostport and nodes["a1"]["capacity"] == 100
    assert nodes["a2"]["capacity"] == 200 and nodes["a2"]["addresses"] == ["192.0.2.2"]
    assert nodes["v1"]["up"] is True and nodes["v1"]["load"] == 0 and "status" not in nodes["v1"]
    assert nodes["a1"]["last_poll_ms"] > 0 and "last_error" not in nodes["a1"]
    assert a["areas"]["prefixes"] == 2 and a["areas"]["ipv4"] == 2 and a["areas"]["ipv6"] == 0
    assert a["peers"] == [] and a["decisions"]["own"] >= 1 and a["loops_prevented"] == 0
    lk = api(r, "/api/v1/router/lookup?addr=10.1.2.3&name=www.example.test")
    assert lk == {"addr": "10.1.2.3", "reason": "own", "scope": 8, "loop": False, "node": "a1"}, lk
    lk = api(r, "/api/v1/router/lookup?addr=10.1.2.3&name=video.example.test")
    assert lk["node"] == "v1" and lk["reason"] == "fallback", lk
    lk = api(r, "/api/v1/router/lookup?addr=30.0.0.1")
    assert lk["node"] == "v1" and lk["reason"] == "own" and lk["scope"] == 8, lk
    assert r.admin_get("/api/v1/router/lookup?addr=bogus")[0] == 400
    assert r.admin_get("/api/v1/router/lookup?addr=10.1.2.3&name=nope.example.test")[0] == 404
    assert r.admin_get("/api/v1/router", token=False)[0] == 401

    # Metrics: exact deltas for a known batch.
    q0 = r.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"')
    own0 = r.metric("ferry_router_decisions_total", 'reason="own"')
    a10 = r.metric("ferry_router_answers_total", 'node="a1"')
    v10 = r.metric("ferry_router_answers_total", 'node="v1"')
    nx0 = r.metric("ferry_router_queries_total", 'type="AAAA",rcode="NXDOMAIN"')
    for s in subnets:
        query(addr, WWW, ecs=(s, 24))
    query(addr, f"video.{ZONE}", ecs=("30.1.0.0", 24))
    query(addr, f"nope.{ZONE}", "AAAA")
    assert r.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"') == q0 + 5
    assert r.metric("ferry_router_decisions_total", 'reason="own"') == own0 + 5
    assert r.metric("ferry_router_answers_total", 'node="a1"') == a10 + 4
    assert r.metric("ferry_router_answers_total", 'node="v1"') == v10 + 1
    assert r.metric("ferry_router_queries_total", 'type="AAAA",rcode="NXDOMAIN"') == nx0 + 1
    assert s1.polls >= 4 and s2.polls >= 4


# ---- 5. a real recursive resolver, and curl to the chosen node ----------------

class Unbound:
    """unbound in the foreground, with stub zones pointing at routers."""

    def __init__(self, tmp, stubs, ecs_to):
        self.addr, self.port = fresh_addr(), 5353
        self.dir = os.path.join(tmp, "unbound-" + self.addr)
        os.makedirs(self.dir, exist_ok=True)
        # ECS to the routers (the subnetcache module); `test.` is one of
        # unbound's default local zones, which would answer NXDOMAIN itself.
        ecs_conf = "".join(f"    send-client-subnet: {a}\n" for a in ecs_to) + (
            "    client-subnet-always-forward: yes\n"
            "    max-client-subnet-ipv4: 24\n")
        stub_conf = "".join(f'stub-zone:\n    name: "{z}"\n    stub-addr: {a}@{p}\n' for z, a, p in stubs)
        conf = f"""server:
    interface: {self.addr}@{self.port}
    port: {self.port}
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: "{self.dir}/pid"
    use-syslog: no
    logfile: ""
    verbosity: 1
    do-ip6: no
    module-config: "subnetcache iterator"
    qname-minimisation: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    local-zone: "test." nodefault
{ecs_conf}{stub_conf}"""
        self.conf = os.path.join(self.dir, "unbound.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = Proc(["/usr/sbin/unbound", "-d", "-c", self.conf], os.path.join(self.dir, "log"))
        wait_for(lambda: port_open(self.addr, self.port) or not self.proc.alive(), 10, "unbound")
        assert self.proc.alive(), self.proc.output()

    def stop(self):
        self.proc.stop()


def test_unbound_and_curl_reach_the_decided_cache(tmp_path, procs):
    """unbound (with ECS) resolves through the router; curl then fetches from
    the node it named: a real ferryd cache in front of a ferryd origin."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "hello.txt").write_text("hello through the router\n")
    oaddr = fresh_addr()
    origin = Ferryd(str(tmp_path), "origin", f"origin {{\n    listen {oaddr}:8080;\n    root {root};\n}}\n")
    procs.append(origin)
    origin.start([(oaddr, 8080)])
    caches = {}
    for name in ("n1", "n2"):
        a = fresh_addr()
        c = Ferryd(str(tmp_path), name, f"cache {{\n    name {name};\n    listen {a}:8080;\n"
                                        f"    publisher {WWW} {{ origin http://{oaddr}:8080; }}\n}}\n")
        procs.append(c)
        c.start([(a, 8080)])
        caches[name] = a
    body = f"""
    node n1 {{ address {caches["n1"]}; }}
    node n2 {{ address {caches["n2"]}; }}
    area 10.0.0.0/8 n1;
    area 10.2.0.0/16 n2;
    area 127.0.0.0/8 n1;
    zone {ZONE} {{
        ns ns1.{ZONE};
        service www;
    }}
"""
    r = start_router(tmp_path, procs, "router", body)
    ub = Unbound(str(tmp_path), [(ZONE, r.addr, PORT)], ecs_to=[r.addr])
    procs.append(ub)

    def resolve(subnet=None):
        args = [WWW, "A"] + ([f"+subnet={subnet}"] if subnet else [])
        res = dig("dig", ub.addr, *args, port=ub.port)
        assert res.status == "NOERROR", res.text
        return res

    def fetch(ip):
        status, h, b = curl("--resolve", f"{WWW}:8080:{ip}", f"http://{WWW}:8080/hello.txt")
        assert status == 200 and b == b"hello through the router\n", (status, h, b)
        return h["via"][0].split()[1]

    def asked():
        return r.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"')

    res = resolve("10.2.0.0/24")
    assert res.data("ANSWER", "A") == [caches["n2"]], res.text
    assert "rd" in res.flags and "ra" in res.flags and "aa" not in res.flags
    assert res.ecs == ("10.2.0.0", 24, 16), res.text  # unbound passes the router's scope on
    assert asked() == 1
    assert fetch(caches["n2"]) == "n2"
    # Another subnet is not served from the ECS cache entry of the first...
    res = resolve("10.1.0.0/24")
    assert res.data("ANSWER", "A") == [caches["n1"]] and res.ecs[2] == 15, res.text
    assert asked() == 2
    assert fetch(caches["n1"]) == "n1"
    # ...but one inside its scope (10.2/16) is, without asking the router.
    res = resolve("10.2.9.0/24")
    assert res.data("ANSWER", "A") == [caches["n2"]], res.text
    assert asked() == 2
    # Without ECS from the client, unbound sends dig's own address (127/8).
    res = resolve()
    assert res.data("ANSWER", "A") == [caches["n1"]], res.text
    assert asked() == 3
    assert r.metric("ferry_router_answers_total", 'node="n2"') == 1
    assert r.metric("ferry_router_answers_total", 'node="n1"') == 2


# ---- hand-offs between two Ferry CDNs -----------------------------------------

def beta_body(addr, extra="", zones=""):
    """beta (its router on addr): 20/8 to b1 but 20.5/16 to b2, and the
    service www.cdn.beta.test."""
    return f"""
    ecs_timeout 2s;
    node b1 {{ address 192.0.2.101; address 2001:db8:b::1; }}
    node b2 {{ address 192.0.2.102; }}
    area 20.0.0.0/8 b1;
    area 20.5.0.0/16 b2;
{extra}
    zone {BETA_ZONE} {{
        ns ns1.{BETA_ZONE};
        record ns1 A {addr};
        service www;
    }}
{zones}
"""


def alpha_body(peer, extra=""):
    """alpha: 10/8 to its own a1, 20/8 to the peer CDN beta."""
    return f"""
    ecs_timeout 2s;
    node a1 {{ address 192.0.2.1; }}
    area 10.0.0.0/8 a1;
    area 20.0.0.0/8 beta;
    peer beta {{ {peer} }}
{extra}
    zone {ZONE} {{
        ns ns1.{ZONE};
        service www;
    }}
"""


def cname_of(resp):
    rrs = [(rrset.name.to_text(), rr.target.to_text()) for rrset in resp.answer
           if rrset.rdtype == dns.rdatatype.CNAME for rr in rrset]
    assert len(rrs) == 1, resp
    return rrs[0]


def test_cname_handoff(tmp_path, procs):
    b_addr = fresh_addr()
    beta = start_router(tmp_path, procs, "beta", beta_body(b_addr), addr=b_addr, cdn="beta")
    alpha = start_router(tmp_path, procs, "alpha", alpha_body(f"handoff cname; cname {BETA_ZONE};"))
    target = f"fp--alpha.www.{BETA_ZONE}."
    for tcp in (False, True):
        resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24), tcp=tcp)
        assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA
        assert cname_of(resp) == (f"{WWW}.", target) and addrs(resp) == []
        assert resp.answer[0].ttl == 20 and scope_of(resp) == 8
    resp = query(alpha.addr, WWW, "AAAA", ecs=("20.9.0.0", 16))
    assert cname_of(resp) == (f"{WWW}.", target)
    # alpha's own clients stay.
    assert addrs(query(alpha.addr, WWW, ecs=("10.1.0.0", 24))) == ["192.0.2.1"]
    # beta answers the hand-off name with its node for the client.
    resp = query(beta.addr, target, ecs=("20.1.2.0", 24))
    assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA
    assert addrs(resp) == ["192.0.2.101"] and resp.answer[0].name.to_text() == target
    assert scope_of(resp) == 14  # 20.0.0.0/14 lies below 20.5/16
    resp = query(beta.addr, target, "AAAA", ecs=("20.1.2.0", 24))
    assert addrs(resp) == ["2001:db8:b::1"]
    resp = query(beta.addr, target.upper(), ecs=("20.5.1.0", 24))
    assert addrs(resp) == ["192.0.2.102"] and scope_of(resp) == 16
    assert alpha.metric("ferry_router_handoffs_total", 'peer="beta"') == 3
    assert alpha.metric("ferry_router_decisions_total", 'reason="peer_cname"') == 3
    assert api(alpha)["peers"] == [{"cdn": "beta", "handoff": "cname", "handoffs": 3}]
    assert beta.metric("ferry_router_decisions_total", 'reason="own"') == 3
    assert beta.metric("ferry_router_loops_prevented_total") == 0
    # A real resolver follows the chain across both CDNs.
    ub = Unbound(str(tmp_path), [(ZONE, alpha.addr, PORT), (BETA_ZONE, beta.addr, PORT)],
                 ecs_to=[alpha.addr, beta.addr])
    procs.append(ub)
    res = dig("dig", ub.addr, WWW, "A", "+subnet=20.1.2.0/24", port=ub.port)
    assert res.status == "NOERROR", res.text
    assert [(n, t, d) for n, _, t, d in res.rrs("ANSWER")] == [(f"{WWW}.", "CNAME", target),
                                                               (target, "A", "192.0.2.101")], res.text
    res = dig("dig", ub.addr, WWW, "A", "+subnet=20.5.7.0/24", port=ub.port)
    assert res.data("ANSWER", "A") == ["192.0.2.102"], res.text
    res = dig("dig", ub.addr, WWW, "A", "+subnet=10.3.0.0/24", port=ub.port)
    assert [(t, d) for _, _, t, d in res.rrs("ANSWER")] == [("A", "192.0.2.1")], res.text


def test_ecs_handoff(tmp_path, procs):
    b_addr = fresh_addr()
    beta = start_router(tmp_path, procs, "beta", beta_body(b_addr, """
    area 127.0.0.0/8 b2;
    area 20.7.0.0/16 gamma;
    peer gamma { handoff cname; cname cdn.gamma.test; }"""), addr=b_addr, cdn="beta")
    alpha = start_router(tmp_path, procs, "alpha", alpha_body(
        f"handoff ecs; ecs_server {beta.addr}:{PORT}; ecs_zone {BETA_ZONE};", "    area 127.0.0.0/8 beta;"))
    for tcp in (False, True):
        resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24), tcp=tcp)
        assert alpha.metric("ferry_router_ecs_failures_total") == 0  # beta answered; no timeout
        assert resp.rcode() == dns.rcode.NOERROR and resp.flags & dns.flags.AA
        assert addrs(resp) == ["192.0.2.101"] and resp.answer[0].name.to_text() == f"{WWW}."
        assert not [r for r in resp.answer if r.rdtype == dns.rdatatype.CNAME]
        # alpha's decision holds for 20/8, beta's for 20.0.0.0/14: both hold for the /14.
        assert scope_of(resp) == 14 and resp.answer[0].ttl <= 20
    resp = query(alpha.addr, WWW, ecs=("20.5.1.0", 24))
    assert addrs(resp) == ["192.0.2.102"] and scope_of(resp) == 16
    resp = query(alpha.addr, WWW, "AAAA", ecs=("20.1.2.0", 24))
    assert addrs(resp) == ["2001:db8:b::1"]
    # A client without ECS: alpha sends its /24 to beta (127/8 is b2 there).
    resp = query(alpha.addr, WWW)
    assert addrs(resp) == ["192.0.2.102"] and ecs_of(resp) is None
    # Other types are not asked for: NODATA with alpha's SOA.
    resp = query(alpha.addr, WWW, "TXT", ecs=("20.1.2.0", 24))
    assert resp.rcode() == dns.rcode.NOERROR and not resp.answer
    assert resp.authority and resp.authority[0].rdtype == dns.rdatatype.SOA
    # beta hands 20.7/16 on to gamma by CNAME: alpha passes the CNAME on,
    # its label naming both CDNs the client went through.
    resp = query(alpha.addr, WWW, ecs=("20.7.1.0", 24))
    assert cname_of(resp) == (f"{WWW}.", "fp--alpha--beta.www.cdn.gamma.test.") and addrs(resp) == []
    assert scope_of(resp) == 16
    # Own clients are not handed off.
    assert addrs(query(alpha.addr, WWW, ecs=("10.1.0.0", 24))) == ["192.0.2.1"]
    assert alpha.metric("ferry_router_ecs_queries_total") == 6
    assert alpha.metric("ferry_router_ecs_failures_total") == 0
    assert alpha.metric("ferry_router_decisions_total", 'reason="peer_ecs"') == 7
    assert beta.metric("ferry_router_handoffs_total", 'peer="gamma"') == 1
    assert alpha.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"') == 6
    assert alpha.metric("ferry_router_queries_total", 'type="AAAA",rcode="NOERROR"') == 1
    assert beta.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"') == 5
    assert beta.metric("ferry_router_queries_total", 'type="AAAA",rcode="NOERROR"') == 1
    assert beta.metric("ferry_router_loops_prevented_total") == 0


def test_ns_handoff(tmp_path, procs):
    # beta also serves the publisher's names it is handed by referral.
    # A resolver follows a referral to port 53, so beta listens there too
    # when the test may bind it.
    b_addr = fresh_addr()
    root = os.geteuid() == 0
    beta = start_router(tmp_path, procs, "beta", beta_body(b_addr, f"    listen {b_addr}:53;" if root else "", zones=f"""
    zone {ZONE} {{
        ns ns1.{BETA_ZONE}.;
        service www;
    }}"""), addr=b_addr, cdn="beta")
    alpha = start_router(tmp_path, procs, "alpha", alpha_body(f"handoff ns; ns ns1.{BETA_ZONE} {beta.addr};"))
    resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24))
    assert resp.rcode() == dns.rcode.NOERROR and not resp.flags & dns.flags.AA and not resp.answer
    ns = [(r.name.to_text(), r.rdtype, [x.to_text() for x in r]) for r in resp.authority]
    assert ns == [(f"{WWW}.", dns.rdatatype.NS, [f"ns1.{BETA_ZONE}."])], resp
    glue = [(r.name.to_text(), [x.to_text() for x in r]) for r in resp.additional if r.rdtype == dns.rdatatype.A]
    assert glue == [(f"ns1.{BETA_ZONE}.", [beta.addr])], resp
    assert scope_of(resp) == 8
    assert alpha.metric("ferry_router_decisions_total", 'reason="peer_ns"') == 1
    # The referred name at beta.
    resp = query(beta.addr, WWW, ecs=("20.1.2.0", 24))
    assert addrs(resp) == ["192.0.2.101"] and resp.flags & dns.flags.AA
    # A request that carries a path cannot be referred (a referral cannot
    # carry it on): alpha serves it with its own node, a loop prevented.
    path = dns.edns.GenericOption(FERRY_PATH_OPT, b"\x05gamma")
    resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24), options=[path])
    assert addrs(resp) == ["192.0.2.1"] and resp.flags & dns.flags.AA
    assert alpha.metric("ferry_router_loops_prevented_total") == 1
    # A real resolver follows the referral.
    if not root:
        return
    ub = Unbound(str(tmp_path), [(ZONE, alpha.addr, PORT), (BETA_ZONE, beta.addr, PORT)],
                 ecs_to=[alpha.addr, beta.addr])
    procs.append(ub)
    res = dig("dig", ub.addr, WWW, "A", "+subnet=20.5.7.0/24", port=ub.port)
    assert res.status == "NOERROR" and res.data("ANSWER", "A") == ["192.0.2.102"], res.text


def loop_pair(tmp_path, procs, how):
    """alpha sends 20/8 to beta and beta sends 20/8 back to alpha."""
    a_addr, b_addr = fresh_addr(), fresh_addr()
    if how == "cname":
        a_peer, b_peer = f"handoff cname; cname {BETA_ZONE};", f"handoff cname; cname {ZONE};"
    else:
        a_peer = f"handoff ecs; ecs_server {b_addr}:{PORT}; ecs_zone {BETA_ZONE};"
        b_peer = f"handoff ecs; ecs_server {a_addr}:{PORT}; ecs_zone {ZONE};"
    beta = start_router(tmp_path, procs, "beta", f"""
    ecs_timeout 2s;
    node b1 {{ address 192.0.2.101; }}
    area 20.0.0.0/8 alpha;
    peer alpha {{ {b_peer} }}
    zone {BETA_ZONE} {{
        ns ns1.{BETA_ZONE};
        record ns1 A {b_addr};
        service www;
    }}
""", addr=b_addr, cdn="beta")
    alpha = start_router(tmp_path, procs, "alpha", alpha_body(a_peer), addr=a_addr)
    return alpha, beta


def test_cname_loop_ends(tmp_path, procs):
    alpha, beta = loop_pair(tmp_path, procs, "cname")
    resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24))
    target = f"fp--alpha.www.{BETA_ZONE}."
    assert cname_of(resp) == (f"{WWW}.", target)
    # beta would send the client back to alpha, which is on the path: it
    # answers its own node instead of a CNAME.
    resp = query(beta.addr, target, ecs=("20.1.2.0", 24))
    assert resp.rcode() == dns.rcode.NOERROR and addrs(resp) == ["192.0.2.101"]
    assert not [r for r in resp.answer if r.rdtype == dns.rdatatype.CNAME], resp
    assert beta.metric("ferry_router_loops_prevented_total") == 1
    assert beta.metric("ferry_router_decisions_total", 'reason="fallback"') == 1
    assert api(beta)["loops_prevented"] == 1
    # The other way round: beta's client is sent to alpha, which keeps it.
    resp = query(beta.addr, f"www.{BETA_ZONE}", ecs=("20.1.2.0", 24))
    assert cname_of(resp) == (f"www.{BETA_ZONE}.", f"fp--beta.{WWW}.")
    resp = query(alpha.addr, f"fp--beta.{WWW}", ecs=("20.1.2.0", 24))
    assert addrs(resp) == ["192.0.2.1"] and not [r for r in resp.answer if r.rdtype == dns.rdatatype.CNAME]
    assert alpha.metric("ferry_router_loops_prevented_total") == 1
    # A label naming both (as a third CDN would pass it on) is also stopped.
    resp = query(alpha.addr, f"fp--gamma--beta.{WWW}", ecs=("20.1.2.0", 24))
    assert addrs(resp) == ["192.0.2.1"]
    assert alpha.metric("ferry_router_loops_prevented_total") == 2
    # Through a real resolver the chain ends in an address.
    ub = Unbound(str(tmp_path), [(ZONE, alpha.addr, PORT), (BETA_ZONE, beta.addr, PORT)],
                 ecs_to=[alpha.addr, beta.addr])
    procs.append(ub)
    res = dig("dig", ub.addr, WWW, "A", "+subnet=20.1.2.0/24", port=ub.port)
    assert res.status == "NOERROR", res.text
    assert [(n, t, d) for n, _, t, d in res.rrs("ANSWER")] == [(f"{WWW}.", "CNAME", target),
                                                               (target, "A", "192.0.2.101")], res.text


def test_ecs_loop_ends(tmp_path, procs):
    alpha, beta = loop_pair(tmp_path, procs, "ecs")
    # alpha asks beta, which would ask alpha: alpha is on the path, so beta
    # answers its own node and alpha passes it on. No timeout, no recursion.
    resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24))
    assert resp.rcode() == dns.rcode.NOERROR and addrs(resp) == ["192.0.2.101"]
    assert beta.metric("ferry_router_loops_prevented_total") == 1
    assert alpha.metric("ferry_router_loops_prevented_total") == 0
    assert alpha.metric("ferry_router_ecs_queries_total") == 1
    assert beta.metric("ferry_router_ecs_queries_total") == 0
    assert alpha.metric("ferry_router_ecs_failures_total") == 0
    # And the other way round, over TCP.
    resp = query(beta.addr, f"www.{BETA_ZONE}", ecs=("20.1.2.0", 24), tcp=True)
    assert addrs(resp) == ["192.0.2.1"]
    assert beta.metric("ferry_router_ecs_failures_total") == 0
    assert alpha.metric("ferry_router_loops_prevented_total") == 1
    assert beta.metric("ferry_router_ecs_queries_total") == 1
    assert beta.metric("ferry_router_ecs_failures_total") == 0
    assert alpha.proc.alive() and beta.proc.alive()


def test_ecs_handoff_falls_back_when_the_peer_is_down(tmp_path, procs):
    b_addr = fresh_addr()
    alpha = start_router(tmp_path, procs, "alpha", alpha_body(
        f"handoff ecs; ecs_server {b_addr}:{PORT}; ecs_zone {BETA_ZONE};",
        "    ecs_max_pending 2;").replace("ecs_timeout 2s", "ecs_timeout 400ms"))
    beta = start_router(tmp_path, procs, "beta", beta_body(b_addr), addr=b_addr, cdn="beta")
    assert addrs(query(alpha.addr, WWW, ecs=("20.1.2.0", 24))) == ["192.0.2.101"]
    beta.stop()
    for tcp in (False, True):
        t0 = time.monotonic()
        resp = query(alpha.addr, WWW, ecs=("20.1.2.0", 24), tcp=tcp, timeout=5)
        dt = time.monotonic() - t0
        assert resp.rcode() == dns.rcode.NOERROR and addrs(resp) == ["192.0.2.1"]
        assert dt >= 0.35, dt  # it waited for the peer first (an upper bound would be a timing test)
    assert alpha.metric("ferry_router_ecs_failures_total", 'reason="timeout"') == 2
    assert alpha.metric("ferry_router_ecs_failures_total") == 2
    assert alpha.metric("ferry_router_ecs_queries_total") == 3
    assert alpha.metric("ferry_router_answers_total", 'node="a1"') == 2
    # Clients that close their TCP connection while their answer is owed.
    for i in range(5):
        s = socket.create_connection((alpha.addr, PORT), timeout=5 * SLOW)
        q = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.ECSOption(f"20.1.{i}.0", 24)]).to_wire()
        s.sendall(struct.pack("!H", len(q)) + q)
        s.close()
    wait_for(lambda: alpha.metric("ferry_router_ecs_failures_total") == 7, 5, "the owed answers given up")
    # More hand-offs in flight than ecs_max_pending (2): the others get the
    # fallback at once.
    results = {}
    failed_before = alpha.metric("ferry_router_ecs_failures_total")

    def ask(i):
        t0 = time.monotonic()
        resp = query(alpha.addr, WWW, ecs=(f"20.2.{i}.0", 24), timeout=5)
        results[i] = (time.monotonic() - t0, addrs(resp))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a == ["192.0.2.1"] for _, a in results.values()), results
    # Two at a time waited for beta (timeout); the others in flight with them were
    # answered at once (overflow).
    assert alpha.metric("ferry_router_ecs_failures_total") == failed_before + 6
    assert alpha.metric("ferry_router_ecs_failures_total", 'reason="overflow"') >= 1
    # A reload while hand-offs are owed settles them with the fallback.
    t = threading.Thread(target=ask, args=(99,))
    t.start()
    time.sleep(0.05)
    alpha.proc.send_signal(signal.SIGHUP)
    t.join()
    assert results[99][1] == ["192.0.2.1"]
    wait_for(lambda: "reload done" in alpha.proc.output(), 5, "the reload")
    assert alpha.proc.alive()
    # beta back: hand-offs resume.
    beta.start([(b_addr, PORT)])
    wait_for(lambda: addrs(query(alpha.addr, WWW, ecs=("20.1.2.0", 24))) == ["192.0.2.101"], 10, "beta back")
    # A hand-off still owed when alpha stops does not keep it from stopping cleanly.
    beta.proc.send_signal(signal.SIGSTOP)
    try:
        q0 = alpha.metric("ferry_router_ecs_queries_total")
        raw_query_no_wait(alpha.addr)
        wait_for(lambda: alpha.metric("ferry_router_ecs_queries_total") == q0 + 1, 5, "the hand-off under way")
        assert alpha.stop() == 0
    finally:
        beta.proc.send_signal(signal.SIGCONT)


def raw_query_no_wait(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    q = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.ECSOption("20.3.0.0", 24)])
    s.sendto(q.to_wire(), (addr, PORT))
    s.close()


def test_http_handoff_and_loop_guard(tmp_path, procs):
    """alpha redirects 127.1/16 to beta's redirector, the publisher's name in
    the path (/HOST/PATH); beta (307s) would send them back to alpha and does
    not when alpha is on ferry_path, and the other way round."""
    a_addr, b_addr = fresh_addr(), fresh_addr()
    alpha = start_router(tmp_path, procs, "alpha", f"""
    node a1 {{ address 192.0.2.1; }}
    area 127.0.0.0/8 a1;
    area 127.1.0.0/16 beta;
    area 127.2.0.0/16 gamma;
    peer beta {{ handoff cname; cname {BETA_ZONE}; redirect http://redirect.{BETA_ZONE}:8080; }}
    peer gamma {{ handoff cname; cname cdn.gamma.test; }}
    zone {ZONE} {{
        ns ns1.{ZONE};
        service www;
    }}
""", addr=a_addr, http=True)
    beta = start_router(tmp_path, procs, "beta", f"""
    redirect_code 307;
    node b1 {{ address 192.0.2.101; }}
    area 127.0.0.0/8 b1;
    area 127.1.0.0/16 alpha;
    peer alpha {{ handoff cname; cname {ZONE}; redirect http://redirect.alpha.test:8080; }}
    zone {BETA_ZONE} {{
        ns ns1.{BETA_ZONE};
        service www;
    }}
    zone {ZONE} {{
        ns ns1.{BETA_ZONE}.;
        service www;
    }}
""", addr=b_addr, cdn="beta", http=True)
    client = "127.1.2.3"
    resolve = ["--resolve", f"redirect.{BETA_ZONE}:8080:{b_addr}", "--resolve", f"redirect.alpha.test:8080:{a_addr}"]
    status, loc = redirect(a_addr, "/movie/1.mp4?q=hd", src=client)
    assert (status, loc) == (302, f"http://redirect.{BETA_ZONE}:8080/{WWW}/movie/1.mp4?q=hd&ferry_path=alpha")
    assert alpha.metric("ferry_router_decisions_total", 'reason="peer_http"') == 1
    assert alpha.metric("ferry_router_handoffs_total", 'peer="beta"') == 1
    # Following it: beta would send the client back, but alpha is on the path.
    status, h, _ = curl("--interface", client, *resolve, loc)
    assert status == 307 and h["location"] == ["https://192.0.2.101/movie/1.mp4?q=hd"], h
    assert beta.metric("ferry_router_loops_prevented_total") == 1
    assert beta.metric("ferry_router_answers_total", 'node="b1"') == 1
    # beta's own client of that area goes to alpha, and alpha keeps it.
    status, loc = redirect(b_addr, "/x?k=v", src=client)
    assert (status, loc) == (307, f"http://redirect.alpha.test:8080/{WWW}/x?k=v&ferry_path=beta")
    status, h, _ = curl("--interface", client, *resolve, loc)
    assert status == 302 and h["location"] == ["https://192.0.2.1/x?k=v"], h
    assert alpha.metric("ferry_router_loops_prevented_total") == 1
    # A path naming a third CDN before: it is carried on.
    status, loc = redirect(a_addr, "/y?ferry_path=gamma", src=client)
    assert (status, loc) == (302, f"http://redirect.{BETA_ZONE}:8080/{WWW}/y?ferry_path=gamma--alpha")
    # Other clients of alpha get alpha's node; a peer without a redirector
    # (gamma) leaves its HTTP clients with alpha.
    assert redirect(a_addr, "/x", src=fresh_addr()) == (302, "https://192.0.2.1/x")
    assert redirect(a_addr, "/x", src="127.2.0.5") == (302, "https://192.0.2.1/x")
    assert alpha.metric("ferry_router_handoffs_total", 'peer="gamma"') == 0
    # A hand-off path for a name that is no service here: 404.
    assert curl(*resolve, f"http://redirect.{BETA_ZONE}:8080/www.nope.test/x?ferry_path=alpha")[0] == 404


def free_port6():
    """A port free on [::1] for both UDP and TCP (as far as one can tell)."""
    while True:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as t:
            t.bind(("::1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as u:
                    u.bind(("::1", port))
            except OSError:
                continue
            return port


def test_ipv6_listeners_clients_and_ecs_peer(tmp_path, procs):
    """DNS and HTTP over IPv6, an IPv6 client matched by its /128 area, and an
    ECS hand-off to a peer router reached over IPv6."""
    dport, hport, bport = free_port6(), free_port6(), free_port6()
    b_admin = fresh_addr()
    beta = Ferryd(str(tmp_path), "beta", f"""
router {{
    cdn beta;
    listen [::1]:{bport};
    node b1 {{ address 192.0.2.101; }}
    area 20.0.0.0/8 b1;
    zone {BETA_ZONE} {{ ns ns1.{BETA_ZONE}; service www; }}
}}
""", admin_addr=f"{b_admin}:9000")
    procs.append(beta)
    beta.start([("::1", bport), (b_admin, 9000)])
    a_admin = fresh_addr()
    alpha = Ferryd(str(tmp_path), "alpha", f"""
router {{
    cdn alpha;
    listen [::1]:{dport};
    listen_http [::1]:{hport};
    node a1 {{ address 192.0.2.1; address 2001:db8::1; }}
    node a2 {{ address 192.0.2.2; address 2001:db8::2; }}
    area ::1/128 a2;
    area 2001:db8:aa::/48 a1;
    area 20.0.0.0/8 beta;
    peer beta {{ handoff ecs; ecs_server [::1]:{bport}; ecs_zone {BETA_ZONE}; }}
    zone {ZONE} {{ ns ns1.{ZONE}; service www; }}
}}
""", admin_addr=f"{a_admin}:9000")
    procs.append(alpha)
    alpha.start([("::1", dport), ("::1", hport), (a_admin, 9000)])
    for tcp in (False, True):
        resp = query("::1", WWW, "AAAA", port=dport, tcp=tcp)
        assert addrs(resp) == ["2001:db8::2"]
    resp = query("::1", WWW, port=dport, ecs=("2001:db8:aa:1::", 64))
    assert addrs(resp) == ["192.0.2.1"] and scope_of(resp) == 48
    for prog in ("dig", "kdig"):
        res = dig(prog, "::1", WWW, "A", "+norec", "+subnet=20.1.0.0/24", port=dport)
        assert res.data("ANSWER", "A") == ["192.0.2.101"], res.text
    assert alpha.metric("ferry_router_ecs_failures_total") == 0
    status, h, _ = curl("-H", f"Host: {WWW}", f"http://[::1]:{hport}/v6?x=1")
    assert status == 302 and h["location"] == ["https://192.0.2.2/v6?x=1"], h
