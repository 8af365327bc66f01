"""Trials run on other machines: the runner seam (``cerebros.runners``) over a transport, and
what the other end does with a job.

The engine knows no network: a ``transport`` (given by the caller, e.g. ``cerebros_cluster``
over Erlang distribution) carries plain terms. Everything that crosses it is made of dicts,
lists, text, numbers, None, bytes and numpy arrays, never pickles:

- the data, once per search: ``encode_trial_data`` makes one ETF binary of it, named by its
  SHA-256 (``data_hash``); the other end decodes it once per process and keeps it by that hash;
- a job: ``{"kind": "train" | "refit", "payload": ..., "networks": N, "stopped": bool}``, the
  payload of ``train_trial`` / ``refit_trial`` without its file paths (a remote machine does not
  see the run directory);
- a result: ``{"outcome" | "report": ..., "outputs": array or None, "files": [[npz, json] or
  None, ...]}``: the trial's ``TrialOutcome`` fields (or the refit report), and the networks'
  files, which this side writes to the run directory, so a remote machine needs no shared
  storage.

The trained networks, their scores and outputs are those a local run gives: the same seeds,
the same code, one BLAS thread as in the trial processes.
"""
import concurrent.futures as futures
import hashlib
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Optional, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from codec import plain

from .artifacts import storage
from .records import TrialOutcome
from .runners import Job
from .trials import Payload, ShouldStop, TrialData, refit_trial, train_trial

Result = TypeVar("Result")
_KINDS: dict[Callable[..., Any], str] = {train_trial: "train", refit_trial: "refit"}
# A job's networks are written to a folder and read back at once: in memory where Linux has it
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class Transport(Protocol):
    """What ``RemoteRunner`` needs of the other side (``cerebros_cluster.ErlangCluster``)."""

    def open(self, digest: str, data: bytes) -> None: ...

    def run(self, job: dict[str, Any]) -> dict[str, Any]: ...

    def processes(self) -> int: ...

    def stop(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class RemoteRunner:
    """Runs each job through ``transport``: ``open(data_hash, data)``, ``run(job)`` (blocks; returns
    ``{"node", "result"}`` or raises), ``processes()`` (trial slots now), ``stop()``,
    ``resume()``, ``close()``. A thread per job in flight waits on ``run``."""

    def __init__(self, transport: Transport, trial_data: TrialData, cancel: threading.Event) -> None:
        self.transport = transport
        data = encode_trial_data(trial_data)
        transport.open(data_hash(data), data)
        if cancel.is_set():
            transport.stop()

    def processes(self) -> int:
        """The trial slots the transport has now (at least 1, so that work waits for a slot)."""
        return max(1, self.transport.processes())

    def submit(self, function: Job[Result], payload: Payload) -> "futures.Future[Result]":
        """Run ``function(trial_data, payload, should_stop)`` remotely; the future's result is what
        the function returns here, a trial's outcome naming its ``node`` and ``dispatch_seconds``."""
        future: futures.Future[Result] = futures.Future()
        job = {"kind": _KINDS[function], "networks": len(payload["model_paths"]),
               "payload": {name: value for name, value in payload.items() if name != "model_paths"}}
        threading.Thread(target=self._run, args=(future, job, payload["model_paths"]),
                         name=f"remote-{job['kind']}", daemon=True).start()
        return future

    def _run(self, future: "futures.Future[Any]", job: dict[str, Any], paths: list[str]) -> None:
        started = time.monotonic()
        try:
            answer = self.transport.run(job)
            result = unpack_result(job["kind"], answer["result"], paths)
        except BaseException as exc:  # the future carries it: result_or_failure decides
            future.set_exception(exc)
            return
        if isinstance(result, tuple):
            outcome = result[0]
            outcome.node = answer["node"]
            outcome.dispatch_seconds = round(max(0.0, time.monotonic() - started - outcome.duration_seconds), 4)
        else:
            result["node"] = answer["node"]
        future.set_result(result)

    def stop(self) -> None:
        """The jobs running see ``should_stop()`` true, and so do those started until ``resume``."""
        self.transport.stop()

    def resume(self) -> None:
        self.transport.resume()

    def close(self) -> None:
        """Stop what still runs and forget the search on the other side."""
        self.transport.close()


def encode_trial_data(trial_data: TrialData) -> bytes:
    """The trial data ``(X, y, folds, task, objective name)`` as one ETF binary."""
    X, y, folds, task, objective_name = trial_data
    labels = y if y.dtype.kind in "biuf" else {"labels": y.tolist(), "dtype": y.dtype.str}
    return plain.encode({"X": np.ascontiguousarray(X), "y": labels, "task": task, "objective": objective_name,
                         "folds": [[np.asarray(train), np.asarray(validation)] for train, validation in folds]})


def decode_trial_data(data: bytes) -> TrialData:
    """The inverse of ``encode_trial_data``."""
    term = plain.decode(data)
    y = term["y"]
    y = np.array(y["labels"], dtype=y["dtype"]) if isinstance(y, dict) else y
    folds = [(train, validation) for train, validation in term["folds"]]
    return term["X"], y, folds, term["task"], term["objective"]


def data_hash(data: bytes) -> str:
    """The name a node keeps the data under: the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def run_job(trial_data: TrialData, job: dict[str, Any], should_stop: ShouldStop) -> dict[str, Any]:
    """Run one job (the other end): train or refit into a folder of its own, and return the
    result term with the networks' files read back."""
    workdir = tempfile.mkdtemp(prefix="cerebros-job-", dir=_SCRATCH)
    try:
        paths = [os.path.join(workdir, f"network_{index}.npz") for index in range(job["networks"])]
        payload = {**job["payload"], "model_paths": paths}
        stop = (lambda: True) if job.get("stopped") else should_stop
        if job["kind"] == "train":
            outcome, outputs = train_trial(trial_data, payload, stop)
            result: dict[str, Any] = {"outcome": {**asdict(outcome), "status": outcome.status.value},
                                      "outputs": outputs}
        else:
            result = {"report": refit_trial(trial_data, payload, stop)}
        result["files"] = [_read_files(path) for path in paths]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def unpack_result(kind: str, term: dict[str, Any], paths: list[str]) -> Any:
    """What the job's function returns locally, from a result term: a trial's ``(TrialOutcome,
    outputs)``, or a refit's report. Its networks' files are written to ``paths``
    (``StorageError`` if they cannot be) once the term is checked: a ``ValueError`` says how it
    is not shaped like the job's result, and nothing is written."""
    files = term.get("files") if isinstance(term, dict) else None
    if not isinstance(files, list) or len(files) != len(paths):
        raise ValueError(f"a {kind} result must be a map whose files list has one entry per network "
                         f"({len(paths)}), got {_shape(term) if files is None else 'files as ' + _shape(files)}")
    for index, pair in enumerate(files):
        if pair is not None and not (isinstance(pair, list) and len(pair) == 2
                                     and all(isinstance(content, _FILE_CONTENT) for content in pair)):
            raise ValueError(f"a {kind} result's files[{index}] must be nil or the network's two files "
                             f"as binaries, got {_shape(pair)}")
    for path, pair in zip(paths, files):
        if pair is not None:
            for name, content in zip((path, path[:-4] + ".json"), pair):
                with storage(name):
                    os.makedirs(os.path.dirname(name), exist_ok=True)
                    with open(name, "wb") as f:
                        f.write(_as_bytes(content))
    if kind == "refit":
        return dict(term["report"])
    outputs: Optional[NDArray[Any]] = None if term["outputs"] is None else np.array(term["outputs"])
    return TrialOutcome(**term["outcome"]), outputs


def _read_files(path: str) -> Optional[list[bytes]]:
    """The ``.npz`` and ``.json`` a network saved to ``path``, or None if it saved none."""
    if not os.path.exists(path):
        return None
    with open(path, "rb") as npz, open(path[:-4] + ".json", "rb") as card:
        return [npz.read(), card.read()]


_FILE_CONTENT = (bytes, bytearray, memoryview, str)


def _shape(term: Any) -> str:
    """A short description of a term for an error message (not the term: it may be huge)."""
    if isinstance(term, (list, tuple)):
        return f"a {type(term).__name__} of {len(term)}"
    if isinstance(term, dict):
        return f"a map with keys {sorted(map(str, term))[:8]}"
    return type(term).__name__


def _as_bytes(content: Any) -> bytes:
    """A file's bytes: the wire hands back a binary that is valid UTF-8 as text."""
    return content.encode() if isinstance(content, str) else bytes(content)
