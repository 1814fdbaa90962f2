"""make demo's script: starts, serves through the cache over HTTPS, writes the
topology file, and stops everything on SIGINT."""
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
        wait_for(lambda: topo_path.exists() or p.poll() is not None, 30, "topology.json")
        assert p.poll() is None, (tmp_path / "demo.out").read_text()
        topo = json.loads(topo_path.read_text())
        cache = [s for s in topo["services"] if s["role"] == "cache"][0]
        host = topo["publishers"][0]["host"]
        url = f"https://{host}:{cache['ports']['https']}/static/app.css"
        args = ["--cacert", topo["ca"], "--resolve", f"{host}:{cache['ports']['https']}:{cache['address']}", url]
        s, h, b = curl(*args)
        assert s == 200 and b == b"style\n" and h["x-cache"] == ["MISS"]
        s, h, b = curl(*args)
        assert h["x-cache"] == ["HIT"]
        out = (tmp_path / "demo.out").read_text()
        assert "curl -si --cacert" in out
    finally:
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=30 * SLOW)
        log.close()
    assert rc == 0
    assert "demo: stopped" in (tmp_path / "demo.out").read_text()
    for name in ("origin.log", "cache.log"):
        assert "stopped" in (tmp_path / "run" / name).read_text()
