"""The calls from Erlang that are running now, by Erlang call id; callable from Erlang.

``'erlport_worker.jobs':cancel(Id)`` stops the call with that id: it sets
the call's cancel flag (seen by ``api.cancelled()`` and ``api.sleep``) and
raises ``JobCancelled`` inside the call's thread, so that a plain Python loop
that never looks at the flag stops too. The worker runs calls to this module
at once on its reader thread, so a cancel is never queued behind the very
call it is meant to stop.
"""
from __future__ import annotations

import ctypes
import threading
import time
from typing import Dict, List, Optional

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.restype = ctypes.c_int


def _raise_in(thread_id: int, exc_type) -> None:
    """Make ``thread_id`` raise ``exc_type`` at its next bytecode; None withdraws it."""
    exc = ctypes.c_void_p(None) if exc_type is None else ctypes.py_object(exc_type)
    _set_async_exc(ctypes.c_ulong(thread_id), exc)


class JobCancelled(BaseException):
    """Raised in a call that was cancelled.

    A BaseException (like asyncio.CancelledError), so a broad
    ``except Exception`` in called code does not swallow the cancellation.
    """


class Job:
    """One running call: its Erlang id, what it runs, and its cancel flag."""

    __slots__ = ("call_id", "module", "function", "thread_id", "started", "cancelled",
                 "_event", "_running", "_signalled")

    def __init__(self, call_id: int, module: str, function: str) -> None:
        self.call_id = call_id
        self.module = module
        self.function = function
        self.thread_id = 0
        self.started = time.monotonic()
        self.cancelled = False
        self._event = None  # made on demand by wait(): most calls never sleep
        self._running = False
        self._signalled = False

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True at once if the job is or gets cancelled."""
        with _lock:
            if self._event is None:
                self._event = threading.Event()
                if self.cancelled:
                    self._event.set()
        return self._event.wait(seconds)


_lock = threading.Lock()
_jobs: Dict[int, Job] = {}
_local = threading.local()


def start(job: Job) -> None:
    """Register ``job``, about to run on this thread; from now on it can be cancelled."""
    job.thread_id = threading.get_ident()
    job._running = True
    _local.job = job
    # No lock: the job is complete before this one store publishes it to cancel().
    _jobs[job.call_id] = job


def finish(job: Job) -> None:
    """Unregister ``job``; after this no cancellation can reach its thread.

    A cancel may have queued ``JobCancelled`` for this thread just before the
    job ended; it is cleared here, and if it fires while this function runs
    the steps are simply repeated (each one is idempotent).
    """
    while True:
        try:
            _local.job = None
            with _lock:
                job._running = False
                if _jobs.get(job.call_id) is job:
                    del _jobs[job.call_id]
                if job._signalled:
                    _raise_in(job.thread_id, None)
            return
        except JobCancelled:
            continue


def current() -> Optional[Job]:
    """The job running on this thread, or None outside a call from Erlang."""
    return getattr(_local, "job", None)


def cancel(call_id: int) -> bool:
    """Cancel the running call with Erlang id ``call_id``; False if no such call is running."""
    if type(call_id) is not int:
        raise TypeError(f"cancel expects an integer call id, not {type(call_id).__name__}")
    with _lock:
        job = _jobs.get(call_id)
        if job is None or not job._running:
            return False
        job.cancelled = True
        if job._event is not None:
            job._event.set()
        if not job._signalled:
            job._signalled = True
            _raise_in(job.thread_id, JobCancelled)
    return True


def running() -> List[dict]:
    """The other running calls, oldest first, as maps: id, module, function, seconds, cancelled."""
    now = time.monotonic()
    me = current()
    with _lock:
        jobs = sorted((j for j in _jobs.values() if j is not me), key=lambda j: j.started)
    return [{"id": j.call_id, "module": str(j.module), "function": str(j.function),
             "seconds": now - j.started, "cancelled": j.cancelled} for j in jobs]
