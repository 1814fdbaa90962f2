"""The peer role: sessions between Ferry CDNs over mutually authenticated
TLS, route exchange and loop prevention, pinning (a wrong CA, a wrong CDN
id, a wrong fingerprint are refused), malformed input answered with a
NOTIFICATION, import policy, and routes withdrawn when a session is lost.
Each CDN is a ferryd with a `peer` block on its own 127.x address."""
import json
import socket
import ssl
import struct
import subprocess

import pytest

from conftest import SLOW, Ferryd, fresh_addr, nft, wait_for

PORT = 7179


@pytest.fixture(scope="module")
def peer_pki(tmp_path_factory):
    """One CA for the CDNs, a certificate per CDN id with the URI SAN
    ferry-cdn:ID, one from a rogue CA, and one that claims another id."""
    d = tmp_path_factory.mktemp("peer-pki")

    def run(*a):
        subprocess.run(a, cwd=d, check=True, capture_output=True)

    def ca(name):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")

    def leaf(name, cdn, issuer):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(d / f"{name}.ext", "w") as f:
            f.write(f"subjectAltName=URI:ferry-cdn:{cdn}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
        return str(d / f"{name}.pem"), str(d / f"{name}.key")

    ca("ca")
    ca("rogue-ca")
    certs = {cdn: leaf(cdn, cdn, "ca") for cdn in ("alpha", "beta", "gamma")}
    certs["rogue-beta"] = leaf("rogue-beta", "beta", "rogue-ca")     # right id, wrong CA
    certs["beta-as-gamma"] = leaf("beta-as-gamma", "gamma", "ca")     # right CA, wrong id

    def fingerprint(pem):
        out = subprocess.run(["openssl", "x509", "-in", pem, "-noout", "-fingerprint", "-sha256"],
                             capture_output=True, text=True, check=True).stdout
        return out.strip().split("=", 1)[1]

    return {"ca": str(d / "ca.pem"), "certs": certs, "fingerprint": fingerprint}


def speaker_conf(pki, cdn, addr, neighbors, extra="", cert=None, hold="9s", retry=("200ms", "1s")):
    """A ferryd config with one peer block. neighbors: list of
    (id, address or None, extra neighbor lines)."""
    cert, key = pki["certs"][cert or cdn]
    nb = ""
    for nid, naddr, nextra in neighbors:
        nb += f"    neighbor {nid} {{\n"
        if naddr:
            nb += f"        address {naddr}:{PORT};\n"
        if "fingerprint" not in nextra and "ca " not in nextra:
            nb += f"        ca {pki['ca']};\n"
        nb += "".join(f"        {line};\n" for line in nextra.split(";") if line.strip())
        nb += "    }\n"
    return f"""log_level info;
peer {{
    cdn {cdn};
    listen {addr}:{PORT};
    cert {cert};
    key {key};
    hold_time {hold};
    connect_retry {retry[0]};
    connect_retry_max {retry[1]};
    feed_delay 0;
{extra}
{nb}}}
"""


def start_speaker(tmp_path, procs, pki, cdn, addr, neighbors, extra="", cert=None, hold="9s", retry=("200ms", "1s")):
    f = Ferryd(str(tmp_path), f"{cdn}-{addr}", speaker_conf(pki, cdn, addr, neighbors, extra, cert, hold, retry),
               admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, PORT), (addr, 9000)])
    return f


def api(f, path):
    status, body = f.admin_get("/api/v1" + path)
    assert status == 200, body
    return json.loads(body)


def nbr(f, cdn):
    for n in api(f, "/peers")["neighbors"]:
        if n["cdn"] == cdn:
            return n
    raise AssertionError(f"no neighbor {cdn}")


def established(f, cdn):
    return nbr(f, cdn)["state"] == "Established"


def routes(f, dest=None):
    q = f"?dest={dest}" if dest else "?limit=100000"
    return api(f, "/routes" + q)["routes"]


def best_from(f, dest):
    r = routes(f, dest)
    if not r:
        return None
    return r[0]["routes"][0]["from"]


def wait_up(*pairs):
    for f, cdn in pairs:
        wait_for(lambda: established(f, cdn), 15 * SLOW, f"{f.name} established with {cdn}")


def wait_settled(x, x_cdn, y, y_cdn):
    """Both sides Established over their only connection: no collision is
    still being decided (one connection each way at start can replace a
    session that is only just up), so a counter read now is a baseline."""
    wait_for(lambda: established(x, x_cdn) and established(y, y_cdn)
             and nbr(x, x_cdn)["connections"] == 1 and nbr(y, y_cdn)["connections"] == 1,
             15 * SLOW, f"one session between {x.name} and {y.name}")


# ---- two CDNs ---------------------------------------------------------------

def test_session_and_routes(tmp_path, procs, peer_pki):
    """alpha and beta connect (both configured with addresses: a collision to
    resolve), exchange their areas and content units, and each sees the
    other's with the right path and hand-off; ferryctl shows both."""
    a, b = fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          "    area 10.1.0.0/16;\n    publisher www.alpha.test;\n"
                          "    handoff cname cdn.alpha.test;\n    cost 5;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 10.2.0.0/16;\n    area 2001:db8:2::/48;\n"
                         "    uri_prefix https://www.example.test/video/;\n"
                         f"    handoff cname cdn.beta.test;\n    handoff ecs {b}:5300;\n"
                         f"    handoff http http://{b}:8080;\n    authoritative gamma;\n    distribution pull;")
    wait_up((alpha, "beta"), (beta, "alpha"))
    wait_for(lambda: len(routes(alpha)) == 5 and len(routes(beta)) == 5, 10 * SLOW, "routes exchanged")

    r = routes(alpha, "10.2.0.0/16")[0]
    best = r["routes"][0]
    assert best["from"] == "beta" and best["path"] == ["beta"]
    assert best["authoritative"] == "gamma"
    assert {(h["method"], h["target"]) for h in best["handoff"]} == {
        ("cname", "cdn.beta.test"), ("ecs", f"{b}:5300"), ("http", f"http://{b}:8080")}
    assert routes(alpha, "2001:db8:2::/48")[0]["routes"][0]["from"] == "beta"
    assert routes(alpha, "https://www.example.test/video/")[0]["routes"][0]["from"] == "beta"
    # an address inside the prefix finds it by longest match
    assert routes(alpha, "10.2.3.4")[0]["dest"] == "10.2.0.0/16"
    # our own routes are ours
    assert routes(alpha, "10.1.0.0/16")[0]["routes"][0]["from"] == "local"
    got = routes(beta, "10.1.0.0/16")[0]["routes"][0]
    assert got["path"] == ["alpha"] and got["cost"] == 5
    # a table learned is not echoed back, not even as withdrawals
    assert nbr(alpha, "beta")["withdrawn"] == 0 and nbr(beta, "alpha")["withdrawn"] == 0
    # one session survived the collision, and End-of-RIB arrived both ways
    wait_settled(alpha, "beta", beta, "alpha")
    assert nbr(alpha, "beta")["established"] >= 1 and nbr(alpha, "beta")["end_of_rib"]
    assert nbr(beta, "alpha")["end_of_rib"]

    out = alpha.ctl("peers").stdout
    assert "beta" in out and "Established" in out
    out = alpha.ctl("routes", "10.2.0.0/16").stdout
    assert "10.2.0.0/16" in out and "beta" in out and "cdn.beta.test" in out


def test_session_loss_withdraws(tmp_path, procs, peer_pki):
    """When beta stops, alpha withdraws every route it had from beta; when it
    comes back, they are back."""
    a, b = fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    beta_conf = ("    area 10.2.0.0/16;\n    area 10.5.0.0/16;\n    handoff cname cdn.beta.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")], beta_conf)
    wait_up((alpha, "beta"))
    wait_for(lambda: best_from(alpha, "10.5.0.0/16") == "beta", 10 * SLOW, "beta's routes at alpha")
    beta.stop()
    procs.remove(beta)
    wait_for(lambda: not routes(alpha, "10.5.0.0/16"), 10 * SLOW, "beta's routes withdrawn")
    assert nbr(alpha, "beta")["state"] != "Established"
    assert "administrative shutdown" in nbr(alpha, "beta")["last_error"]
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")], beta_conf)
    wait_for(lambda: best_from(alpha, "10.5.0.0/16") == "beta", 15 * SLOW, "beta's routes back")
    assert nbr(alpha, "beta")["established"] >= 2


# ---- pinning ----------------------------------------------------------------

@pytest.mark.parametrize("cert", ["rogue-beta", "beta-as-gamma"])
def test_wrong_certificate_refused(tmp_path, procs, peer_pki, cert):
    """A beta whose certificate comes from another CA, or names another CDN
    id, gets no session; alpha counts the refusal and says why."""
    a, b = fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 10.2.0.0/16;\n    handoff cname cdn.beta.test;", cert=cert)
    # alpha connects to beta and refuses what beta shows; beta's connections to alpha are
    # refused too (no neighbor's pin matches), so neither side ever gets a session
    wait_for(lambda: "does not match the configured pin" in nbr(alpha, "beta")["last_error"], 10 * SLOW,
             "alpha refusing beta's certificate")
    wait_for(lambda: "matches no configured peer" in alpha.proc.output(), 10 * SLOW, "beta's connections refused")
    assert alpha.metric("ferry_peer_connections_refused_total") >= 2
    assert not established(alpha, "beta") and not established(beta, "alpha")
    assert routes(alpha, "10.2.0.0/16") == []


def test_fingerprint_pin(tmp_path, procs, peer_pki):
    """A peer pinned by the SHA-256 of its certificate comes up; a wrong
    fingerprint keeps it out."""
    a, b = fresh_addr(), fresh_addr()
    fp_beta = peer_pki["fingerprint"](peer_pki["certs"]["beta"][0])
    fp_alpha = peer_pki["fingerprint"](peer_pki["certs"]["alpha"][0])
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, f"fingerprint {fp_beta}")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, f"fingerprint {fp_alpha}")],
                         "    area 10.2.0.0/16;\n    handoff cname cdn.beta.test;")
    wait_up((alpha, "beta"), (beta, "alpha"))
    wrong = "AB:" * 31 + "CD"
    c = fresh_addr()
    gamma = start_speaker(tmp_path, procs, peer_pki, "gamma", c, [("alpha", a, f"fingerprint {wrong}")],
                          "    area 10.3.0.0/16;\n    handoff cname cdn.gamma.test;")
    wait_for(lambda: gamma.metric("ferry_peer_connections_refused_total") >= 1, 10 * SLOW, "gamma refuses alpha")
    assert not established(gamma, "alpha")


def test_bad_config_is_a_file_line_error(tmp_path, peer_pki):
    a = fresh_addr()
    conf = speaker_conf(peer_pki, "alpha", a, [("beta", None, "fingerprint 12:34")],
                        "    area 10.1.0.1/16;\n    handoff cname cdn.alpha.test;")
    f = Ferryd(str(tmp_path), "bad", conf)
    from conftest import FERRYD
    r = subprocess.run([FERRYD, "-t", "-c", f.conf], capture_output=True, text=True)
    assert r.returncode != 0
    assert "ferryd.conf:" in r.stderr and "fingerprint" in r.stderr and "area" in r.stderr

    # Area and content files: each bad line is reported with its own file and line.
    areas, units = tmp_path / "areas.txt", tmp_path / "units.txt"
    areas.write_text("# ours\n10.9.0.0/16\n10.9.0.1/16   # host bits\n" + "1" * 5000 + "\n2001:db8::/32\n")
    units.write_text("www.example.test\nWWW.Example.test\nhttps://cdn.example.test/a b\n")
    conf = speaker_conf(peer_pki, "alpha", a, [("beta", a, f"fingerprint {'AB:' * 31}CD")],
                        f"    area_file {areas};\n    content_file {units};\n    handoff cname cdn.alpha.test;")
    f.write_config(conf)
    r = subprocess.run([FERRYD, "-t", "-c", f.conf], capture_output=True, text=True)
    assert r.returncode != 0
    assert f"area_file {areas}:3: \"10.9.0.1/16\" is not an IPv4 or IPv6 prefix" in r.stderr, r.stderr
    assert f"area_file {areas}:4:" in r.stderr, r.stderr
    assert f"{areas}:5" not in r.stderr and f"{areas}:2" not in r.stderr, r.stderr
    assert f"content_file {units}:2: \"WWW.Example.test\"" in r.stderr, r.stderr
    assert f"content_file {units}:3:" in r.stderr and f"{units}:1" not in r.stderr, r.stderr


# ---- malformed input ----------------------------------------------------------

def tls_client(pki, cdn, addr):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.load_verify_locations(pki["ca"])
    ctx.load_cert_chain(*pki["certs"][cdn])
    ctx.set_alpn_protocols(["ferry-peer/1"])
    s = socket.create_connection((addr, PORT), timeout=10)
    return ctx.wrap_socket(s)


def read_msg(s):
    hdr = b""
    while len(hdr) < 6:
        chunk = s.recv(6 - len(hdr))
        if not chunk:
            return None
        hdr += chunk
    length, typ = struct.unpack("!IB", hdr[:5])
    body = b""
    while len(body) < length - 6:
        chunk = s.recv(length - 6 - len(body))
        if not chunk:
            break
        body += chunk
    return typ, body


def open_msg(cdn, hold=9):
    caps = bytes([0, 1, 0, 1, 0x01]) + bytes([0, 2, 0, 1, 0x01]) + bytes([0, 4, 0, 1, 1])
    body = bytes([1]) + struct.pack("!H", hold) + bytes([len(cdn)]) + cdn.encode() + caps
    return struct.pack("!IBB", 6 + len(body), 1, 0) + body


def test_malformed_messages_get_notification(tmp_path, procs, peer_pki):
    """A peer with a good certificate that then sends a bad header, or an
    UPDATE with a broken prefix, gets a NOTIFICATION with the right code and
    loses only its own session."""
    a = fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", None, "")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    # a length below 6
    s = tls_client(peer_pki, "beta", a)
    s.sendall(struct.pack("!IBB", 3, 4, 0))
    m = read_msg(s)
    while m and m[0] != 3:
        m = read_msg(s)
    assert m and m[1][:2] == bytes([1, 1]), m
    s.close()
    # a session, then an UPDATE announcing 10.0.0.0/33
    s = tls_client(peer_pki, "beta", a)
    s.sendall(open_msg("beta"))
    got = read_msg(s)
    assert got[0] == 1
    s.sendall(struct.pack("!IBB", 6, 4, 0))
    attrs = bytes([0, 1, 0, 6, 1, 4]) + b"beta" + bytes([0, 2, 0, 5, 1, 0, 2]) + b"bx"
    nlri = bytes([1, 33, 10, 0, 0, 0, 0])
    body = struct.pack("!I", 0) + struct.pack("!I", len(attrs)) + attrs + nlri
    s.sendall(struct.pack("!IBB", 6 + len(body), 2, 0) + body)
    m = read_msg(s)
    while m and m[0] != 3:
        m = read_msg(s)
    assert m and m[1][:2] == bytes([3, 6]), m
    s.close()
    # an OPEN that claims to be another CDN than the certificate's pin
    s = tls_client(peer_pki, "beta", a)
    s.sendall(open_msg("gamma"))
    m = read_msg(s)
    while m and m[0] != 3:
        m = read_msg(s)
    assert m and m[1][:2] == bytes([2, 2]), m
    s.close()
    assert alpha.proc.alive()
    assert alpha.metric("ferry_peer_notifications_total", 'dir="sent"') >= 3


def test_aggregation_and_export_policy(tmp_path, procs, peer_pki):
    """beta's own areas go out aggregated (siblings merged, covered prefixes
    dropped); its export rules for alpha hold some back. A reload that changes
    the rules re-sends the table: what is now allowed is announced, what is
    now refused is withdrawn."""
    a, b = fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    areas = ("    area 10.8.0.0/24;\n    area 10.8.1.0/24;\n    area 10.8.2.0/24;\n    area 10.8.0.128/25;\n"
             "    area 2001:db8::/49;\n    area 2001:db8:0:8000::/49;\n"
             "    publisher www.open.test;\n    publisher www.secret.test;\n    handoff cname cdn.beta.test;")
    rules = "export reject 10.8.2.0/24;export reject publisher www.secret.test;export accept any"
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, rules)], areas)
    wait_settled(alpha, "beta", beta, "alpha")
    wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 10 * SLOW, "End-of-RIB")

    def learned():
        return sorted(d["dest"] for d in routes(alpha) if d["routes"][0]["from"] == "beta")
    assert learned() == ["10.8.0.0/23", "2001:db8::/48", "www.open.test"]
    # beta's own view: aggregated too
    assert sorted(d["dest"] for d in routes(beta) if d["routes"][0]["from"] == "local") == [
        "10.8.0.0/23", "10.8.2.0/24", "2001:db8::/48", "www.open.test", "www.secret.test"]

    before = nbr(alpha, "beta")
    beta.write_config(speaker_conf(peer_pki, "beta", b, [("alpha", a, "export reject 10.8.0.0/16 le 23")], areas))
    beta.proc.send_signal(1)
    wait_for(lambda: learned() == ["10.8.2.0/24", "2001:db8::/48", "www.open.test", "www.secret.test"],
             10 * SLOW, "the new export rules applied")
    assert established(alpha, "beta") and nbr(alpha, "beta")["established"] == before["established"]
    # Only what the rules changed was sent: two routes announced, one withdrawn,
    # not the whole table again (End-of-RIB marks the end of that dump).
    wait_for(lambda: nbr(alpha, "beta")["updates_in"] > before["updates_in"], 10 * SLOW, "the dump's end")
    after = nbr(alpha, "beta")
    assert after["announced"] - before["announced"] == 2, (before, after)
    assert after["withdrawn"] - before["withdrawn"] == 1, (before, after)


def test_reload_policy_and_neighbors(tmp_path, procs, peer_pki):
    """Reloads change a running speaker: a relaxed import policy asks the peer
    for its routes again (ROUTE-REFRESH) without resetting the session; a new
    neighbor is connected; a removed one gets cease 6 (configuration change)
    and its routes are withdrawn."""
    a, b, c = fresh_addr(), fresh_addr(), fresh_addr()
    own = "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;"
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "reject 10.4.0.0/16 le 32")], own)
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 10.2.0.0/16;\n    area 10.4.4.0/24;\n    handoff cname cdn.beta.test;")
    gamma = start_speaker(tmp_path, procs, peer_pki, "gamma", c, [("alpha", a, "")],
                          "    area 10.3.0.0/16;\n    handoff cname cdn.gamma.test;")
    wait_settled(alpha, "beta", beta, "alpha")
    wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 10 * SLOW, "End-of-RIB")
    assert routes(alpha, "10.4.4.0/24") == [] and nbr(alpha, "beta")["rejected"] == 1
    ups = nbr(alpha, "beta")["established"]

    alpha.write_config(speaker_conf(peer_pki, "alpha", a, [("beta", b, ""), ("gamma", c, "")], own))
    alpha.proc.send_signal(1)
    wait_for(lambda: best_from(alpha, "10.4.4.0/24") == "beta", 10 * SLOW, "the refused route, asked again")
    assert nbr(alpha, "beta")["established"] == ups
    assert "route refresh" in alpha.proc.output()
    wait_for(lambda: best_from(alpha, "10.3.0.0/16") == "gamma", 15 * SLOW, "the new neighbor's routes")

    alpha.write_config(speaker_conf(peer_pki, "alpha", a, [("gamma", c, "")], own))
    alpha.proc.send_signal(1)
    wait_for(lambda: routes(alpha, "10.2.0.0/16") == [], 10 * SLOW, "the removed neighbor's routes gone")
    wait_for(lambda: "configuration change" in nbr(beta, "alpha")["last_error"], 10 * SLOW, "cease 6 at beta")
    assert best_from(alpha, "10.3.0.0/16") == "gamma"
    assert all(n["cdn"] != "beta" or n["state"] != "Established" for n in api(alpha, "/peers")["neighbors"])


def test_large_table_in_many_messages(tmp_path, procs, peer_pki):
    """A table larger than what the receiver reads in one go (512 KiB per loop
    turn) and than one message (1 MiB): 20,000 areas unaggregated and 3,000
    URI prefixes of 2,000 bytes each. It arrives whole, in many UPDATEs, and
    the receiver answers its admin API meanwhile."""
    a, b = fresh_addr(), fresh_addr()
    areas = tmp_path / "areas.txt"
    units = tmp_path / "units.txt"
    areas.write_text("".join(f"10.{i >> 8}.{i & 255}.0/24\n" for i in range(20000)))
    units.write_text("".join(f"https://www.example.test/{i:06d}/{'x' * 1960}\n" for i in range(3000)))
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          "    area 192.0.2.0/24;\n    handoff cname cdn.alpha.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         f"    aggregate off;\n    area_file {areas};\n    content_file {units};\n"
                         "    handoff cname cdn.beta.test;")
    wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 60 * SLOW, "the whole table")
    n = nbr(alpha, "beta")
    # over 6 MB in messages of at most 1 MiB, then End-of-RIB
    assert n["routes"] == 23000 and n["updates_in"] >= 7, n
    assert routes(alpha, "https://www.example.test/002999/" + "x" * 1960)[0]["routes"][0]["from"] == "beta"
    assert nbr(beta, "alpha")["updates_out"] == n["updates_in"]


def test_source_address_and_capability_mismatch(tmp_path, procs, peer_pki):
    """`source` sets where our connections come from (beta, passive, sees
    alpha's session arrive from it); speakers with no message family in
    common get OPEN error 4 and no session."""
    a, b, src = fresh_addr(), fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")],
                          f"    source {src};\n    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", None, "")],
                         "    area 10.2.0.0/16;\n    handoff cname cdn.beta.test;")
    wait_up((beta, "alpha"))
    assert nbr(beta, "alpha")["remote"].split(":")[0] == src
    assert nbr(alpha, "beta")["direction"] == "outbound"

    # a second alpha, offering areas only, and a gamma offering content only
    c, d = fresh_addr(), fresh_addr()
    alpha2 = start_speaker(tmp_path, procs, peer_pki, "alpha", d, [("gamma", c, "")],
                           "    families areas;\n    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    gamma = start_speaker(tmp_path, procs, peer_pki, "gamma", c, [("alpha", d, "")],
                          "    families content;\n    publisher www.gamma.test;\n    handoff cname cdn.gamma.test;")
    wait_for(lambda: "no common capability" in nbr(gamma, "alpha")["last_error"] and
             "no common capability" in nbr(alpha2, "gamma")["last_error"], 15 * SLOW, "OPEN error 4 both ways")
    alpha = alpha2
    assert not established(alpha, "gamma") and not established(gamma, "alpha")


def raw_session(pki, cdn, addr):
    """A hand-made peer: TLS with cdn's certificate, OPEN, KEEPALIVE."""
    s = tls_client(pki, cdn, addr)
    s.sendall(open_msg(cdn))
    got = read_msg(s)
    assert got[0] == 1, got
    s.sendall(struct.pack("!IBB", 6, 4, 0))
    return s


def update_msg(path, handoff, nlri):
    p = bytes([len(path)]) + b"".join(bytes([len(x)]) + x.encode() for x in path)
    h = bytes([1]) + struct.pack("!H", len(handoff)) + handoff.encode()
    attrs = bytes([0, 1]) + struct.pack("!H", len(p)) + p + bytes([0, 2]) + struct.pack("!H", len(h)) + h
    body = struct.pack("!I", 0) + struct.pack("!I", len(attrs)) + attrs + nlri
    return struct.pack("!IBB", 6 + len(body), 2, 0) + body


def test_route_with_own_id_dropped(tmp_path, procs, peer_pki):
    """A peer that sends a route whose PATH already holds the receiver's id
    (a loop) sees it dropped and counted, with no NOTIFICATION: the session
    stays up and its other routes are taken."""
    a = fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", None, "")],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    s = raw_session(peer_pki, "beta", a)
    s.sendall(update_msg(["beta", "gamma", "alpha"], "cdn.beta.test", bytes([1, 16, 10, 7])))
    s.sendall(update_msg(["beta"], "cdn.beta.test", bytes([1, 16, 10, 8])))
    wait_for(lambda: routes(alpha, "10.8.0.0/16"), 10 * SLOW, "the good route")
    assert routes(alpha, "10.7.0.0/16") == []
    assert nbr(alpha, "beta")["looped"] == 1 and established(alpha, "beta")
    assert alpha.metric("ferry_peer_routes_looped_total") == 1
    s.close()
    wait_for(lambda: routes(alpha, "10.8.0.0/16") == [], 10 * SLOW, "withdrawn when the session ends")


# ---- three CDNs ---------------------------------------------------------------

def test_triangle_paths_and_loops(tmp_path, procs, peer_pki):
    """alpha, beta and gamma in a triangle, each re-advertising (transit on).
    gamma's area reaches alpha directly (path gamma) and through beta (path
    beta gamma): the shorter wins, with reason path. Nobody holds a route
    whose path has its own id (test_route_with_own_id_dropped checks the
    receiver's side with a peer that sends one anyway)."""
    a, b, c = fresh_addr(), fresh_addr(), fresh_addr()
    ho = lambda x: f"    handoff cname cdn.{x}.test;"
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a,
                          [("beta", b, "transit on"), ("gamma", c, "transit on")],
                          "    area 10.1.0.0/16;\n" + ho("alpha"))
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b,
                         [("alpha", a, "transit on"), ("gamma", c, "transit on")],
                         "    area 10.2.0.0/16;\n" + ho("beta"))
    gamma = start_speaker(tmp_path, procs, peer_pki, "gamma", c,
                          [("alpha", a, "transit on"), ("beta", b, "transit on")],
                          "    area 10.3.0.0/16;\n" + ho("gamma"))
    wait_up((alpha, "beta"), (alpha, "gamma"), (beta, "gamma"))

    def two_paths():
        r = routes(alpha, "10.3.0.0/16")
        return r and len(r[0]["routes"]) == 2
    wait_for(two_paths, 10 * SLOW, "gamma's area by two paths at alpha")
    r = routes(alpha, "10.3.0.0/16")[0]
    assert r["routes"][0]["path"] == ["gamma"] and r["reason"] == "path"
    assert r["routes"][1]["path"] == ["beta", "gamma"]
    # the hand-off re-advertised by beta is beta's own, not gamma's
    assert r["routes"][1]["handoff"][0]["target"] == "cdn.beta.test"
    for f in (alpha, beta, gamma):
        for d in routes(f):
            for rt in d["routes"]:
                assert f.name.split("-")[0] not in rt["path"], (f.name, d)
    # senders filter too: nothing with the receiver's id on its path was ever sent
    assert all(nbr(f, x)["looped"] == 0 for f, x in ((alpha, "beta"), (alpha, "gamma"), (beta, "gamma")))

    # beta goes away: alpha keeps gamma's route, only by the direct path
    beta.stop()
    procs.remove(beta)
    wait_for(lambda: len(routes(alpha, "10.3.0.0/16")[0]["routes"]) == 1, 10 * SLOW, "path via beta gone")
    wait_for(lambda: routes(alpha, "10.2.0.0/16") == [], 10 * SLOW, "beta's own area gone")


def test_import_policy(tmp_path, procs, peer_pki):
    """alpha accepts from beta only 10.0.0.0/8 up to /24 and only publishers
    under example.test; the rest is refused and counted. A route limit ends
    the session with cease 5."""
    a, b = fresh_addr(), fresh_addr()
    policy = "reject 10.99.0.0/16 le 32;accept 10.0.0.0/8 le 24;accept publisher *.example.test;reject any"
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, policy)],
                          "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 10.2.0.0/16;\n    area 10.99.1.0/24;\n    area 10.4.4.0/25;\n"
                         "    area 192.0.2.0/24;\n    publisher www.example.test;\n    publisher www.other.test;\n"
                         "    handoff cname cdn.beta.test;")
    wait_up((alpha, "beta"))
    wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 10 * SLOW, "End-of-RIB")
    learned = sorted(d["dest"] for d in routes(alpha) if d["routes"][0]["from"] == "beta")
    assert learned == ["10.2.0.0/16", "www.example.test"]
    assert nbr(alpha, "beta")["rejected"] == 4

    # a limit of 1 route: beta's session ends with cease 5 (too many routes)
    d = fresh_addr()
    delta = start_speaker(tmp_path, procs, peer_pki, "gamma", d, [("beta", b, "max_routes 1")],
                          "    area 10.5.0.0/16;\n    handoff cname cdn.gamma.test;")
    beta2_conf = speaker_conf(peer_pki, "beta", b, [("alpha", a, ""), ("gamma", d, "")],
                              "    area 10.2.0.0/16;\n    area 10.99.1.0/24;\n    handoff cname cdn.beta.test;")
    beta.write_config(beta2_conf)
    beta.proc.send_signal(1)
    wait_for(lambda: "too many routes" in nbr(delta, "beta")["last_error"], 15 * SLOW, "cease 5")


# ---- the router follows the advertisements ---------------------------------------

def router_and_speaker_conf(pki, cdn, addr, neighbors, peer_extra, router_body, hold="3s"):
    """One ferryd with a router (DNS on addr:5300) and a peer speaker."""
    text = speaker_conf(pki, cdn, addr, neighbors, peer_extra, hold=hold)
    return text + f"""router {{
    cdn {cdn};
    listen {addr}:5300;
    learned_delay 0;
{router_body}
}}
"""


ALPHA_ROUTER = """
    node a1 { address 192.0.2.1; }
    area 0.0.0.0/0 a1;
    area 203.0.113.0/24 a1;
    zone example.test {
        ns ns1.example.test;
        record ns1 A 192.0.2.53;
        service www;
    }
"""


def test_router_follows_advertisements(netns, tmp_path, procs, peer_pki):
    """alpha runs a router and a speaker in one ferryd; beta advertises
    198.51.100.0/24 with a CNAME hand-off. A client of that area (as its ECS
    subnet says) is handed to beta. When the link between the speakers is
    cut (nft drops), the hold time (3 s) ends the session, the route is
    withdrawn and the same client is answered with alpha's node; when the
    link is back, so is the hand-off. A static area for the same prefix
    would win: 203.0.113.0/24 stays alpha's though beta advertises it."""
    from test_router import addrs, query
    import dns.rdatatype
    a, b = "127.0.1.1", "127.0.2.1"
    alpha = Ferryd(str(tmp_path), "alpha",
                   router_and_speaker_conf(peer_pki, "alpha", a, [("beta", b, "")],
                                           "    area 192.0.2.0/24;\n    handoff cname cdn.alpha.test;",
                                           ALPHA_ROUTER),
                   admin_addr=f"{a}:9000")
    procs.append(alpha)
    alpha.start([(a, PORT), (a, 9000)])
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 198.51.100.0/24;\n    area 203.0.113.0/24;\n"
                         "    handoff cname cdn.beta.test;", hold="3s")

    def answer(client="198.51.100.7"):
        r = query(a, "www.example.test", "A", ecs=(client, 32))
        cname = [str(rr.target) for rrset in r.answer if rrset.rdtype == dns.rdatatype.CNAME for rr in rrset]
        return cname[0] if cname else ",".join(addrs(r))

    wait_for(lambda: answer().endswith("cdn.beta.test."), 15 * SLOW, "hand-off to beta")
    assert answer("198.51.99.7") == "192.0.2.1"          # outside beta's area
    assert answer("203.0.113.9") == "192.0.2.1"          # static area wins over learned
    assert alpha.metric("ferry_router_decisions_total", 'reason="peer_cname"') >= 1

    # cut the link both ways (the speakers' connections are the only ones on
    # their port): the session dies by hold timer, the answer changes
    nft("add table inet cut",
        "add chain inet cut out { type filter hook output priority 0 ; }",
        f"add rule inet cut out tcp dport {PORT} drop",
        f"add rule inet cut out tcp sport {PORT} drop")
    wait_for(lambda: answer() == "192.0.2.1", 15 * SLOW, "alpha's node once the route is withdrawn")
    assert "hold timer" in nbr(alpha, "beta")["last_error"], nbr(alpha, "beta")
    nft("delete table inet cut")
    wait_for(lambda: answer().endswith("cdn.beta.test."), 20 * SLOW, "the hand-off back with the link")


def test_message_size_limit_and_connect_timeouts(tmp_path, procs, peer_pki):
    """max_message: alpha accepts at most 4 KiB messages and says so in its
    OPEN; beta splits a 3,000-area table to fit, and a raw peer that sends
    more gets NOTIFICATION 1/1. connect_timeout and connect_retry_max: a
    neighbor whose SYNs vanish fails by timeout, again and again at the
    short retry bound, without holding up the other session."""
    a, b, g = fresh_addr(), fresh_addr(), fresh_addr()
    limits = "    max_message 4096;\n    connect_timeout 300ms;\n"
    nft("add table inet blackhole",
        "add chain inet blackhole out { type filter hook output priority 0 ; }",
        f"add rule inet blackhole out ip daddr {g} tcp dport {PORT} drop")
    try:
        alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, ""), ("gamma", g, "")],
                              limits + "    area 10.1.0.0/16;\n    handoff cname cdn.alpha.test;",
                              retry=("100ms", "400ms"))
        areas = tmp_path / "beta-areas.txt"
        areas.write_text("".join(f"10.{64 + i // 256}.{i % 256}.0/24\n" for i in range(3000)))
        beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                             f"    aggregate off;\n    area_file {areas};\n    handoff cname cdn.beta.test;")
        wait_up((alpha, "beta"))
        wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 20 * SLOW, "beta's table")
        n = nbr(alpha, "beta")
        assert n["routes"] == 3000, n
        # 3,000 prefixes of 4 bytes each do not fit in one 4 KiB UPDATE.
        assert n["updates_in"] >= 4, n
        # gamma never answers: each attempt ends by connect_timeout, and the
        # retries stay within connect_retry_max, so they pile up quickly.
        wait_for(lambda: nbr(alpha, "gamma")["connect_failures"] >= 6, 20 * SLOW, "gamma's connects time out")
        assert nbr(alpha, "gamma")["last_error"] == "connect timed out", nbr(alpha, "gamma")
        assert established(alpha, "beta")
    finally:
        nft("delete table inet blackhole")

    # A raw peer: alpha's OPEN carries MAX-MESSAGE 4096; a 5,000-byte message is refused.
    # (As gamma: beta's session is up, and a second one would be a collision.)
    s = tls_client(peer_pki, "gamma", a)
    s.sendall(open_msg("gamma"))
    typ, body = read_msg(s)
    assert typ == 1
    caps, i = body[4 + body[3]:], 0
    found = None
    while i + 4 <= len(caps):
        t, ln = caps[i + 1], struct.unpack("!H", caps[i + 2:i + 4])[0]
        if t == 6:
            found = struct.unpack("!I", caps[i + 4:i + 8])[0]
        i += 4 + ln
    assert found == 4096, body
    s.sendall(struct.pack("!IBB", 5000, 2, 0) + bytes(4994))
    m = read_msg(s)
    while m and m[0] != 3:
        m = read_msg(s)
    assert m and m[1][:2] == bytes([1, 1]), m
    s.close()
    assert alpha.proc.alive()


def test_routing_and_content_types(tmp_path, procs, peer_pki):
    """The speaker-level routing_types and content_types are offered in OPEN
    and a session carries only what both sides offer: alpha (HTTP redirects
    only) learns beta's areas with beta's HTTP hand-off and not its CNAME; a
    speaker with no routing type or no content type in common gets OPEN
    error 4, and says which."""
    a, b, c, d = fresh_addr(), fresh_addr(), fresh_addr(), fresh_addr()
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, ""), ("gamma", c, "")],
                          "    routing_types http;\n    content_types static streaming;\n"
                          "    area 10.1.0.0/16;\n    handoff http https://cdn.alpha.test/;")
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, ""), ("gamma", d, "")],
                         "    content_types streaming;\n    area 10.2.0.0/16;\n"
                         "    handoff cname cdn.beta.test;\n    handoff http https://cdn.beta.test/;")
    wait_up((alpha, "beta"), (beta, "alpha"))
    wait_for(lambda: nbr(alpha, "beta")["end_of_rib"], 10 * SLOW, "beta's table")
    (dest,) = routes(alpha, "10.2.0.0/16")
    assert [(h["method"], h["target"]) for h in dest["routes"][0]["handoff"]] == [
        ("http", "https://cdn.beta.test/")], dest
    # gamma offers DNS hand-offs only: nothing in common with alpha. As
    # another gamma (at d), it offers static content only: nothing in common with beta.
    start_speaker(tmp_path, procs, peer_pki, "gamma", c, [("alpha", a, "")],
                  "    routing_types dns;\n    area 10.3.0.0/16;\n    handoff cname cdn.gamma.test;")
    start_speaker(tmp_path, procs, peer_pki, "gamma", d, [("beta", b, "")],
                  "    content_types static;\n    area 10.3.0.0/16;\n    handoff cname cdn.gamma.test;")
    wait_for(lambda: "no common capability" in nbr(alpha, "gamma")["last_error"], 15 * SLOW,
             "OPEN error 4 between alpha and gamma")
    wait_for(lambda: "no common capability" in nbr(beta, "gamma")["last_error"], 15 * SLOW,
             "OPEN error 4 between beta and gamma")
    # Each side reads the other's OPEN before its NOTIFICATION, and says why it refuses.
    assert "no common routing type" in alpha.proc.output()
    assert "no common content type" in beta.proc.output()
    assert not established(alpha, "gamma") and not established(beta, "gamma")
    assert established(alpha, "beta")


def test_reload_of_session_parameters_resets_the_session(tmp_path, procs, peer_pki):
    """A reload that changes what our OPEN says (hold time, message
    families) resets the sessions with cease 6, and they come back with the
    new parameters; a reload that changes none of them leaves them up."""
    a, b = fresh_addr(), fresh_addr()
    own = "    area 10.1.0.0/16;\n    publisher www.alpha.test;\n    handoff cname cdn.alpha.test;"
    alpha = start_speaker(tmp_path, procs, peer_pki, "alpha", a, [("beta", b, "")], own)
    beta = start_speaker(tmp_path, procs, peer_pki, "beta", b, [("alpha", a, "")],
                         "    area 10.2.0.0/16;\n    handoff cname cdn.beta.test;")
    wait_settled(alpha, "beta", beta, "alpha")
    wait_for(lambda: nbr(beta, "alpha")["end_of_rib"], 10 * SLOW, "alpha's table")
    assert nbr(beta, "alpha")["hold_time"] == 9
    ups = nbr(alpha, "beta")["established"]
    assert routes(beta, "www.alpha.test") != []

    # Same parameters, another area: the session stays (only UPDATEs flow).
    alpha.write_config(speaker_conf(peer_pki, "alpha", a, [("beta", b, "")], own + "\n    area 10.9.0.0/16;"))
    alpha.proc.send_signal(1)
    wait_for(lambda: routes(beta, "10.9.0.0/16") != [], 10 * SLOW, "the new area")
    assert nbr(alpha, "beta")["established"] == ups

    # Hold time 3 s and areas only: reset, back with both.
    alpha.write_config(speaker_conf(peer_pki, "alpha", a, [("beta", b, "")],
                                    "    families areas;\n" + own, hold="3s"))
    alpha.proc.send_signal(1)
    # (Both sides reconnect at once after the reset; when each side sees a
    # different connection become Established first, the collision rule can
    # close both, and they try again: so "at least once more", not "once".)
    wait_for(lambda: nbr(alpha, "beta")["established"] > ups and established(alpha, "beta")
             and established(beta, "alpha") and nbr(beta, "alpha")["hold_time"] == 3
             and nbr(alpha, "beta")["hold_time"] == 3, 20 * SLOW, "the session back with hold time 3")
    wait_for(lambda: nbr(beta, "alpha")["end_of_rib"], 10 * SLOW, "alpha's table again")
    assert routes(beta, "www.alpha.test") == []       # content units are no longer a family in common
    assert routes(beta, "10.1.0.0/16") != []
    assert "peer alpha: the peer sent NOTIFICATION: cease: configuration change" in beta.proc.output()
    assert "peer beta: session parameters changed: resetting the session" in alpha.proc.output()
