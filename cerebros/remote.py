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
- a result: ``{"fields" | "report": ..., "outputs": array or None, "files": [[npz, json] or
  None, ...]}``: the journal fields (or refit report), and the networks' files, which this
  side writes to the run directory, so a remote machine needs no shared storage.

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

import numpy as np

from codec import plain

from .artifacts import storage
from .trials import refit_trial, train_trial

_KINDS = {train_trial: "train", refit_trial: "refit"}
# A job's networks are written to a folder and read back at once: in memory where Linux has it
_SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
_FUNCTIONS = {kind: function for function, kind in _KINDS.items()}


class RemoteRunner:
    """Runs each job through ``transport``: ``open(data_hash, data)``, ``run(job)`` (blocks; returns
    ``{"node", "result"}`` or raises), ``processes()`` (trial slots now), ``stop()``,
    ``resume()``, ``close()``. A thread per job in flight waits on ``run``."""

    def __init__(self, transport, trial_data, cancel):
        self.transport = transport
        data = encode_trial_data(trial_data)
        transport.open(data_hash(data), data)
        if cancel.is_set():
            transport.stop()

    def processes(self):
        """The trial slots the transport has now (at least 1, so that work waits for a slot)."""
        return max(1, self.transport.processes())

    def submit(self, function, payload):
        """Run ``function(trial_data, payload, should_stop)`` remotely; the future's result is what
        the function returns here, with ``node`` (and ``dispatch_seconds``) added to its fields."""
        future = futures.Future()
        job = {"kind": _KINDS[function], "networks": len(payload["model_paths"]),
               "payload": {name: value for name, value in payload.items() if name != "model_paths"}}
        threading.Thread(target=self._run, args=(future, job, payload["model_paths"]),
                         name=f"remote-{job['kind']}", daemon=True).start()
        return future

    def _run(self, future, job, paths):
        started = time.monotonic()
        try:
            answer = self.transport.run(job)
            result = unpack_result(job["kind"], answer["result"], paths)
        except BaseException as exc:  # the future carries it: result_or_failure decides
            future.set_exception(exc)
            return
        fields = result[0] if job["kind"] == "train" else result
        fields["node"] = answer["node"]
        if fields.get("duration_seconds") is not None:
            fields["dispatch_seconds"] = round(max(0.0, time.monotonic() - started - fields["duration_seconds"]), 4)
        future.set_result(result)

    def stop(self):
        """The jobs running see ``should_stop()`` true, and so do those started until ``resume``."""
        self.transport.stop()

    def resume(self):
        self.transport.resume()

    def close(self):
        """Stop what still runs and forget the search on the other side."""
        self.transport.close()


def encode_trial_data(trial_data):
    """The trial data ``(X, y, folds, task, objective name)`` as one ETF binary."""
    X, y, folds, task, objective_name = trial_data
    labels = y if y.dtype.kind in "biuf" else {"labels": y.tolist(), "dtype": y.dtype.str}
    return plain.encode({"X": np.ascontiguousarray(X), "y": labels, "task": task, "objective": objective_name,
                         "folds": [[np.asarray(train), np.asarray(validation)] for train, validation in folds]})


def decode_trial_data(data):
    """The inverse of ``encode_trial_data``."""
    term = plain.decode(data)
    y = term["y"]
    y = np.array(y["labels"], dtype=y["dtype"]) if isinstance(y, dict) else y
    folds = [(train, validation) for train, validation in term["folds"]]
    return term["X"], y, folds, term["task"], term["objective"]


def data_hash(data):
    """The name a node keeps the data under: the SHA-256 of its bytes, in hex."""
    return hashlib.sha256(data).hexdigest()


def run_job(trial_data, job, should_stop):
    """Run one job (the other end): train or refit into a folder of its own, and return the
    result term with the networks' files read back."""
    function = _FUNCTIONS[job["kind"]]
    workdir = tempfile.mkdtemp(prefix="cerebros-job-", dir=_SCRATCH)
    try:
        paths = [os.path.join(workdir, f"network_{index}.npz") for index in range(job["networks"])]
        stopped = bool(job.get("stopped"))
        result = function(trial_data, {**job["payload"], "model_paths": paths},
                          (lambda: True) if stopped else should_stop)
        files = [_read_files(path) for path in paths]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if job["kind"] == "train":
        fields, outputs = result
        return {"fields": fields, "outputs": outputs, "files": files}
    return {"report": result, "files": files}


def unpack_result(kind, term, paths):
    """What the job's function returns locally, from a result term; its networks' files are
    written to ``paths`` (``StorageError`` if they cannot be)."""
    for path, files in zip(paths, term["files"]):
        if files is not None:
            for name, content in zip((path, path[:-4] + ".json"), files):
                with storage(name):
                    os.makedirs(os.path.dirname(name), exist_ok=True)
                    with open(name, "wb") as f:
                        f.write(_as_bytes(content))
    if kind == "refit":
        return dict(term["report"])
    outputs = term["outputs"]
    return dict(term["fields"]), None if outputs is None else np.array(outputs)


def _read_files(path):
    """The ``.npz`` and ``.json`` a network saved to ``path``, or None if it saved none."""
    if not os.path.exists(path):
        return None
    with open(path, "rb") as npz, open(path[:-4] + ".json", "rb") as card:
        return [npz.read(), card.read()]


def _as_bytes(content):
    """A file's bytes: the wire hands back a binary that is valid UTF-8 as text."""
    return content.encode() if isinstance(content, str) else bytes(content)
