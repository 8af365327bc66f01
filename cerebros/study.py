"""Running a search: a strategy's trials trained on the data, under budgets, into a run directory.

``Study.prepare(config).run(run_dir)`` is the one entry point (the command line and
``cerebros_service`` both use it). Trials run in this process (``n_jobs`` 1) or in
``n_jobs`` worker processes started with 'forkserver' or 'spawn' (never 'fork': the caller
may be multi-threaded). Each trial's networks are seeded from ``(seed, trial number)`` and
results are told to the strategy in trial-number order, so the journal is the same
whatever ``n_jobs`` is, timings aside. Only the search rows (training and validation
folds) reach the trials; the test split scores the best model once, at the end.

Budgets: ``max_trials``; ``max_time_seconds``, a hard deadline for training (running
trials stop within one mini-batch, no new trial starts, and the best so far is returned
with a warning); ``max_trial_seconds``, the same for each trial on its own. A
``threading.Event`` given as ``cancel`` stops the search the same way.
"""
import concurrent.futures as futures
import math
import multiprocessing
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np

from . import data as data_module
from . import objectives, strategies
from .artifacts import CONFIG, SUMMARY, Ensemble, RunDirectory
from .network import CerebrosNetwork
from .space import Candidate, SearchSpace

# Settings that define what is searched: a resumed run must agree on all of them.
_IDENTITY = ("dataset_id", "objective", "strategy", "strategy_params", "search_space", "seed", "split_seed",
             "test_size", "validation_size", "folds", "target", "task")
_POLL_SECONDS = 0.2


@dataclass
class SearchConfig:
    """Everything a search needs besides inline data and callbacks; plain values only (JSON-safe).

    ``objective`` None means the task's default (accuracy, or r2 for regression);
    ``strategy_params`` go to the strategy's constructor (see ``cerebros.strategies``);
    ``folds`` is the number of cross-validation folds each trial is trained and scored on (its
    saved model is the ensemble of the fold networks); 1 means one hold-out validation split of
    ``validation_size``. ``split_seed`` fixes the test split and the folds, ``seed`` the rest.
    """

    dataset_id: str
    objective: Optional[str] = None
    strategy: str = "evolution"
    strategy_params: dict = field(default_factory=dict)
    search_space: dict = field(default_factory=dict)
    seed: int = 0
    split_seed: int = 0
    test_size: float = 0.25
    validation_size: float = 0.2
    folds: int = 5
    target: Optional[str] = None
    task: Optional[str] = None
    max_trials: int = 10
    max_time_seconds: Optional[float] = None
    max_trial_seconds: Optional[float] = None
    n_jobs: int = 1

    def check(self):
        """Raise ``ValueError`` naming the first budget field out of range."""
        if isinstance(self.max_trials, bool) or not isinstance(self.max_trials, int) or self.max_trials < 0:
            raise ValueError(f"max_trials: must be an integer >= 0, got {self.max_trials!r}")
        for name in ("max_time_seconds", "max_trial_seconds"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool)
                                          and value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: must be a finite number of seconds >= 0, got {value!r}")
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise ValueError(f"n_jobs: must be an integer >= 1, got {self.n_jobs!r}")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be an integer >= 0, got {value!r}")


class SearchStopped(Exception):
    """The search ended without any finished trial; ``kind`` is "budget_exhausted" or "cancelled"."""

    def __init__(self, message, kind):
        super().__init__(message)
        self.kind = kind


class ResumeError(ValueError):
    """The run directory's journal does not belong to this configuration."""

    field = "run_dir"


@dataclass
class SearchResult:
    """The outcome of ``Study.run``. Metric values are in the objective's own units."""

    config: SearchConfig
    task: str
    objective: objectives.Objective
    records: list
    best: dict
    validation_metrics: dict
    test_metrics: dict
    population_history: list
    stopped_reason: str
    warnings: list
    duration_seconds: float
    run_dir: str
    artifacts: list
    split_sizes: dict
    strategy_params: dict

    @property
    def completed_trials(self):
        return len(self.records)


class Study:
    """A search ready to run: data loaded and split, objective, space and strategy built."""

    def __init__(self, config, splits, objective, strategy):
        self.config = config
        self.splits = splits
        self.objective = objective
        self.strategy = strategy
        self.records = []
        self.best = None

    @classmethod
    def prepare(cls, config, *, data=None):
        """Check ``config`` and build everything it names; ``data`` is inline ``(X, y)`` instead of
        loading ``config.dataset_id``. Raises ``DataError``, ``ObjectiveError``, ``SpaceError`` or
        ``ValueError`` (each naming the field at fault): after this, only running can fail."""
        config.check()
        if data is None:
            X, y, known_task = data_module.load(config.dataset_id, target=config.target)
        else:
            (X, y), known_task = data_module.from_arrays(*data), None
        splits = data_module.prepare(X, y, name=config.dataset_id, task=config.task or known_task,
                                     test_size=config.test_size, validation_size=config.validation_size,
                                     folds=config.folds, seed=config.split_seed)
        objective = objectives.get(config.objective, splits.task)
        space = SearchSpace.from_dict(config.search_space)
        strategy = strategies.create(config.strategy, space, splits.n_features, config.seed,
                                     **config.strategy_params)
        return cls(config, splits, objective, strategy)

    def run(self, run_dir, *, resume=False, on_trial=None, cancel=None):
        """Run the search into ``run_dir``; returns a ``SearchResult``. Runs once per ``Study``.

        With ``resume`` the directory's journal is replayed first (its trials are not trained
        again). ``on_trial(event)`` is called after each trial with a dict: trial, completed,
        max_trials, status, value, best_value, best_trial, generation, duration_seconds,
        elapsed_seconds. ``cancel``: a ``threading.Event``. Raises ``ResumeError`` for a
        journal of another search and ``SearchStopped`` when no trial finished.
        """
        self.run_dir = RunDirectory(run_dir)
        self.on_trial = on_trial
        self.cancel = cancel or threading.Event()
        started = time.monotonic()
        self.deadline = None if self.config.max_time_seconds is None else started + self.config.max_time_seconds
        self.started = started
        self._start_or_resume(resume)
        runner = (_InlineRunner if self.config.n_jobs == 1 else _PoolRunner)(
            self.config.n_jobs, self._trial_data(), self.cancel)
        try:
            stopped_reason = self._loop(runner)
        finally:
            runner.close()
        if self.best is None:
            raise SearchStopped(self._no_result_message(stopped_reason),
                                "cancelled" if stopped_reason == "cancelled" else "budget_exhausted")
        return self._finish(stopped_reason, time.monotonic() - started)

    def _trial_data(self):
        s = self.splits
        return (s.X, s.y, s.folds, s.task, self.objective.name)

    # ---- the loop ----------------------------------------------------------------------

    def _loop(self, runner):
        running = {}
        finished = {}
        next_to_tell = len(self.records)
        asked = len(self.records)
        stopped_reason = None
        while True:
            if stopped_reason is None:
                stopped_reason = self._interruption()
                if stopped_reason:
                    runner.stop()
            if stopped_reason is None:
                while len(running) < self.config.n_jobs and asked < self.config.max_trials:
                    trial = self.strategy.ask()
                    if trial is None:
                        break
                    running[runner.submit(self._payload(trial))] = trial
                    asked += 1
            if not running:
                break
            done, _ = futures.wait(running, timeout=_POLL_SECONDS, return_when=futures.FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                finished[trial.number] = (trial, _outcome(future))
            while next_to_tell in finished:
                self._tell(*finished.pop(next_to_tell))
                next_to_tell += 1
        return stopped_reason or ("max_trials" if asked >= self.config.max_trials else "exhausted")

    def _interruption(self):
        if self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "max_time"
        return None

    def _payload(self, trial):
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        return {
            "number": trial.number,
            "candidate": trial.candidate.to_dict(),
            "epochs": trial.epochs,
            "seed": trial_seed(self.config.seed, trial.number),
            "model_paths": [self.run_dir.trial_model(trial.number, fold)
                            for fold in range(len(self.splits.folds))],
            # wall-clock deadlines: a worker process does not share our monotonic clock's origin
            "run_deadline": None if remaining is None else time.time() + remaining,
            "trial_seconds": self.config.max_trial_seconds,
        }

    def _tell(self, trial, outcome):
        record = {
            "number": trial.number,
            "generation": trial.generation,
            "bracket": trial.bracket,
            "epochs": trial.epochs,
            "seed": trial_seed(self.config.seed, trial.number),
            "candidate": trial.candidate.to_dict(),
            **outcome,
        }
        if self._improves(record):
            self.run_dir.keep_as_best(trial.number)
            self.best = record
        else:
            self.run_dir.discard(trial.number)
        self._accept(trial, record)
        self.run_dir.append_journal(record)
        if self.on_trial is not None:
            self.on_trial(self._event(record))

    def _accept(self, trial, record):
        self.strategy.tell(trial, self.objective.fitness(record["value"]))
        self.records.append(record)

    def _improves(self, record):
        """Better objective wins; on a tie (common for accuracy on small validation sets) the lower
        validation loss, i.e. the more confident model; then the earlier trial."""
        if record["value"] is None:
            return False
        return self.best is None or self._rank(record) > self._rank(self.best)

    def _rank(self, record):
        loss = record["val_loss"]
        return self.objective.fitness(record["value"]), -math.inf if loss is None else -loss

    def _event(self, record):
        return {
            "trial": record["number"],
            "completed": len(self.records),
            "max_trials": self.config.max_trials,
            "status": record["status"],
            "value": record["value"],
            "best_value": None if self.best is None else self.best["value"],
            "best_trial": None if self.best is None else self.best["number"],
            "generation": record["generation"],
            "duration_seconds": record["duration_seconds"],
            "elapsed_seconds": round(time.monotonic() - self.started, 3),
        }

    # ---- start, resume, finish ------------------------------------------------------------

    def _start_or_resume(self, resume):
        identity = {name: getattr(self.config, name) for name in _IDENTITY}
        records = self.run_dir.read_journal()
        if records and not resume:
            raise ResumeError(f"run_dir: {self.run_dir.path} already holds a journal; resume it or use "
                              "another directory")
        if records:
            saved = self.run_dir.read_json(CONFIG)
            differing = sorted(name for name in _IDENTITY if saved.get(name) != identity[name])
            if differing:
                raise ResumeError(f"run_dir: the journal in {self.run_dir.path} was written with other "
                                  f"settings ({', '.join(differing)} differ)")
        self.run_dir.write_json(CONFIG, identity)
        self.run_dir.write_preprocessing(self.splits.scaler, self.splits.task, self.splits.name)
        for record in sorted(records, key=lambda r: r["number"]):
            trial = self.strategy.ask()
            if trial is None or trial.number != record["number"] or \
                    trial.candidate.key() != Candidate.from_dict(record["candidate"]).key():
                raise ResumeError(f"run_dir: journal trial {record['number']} is not what this search "
                                  "proposes at that point; the journal does not match")
            if self._improves(record):
                self.best = record
            self._accept(trial, record)

    def _no_result_message(self, stopped_reason):
        if stopped_reason == "cancelled":
            return "the search was cancelled before any trial finished"
        if stopped_reason == "max_time":
            return (f"max_time_seconds: the {self.config.max_time_seconds} s budget ran out before any "
                    "trial finished")
        if self.config.max_trials == 0:
            return "max_trials: a budget of 0 trials runs nothing"
        return f"every one of the {len(self.records)} trials failed (see the journal for their errors)"

    def _finish(self, stopped_reason, duration):
        validation = self.best["metrics"]
        test = objectives.evaluate(Ensemble.load(self.run_dir.best_models()), self.splits.X_test, self.splits.y_test)
        summary = {
            "config": asdict(self.config), "strategy_params": self.strategy.params(), "task": self.splits.task,
            "objective": self.objective.name, "direction": self.objective.direction,
            "completed_trials": len(self.records), "best_trial": self.best,
            "validation_metrics": validation, "test_metrics": test,
            "population_history": [_in_metric_units(entry, self.objective)
                                   for entry in self.strategy.population_history],
            "stopped_reason": stopped_reason, "warnings": self._warnings(stopped_reason),
            "duration_seconds": duration, "split_sizes": self.splits.sizes(),
        }
        self.run_dir.write_json(SUMMARY, summary)
        return SearchResult(
            config=self.config, task=self.splits.task, objective=self.objective, records=self.records,
            best=self.best, validation_metrics=validation, test_metrics=test,
            population_history=summary["population_history"], stopped_reason=stopped_reason,
            warnings=summary["warnings"], duration_seconds=duration, run_dir=self.run_dir.path,
            artifacts=self.run_dir.artifacts(), split_sizes=summary["split_sizes"],
            strategy_params=summary["strategy_params"])

    def _warnings(self, stopped_reason):
        warnings = []
        if stopped_reason == "max_time":
            warnings.append(f"max_time_seconds: the {self.config.max_time_seconds} s deadline stopped the "
                            f"search after {len(self.records)} trials; the result is the best so far")
        elif stopped_reason == "cancelled":
            warnings.append(f"cancelled after {len(self.records)} trials; the result is the best so far")
        failed = [r["number"] for r in self.records if r["status"] == "failed"]
        if failed:
            warnings.append(f"{len(failed)} trial(s) failed: {failed[:10]} (errors in the journal)")
        timed_out = [r["number"] for r in self.records if r["status"] == "timeout"]
        if timed_out:
            warnings.append(f"max_trial_seconds: {len(timed_out)} trial(s) were stopped at the per-trial "
                            f"limit of {self.config.max_trial_seconds} s")
        return warnings


def trial_seed(seed, number):
    """The network seed of trial ``number``: a function of the search seed and the number only."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _in_metric_units(entry, objective):
    converted = dict(entry)
    for name in ("best_fitness", "mean_fitness"):
        if entry[name] is not None:
            converted[name] = objective.from_fitness(entry[name])
    return converted


def _finite_or_none(value):
    return float(value) if math.isfinite(value) else None


def _outcome(future):
    try:
        return future.result()
    except Exception as exc:  # a worker process died: the trial failed, the search goes on
        return _failed(f"{type(exc).__name__}: {exc}", 0.0)


def _failed(error, duration):
    return {"status": "failed", "stopped_reason": [], "value": None, "metrics": {}, "val_loss": None,
            "best_epoch": [],
            "epochs_trained": 0, "duration_seconds": duration, "error": error}


# ---- training one trial (in this process or a worker process) -------------------------------

def train_trial(trial_data, payload, should_stop):
    """Train one network per validation fold and score the trial on the validation rows.

    With one fold this is a hold-out validation; with several, every search row is predicted
    once, by the network that did not train on it, and the trial is scored on all of those
    out-of-fold predictions. The networks go to ``payload["model_paths"]`` (one per fold).
    Returns the journal fields: status ("completed", "timeout" at the per-trial limit,
    "interrupted" by the run deadline or cancellation, "failed"), stopped_reason and
    best_epoch (one per fold), value (the objective), metrics (all of the task's), val_loss
    (mean over folds of the networks' best validation loss), epochs_trained (all folds),
    duration_seconds, error.
    """
    X, y, folds, task, objective_name = trial_data
    started = time.monotonic()
    limits = []
    if payload["run_deadline"] is not None:
        limits.append((started + payload["run_deadline"] - time.time(), "interrupted"))
    if payload["trial_seconds"] is not None:
        limits.append((started + payload["trial_seconds"], "timeout"))
    deadline, deadline_status = min(limits) if limits else (None, None)
    candidate = Candidate.from_dict(payload["candidate"])
    networks = []
    try:
        for fold, ((train, validation), path) in enumerate(zip(folds, payload["model_paths"])):
            network = CerebrosNetwork(candidate, task=task, random_state=payload["seed"] + fold)
            network.fit(X[train], y[train], X[validation], y[validation], epochs=payload["epochs"],
                        deadline=deadline, should_stop=should_stop)
            network.save(path)
            networks.append(network)
        metrics = _out_of_fold_metrics(networks, X, y, folds, task)
    except Exception as exc:  # one bad candidate (diverged, degenerate) must not end the search
        return _failed(f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    reasons = [network.stopped_reason_ for network in networks]
    status = "completed"
    if "cancelled" in reasons:
        status = "interrupted"
    elif "deadline" in reasons:
        status = deadline_status
    losses = [network.best_val_loss_ for network in networks]
    return {"status": status, "stopped_reason": reasons, "value": metrics[objective_name], "metrics": metrics,
            "val_loss": _finite_or_none(float(np.mean(losses))),
            "best_epoch": [network.best_epoch_ for network in networks],
            "epochs_trained": sum(network.n_epochs_trained_ for network in networks),
            "duration_seconds": round(time.monotonic() - started, 3), "error": None}


def _out_of_fold_metrics(networks, X, y, folds, task):
    validation_rows = np.concatenate([validation for _, validation in folds])
    X_val = [X[validation] for _, validation in folds]
    predictions = np.concatenate([network.predict(rows) for network, rows in zip(networks, X_val)])
    if task != "classification":
        return objectives.score_predictions(task, y[validation_rows], predictions)
    classes = networks[0].classes_
    if any(not np.array_equal(network.classes_, classes) for network in networks):
        raise ValueError("the folds' training rows hold different classes")
    proba = np.concatenate([network.predict_proba(rows) for network, rows in zip(networks, X_val)])
    return objectives.score_predictions(task, y[validation_rows], predictions, proba, classes)


class _InlineRunner:
    """Runs each trial at once, in this process."""

    def __init__(self, n_jobs, trial_data, cancel):
        self.trial_data = trial_data
        self.cancel = cancel

    def submit(self, payload):
        future = futures.Future()
        future.set_result(train_trial(self.trial_data, payload, self.cancel.is_set))
        return future

    def stop(self):
        """Nothing to do: trials here watch the cancel event themselves."""

    def close(self):
        """Nothing to release."""


class _PoolRunner:
    """Runs trials in worker processes that receive the data once, at start-up."""

    def __init__(self, n_jobs, trial_data, cancel):
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        self._stop = context.Event()
        if cancel.is_set():
            self._stop.set()
        self.pool = futures.ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_init_worker,
                                                initargs=(trial_data, self._stop))

    def submit(self, payload):
        return self.pool.submit(_train_in_worker, payload)

    def stop(self):
        self._stop.set()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


_worker_state = {}


def _init_worker(trial_data, stop):
    # one BLAS thread per process: n_jobs processes already fill the cores
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)
    _worker_state.update(trial_data=trial_data, stop=stop)


def _train_in_worker(payload):
    return train_trial(_worker_state["trial_data"], payload, _worker_state["stop"].is_set)
