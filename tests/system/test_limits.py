"""Limits the cache enforces on clients: slow heads (408), too many fields
(431), bodies (413), idle keep-alive, connection caps, and that garbage on
one connection does not disturb another."""
import socket
import time

import pytest

from conftest import Ferryd, SLOW, curl, fresh_addr, raw_request, wait_for

HOST = "www.example.test"


@pytest.fixture
def edge(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location / { add_header Cache-Control "max-age=300"; }')
    ngx.put("/ok.txt", "ok")
    addr = fresh_addr()
    conf = f"""
cache {{
    name lim;
    listen {addr}:8080;
    header_timeout 300ms;
    idle_timeout 300ms;
    max_headers 20;
    max_body_size 1k;
    max_connections 8;
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
    f = Ferryd(str(tmp_path), "c", conf)
    procs.append(f)
    f.start([(addr, 8080)])
    return addr


def test_slow_head_gets_408(edge):
    s = socket.create_connection((edge, 8080), timeout=10 * SLOW)
    s.sendall(b"GET /ok.txt HTTP/1.1\r\nHost: www.")
    out = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    s.close()
    assert out.startswith(b"HTTP/1.1 408 "), out


def test_idle_keepalive_is_closed(edge):
    s = socket.create_connection((edge, 8080), timeout=10 * SLOW)
    s.sendall(b"GET /ok.txt HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
    first = s.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    t0 = time.monotonic()
    assert s.recv(4096) == b""  # the server closes the idle connection
    assert time.monotonic() - t0 < 5 * SLOW
    s.close()


def test_too_many_fields_and_big_body(edge):
    many = b"".join(b"X-%d: y\r\n" % i for i in range(30))
    out = raw_request(edge, 8080, b"GET / HTTP/1.1\r\nHost: www.example.test\r\n" + many + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    out = raw_request(edge, 8080, b"POST / HTTP/1.1\r\nHost: www.example.test\r\nContent-Length: 5000\r\n\r\n" + b"a" * 5000)
    assert out.startswith(b"HTTP/1.1 413 ")
    big = b"a" * 2000
    out = raw_request(edge, 8080, b"POST / HTTP/1.1\r\nHost: www.example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"7d0\r\n" + big + b"\r\n0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 ")


def test_connection_cap_and_garbage_isolated(edge):
    held = [socket.create_connection((edge, 8080), timeout=5) for _ in range(8)]
    try:
        # Over the cap: the ninth connection is closed at once.
        extra = socket.create_connection((edge, 8080), timeout=5 * SLOW)
        extra.sendall(b"GET /ok.txt HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
        try:
            data = extra.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b""
        extra.close()
    finally:
        for h in held:
            h.close()

    def served():
        try:
            return curl("-H", f"Host: {HOST}", f"http://{edge}:8080/ok.txt")[0] == 200
        except AssertionError:
            return False

    # Once the server has seen those close, it serves again.
    wait_for(served, 10, "service below the cap")
    # Garbage on one connection gets 400; a normal client right after is fine.
    out = raw_request(edge, 8080, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400 ")
    assert served()
