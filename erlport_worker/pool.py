"""A bounded thread pool where a thread waiting on Erlang gives up its place.

At most ``size`` submitted functions run Python code at once. A call that is
blocked waiting for Erlang (``with pool.waiting_on_erlang():``) gives its slot
back, and the pool starts another thread if needed, so the nested calls that
Erlang makes meanwhile can run: 50 levels of Python -> Erlang -> Python
nesting work even with ``size == 1``. Threads are started on demand and kept;
they are daemons, so they never hold the process open.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import contextmanager
from queue import SimpleQueue

log = logging.getLogger(__name__)


class CallPool:
    """Runs ``fn(*args)`` for each ``submit``; ``size`` bounds how many run at once."""

    def __init__(self, size: int, name: str = "call") -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self._size = size
        self._name = name
        self._jobs: SimpleQueue = SimpleQueue()
        # One plain lock guards all the counters: cheaper on the hot path
        # than threading.Semaphore, which is written in Python.
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0       # threads blocked in _jobs.get()
        self._queued = 0     # jobs put but not yet taken
        self._waiting = 0    # threads that gave their slot back while waiting on Erlang
        self._running = 0    # slots in use
        self._slot_waiters: deque = deque()  # locks of threads waiting for a slot
        self._local = threading.local()

    def submit(self, fn, *args) -> None:
        """Queue ``fn(*args)``; it runs as soon as a slot is free."""
        with self._lock:
            self._queued += 1
            spawn = self._needs_thread()
        self._jobs.put((fn, args))
        if spawn:
            self._spawn()

    @contextmanager
    def waiting_on_erlang(self):
        """Give this thread's slot back for the duration of the block (no-op off the pool)."""
        if not getattr(self._local, "holds_slot", False):
            yield
            return
        self._local.holds_slot = False
        with self._lock:
            self._give_slot()
            self._waiting += 1
            spawn = self._needs_thread()
        if spawn:
            self._spawn()
        try:
            yield
        finally:
            with self._lock:
                self._waiting -= 1
                waiter = self._take_slot()
            if waiter is not None:
                waiter.acquire()
            self._local.holds_slot = True

    def _needs_thread(self) -> bool:
        """Under the lock: whether a queued job has no thread to take it; reserves the thread."""
        if self._queued > self._idle and self._threads - self._waiting < self._size:
            self._threads += 1
            return True
        return False

    def _take_slot(self):
        """Under the lock: take a slot, or return a held lock that is released with one."""
        if self._running < self._size:
            self._running += 1
            return None
        waiter = threading.Lock()
        waiter.acquire()
        self._slot_waiters.append(waiter)
        return waiter

    def _give_slot(self) -> None:
        """Under the lock: hand the slot to a waiting thread, or free it."""
        if self._slot_waiters:
            self._slot_waiters.popleft().release()
        else:
            self._running -= 1

    def _spawn(self) -> None:
        threading.Thread(target=self._loop, name=f"{self._name}-{self._threads}",
                         daemon=True).start()

    def _loop(self) -> None:
        jobs, lock, local = self._jobs, self._lock, self._local
        while True:
            with lock:
                self._idle += 1
            fn, args = jobs.get()
            with lock:
                self._idle -= 1
                self._queued -= 1
                waiter = self._take_slot()
            if waiter is not None:
                waiter.acquire()
            local.holds_slot = True
            try:
                fn(*args)
            except BaseException:
                # fn is the worker's own call runner, which reports errors
                # itself; anything reaching here is a bug worth a traceback.
                log.exception("pool job %r failed", fn)
            finally:
                local.holds_slot = False
                with lock:
                    self._give_slot()
