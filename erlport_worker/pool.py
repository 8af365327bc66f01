"""Leader/follower threads: the thread that reads a call runs it, and reading is handed on
only when the call turns out to take a while (after ``handoff_delay`` seconds, or at once
when it waits on Erlang). Why, and what it costs: docs/worker.md.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from contextlib import contextmanager

log = logging.getLogger(__name__)

_READ = object()  # the assignment "become the reader"

HANDOFF_DELAY = 0.002
"""Seconds a call runs on the reader's thread before the reading is handed on."""
QUIET = 1.0
"""Seconds without a new call after which the monitor stops polling."""


class CallPool:
    """Runs the reader loop and the calls it takes; ``size`` bounds calls running at once.

    ``read_loop()`` is run by whichever thread is the reader. It returns a
    ``(fn, args)`` that ``take`` let it keep (the reading then waits for that
    call, or for the monitor to hand it on), or None when reading is over for good.
    """

    def __init__(self, size: int, read_loop, name: str = "call",
                 handoff_delay: float = HANDOFF_DELAY) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self._size = size
        self._read_loop = read_loop
        self._name = name
        self._handoff_delay = handoff_delay
        # One plain lock guards everything below (threading.Semaphore and
        # Condition are written in Python: slower on the hot path).
        self._lock = threading.Lock()
        self._running = 0           # slots in use
        self._queued = deque()      # calls waiting for a slot
        self._idle = deque()        # idle threads: [wake lock (held), assignment]
        self._slot_waiters = deque()  # locks (held) of threads back from Erlang
        self._threads = 0
        self._local = threading.local()
        # The reader that stopped reading to run a call, and since when; None
        # while a thread reads (or nobody does: reading is over).
        self._held_by = None
        self._held_since = 0.0
        self._last_take = 0.0
        self._monitor_wake = None   # the monitor's wake lock (held) while it sleeps for good

    def start(self) -> None:
        """Start the first reader and the monitor."""
        with self._lock:
            self._assign(_READ)
        threading.Thread(target=self._monitor, name=f"{self._name}-monitor",
                         daemon=True).start()

    def take(self, fn, args) -> bool:
        """Called by the reader for a call: True means "run it yourself" (the reading
        waits, or is handed on if the call takes a while); False means it was queued
        for a free slot."""
        with self._lock:
            if self._running >= self._size:
                self._queued.append((fn, args))
                return False
            self._running += 1
            self._held_by = threading.get_ident()
            self._held_since = self._last_take = time.monotonic()
            if self._monitor_wake is not None:
                self._monitor_wake.release()
                self._monitor_wake = None
        return True

    @contextmanager
    def waiting_on_erlang(self):
        """Give this thread's slot back for the duration of the block (no-op off a slot)."""
        if not getattr(self._local, "holds_slot", False):
            yield
            return
        self._local.holds_slot = False
        with self._lock:
            if self._held_by == threading.get_ident():
                self._hand_reading_on()
            job = self._release_slot()
            if job is not None:
                self._assign(job)
        try:
            yield
        finally:
            with self._lock:
                if self._running < self._size:
                    self._running += 1
                    waiter = None
                else:
                    waiter = threading.Lock()
                    waiter.acquire()
                    self._slot_waiters.append(waiter)
            if waiter is not None:
                waiter.acquire()
            self._local.holds_slot = True

    def _release_slot(self):
        """Under the lock: pass this slot on; return a queued call that now owns it, if any."""
        if self._slot_waiters:
            self._slot_waiters.popleft().release()
            return None
        if self._queued:
            return self._queued.popleft()
        self._running -= 1
        return None

    def _hand_reading_on(self) -> None:
        """Under the lock: give the held reading to another thread."""
        self._held_by = None
        self._assign(_READ)

    def _monitor(self) -> None:
        """Hand the reading on when a call has held it for ``handoff_delay``."""
        while True:
            with self._lock:
                now = time.monotonic()
                if self._held_by is not None:
                    due = self._held_since + self._handoff_delay
                    if now >= due:
                        self._hand_reading_on()
                        due = now + self._handoff_delay
                elif now - self._last_take < QUIET:
                    due = now + self._handoff_delay
                else:
                    due = None
                    wake = threading.Lock()
                    wake.acquire()
                    self._monitor_wake = wake
            if due is None:
                wake.acquire()
            else:
                time.sleep(due - now)

    def _assign(self, work) -> None:
        """Under the lock: give ``work`` (_READ or a call) to an idle thread, or a new one."""
        if self._idle:
            slot = self._idle.popleft()
            slot[1] = work
            slot[0].release()
        else:
            self._threads += 1
            threading.Thread(target=self._thread, args=(work,),
                             name=f"{self._name}-{self._threads}", daemon=True).start()

    def _thread(self, work) -> None:
        local = self._local
        while True:
            if work is _READ:
                work = self._read_loop()
                if work is None:
                    return
            local.holds_slot = True
            fn, args = work
            try:
                fn(*args)
            except BaseException:
                # fn is the worker's own call runner, which reports errors
                # itself; anything reaching here is a bug worth a traceback.
                log.exception("pool job %r failed", fn)
            local.holds_slot = False
            with self._lock:
                if self._held_by == threading.get_ident():
                    # The call was short: nobody took the reading, so go back to it.
                    self._held_by = None
                    job = self._release_slot()
                    if job is not None:
                        self._assign(job)
                    work = _READ
                else:
                    work = self._release_slot()
                if work is None:
                    wake = threading.Lock()
                    wake.acquire()
                    slot = [wake, None]
                    self._idle.append(slot)
            if work is None:
                wake.acquire()
                work = slot[1]
