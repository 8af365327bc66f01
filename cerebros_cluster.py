"""A search's trials on the worker pools of connected BEAM nodes (``opts.cluster``).

Two sides, both in port workers:

- the coordinator: the worker that received ``run_nas`` keeps the study and gives its jobs to a
  ``cerebros.remote.RemoteRunner`` whose transport is ``ErlangCluster``: Python-to-Erlang calls
  to ``beam_nas_cluster`` (src/beam_nas_cluster.erl), which queues the jobs and hands them to
  the nodes lending their pools;
- a lending node's workers: ``beam_nas_lender`` calls ``load_data``, ``run_job``, ``stop_job``
  and ``version`` here (so a lending pool's ``allow`` must include ``cerebros_cluster``).

Why and how, and what happens when a node fails: docs/beam.md.
"""
import collections
import importlib.metadata
import platform
import threading
from typing import Any, Callable

import numpy as np
from threadpoolctl import ThreadpoolController

import cerebros
from cerebros.remote import RemoteRunner, data_hash, decode_trial_data
from cerebros.remote import run_job as _run_remote_job
from cerebros.runners import tune_allocator
from cerebros.trials import TrialData
from codec import FieldError
from erlport_worker import api

_MODULE = "beam_nas_cluster"
_KEPT_DATASETS = 2  # searches whose data a worker process keeps at once
_KEPT_STOPS = 1000  # stops for jobs that never ran here (they finished first) kept at most


class DataMissing(Exception):
    """This process does not hold the data a job names: the lender sends it, then the job again."""


class RemoteJobFailed(Exception):
    """A job could not run on any node, or failed there (the trial fails, the search goes on)."""


def version() -> dict[str, str]:
    """What must be equal on every node of a search for its results to be the coordinator's."""
    try:
        package = importlib.metadata.version("beam-nas")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree: the engine's version says it
        package = "not installed"
    return {"package": package, "engine": cerebros.__version__, "numpy": np.__version__,
            "python": ".".join(platform.python_version_tuple()[:2])}


def runner(cluster: str, warnings: list[str]) -> Callable[[TrialData, threading.Event], RemoteRunner]:
    """A ``Study.run`` runner factory sending the trials to the nodes of ``cluster``; nodes refused
    (another version) are reported in ``warnings``."""
    return lambda trial_data, cancel: RemoteRunner(ErlangCluster(cluster, warnings), trial_data, cancel)


# ---- the coordinator ---------------------------------------------------------------------

class ErlangCluster:
    """``RemoteRunner``'s transport: one ``beam_nas_cluster`` session per search."""

    def __init__(self, name: str, warnings: list[str]) -> None:
        self.name = name
        self.warnings = warnings
        self.session: Any = None  # the session's pid, once open

    def open(self, digest: str, data: bytes) -> None:
        try:
            owner = api.self()
        except RuntimeError:
            raise FieldError("opts.cluster", "a clustered search runs in a port worker (run_nas called from "
                                             "the BEAM); this process is not one") from None
        status, value = api.call(_MODULE, "open", [self.name, owner, version(), digest, data])
        if status != "ok":
            raise FieldError("opts.cluster", value)
        self.session = value

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        status, value = api.call(_MODULE, "run", [self.session, job])
        if status != "ok":
            raise RemoteJobFailed(value)
        return dict(value)

    def processes(self) -> int:
        return int(api.call(_MODULE, "slots", [self.session]))

    def stop(self) -> None:
        api.call(_MODULE, "stop", [self.session])

    def resume(self) -> None:
        api.call(_MODULE, "resume", [self.session])

    def close(self) -> None:
        if self.session is not None:
            self.warnings.extend(api.call(_MODULE, "close", [self.session]))
            self.session = None


# ---- a lending node's worker ------------------------------------------------------------------

_lock = threading.Lock()
_datasets: "collections.OrderedDict[str, TrialData]" = collections.OrderedDict()  # by hash, least recent first
_stops: "collections.OrderedDict[str, threading.Event]" = collections.OrderedDict()  # by job token
_running: set[str] = set()  # tokens of the jobs running in this process
_blas: list[ThreadpoolController] = []  # made once: finding the BLAS libraries takes a millisecond


def load_data(digest: str, data: bytes) -> bool:
    """Keep a search's data (the binary of ``cerebros.remote.encode_trial_data``) under its hash."""
    data = bytes(data)
    if data_hash(data) != digest:
        raise ValueError(f"the data sent as {digest} has another hash: it was damaged on the way")
    trial_data = decode_trial_data(data)
    tune_allocator()  # this process trains trials from now on
    with _lock:
        _datasets[digest] = trial_data
        while len(_datasets) > _KEPT_DATASETS:
            _datasets.popitem(last=False)
    return True


def run_job(digest: str, token: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run one job of a search on its data (``DataMissing`` if it is not here yet); returns the
    result term of ``cerebros.remote.run_job``. ``stop_job(token)`` stops it within a mini-batch."""
    with _lock:
        if digest not in _datasets:
            raise DataMissing(digest)
        _datasets.move_to_end(digest)
        trial_data = _datasets[digest]
        stop = _stops.setdefault(token, threading.Event())
        _running.add(token)
    try:
        with _blas_controller().limit(limits=1):  # one BLAS thread per trial, as in a node's trial processes
            return _run_remote_job(trial_data, job, stop.is_set)
    finally:
        with _lock:
            _running.discard(token)
            _stops.pop(token, None)


def _blas_controller() -> ThreadpoolController:
    with _lock:
        if not _blas:
            _blas.append(ThreadpoolController())
        return _blas[0]


def stop_job(token: str) -> bool:
    """Stop the job ``token``: now if it runs here, at its start if it has not started yet."""
    with _lock:
        _stops.setdefault(token, threading.Event()).set()
        stale = [t for t in _stops if t not in _running][:max(0, len(_stops) - _KEPT_STOPS)]
        for t in stale:
            del _stops[t]
    return True
