"""Cache listeners marked proxy_protocol take the client address from a
PROXY v2 header (as sent by a switch): it shows in the access record and in
X-Forwarded-For to the origin. A bad header closes the connection."""
import socket
import struct

from conftest import Ferryd, fresh_addr, parse_response, raw_request, wait_for

HOST = "www.example.test"
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header(src, sport, dst, dport):
    body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
    return SIG + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def test_proxy_v2_client_address(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location / { add_header Cache-Control "no-store"; }')
    # nginx logs the forwarded address so the test can see what the cache sent.
    with open(ngx.conf) as f:
        text = f.read()
    text = text.replace("    access_log ", "    log_format xff '$http_x_forwarded_for $request';\n    access_log ", 1)
    text = text.replace(f"access_log {ngx.access_log};", f"access_log {ngx.access_log} xff;")
    with open(ngx.conf, "w") as f:
        f.write(text)
    ngx.stop()
    ngx.start()
    ngx.put("/a.txt", "a")
    addr = fresh_addr()
    access = tmp_path / "access.log"
    conf = f"""
cache {{
    name pp;
    listen {addr}:8080 proxy_protocol;
    listen {addr}:8081;
    access_log {access};
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
    f = Ferryd(str(tmp_path), "c", conf)
    procs.append(f)
    f.start([(addr, 8080), (addr, 8081)])
    req = b"GET /a.txt HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n"
    out = raw_request(addr, 8080, header("203.0.113.9", 40000, addr, 8080) + req)
    s, h, b = parse_response(out)
    assert s == 200 and b == b"a"
    wait_for(lambda: "/a.txt" in access.read_text(), 5, "access record")
    rec = [l for l in access.read_text().splitlines() if "/a.txt" in l][0].split("\t")
    assert rec[3] == "203.0.113.9" and rec[4] == "40000"
    # nginx writes its log line after the response went out: poll for it.
    wait_for(lambda: "203.0.113.9 GET /a.txt" in open(ngx.access_log).read(), 5, "origin log line")
    # Without the header on that listener: closed (or reset), nothing served.
    try:
        refused = raw_request(addr, 8080, req)
    except ConnectionResetError:
        refused = b""
    assert refused == b""
    # The plain listener is unaffected.
    assert parse_response(raw_request(addr, 8081, req))[0] == 200
