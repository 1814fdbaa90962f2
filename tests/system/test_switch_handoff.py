"""Connection hand-off: the switch passes each client's socket to a cache on
the same host (SCM_RIGHTS over the cache's unix socket) instead of relaying
it. The same node as test_switch.py (nginx origin, three caches with labels
1..3, one switch), with `handoff` on every cache and backend. Resumptions
still land on their cache, the cache sees the client's own address, plain
HTTP and large bodies work, a dead cache is failed over, a full hand-off
connection falls back to the relay, and hostile messages on the socket are
refused without harm."""
import json
import os
import signal
import socket
import ssl
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import SLOW, Ferryd, fresh_addr, parse_response, wait_for
from test_switch import HOST, Node, resume_three_times

FIXTURES = os.environ.get("FERRY_FIXTURES") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "fixtures", "clienthello")


def handoffs(node, i):
    return node.caches[i].metric("ferry_cache_handoffs_total", 'result="accepted"')


def settled(node):
    """Waits for the harness's port probe of the switch's plain listener (a
    connect and close, handed over like any connection) to reach its cache,
    and returns each cache's hand-off count then."""
    wait_for(lambda: sum(handoffs(node, i) for i in node.caches) == 1, 10 * SLOW, "the port probe handed over")
    return {i: handoffs(node, i) for i in node.caches}


def access_records(node, i):
    path = os.path.join(node.tmp, f"access-{i}.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.split() for l in f if l.strip() and not l.startswith("#")]


@pytest.mark.parametrize("version,tickets,step", [
    ("-tls1_2", "off", "session_id"),
    ("-tls1_2", "on", "ticket"),
    ("-tls1_3", "off", "psk"),
    ("-tls1_3", "on", "psk"),
])
def test_handed_off_resumption_lands_on_the_same_cache(tmp_path, procs, nginx_factory, pki, version,
                                                       tickets, step):
    node = Node(tmp_path, procs, nginx_factory, pki, policy="psk ticket session_id roundrobin",
                tickets=tickets, handoff=True)
    base = settled(node)
    first, i = resume_three_times(node, version, tmp_path / "sess.pem")
    # Every connection went to the cache as a socket, none through the relay.
    assert handoffs(node, i) == base[i] + 4
    assert node.sw.metric("ferry_switch_handoffs_total", f'backend="{first}"') == base[i] + 4
    assert node.sw.metric("ferry_switch_connections_total", f'backend="{first}",step="{step}"') == 3
    # The switch saw no ServerHello: its handshake counters stay at zero.
    assert node.sw.metric("ferry_switch_handshakes_total", 'handshake="resumed"') in (0, None)
    b = node.backend(first)
    assert b["handoff"] == node.sock(i) and b["handed_off"] == base[i] + 4 and b["handoff_fallbacks"] == 0
    assert node.sw.metric("ferry_switch_active_connections") in (0, None)


def test_curl_plain_http_and_the_clients_own_address(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, policy="psk ticket session_id hash", handoff=True)
    base = sum(settled(node).values())
    body = os.urandom(3 << 20)
    node.ngx.put("/big.bin", body)
    src = fresh_addr()
    for tls in ("1.2", "1.3"):
        url = f"https://{HOST}:8443/big.bin"
        r = subprocess.run(["curl", "-sS", "--cacert", pki["ca"], "--resolve", f"{HOST}:8443:{node.addr}",
                            "--interface", src, f"--tlsv{tls}", "--tls-max", tls, "-o", "-", url, url],
                           capture_output=True, timeout=60 * SLOW)
        assert r.returncode == 0, r.stderr
        assert r.stdout == body + body
    # Plain HTTP through listen_http: the request head travels with the socket.
    r = subprocess.run(["curl", "-sS", "--interface", src, "-H", f"Host: {HOST}", "-o", "-",
                        f"http://{node.addr}:8080/big.bin"], capture_output=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    assert r.stdout == body
    # One kept-alive connection per curl run: three hand-offs.
    assert sum(handoffs(node, i) for i in (1, 2, 3)) == base + 3
    # The caches logged the client's own address (no PROXY header involved),
    # and as their side the address the client connected to: the switch's.
    recs = [rec for i in (1, 2, 3) for rec in access_records(node, i)]
    assert len(recs) == 5, recs
    assert all(rec[3] == src and rec[5] == node.addr for rec in recs), recs

def test_dead_cache_is_failed_over_and_a_restart_takes_its_socket_back(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, policy="hash", check="http", handoff=True)
    clients = [fresh_addr() for _ in range(12)]
    first = {a: node.get(a)[1] for a in clients}
    victim = first[clients[0]]
    i = int(victim.split("-")[1])
    node.caches[i].proc.send_signal(signal.SIGKILL)
    node.caches[i].proc.p.wait(timeout=10)
    # The socket file stays behind, with nobody listening: the switch's
    # hand-off fails like a refused connect and the client is served elsewhere.
    assert os.path.exists(node.sock(i))
    for a in clients:
        status, name = node.get(a)
        assert status == 200 and name != victim
    # A new process replaces the stale socket file and takes hand-offs again.
    node.start_cache(i)
    wait_for(lambda: node.backend(victim)["up"], 10 * SLOW, "the restarted cache back up")
    before = handoffs(node, i) or 0
    for a in clients:
        if first[a] == victim:
            assert node.get(a)[1] == victim
    assert (handoffs(node, i) or 0) > before


def test_a_second_cache_on_a_live_socket_is_refused(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, handoff=True, backends=(1,))
    a = fresh_addr()
    other = Ferryd(node.tmp, "intruder", node.cache_conf(1).replace(node.addrs[1], a))
    procs.append(other)
    other.start()
    wait_for(lambda: not other.proc.alive(), 10 * SLOW, "the second cache to give up")
    assert other.proc.p.returncode != 0
    assert "another process listens on it" in other.proc.output(), other.proc.output()
    # The first cache keeps its socket.
    assert os.path.exists(node.sock(1))
    assert node.get(fresh_addr())[0] == 200
    assert handoffs(node, 1) >= 1

    # A path that is not a socket is left alone.
    plain = os.path.join(node.tmp, "not-a-socket")
    with open(plain, "w") as f:
        f.write("keep me\n")
    third = Ferryd(node.tmp, "third", node.cache_conf(1).replace(node.addrs[1], fresh_addr())
                   .replace(node.sock(1), plain))
    procs.append(third)
    third.start()
    wait_for(lambda: not third.proc.alive(), 10 * SLOW, "the third cache to give up")
    assert "exists and is not a socket" in third.proc.output(), third.proc.output()
    with open(plain) as f:
        assert f.read() == "keep me\n"


def test_full_handoff_connection_falls_back_to_the_relay(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, policy="roundrobin", handoff=True, backends=(1,))
    with open(os.path.join(FIXTURES, "openssl_tls13_fresh.bin"), "rb") as f:
        hello = f.read()
    cache = node.caches[1]
    cache.proc.send_signal(signal.SIGSTOP)
    node.sw.metric("ferry_switch_handoffs_total")  # the switch answers while the cache is stopped
    socks = []
    try:
        # With the cache stopped nothing is read from its hand-off
        # connections, so their socket buffers fill, and the switch relays.
        for _ in range(1500):
            s = socket.create_connection((node.addr, 8443), timeout=5)
            s.sendall(hello)
            socks.append(s)
            if (node.sw.metric("ferry_switch_handoff_fallbacks_total") or 0) > 0:
                break
        wait_for(lambda: (node.sw.metric("ferry_switch_handoff_fallbacks_total") or 0) > 0, 10 * SLOW,
                 "a fallback to the relay")
    finally:
        cache.proc.send_signal(signal.SIGCONT)
    # Both kinds of connection get their ServerHello once the cache runs again.
    for s in socks[:3] + socks[-3:]:
        s.settimeout(10 * SLOW)
        assert s.recv(5)[:1] == b"\x16"
    for s in socks:
        s.close()
    assert node.get(fresh_addr())[0] == 200
    assert (node.sw.metric("ferry_switch_handoffs_total") or 0) > 0


def send_msg(path, payload, fds):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    socket.send_fds(s, [payload], fds)
    return s


def tcp_pair():
    """A TCP connection on loopback: (our client end, the server end to hand over)."""
    with socket.socket() as lst:
        lst.bind((fresh_addr(), 0))
        lst.listen(1)
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
        return c, s


def test_hostile_messages_are_refused(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, handoff=True, backends=(1,))
    path = node.sock(1)
    client, tcp = tcp_pair()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    unix_a, unix_b = socket.socketpair()
    good_head = b"FRHO\x01\x00"
    req = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
    cases = [
        (b"FRHO\x01\x00\x00\x00", []),                            # no descriptor
        (b"XXXX\x01\x00\x00\x00", [tcp.fileno()]),                # bad magic
        (b"FRHO\x02\x00\x00\x00", [tcp.fileno()]),                # unknown version
        (b"FRHO\x01\x80\x00\x00", [tcp.fileno()]),                # unknown flag
        (good_head + b"\x00\x05abc", [tcp.fileno()]),             # length mismatch
        (b"FRH", [tcp.fileno()]),                                 # truncated header
        (good_head + b"\x00\x00", [udp.fileno()]),                # a UDP socket
        (good_head + b"\x00\x00", [unix_a.fileno()]),             # a unix socket
        (good_head + b"\x00\x00", [tcp.fileno(), tcp.fileno()]),  # two descriptors
    ]
    accepted_before = settled(node)[1]
    conns = [send_msg(path, p, fds) for p, fds in cases]
    wait_for(lambda: (node.caches[1].metric("ferry_cache_handoffs_total", 'result="refused"') or 0)
             == len(cases), 10 * SLOW, "every message refused")
    assert handoffs(node, 1) == accepted_before
    # The cache closed its copies without a word: our client end got nothing.
    client.settimeout(0.5)
    with pytest.raises(socket.timeout):
        client.recv(1)
    # A well-formed hand-off from a test process (root, like the cache) is served.
    good, served = tcp_pair()
    conns.append(send_msg(path, good_head + len(req).to_bytes(2, "big") + req, [served.fileno()]))
    served.close()
    good.settimeout(10 * SLOW)
    data = b""
    while True:
        chunk = good.recv(65536)
        if not chunk:
            break
        data += chunk
    assert parse_response(data)[0] == 200
    # And the switch's own hand-offs still work.
    assert node.get(fresh_addr())[0] == 200
    for s in conns + [client, tcp, udp, unix_a, unix_b, good]:
        s.close()


def test_config_errors(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"""
switch {{
    listen 127.0.0.1:8443;
    backend a 127.0.0.1:9443 handoff relative/path.sock;
}}
cache {{
    listen 127.0.0.1:8080;
    handoff /{"x" * 120}.sock;
    publisher {HOST} {{ origin http://127.0.0.1:8081; }}
}}
""")
    from conftest import FERRYD
    r = subprocess.run([FERRYD, "-t", "-c", str(conf)], capture_output=True, timeout=20)
    assert r.returncode != 0
    err = r.stderr.decode()
    assert f"{conf}:4:" in err and "handoff \"relative/path.sock\" must be an absolute path" in err, err
    assert f"{conf}:8:" in err and "must be an absolute path of at most 107 bytes" in err, err


def test_a_draining_cache_answers_what_was_handed_over(tmp_path, procs, nginx_factory, pki):
    node = Node(tmp_path, procs, nginx_factory, pki, policy="roundrobin", handoff=True)
    settled(node)
    total0 = node.sw.metric("ferry_switch_handoffs_total")
    # One cache is stopped while TLS clients arrive: the switch hands a third
    # of them to it, and they wait in its queue with their ClientHello.
    victim = 1
    node.caches[victim].proc.send_signal(signal.SIGSTOP)
    before = node.sw.metric("ferry_switch_handoffs_total", f'backend="cache-{victim}"')
    with ThreadPoolExecutor(max_workers=21) as pool:
        futs = [pool.submit(node.get, fresh_addr(), "/", 8443, True, 30) for _ in range(21)]
        wait_for(lambda: node.sw.metric("ferry_switch_handoffs_total") == total0 + 21, 10 * SLOW,
                 "21 connections handed over")
        queued = node.sw.metric("ferry_switch_handoffs_total", f'backend="cache-{victim}"') - before
        assert queued == 7, queued
        # Told to stop, then let run: it takes what is queued, and each of
        # those clients (in the middle of its handshake when the drain
        # starts) gets its answer before the cache exits.
        node.caches[victim].proc.send_signal(signal.SIGTERM)
        node.caches[victim].proc.send_signal(signal.SIGCONT)
        results = []
        for f in futs:
            try:
                results.append(f.result())
            except Exception as e:  # reported below, with the caches' logs
                results.append(("error", repr(e)))
    logs = {f"cache-{i}": c.proc.output()[-4000:] for i, c in node.caches.items()}
    logs["switch"] = node.sw.proc.output()[-6000:]
    assert all(status == 200 for status, _ in results), (results, logs)
    assert sum(1 for _, name in results if name == f"cache-{victim}") == 7, results
    assert node.caches[victim].proc.p.wait(timeout=20 * SLOW) == 0
    assert not os.path.exists(node.sock(victim))
    # Its socket is gone: new clients go to the others.
    for _ in range(6):
        assert node.get(fresh_addr())[1] != f"cache-{victim}"


def test_leastconn_counts_what_the_caches_report(tmp_path, procs, nginx_factory, pki):
    """Handed-off connections leave the switch, so leastconn counts what each
    cache reports back on its hand-off connection: its open client
    connections, whoever sent them. Connections opened to cache-1 directly
    keep new clients away from it until they close."""
    node = Node(tmp_path, procs, nginx_factory, pki, policy="leastconn", http_policy="leastconn", handoff=True)
    settled(node)
    names = [f"cache-{i}" for i in (1, 2, 3)]

    def load(name):
        return node.backend(name)["load"]

    def reported(name):
        return node.backend(name).get("reported_load")

    def open_conn(addr, port=8080):
        """A kept-alive plain HTTP connection with one request answered."""
        s = socket.create_connection((addr, port), timeout=10 * SLOW)
        s.sendall(f"GET /index.html HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        data = b""
        while b"hello from the origin\n" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data
        return s

    # Until every cache has had a connection, the switch has no hand-off
    # connection to it and so no report.
    warm = []
    for _ in range(30):
        if all(reported(n) is not None for n in names):
            break
        warm.append(open_conn(node.addr))
        time.sleep(0.15)
    wait_for(lambda: all(reported(n) is not None for n in names), 5 * SLOW, "a report from every cache")
    for s in warm:
        s.close()
    wait_for(lambda: all(reported(n) == 0 for n in names), 10 * SLOW, "every cache empty again")

    direct = [open_conn(node.addrs[1]) for _ in range(5)]
    wait_for(lambda: load("cache-1") == 5, 10 * SLOW, "cache-1 reporting its 5 direct connections")
    # the same count in both processes' metrics
    assert node.caches[1].metric("ferry_cache_client_connections") == 5
    assert node.sw.metric("ferry_switch_backend_reported_load", 'backend="cache-1"') == 5
    before = {i: handoffs(node, i) for i in (1, 2, 3)}
    via_switch = []
    for k in range(1, 5):
        via_switch.append(open_conn(node.addr))
        wait_for(lambda: load("cache-2") + load("cache-3") == k, 10 * SLOW, f"{k} connections counted")
        # settle on the caches' own reports before the next decision
        wait_for(lambda: (reported("cache-2") or 0) + (reported("cache-3") or 0) == k, 10 * SLOW,
                 f"{k} connections reported")
    got = {i: handoffs(node, i) - before[i] for i in (1, 2, 3)}
    assert got == {1: 0, 2: 2, 3: 2}, got

    # The direct connections close: cache-1 reports 0 and takes the next two.
    for s in direct:
        s.close()
    wait_for(lambda: reported("cache-1") == 0, 10 * SLOW, "cache-1 empty")
    for _ in range(2):
        via_switch.append(open_conn(node.addr))
    assert handoffs(node, 1) - before[1] == 2
    for s in via_switch:
        s.close()
