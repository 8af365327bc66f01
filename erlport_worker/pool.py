"""Leader/follower threads: the thread that reads a call runs it, another takes over reading.

One thread at a time is the reader. When it reads a call and a slot is
free, it hands the reading on (to an idle thread, or a new one) and runs the
call itself: no queue hop, so a call starts as soon as it is decoded. With
all ``size`` slots busy, calls wait in a queue and the next thread to free a
slot runs them.

A thread that waits on Erlang (``with pool.waiting_on_erlang():``) frees its
slot, so nested calls that Erlang makes meanwhile can run: 50 levels of
Python -> Erlang -> Python nesting work even with ``size == 1``. Threads are
daemons and are kept once started.
"""
from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import contextmanager

log = logging.getLogger(__name__)

_READ = object()  # the assignment "become the reader"


class CallPool:
    """Runs the reader loop and the calls it takes; ``size`` bounds calls running at once.

    ``read_loop()`` is run by whichever thread is the reader. It returns a
    ``(fn, args)`` that ``take`` let it keep (the reading has then been handed
    on), or None when reading is over for good.
    """

    def __init__(self, size: int, read_loop, name: str = "call") -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, not {size}")
        self._size = size
        self._read_loop = read_loop
        self._name = name
        # One plain lock guards everything below (threading.Semaphore and
        # Condition are written in Python: slower on the hot path).
        self._lock = threading.Lock()
        self._running = 0           # slots in use
        self._queued = deque()      # calls waiting for a slot
        self._idle = deque()        # idle threads: [wake lock (held), assignment]
        self._slot_waiters = deque()  # locks (held) of threads back from Erlang
        self._threads = 0
        self._local = threading.local()

    def start(self) -> None:
        """Start the first reader."""
        with self._lock:
            self._assign(_READ)

    def take(self, fn, args) -> bool:
        """Called by the reader for a call: True means "run it yourself" (reading is
        handed on); False means it was queued for a free slot."""
        with self._lock:
            if self._running >= self._size:
                self._queued.append((fn, args))
                return False
            self._running += 1
            self._assign(_READ)
        return True

    @contextmanager
    def waiting_on_erlang(self):
        """Give this thread's slot back for the duration of the block (no-op off a slot)."""
        if not getattr(self._local, "holds_slot", False):
            yield
            return
        self._local.holds_slot = False
        with self._lock:
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
                work = self._release_slot()
                if work is None:
                    wake = threading.Lock()
                    wake.acquire()
                    slot = [wake, None]
                    self._idle.append(slot)
            if work is None:
                wake.acquire()
                work = slot[1]
