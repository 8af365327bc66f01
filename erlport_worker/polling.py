"""When the frame reader polls for the next frame before it sleeps, and when it sleeps at once.

Polling pays when the next frame lands within the polling window: the reader is
awake, so the frame costs no wake-up (tens of microseconds on a virtual
machine). It is waste when frames come slower than that, and harmful when other
processes want the CPU: the poller takes their turn, the kernel's scheduler then
treats it as a CPU hog, and a hog is woken late (milliseconds). So the reader
polls only while all of these hold (the rule, with its figures: docs/worker.md):

- the machine has two cores or more (on one, polling keeps the sender from running);
- recent frames came within the window: after ``MISSES`` waits in a row longer
  than the window it stops; any wait shorter than the window, measured while
  sleeping too, turns it back on;
- polling has not lost the CPU lately: a gap of ``PREEMPTED`` seconds between two
  polls means another process took the CPU. Polling then stops for a back-off,
  ``BACKOFF_MIN`` doubling up to ``BACKOFF_MAX`` while it keeps happening;
- the machine is not busy: more runnable processes than cores (counting this
  worker, which is running when it looks), sampled every ``LOAD_EVERY`` seconds,
  also stop it for a while.

``SpinPolicy`` holds only this arithmetic: it is fed times and counts, never reads
a clock itself, so tests drive it with made-up timings.
"""
from __future__ import annotations

import os

MISSES = 3
PREEMPTED = 50e-6
BACKOFF_MIN = 0.01
BACKOFF_MAX = 1.0
LOAD_EVERY = 0.25


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def runnable_now() -> float:
    """Processes runnable on the machine now (Linux: /proc/loadavg's running count,
    this one included); elsewhere the one-minute load average."""
    try:
        with open("/proc/loadavg", "rb") as f:
            return float(f.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return os.getloadavg()[0]


class SpinPolicy:
    """How long the reader is to poll before its next sleep: ``budget(now)`` seconds.

    After each wait the reader reports it with ``waited``. ``runnable`` is called
    (at most every ``LOAD_EVERY`` seconds) for the number of runnable processes.
    """

    def __init__(self, window: float, cores: int, runnable=runnable_now) -> None:
        self.window = window if cores >= 2 else 0.0
        self._busy_above = cores
        self._runnable = runnable
        self._misses = 0
        self._paused_until = 0.0
        self._backoff = 0.0
        self._next_load_check = 0.0

    def budget(self, now: float) -> float:
        """Seconds to poll before sleeping, for a wait starting at ``now`` (0: sleep at once)."""
        if self.window <= 0 or self._misses >= MISSES:
            # The miss count is still kept up (``waited``), so polling resumes.
            return 0.0
        if now < self._paused_until:
            return 0.0
        if now >= self._next_load_check:
            self._next_load_check = now + LOAD_EVERY
            if self._runnable() > self._busy_above:
                self._paused_until = now + LOAD_EVERY
                return 0.0
        return self.window

    def waited(self, seconds: float, preempted: bool, now: float) -> None:
        """A wait of ``seconds`` for a frame ended at ``now``; ``preempted``: its polling
        lost the CPU."""
        self._misses = 0 if seconds <= self.window else self._misses + 1
        if preempted:
            # Doubled when polling lost the CPU again right after the last back-off.
            again = now - self._paused_until < self._backoff
            self._backoff = min(BACKOFF_MAX, self._backoff * 2) if again else BACKOFF_MIN
            self._paused_until = now + self._backoff
