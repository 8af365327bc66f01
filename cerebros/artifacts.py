"""A run directory's layout, and the saved best model: an ensemble of fold networks plus the scaler.

    config.json             what was searched (checked again when a run resumes)
    journal.jsonl           one JSON line per finished trial, in trial-number order
    best_model_<fold>.npz   the best trial's network for each validation fold
    best_model_<fold>.json  (``CerebrosNetwork.save``: weights, and a readable card)
    preprocessing.json      the feature scaler (never fitted on test rows) and the task
    summary.json            the outcome: best trial, validation and test metrics, warnings
    trials/                 models of trials in flight (only the best trial's are kept)
"""
import glob
import json
import os

import numpy as np

from .data import Scaler
from .network import CerebrosNetwork

CONFIG = "config.json"
JOURNAL = "journal.jsonl"
PREPROCESSING = "preprocessing.json"
SUMMARY = "summary.json"
TRIALS = "trials"
_MODEL = "best_model_{fold}.npz"


class RunDirectory:
    """Reads and writes the files of one run directory (created if missing)."""

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        os.makedirs(os.path.join(self.path, TRIALS), exist_ok=True)

    def file(self, name):
        return os.path.join(self.path, name)

    def read_journal(self):
        """The journal's records; a last line cut short by a crash is ignored."""
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

    def append_journal(self, record):
        with open(self.file(JOURNAL), "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_json(self, name):
        with open(self.file(name)) as f:
            return json.load(f)

    def write_json(self, name, data):
        """Write atomically, so a reader never sees half a file."""
        temporary = self.file(name + ".tmp")
        with open(temporary, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(temporary, self.file(name))

    def write_preprocessing(self, scaler, task, dataset_name):
        self.write_json(PREPROCESSING, {"scaler": scaler.to_dict(), "task": task, "dataset": dataset_name,
                                        "n_features": len(scaler.mean)})

    def trial_model(self, number, fold):
        """Where fold ``fold`` of trial ``number`` saves its network."""
        return os.path.join(self.path, TRIALS, f"trial_{number:05d}_{fold}.npz")

    def keep_as_best(self, number):
        """Make trial ``number``'s fold networks the best model, replacing the previous one."""
        for old in self.best_models():
            _remove_model(old)
        for path in sorted(glob.glob(self.trial_model(number, "*"))):
            fold = path[:-4].rsplit("_", 1)[1]
            target = self.file(_MODEL.format(fold=fold))
            os.replace(path, target)
            os.replace(path[:-4] + ".json", target[:-4] + ".json")

    def discard(self, number):
        for path in glob.glob(self.trial_model(number, "*")):
            _remove_model(path)

    def best_models(self):
        """The best model's network files, in fold order."""
        return best_models(self.path)

    def artifacts(self):
        """The paths a finished run leaves, those that exist."""
        files = [self.file(name) for name in (CONFIG, JOURNAL, PREPROCESSING, SUMMARY)]
        models = [path for npz in self.best_models() for path in (npz, npz[:-4] + ".json")]
        return [path for path in files + models if os.path.exists(path)]


class Ensemble:
    """Networks trained on different folds, averaged: their class probabilities, or their predictions."""

    def __init__(self, networks):
        self.networks = networks
        self.task = networks[0].task
        if self.task == "classification":
            self.classes_ = networks[0].classes_
            if any(not np.array_equal(n.classes_, self.classes_) for n in networks):
                raise ValueError("ensemble: the fold networks were trained on different classes")

    @classmethod
    def load(cls, paths):
        return cls([CerebrosNetwork.load(path) for path in paths])

    def predict_proba(self, X):
        return np.mean([network.predict_proba(X) for network in self.networks], axis=0)

    def predict(self, X):
        if self.task == "classification":
            return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
        return np.mean([network.predict(X) for network in self.networks], axis=0)


class Predictor:
    """A run's best model with its scaler: predicts from features in their original units."""

    def __init__(self, model, scaler):
        self.model = model
        self.scaler = scaler

    @classmethod
    def load(cls, path):
        """From a run directory (all folds' networks), or one of its ``best_model_<fold>.npz``."""
        path = os.fspath(path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        if os.path.isdir(path):
            models = best_models(path)
        else:
            models = [path] if os.path.isfile(path) else []
        if not models:
            raise FileNotFoundError(f"no saved model at {path}")
        with open(os.path.join(folder, PREPROCESSING)) as f:
            scaler = Scaler.from_dict(json.load(f)["scaler"])
        return cls(Ensemble.load(models), scaler)

    @property
    def task(self):
        return self.model.task

    @property
    def classes_(self):
        return self.model.classes_

    def predict(self, X):
        return self.model.predict(self.scaler.transform(X))

    def predict_proba(self, X):
        return self.model.predict_proba(self.scaler.transform(X))


def best_models(folder):
    """The best model's network files in run directory ``folder``, in fold order."""
    return sorted(glob.glob(os.path.join(folder, _MODEL.format(fold="*"))), key=_fold_of)


def _fold_of(path):
    return int(path[:-4].rsplit("_", 1)[1])


def _remove_model(npz):
    for path in (npz, npz[:-4] + ".json"):
        if os.path.exists(path):
            os.remove(path)
