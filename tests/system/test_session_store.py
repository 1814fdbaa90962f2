"""The cache's TLS session store (src/tls/sess_store.c): sessions by session
ID and stateful TLS 1.3 tickets are shared by every worker thread, bounded by
tls_session_cache_size, counted in the status API, and survive a reload, as
do stateless tickets."""
import json
import signal
import subprocess

import pytest

from conftest import SLOW, Ferryd, fresh_addr, wait_for

HOST = "www.example.test"
REQ = f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode()


def start(tmp_path, procs, pki, ngx, extra):
    addr = fresh_addr()
    cert, key = pki["certs"]["www"]
    conf = f"""
workers 2;
cache {{
    name c;
    listen_tls {addr}:8443;
    certificate {cert} {key};
    {extra}
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
    f = Ferryd(str(tmp_path), "c-" + addr, conf, admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8443), (addr, 9000)])
    return f, addr


def s_client(addr, pki, version, flag, sess):
    r = subprocess.run(["openssl", "s_client", "-connect", f"{addr}:8443", "-servername", HOST,
                        "-CAfile", pki["ca"], version, "-ign_eof", flag, str(sess)],
                       input=REQ, capture_output=True, timeout=20 * SLOW)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, out + r.stderr.decode(errors="replace")
    return out


def sessions(f):
    status, body = f.admin_get("/api/v1/stats")
    assert status == 200, body
    return json.loads(body)["cache"]["tls_sessions"]


@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_sessions_resume_on_every_worker_and_after_reload(tmp_path, procs, pki, nginx_factory, version):
    ngx = nginx_factory("")
    ngx.put("/index.html", "hi\n")
    f, addr = start(tmp_path, procs, pki, ngx, "tls_tickets off;")
    sess = tmp_path / "s.pem"
    out = s_client(addr, pki, version, "-sess_out", sess)
    assert "New, TLSv1" in out
    # Ten reconnections, spread over both workers by the kernel: all resume.
    for _ in range(10):
        out = s_client(addr, pki, version, "-sess_in", sess)
        assert "Reused, TLSv1" in out, out
    st = sessions(f)
    assert st["stored"] >= 1 and st["hits"] >= 10 and st["entries"] >= 1, st
    # A reload keeps the store.
    f.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload done" in f.proc.output(), 10, "reload done")
    out = s_client(addr, pki, version, "-sess_in", sess)
    assert "Reused, TLSv1" in out, out
    assert sessions(f)["hits"] >= 11


def test_tickets_survive_a_reload(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    ngx.put("/index.html", "hi\n")
    f, addr = start(tmp_path, procs, pki, ngx, "tls_label 2;")
    sess = tmp_path / "t.pem"
    s_client(addr, pki, "-tls1_3", "-sess_out", sess)
    f.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload done" in f.proc.output(), 10, "reload done")
    out = s_client(addr, pki, "-tls1_3", "-sess_in", sess)
    assert "Reused, TLSv1.3" in out, out


def test_store_is_bounded(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    ngx.put("/index.html", "hi\n")
    f, addr = start(tmp_path, procs, pki, ngx, "tls_tickets off; tls_session_cache_size 16;")
    for i in range(40):
        s_client(addr, pki, "-tls1_2", "-sess_out", tmp_path / f"b{i}.pem")
    st = sessions(f)
    assert st["stored"] == 40, st
    assert st["entries"] <= 16 and st["evicted"] >= 24, st
    # The newest resumes; at least the 24 evicted ones get a full handshake. (Eviction is
    # oldest-first per shard, so which ones go depends on the hash; a full handshake stores a
    # new session and may evict more, never fewer.)
    assert "Reused" in s_client(addr, pki, "-tls1_2", "-sess_in", tmp_path / "b39.pem")
    full = sum("New, TLSv1.2" in s_client(addr, pki, "-tls1_2", "-sess_in", tmp_path / f"b{i}.pem")
               for i in range(38, -1, -1))
    assert full >= 24, (full, st)


def test_stateless_tls13_tickets_stay_out_of_the_store(tmp_path, procs, pki, nginx_factory):
    """A TLS 1.3 server hands OpenSSL's new-session callback its stateless
    tickets too; the client carries those, so the store must not keep them."""
    ngx = nginx_factory("")
    ngx.put("/index.html", "hi\n")
    f, addr = start(tmp_path, procs, pki, ngx, "tls_tickets on;")
    sess = tmp_path / "t13.pem"
    s_client(addr, pki, "-tls1_3", "-sess_out", sess)
    assert "Reused, TLSv1.3" in s_client(addr, pki, "-tls1_3", "-sess_in", sess)
    st = sessions(f)
    assert st["stored"] == 0 and st["entries"] == 0, st
