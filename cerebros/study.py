"""Running a search: a strategy's trials trained on the data, under budgets, into a run directory.

``Study.prepare(config).run(run_dir)`` is the one entry point (the command line and
``cerebros_service`` both use it). Trials (``cerebros.trials``) run in this process
(``n_jobs`` 1) or in worker processes (``cerebros.runners``); the ensemble is chosen by
``cerebros.selection`` and refit here. What the budgets, the ensemble and the refit do, and
why: docs/engine.md.
"""
import concurrent.futures as futures
import math
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import NDArray

from codec.errors import FieldError

from . import data as data_module
from . import objectives, selection, strategies
from .artifacts import CONFIG, SUMMARY, Ensemble, RunDirectory, saved_model
from .records import TrialEvent, TrialOutcome, TrialRecord, TrialState
from .runners import InlineRunner, PoolRunner, Runner, available_cores, result_or_failure
from .space import Candidate, SearchSpace
from .trials import TrialData, class_labels, epoch_bound, failed_trial, refit_trial, train_trial

if TYPE_CHECKING:
    from .remote import RemoteRunner

# Settings that define what is searched: a resumed run must agree on all of them.
_IDENTITY = ("dataset_id", "objective", "strategy", "strategy_params", "search_space", "seed", "split_seed",
             "test_size", "validation_size", "folds", "target", "task")
_POLL_SECONDS = 0.2
# The largest value of each size-like setting (seeds: 64 bits).
MAXIMA = {"max_trials": 1_000_000, "max_trials_without_improvement": 1_000_000, "seed": 2 ** 64 - 1,
          "split_seed": 2 ** 64 - 1, "ensemble_size": 1_000, "folds": 100, "max_dataset_bytes": 2 ** 40}
# With max_time_seconds, the search leaves the refits REFIT_MARGIN times their estimated time
# (the estimate comes from the trials' own training under the same load; the margin absorbs the
# machine's swings), but never more than REFIT_MAX_SHARE of the budget (see ``_reserve``).
REFIT_MARGIN = 1.5
REFIT_MAX_SHARE = 0.5
_TRAINING_PASSES = 3  # training a row costs about three forward passes (see _refit_epoch_cost_ratio)


@dataclass
class SearchConfig:
    """Everything a search needs besides inline data and callbacks; plain values only (JSON-safe).

    ``objective`` None means the task's default (accuracy, or r2 for regression);
    ``strategy_params`` go to the strategy's constructor (see ``cerebros.strategies``);
    ``folds`` is the number of cross-validation folds each trial is trained and scored on (its
    model is the ensemble of the fold networks); 1 means one hold-out validation split of
    ``validation_size``. ``split_seed`` fixes the test split and the folds, ``seed`` the rest.
    ``test_size`` 0 holds no test rows out: the search cross-validates on every row, the
    selected trials refit on all of them (with ``refit``), and only the cross-validated
    (out-of-fold) metrics are reported, what a user does once the evaluation is done.
    ``ensemble_size`` is how many of the best trials are candidates for the final ensemble
    (their networks stay on disk until the end); 0 or 1 makes the best trial alone the model.
    It is not part of what is searched: a resumed run may change it, and then ensembles the
    best trials whose networks the earlier run still kept. ``refit``: the selected trials also
    train networks on all search rows for the saved model (see the module docstring).
    ``max_trials_without_improvement`` (None: no limit) and ``min_improvement`` (in the
    objective's units) are the search's early stopping (see the module docstring).
    ``max_trials`` None means no trial cap: the search then runs until ``max_time_seconds``
    (one of the two must be given), whichever comes first when both are. ``n_jobs``
    -1 means one trial process per available core, as in scikit-learn (more than the cores
    available run as many processes as cores). ``max_dataset_bytes`` caps the dataset file read
    (``data.load``). ``check`` holds each field's bounds (``MAXIMA``).
    """

    dataset_id: str
    objective: Optional[str] = None
    strategy: str = "evolution"
    strategy_params: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    split_seed: int = 0
    test_size: float = 0.25
    validation_size: float = 0.2
    folds: int = 5
    target: Optional[str] = None
    task: Optional[str] = None
    max_trials: Optional[int] = 10
    max_time_seconds: Optional[float] = None
    max_trial_seconds: Optional[float] = None
    max_trials_without_improvement: Optional[int] = None
    min_improvement: float = 0.0
    n_jobs: int = 1
    ensemble_size: int = 20
    refit: bool = True
    max_dataset_bytes: int = data_module.DEFAULT_MAX_BYTES

    def check(self) -> None:
        """Raise ``FieldError`` naming the first budget field out of range."""
        if self.max_trials is None and self.max_time_seconds is None:
            raise FieldError("max_trials", "give max_trials, max_time_seconds or both: a search needs a bound")
        integers = {"max_trials": 0, "max_trials_without_improvement": 1, "seed": 0, "split_seed": 0,
                    "ensemble_size": 0, "folds": 1, "max_dataset_bytes": 1}  # each field's least value
        optional = ("max_trials", "max_trials_without_improvement", "max_time_seconds", "max_trial_seconds")
        for name, least in integers.items():
            value = getattr(self, name)
            if (value is not None or name not in optional) and not (
                    _is_number(value, int) and least <= value <= MAXIMA[name]):
                raise FieldError(name, f"must be an integer from {least} to {MAXIMA[name]}, got "
                                       f"{strategies.shown(value)}")
        for name, unit in (("max_time_seconds", " of seconds"), ("max_trial_seconds", " of seconds"),
                           ("min_improvement", "")):
            value = getattr(self, name)
            if (value is not None or name not in optional) and not (
                    _is_number(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise FieldError(name, f"must be a finite number{unit} >= 0, got {value!r}")
        if not (_is_number(self.n_jobs, int) and (self.n_jobs >= 1 or self.n_jobs == -1)):
            raise FieldError("n_jobs", f"must be an integer >= 1, or -1 for every available core, got {self.n_jobs!r}")
        if not isinstance(self.refit, bool):
            raise FieldError("refit", f"must be true or false, got {self.refit!r}")


def _is_number(value: object, types: Union[type, tuple[type, ...]]) -> bool:
    """Whether ``value`` is an instance of ``types`` and not a bool (which Python counts as an int)."""
    return isinstance(value, types) and not isinstance(value, bool)


class SearchStopped(Exception):
    """The search ended without any successful trial; ``kind`` is "budget_exhausted" (none ran),
    "trials_failed" (every one that ran failed) or "cancelled"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class SearchResult:
    """The outcome of ``Study.run``. Metric values are in the objective's own units.

    ``records`` are the journal's trials, ``best`` the best one; ``ensemble`` the saved model's members,
    ``[{"trial": number, "weight": count}]``; ``validation_metrics`` its out-of-fold metrics
    and ``test_metrics`` its metrics on the test split (None with ``test_size`` 0); ``refit`` one report per member,
    ``{"trial", "epochs", "networks", "status"}`` (empty without refitting or after a
    cancellation).
    """

    config: SearchConfig
    task: str
    objective: objectives.Objective
    records: list[TrialRecord]
    best: TrialRecord
    validation_metrics: dict[str, float]
    test_metrics: Optional[dict[str, float]]
    ensemble: list[dict[str, int]]
    population_history: list[dict[str, Any]]
    stopped_reason: str
    warnings: list[str]
    duration_seconds: float
    run_dir: str
    artifacts: list[str]
    split_sizes: dict[str, int]
    strategy_params: dict[str, Any]
    refit: list[dict[str, Any]]

    @property
    def completed_trials(self) -> int:
        return len(self.records)


class Study:
    """A search ready to run: data loaded and split, objective, space and strategy built."""

    def __init__(self, config: SearchConfig, splits: data_module.Splits, objective: objectives.Objective,
                 strategy: strategies.Strategy) -> None:
        self.config = config
        self.splits = splits
        self.objective = objective
        self.strategy = strategy
        self.records: list[TrialRecord] = []
        self.best: Optional[TrialRecord] = None
        # The last trial that raised the best fitness by more than min_improvement, and that
        # fitness: the search's early stopping counts the trials after it.
        self.last_improvement = (-1, -math.inf)
        self.kept: list[TrialRecord] = []  # the ensemble's candidates: the best records, best first
        self.outputs: dict[int, NDArray[Any]] = {}  # their out-of-fold outputs, by trial number
        self._run_dir: Optional[RunDirectory] = None  # set by run, which runs once
        self.remote: Optional["RemoteRunner"] = None  # the runner, when trials run elsewhere (run's ``runner``)
        validation_rows = np.concatenate([validation for _, validation in splits.folds])
        self.oof_targets = splits.y[validation_rows]  # the rows of the out-of-fold outputs, in their order
        self.classes = class_labels(splits.task, splits.y)
        # the kept trials the refit reserve was estimated for, and the reserve
        self.reserve: tuple[tuple[int, ...], float] = ((), 0.0)
        self.epoch_cost_ratio = _refit_epoch_cost_ratio(splits)
        self.on_trial: Optional[Callable[[TrialEvent], None]] = None
        self.cancel = threading.Event()
        self.started = 0.0
        self.deadline: Optional[float] = None

    @property
    def run_dir(self) -> RunDirectory:
        """The run directory ``run`` writes (an error before ``run``)."""
        if self._run_dir is None:
            raise RuntimeError("this Study has not run: its run directory is chosen by run")
        return self._run_dir

    @classmethod
    def prepare(cls, config: SearchConfig, *,
                data: Optional[tuple[Sequence[Any], Sequence[Any]]] = None) -> "Study":
        """Check ``config`` and build everything it names; ``data`` is inline ``(X, y)`` instead of
        loading ``config.dataset_id``. Raises ``FieldError`` naming the config field at fault
        (``search_space.activation``, ``elite_size``): after this, only running can fail."""
        config.check()
        if data is None:
            X, y, known_task = data_module.load(config.dataset_id, target=config.target,
                                                max_bytes=config.max_dataset_bytes)
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

    def run(self, run_dir: Union[str, "os.PathLike[str]"], *, resume: bool = False,
            on_trial: Optional[Callable[[TrialEvent], None]] = None,
            cancel: Optional[threading.Event] = None,
            runner: Optional[Callable[[TrialData, threading.Event], "RemoteRunner"]] = None) -> SearchResult:
        """Run the search into ``run_dir``; returns a ``SearchResult``. Runs once per ``Study``.

        With ``resume`` the directory's journal is replayed first (its trials are not trained
        again). ``on_trial(event)`` is called after each trial with a ``TrialEvent`` (the trial's
        journal record and the search's progress). ``cancel``: a ``threading.Event``. ``runner``: where
        trials run instead of this machine's processes, a function ``(trial_data, cancel)`` returning
        a runner that also says how many trials it runs at once (``cerebros.remote.RemoteRunner``).
        Raises ``FieldError`` (``run_dir``) for a
        directory it cannot use, ``SearchStopped`` when no trial finished, and
        ``artifacts.StorageError`` when writing the run directory fails: the search stops at
        once, the trials it cut short are not journaled, and a resume continues it.
        """
        if self._run_dir is not None:
            raise RuntimeError("this Study has run already: prepare a new one (Study.prepare) for another run")
        self._run_dir = _open_run_directory(run_dir)
        try:
            return self._run(resume, on_trial, cancel, runner)
        finally:
            self.run_dir.unlock()

    def _run(self, resume: bool, on_trial: Optional[Callable[[TrialEvent], None]],
             cancel: Optional[threading.Event],
             make_runner: Optional[Callable[[TrialData, threading.Event], "RemoteRunner"]]) -> SearchResult:
        self.on_trial = on_trial
        self.cancel = cancel or threading.Event()
        self.started = started = time.monotonic()
        budget = self.config.max_time_seconds
        self.deadline = None if budget is None else started + budget
        self._start_or_resume(resume)
        runner: Runner
        if make_runner is None:
            runner = (InlineRunner if self.config.n_jobs == 1 else PoolRunner)(
                self._processes(), self._trial_data(), self.cancel)
        else:
            runner = self.remote = make_runner(self._trial_data(), self.cancel)
        try:
            return self._finish(self._loop(runner), runner)
        finally:
            runner.close()

    def _trial_data(self) -> TrialData:
        s = self.splits
        return (s.X, s.y, s.folds, s.task, self.objective.name)

    # ---- the loop ----------------------------------------------------------------------

    def _loop(self, runner: Runner) -> str:
        running: dict[futures.Future[Any], strategies.Trial] = {}
        finished: dict[int, tuple[strategies.Trial, tuple[TrialOutcome, Optional[NDArray[Any]]]]] = {}
        next_to_tell = len(self.records)
        asked = len(self.records)
        stopped_reason = None
        while True:
            if stopped_reason is None:
                stopped_reason = self._interruption()
                if stopped_reason:  # stop the running trials: a trial started before the refit
                    runner.stop()   # reserve grew would otherwise run on to its own, later deadline
            if stopped_reason is None:
                while len(running) < self._processes() and not self._trials_spent(asked):
                    trial = self.strategy.ask()
                    if trial is None:
                        break
                    running[runner.submit(train_trial, self._payload(trial))] = trial
                    asked += 1
            if not running:
                break
            done, _ = futures.wait(running, timeout=_POLL_SECONDS, return_when=futures.FIRST_COMPLETED)
            for future in done:
                trial = running.pop(future)
                finished[trial.number] = (trial, result_or_failure(future, lambda error: failed_trial(error, 0.0)))
            while next_to_tell in finished and not self._stalled():
                self._tell(*finished.pop(next_to_tell))
                next_to_tell += 1
        for number in finished:  # trials after the one that stalled the search: a one-process search never ran them
            self.run_dir.discard(number)
        return stopped_reason or ("max_trials" if self._trials_spent(asked) else "exhausted")

    def _trials_spent(self, asked: int) -> bool:
        """Whether ``asked`` trials use up ``max_trials`` (None: no cap, the deadline ends the search)."""
        return self.config.max_trials is not None and asked >= self.config.max_trials

    def _processes(self) -> int:
        if self.remote is not None:
            return self.remote.processes()
        cores = available_cores()
        return cores if self.config.n_jobs == -1 else min(self.config.n_jobs, cores)

    def _interruption(self) -> Optional[str]:
        if self.cancel.is_set():
            return "cancelled"
        search_deadline = self._search_deadline()
        if search_deadline is not None and time.monotonic() >= search_deadline:
            return "max_time"
        if self._stalled():
            return "no_improvement"
        return None

    def _stalled(self) -> bool:
        """Whether the last ``max_trials_without_improvement`` trials told all failed to improve."""
        patience = self.config.max_trials_without_improvement
        return patience is not None and len(self.records) - 1 - self.last_improvement[0] >= patience

    def _search_deadline(self) -> Optional[float]:
        """When the search must stop: the run's deadline, less the refits' reserve."""
        if self.deadline is None or not self.config.refit:
            return self.deadline
        return self.deadline - self._refit_reserve()

    def _refit_reserve(self) -> float:
        """The seconds to leave the refits (``_reserve``) of the ensemble selected from the kept
        trials now, each member's time estimated by ``_refit_seconds``. Estimated again
        whenever the kept trials change."""
        kept = tuple(record.number for record in self.kept)
        if kept != self.reserve[0]:
            candidates = self._candidates()
            weights = selection.select([self.outputs[r.number] for r in candidates], self.oof_targets,
                                       self.objective, self.classes) if candidates else np.zeros(0, dtype=int)
            seconds = [_refit_seconds(record, self.epoch_cost_ratio)
                       for record, weight in zip(candidates, weights) if weight]
            budget = self.config.max_time_seconds or 0.0  # set: there is a deadline
            self.reserve = (kept, _reserve(seconds, self._processes(), REFIT_MAX_SHARE * budget))
        return self.reserve[1]

    def _payload(self, trial: strategies.Trial) -> dict[str, Any]:
        return {
            "number": trial.number,
            "candidate": trial.candidate.to_dict(),
            "epochs": trial.epochs,
            "seed": trial_seed(self.config.seed, trial.number),
            "model_paths": [self.run_dir.trial_model(trial.number, fold)
                            for fold in range(len(self.splits.folds))],
            "run_deadline": _wall_clock(self._search_deadline()),
            "trial_seconds": self.config.max_trial_seconds,
        }

    def _tell(self, trial: strategies.Trial, outcome: tuple[TrialOutcome, Optional[NDArray[Any]]]) -> None:
        trained, outputs = outcome
        record = TrialRecord.of(trained, number=trial.number, generation=trial.generation, bracket=trial.bracket,
                                epochs=trial.epochs, seed=trial_seed(self.config.seed, trial.number),
                                candidate=trial.candidate.to_dict())
        self._keep_if_among_best(record, outputs)
        self._accept(trial, record)
        self.run_dir.append_journal(record.to_json())
        if self.on_trial is not None:
            self.on_trial(self._event(record))

    def _accept(self, trial: strategies.Trial, record: TrialRecord) -> None:
        fitness = self.objective.fitness(record.value)
        if self._improves(record):
            self.best = record
        if fitness > self.last_improvement[1] + self.config.min_improvement:
            self.last_improvement = (record.number, fitness)
        self.strategy.tell(trial, fitness)
        self.records.append(record)

    def _keep_if_among_best(self, record: TrialRecord, outputs: Optional[NDArray[Any]]) -> None:
        """Keep the trial's networks and out-of-fold outputs while it ranks among the best
        ``ensemble_size`` trials; delete them (or a trial it displaces) otherwise."""
        number = record.number
        if record.value is None or outputs is None:
            self.run_dir.discard(number)
            return
        self.run_dir.save_outputs(number, outputs)
        self.outputs[number] = outputs
        self.kept = sorted(self.kept + [record], key=self._rank, reverse=True)
        for dropped in self.kept[self._capacity():]:
            self.run_dir.discard(dropped.number)
            del self.outputs[dropped.number]
        del self.kept[self._capacity():]

    def _capacity(self) -> int:
        return max(1, self.config.ensemble_size)

    def _improves(self, record: TrialRecord) -> bool:
        if record.value is None:
            return False
        return self.best is None or self._rank(record) > self._rank(self.best)

    def _rank(self, record: TrialRecord) -> tuple[bool, float, float, int]:
        """Higher is better: a trial not cut short by the deadline or a cancellation; then the
        objective; on a tie (common for accuracy on small validation sets) the lower validation
        loss, i.e. the more confident model; then the earlier trial."""
        loss = record.val_loss
        return (_not_interrupted(record), self.objective.fitness(record.value),
                -math.inf if loss is None else -loss, -record.number)

    def _event(self, record: TrialRecord) -> TrialEvent:
        return TrialEvent(record=record, completed=len(self.records), max_trials=self.config.max_trials,
                          best_value=None if self.best is None else self.best.value,
                          best_trial=None if self.best is None else self.best.number,
                          elapsed_seconds=round(time.monotonic() - self.started, 3))

    # ---- start, resume, finish ------------------------------------------------------------

    def _start_or_resume(self, resume: bool) -> None:
        identity = self._identity()
        try:
            lines = self.run_dir.read_journal()
        except ValueError as exc:
            raise FieldError("run_dir", str(exc)) from None
        if lines and not resume:
            raise FieldError("run_dir", f"{self.run_dir.path} already holds a journal; resume it or use "
                                        "another directory")
        records = [TrialRecord.from_json(line, f"{self.run_dir.path} journal line {number}")
                   for number, line in enumerate(lines, start=1)]
        records = _before_first_interrupted(sorted(records, key=lambda r: r.number))
        if records:
            saved = self.run_dir.read_json(CONFIG)
            differing = sorted(name for name in _IDENTITY if saved.get(name) != identity[name])
            if differing:
                raise FieldError("run_dir", f"the journal in {self.run_dir.path} was written with other "
                                            f"settings ({', '.join(differing)} differ)")
        self.run_dir.write_json(CONFIG, identity)
        # drops a line a crash cut short, and the dropped trials
        self.run_dir.write_journal([record.to_json() for record in records])
        for record in records:
            trial = self.strategy.ask()
            if trial is None or trial.number != record.number or \
                    trial.candidate.key() != Candidate.from_dict(record.candidate).key():
                raise FieldError("run_dir", f"journal trial {record.number} is not what this search "
                                            "proposes at that point; the journal does not match")
            self._accept(trial, record)
        self._keep_saved_candidates(records)

    def _identity(self) -> dict[str, Any]:
        """The settings that define the search, in canonical form: a resumed run must agree on
        them, however the caller wrote them (a tuple or a list, a short form or a long one)."""
        identity = {name: getattr(self.config, name) for name in _IDENTITY}
        identity.update(search_space=self.strategy.space.to_dict(), strategy_params=self.strategy.params(),
                        objective=self.objective.name, task=self.splits.task)
        return identity

    def _keep_saved_candidates(self, records: list[TrialRecord]) -> None:
        """The best ``ensemble_size`` journaled trials whose networks and outputs are still in the
        run directory become the ensemble's candidates; every other trial file goes."""
        folds = len(self.splits.folds)
        saved = [r for r in records if r.value is not None and self.run_dir.has_trial(r.number, folds)]
        self.kept = sorted(saved, key=self._rank, reverse=True)[:self._capacity()]
        self.outputs = {r.number: self.run_dir.load_outputs(r.number) for r in self.kept}
        self.run_dir.discard_all_but(self.outputs)

    def _no_result_kind(self, stopped_reason: str) -> str:
        if stopped_reason == "cancelled":
            return "cancelled"
        return "trials_failed" if self.records and stopped_reason != "max_time" else "budget_exhausted"

    def _no_result_message(self, stopped_reason: str) -> str:
        if stopped_reason == "cancelled":
            return "the search was cancelled before any trial finished"
        if stopped_reason == "max_time":
            return (f"max_time_seconds: the {self.config.max_time_seconds} s budget ran out before any "
                    "trial finished")
        if self.config.max_trials == 0:
            return "max_trials: a budget of 0 trials runs nothing"
        return f"every one of the {len(self.records)} trials failed (see the journal for their errors)"

    def _finish(self, stopped_reason: str, runner: Runner) -> SearchResult:
        if self.best is None:
            raise SearchStopped(self._no_result_message(stopped_reason), self._no_result_kind(stopped_reason))
        candidates, ensemble, check, validation = self._select_ensemble()
        refits = self._refit(ensemble, runner) if self.config.refit and stopped_reason != "cancelled" else []
        self.run_dir.save_model([(member["trial"], member["weight"]) for member in ensemble], len(self.splits.folds),
                                {r["trial"]: r["networks"] for r in refits if r["status"] == "completed"})
        # the test split is scored once, by the saved model as reloaded, so it is what a caller gets;
        # with test_size 0 there is none, and the cross-validated metrics are all there is
        test = None
        if len(self.splits.y_test):
            test = objectives.evaluate(Ensemble.load(*saved_model(self.run_dir.path)), self.splits.X_test,
                                       self.splits.y_test)
        summary: dict[str, Any] = {
            "config": asdict(self.config), "strategy_params": self.strategy.params(), "task": self.splits.task,
            "objective": self.objective.name, "direction": self.objective.direction,
            "completed_trials": len(self.records), "best_trial": self.best.to_json(),
            "ensemble": {"members": ensemble, "candidates": [r.number for r in candidates],
                         "selection_check": check, "refit": refits},
            "validation_metrics_are": "out-of-fold metrics of the saved model: the selected ensemble (chosen "
                                      "on those same rows, so optimistic; ensemble.selection_check has "
                                      "the cross-validated scores) or the best trial alone if the check "
                                      "kept it; best_trial.metrics are the best single trial's",
            "validation_metrics": validation, "test_metrics": test,
            "population_history": [_in_metric_units(entry, self.objective)
                                   for entry in self.strategy.population_history],
            "stopped_reason": stopped_reason, "warnings": self._warnings(stopped_reason, refits),
            "duration_seconds": time.monotonic() - self.started, "split_sizes": self.splits.sizes(),
        }
        self.run_dir.write_json(SUMMARY, summary)
        return SearchResult(
            config=self.config, task=self.splits.task, objective=self.objective, records=self.records,
            best=self.best, validation_metrics=validation, test_metrics=test, ensemble=ensemble,
            population_history=summary["population_history"], stopped_reason=stopped_reason,
            warnings=summary["warnings"], duration_seconds=summary["duration_seconds"], run_dir=self.run_dir.path,
            artifacts=self.run_dir.artifacts(), split_sizes=summary["split_sizes"],
            strategy_params=summary["strategy_params"], refit=refits)

    def _select_ensemble(self) -> tuple[list[TrialRecord], list[dict[str, int]], dict[str, Any], dict[str, float]]:
        """Select the ensemble from the kept trials (interrupted ones only if nothing else is
        left). Returns the candidates, the members ``[{"trial", "weight"}]``, the selection
        check's report (``selection.select_checked``) and the ensemble's out-of-fold metrics."""
        if not self.kept:
            raise FieldError("run_dir", f"no trial's networks are left in {self.run_dir.path}; "
                                        "run the search again in a new directory")
        candidates = self._candidates()
        outputs = [self.outputs[record.number] for record in candidates]
        weights, check = selection.select_checked(outputs, self.oof_targets, self.objective, self.classes,
                                                  seed=self.config.seed)
        ensemble = [{"trial": record.number, "weight": int(weight)}
                    for record, weight in zip(candidates, weights) if weight]
        validation = objectives.score_outputs(self.splits.task, self.oof_targets, selection.average(outputs, weights),
                                              self.classes)
        return candidates, ensemble, check, validation

    def _candidates(self) -> list[TrialRecord]:
        """The ensemble's candidates: the kept trials not cut short, or the best one if all were."""
        return [r for r in self.kept if _not_interrupted(r)] or self.kept[:1]

    def _refit(self, ensemble: list[dict[str, int]], runner: Runner) -> list[dict[str, Any]]:
        """Train each member's refit networks on all search rows, in the trial processes, by the
        run's deadline. Returns one report per member: trial, epochs, networks, status
        ("completed", or why its networks are not used: "interrupted", "timeout", "failed: ..."),
        estimated_seconds (``_refit_seconds``) and duration_seconds (None if its process died)."""
        records = {record.number: record for record in self.kept}
        folds = len(self.splits.folds)
        runner.resume()  # the end of the search stopped the trial processes' work
        jobs = {}
        for member in ensemble:
            record = records[member["trial"]]
            payload = {"candidate": record.candidate, "epochs": _refit_epochs(record),
                       "seed": record.seed + folds,  # after the fold networks' seeds
                       "model_paths": [self.run_dir.refit_model(record.number, i) for i in range(folds)],
                       "run_deadline": _wall_clock(self.deadline), "trial_seconds": self.config.max_trial_seconds}
            jobs[runner.submit(refit_trial, payload)] = {
                "trial": record.number, "epochs": payload["epochs"], "networks": folds,
                "estimated_seconds": round(_refit_seconds(record, self.epoch_cost_ratio), 3)}
        pending = set(jobs)
        while pending:
            _, pending = futures.wait(pending, timeout=_POLL_SECONDS)
            if self.cancel.is_set():
                runner.stop()
        reports = []
        for future, report in jobs.items():
            outcome: dict[str, Any] = result_or_failure(future, _failed_refit)
            reports.append({**report, **outcome})
        return reports

    def _warnings(self, stopped_reason: str, refits: list[dict[str, Any]]) -> list[str]:
        warnings = self.strategy.warnings(_epoch_limit(self.splits, self.strategy.space.patience))
        if self.remote is None and self._processes() < self.config.n_jobs:  # remote slots are not cores
            warnings.append(f"n_jobs: {self.config.n_jobs} asked, but {available_cores()} core(s) are available; "
                            f"{self._processes()} trial processes ran")
        in_flight = self.strategy.params().get("in_flight")
        if in_flight is not None and in_flight < self._processes():
            warnings.append(f"in_flight: the {self.strategy.name} strategy proposes at most {in_flight} trial(s) "
                            f"ahead of their predecessors' results, so at most {in_flight} of the "
                            f"{self._processes()} trial processes were busy at once")
        if self.best is not None and self.best.status is TrialState.INTERRUPTED:
            warnings.append(f"every trial was cut short (stopped_reason {stopped_reason}): the result is the "
                            "best of those interrupted trials, trained for part of their epochs")
        if stopped_reason == "cancelled":
            warnings.append(f"cancelled after {len(self.records)} trials; the result is the best so far")
        failed = [r.number for r in self.records if r.status is TrialState.FAILED]
        if failed:
            warnings.append(f"{len(failed)} trial(s) failed: {failed[:10]} (errors in the journal)")
        timed_out = [r.number for r in self.records if r.status is TrialState.TIMEOUT]
        if timed_out:
            warnings.append(f"max_trial_seconds: {len(timed_out)} trial(s) were stopped at the per-trial "
                            f"limit of {self.config.max_trial_seconds} s")
        not_refit = [f"#{r['trial']} ({r['status']})" for r in refits if r["status"] != TrialState.COMPLETED.value]
        if not_refit:
            warnings.append(f"refit: {len(not_refit)} of {len(refits)} selected trial(s) have no networks trained "
                            f"on all search rows and keep their fold networks alone: {', '.join(not_refit)}")
        return warnings


def _open_run_directory(path: Union[str, "os.PathLike[str]"]) -> RunDirectory:
    """The run directory at ``path``, created or checked (``RunDirectory.claim``) and locked for
    this search."""
    run_dir = RunDirectory(path)
    run_dir.claim()
    try:
        run_dir.lock()
    except BlockingIOError:
        raise FieldError("run_dir", f"another search is running in {run_dir.path}") from None
    return run_dir


def _before_first_interrupted(records: list[TrialRecord]) -> list[TrialRecord]:
    """The journal up to its first trial that a stop (deadline, cancellation) cut short: that
    trial and every later one are trained again on resume, as an uninterrupted run trains them."""
    for index, record in enumerate(records):
        if record.status is TrialState.INTERRUPTED:
            return records[:index]
    return records


def trial_seed(seed: int, number: int) -> int:
    """The network seed of trial ``number``: a function of the search seed and the number only."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def _in_metric_units(entry: dict[str, Any], objective: objectives.Objective) -> dict[str, Any]:
    converted = dict(entry)
    for name in ("best_fitness", "mean_fitness"):
        if entry[name] is not None:
            converted[name] = objective.from_fitness(entry[name])
    return converted


def _not_interrupted(record: TrialRecord) -> bool:
    return record.status is not TrialState.INTERRUPTED


def _wall_clock(deadline: Optional[float]) -> Optional[float]:
    """A ``time.monotonic()`` deadline (or None) as a ``time.time()`` one, for a worker process:
    it does not share this process's monotonic clock."""
    return None if deadline is None else time.time() + deadline - time.monotonic()


def _failed_refit(error: str) -> dict[str, Any]:
    """A refit's report fields when its worker process died."""
    return {"status": f"failed: {error}", "duration_seconds": None}


def _refit_epochs(record: TrialRecord) -> int:
    """How long a trial's refit networks train: the median of its fold networks' best epochs."""
    return max(1, int(round(float(np.median(record.best_epoch)))))


def _refit_epoch_cost_ratio(splits: data_module.Splits) -> float:
    """A refit epoch's cost over a fold network's. A fold network's epoch trains on its fit rows
    and evaluates its early-stopping rows; a refit network's trains on all search rows and
    evaluates them all (its training loss decides its best epoch). Evaluating a row is one
    forward pass, training it about ``_TRAINING_PASSES`` (the backward pass has two products)."""
    fit, stop = _network_rows(splits)
    rows = len(splits.y)
    return float((_TRAINING_PASSES + 1) * rows / (_TRAINING_PASSES * np.mean(fit) + np.mean(stop)))


def _network_rows(splits: data_module.Splits) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """How many rows each fold network fits, and early-stops on (the sizes do not depend on the
    trial's seed)."""
    fit, stop = zip(*(map(len, data_module.early_stopping_split(train, splits.y, splits.task, seed=0))
                      for train, _ in splits.folds))
    return fit, stop


def _epoch_limit(splits: data_module.Splits, patience: int) -> int:
    """The most epochs any fold network of these splits trains for (``trials.epoch_bound``)."""
    return max(epoch_bound(patience, rows) for rows in _network_rows(splits)[0])


def _refit_seconds(record: TrialRecord, epoch_cost_ratio: float) -> float:
    """How long a trial's refit should take: as many networks as it has folds, each training for
    its refit epochs at the seconds per epoch its fold networks took, times ``epoch_cost_ratio``
    (``_refit_epoch_cost_ratio``)."""
    seconds_per_epoch = record.duration_seconds / max(1, record.epochs_trained)
    return len(record.best_epoch) * _refit_epochs(record) * seconds_per_epoch * epoch_cost_ratio


def _reserve(seconds: Sequence[float], processes: int, limit: float) -> float:
    """``REFIT_MARGIN`` times the time ``processes`` workers take to refit the ensemble's members
    (estimated ``seconds`` each, in the order they are submitted), for as many of the first
    members as fit within ``limit``: a refit that would not finish anyway is given no time
    taken from the search."""
    reserve = 0.0
    for members in range(1, len(seconds) + 1):
        needed = REFIT_MARGIN * _makespan(seconds[:members], processes)
        if needed > limit:
            break
        reserve = needed
    return reserve


def _makespan(seconds: Sequence[float], processes: int) -> float:
    """How long ``processes`` workers take to run jobs of these ``seconds``, each job going in
    order to the first worker free (as the trial processes take them)."""
    free_at = [0.0] * processes
    for job in seconds:
        free_at[free_at.index(min(free_at))] += job
    return max(free_at)
