"""The router role's DNS server: answers with dig, kdig and dnspython (ECS
scopes for nested prefixes, truncation and TCP, zone data and negative
answers, malformed queries sent raw, TCP pipelining, garbage, TCP limits
and response rate limiting), the HTTP redirector, config errors, and a
100,000-prefix area file reloaded under query load. test_router_handoff.py
has the rest (decisions by node health and load, the admin API and
metrics, unbound in front of the router, hand-offs between two Ferry
CDNs) and uses the helpers here."""
import json
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype

from conftest import FERRYD, SLOW, Ferryd, curl, fresh_addr, raw_request, wait_for

PORT = 5300
ZONE = "example.test"
WWW = "www.example.test"


# ---- starting routers ------------------------------------------------------

def router_conf(addr, body, cdn="alpha", http=False):
    listen_http = f"    listen_http {addr}:8080;\n" if http else ""
    return f"log_level debug;\nrouter {{\n    cdn {cdn};\n    listen {addr}:{PORT};\n{listen_http}{body}\n}}\n"


def start_router(tmp_path, procs, name, body, addr=None, cdn="alpha", http=False, tcp_probe=True):
    """A ferryd with only the router role, DNS on addr:5300, admin on addr:9000.
    tcp_probe=False waits without connecting to the DNS TCP port (for tests that
    count DNS connections): the admin port, then a UDP query."""
    addr = addr or fresh_addr()
    f = Ferryd(str(tmp_path), name, router_conf(addr, body, cdn, http), admin_addr=f"{addr}:9000")
    f.addr = addr
    procs.append(f)
    waits = ([(addr, PORT)] if tcp_probe else []) + [(addr, 9000)] + ([(addr, 8080)] if http else [])
    f.start(waits)
    if not tcp_probe:
        def answers():
            try:
                return query(addr, ZONE, "SOA", timeout=0.5).rcode() == dns.rcode.NOERROR
            except Exception:
                return False
        wait_for(answers, 10, f"{name} answering over UDP")
    return f


def api(router, path="/api/v1/router"):
    status, body = router.admin_get(path)
    assert status == 200, (status, body)
    return json.loads(body)


# ---- DNS clients ------------------------------------------------------------

def query(addr, name, rdtype="A", ecs=None, tcp=False, port=PORT, options=(), timeout=3):
    """One query with dnspython (EDNS0, RD clear); ecs is (address, source prefix)."""
    opts = list(options)
    if ecs:
        opts.append(dns.edns.ECSOption(ecs[0], ecs[1], 0))
    q = dns.message.make_query(name, rdtype, use_edns=0, options=opts)
    q.flags &= ~dns.flags.RD
    fn = dns.query.tcp if tcp else dns.query.udp
    return fn(q, addr, port=port, timeout=timeout * SLOW)


def addrs(resp):
    return sorted(rr.address for rrset in resp.answer if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
                  for rr in rrset)


def ecs_of(resp):
    for o in resp.options:
        if o.otype == dns.edns.ECS:
            return o
    return None


def scope_of(resp):
    o = ecs_of(resp)
    assert o is not None, resp
    return o.scopelen


def raw_udp(addr, data, timeout=1.0, port=PORT):
    """Sends one datagram; returns the reply or None when none came within timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout * SLOW)
    try:
        s.sendto(data, (addr, port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None
    finally:
        s.close()


class DigResult:
    def __init__(self, text, err=""):
        self.text = text + err
        st = re.findall(r"status: (\w+)", text)
        self.status = st[-1] if st else None
        fl = re.findall(r"^;; [Ff]lags: ([a-z ]*);", text, re.M)
        self.flags = set(fl[-1].split()) if fl else set()
        m = re.findall(r"CLIENT-SUBNET: ([0-9a-fA-F.:]+)/(\d+)/(\d+)", text)
        self.ecs = (m[-1][0], int(m[-1][1]), int(m[-1][2])) if m else None
        tr = re.findall(r"\((UDP|TCP)\)", text)
        self.transport = tr[-1] if tr else None
        # Records as (owner, ttl, type, data) by section. A section seen
        # again replaces the earlier one: the last response printed counts.
        self.sections = {}
        cur = None
        for line in text.splitlines():
            s = re.match(r";; (ANSWER|AUTHORITY|ADDITIONAL) SECTION:", line)
            if s:
                cur = s.group(1)
                self.sections[cur] = []
            elif not line.strip():
                cur = None
            elif cur and not line.startswith(";"):
                f = line.split(None, 4)
                self.sections[cur].append((f[0], int(f[1]), f[3], f[4] if len(f) > 4 else ""))

    def rrs(self, section="ANSWER", rtype=None):
        return [r for r in self.sections.get(section, []) if rtype is None or r[2] == rtype]

    def data(self, section="ANSWER", rtype=None):
        return sorted(r[3] for r in self.rrs(section, rtype))


def dig(prog, server, *args, port=PORT):
    argv = [prog, f"@{server}", "-p", str(port), "+time=3"]
    argv += ["+tries=1"] if prog == "dig" else ["+retry=0"]
    r = subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30 * SLOW)
    assert r.returncode == 0, f"{argv + list(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}"
    return DigResult(r.stdout, r.stderr)


# ---- 1. dig and kdig ---------------------------------------------------------

def zone_body(router_addr):
    txt = "".join(f'        record big TXT "{str(i).zfill(2) * 50}";\n' for i in range(30))
    return f"""
    node a1 {{ address 192.0.2.1; address 2001:db8::1; }}
    node a2 {{ address 192.0.2.2; address 2001:db8::2; }}
    area 10.0.0.0/8 a1;
    area 10.2.0.0/16 a2;
    area 30.0.0.0/8 a1;
    area 40.0.0.0/8 a2;
    area 41.0.0.0/8 a2;
    area 2001:db8::/32 a2;
    zone {ZONE} {{
        ns ns1.{ZONE};
        ns ns2.{ZONE};
        record ns1 A {router_addr};
        record ns2 A 192.0.2.53;
        record ns2 AAAA 2001:db8::53;
        record @ TXT "v=apex";
        record info TXT "hello";
        record alias CNAME www;
        record alias2 CNAME alias;
        record dangling CNAME nothere;
        record sub NS ns.sub.{ZONE}.;
        record ns.sub A 192.0.2.99;
        record mail MX 10 mx.{ZONE};
        service www;
{txt}    }}
"""


def test_dig_and_kdig_answers_with_ecs_scope(tmp_path, procs):
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    for prog in ("dig", "kdig"):
        norec = "+norec"
        # Nested prefixes: 10.1.2.0/24 lies in 10/8 only, next to 10.2/16 (a2):
        # the answer holds for 10.0.0.0/15.
        res = dig(prog, addr, WWW, "A", norec, "+subnet=10.1.2.0/24")
        assert res.status == "NOERROR" and "aa" in res.flags, res.text
        assert res.data("ANSWER", "A") == ["192.0.2.1"], res.text
        assert res.ecs == ("10.1.2.0", 24, 15), res.text
        assert res.rrs("ANSWER")[0][1] == 20  # the default TTL of decided answers
        res = dig(prog, addr, WWW, "A", norec, "+subnet=10.2.77.0/24")
        assert res.data("ANSWER", "A") == ["192.0.2.2"] and res.ecs == ("10.2.77.0", 24, 16), res.text
        res = dig(prog, addr, WWW, "AAAA", norec, "+subnet=10.2.77.0/24")
        assert res.data("ANSWER", "AAAA") == ["2001:db8::2"] and res.ecs[2] == 16, res.text
        res = dig(prog, addr, WWW, "AAAA", norec, "+subnet=10.1.0.0/16")
        assert res.data("ANSWER", "AAAA") == ["2001:db8::1"] and res.ecs == ("10.1.0.0", 16, 15), res.text
        # 10.5/16 is past 10.2/16: 10.4.0.0/14 holds it.
        res = dig(prog, addr, WWW, "A", norec, "+subnet=10.5.0.0/24")
        assert res.data("ANSWER", "A") == ["192.0.2.1"] and res.ecs[2] == 14, res.text
        # A /8 with nothing nested and no like neighbour: scope 8.
        res = dig(prog, addr, WWW, "A", norec, "+subnet=30.1.2.0/24")
        assert res.data("ANSWER", "A") == ["192.0.2.1"] and res.ecs == ("30.1.2.0", 24, 8), res.text
        # Two sibling /8s with the same node: the answer holds for the /7.
        res = dig(prog, addr, WWW, "A", norec, "+subnet=41.9.0.0/24")
        assert res.data("ANSWER", "A") == ["192.0.2.2"] and res.ecs[2] == 7, res.text
        # IPv6 client subnet.
        res = dig(prog, addr, WWW, "A", norec, "+subnet=2001:db8:1::/48")
        assert res.data("ANSWER", "A") == ["192.0.2.2"] and res.ecs[1:] == (48, 32), res.text
        # Source 0: the scope must be 0 too (RFC 7871 7.2.1).
        res = dig(prog, addr, WWW, "A", norec, "+subnet=0.0.0.0/0")
        assert res.status == "NOERROR" and res.ecs is not None and res.ecs[2] == 0, res.text
        # Over TCP.
        res = dig(prog, addr, WWW, "A", norec, "+tcp", "+subnet=10.2.0.0/24")
        assert res.transport == "TCP", res.text
        assert res.data("ANSWER", "A") == ["192.0.2.2"] and res.ecs[2] == 16, res.text
        # Names are case-insensitive, and the answer echoes the question's
        # case (kdig prints every name lowercased: dig and dnspython show it).
        res = dig(prog, addr, "wWw.ExAmPlE.test", "A", norec, "+subnet=10.2.0.0/24")
        assert res.status == "NOERROR" and res.data("ANSWER", "A") == ["192.0.2.2"], res.text
        if prog == "dig":
            assert res.rrs("ANSWER")[0][0] == "wWw.ExAmPlE.test.", res.text
            assert re.search(r"^;wWw\.ExAmPlE\.test\.\s+IN\s+A$", res.text, re.M), res.text
    resp = query(addr, "wWw.ExAmPlE.test", "AAAA", ecs=("10.2.0.0", 24))
    assert resp.question[0].name.to_text() == "wWw.ExAmPlE.test."
    assert resp.answer[0].name.to_text() == "wWw.ExAmPlE.test." and addrs(resp) == ["2001:db8::2"]
    assert r.metric("ferry_router_queries_total", 'type="A",rcode="NOERROR"') == 2 * 9
    assert r.metric("ferry_router_queries_total", 'type="AAAA",rcode="NOERROR"') == 2 * 2 + 1


def test_truncation_over_udp_and_full_answer_over_tcp(tmp_path, procs):
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    name = f"big.{ZONE}"
    # dig +ignore shows the truncated UDP answer: TC, no records.
    res = dig("dig", addr, name, "TXT", "+norec", "+bufsize=512", "+ignore")
    assert "tc" in res.flags and res.status == "NOERROR", res.text
    assert res.rrs("ANSWER") == [], res.text
    assert res.transport == "UDP"
    # Without +ignore, both clients retry over TCP and get all 30 strings.
    for prog in ("dig", "kdig"):
        res = dig(prog, addr, name, "TXT", "+norec", "+bufsize=512")
        assert res.transport == "TCP", res.text
        assert "tc" not in res.flags and len(res.rrs("ANSWER", "TXT")) == 30, res.text
        assert sorted(res.data("ANSWER", "TXT")) == sorted(f'"{str(i).zfill(2) * 50}"' for i in range(30))
    # dnspython: the same over UDP without EDNS (512 bytes) and with a large buffer.
    q = dns.message.make_query(name, "TXT", use_edns=False)
    resp = dns.query.udp(q, addr, port=PORT, timeout=3 * SLOW)
    assert resp.flags & dns.flags.TC and not resp.answer
    q = dns.message.make_query(name, "TXT", use_edns=0, payload=4096)
    resp = dns.query.udp(q, addr, port=PORT, timeout=3 * SLOW)
    # The router's own udp_size (1232) caps the requestor's 4096.
    assert resp.flags & dns.flags.TC and resp.payload == 1232
    resp = dns.query.tcp(q, addr, port=PORT, timeout=3 * SLOW)
    assert not resp.flags & dns.flags.TC and len(resp.answer[0]) == 30
    assert r.metric("ferry_router_truncated_total") == 5


def test_zone_data_and_negative_answers(tmp_path, procs):
    addr = fresh_addr()
    start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    for prog in ("dig", "kdig"):
        # SOA at the apex.
        res = dig(prog, addr, ZONE, "SOA", "+norec")
        assert res.status == "NOERROR" and "aa" in res.flags, res.text
        soa = res.rrs("ANSWER", "SOA")
        assert len(soa) == 1 and soa[0][3].split()[:2] == [f"ns1.{ZONE}.", f"hostmaster.{ZONE}."], res.text
        assert [int(x) for x in soa[0][3].split()[2:]] == [1, 3600, 600, 604800, 60]
        # NS at the apex, with the in-zone name servers' addresses as glue.
        res = dig(prog, addr, ZONE, "NS", "+norec")
        assert res.data("ANSWER", "NS") == [f"ns1.{ZONE}.", f"ns2.{ZONE}."], res.text
        glue = sorted((n, t, d) for n, _, t, d in res.rrs("ADDITIONAL") if t in ("A", "AAAA"))
        assert glue == [(f"ns1.{ZONE}.", "A", addr), (f"ns2.{ZONE}.", "A", "192.0.2.53"),
                        (f"ns2.{ZONE}.", "AAAA", "2001:db8::53")], res.text
        # NXDOMAIN: AA, the SOA in authority with the negative TTL.
        res = dig(prog, addr, f"nope.{ZONE}", "A", "+norec")
        assert res.status == "NXDOMAIN" and "aa" in res.flags and res.rrs("ANSWER") == [], res.text
        auth = res.rrs("AUTHORITY", "SOA")
        assert len(auth) == 1 and auth[0][0] == f"{ZONE}." and auth[0][1] == 60, res.text
        # NODATA: the name exists, the type does not.
        res = dig(prog, addr, f"info.{ZONE}", "A", "+norec")
        assert res.status == "NOERROR" and "aa" in res.flags and res.rrs("ANSWER") == [], res.text
        assert len(res.rrs("AUTHORITY", "SOA")) == 1, res.text
        res = dig(prog, addr, f"info.{ZONE}", "TXT", "+norec")
        assert res.data("ANSWER", "TXT") == ['"hello"'], res.text
        res = dig(prog, addr, f"mail.{ZONE}", "MX", "+norec")
        assert res.data("ANSWER", "MX") == [f"10 mx.{ZONE}."], res.text
        # NODATA at the apex too.
        res = dig(prog, addr, ZONE, "MX", "+norec")
        assert res.status == "NOERROR" and res.rrs("ANSWER") == [] and res.rrs("AUTHORITY", "SOA"), res.text
        # REFUSED outside every zone, without AA.
        res = dig(prog, addr, "www.other.test", "A", "+norec")
        assert res.status == "REFUSED" and "aa" not in res.flags and res.rrs("ANSWER") == [], res.text
        res = dig(prog, addr, "test", "SOA", "+norec")
        assert res.status == "REFUSED", res.text
        # A delegated subzone: a referral, AA clear, NS in authority, glue.
        for name in (f"sub.{ZONE}", f"www.sub.{ZONE}", f"ns.sub.{ZONE}"):
            res = dig(prog, addr, name, "A", "+norec")
            assert res.status == "NOERROR" and "aa" not in res.flags, res.text
            assert res.rrs("ANSWER") == [], res.text
            assert res.rrs("AUTHORITY") == [(f"sub.{ZONE}.", 3600, "NS", f"ns.sub.{ZONE}.")], res.text
            assert res.data("ADDITIONAL", "A") == ["192.0.2.99"], res.text
        # CNAME chasing inside the zone: to static data, through two hops to a
        # service (decided for the client), and to a missing name (NXDOMAIN).
        res = dig(prog, addr, f"alias2.{ZONE}", "A", "+norec", "+subnet=10.2.0.0/24")
        assert res.status == "NOERROR" and "aa" in res.flags, res.text
        chain = [(n, t, d) for n, _, t, d in res.rrs("ANSWER")]
        assert chain == [(f"alias2.{ZONE}.", "CNAME", f"alias.{ZONE}."),
                         (f"alias.{ZONE}.", "CNAME", f"www.{ZONE}."),
                         (f"www.{ZONE}.", "A", "192.0.2.2")], res.text
        res = dig(prog, addr, f"alias.{ZONE}", "A", "+norec", "+subnet=10.1.0.0/24")
        assert res.data("ANSWER", "A") == ["192.0.2.1"], res.text
        res = dig(prog, addr, f"alias.{ZONE}", "CNAME", "+norec")
        assert [(t, d) for _, _, t, d in res.rrs("ANSWER")] == [("CNAME", f"www.{ZONE}.")], res.text
        res = dig(prog, addr, f"dangling.{ZONE}", "A", "+norec")
        assert res.status == "NXDOMAIN" and res.data("ANSWER", "CNAME") == [f"nothere.{ZONE}."], res.text
        assert res.rrs("AUTHORITY", "SOA"), res.text


def test_cname_to_a_service_carries_the_decisions_ecs_scope(tmp_path, procs):
    """An in-zone CNAME to a service gets an address decided by the client's
    subnet, so the ECS scope must say for which subnet that address holds.
    With scope 0, a resolver would serve a2's address to every client."""
    addr = fresh_addr()
    start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    resp = query(addr, f"alias.{ZONE}", "A", ecs=("10.2.0.0", 24))
    assert addrs(resp) == ["192.0.2.2"]
    assert scope_of(resp) == 16, ecs_of(resp)
    resp = query(addr, f"alias.{ZONE}", "A", ecs=("10.1.0.0", 24))
    assert addrs(resp) == ["192.0.2.1"]
    assert scope_of(resp) == 15, ecs_of(resp)


def test_path_label_in_front_of_the_apex(tmp_path, procs):
    """Hand-off names are fp--PATH.SERVICE.ZONE. Whatever the router makes of
    fp--ID.ZONE, the records of an answer must be owned by the name asked."""
    addr = fresh_addr()
    start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    name = f"fp--alpha.{ZONE}."
    for qtype in ("NS", "A", "TXT", "SOA"):
        resp = query(addr, name, qtype)
        assert resp.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN), (qtype, resp)
        owners = {rrset.name.to_text() for rrset in resp.answer}
        assert owners <= {name}, (qtype, resp.to_text())


# ---- 2. dnspython: malformed queries, TCP, garbage -------------------------

def test_malformed_queries(tmp_path, procs):
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    good = dns.message.make_query(WWW, "A", use_edns=0)
    good.id = 0x4242
    w = good.to_wire()
    qlen = 12 + len(WWW) + 2 + 4  # header + wire name + type/class

    def rcode_of(reply):
        assert reply is not None and len(reply) >= 12, reply
        assert reply[0:2] == w[0:2] and reply[2] & 0x80  # our id, QR set
        return reply[3] & 0x0F

    # QDCOUNT = 2.
    two = bytearray(w[:qlen]) + w[12:qlen]
    two[5] = 2
    two[11] = 0
    assert rcode_of(raw_udp(addr, bytes(two))) == dns.rcode.FORMERR
    # A question cut short, with and without the type.
    for cut in (w[:20], w[:qlen - 2]):
        c = bytearray(cut)
        c[11] = 0  # no OPT announced
        assert rcode_of(raw_udp(addr, bytes(c))) == dns.rcode.FORMERR
    # An ECS option with a non-zero scope in a query (RFC 7871 7.1.1).
    q = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.ECSOption("10.1.2.0", 24, 5)])
    resp = dns.message.from_wire(raw_udp(addr, q.to_wire()))
    assert resp.rcode() == dns.rcode.FORMERR and resp.edns == 0  # the reply has an OPT
    # A bad ECS family, and address bytes that do not match the source length.
    for body in (struct.pack("!HBB", 3, 24, 0) + bytes([10, 1, 2]),
                 struct.pack("!HBB", 1, 24, 0) + bytes([10, 1]),
                 struct.pack("!HBB", 1, 33, 0) + bytes([10, 1, 2, 3, 4]),
                 struct.pack("!HBB", 1, 20, 0) + bytes([10, 1, 255])):  # bits past the source
        q = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.GenericOption(8, body)])
        resp = dns.message.from_wire(raw_udp(addr, q.to_wire()))
        assert resp.rcode() == dns.rcode.FORMERR, body
    # Trailing garbage after the question.
    c = bytearray(w[:qlen]) + b"\x00\x01"
    c[11] = 0
    assert rcode_of(raw_udp(addr, bytes(c))) == dns.rcode.FORMERR
    # No answer at all: a response (QR set), and fewer than 12 bytes.
    qr = bytearray(w)
    qr[2] |= 0x80
    assert raw_udp(addr, bytes(qr), timeout=0.5) is None
    assert raw_udp(addr, w[:11], timeout=0.5) is None
    assert raw_udp(addr, b"", timeout=0.5) is None
    # EDNS version 1: BADVERS (extended rcode 16), with an OPT of version 0.
    q = dns.message.make_query(WWW, "A")
    q.use_edns(edns=1)
    resp = dns.query.udp(q, addr, port=PORT, timeout=3 * SLOW)
    assert resp.rcode() == dns.rcode.BADVERS and resp.opt is not None and resp.edns == 0
    assert not resp.answer
    # Opcodes other than QUERY: NOTIMP, the opcode echoed.
    for op in (dns.opcode.NOTIFY, dns.opcode.UPDATE, dns.opcode.STATUS):
        q = dns.message.make_query(WWW, "SOA", use_edns=False)
        q.set_opcode(op)
        reply = raw_udp(addr, q.to_wire())
        assert reply is not None and reply[0:2] == q.to_wire()[0:2], op
        assert reply[3] & 0x0F == dns.rcode.NOTIMP and (reply[2] >> 3) & 0x0F == op, op
    # CH class and zone transfers are refused.
    q = dns.message.make_query(WWW, "A", rdclass="CH")
    assert dns.query.udp(q, addr, port=PORT, timeout=3 * SLOW).rcode() == dns.rcode.REFUSED
    q = dns.message.make_query(ZONE, "AXFR")
    assert dns.query.tcp(q, addr, port=PORT, timeout=3 * SLOW).rcode() == dns.rcode.REFUSED
    assert r.metric("ferry_router_queries_total", 'rcode="FORMERR"') == 9
    assert r.metric("ferry_router_queries_total", 'rcode="other"') == 4  # NOTIMP x3, BADVERS
    # And still answering.
    assert addrs(query(addr, WWW, ecs=("10.1.0.0", 24))) == ["192.0.2.1"]


def tcp_read_msg(s):
    def exact(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError(f"closed after {len(b)} of {n} bytes")
            b += c
        return b
    (n,) = struct.unpack("!H", exact(2))
    return dns.message.from_wire(exact(n))


def test_tcp_pipelining(tmp_path, procs):
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr), addr=addr, tcp_probe=False)
    qs = []
    for i, (name, ecs) in enumerate([(WWW, "10.1.0.0"), (WWW, "10.2.0.0"), (f"info.{ZONE}", None)]):
        q = dns.message.make_query(name, "TXT" if ecs is None else "A", use_edns=0,
                                   options=[dns.edns.ECSOption(ecs, 24)] if ecs else [])
        q.id = 0x1000 + i
        qs.append(q)
    data = b"".join(struct.pack("!H", len(q.to_wire())) + q.to_wire() for q in qs)
    s = socket.create_connection((addr, PORT), timeout=5 * SLOW)
    try:
        s.sendall(data)  # all three in one segment
        got = {m.id: m for m in (tcp_read_msg(s) for _ in qs)}
        assert sorted(got) == [0x1000, 0x1001, 0x1002]
        assert addrs(got[0x1000]) == ["192.0.2.1"] and addrs(got[0x1001]) == ["192.0.2.2"]
        assert got[0x1002].answer[0][0].strings == (b"hello",)
        # The connection stays open for more, also split across writes.
        q = dns.message.make_query(WWW, "AAAA", use_edns=0, options=[dns.edns.ECSOption("10.2.0.0", 24)])
        q.id = 0x2000
        wire = struct.pack("!H", len(q.to_wire())) + q.to_wire()
        s.sendall(wire[:1])
        time.sleep(0.05)
        s.sendall(wire[1:9])
        time.sleep(0.05)
        s.sendall(wire[9:])
        m = tcp_read_msg(s)
        assert m.id == 0x2000 and addrs(m) == ["2001:db8::2"]
        assert api(r)["tcp_connections"] == 1
    finally:
        s.close()
    wait_for(lambda: api(r)["tcp_connections"] == 0, 5, "the TCP connection closed")


def test_garbage_leaves_the_server_answering(tmp_path, procs):
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr), addr=addr)
    rnd = random.Random(7)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    base = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.ECSOption("10.1.0.0", 24)]).to_wire()
    for i in range(1000):
        if i % 3 == 0:
            # a query with random bytes flipped: reaches deeper into the parser
            b = bytearray(base)
            for _ in range(rnd.randint(1, 6)):
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            pkt = bytes(b[:rnd.randint(0, len(b))] if i % 2 else b)
        else:
            pkt = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 700)))
        s.sendto(pkt, (addr, PORT))
    s.close()
    # TCP: random bytes, a length that is never followed, a zero length,
    # messages of random bytes with a correct length prefix.
    for i in range(30):
        c = socket.create_connection((addr, PORT), timeout=5 * SLOW)
        if i % 3 == 0:
            c.sendall(bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000))))
        elif i % 3 == 1:
            c.sendall(rnd.choice([b"\xff\xff" + b"x" * 100, b"\x00\x00", b"\x00"]))
        else:
            for _ in range(5):
                body = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 300)))
                c.sendall(struct.pack("!H", len(body)) + body)
        c.close()
    assert r.proc.alive(), r.proc.output()
    assert addrs(query(addr, WWW, ecs=("10.2.0.0", 24))) == ["192.0.2.2"]
    assert addrs(query(addr, WWW, ecs=("10.1.0.0", 24), tcp=True)) == ["192.0.2.1"]
    wait_for(lambda: api(r)["tcp_connections"] == 0, 15, "garbage connections closed")
    assert r.stop() == 0


def test_tcp_limits_and_response_rate_limit(tmp_path, procs):
    # The connection limit, with an idle timeout far longer than any check takes.
    addr = fresh_addr()
    r = start_router(tmp_path, procs, "router", zone_body(addr) + """
    tcp_max_connections 2;
    tcp_idle_timeout 10m;
    rrl_rate 5;
    rrl_slip 2;
""", addr=addr, tcp_probe=False)
    assert api(r)["tcp_connections"] == 0
    held = [socket.create_connection((addr, PORT), timeout=5 * SLOW) for _ in range(2)]
    wait_for(lambda: api(r)["tcp_connections"] == 2, 5, "two connections held")
    extra = socket.create_connection((addr, PORT), timeout=5 * SLOW)
    assert extra.recv(10) == b""  # closed at accept
    extra.close()
    assert r.metric("ferry_router_tcp_refused_total") == 1
    for s in held:
        s.close()
    wait_for(lambda: api(r)["tcp_connections"] == 0, 5, "closed connections forgotten")
    # The idle timeout, on a second router: an idle connection is closed by the
    # server, not at once (no upper bound: tests do not assert on timing).
    addr2 = fresh_addr()
    r2 = start_router(tmp_path, procs, "router2", zone_body(addr2) + """
    tcp_idle_timeout 300ms;
""", addr=addr2)
    t0 = time.monotonic()
    idle = socket.create_connection((addr2, PORT), timeout=30 * SLOW)
    assert idle.recv(10) == b""
    assert time.monotonic() - t0 >= 0.25
    idle.close()
    wait_for(lambda: api(r2)["tcp_connections"] == 0, 5, "idle connection closed")

    # RRL: one client prefix gets rrl_rate full answers a second; of the
    # rest every rrl_slip-th is sent truncated (TC, no records), others dropped.
    src = fresh_addr()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src, 0))
    s.settimeout(0.5 * SLOW)
    n = 40
    for i in range(n):
        q = dns.message.make_query(WWW, "A", use_edns=0, options=[dns.edns.ECSOption("10.1.0.0", 24)])
        q.id = i
        s.sendto(q.to_wire(), (addr, PORT))
    full = slipped = 0
    try:
        while True:
            m = dns.message.from_wire(s.recv(4096))
            if m.flags & dns.flags.TC:
                assert not m.answer and m.question[0].name.to_text() == f"{WWW}."
                slipped += 1
            else:
                assert addrs(m) == ["192.0.2.1"]
                full += 1
    except socket.timeout:
        pass
    s.close()
    dropped = r.metric("ferry_router_rrl_total", 'action="dropped"')
    assert 5 <= full <= 10 and slipped >= 10 and dropped >= 10, (full, slipped, dropped)
    assert r.metric("ferry_router_rrl_total", 'action="slipped"') == slipped
    assert full + slipped + dropped == n
    assert api(r)["rrl"] == {"rate": 5, "dropped": dropped, "slipped": slipped}
    # Another client prefix, and TCP, are not limited meanwhile.
    for _ in range(4):
        assert addrs(query(addr, WWW, ecs=("10.2.0.0", 24))) == ["192.0.2.2"]
    for _ in range(10):
        assert addrs(query(addr, WWW, ecs=("10.2.0.0", 24), tcp=True)) == ["192.0.2.2"]


# ---- 6. the HTTP redirector -------------------------------------------------

def redirect(addr, path, host=WWW, src=None, extra=(), port=8080):
    """One request with curl (no redirects followed); returns (status, Location)."""
    args = ["-H", f"Host: {host}"] + list(extra)
    if src:
        args += ["--interface", src]
    status, h, body = curl(*args, f"http://{addr}:{port}{path}")
    return status, h.get("location", [None])[0]


REDIRECTOR = f"""
    http_max_head 4k;
    node a1 {{ address 192.0.2.1; }}
    node a2 {{ address 192.0.2.2; }}
    node v1 {{ address 192.0.2.10; sets video; redirect https://v1.cdn.example:8443; }}
    node v6 {{ address 2001:db8::6; sets other; }}
    area 127.0.0.0/8 a1 a2;
    zone {ZONE} {{
        ns ns1.{ZONE};
        record info TXT "not a service";
        service www path /video/ video path /video/6/ other;
    }}
"""


def test_http_redirector(tmp_path, procs):
    r = start_router(tmp_path, procs, "router", REDIRECTOR, http=True)
    addr = r.addr
    status, loc = redirect(addr, "/a/b.txt?x=1&y=2")
    assert status == 302 and re.fullmatch(r"https://192\.0\.2\.[12]/a/b\.txt\?x=1&y=2", loc), loc
    first = loc
    # URL affinity: the same URL goes to the same node, whatever the client
    # or the port in Host.
    for src in ("127.0.0.1", fresh_addr(), fresh_addr()):
        assert redirect(addr, "/a/b.txt?x=1&y=2", src=src) == (302, first)
    assert redirect(addr, "/a/b.txt?x=1&y=2", host=f"{WWW}:8080") == (302, first)
    # Different URLs spread over both nodes.
    seen = {redirect(addr, f"/obj/{i}")[1].split("/")[2] for i in range(16)}
    assert seen == {"192.0.2.1", "192.0.2.2"}, seen
    # Path rules pick the node set; the node's redirect base is used.
    assert redirect(addr, "/video/clip.mp4?t=3") == (302, "https://v1.cdn.example:8443/video/clip.mp4?t=3")
    assert redirect(addr, "/video/6/x") == (302, "https://[2001:db8::6]/video/6/x")
    assert redirect(addr, "/videos/x")[1].startswith("https://192.0.2.")
    # HEAD is redirected too; ferry_path is taken out of the query.
    status, loc = redirect(addr, "/p?a=1&ferry_path=zeta&b=2", extra=["-I"])
    assert status == 302 and loc.endswith("/p?a=1&b=2"), loc
    # Errors: a malformed ferry_path, no Host.
    assert redirect(addr, "/p?ferry_path=Bad!")[0] == 400
    out = raw_request(addr, 8080, b"GET /p HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 "), out
    assert redirect(addr, "/x", host="nope.test")[0] == 404
    assert redirect(addr, "/x", host=f"info.{ZONE}")[0] == 404
    assert redirect(addr, "/x", extra=["-X", "POST", "-d", "x=1"])[0] == 405
    assert redirect(addr, "/x", extra=["-H", "X-Big: " + "a" * 6000])[0] == 431
    assert redirect(addr, "/x", extra=["-H", "X-Big: " + "a" * 20000])[0] == 431
    assert r.metric("ferry_router_http_requests_total", 'result="redirect"') == 25
    assert r.metric("ferry_router_http_requests_total", 'result="client_error"') == 7
    assert r.metric("ferry_router_answers_total", 'node="v1"') == 1
    assert r.proc.alive()


def test_http_redirect_ignores_the_case_of_the_host(tmp_path, procs):
    """Host names are case-insensitive (RFC 9110 4.2.3): the same object must
    go to the same node whatever the case, or it is fetched and cached twice."""
    r = start_router(tmp_path, procs, "router", REDIRECTOR, http=True)
    for i in range(8):
        want = redirect(r.addr, f"/case/{i}")
        assert want[0] == 302
        assert redirect(r.addr, f"/case/{i}", host="WWW.Example.TEST") == want, i


def test_http_redirect_accepts_the_absolute_form(tmp_path, procs):
    """RFC 9112 3.2.2: a server MUST accept a request target in absolute-form."""
    r = start_router(tmp_path, procs, "router", REDIRECTOR, http=True)
    want = redirect(r.addr, "/abs/x.txt?y=1")
    assert want[0] == 302
    got = redirect(r.addr, "/abs/x.txt?y=1", extra=["--request-target", f"http://{WWW}/abs/x.txt?y=1"])
    assert got == want


# ---- 7. config errors ----------------------------------------------------------

def check_conf(tmp_path, name, body):
    conf = tmp_path / name
    conf.write_text("router {\n    cdn alpha;\n    listen 127.0.0.1:5300;\n    node a1 { address 192.0.2.1; }\n"
                    f"    zone {ZONE} {{ ns ns1.{ZONE}; service www; }}\n{body}\n}}\n")
    r = subprocess.run([FERRYD, "-t", "-c", str(conf)], capture_output=True, text=True, timeout=60 * SLOW)
    return conf, r


def test_config_errors(tmp_path):
    cases = [
        ("area 10.0.0.0/8 nosuch;", 6, 'area 10.0.0.0/8: "nosuch" is neither a node nor a peer'),
        ("peer alpha { handoff cname; cname cdn.alpha.test; }", 6, "peer alpha: that is this router's own cdn id"),
        ("area 10.0.0.0/33 a1;", 6, 'area: "10.0.0.0/33" is not an IPv4 or IPv6 prefix'),
        ("area 10.0.0.300/8 a1;", 6, 'area: "10.0.0.300/8" is not an IPv4 or IPv6 prefix'),
        ("peer beta { handoff ecs; }", 6, "peer beta: handoff ecs needs the ecs_server option"),
        ("peer beta { handoff ns; }", 6, "peer beta: handoff ns needs the ns option"),
        ("\n    peer beta { handoff cname; cname cdn.beta.test; }\n    area 10.0.0.0/8 a1 beta;", 8,
         "area 10.0.0.0/8: a peer must be the only target of its area"),
    ]
    for i, (body, line, msg) in enumerate(cases):
        conf, r = check_conf(tmp_path, f"bad{i}.conf", "    " + body)
        assert r.returncode == 1, (body, r.stdout, r.stderr)
        assert f"{conf}:{line}: {msg}" in r.stderr, (body, r.stderr)
    areas = tmp_path / "areas.txt"
    areas.write_text("# areas\n10.0.0.0/8 a1\n\n11.0.0.0/8   a1,bogus   # a typo\n12.0.0.0/40 a1\n13.0.0.0/8\n")
    conf, r = check_conf(tmp_path, "badfile.conf", f"    area_file {areas};")
    assert r.returncode == 1
    assert f'{areas}:4: "bogus" is neither a node nor a peer' in r.stderr, r.stderr
    assert f'{areas}:5: "12.0.0.0/40" is not an IPv4 or IPv6 prefix' in r.stderr, r.stderr
    assert f"{areas}:6: expected PREFIX TARGET[,TARGET...]" in r.stderr, r.stderr
    conf, r = check_conf(tmp_path, "missing.conf", f"    area_file {tmp_path}/nonexistent.txt;")
    assert r.returncode == 1 and f"{conf}:6: area_file {tmp_path}/nonexistent.txt:" in r.stderr, r.stderr
    # And a good one passes.
    areas.write_text("10.0.0.0/8 a1\n2001:db8::/32 a1\n")
    conf, r = check_conf(tmp_path, "good.conf", f"    area_file {areas};")
    assert r.returncode == 0, r.stderr


# ---- 8. a large area file, and reload under load ------------------------------

def test_large_area_file_and_reload_under_query_load(tmp_path, procs):
    n = 100_000
    lines = []
    for i in range(n):
        a, b, c = 50 + i // 65536, (i // 256) % 256, i % 256
        lines.append(f"{a}.{b}.{c}.0/24 {'a1' if (b + c) % 2 == 0 else 'a2'}\n")
    areas = tmp_path / "areas.txt"
    areas.write_text("# generated\n" + "".join(lines))
    body = f"""
    node a1 {{ address 192.0.2.1; }}
    node a2 {{ address 192.0.2.2; }}
    area_file {areas};
    zone {ZONE} {{
        ns ns1.{ZONE};
        service www;
    }}
"""
    r = start_router(tmp_path, procs, "router", body)
    addr = r.addr
    assert api(r)["areas"]["prefixes"] == n
    resp = query(addr, WWW, ecs=("50.3.4.0", 24))
    assert addrs(resp) == ["192.0.2.2"] and scope_of(resp) == 24
    assert addrs(query(addr, WWW, ecs=("51.100.7.0", 24))) == ["192.0.2.2"]
    assert addrs(query(addr, WWW, ecs=("51.100.8.0", 24))) == ["192.0.2.1"]

    results = {"ok": 0, "failed": 0, "a3": 0, "errors": []}
    stop = threading.Event()

    def hammer():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(1.0)
        i = 0
        while not stop.is_set():
            i += 1
            q = dns.message.make_query(WWW, "A", use_edns=0,
                                       options=[dns.edns.ECSOption("40.1.0.0" if i % 2 else "50.3.4.0", 24)])
            wire = q.to_wire()
            answer = None
            for _attempt in range(2):  # one retry at most
                sock.sendto(wire, (addr, PORT))
                try:
                    while True:
                        data = sock.recv(4096)
                        m = dns.message.from_wire(data)
                        if m.id == q.id:
                            answer = m
                            break
                except socket.timeout:
                    continue
                break
            if answer is None or answer.rcode() != dns.rcode.NOERROR or not addrs(answer):
                results["failed"] += 1
                results["errors"].append((i, answer))
            else:
                results["ok"] += 1
                results["a3"] += addrs(answer) == ["192.0.2.3"]
        sock.close()

    t = threading.Thread(target=hammer)
    t.start()
    try:
        wait_for(lambda: results["ok"] >= 200, 10, "queries before the reload")
        r.write_config(router_conf(addr, body + "    node a3 { address 192.0.2.3; }\n    area 40.0.0.0/8 a3;\n"))
        r.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: results["a3"] >= 50, 20, "answers from the reloaded table")
        ok_at_reload = results["ok"]
        wait_for(lambda: results["ok"] >= ok_at_reload + 200, 10, "queries after the reload")
    finally:
        stop.set()
        t.join()
    assert results["failed"] == 0, results["errors"][:5]
    assert api(r)["areas"]["prefixes"] == n + 1
    resp = query(addr, WWW, ecs=("40.1.0.0", 24))
    assert addrs(resp) == ["192.0.2.3"] and scope_of(resp) == 8
    assert addrs(query(addr, WWW, ecs=("50.3.4.0", 24))) == ["192.0.2.2"]
    assert "router: reloaded" in r.proc.output()
    # A bad config is refused and the running one keeps answering.
    r.write_config(router_conf(addr, body + "    area 40.0.0.0/8 nosuch;\n"))
    r.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: r.metric("ferry_config_reload_failures_total") == 1, 10, "the reload refused")
    assert addrs(query(addr, WWW, ecs=("40.1.0.0", 24))) == ["192.0.2.3"]
    assert api(r)["areas"]["prefixes"] == n + 1
