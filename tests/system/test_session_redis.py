"""The `redis` session store, against a real redis-server started by the
test: a session issued by one cache resumes on another; nothing readable
is stored in Redis; a cache started later catches up; a killed Redis
degrades to local sessions with a clear log line, and when Redis is back
the caches reconnect by themselves and share again."""
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from conftest import SLOW, Ferryd, Proc, fresh_addr, wait_for

HOST = "www.example.test"
REQ = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()
KEY = "1 " + "5a" * 32 + "\n"

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")


def port_open(addr, port):
    try:
        socket.create_connection((addr, port), timeout=0.2).close()
        return True
    except OSError:
        return False


class Redis:
    def __init__(self, tmp_path, procs):
        self.addr, self.port, self.tmp, self.procs = fresh_addr(), 6390, tmp_path, procs
        self.proc = None

    def start(self):
        d = self.tmp / "redis"
        d.mkdir(exist_ok=True)
        self.proc = Proc(["redis-server", "--bind", self.addr, "--port", str(self.port), "--save", "",
                          "--appendonly", "no", "--dir", str(d)], str(d / "redis.log"))
        self.procs.append(self.proc)
        wait_for(lambda: port_open(self.addr, self.port), 10, "redis-server")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-h", self.addr, "-p", str(self.port), "--raw"] + list(args),
                           capture_output=True, timeout=10)
        return r.stdout


class Node:
    def __init__(self, tmp_path, procs, pki, nginx_factory, redis):
        self.tmp, self.procs, self.pki, self.redis = tmp_path, procs, pki, redis
        self.ngx = nginx_factory("")
        self.ngx.put("/index.html", "hi\n")
        self.keys = tmp_path / "redis.keys"
        self.keys.write_text(KEY)
        os.chmod(self.keys, 0o600)
        self.addrs, self.caches = {}, {}

    def start(self, i):
        a = self.addrs.setdefault(i, fresh_addr())
        cert, key = self.pki["certs"]["www"]
        conf = f"""
cache {{
    name cache-{i};
    listen_tls {a}:8443;
    certificate {cert} {key};
    tls_label {i};
    tls_tickets off;
    tls_session_store redis;
    tls_redis {{
        server {self.redis.addr}:{self.redis.port};
        key_file {self.keys};
    }}
    publisher {HOST} {{ origin http://{self.ngx.addr}:8080; }}
}}
"""
        f = Ferryd(str(self.tmp), f"cache-{i}", conf, admin_addr=f"{a}:9000")
        self.procs.append(f)
        f.start([(a, 8443), (a, 9000)])
        self.caches[i] = f

    def stats(self, i):
        r = self.caches[i].ctl("sessions")
        return json.loads(r.stdout)

    def s_client(self, i, version, flag, sess):
        r = subprocess.run(["openssl", "s_client", "-connect", f"{self.addrs[i]}:8443", "-servername", HOST,
                            "-CAfile", self.pki["ca"], version, "-ign_eof", flag, str(sess)],
                           input=REQ, capture_output=True, timeout=20 * SLOW)
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, out + r.stderr.decode(errors="replace")
        return out


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sessions_shared_through_redis(tmp_path, procs, pki, nginx_factory, version):
    redis = Redis(tmp_path, procs)
    redis.start()
    n = Node(tmp_path, procs, pki, nginx_factory, redis)
    n.start(1)
    n.start(2)
    wait_for(lambda: all(n.stats(i)["tls_redis"]["up"] for i in (1, 2)), 10, "both connected")
    sess = tmp_path / "s.pem"
    assert "New, TLSv1" in n.s_client(1, version, "-sess_out", sess)
    wait_for(lambda: n.stats(2)["tls_redis"]["received"] >= 1, 10, "announced to cache-2")
    assert "Reused, TLSv1" in n.s_client(2, version, "-sess_in", sess)
    # What Redis holds is sealed (a session datagram, docs/session-wire.md) and expires
    # with its session. (TLS 1.3 servers issue two tickets per handshake, and the
    # resumption a new one: several keys.)
    keys = redis.cli("KEYS", "ferry:tls:*").split()
    assert keys and all(k.startswith(b"ferry:tls:") for k in keys), keys
    for k in keys:
        assert redis.cli("GET", k)[:4] == b"FRSW"
        assert 0 < int(redis.cli("PTTL", k)) <= 3600 * 1000
    # A cache started now catches up from Redis.
    n.start(3)
    wait_for(lambda: n.stats(3)["tls_sessions"]["received"] >= 1, 10, "cache-3 caught up")
    assert "Reused, TLSv1" in n.s_client(3, version, "-sess_in", sess)


def test_redis_down_degrades_to_local_and_recovers(tmp_path, procs, pki, nginx_factory):
    redis = Redis(tmp_path, procs)
    redis.start()
    n = Node(tmp_path, procs, pki, nginx_factory, redis)
    n.start(1)
    n.start(2)
    wait_for(lambda: all(n.stats(i)["tls_redis"]["up"] for i in (1, 2)), 10, "both connected")
    redis.proc.stop()
    wait_for(lambda: "TLS sessions stay local" in n.caches[1].proc.output(), 10, "the outage logged")
    assert not n.stats(1)["tls_redis"]["up"]
    # Local behaviour: cache-1 resumes its own sessions; cache-2 cannot.
    sess = tmp_path / "local.pem"
    n.s_client(1, "-tls1_2", "-sess_out", sess)
    assert "Reused, TLSv1.2" in n.s_client(1, "-tls1_2", "-sess_in", sess)
    assert "New, TLSv1.2" in n.s_client(2, "-tls1_2", "-sess_in", sess)
    assert n.stats(1)["tls_redis"]["unsent"] >= 1
    assert n.caches[1].proc.alive() and n.caches[2].proc.alive()
    # Redis comes back: the caches reconnect on their own, and share again.
    redis.start()
    wait_for(lambda: all(n.stats(i)["tls_redis"]["up"] for i in (1, 2)), 20, "reconnected")
    assert "tls redis" in n.caches[1].proc.output() and "back" in n.caches[1].proc.output()
    sess = tmp_path / "again.pem"
    n.s_client(1, "-tls1_2", "-sess_out", sess)
    wait_for(lambda: n.stats(2)["tls_redis"]["received"] >= 1, 10, "announced again")
    assert "Reused, TLSv1.2" in n.s_client(2, "-tls1_2", "-sess_in", sess)
