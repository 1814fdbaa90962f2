"""Cache side of routable session identifiers: the cache's TLS 1.2 session
IDs, TLS 1.3 stateful tickets and stateless ticket key names carry its label
(docs/session-ids.md). Decoded here by an independent implementation of the
prefix and mod-n codecs, from what openssl s_client saved."""
import re
import subprocess

import pytest

from conftest import Ferryd, fresh_addr

HOST = "www.example.test"


def crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def prefix_label(ident):
    """The label a prefix-codec identifier carries, or None. The five-byte
    header sits at the end: tag/version, label (2 bytes), CRC-16 (2 bytes)."""
    if len(ident) < 8:
        return None
    h = len(ident) - 5
    if ident[h] & 0x0F != 0xA:
        return None
    check = crc16(bytes([len(ident)]) + ident[:h + 3])
    if check != int.from_bytes(ident[h + 3:h + 5], "big"):
        return None
    return int.from_bytes(ident[h + 1:h + 3], "big") or None


def modn_label(ident, n):
    return int.from_bytes(ident, "big") % n + 1


def session(tmp_path, addr, pki, version):
    """Handshakes once and returns (session id bytes, ticket bytes) from the saved session."""
    sess = tmp_path / f"s{version}.pem"
    r = subprocess.run(["openssl", "s_client", "-connect", f"{addr}:8443", "-servername", HOST,
                        "-CAfile", pki["ca"], version, "-ign_eof", "-sess_out", str(sess)],
                       input=b"GET / HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    text = subprocess.run(["openssl", "sess_id", "-in", str(sess), "-text", "-noout"],
                          capture_output=True, text=True, check=True).stdout
    sid = bytes.fromhex(re.search(r"Session-ID: ([0-9A-F]*)", text).group(1))
    ticket = b""
    m = re.search(r"TLS session ticket:\n((?:\s+[0-9a-f]{4} - .*\n)+)", text)
    if m:
        for line in m.group(1).splitlines():
            hexpart = line.split(" - ", 1)[1][:47]
            ticket += bytes.fromhex(hexpart.replace("-", " ").replace(" ", ""))
    return sid, ticket


def start(tmp_path, procs, pki, ngx, extra):
    addr = fresh_addr()
    cert, key = pki["certs"]["www"]
    conf = f"""
cache {{
    name c;
    listen_tls {addr}:8443;
    certificate {cert} {key};
    {extra}
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
    f = Ferryd(str(tmp_path), "c-" + addr, conf)
    procs.append(f)
    f.start([(addr, 8443)])
    return addr


def test_prefix_labels_in_ids_and_ticket_names(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    addr = start(tmp_path, procs, pki, ngx, "tls_label 2; tls_tickets on;")
    sid, ticket = session(tmp_path, addr, pki, "-tls1_2")
    assert len(ticket) > 16
    assert prefix_label(ticket[:16]) == 2  # the stateless ticket's key_name
    _, ticket13 = session(tmp_path, addr, pki, "-tls1_3")
    assert prefix_label(ticket13[:16]) == 2  # the TLS 1.3 PSK identity starts with it


def test_prefix_labels_stateful(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    addr = start(tmp_path, procs, pki, ngx, "tls_label 3; tls_tickets off;")
    sid, ticket = session(tmp_path, addr, pki, "-tls1_2")
    assert ticket == b"" and len(sid) == 32 and prefix_label(sid) == 3
    sid13, ticket13 = session(tmp_path, addr, pki, "-tls1_3")
    # Stateful TLS 1.3: the ticket (PSK identity) is the session ID.
    assert prefix_label(ticket13) == 3, ticket13.hex()


def test_modn_labels(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    addr = start(tmp_path, procs, pki, ngx, "tls_label 2; tls_label_codec mod-n; tls_group_size 3; tls_tickets off;")
    for _ in range(3):
        sid, _ = session(tmp_path, addr, pki, "-tls1_2")
        assert modn_label(sid, 3) == 2


def test_mod_n_label_out_of_range_is_a_config_error(tmp_path, pki):
    cert, key = pki["certs"]["www"]
    conf = tmp_path / "c.conf"
    conf.write_text(f"cache {{\n listen_tls 127.0.0.1:1;\n certificate {cert} {key};\n tls_label 4;\n"
                    f" tls_label_codec mod-n;\n tls_group_size 3;\n publisher a {{ origin http://127.0.0.1:1; }}\n}}\n")
    from conftest import FERRYD
    r = subprocess.run([FERRYD, "-t", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 1 and f"{conf}:4: tls_label 4 is above tls_group_size 3" in r.stderr


def test_without_label_ids_are_plain_random(tmp_path, procs, pki, nginx_factory):
    ngx = nginx_factory("")
    addr = start(tmp_path, procs, pki, ngx, "tls_tickets off;")
    sid, _ = session(tmp_path, addr, pki, "-tls1_2")
    assert len(sid) == 32 and prefix_label(sid) is None
