"""The cache role in front of a real nginx origin: RFC 9111 behaviour, HTTPS,
Via/X-Cache, purge and expiry, access records, limits."""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import Ferryd, curl, fresh_addr, raw_request, wait_for, parse_response

HOST = "www.example.test"

LOCATIONS = r"""
        location /fresh/ { add_header Cache-Control "max-age=300"; }
        location /short/ { add_header Cache-Control "max-age=1"; }
        location /nostore/ { add_header Cache-Control "no-store"; }
        location /private/ { add_header Cache-Control "private, max-age=300"; }
        location /nocache/ { add_header Cache-Control "no-cache"; }
        location /smax/ { add_header Cache-Control "max-age=0, s-maxage=300"; }
        location /cdn/ { add_header Cache-Control "no-store"; add_header CDN-Cache-Control "max-age=300"; }
        location /vary/ { add_header Cache-Control "max-age=300"; add_header Vary "Accept-Language"; }
        location /swr/ { add_header Cache-Control "max-age=1, stale-while-revalidate=60"; }
        location /sie/ { add_header Cache-Control "max-age=1, stale-if-error=60"; }
        location /cookie/ { add_header Cache-Control "max-age=300"; add_header Set-Cookie "a=b"; }
        location /expires/ { expires 300s; }
        location /api/ { add_header Location "/fresh/loc.txt"; add_header Content-Location "http://www.example.test/fresh/cl.txt"; return 200 "done"; }
"""


@pytest.fixture
def cdn(tmp_path, procs, nginx_factory, pki):
    """nginx origin + ferryd cache (HTTP and HTTPS) + admin."""
    ngx = nginx_factory(LOCATIONS)
    addr = fresh_addr()
    cert, key = pki["certs"]["www"]
    cert2, key2 = pki["certs"]["other"]
    access = tmp_path / "access.log"
    cfg = f"""
workers 2;
cache {{
    name edge-test;
    listen {addr}:8080;
    listen_tls {addr}:8443;
    certificate {cert} {key};
    certificate {cert2} {key2};
    memory 64m;
    access_log {access};
    publisher {HOST} {{
        origin http://{ngx.addr}:{ngx.port};
        alias alias.example.test;
    }}
    publisher other.test {{
        origin http://{ngx.addr}:{ngx.port};
    }}
}}
"""
    f = Ferryd(str(tmp_path), "cache", cfg, admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8080), (addr, 8443), (addr, 9000)])

    class C:
        pass

    c = C()
    c.ngx, c.addr, c.ferry, c.access, c.ca = ngx, addr, f, access, pki["ca"]
    c.http = f"http://{addr}:8080"
    c.get = lambda path, *a: curl("-H", f"Host: {HOST}", *a, f"http://{addr}:8080{path}")
    c.gets = lambda path, *a: curl("--cacert", pki["ca"], "--resolve", f"{HOST}:8443:{addr}", *a,
                                   f"https://{HOST}:8443{path}")
    return c


def xcache(h):
    return h["x-cache"][0]


def test_miss_then_hit_with_via(cdn):
    cdn.ngx.put("/fresh/a.txt", "A" * 1000)
    s, h, b = cdn.get("/fresh/a.txt")
    assert s == 200 and b == b"A" * 1000
    assert xcache(h) == "MISS"
    assert any("edge-test" in v for v in h["via"])
    s, h, b = cdn.get("/fresh/a.txt")
    assert s == 200 and b == b"A" * 1000 and xcache(h) == "HIT"
    assert cdn.ngx.saw("/fresh/a.txt", 1)


def test_age_header_grows(cdn):
    cdn.ngx.put("/fresh/age.txt", "x")
    cdn.get("/fresh/age.txt")
    wait_for(lambda: "age" in cdn.get("/fresh/age.txt")[1], 5, "Age header")
    _, h, _ = cdn.get("/fresh/age.txt")
    assert int(h["age"][0]) >= 1


def test_https_sni_and_tls_metrics(cdn):
    cdn.ngx.put("/fresh/s.txt", "secure")
    s, h, b = cdn.gets("/fresh/s.txt")
    assert s == 200 and b == b"secure" and xcache(h) == "MISS"
    s, h, b = cdn.gets("/fresh/s.txt")
    assert xcache(h) == "HIT"
    # The second certificate is chosen by SNI.
    r = subprocess.run(["openssl", "s_client", "-connect", f"{cdn.addr}:8443", "-servername", "other.test",
                        "-CAfile", cdn.ca, "-verify_return_error", "-brief"],
                       input=b"", capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    assert b"Verification: OK" in r.stderr
    assert cdn.ferry.metric("ferry_tls_handshakes_total") >= 3


def test_tls_versions(cdn):
    for v in ("-tls1_2", "-tls1_3"):
        r = subprocess.run(["openssl", "s_client", "-connect", f"{cdn.addr}:8443", "-servername", HOST,
                            "-CAfile", cdn.ca, v, "-verify_return_error", "-brief"],
                           input=b"", capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(["openssl", "s_client", "-connect", f"{cdn.addr}:8443", "-servername", HOST,
                        "-tls1_1", "-brief"], input=b"", capture_output=True, timeout=20)
    assert r.returncode != 0


def test_no_store_private_and_cookie_not_cached(cdn):
    for p in ("/nostore/x", "/private/x", "/cookie/x"):
        cdn.ngx.put(p, "v")
        _, h1, _ = cdn.get(p)
        _, h2, _ = cdn.get(p)
        assert xcache(h2) == "MISS", p
        assert cdn.ngx.saw(p, 2), p


def test_s_maxage_and_expires_and_targeted(cdn):
    for p in ("/smax/x", "/expires/x", "/cdn/x"):
        cdn.ngx.put(p, "v")
        cdn.get(p)
        _, h, _ = cdn.get(p)
        assert xcache(h) == "HIT", p


def test_revalidation_with_etag(cdn):
    cdn.ngx.put("/nocache/r.txt", "same")
    _, h, _ = cdn.get("/nocache/r.txt")
    assert xcache(h) == "MISS"
    s, h, b = cdn.get("/nocache/r.txt")
    assert s == 200 and b == b"same" and xcache(h) == "REVALIDATED"
    assert cdn.ngx.saw("/nocache/r.txt", 2)
    # The second origin request was conditional and got 304.
    with open(cdn.ngx.access_log) as f:
        assert '"GET /nocache/r.txt HTTP/1.1" 304' in f.read()


def test_stale_then_changed(cdn):
    cdn.ngx.put("/short/c.txt", "one")
    cdn.get("/short/c.txt")
    time.sleep(2.1)  # the object must age past max-age=1: waiting on the clock is the point
    cdn.ngx.put("/short/c.txt", "two")
    s, h, b = cdn.get("/short/c.txt")
    assert b == b"two" and xcache(h) == "MISS"


def test_vary(cdn):
    cdn.ngx.put("/vary/v.txt", "v")
    assert xcache(cdn.get("/vary/v.txt", "-H", "Accept-Language: en")[1]) == "MISS"
    assert xcache(cdn.get("/vary/v.txt", "-H", "Accept-Language: fr")[1]) == "MISS"
    assert xcache(cdn.get("/vary/v.txt", "-H", "Accept-Language: en")[1]) == "HIT"
    assert xcache(cdn.get("/vary/v.txt", "-H", "Accept-Language: fr")[1]) == "HIT"


def test_head_and_range_and_conditional_from_cache(cdn):
    body = bytes(range(256)) * 40
    cdn.ngx.put("/fresh/bin", body)
    cdn.get("/fresh/bin")
    out = raw_request(cdn.addr, 8080, b"HEAD /fresh/bin HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
    s, h, b = parse_response(out)
    assert s == 200 and b == b"" and h["content-length"] == [str(len(body))] and xcache(h) == "HIT"
    assert len(cdn.get("/fresh/bin")[1]["accept-ranges"]) == 1  # nginx's own, not a second one
    s, h, b = cdn.get("/fresh/bin", "-r", "100-199")
    assert s == 206 and b == body[100:200] and h["content-range"] == [f"bytes 100-199/{len(body)}"]
    s, h, b = cdn.get("/fresh/bin", "-r", "20000-")
    assert s == 416
    etag = cdn.get("/fresh/bin")[1]["etag"][0]
    s, h, b = cdn.get("/fresh/bin", "-H", f"If-None-Match: {etag}")
    assert s == 304 and b == b""
    assert cdn.ngx.saw("/fresh/bin", 1)


def test_stale_while_revalidate(cdn):
    cdn.ngx.put("/swr/s.txt", "old")
    cdn.get("/swr/s.txt")
    time.sleep(2.1)  # past max-age=1, inside stale-while-revalidate
    cdn.ngx.put("/swr/s.txt", "new")
    s, h, b = cdn.get("/swr/s.txt")
    assert b == b"old" and xcache(h) == "STALE"
    wait_for(lambda: cdn.get("/swr/s.txt")[2] == b"new", 10, "background revalidation")


def test_stale_if_error(cdn):
    cdn.ngx.put("/sie/e.txt", "keep")
    cdn.get("/sie/e.txt")
    time.sleep(2.1)  # past max-age=1
    cdn.ngx.stop()
    s, h, b = cdn.get("/sie/e.txt")
    assert s == 200 and b == b"keep" and xcache(h) == "STALE"
    s, h, b = cdn.get("/fresh/never-fetched")
    assert s == 502


def test_unknown_host_and_bad_requests(cdn):
    s, h, b = curl("-H", "Host: nope.test", cdn.http + "/")
    assert s == 421
    for raw in (b"GET / HTTP/1.1\r\nHost: www.example.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: www.example.test\r\n folded\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: www.example.test\rX: y\r\n\r\n",
                b"POST / HTTP/1.1\r\nHost: www.example.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        out = raw_request(cdn.addr, 8080, raw)
        assert out.startswith(b"HTTP/1.1 400"), (raw, out)
        assert b"Via: 1.1 edge-test" in out
    out = raw_request(cdn.addr, 8080, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 414")
    out = raw_request(cdn.addr, 8080, b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 17000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431")


def test_pipelining_and_keepalive(cdn):
    cdn.ngx.put("/fresh/p1", "one")
    cdn.ngx.put("/fresh/p2", "two")
    req = (b"GET /fresh/p1 HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
           b"GET /fresh/p2 HTTP/1.1\r\nHost: www.example.test\r\n\r\n"
           b"GET /fresh/p1 HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n")
    out = raw_request(cdn.addr, 8080, req)
    parts = out.split(b"HTTP/1.1 200 OK")
    assert len(parts) == 4, out
    bodies = [p.split(b"\r\n\r\n", 1)[1] for p in parts[1:]]
    assert bodies == [b"one", b"two", b"one"]


def test_purge_and_expire(cdn):
    for p in ("/fresh/d/1", "/fresh/d/2", "/fresh/e"):
        cdn.ngx.put(p, p)
        cdn.get(p)
    r = cdn.ferry.ctl("purge", f"http://{HOST}/fresh/e")
    assert json.loads(r.stdout)["purged"] == 1
    assert xcache(cdn.get("/fresh/e")[1]) == "MISS"
    r = cdn.ferry.ctl("purge", "--prefix", f"http://{HOST}/fresh/d/")
    assert json.loads(r.stdout)["purged"] == 2
    assert xcache(cdn.get("/fresh/d/1")[1]) == "MISS"
    # Expiry update: 0 makes it stale now, so the next request revalidates.
    r = cdn.ferry.ctl("expire", f"http://{HOST}/fresh/e", "0")
    assert json.loads(r.stdout)["updated"] == 1
    assert xcache(cdn.get("/fresh/e")[1]) == "REVALIDATED"
    r = cdn.ferry.ctl("purge", "http://unknown.test/x", check=False)
    assert r.returncode == 1


def test_unsafe_method_invalidates(cdn):
    cdn.ngx.put("/fresh/inv", "v")
    cdn.get("/fresh/inv")
    assert xcache(cdn.get("/fresh/inv")[1]) == "HIT"
    s, h, _ = cdn.get("/fresh/inv", "-X", "DELETE")
    assert xcache(h) == "BYPASS"
    # nginx answers 405 to DELETE, an error: no invalidation.
    assert xcache(cdn.get("/fresh/inv")[1]) == "HIT"


def test_access_record(cdn):
    cdn.ngx.put("/fresh/log", "v")
    cdn.get("/fresh/log", "-A", "tester/1.0")
    wait_for(lambda: "/fresh/log" in cdn.access.read_text(), 5, "access record")
    lines = cdn.access.read_text().splitlines()
    assert lines[0] == "#Version: ferry-access/1"
    fields = lines[1].split(": ", 1)[1].split("\t")
    rec = dict(zip(fields, [l for l in lines if "/fresh/log" in l][0].split("\t")))
    assert rec["cs-method"] == "GET" and rec["sc-status"] == "200"
    assert rec["s-cache-status"] == "MISS" and rec["s-publisher"] == HOST
    assert rec["cs-uri"] == f"http://{HOST}/fresh/log"
    assert rec["cs(User-Agent)"] == '"tester/1.0"'
    assert int(rec["sc-total-bytes"]) > 1


def test_collapsed_forwarding(cdn):
    cdn.ngx.put("/fresh/big", os.urandom(4 << 20))
    results = []

    def fetch():
        results.append(cdn.get("/fresh/big"))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r[0] == 200 and len(r[2]) == 4 << 20 for r in results)
    assert len({r[2] for r in results}) == 1
    assert cdn.ngx.saw("/fresh/big", 1)


def test_metrics(cdn):
    cdn.ngx.put("/fresh/m", "v")
    cdn.get("/fresh/m")
    cdn.get("/fresh/m")
    assert cdn.ferry.metric("ferry_cache_requests_total", 'result="hit"') >= 1
    assert cdn.ferry.metric("ferry_cache_requests_total", 'result="miss"') >= 1
    assert cdn.ferry.metric("ferry_cache_objects") >= 1
    stats = json.loads(cdn.ferry.ctl("stats").stdout)
    assert stats["cache"]["requests"]["hit"] >= 1


def test_unsafe_success_invalidates_location_and_content_location(cdn):
    for p in ("/fresh/loc.txt", "/fresh/cl.txt", "/fresh/other.txt"):
        cdn.ngx.put(p, p)
        cdn.get(p)
        assert xcache(cdn.get(p)[1]) == "HIT"
    s, h, b = cdn.get("/api/x", "-X", "POST", "-d", "v=1")
    assert s == 200 and b == b"done" and xcache(h) == "BYPASS"
    assert xcache(cdn.get("/fresh/loc.txt")[1]) == "MISS"
    assert xcache(cdn.get("/fresh/cl.txt")[1]) == "MISS"
    assert xcache(cdn.get("/fresh/other.txt")[1]) == "HIT"
