"""A run directory's layout, and the saved model: a weighted ensemble of networks.

    run.json                the manifest, written first: it marks the directory as a run directory
    config.json             what was searched (checked again when a run resumes)
    .lock                   held (``flock``) by the search writing here, so two cannot share it
    journal.jsonl           one JSON line per finished trial, in trial-number order
    ensemble.json           the saved model: its network files, each with its trial, fold and weight
    ensemble_member_<i>.npz   the saved model's networks: every fold (and refit) network of every
    ensemble_member_<i>.json  trial the ensemble selected (``CerebrosNetwork.save``: weights, and a
                            readable card); earlier versions named them best_model_<i>
    summary.json            the outcome: best trial, ensemble, validation and test metrics, warnings
    trials/                 trial_<n>_<fold>.npz/.json networks and trial_<n>_oof.npy out-of-fold
                            outputs: those of the trials in flight and of the ``ensemble_size``
                            best trials so far (the ensemble's candidates; a resumed run needs them)

The engine writes only into a directory it created or that holds its manifest: an existing
directory with other files and no manifest is refused before anything is written, and the
clean-up deletes only files named as the engine names its own (the trial files above, and the
networks the previous ``ensemble.json`` lists). An ``OSError`` while writing (a full disk,
a read-only file system) is raised as ``StorageError``.
"""
import contextlib
import errno as errno_codes
import fcntl
import json
import os
import re
import shutil
import time
import zipfile
from typing import IO, Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from codec.errors import FieldError

from .network import CerebrosNetwork

CONFIG = "config.json"
ENSEMBLE = "ensemble.json"
JOURNAL = "journal.jsonl"
SUMMARY = "summary.json"
TRIALS = "trials"
MANIFEST = "run.json"
_MANIFEST_FORMAT = "cerebros-run"
_MODEL = "ensemble_member_{index}.npz"
# The names a saved model's networks may have in its ensemble.json: this version's, and
# best_model_<i>.npz of runs saved before (still loaded, and replaced when such a run resumes).
_MODEL_FILE = re.compile(r"(?:ensemble_member|best_model)_\d+\.npz")
_LOCK = ".lock"
_STAGED = ".new"  # a saved-model file copied, not yet in place
# The names of a trial's files (``RunDirectory.trial_model``, ``refit_model``, ``trial_outputs``),
# with the trial's name as group 1: the only files the clean-up of ``trials/`` deletes.
_TRIAL_FILE = re.compile(r"(trial_\d{5,})_(?:\d+\.npz|\d+\.json|refit\d+\.npz|refit\d+\.json|oof\.npy)")


class StorageError(OSError):
    """An ``OSError`` while writing the run directory (``errno``, ``strerror``, ``filename`` as
    the OS gave them): the search stops, and what it wrote before stays."""

    def __str__(self) -> str:
        return (f"run_dir: cannot write {self.filename}: {self.errno_name} ({self.strerror}); the search stopped "
                "and what it wrote before is kept: resume it once the cause is fixed")

    @property
    def errno_name(self) -> str:
        """The error's symbolic name, e.g. "ENOSPC"."""
        if self.errno is None:
            return "no errno"
        return errno_codes.errorcode.get(self.errno, f"errno {self.errno}")


@contextlib.contextmanager
def storage(path: Union[str, "os.PathLike[str]"]) -> Iterator[None]:
    """Raise any ``OSError`` inside as a ``StorageError`` about writing ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise StorageError(exc.errno, exc.strerror or str(exc), os.fspath(path)) from exc


class RunDirectory:
    """Reads and writes the files of one run directory; ``claim`` before writing."""

    def __init__(self, path: Union[str, "os.PathLike[str]"]) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self._lock: Optional[IO[str]] = None

    def claim(self) -> None:
        """Make the directory this engine's, or check that it is: a missing or empty directory
        is created with its manifest first; one holding the manifest is a run directory
        already. Anything else (a file, a directory with other files) raises
        ``FieldError`` (field ``run_dir``) with nothing written."""
        if os.path.lexists(self.path) and not os.path.isdir(self.path):
            raise FieldError("run_dir", f"{self.path} exists and is not a directory")
        if os.path.isdir(self.path) and not self.is_run_directory() and os.listdir(self.path):
            raise FieldError("run_dir", f"{self.path} is a directory with other files and no {MANIFEST}: "
                                        "not a run directory, so nothing is written there (give a new or empty "
                                        "directory)")
        with storage(self.path):
            os.makedirs(self.path, exist_ok=True)
            if not self.is_run_directory():
                self._write_atomically(MANIFEST, json.dumps({"format": _MANIFEST_FORMAT, "version": 1}))
            os.makedirs(os.path.join(self.path, TRIALS), exist_ok=True)

    def is_run_directory(self) -> bool:
        """Whether the directory holds this engine's manifest."""
        try:
            with open(self.file(MANIFEST), "rb") as f:
                manifest = json.loads(f.read(4096))
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and manifest.get("format") == _MANIFEST_FORMAT

    def lock(self, patience: float = 1.0) -> None:
        """Take the directory for this process until ``unlock``; ``BlockingIOError`` if a search
        (in this process or another) still holds it after ``patience`` seconds (``in_use``
        takes it for an instant). The lock dies with its process."""
        with storage(self.file(_LOCK)):
            handle = open(self.file(_LOCK), "a")
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise
                time.sleep(0.01)
            except OSError:
                handle.close()
                raise
        self._lock = handle

    def in_use(self) -> bool:
        """Whether a search holds the directory now (it holds ``lock``), from any process."""
        with open(self.file(_LOCK), "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
        return False  # closing the file released the shared lock

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def read_journal(self) -> list[Any]:
        """The journal's lines, parsed (``TrialRecord.from_json`` checks them); a last line cut
        short by a crash is ignored."""
        if not os.path.exists(self.file(JOURNAL)):
            return []
        with open(self.file(JOURNAL)) as f:
            lines = f.read().split("\n")
        records = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                if number < len(lines) - 1:
                    raise ValueError(f"{self.file(JOURNAL)} line {number} is not JSON") from None
        return records

    def write_journal(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the journal with ``records``, atomically."""
        self._write_atomically(JOURNAL, "".join(json.dumps(record, sort_keys=True) + "\n" for record in records))

    def append_journal(self, record: dict[str, Any]) -> None:
        with storage(self.file(JOURNAL)), open(self.file(JOURNAL), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_json(self, name: str) -> Any:
        with open(self.file(name)) as f:
            return json.load(f)

    def write_json(self, name: str, data: Any) -> None:
        self._write_atomically(name, json.dumps(data, indent=1, sort_keys=True))

    def _write_atomically(self, name: str, text: str) -> None:
        """Replace file ``name`` with ``text`` so that a reader, or a crash, never leaves half a file."""
        temporary = self.file(name + ".tmp")
        try:
            with storage(temporary):
                with open(temporary, "w") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(temporary, self.file(name))
        except StorageError:
            with contextlib.suppress(OSError):  # a full disk: give back what the half file took
                os.remove(temporary)
            raise

    def trial_model(self, number: int, fold: int) -> str:
        """Where fold ``fold`` of trial ``number`` saves its network."""
        return os.path.join(self.path, TRIALS, f"{_trial_name(number)}_{fold}.npz")

    def refit_model(self, number: int, index: int) -> str:
        """Where refit network ``index`` of trial ``number`` (trained on all search rows) saves itself."""
        return os.path.join(self.path, TRIALS, f"{_trial_name(number)}_refit{index}.npz")

    def trial_outputs(self, number: int) -> str:
        """Where trial ``number``'s out-of-fold outputs are kept while it is an ensemble candidate."""
        return os.path.join(self.path, TRIALS, f"{_trial_name(number)}_oof.npy")

    def save_outputs(self, number: int, outputs: NDArray[Any]) -> None:
        with storage(self.trial_outputs(number)):
            np.save(self.trial_outputs(number), outputs, allow_pickle=False)

    def load_outputs(self, number: int) -> NDArray[Any]:
        outputs: NDArray[Any] = np.load(self.trial_outputs(number), allow_pickle=False)
        return outputs

    def has_trial(self, number: int, folds: int) -> bool:
        """Whether trial ``number``'s ``folds`` networks and its out-of-fold outputs are all here."""
        paths = [self.trial_model(number, fold) for fold in range(folds)] + [self.trial_outputs(number)]
        return all(os.path.exists(path) for path in paths)

    def discard(self, number: int) -> None:
        """Delete trial ``number``'s networks and outputs."""
        self._remove_trial_files(lambda trial: trial == _trial_name(number))

    def discard_all_but(self, numbers: Iterable[int]) -> None:
        """Delete the files of every trial not in ``numbers`` (left by a run that stopped abruptly)."""
        keep = {_trial_name(number) for number in numbers}
        self._remove_trial_files(lambda trial: trial not in keep)

    def _remove_trial_files(self, chosen: Callable[[str], bool]) -> None:
        """Delete the trial files (``_TRIAL_FILE``) in ``trials/`` whose trial name is ``chosen``."""
        folder = os.path.join(self.path, TRIALS)
        for name in os.listdir(folder):
            match = _TRIAL_FILE.fullmatch(name)
            if match and chosen(match.group(1)):
                with storage(os.path.join(folder, name)):
                    os.remove(os.path.join(folder, name))

    def save_model(self, members: Sequence[tuple[int, int]], folds: int, refits: dict[int, int]) -> None:
        """Make the saved model the ensemble of ``members``, ``(trial number, weight)`` pairs: every
        fold network of each and, if ``refits`` has its number, that many refit networks; a
        trial's weight is shared equally by its networks. Copies them (a resumed run may change
        the model, so the trials keep theirs), beside the old model first: if that fails (a full
        disk), the old model stays whole."""
        entries: list[dict[str, Any]] = []
        staged: list[str] = []
        try:
            for number, weight in members:
                networks = [(self.trial_model(number, fold), {"fold": fold}) for fold in range(folds)]
                networks += [(self.refit_model(number, index), {"refit": index})
                             for index in range(refits.get(number, 0))]
                for source, which in networks:
                    name = _MODEL.format(index=len(entries))
                    for suffix in (".npz", ".json"):
                        staged.append(self.file(name)[:-4] + suffix + _STAGED)
                        with storage(staged[-1]):
                            shutil.copyfile(source[:-4] + suffix, staged[-1])
                    entries.append({"file": name, "trial": number, **which, "weight": weight / len(networks)})
        except StorageError:
            for path in staged:
                with contextlib.suppress(OSError):
                    os.remove(path)
            raise
        old_models = saved_model(self.path)[0]
        with storage(self.file(ENSEMBLE)):  # renames and removals: they take no space
            if os.path.exists(self.file(ENSEMBLE)):  # first, so no reader pairs it with the new files
                os.remove(self.file(ENSEMBLE))
            for old in old_models:
                _remove_model(old)
            for path in staged:
                os.replace(path, path[:-len(_STAGED)])
        self.write_json(ENSEMBLE, {"members": entries})

    def artifacts(self) -> list[str]:
        """The paths a finished run leaves, those that exist."""
        files = [self.file(name) for name in (CONFIG, JOURNAL, SUMMARY, ENSEMBLE)]
        models = [path for npz in saved_model(self.path)[0] for path in (npz, npz[:-4] + ".json")]
        return [path for path in files + models if os.path.exists(path)]


class Ensemble:
    """Networks averaged with ``weights`` (None: equal): their class probabilities, or their predictions."""

    def __init__(self, networks: list[CerebrosNetwork], weights: Optional[ArrayLike] = None) -> None:
        self.networks = networks
        self.weights = np.ones(len(networks)) if weights is None else np.asarray(weights, dtype=np.float64)
        self.task = networks[0].task
        if self.task == "classification":
            self.classes_ = networks[0].classes_
            if any(not np.array_equal(n.classes_, self.classes_) for n in networks):
                raise ValueError("ensemble: the networks were trained on different classes")

    @classmethod
    def load(cls, paths: Sequence[str], weights: Optional[ArrayLike] = None) -> "Ensemble":
        return cls([CerebrosNetwork.load(path) for path in paths], weights)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        return np.average([network.predict_proba(X) for network in self.networks], axis=0, weights=self.weights)

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        if self.task == "classification":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.average([network.predict(X) for network in self.networks], axis=0, weights=self.weights)


def load_model(path: Union[str, "os.PathLike[str]"]) -> Ensemble:
    """The saved model of a run directory (its whole ensemble), or one of its ``ensemble_member_<i>.npz``
    networks alone, as an ``Ensemble``; ``FileNotFoundError`` if ``path`` holds none (it is not
    a run directory with a saved model, nor a saved network). Nothing is ever unpickled. Each
    network standardises its own inputs, so it takes features in their original units."""
    path = os.fspath(path)
    if os.path.isdir(path):
        models, weights = saved_model(path)
        if not models:
            what = "a run directory without a saved model" if RunDirectory(path).is_run_directory() else \
                "not a run directory"
            raise FileNotFoundError(f"no saved model at {path}: {what}")
    elif os.path.isfile(path) and zipfile.is_zipfile(path):
        models, weights = [path], [1]
    else:
        raise FileNotFoundError(f"no saved model at {path}: not a run directory nor a saved network (.npz)")
    return Ensemble.load(models, weights)


def saved_model(folder: str) -> tuple[list[str], list[float]]:
    """``(network paths, weights)`` of the model saved in run directory ``folder`` (both empty if
    none). ``FieldError`` (``run_dir``) if its ``ensemble.json`` names a file that is not one of its networks."""
    manifest = os.path.join(folder, ENSEMBLE)
    if not os.path.exists(manifest):
        return [], []
    with open(manifest) as f:
        members = json.load(f)["members"]
    for member in members:
        if not _MODEL_FILE.fullmatch(str(member["file"])):
            raise FieldError("run_dir", f"{manifest} lists {member['file']!r}, which is not one of the run's "
                                        "networks")
    return [os.path.join(folder, m["file"]) for m in members], [m["weight"] for m in members]


def _trial_name(number: int) -> str:
    return f"trial_{number:05d}"


def _remove_model(npz: str) -> None:
    for path in (npz, npz[:-4] + ".json"):
        if os.path.exists(path):
            os.remove(path)
