"""Every shared store, through a round-robin switch, with curl: one curl
process makes several connections (Connection: close), each offering the
latest session it holds; the switch sends them to different caches, and
each resumes there. Counted on the caches' side (ferry_tls_handshakes_total).
With the local store (the control) only some resume. TLS 1.3 also checks
that a resumption hands the client a fresh ticket: curl, like OpenSSL's
client cache, does not offer a ticket twice."""
import os
import shutil
import socket
import subprocess

import pytest

from conftest import SLOW, Ferryd, Proc, fresh_addr, wait_for

HOST = "www.example.test"
KEY = "1 " + "3c" * 32 + "\n"
N = 6  # connections per curl run


def port_open(addr, port):
    try:
        socket.create_connection((addr, port), timeout=0.2).close()
        return True
    except OSError:
        return False


def start_node(tmp_path, procs, pki, ngx, store):
    keys = tmp_path / "keys"
    keys.write_text(KEY)
    os.chmod(keys, 0o600)
    addrs = {i: fresh_addr() for i in (1, 2, 3)}
    redis_addr = fresh_addr()
    if store == "redis":
        d = tmp_path / "redis"
        d.mkdir()
        p = Proc(["redis-server", "--bind", redis_addr, "--port", "6391", "--save", "", "--appendonly", "no",
                  "--dir", str(d)], str(d / "redis.log"))
        procs.append(p)
        wait_for(lambda: port_open(redis_addr, 6391), 10, "redis-server")
    cert, key = pki["certs"]["www"]
    caches = {}
    for i, a in addrs.items():
        peers = "".join(f"peer {addrs[j]}:7400; " for j in addrs if j != i)
        extra = {
            "local": "tls_tickets off;",
            "group": f"tls_tickets off; tls_session_store group; tls_group {{ listen {a}:7400; {peers} "
                     f"key_file {keys}; sender {i}; }}",
            "redis": f"tls_tickets off; tls_session_store redis; tls_redis {{ server {redis_addr}:6391; "
                     f"key_file {keys}; sender {i}; }}",
            "tickets": f"tls_tickets on; tls_session_store group; tls_ticket_keys group; tls_group {{ "
                       f"listen {a}:7400; {peers} key_file {keys}; sender {i}; }}",
        }[store]
        conf = f"""
cache {{
    name cache-{i};
    listen_tls {a}:8443;
    certificate {cert} {key};
    {extra}
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
        f = Ferryd(str(tmp_path), f"cache-{i}", conf, admin_addr=f"{a}:9000")
        procs.append(f)
        f.start([(a, 8443), (a, 9000)])
        caches[i] = f
    if store == "redis":
        wait_for(lambda: all("tls redis" in c.proc.output() for c in caches.values()), 10, "redis connected")
    sw = fresh_addr()
    backends = "\n".join(f"    backend cache-{i} {a}:8443;" for i, a in addrs.items())
    s = Ferryd(str(tmp_path), "switch", f"switch {{\n    listen {sw}:8443;\n    policy roundrobin;\n{backends}\n"
               f"    health_check off;\n}}\n")
    procs.append(s)
    s.start([(sw, 8443)])
    return sw, caches


def resumed_total(caches):
    total = 0
    for c in caches.values():
        status, body = c.admin_get("/metrics", token=False)
        assert status == 200
        for line in body.splitlines():
            if line.startswith("ferry_tls_handshakes_total") and 'handshake="resumed"' in line:
                total += int(float(line.split()[-1]))
    return total


def curl_many(sw, pki, version):
    """One curl process, N connections, at most 10 per second: a session
    made on one cache has time to reach the others (real clients do not
    reconnect within a millisecond either)."""
    url = f"https://{HOST}:8443/"
    argv = ["curl", "-sS", "--max-time", str(20 * SLOW), "--cacert", pki["ca"], "--resolve", f"{HOST}:8443:{sw}",
            "--rate", "10/s", "-H", "Connection: close", "-D", "-", "-o", "/dev/null"] + version
    for _ in range(N):
        argv += [url]
    r = subprocess.run(argv, capture_output=True, timeout=60 * SLOW)
    assert r.returncode == 0, r.stderr
    vias = [l.split()[2] for l in r.stdout.decode().split("\r\n") if l.lower().startswith("via:")]
    assert len(vias) == N, r.stdout
    return vias


@pytest.mark.parametrize("store", ["group", "redis", "tickets", "local"])
@pytest.mark.parametrize("version", [["--tlsv1.2", "--tls-max", "1.2"], ["--tlsv1.3"]], ids=["tls1.2", "tls1.3"])
def test_curl_resumes_on_every_cache(tmp_path, procs, pki, nginx_factory, store, version):
    if store == "redis" and shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed")
    ngx = nginx_factory("")
    ngx.put("/index.html", "hi\n")
    sw, caches = start_node(tmp_path, procs, pki, ngx, store)
    before = resumed_total(caches)
    vias = curl_many(sw, pki, version)
    assert set(vias) == {"cache-1", "cache-2", "cache-3"}, vias
    resumed = resumed_total(caches) - before
    if store == "local":
        # Only reconnections that happen to land on the first cache resume.
        assert resumed < N - 1, resumed
    else:
        assert resumed == N - 1, (store, vias, resumed)
