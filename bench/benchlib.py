"""benchlib -- helpers the benchmark scripts share (Python 3, standard
library only): files, process logs, and the /proc readings behind each run's
CPU, memory, load and steal figures. Each script imports what it uses:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from benchlib import ...
"""
import os
import signal


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


def cpu_ticks(pid):
    """utime+stime of one process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return 0
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


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
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[int(d)] = (s[s.index("(") + 1:s.rindex(")")], int(fields[11]) + int(fields[12]))
    return out


def on_signal(signum, frame):
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second one must not cut the cleanup
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt
