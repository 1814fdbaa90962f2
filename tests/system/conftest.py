"""Shared fixtures for Ferry's system tests.

Each test starts real processes (ferryd, nginx) on its own 127.x.y.z
addresses, talks to them with real clients (curl, openssl s_client) and
stops everything it started, by PID. Readiness is polled, never slept for.
"""
import ctypes
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

SRC = os.environ.get("FERRY_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("FERRY_BUILD", os.path.join(SRC, "build"))
FERRYD = os.path.join(BUILD, "ferryd")
FERRYCTL = os.path.join(BUILD, "ferryctl")
SANITIZED = os.environ.get("FERRY_SANITIZE", "0") in ("1", "ON", "TRUE", "true")
# Sanitized builds are several times slower; readiness waits scale with it.
SLOW = 4 if SANITIZED else 1


def wait_for(pred, timeout=10.0, what="condition"):
    """Polls pred() until it returns a true value; fails the test after timeout."""
    deadline = time.monotonic() + timeout * SLOW
    delay = 0.005
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def port_open(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=0.5):
            return True
    except OSError:
        return False


_used = set()


def fresh_addr():
    """A 127.x.y.z address no other test in this process uses (and random across processes)."""
    while True:
        a = "127.%d.%d.%d" % (random.randint(20, 250), random.randint(0, 255), random.randint(2, 254))
        if a not in _used:
            _used.add(a)
            return a


class Proc:
    """A process started by a test, stopped by PID."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    def alive(self):
        return self.p.poll() is None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.alive():
            os.kill(self.p.pid, sig)
            try:
                self.p.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        if not self.log.closed:
            self.log.close()
        return self.p.returncode

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")


class Ferryd:
    """A ferryd process with its own config directory."""

    def __init__(self, tmp, name, config, admin_addr=None, token="t0ken-for-tests-0123456789"):
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.admin_addr = admin_addr
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")
        os.chmod(self.token_file, 0o600)
        self.token = token
        self.conf = os.path.join(self.dir, "ferryd.conf")
        self.write_config(config)
        self.proc = None

    def write_config(self, config):
        text = config
        if self.admin_addr and "admin {" not in config:
            text = config + "\nadmin {\n    listen %s;\n    token_file %s;\n}\n" % (self.admin_addr, self.token_file)
        with open(self.conf, "w") as f:
            f.write(text)

    def start(self, wait_ports=()):
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1")
        self.proc = Proc([FERRYD, "-c", self.conf], os.path.join(self.dir, "ferryd.log"), env=env)
        for addr, port in wait_ports:
            wait_for(lambda: port_open(addr, port) or not self.proc.alive(), 10, f"{self.name} on {addr}:{port}")
            assert self.proc.alive(), "ferryd exited:\n" + self.proc.output()
        return self

    def ctl(self, *args, check=True):
        argv = [FERRYCTL, "-c", self.conf] + list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30 * SLOW)
        if check:
            assert r.returncode == 0, f"ferryctl {args}: {r.returncode}\n{r.stdout}\n{r.stderr}"
        return r

    def admin_get(self, path, token=True):
        req = urllib.request.Request(f"http://{self.admin_addr}{path}")
        if token:
            req.add_header("Authorization", "Bearer " + self.token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name, labels=None):
        """Sum of a metric's samples (optionally those containing a label string)."""
        status, text = self.admin_get("/metrics", token=False)
        assert status == 200
        total = 0
        for line in text.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            key, _, value = line.rpartition(" ")
            base = key.split("{")[0]
            if base == name and (labels is None or labels in key):
                total += int(value)
        return total

    def stop(self):
        if self.proc is None:
            return None
        rc = self.proc.stop()
        out = self.proc.output()
        assert "AddressSanitizer" not in out and "runtime error" not in out and "ThreadSanitizer" not in out, out
        return rc


_netns_seq = itertools.count()
CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@pytest.fixture
def netns():
    """Moves this test (and every process it starts) into a fresh network
    namespace with only loopback up, where the test may add nft rules
    without touching the host. List it before the fixtures that start
    servers. Yields the namespace's name; back to the host's namespace and
    the namespace deleted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    name = f"ferry-test-{os.getpid()}-{next(_netns_seq)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    ns = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(ns)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        _setns(home)
        os.close(ns)
        os.close(home)
        subprocess.run(["ip", "netns", "del", name], check=False)


def nft(*rules):
    """Runs nft commands in the current (the test's) network namespace."""
    for r in rules:
        subprocess.run(["nft"] + r.split(), check=True)


@pytest.fixture
def procs():
    """Collects Ferryd/Proc objects and stops them at teardown."""
    started = []
    yield started
    # Stop every process even when one of them reports a problem, then
    # report the first problem.
    first = None
    for p in reversed(started):
        try:
            p.stop()
        except Exception as e:
            if isinstance(p, Ferryd) and p.proc:
                p.proc.stop(signal.SIGKILL)
            first = first or e
    if first:
        raise first


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throwaway ECDSA CA and a server certificate for www.example.test and *.example.test."""
    d = tmp_path_factory.mktemp("pki")
    run = lambda *a: subprocess.run(a, cwd=d, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Ferry Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    certs = {}
    for name, sans in (("www", "DNS:www.example.test,DNS:*.example.test"), ("other", "DNS:other.test")):
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(d / f"{name}.ext", "w") as f:
            f.write(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\n")
        run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
        certs[name] = (str(d / f"{name}.pem"), str(d / f"{name}.key"))
    return {"ca": str(d / "ca.pem"), "certs": certs, "dir": str(d)}


class Nginx:
    """A real nginx as the publisher's origin, with a docroot and per-location fields."""

    def __init__(self, tmp, addr, port, extra_locations=""):
        self.dir = os.path.join(tmp, "nginx-%s" % addr)
        self.root = os.path.join(self.dir, "www")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        os.makedirs(self.root, exist_ok=True)
        self.addr, self.port = addr, port
        self.access_log = os.path.join(self.dir, "logs", "access.log")
        conf = f"""
user root;
worker_processes 1;
error_log {self.dir}/logs/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log {self.access_log};
    client_body_temp_path {self.dir}/tmp_body;
    proxy_temp_path {self.dir}/tmp_proxy;
    fastcgi_temp_path {self.dir}/tmp_fcgi;
    uwsgi_temp_path {self.dir}/tmp_uwsgi;
    scgi_temp_path {self.dir}/tmp_scgi;
    default_type application/octet-stream;
    server {{
        listen {addr}:{port};
        root {self.root};
        {"" if "location / " in extra_locations else "location / { }"}
        {extra_locations}
    }}
}}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = None

    def put(self, path, data):
        full = os.path.join(self.root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return full

    def requests(self, path=None):
        """Number of requests nginx logged (for path, if given)."""
        try:
            with open(self.access_log) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return 0
        if path is None:
            return len(lines)
        return sum(1 for l in lines if f" {path} HTTP/" in l)

    def saw(self, path, n):
        """True when nginx logged exactly n requests for path. nginx writes a
        log line after its response left, so wait (bounded) for n to appear."""
        try:
            wait_for(lambda: self.requests(path) >= n, 5, f"{n} origin requests for {path}")
        except AssertionError:
            return False
        return self.requests(path) == n

    def start(self):
        self.proc = Proc(["nginx", "-c", self.conf, "-p", self.dir, "-g", "daemon off;"],
                         os.path.join(self.dir, "stdout.log"))
        wait_for(lambda: port_open(self.addr, self.port) or not self.proc.alive(), 10, "nginx")
        assert self.proc.alive(), self.proc.output()
        return self

    def stop(self):
        if self.proc:
            self.proc.stop(signal.SIGQUIT)


@pytest.fixture
def nginx_factory(tmp_path):
    started = []

    def make(extra_locations=""):
        n = Nginx(str(tmp_path), fresh_addr(), 8080, extra_locations)
        started.append(n)
        return n.start()

    yield make
    for n in started:
        n.stop()


def curl(*args, timeout=20):
    """Runs curl; returns (status, headers dict of lists (lowercase names), body bytes)."""
    argv = ["curl", "-sS", "--max-time", str(timeout * SLOW), "-D", "-", "-o", "-"] + list(args)
    r = subprocess.run(argv, capture_output=True, timeout=timeout * SLOW + 5)
    if r.returncode != 0:
        raise AssertionError(f"curl {args} failed ({r.returncode}): {r.stderr.decode()}")
    return parse_response(r.stdout)


def parse_response(raw):
    """Splits a raw HTTP/1.1 response (possibly after 1xx heads, or the bodiless
    redirects curl -L followed) into status, fields, body."""
    while True:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        if 100 <= status < 200 or (status in (301, 302, 303, 307, 308) and rest.startswith(b"HTTP/1.")):
            raw = rest
            continue
        fields = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            fields.setdefault(k.strip().lower(), []).append(v.strip())
        return status, fields, rest


def raw_request(addr, port, data, timeout=10, read_until_close=True):
    """Sends raw bytes and returns what comes back until the server closes (or timeout)."""
    s = socket.create_connection((addr, port), timeout=timeout * SLOW)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not read_until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()
