"""benchlib -- helpers the benchmark scripts share (Python 3, standard
library only): files, the servers a script starts (each stopped by its PID,
never by name), process logs, and the /proc readings behind each run's CPU,
memory, load and steal figures. Each script imports what it uses:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from benchlib import ...
"""
import os
import signal
import socket
import subprocess
import time

STARTED = []  # the Popen objects start() made and stop() has not stopped yet


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def tail(path, n=20):
    try:
        with open(path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def start(argv, logpath, cpus=None):
    """Starts argv (under `taskset -c cpus` when given) in a session of its
    own, stdout and stderr appended to logpath."""
    f = open(logpath, "ab")
    if cpus:
        argv = ["taskset", "-c", cpus] + argv
    p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    p.logfile, p.logpath, p.t_spawn = f, logpath, time.monotonic()
    STARTED.append(p)
    return p


def stop(p, timeout=15, sig=signal.SIGTERM, tree=False):
    """Sends sig to p's PID, waits up to timeout, then SIGKILL. With tree
    (servers that fork), the descendants p had before are then killed by
    PID too."""
    if p is None:
        return
    if p.poll() is None:
        pids = proc_tree(p.pid)[1:] if tree else []
        try:
            os.kill(p.pid, sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        except ProcessLookupError:
            pass
        for q in pids:
            try:
                os.kill(q, signal.SIGKILL)
            except ProcessLookupError:
                pass
    p.logfile.close()
    if p in STARTED:
        STARTED.remove(p)


def stop_all(log=None, stop_one=None):
    """Stops everything start() started, newest first; one that fails to
    stop is reported through log (when given) and the others still stop."""
    for p in reversed(list(STARTED)):
        try:
            (stop_one or stop)(p)
        except Exception as e:
            if log is None:
                raise
            log(f"stopping {p.pid}: {e}")


def port_open(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_ready(p, ready, what, failing, timeout=15, name="bench", step=0.02):
    """Polls ready() until it is true; a process that exits first, or a
    timeout (then "WHAT FAILING after Ns"), ends the benchmark with p's log
    tail (SystemExit, prefixed with name)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if p.poll() is not None:
            raise SystemExit(f"{name}: {what} exited with {p.returncode}:\n{tail(p.logpath)}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: {what} {failing} after {timeout}s:\n{tail(p.logpath)}")
        time.sleep(step)


def wait_port(p, addr, port, what, timeout=15, name="bench"):
    """Waits for a TCP listener (see wait_ready)."""
    wait_ready(p, lambda: port_open(addr, port), what, f"not listening on {addr}:{port}", timeout, name)


def _stat(pid):
    """(command name, the fields of /proc/PID/stat after it), or None once
    the process is gone. fields[0] is the state (field 3 of proc(5)), so
    utime, stime, cutime, cstime are fields[11:15] and ppid fields[1]."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()


def cpu_ticks(pid, reaped=False, gone=0):
    """utime+stime of one process (all its threads); with reaped, also the
    cutime+cstime of the children it has waited for. `gone` once it exited."""
    st = _stat(pid)
    if st is None:
        return gone
    return sum(int(x) for x in st[1][11:15 if reaped else 13])


def status_kib(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    return {"busy": user + nice + system + irq + softirq, "steal": steal}


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def pid_ticks():
    """pid -> (comm, utime+stime) for every process."""
    out = {}
    for d in os.listdir("/proc"):
        st = _stat(d) if d.isdigit() else None
        if st is not None:
            out[int(d)] = (st[0], int(st[1][11]) + int(st[1][12]))
    return out


def proc_tree(pid):
    """pid and its descendants, as /proc shows them now."""
    kids = {}
    for d in os.listdir("/proc"):
        st = _stat(d) if d.isdigit() else None
        if st is not None:
            kids.setdefault(int(st[1][1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu_ticks(pid):
    """CPU ticks (with reaped children's) over a process tree: servers that fork."""
    return sum(cpu_ticks(p, reaped=True) for p in proc_tree(pid))


def on_signal(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the cleanup
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt
