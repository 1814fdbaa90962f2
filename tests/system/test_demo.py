"""make demo's script: starts an origin and two CDNs. Alpha's node A (three
caches and a switch routing by label) serves over HTTPS and HTTP and resumes
TLS sessions on the cache that holds them; beta's node B (three caches
sharing session state, a round-robin switch) resumes on whichever cache a
client lands. Alpha's router answers its own clients with node A and hands
beta's (by ECS subnet, or by client address for HTTP) to beta, whose areas it
learned from beta's peering speaker. It writes the topology file and stops
everything on SIGINT."""
import json
import os
import signal
import subprocess

from conftest import BUILD, SRC, SLOW, curl, wait_for


def test_demo_runs_and_stops(tmp_path):
    env = dict(os.environ, FERRY_DEMO_DIR=str(tmp_path / "run"), FERRY_BUILD=BUILD)
    log = open(tmp_path / "demo.out", "wb")
    p = subprocess.Popen([os.path.join(SRC, "demo", "run.sh")], stdout=log, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True)
    try:
        topo_path = tmp_path / "run" / "topology.json"
        wait_for(lambda: topo_path.exists() or p.poll() is not None, 60, "topology.json")
        assert p.poll() is None, (tmp_path / "demo.out").read_text()
        topo = json.loads(topo_path.read_text())
        roles = sorted(s["role"] for s in topo["services"])
        assert roles == ["cache"] * 6 + ["origin", "router", "router", "switch", "switch"]
        assert sorted(s["label"] for s in topo["services"] if s["role"] == "cache" and "label" in s) == [1, 2, 3]
        sw = [s for s in topo["services"] if s["role"] == "switch" and "node" not in s][0]
        bsw = [s for s in topo["services"] if s["role"] == "switch" and s.get("node") == "b"][0]
        host = topo["publishers"][0]["host"]
        port = sw["ports"]["https"]
        args = ["--cacert", topo["ca"], "--resolve", f"{host}:{port}:{sw['address']}",
                f"https://{host}:{port}/static/app.css"]
        s, h, b = curl(*args)
        assert s == 200 and b == b"style\n" and h["x-cache"] == ["MISS"]
        s, h, b = curl(*args)
        assert h["x-cache"] == ["HIT"]
        s, h, b = curl("-H", f"Host: {host}", f"http://{sw['address']}:{sw['ports']['http']}/static/app.css")
        assert s == 200 and b == b"style\n"
        # A TLS session resumes through the switch, on the cache that issued it.
        sess = tmp_path / "sess.pem"
        base = ["openssl", "s_client", "-connect", f"{sw['address']}:{port}", "-servername", host,
                "-CAfile", topo["ca"], "-ign_eof"]
        req = f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
        r1 = subprocess.run(base + ["-sess_out", str(sess)], input=req, capture_output=True, timeout=30)
        r2 = subprocess.run(base + ["-sess_in", str(sess)], input=req, capture_output=True, timeout=30)
        assert b"Reused, TLS" in r2.stdout, r2.stdout
        via1 = [l for l in r1.stdout.split(b"\r\n") if l.startswith(b"Via:")]
        via2 = [l for l in r2.stdout.split(b"\r\n") if l.startswith(b"Via:")]
        assert via1 and via1 == via2
        # Node B's switch has all three caches in service (its TLS health checks passed).
        ctl = os.path.join(BUILD, "ferryctl")
        bconf = str(tmp_path / "run" / "b-switch.conf")

        def b_all_up():
            r = subprocess.run([ctl, "-c", bconf, "switch"], capture_output=True, text=True, timeout=30)
            return r.returncode == 0 and all(b["up"] for b in json.loads(r.stdout)["backends"])
        wait_for(b_all_up, 30, "node B's caches in service")
        # Node B: round robin, and still every reconnection resumes, on several caches:
        # TLS 1.2 without tickets through the group store, TLS 1.3 through the group's ticket keys.
        for version, extra in (("-tls1_2", ["-no_ticket"]), ("-tls1_3", [])):
            bbase = ["openssl", "s_client", "-connect", f"{bsw['address']}:{bsw['ports']['https']}",
                     "-servername", host, "-CAfile", topo["ca"], "-ign_eof", version] + extra
            bsess = tmp_path / f"b{version}.pem"
            subprocess.run(bbase + ["-sess_out", str(bsess)], input=req, capture_output=True, timeout=30,
                           check=True)
            seen = set()
            for _ in range(3):
                r = subprocess.run(bbase + ["-sess_in", str(bsess)], input=req, capture_output=True, timeout=30)
                assert b"Reused, TLSv1" in r.stdout, r.stdout
                seen.update(l.split()[2] for l in r.stdout.split(b"\r\n") if l.startswith(b"Via:"))
            assert len(seen) == 3, (version, seen)
        # Node B's switch handed those connections over to its caches instead of relaying them.
        r = subprocess.run([ctl, "-c", bconf, "switch"], capture_output=True, text=True, timeout=30)
        bb = json.loads(r.stdout)["backends"]
        assert sum(b["handed_off"] for b in bb) >= 8 and all(b["handed_off"] >= 1 for b in bb), bb
        ctl = subprocess.run([os.path.join(BUILD, "ferryctl"), "-c", str(tmp_path / "run" / "b-cache2.conf"),
                              "sessions"], capture_output=True, text=True, timeout=30)
        st = json.loads(ctl.stdout)
        assert st["session_store"] == "group" and st["tls_group"]["received"] >= 1, st
        assert st["tls_resumed_handshakes"] >= 2, st
        # Request routing: alpha answers its own area with node A, beta's with node B
        # (after asking beta's router), and redirects HTTP clients the same way.
        ra = [s for s in topo["services"] if s["role"] == "router" and s["cdn"] == "alpha"][0]
        dig = ["dig", "+short", "+time=2", "+tries=2", f"@{ra['address']}", "-p", str(ra["ports"]["dns"]), host]
        a = subprocess.run(dig + ["+subnet=192.0.2.0/24"], capture_output=True, text=True, timeout=30).stdout.split()
        assert a == [sw["address"]], a
        b = subprocess.run(dig + ["+subnet=198.51.100.0/24"], capture_output=True, text=True, timeout=30).stdout.split()
        assert b == [bsw["address"]], b
        # Beta's areas reached alpha's router by advertisement over the peering
        # session, not by config: the decision says so.
        actl = [os.path.join(BUILD, "ferryctl"), "-c", str(tmp_path / "run" / "alpha-router.conf")]
        out = subprocess.run(actl + ["peers"], capture_output=True, text=True, timeout=30).stdout
        assert "beta" in out and "Established" in out, out
        look = json.loads(subprocess.run(actl + ["route", "198.51.100.7", host], capture_output=True, text=True,
                                         timeout=30).stdout)
        assert look["learned"] is True and look["peer"] == "beta" and look["reason"] == "peer_ecs", look
        assert "area 198.51.100.0/24" not in (tmp_path / "run" / "alpha-router.conf").read_text().split("peer {")[0]
        redir = f"http://{ra['address']}:{ra['ports']['http']}/static/app.css"
        s, h, body = curl("-L", "--cacert", topo["ca"], "--resolve", f"alpha-1.example.test:{port}:{sw['address']}",
                          "-H", f"Host: {host}", redir)
        assert s == 200 and body == b"style\n"
        s, h, body = curl("-L", "--cacert", topo["ca"], "--resolve", f"beta-1.example.test:{port}:{bsw['address']}",
                          "--interface", "127.0.2.1", "-H", f"Host: {host}", redir)
        assert s == 200 and body == b"style\n" and h["via"][0].startswith("1.1 demo-b-cache"), h
        out = (tmp_path / "demo.out").read_text()
        assert "ferryctl" in out and "switch" in out and "dig @" in out
    finally:
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=30 * SLOW)
        log.close()
    assert rc == 0
    assert "demo: stopped" in (tmp_path / "demo.out").read_text()
    for name in ("origin.log", "cache1.log", "cache2.log", "cache3.log", "switch.log",
                 "b-cache1.log", "b-cache2.log", "b-cache3.log", "b-switch.log", "alpha-router.log",
                 "beta-router.log"):
        assert "stopped" in (tmp_path / "run" / name).read_text(), name
