"""The disk tier: objects survive a restart, are found again by Vary, and
purge reaches them."""
import json
import os

from conftest import Ferryd, curl, fresh_addr, wait_for

HOST = "www.example.test"


def test_objects_survive_restart(tmp_path, procs, nginx_factory):
    ngx = nginx_factory('location / { add_header Cache-Control "max-age=300"; }\n'
                        '        location /v/ { add_header Cache-Control "max-age=300"; add_header Vary "Accept-Language"; }')
    big = os.urandom(300 * 1024)
    ngx.put("/a.bin", big)
    ngx.put("/b.txt", "b")
    ngx.put("/v/x.txt", "v")
    addr = fresh_addr()
    disk = tmp_path / "disk"
    conf = f"""
cache {{
    name d;
    listen {addr}:8080;
    disk_path {disk};
    disk_size 64m;
    publisher {HOST} {{ origin http://{ngx.addr}:8080; }}
}}
"""
    f = Ferryd(str(tmp_path), "c", conf, admin_addr=f"{addr}:9000")
    procs.append(f)
    f.start([(addr, 8080)])
    get = lambda p, *a: curl("-H", f"Host: {HOST}", *a, f"http://{addr}:8080{p}")
    assert get("/a.bin")[1]["x-cache"] == ["MISS"]
    assert get("/b.txt")[1]["x-cache"] == ["MISS"]
    assert get("/v/x.txt", "-H", "Accept-Language: en")[1]["x-cache"] == ["MISS"]
    wait_for(lambda: json.loads(f.ctl("stats").stdout)["cache"]["disk"]["objects"] == 3, 10, "disk writes")
    assert f.stop() == 0

    f.start([(addr, 8080)])
    s, h, b = get("/a.bin")
    assert s == 200 and b == big and h["x-cache"] == ["HIT"]
    assert get("/v/x.txt", "-H", "Accept-Language: en")[1]["x-cache"] == ["HIT"]
    assert get("/v/x.txt", "-H", "Accept-Language: de")[1]["x-cache"] == ["MISS"]
    assert f.metric("ferry_cache_disk_reads_total") == 2
    assert ngx.saw("/a.bin", 1)
    # Purge reaches the disk tier too: after a restart the object is gone.
    r = json.loads(f.ctl("purge", f"http://{HOST}/b.txt").stdout)
    assert r["purged_disk"] == 1
    assert f.stop() == 0
    f.start([(addr, 8080)])
    assert get("/b.txt")[1]["x-cache"] == ["MISS"]
    assert ngx.saw("/b.txt", 2)


def test_bad_disk_path_fails_start(tmp_path, procs):
    addr = fresh_addr()
    (tmp_path / "file").write_text("not a directory")
    conf = f"""
cache {{
    listen {addr}:8080;
    disk_path {tmp_path}/file/sub;
    publisher {HOST} {{ origin http://127.0.0.1:1; }}
}}
"""
    f = Ferryd(str(tmp_path), "c", conf)
    procs.append(f)
    f.start()
    wait_for(lambda: not f.proc.alive(), 10, "exit")
    assert f.proc.p.returncode == 1
    assert "disk tier" in f.proc.output()
