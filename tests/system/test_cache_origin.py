"""The cache's origin side: timeouts and errors, streaming of large objects,
an HTTPS origin, a parent cache, graceful stop with a request in flight, and
TLS session resumption counters."""
import os
import signal
import socket
import subprocess
import threading

import pytest

from conftest import Ferryd, SLOW, curl, fresh_addr, wait_for

HOST = "www.example.test"


def cache_conf(addr, origin, extra="", pub_extra="", name="edge"):
    return f"""
cache {{
    name {name};
    listen {addr}:8080;
    {extra}
    publisher {HOST} {{
        origin {origin};
        {pub_extra}
    }}
}}
"""


def start_cache(tmp_path, procs, name, conf, addr, admin=True):
    f = Ferryd(str(tmp_path), name, conf, admin_addr=f"{addr}:9000" if admin else None)
    procs.append(f)
    f.start([(addr, 8080)])
    return f


class SilentOrigin:
    """Accepts connections and reads requests but never answers."""

    def __init__(self):
        self.addr = fresh_addr()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.addr, 8080))
        self.sock.listen(16)
        self.conns = []
        self.stop = False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except OSError:
                pass

    def close(self):
        self.stop = True
        self.t.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_origin_timeout_is_504_and_refused_is_502(tmp_path, procs):
    silent = SilentOrigin()
    try:
        addr = fresh_addr()
        dead = fresh_addr()  # nothing listens there: connection refused
        conf = f"""
cache {{
    name edge;
    listen {addr}:8080;
    response_timeout 500ms;
    publisher {HOST} {{ origin http://{silent.addr}:8080; }}
    publisher dead.test {{ origin http://{dead}:8080; }}
}}
"""
        f = start_cache(tmp_path, procs, "c", conf, addr)
        s, h, b = curl("-H", f"Host: {HOST}", f"http://{addr}:8080/x")
        assert s == 504 and b"timed out" in b and h["via"][0].startswith("1.1 edge")
        s, h, b = curl("-H", "Host: dead.test", f"http://{addr}:8080/x")
        assert s == 502
        assert f.metric("ferry_cache_origin_errors_total") == 2
    finally:
        silent.close()


def test_large_objects_stream_through(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location /big/ { add_header Cache-Control "max-age=300"; }')
    data = os.urandom(3 << 20)
    ngx.put("/big/file.bin", data)
    addr = fresh_addr()
    start_cache(tmp_path, procs, "c", cache_conf(addr, f"http://{ngx.addr}:8080", "max_object_size 1m;"), addr)
    for _ in range(2):
        s, h, b = curl("-H", f"Host: {HOST}", f"http://{addr}:8080/big/file.bin")
        assert s == 200 and b == data and h["x-cache"] == ["MISS"]
    assert ngx.saw("/big/file.bin", 2)


def test_chunked_origin_response_is_cached(tmp_path, procs, nginx_factory):
    # gzip on a text file makes nginx answer with chunked encoding.
    ngx = nginx_factory('location /gz/ { add_header Cache-Control "max-age=300"; gzip on; '
                        'default_type text/plain; gzip_types text/plain; gzip_min_length 1; gzip_proxied any; }')
    ngx.put("/gz/t.txt", "hello " * 2000)
    addr = fresh_addr()
    start_cache(tmp_path, procs, "c", cache_conf(addr, f"http://{ngx.addr}:8080"), addr)
    s, h, b = curl("-H", f"Host: {HOST}", "-H", "Accept-Encoding: gzip", "--compressed",
                   f"http://{addr}:8080/gz/t.txt")
    assert s == 200 and b == b"hello " * 2000 and h["x-cache"] == ["MISS"]
    s, h, b = curl("-H", f"Host: {HOST}", "-H", "Accept-Encoding: gzip", "--compressed",
                   f"http://{addr}:8080/gz/t.txt")
    assert s == 200 and b == b"hello " * 2000 and h["x-cache"] == ["HIT"]
    assert h["content-encoding"] == ["gzip"]


def test_https_origin_is_verified(tmp_path, procs, nginx_factory, pki):
    cert, key = pki["certs"]["www"]
    ngx = nginx_factory("")
    # A second nginx server block with TLS, same docroot.
    tls_addr = fresh_addr()
    with open(ngx.conf) as fh:
        text = fh.read()
    text = text.replace("    server {", f"""    server {{
        listen {tls_addr}:8443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {ngx.root};
        location / {{ add_header Cache-Control "max-age=300"; }}
    }}
    server {{""", 1)
    with open(ngx.conf, "w") as fh:
        fh.write(text)
    ngx.stop()
    ngx.start()
    ngx.put("/s.txt", "over tls")
    addr = fresh_addr()
    good = cache_conf(addr, f"https://{tls_addr}:8443", f"origin_ca {pki['ca']};")
    start_cache(tmp_path, procs, "c", good, addr)
    s, h, b = curl("-H", f"Host: {HOST}", f"http://{addr}:8080/s.txt")
    assert s == 200 and b == b"over tls"
    # Without the CA the origin's certificate is refused.
    addr2 = fresh_addr()
    bad = cache_conf(addr2, f"https://{tls_addr}:8443", "", name="edge2")
    f2 = start_cache(tmp_path, procs, "c2", bad, addr2, admin=False)
    s, h, b = curl("-H", f"Host: {HOST}", f"http://{addr2}:8080/s.txt")
    assert s == 502
    wait_for(lambda: "TLS handshake failed" in f2.proc.output(), 5, "log line")


def test_parent_cache(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location /p/ { add_header Cache-Control "max-age=300"; }')
    ngx.put("/p/p.txt", "from origin")
    parent = fresh_addr()
    start_cache(tmp_path, procs, "parent", cache_conf(parent, f"http://{ngx.addr}:8080", name="parent"), parent)
    edges = []
    for i in range(2):
        a = fresh_addr()
        start_cache(tmp_path, procs, f"edge{i}",
                    cache_conf(a, f"http://{ngx.addr}:8080", "", f"parent http://{parent}:8080;", name=f"edge{i}"), a)
        edges.append(a)
    s, h, b = curl("-H", f"Host: {HOST}", f"http://{edges[0]}:8080/p/p.txt")
    assert b == b"from origin" and h["x-cache"] == ["MISS"]
    assert any("parent" in v for v in h["via"]) and any("edge0" in v for v in h["via"])
    s, h, b = curl("-H", f"Host: {HOST}", f"http://{edges[1]}:8080/p/p.txt")
    assert b == b"from origin" and h["x-cache"] == ["MISS"]  # a miss at edge1, a hit at the parent
    assert ngx.saw("/p/p.txt", 1)


def test_sigterm_lets_in_flight_response_finish(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location /slow/ { limit_rate 200k; }')
    data = os.urandom(600 * 1024)  # about three seconds at 200 KiB/s
    ngx.put("/slow/f.bin", data)
    addr = fresh_addr()
    f = start_cache(tmp_path, procs, "c", cache_conf(addr, f"http://{ngx.addr}:8080"), addr)
    out = tmp_path / "body"
    p = subprocess.Popen(["curl", "-sS", "-o", str(out), "-H", f"Host: {HOST}", f"http://{addr}:8080/slow/f.bin"])
    wait_for(lambda: out.exists() and out.stat().st_size > 0, 10, "first bytes")
    f.proc.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30 * SLOW) == 0
    assert out.read_bytes() == data
    assert f.proc.p.wait(timeout=30 * SLOW) == 0


def test_tls_resumption_is_counted(tmp_path, procs, nginx_factory, pki):
    ngx = nginx_factory("")
    addr = fresh_addr()
    cert, key = pki["certs"]["www"]
    conf = cache_conf(addr, f"http://{ngx.addr}:8080",
                      f"listen_tls {addr}:8443;\n    certificate {cert} {key};")
    f = Ferryd(str(tmp_path), "c", conf, admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8443)])
    sess = tmp_path / "sess.pem"
    for version in ("-tls1_2", "-tls1_3"):
        # -ign_eof keeps s_client reading until the server closes, so TLS 1.3
        # tickets (sent after the handshake) reach the session file.
        base = ["openssl", "s_client", "-connect", f"{addr}:8443", "-servername", HOST, "-CAfile", pki["ca"],
                version, "-ign_eof"]
        req = b"GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n"
        r = subprocess.run(base + ["-sess_out", str(sess)], input=req, capture_output=True, timeout=20)
        assert r.returncode == 0 and b"New, TLS" in r.stdout, r.stdout
        r = subprocess.run(base + ["-sess_in", str(sess)], input=req, capture_output=True, timeout=20)
        assert b"Reused, TLS" in r.stdout, r.stdout
    assert f.metric("ferry_tls_handshakes_total", 'handshake="resumed"') == 2
    assert f.metric("ferry_tls_handshakes_total", 'handshake="full"') == 2
