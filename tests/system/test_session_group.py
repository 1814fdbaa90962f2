"""The `group` session store: three caches share TLS sessions over UDP,
sealed with the group key (docs/session-wire.md). A session issued by one
cache resumes on the others, directly and through a round-robin switch, for
TLS 1.2 session IDs and TLS 1.3 stateful tickets. Forged, corrupted,
truncated, replayed and wrong-key datagrams are refused and counted. A key
rotation by reload keeps resumption working, and a restarted cache catches
up on live sessions from its peers."""
import json
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import SLOW, Ferryd, fresh_addr, nft, wait_for

HOST = "www.example.test"
REQ = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
PORT = 7400
KEY1 = "1 " + "11" * 32 + "\n"
KEY2 = "2 " + "22" * 32 + "\n"


def udp_port():
    """A free UDP port on 127.0.0.1 for the test's own fake peer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


class Group:
    def __init__(self, tmp_path, procs, pki, nginx_factory, spy=None, extra="", tickets="off"):
        self.tmp, self.procs, self.pki, self.extra, self.tickets = tmp_path, procs, pki, extra, tickets
        self.ngx = nginx_factory("")
        self.ngx.put("/index.html", "hi\n")
        self.keys = tmp_path / "group.keys"
        self.write_keys(KEY1)
        self.addrs = {i: fresh_addr() for i in (1, 2, 3)}
        self.spy = spy  # (addr, port) that cache-1 also sends to
        self.caches = {}
        for i in (1, 2, 3):
            self.start(i)

    def write_keys(self, text):
        self.keys.write_text(text)
        os.chmod(self.keys, 0o600)

    def conf(self, i):
        cert, key = self.pki["certs"]["www"]
        peers = "".join(f"        peer {self.addrs[j]}:{PORT};\n" for j in (1, 2, 3) if j != i)
        if self.spy and i == 1:
            peers += f"        peer {self.spy[0]}:{self.spy[1]};\n"
        return f"""
cache {{
    name cache-{i};
    listen_tls {self.addrs[i]}:8443;
    certificate {cert} {key};
    tls_label {i};
    tls_tickets {self.tickets};
    tls_session_store group;
    tls_group {{
        listen {self.addrs[i]}:{PORT};
{peers}        key_file {self.keys};
    }}
    {self.extra}
    publisher {HOST} {{ origin http://{self.ngx.addr}:8080; }}
}}
"""

    def start(self, i):
        a = self.addrs[i]
        f = Ferryd(str(self.tmp), f"cache-{i}", self.conf(i), admin_addr=f"{a}:9000")
        self.procs.append(f)
        f.start([(a, 8443), (a, 9000)])
        self.caches[i] = f

    def stats(self, i):
        status, body = self.caches[i].admin_get("/api/v1/stats")
        assert status == 200, body
        c = json.loads(body)["cache"]
        return c["tls_group"], c["tls_sessions"]

    def s_client(self, addr, version, flag, sess):
        r = subprocess.run(["openssl", "s_client", "-connect", f"{addr}:8443", "-servername", HOST,
                            "-CAfile", self.pki["ca"], version, "-ign_eof", flag, str(sess)],
                           input=REQ, capture_output=True, timeout=20 * SLOW)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, out + r.stderr.decode(errors="replace")
        return out


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_any_cache_resumes_what_another_issued(tmp_path, procs, pki, nginx_factory, version):
    g = Group(tmp_path, procs, pki, nginx_factory)
    sess = tmp_path / "s.pem"
    assert "New, TLSv1" in g.s_client(g.addrs[1], version, "-sess_out", sess)
    wait_for(lambda: all(g.stats(i)[0]["received"] >= 1 for i in (2, 3)), 10, "replicated")
    for i in (2, 3, 1):
        out = g.s_client(g.addrs[i], version, "-sess_in", sess)
        assert "Reused, TLSv1" in out, (i, out)
    assert g.stats(1)[0]["replicated"] >= 1
    # Through a round-robin switch: every connection resumes, wherever it lands.
    sw_addr = fresh_addr()
    backends = "\n".join(f"    backend cache-{i} {g.addrs[i]}:8443;" for i in (1, 2, 3))
    sw = Ferryd(str(tmp_path), "switch", f"switch {{\n    listen {sw_addr}:8443;\n    policy roundrobin;\n"
                f"{backends}\n    health_check off;\n}}\n")
    procs.append(sw)
    sw.start([(sw_addr, 8443)])
    seen = set()
    for _ in range(6):
        out = g.s_client(sw_addr, version, "-sess_in", sess)
        assert "Reused, TLSv1" in out, out
        seen.add([l for l in out.splitlines() if l.lower().startswith("via:")][0].split()[2])
    assert seen == {"cache-1", "cache-2", "cache-3"}, seen


def test_bad_datagrams_are_refused_and_counted(tmp_path, procs, pki, nginx_factory):
    spy = udp_port()
    g = Group(tmp_path, procs, pki, nginx_factory, spy=spy.getsockname())
    spy.settimeout(10 * SLOW)
    g.s_client(g.addrs[1], "-tls1_2", "-sess_out", tmp_path / "s.pem")
    real = b""
    while len(real) < 6 or real[5] != 1:  # skip the sync requests: the first SESSION datagram
        real, _ = spy.recvfrom(65536)     # cache-1 sent to every peer, cache-2 included
    wait_for(lambda: g.stats(2)[0]["received"] >= 1, 10, "replicated to cache-2")
    target = (g.addrs[2], PORT)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.bind((g.addrs[1], 0))
    out.sendto(real, target)                                   # replayed
    out.sendto(real[:-1] + bytes([real[-1] ^ 1]), target)      # tag changed: forged
    mid = len(real) // 2
    out.sendto(real[:mid] + bytes([real[mid] ^ 0x80]) + real[mid + 1:], target)  # ciphertext corrupted
    out.sendto(real[:30], target)                              # truncated
    out.sendto(real[:6] + b"\x00\x09" + real[8:], target)      # key id 9: not in the ring
    out.sendto(b"GET / HTTP/1.1\r\nHost: www.example.test\r\nAccept: */*\r\n\r\n", target)  # not ours
    wait_for(lambda: g.stats(2)[0]["rejected"] >= 6, 10, "six refusals")
    grp, store = g.stats(2)
    by = grp["rejected_by"]
    assert by.get("replay") == 1 and by.get("auth") == 2 and by.get("short") == 1, by
    assert by.get("key_id") == 1 and by.get("magic") == 1, by
    assert grp["received"] == 1 and store["received"] == 1, (grp, store)
    assert g.caches[2].proc.alive()


def test_key_rotation_and_catch_up_after_restart(tmp_path, procs, pki, nginx_factory):
    g = Group(tmp_path, procs, pki, nginx_factory)
    # Rotation: every server gets keys 1 and 2 and reloads; 2 now seals.
    g.write_keys(KEY1 + KEY2)
    for i in (1, 2, 3):
        g.caches[i].proc.send_signal(signal.SIGHUP)
    for i in (1, 2, 3):
        wait_for(lambda: "sealing with key 2" in g.caches[i].proc.output(), 10, f"cache-{i} reloaded")
    sess = tmp_path / "r.pem"
    g.s_client(g.addrs[1], "-tls1_3", "-sess_out", sess)
    wait_for(lambda: g.stats(2)[0]["received"] >= 1, 10, "replicated under key 2")
    assert "Reused, TLSv1.3" in g.s_client(g.addrs[2], "-tls1_3", "-sess_in", sess)
    # Key 1 retired everywhere: still fine.
    g.write_keys(KEY2)
    for i in (1, 2, 3):
        g.caches[i].proc.send_signal(signal.SIGHUP)
    # A restarted cache-3 asks its peers and catches up on the live sessions.
    g.caches[3].proc.stop()
    g.start(3)
    wait_for(lambda: g.stats(3)[1]["received"] >= 1, 10, "cache-3 caught up")
    assert "Reused, TLSv1.3" in g.s_client(g.addrs[3], "-tls1_3", "-sess_in", sess)
    assert g.stats(1)[0]["sync_requests"] + g.stats(2)[0]["sync_requests"] >= 1


def ticket_name(sess):
    """The first 16 bytes of the ticket openssl saved: the key name."""
    text = subprocess.run(["openssl", "sess_id", "-in", str(sess), "-text", "-noout"],
                          capture_output=True, text=True, check=True).stdout
    lines = text.split("TLS session ticket:", 1)[1].splitlines()[1:3]
    hexes = "".join(l.split(" - ", 1)[1][:47].replace("-", " ").replace(" ", "") for l in lines)
    return bytes.fromhex(hexes)[:16]


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_group_ticket_keys(tmp_path, procs, pki, nginx_factory, version):
    # Control: per-process ticket keys do not resume on another cache.
    (tmp_path / "local").mkdir()
    g0 = Group(tmp_path / "local", procs, pki, nginx_factory, tickets="on")
    sess = tmp_path / "local.pem"
    g0.s_client(g0.addrs[1], version, "-sess_out", sess)
    assert "New, TLSv1" in g0.s_client(g0.addrs[2], version, "-sess_in", sess)
    # Group keys: a ticket from cache-1 resumes on the others, with nothing sent.
    (tmp_path / "group").mkdir()
    g = Group(tmp_path / "group", procs, pki, nginx_factory, tickets="on", extra="tls_ticket_keys group;")
    sess = tmp_path / "group.pem"
    g.s_client(g.addrs[1], version, "-sess_out", sess)
    name = ticket_name(sess)
    assert name[:4] == b"FTK\x01" and name[4:6] == b"\x00\x01" and name[14:] == b"\x00\x00", name
    for i in (2, 3):
        out = g.s_client(g.addrs[i], version, "-sess_in", sess)
        assert "Reused, TLSv1" in out, (i, out)


def settled(g, i):
    """Waits until cache i has taken in what was sent to it (its count stops moving)."""
    last = None
    while True:
        now = g.stats(i)[0]["received"]
        if now == last:
            return now
        last = now
        time.sleep(0.3 * SLOW)


def test_udp_loss_costs_only_resumption(netns, tmp_path, procs, pki, nginx_factory):
    """In the test's own network namespace: with the group's UDP dropped,
    then half dropped, every request still succeeds and only resumption
    suffers; nothing crashes or hangs; it recovers when the drop ends."""
    g = Group(tmp_path, procs, pki, nginx_factory)
    nft("add table inet ferrytest",
        "add chain inet ferrytest out { type filter hook output priority 0 ; }")

    def issue_and_resume(n, tag):
        resumed = 0
        for k in range(n):
            sess = tmp_path / f"{tag}{k}.pem"
            assert "200 OK" in g.s_client(g.addrs[1], "-tls1_2", "-sess_out", sess)
        settled(g, 2)
        for k in range(n):
            out = g.s_client(g.addrs[2], "-tls1_2", "-sess_in", tmp_path / f"{tag}{k}.pem")
            assert "200 OK" in out, out
            resumed += "Reused, TLSv1.2" in out
        return resumed

    # All of the group's UDP dropped: no session crosses, every request is served.
    nft(f"add rule inet ferrytest out udp dport {PORT} drop")
    before = g.stats(2)[0]["received"]
    assert issue_and_resume(10, "all") == 0
    assert g.stats(2)[0]["received"] == before
    assert g.stats(1)[0]["send_errors"] >= 10
    # Half of it dropped, at random.
    nft("flush chain inet ferrytest out",
        f"add rule inet ferrytest out udp dport {PORT} numgen random mod 2 == 0 drop")
    half = issue_and_resume(40, "half")
    assert 0 < half < 40, half
    # The drop ends: sessions cross again.
    nft("flush chain inet ferrytest out")
    before = g.stats(2)[0]["received"]
    assert issue_and_resume(5, "none") == 5
    assert g.stats(2)[0]["received"] == before + 5
    assert all(c.proc.alive() for c in g.caches.values())


def test_group_ticket_keys_follow_a_key_rotation(tmp_path, procs, pki, nginx_factory):
    g = Group(tmp_path, procs, pki, nginx_factory, tickets="on", extra="tls_ticket_keys group;")
    old = tmp_path / "old.pem"
    g.s_client(g.addrs[1], "-tls1_3", "-sess_out", old)
    assert ticket_name(old)[4:6] == b"\x00\x01"
    # Key 2 joins everywhere: tickets under key 1 still resume, and come back renewed under key 2.
    g.write_keys(KEY1 + KEY2)
    for i in (1, 2, 3):
        g.caches[i].proc.send_signal(signal.SIGHUP)
    for i in (1, 2, 3):
        wait_for(lambda: "sealing with key 2" in g.caches[i].proc.output(), 10, f"cache-{i} reloaded")
    new = tmp_path / "new.pem"
    out = g.s_client(g.addrs[2], "-tls1_3", "-sess_in", old)
    assert "Reused, TLSv1.3" in out, out
    g.s_client(g.addrs[3], "-tls1_3", "-sess_out", new)   # a new session: key 2 seals
    assert ticket_name(new)[4:6] == b"\x00\x02"
    # Key 1 retired: its tickets no longer open (a full handshake); key 2's do.
    g.write_keys(KEY2)
    for i in (1, 2, 3):
        g.caches[i].proc.send_signal(signal.SIGHUP)
    for i in (1, 2, 3):
        wait_for(lambda: g.caches[i].proc.output().count("sealing with key 2") >= 2, 10, f"cache-{i} reloaded")
    assert "New, TLSv1.3" in g.s_client(g.addrs[1], "-tls1_3", "-sess_in", old)
    assert "Reused, TLSv1.3" in g.s_client(g.addrs[1], "-tls1_3", "-sess_in", new)
