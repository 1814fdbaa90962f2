"""make demo's script: starts an origin, three caches and a switch, serves
through the switch over HTTPS and HTTP, resumes TLS sessions on the cache
that holds them, writes the topology file, and stops everything on SIGINT."""
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
        assert roles == ["cache", "cache", "cache", "origin", "switch"]
        assert sorted(s["label"] for s in topo["services"] if s["role"] == "cache") == [1, 2, 3]
        sw = [s for s in topo["services"] if s["role"] == "switch"][0]
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
        out = (tmp_path / "demo.out").read_text()
        assert "ferryctl" in out and "switch" in out
    finally:
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=30 * SLOW)
        log.close()
    assert rc == 0
    assert "demo: stopped" in (tmp_path / "demo.out").read_text()
    for name in ("origin.log", "cache1.log", "cache2.log", "cache3.log", "switch.log"):
        assert "stopped" in (tmp_path / "run" / name).read_text(), name
