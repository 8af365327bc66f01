"""Processes as Linux's /proc shows them, for tests that check nothing outlives its parent."""
import os
import signal
import time


def _stat_fields(pid):
    """The fields of /proc/<pid>/stat after the command name: state, ppid, ... (None if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()  # the name, in parentheses, may hold spaces


def descendants(pid):
    """The pids of every running process below ``pid`` in the process tree."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, frontier = set(), [pid]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


def cpu_seconds(pid):
    """The CPU time ``pid`` has used so far, user and system (0.0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14, 15


def running(pid):
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def wait_for_busy_descendants(pid, count, cpu=1.0, timeout=120):
    """Every descendant of ``pid``, once at least ``count`` of them have each used ``cpu``
    seconds of CPU (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while sum(cpu_seconds(child) >= cpu for child in descendants(pid)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} busy processes under {pid} after {timeout} s"
        time.sleep(0.1)
    return descendants(pid)


def survivors(pids, timeout=60):
    """The pids still running after up to ``timeout`` seconds of polling, then killed, so that a
    failing test leaves nothing behind to slow the rest of the suite down."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if running(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if running(pid)}
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    return alive
