"""Where trials run: at once in the search's process (``InlineRunner``, for ``n_jobs`` 1), or in
worker processes (``PoolRunner``), started with 'forkserver' or 'spawn', never 'fork': the
caller may be multi-threaded.

Both take ``function(trial_data, payload, should_stop)`` jobs (``cerebros.trials``) and
return futures. ``stop()`` makes the jobs running see ``should_stop()`` true, so they stop
within one mini-batch (an inline job has finished by then); ``resume()`` lets new jobs run.
"""
from __future__ import annotations

import concurrent.futures as futures
import ctypes
import multiprocessing
import os
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

import joblib

from .artifacts import StorageError

if TYPE_CHECKING:  # a worker process imports the trial code with its first job, not at start-up
    from .trials import Payload, ShouldStop, TrialData

Result = TypeVar("Result")
Job = Callable[["TrialData", "Payload", "ShouldStop"], Result]  # quoted: only the type checker imports them


class Runner(Protocol):
    """What the search needs of a runner (see the module docstring)."""

    def __init__(self, n_jobs: int, trial_data: TrialData, cancel: threading.Event) -> None: ...

    def submit(self, function: Job[Result], payload: Payload) -> "futures.Future[Result]": ...

    def stop(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_allocator() -> None:
    """Have glibc's malloc, in this process, keep freed memory for reuse: blocks up to 1 MiB come
    from the heap, and up to 16 MiB of free heap is kept (elsewhere than glibc: nothing).

    Training makes and frees arrays of 100-500 KiB every mini-batch. With glibc's defaults
    such memory goes back to the system when freed and faults in again, page by page, when
    the next batch allocates it: 11% of a trial's time (docs/engine.md, "Network").
    Every process that trains trials calls it: trial processes, a lending node's workers, and
    for ``n_jobs`` 1 the search's own, the port worker itself, which keeps the setting after
    the search. The cost is at most 16 MiB kept free at the top of the process's heap.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError, TypeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    mallopt(_M_TRIM_THRESHOLD, 16 << 20)


class InlineRunner:
    """Runs each trial at once, in this process."""

    def __init__(self, n_jobs: int, trial_data: TrialData, cancel: threading.Event) -> None:
        self.trial_data = trial_data
        self.cancel = cancel
        tune_allocator()

    def submit(self, function: Job[Result], payload: Payload) -> "futures.Future[Result]":
        """Run ``function(trial_data, payload, should_stop)`` (``train_trial``, ``refit_trial``)."""
        future: futures.Future[Result] = futures.Future()
        future.set_result(function(self.trial_data, payload, self.cancel.is_set))
        return future

    def stop(self) -> None:
        """Nothing to do: work here runs to its own deadline or the cancel event."""

    def resume(self) -> None:
        """Nothing to do (see ``stop``)."""

    def close(self) -> None:
        """Nothing to release."""


class PoolRunner:
    """Runs trials in worker processes that receive the data once, at start-up. A worker process
    that dies (killed, out of memory) fails the trials in flight, not the search: the next
    submission starts a fresh pool. The worker processes exit when this process is gone,
    however it ended (``_exit_with_parent``)."""

    def __init__(self, n_jobs: int, trial_data: TrialData, cancel: threading.Event) -> None:
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._stop = self._context.Event()
        if cancel.is_set():
            self._stop.set()
        # Only this process holds the lifeline's write end: the workers see its read end close
        # when this process is gone, even after a SIGKILL or an os._exit.
        self._lifeline, self._lifeline_holder = self._context.Pipe(duplex=False)
        self._n_jobs = n_jobs
        self._trial_data = trial_data
        self.pool = self._new_pool()
        # The pool starts its worker processes inside ``submit``. An exception raised into the
        # search's thread while one starts (the port worker's cancellation raises one there, a
        # Ctrl-C in the main thread) would leave a process the pool does not know of; at ``close``
        # it could read the one exit message meant for another, which the pool would then wait
        # for for ever. So submissions run in this thread, which no such exception reaches.
        self._submitter = futures.ThreadPoolExecutor(1, thread_name_prefix="trial-submitter")

    def _new_pool(self) -> futures.ProcessPoolExecutor:
        return futures.ProcessPoolExecutor(self._n_jobs, mp_context=self._context, initializer=_init_worker,
                                           initargs=(self._trial_data, self._stop, self._lifeline))

    def submit(self, function: Job[Result], payload: Payload) -> "futures.Future[Result]":
        """Run ``function(trial_data, payload, should_stop)`` in a worker process."""
        return self._submitter.submit(self._submit_to_pool, function, payload).result()

    def _submit_to_pool(self, function: Job[Result], payload: Payload) -> "futures.Future[Result]":
        try:
            return self.pool.submit(_run_in_worker, function, payload)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
            return self.pool.submit(_run_in_worker, function, payload)

    def stop(self) -> None:
        """Stop the work in the worker processes within one mini-batch."""
        self._stop.set()

    def resume(self) -> None:
        """Let new work run to its own deadline again (after ``stop``)."""
        self._stop.clear()

    def close(self) -> None:
        """End the worker processes. Work still running is stopped first: a search cut short by an
        exception (the port worker's cancellation raises one in its thread) must not wait for it."""
        self._stop.set()
        self._submitter.shutdown(wait=True)  # a submission cut short in the search's thread completes first
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._lifeline_holder.close()
        self._lifeline.close()


_worker_state: dict[str, Any] = {}


def _init_worker(trial_data: TrialData, stop: Any, lifeline: Connection) -> None:
    # Ctrl-C reaches the whole process group: the parent turns it into a cancellation that stops
    # these workers through ``stop``; an interrupt here would only lose the trial's result
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # one BLAS thread per process: n_jobs processes already fill the cores
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    tune_allocator()
    _worker_state.update(trial_data=trial_data, stop=stop)
    threading.Thread(target=_exit_with_parent, args=(lifeline,), name="lifeline", daemon=True).start()


def _exit_with_parent(lifeline: Connection) -> None:
    """Wait for the end of the lifeline (the search process gone), then end this process. Without
    this, a worker whose search was killed would wait for work for ever, and keep the
    forkserver alive with it."""
    try:
        lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(1)


def _run_in_worker(function: Job[Result], payload: Payload) -> Result:
    return function(_worker_state["trial_data"], payload, _worker_state["stop"].is_set)


def available_cores() -> int:
    """The cores this process may use: its CPU affinity (taskset), capped by a container's CPU
    quota (cgroups) and by ``$LOKY_MAX_CPU_COUNT``, as joblib (scikit-learn's) counts them. A pod
    limited to 2 CPUs on a 64-core host gets 2 trial processes, not 64."""
    cores: int = joblib.cpu_count()
    return cores


def result_or_failure(future: "futures.Future[Result]", failure: Callable[[str], Result]) -> Result:
    """The job's result, or ``failure(error)`` if its worker process died: the job failed, the
    search goes on. A ``StorageError`` (the run directory cannot be written) is raised: it
    stops the search."""
    try:
        return future.result()
    except StorageError:
        raise
    except Exception as exc:
        return failure(f"{type(exc).__name__}: {exc}")
