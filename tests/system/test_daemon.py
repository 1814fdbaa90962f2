"""ferryd as a program: flags, config check, signals, admin endpoint, ferryctl."""
import json
import os
import signal
import subprocess

from conftest import FERRYD, FERRYCTL, Ferryd, curl, fresh_addr, port_open, wait_for


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_help_and_version():
    r = run(FERRYD, "--help")
    assert r.returncode == 0 and "usage: ferryd" in r.stdout
    r = run(FERRYD, "-V")
    assert r.returncode == 0 and r.stdout.startswith("ferryd ")
    r = run(FERRYCTL, "-h")
    assert r.returncode == 0 and "purge" in r.stdout
    r = run(FERRYD, "--bogus")
    assert r.returncode == 2


def test_config_check_reports_file_line(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("workers 2;\norigin {\n    listen 127.0.0.1:99999;\n    root /nonexistent;\n}\nfoo bar;\n")
    r = run(FERRYD, "-t", "-c", str(conf))
    assert r.returncode == 1
    assert f"{conf}:3: \"listen\": invalid address \"127.0.0.1:99999\"" in r.stderr
    assert f"{conf}:6: unknown directive \"foo\"" in r.stderr


def test_config_check_semantic_errors(tmp_path):
    conf = tmp_path / "bad.conf"
    conf.write_text("origin {\n  listen 127.0.0.1:8080;\n  root /nonexistent;\n}\n")
    r = run(FERRYD, "-t", "-c", str(conf))
    assert r.returncode == 1
    assert f"{conf}:3: root \"/nonexistent\" is not a directory" in r.stderr


def test_config_check_ok(tmp_path):
    (tmp_path / "www").mkdir()
    conf = tmp_path / "ok.conf"
    conf.write_text("origin { listen 127.0.0.1:8080; root www; }\n")
    r = run(FERRYD, "-t", "-c", str(conf))
    assert r.returncode == 0, r.stderr
    assert "configuration OK" in r.stdout


def test_options_doc():
    r = run(FERRYD, "--options")
    assert r.returncode == 0
    assert "| `memory` | size |" in r.stdout
    assert "### cache > publisher" in r.stdout


def origin_config(addr, root, extra=""):
    return f"origin {{\n    listen {addr}:8080;\n    root {root};\n{extra}}}\n"


def test_admin_endpoint_and_ctl(tmp_path, procs):
    addr = fresh_addr()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "a.txt").write_text("hello\n")
    f = Ferryd(str(tmp_path), "o", origin_config(addr, tmp_path / "www"), admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8080), (addr, 9000)])
    wait_for(lambda: f.admin_get("/readyz", token=False)[0] == 200, 10, "ready")
    assert f.admin_get("/healthz", token=False) == (200, "ok\n")
    # The API needs the token; metrics and health do not.
    assert f.admin_get("/api/v1/status", token=False)[0] == 401
    status, body = f.admin_get("/api/v1/status")
    assert status == 200
    st = json.loads(body)
    assert st["roles"] == ["origin"] and st["state"] == "running"
    r = f.ctl("status")
    assert json.loads(r.stdout)["pid"] == f.proc.p.pid
    r = run(FERRYCTL, "-a", f"{addr}:9000", "status")
    assert r.returncode == 1 and "HTTP 401" in r.stderr
    curl(f"http://{addr}:8080/a.txt")
    assert f.metric("ferry_origin_requests_total") == 1
    assert "# TYPE ferry_origin_requests_total counter" in f.admin_get("/metrics", token=False)[1]
    assert f.stop() == 0


def test_api_closed_without_token(tmp_path, procs):
    addr = fresh_addr()
    (tmp_path / "www").mkdir()
    cfg = origin_config(addr, tmp_path / "www") + f"admin {{ listen {addr}:9000; }}\n"
    f = Ferryd(str(tmp_path), "o", cfg)
    f.admin_addr = f"{addr}:9000"
    procs.append(f)
    f.start([(addr, 9000)])
    assert f.admin_get("/api/v1/status")[0] == 403
    assert f.admin_get("/healthz", token=False)[0] == 200


def test_reload_good_and_bad(tmp_path, procs):
    addr = fresh_addr()
    www = tmp_path / "www"
    www.mkdir()
    (www / "x.txt").write_text("x")
    f = Ferryd(str(tmp_path), "o", origin_config(addr, www, '    cache_control / "max-age=10";\n'),
               admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8080), (addr, 9000)])
    _, h, _ = curl(f"http://{addr}:8080/x.txt")
    assert h["cache-control"] == ["max-age=10"]
    # A good reload through SIGHUP changes the rule.
    f.write_config(origin_config(addr, www, '    cache_control / "max-age=20";\n'))
    f.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: curl(f"http://{addr}:8080/x.txt")[1].get("cache-control") == ["max-age=20"], 10, "reload")
    # A bad one is refused and the old config keeps serving.
    f.write_config(origin_config(addr, www, '    cache_control / ;\n'))
    r = f.ctl("reload", check=False)
    assert r.returncode == 1
    assert json.loads(r.stdout)["ok"] is False
    assert curl(f"http://{addr}:8080/x.txt")[1]["cache-control"] == ["max-age=20"]
    wait_for(lambda: "reload failed" in f.proc.output(), 5, "log line")
    assert "\"cache_control\" takes 2 arguments" in f.proc.output()
    assert f.metric("ferry_config_reload_failures_total") == 1


def test_sigterm_is_graceful_and_sigusr1_reopens(tmp_path, procs):
    addr = fresh_addr()
    www = tmp_path / "www"
    www.mkdir()
    log = tmp_path / "err.log"
    cfg = f"error_log {log};\n" + origin_config(addr, www)
    f = Ferryd(str(tmp_path), "o", cfg)
    procs.append(f)
    f.start([(addr, 8080)])
    wait_for(lambda: log.exists() and "started" in log.read_text(), 10, "log")
    os.rename(log, str(log) + ".1")
    f.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: log.exists() and "reopened" in log.read_text(), 10, "reopened log")
    assert f.stop() == 0
    assert "stopped" in log.read_text()
    assert not port_open(addr, 8080)


def test_config_options_doc_is_current():
    from conftest import SRC
    r = run(FERRYD, "--options")
    with open(f"{SRC}/docs/config-options.md") as f:
        assert f.read() == r.stdout, "docs/config-options.md is stale: run make options"
