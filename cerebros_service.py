"""The entry point the BEAM calls: ``run_nas(spec, opts)`` and its companions ``cancel_run``,
``run_status`` and ``predict``.

Every known field is coerced by its meaning with ``codec.coerce``, since keys and text may
arrive as ``str``, bytes, atoms or charlists. Nothing here raises: a failure is RETURNED as
the contract's failure shape (docs/nas-contract.md). The options and their defaults are the
table in README.md; the result, progress events and run states are in docs/engine.md.
"""
import datetime
import os
import re
import tempfile
import threading
import time
import uuid
import zipfile
from typing import Any, Callable, Optional, TypedDict, Union

import numpy as np

import cerebros_cluster
from cerebros import objectives
from cerebros.artifacts import CONFIG, JOURNAL, SUMMARY, Ensemble, RunDirectory, StorageError, load_model
from cerebros.data import names_a_dataset
from cerebros.records import TrialEvent, TrialRecord
from cerebros.space import field_kind
from cerebros.strategies import default_elite_size
from cerebros.study import SearchConfig, SearchResult, SearchStopped, Study
from codec import Atom, FieldError
from codec.coerce import as_bool, as_float, as_float_list, as_int, as_int_list, as_str_keys, as_text
from codec.tensor import from_term, is_tensor

RUNS_DIR_ENV = "CEREBROS_RUNS_DIR"
MAX_PATH_BYTES = 4096  # opts.run_dir (Linux's PATH_MAX)
MAX_PREDICT_ROWS = 1_000_000  # predict's X
PROGRESS_TAG = Atom("nas_progress")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_KEPT_RUNS = 200  # finished runs remembered for run_status and predict
# The older names of a trial's fields that callers read, each beside the journal's name it
# stands for (docs/engine.md#one-shape-per-trial): in progress messages, and in a result's trials.
_PROGRESS_ALIASES = {"trial": "number", "metric": "value", "best_metric": "best_value"}
_TRIAL_ALIASES = {"trial_id": "number", "metric": "value"}  # and duration_ms, duration_seconds in ms

_DEFAULT_MAX_TRIALS = 10  # when neither max_trials nor max_time_seconds is given
_GA_DEFAULTS = {"population_size": 20, "mutation_rate": 0.1, "crossover_rate": 0.7, "elite_size": None, "tau": 1.0}
# every strategy's opts.parameters, with their types (cerebros.strategies checks which strategy takes which)
_PARAMETERS = {"mutation_rate": as_float, "crossover_rate": as_float, "elite_size": as_int, "tau": as_float,
               "n_configs": as_int, "min_epochs": as_int, "max_epochs": as_int, "eta": as_int,
               "n_startup_trials": as_int, "gamma": as_float, "n_ei_candidates": as_int, "in_flight": as_int}
_SPEC_FIELDS = {"dataset_id", "dataset", "search_space", "objective", "data", "target", "task"}
_OPTS_FIELDS = {"run_id", "pulse_id", "budget", "parameters", "tau", "strategy", "seed", "split_seed",
                "test_size", "validation_size", "folds", "n_jobs", "ensemble_size", "refit", "run_dir",
                "resume", "progress_to", "max_dataset_bytes", "cluster"}
_BUDGET_FIELDS = {"max_trials", "trials", "max_time_seconds", "max_trial_seconds", "max_trials_without_improvement",
                  "min_improvement", "population_size"}
# The request field each engine field comes from (SearchConfig's names, the strategies'
# parameters, data's "y"); _parse adds the aliases a caller used.
_REQUEST_FIELDS = {
    **{name: f"spec.{name}" for name in ("dataset_id", "search_space", "objective", "data", "target", "task")},
    **{name: f"opts.{name}" for name in ("strategy", "seed", "split_seed", "test_size", "validation_size",
                                         "folds", "n_jobs", "ensemble_size", "refit", "run_dir",
                                         "max_dataset_bytes")},
    **{name: f"opts.budget.{name}" for name in _BUDGET_FIELDS - {"trials"}},
    **{name: f"opts.parameters.{name}" for name in _PARAMETERS},
}


# ---- result shapes (docs/nas-contract.md) --------------------------------------------------

class FailureMetadata(TypedDict):
    error_type: str  # unknown_dataset, invalid_field, budget_exhausted, ... (docs/engine.md)
    field: Optional[str]  # the request field at fault, as the caller wrote it
    dataset_id: Optional[str]
    errno: Optional[str]  # storage_error: the OS error's name, e.g. ENOSPC
    timestamp: str


class Failure(TypedDict):
    """What every call returns when it fails."""

    status: str  # "failed"
    error: str
    run_id: Optional[str]
    pulse_id: Any  # echoed as the caller sent it
    completed_trials: int
    warnings: list[str]
    metadata: FailureMetadata


class Success(TypedDict):
    """``run_nas``'s success. ``trials`` holds each trial's journal fields and their aliases
    (``_trial_summary``); both caller versions' fields are here (docs/nas-contract.md)."""

    status: str  # "success"
    run_id: str
    pulse_id: Any
    best_model: dict[str, Any]
    best_architecture: dict[str, Any]
    best_metric: Optional[float]
    test_metric: Optional[float]
    completed_trials: int
    best_trial_id: int
    population_history: list[dict[str, Any]]
    metrics: dict[str, Any]
    trials: list[dict[str, Any]]
    artifacts: list[str]
    artifact_refs: list[dict[str, str]]
    duration_ms: int
    warnings: list[str]
    metadata: dict[str, Any]


class CancelAnswer(TypedDict):
    run_id: Optional[str]
    status: str  # cancelling, not_running or unknown


class RunStatus(TypedDict):
    run_id: Optional[str]
    status: str  # running, success, failed, cancelled, incomplete, unreadable or unknown
    completed_trials: int
    best_metric: Optional[float]
    elapsed_seconds: Optional[float]
    run_dir: Optional[str]


class Prediction(TypedDict):
    """``predict``'s success: ``run_id`` the run whose model it is when the reference named a
    run (None for a path), ``model_path`` where that model is."""

    status: str  # "success"
    run_id: Optional[str]
    model_path: str
    predictions: list[Any]
    probabilities: Optional[list[list[float]]]
    classes: Optional[list[Any]]


class _Request(TypedDict, total=False):
    """A request as ``_parse`` fills it: enough for a failure as soon as it has ``run_id``."""

    run_id: Optional[str]
    pulse_id: Any
    dataset_id: Optional[str]
    warnings: list[str]
    fields: dict[str, str]
    config: SearchConfig
    data: Optional[tuple[Any, Any]]
    ga_params: dict[str, Any]
    run_dir: str
    resume: bool
    progress_to: Any
    cluster: Optional[str]


class _Run:
    """What ``run_status``, ``cancel_run`` and ``predict`` know about a run."""

    def __init__(self, run_id: str, run_dir: str) -> None:
        self.run_id = run_id
        self.run_dir = run_dir
        self.cancel = threading.Event()
        self.state = "running"
        self.completed_trials = 0
        self.best_metric: Optional[float] = None
        self.started = time.monotonic()
        self.finished: Optional[float] = None


_runs: dict[str, _Run] = {}
_runs_lock = threading.Lock()


# ---- run_nas -------------------------------------------------------------------------------

def run_nas(spec: Any, opts: Any = None) -> Union[Success, Failure]:
    """Run a neural architecture search; returns the contract's success or failure map."""
    started = time.monotonic()
    request: _Request = {"run_id": None, "pulse_id": None, "dataset_id": None, "warnings": [],
                         "fields": _REQUEST_FIELDS}
    run = None
    try:
        run = _register(_parse(spec, {} if opts is None else opts, request), request["run_dir"])
        study = Study.prepare(request["config"], data=request["data"])
    except FieldError as exc:
        exc = _as_written(exc, request["fields"])
        return _finish(run, _failure(request, exc, _error_type(exc, "unknown_dataset"), exc.field))
    except Exception as exc:
        return _finish(run, _failure(request, exc, "internal_error"))
    on_trial = _progress_callback(request, run, study.objective)
    try:
        runner = None if request["cluster"] is None else cerebros_cluster.runner(request["cluster"], request["warnings"])
        result = study.run(request["run_dir"], resume=request["resume"], on_trial=on_trial, cancel=run.cancel,
                           runner=runner)
        return _finish(run, _success(run, request, result, time.monotonic() - started))
    except FieldError as exc:  # the run directory: not one, held by another search, another search's journal
        exc = _as_written(exc, request["fields"])
        return _finish(run, _failure(request, exc, _error_type(exc, "unknown_dataset"), exc.field,
                                     completed=len(study.records)))
    except StorageError as exc:  # the disk, not the request: what was written stays, and resume continues it
        return _finish(run, _failure(request, exc, "storage_error", "opts.run_dir", completed=len(study.records)))
    except SearchStopped as exc:
        return _finish(run, _failure(request, exc, exc.kind, completed=len(study.records)))
    except Exception as exc:
        return _finish(run, _failure(request, exc, "internal_error", completed=len(study.records)))
    except BaseException:
        # the caller cancelled the call itself (the port worker raises JobCancelled in this
        # thread): the cancellation goes on up, and the run is over
        _close(run, "cancelled", len(study.records))
        raise


def _parse(spec: Any, opts: Any, parsed: _Request) -> str:
    """Coerce and check the request's fields into ``parsed`` (config, data, run_id, run_dir, ...),
    filling it as it goes so that a failure can still report the run_id and dataset; ``fields``
    is where each engine field came from, aliases included, for naming errors. Returns the run id."""
    warnings = parsed["warnings"]
    fields = parsed["fields"] = dict(_REQUEST_FIELDS)
    spec = _fields(spec, "spec", _SPEC_FIELDS)
    opts = _fields(opts, "opts", _OPTS_FIELDS)
    parsed["pulse_id"] = _pulse_id(opts.get("pulse_id"))
    run_id: Optional[str] = _optional(opts, "run_id", as_text, "opts")
    if run_id is None:
        run_id = "nas-" + uuid.uuid4().hex[:12]
    elif not _RUN_ID.fullmatch(run_id):
        raise FieldError("opts.run_id", f"use letters, digits, '_', '.' and '-' (at most 128, not starting "
                                        f"with a dot or dash), got {run_id!r}")
    parsed["run_id"] = run_id

    dataset_id = _optional(spec, "dataset_id", as_text, "spec")
    alias = _optional(spec, "dataset", as_text, "spec")
    if dataset_id is not None and alias is not None and alias != dataset_id:
        raise FieldError("spec.dataset_id", f"{dataset_id!r} and spec.dataset {alias!r} disagree")
    if dataset_id is None and alias is not None:
        dataset_id, fields["dataset_id"] = alias, "spec.dataset"
    data = _inline_data(spec.get("data"))
    if data is not None and dataset_id is not None and names_a_dataset(dataset_id):
        raise FieldError(fields["dataset_id"], f"{dataset_id!r} names a dataset and spec.data gives another; "
                                               "send one (dataset_id may name the inline data, but not as a "
                                               "dataset or a file)")
    if dataset_id is None:
        if data is None:
            raise FieldError("spec.dataset_id", "required (a dataset name, a .csv/.npz path, or a name for "
                                                "inline data given in spec.data)")
        dataset_id = "inline"
    fields["y"] = "spec.data.y" if data is not None else fields["dataset_id"]
    parsed["dataset_id"] = dataset_id
    parsed["data"] = data

    budget = _fields(opts.get("budget") or {}, "opts.budget", _BUDGET_FIELDS)
    parameters = _fields(opts.get("parameters") or {}, "opts.parameters", set(_PARAMETERS))
    max_trials = _optional(budget, "max_trials", as_int, "opts.budget")
    trials = _optional(budget, "trials", as_int, "opts.budget")
    if max_trials is not None and trials is not None and max_trials != trials:
        raise FieldError("opts.budget.max_trials", f"{max_trials} and opts.budget.trials {trials} disagree")
    if max_trials is None and trials is not None:
        max_trials, fields["max_trials"] = trials, "opts.budget.trials"
    max_time_seconds = _optional(budget, "max_time_seconds", as_float, "opts.budget")
    if max_trials is None and max_time_seconds is None:
        max_trials = _DEFAULT_MAX_TRIALS

    strategy = _optional(opts, "strategy", as_text, "opts") or "evolution"
    parsed["ga_params"] = ga = _ga_params(budget, parameters, opts, fields)
    strategy_params = _strategy_params(strategy, budget, parameters, opts, ga)
    if strategy == "evolution" and max_trials is not None and ga["population_size"] >= max_trials:
        warnings.append(f"opts.budget: max_trials {max_trials} does not exceed population_size "
                        f"{ga['population_size']}, so evolution only samples its first, random generation")

    def option(name: str, coerce: Callable[..., Any], default: Any) -> Any:
        value = _optional(opts, name, coerce, "opts")
        return default if value is None else value

    parsed["config"] = SearchConfig(
        dataset_id=dataset_id,
        objective=_optional(spec, "objective", as_text, "spec"),
        strategy=strategy,
        strategy_params=strategy_params,
        search_space=_search_space(spec.get("search_space")),
        seed=option("seed", as_int, 0),
        split_seed=option("split_seed", as_int, 0),
        test_size=option("test_size", as_float, 0.25),
        validation_size=option("validation_size", as_float, 0.2),
        folds=option("folds", as_int, SearchConfig.folds),
        target=_optional(spec, "target", as_text, "spec"),
        task=_optional(spec, "task", as_text, "spec"),
        max_trials=max_trials,
        max_time_seconds=max_time_seconds,
        max_trial_seconds=_optional(budget, "max_trial_seconds", as_float, "opts.budget"),
        max_trials_without_improvement=_optional(budget, "max_trials_without_improvement", as_int, "opts.budget"),
        min_improvement=_optional(budget, "min_improvement", as_float, "opts.budget") or 0.0,
        n_jobs=option("n_jobs", as_int, 1),
        ensemble_size=option("ensemble_size", as_int, SearchConfig.ensemble_size),
        refit=option("refit", as_bool, SearchConfig.refit),
        max_dataset_bytes=option("max_dataset_bytes", as_int, SearchConfig.max_dataset_bytes),
    )
    parsed["config"].check()
    parsed["run_dir"] = _run_directory(_optional(opts, "run_dir", as_text, "opts"), run_id)
    parsed["resume"] = bool(_optional(opts, "resume", as_bool, "opts"))
    parsed["cluster"] = _optional(opts, "cluster", as_text, "opts")  # trials on other nodes: cerebros_cluster
    parsed["progress_to"] = opts.get("progress_to")
    if parsed["progress_to"] is not None and not callable(getattr(parsed["progress_to"], "send", None)):
        warnings.append("opts.progress_to has no send method; no progress messages are sent")
        parsed["progress_to"] = None
    return run_id


def _strategy_params(strategy: str, budget: dict[str, Any], parameters: dict[str, Any], opts: dict[str, Any],
                     ga: dict[str, Any]) -> dict[str, Any]:
    """The strategy's parameters: evolution's with their defaults (``ga``), another strategy's as
    given. One the strategy does not take is passed on all the same, for ``cerebros.strategies``
    to refuse, naming it and the strategy's own."""
    given = {name: _optional(parameters, name, _PARAMETERS[name], "opts.parameters") for name in parameters}
    given = {name: value for name, value in given.items() if value is not None}
    if strategy == "evolution":
        return {**given, **ga}
    if budget.get("population_size") is not None:
        given["population_size"] = ga["population_size"]
    if opts.get("tau") is not None:
        given["tau"] = ga["tau"]
    return given


def _run_directory(run_dir: Optional[str], run_id: str) -> str:
    """Where the run goes: ``opts.run_dir`` as given when absolute; when relative, under the runs
    root, which it may not leave (``../``, a symbolic link out); without it, ``<root>/<run_id>``."""
    root = _runs_root()
    if not run_dir:
        return os.path.join(root, run_id)
    if "\0" in run_dir or len(run_dir.encode()) > MAX_PATH_BYTES:
        raise FieldError("opts.run_dir", f"expected a path without NUL bytes, at most {MAX_PATH_BYTES} bytes long, "
                                         f"got {len(run_dir.encode())} bytes")
    if os.path.isabs(run_dir):
        return os.path.normpath(run_dir)
    path = os.path.normpath(os.path.join(root, run_dir))
    real_root = os.path.realpath(root)
    real_path = os.path.realpath(path)
    if real_path == real_root or os.path.commonpath([real_path, real_root]) != real_root:
        raise FieldError("opts.run_dir", f"a relative run_dir is a folder under the runs root {root}; "
                                         f"{run_dir!r} leaves it")
    return path


def _runs_root() -> str:
    """Where runs without an ``opts.run_dir`` go: ``$CEREBROS_RUNS_DIR``, else a temporary folder."""
    return os.environ.get(RUNS_DIR_ENV) or os.path.join(tempfile.gettempdir(), "cerebros-runs")


def _ga_params(budget: dict[str, Any], parameters: dict[str, Any], opts: dict[str, Any],
               fields: dict[str, str]) -> dict[str, Any]:
    """Evolution's parameters, defaults filled in (the result's ``metadata.ga_params``)."""
    tau = _optional(opts, "tau", as_float, "opts")
    tau_parameter = _optional(parameters, "tau", as_float, "opts.parameters")
    if tau is not None and tau_parameter is not None and tau != tau_parameter:
        raise FieldError("opts.tau", f"{tau} and opts.parameters.tau {tau_parameter} disagree")
    if tau is not None:
        fields["tau"] = "opts.tau"
    given = {
        "population_size": _optional(budget, "population_size", as_int, "opts.budget"),
        "mutation_rate": _optional(parameters, "mutation_rate", as_float, "opts.parameters"),
        "crossover_rate": _optional(parameters, "crossover_rate", as_float, "opts.parameters"),
        "elite_size": _optional(parameters, "elite_size", as_int, "opts.parameters"),
        "tau": tau if tau is not None else tau_parameter,
    }
    ga: dict[str, Any] = {name: _GA_DEFAULTS[name] if value is None else value for name, value in given.items()}
    if ga["elite_size"] is None:
        ga["elite_size"] = default_elite_size(ga["population_size"])
    return ga


def _as_written(exc: FieldError, fields: dict[str, str]) -> FieldError:
    """``exc`` naming the request field as the caller wrote it: the engine names its own fields
    (``search_space.activation``, ``elite_size``), ``fields`` says where each came from."""
    head = re.split(r"[.\[]", exc.field, maxsplit=1)[0]
    if head not in fields:  # named by this module already (spec.*, opts.*)
        return exc
    return exc.renamed(fields[head] + exc.field[len(head):])


def _error_type(exc: FieldError, not_found: str) -> str:
    """The contract's ``error_type`` for a ``FieldError``: ``not_found`` (unknown_dataset,
    unknown_run) for a name that finds nothing, else invalid_field."""
    return not_found if exc.kind == "not_found" else "invalid_field"


def _fields(mapping: Any, where: str, known: set[str]) -> dict[str, Any]:
    """``mapping`` with text keys, all of them ``known``."""
    fields = as_str_keys(mapping, field=where)
    for name in fields:
        if name not in known:
            raise FieldError.unknown_key(where, name, known)
    return fields


def _optional(mapping: dict[str, Any], name: str, coerce: Callable[..., Any], where: str) -> Any:
    """``mapping[name]`` coerced, or None when absent or nil."""
    value = mapping.get(name)
    return None if value is None else coerce(value, field=f"{where}.{name}")


def _pulse_id(value: Any) -> Union[None, int, float, str]:
    if value is None or isinstance(value, (int, float)):
        return value
    return as_text(value, field="opts.pulse_id")


def _search_space(value: Any) -> dict[str, Any]:
    """The search space with text keys and each known field's value coerced by what it holds
    (``cerebros.space.field_kind``); unknown fields pass as they came, for the engine to name."""
    if value is None:
        return {}
    space = as_str_keys(value, field="spec.search_space")
    for name, item in space.items():
        kind = field_kind(name)
        coerce = None if kind is None else _SPACE_COERCIONS.get(kind)
        if coerce is not None:
            space[name] = coerce(item, field=f"spec.search_space.{name}")
    return space


def _names(value: Any, *, field: str) -> list[str]:
    """A list of names from one name (text, an atom, a charlist) or a list of them; [] stays empty."""
    if isinstance(value, (list, tuple)) and (not value or not all(isinstance(i, int) for i in value)):
        return [as_text(item, field=f"{field}[{i}]") for i, item in enumerate(value)]
    return [as_text(value, field=field)]


def _int_range(value: Any, *, field: str) -> Union[int, list[int]]:
    """One integer, or a list of them: ``[32, 64]`` stays a list even when a bridge turned the
    charlist into text (``" @"``); text of a decimal number (``"64"``, ``b"64"``) is that number."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [as_int(item, field=f"{field}[{i}]") for i, item in enumerate(list(value))]
    try:
        return as_int(value, field=field)
    except FieldError:
        pair = as_int_list(value, field=field) if isinstance(value, (str, bytes)) else []
    if len(pair) != 2:
        raise FieldError(field, f"expected an integer or a [minimum, maximum] pair, got "
                                   f"{type(value).__name__} {value!r}")
    return pair


def _float_range(value: Any, *, field: str) -> Union[float, list[float]]:
    """One number (or text of one), or a list of numbers."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [as_float(item, field=f"{field}[{i}]") for i, item in enumerate(list(value))]
    return as_float(value, field=field)


_SPACE_COERCIONS: dict[str, Callable[..., Any]] = {"int": as_int, "float": as_float, "text": as_text, "names": _names,
                    "int_range": _int_range, "float_range": _float_range}


def _inline_data(value: Any) -> Optional[tuple[Any, Any]]:
    """``spec.data`` as ``(X, y)``: lists, numpy arrays, or raw tensor terms."""
    if value is None:
        return None
    data = _fields(value, "spec.data", {"X", "y"})
    missing = [name for name in ("X", "y") if data.get(name) is None]
    if missing:
        raise FieldError("spec.data", f"needs X and y (missing {', '.join(missing)})")
    X = from_term(data["X"]) if is_tensor(data["X"]) else data["X"]
    y = from_term(data["y"]) if is_tensor(data["y"]) else data["y"]
    if isinstance(X, (list, tuple)):
        X = [as_float_list(row, field=f"spec.data.X[{i}]") for i, row in enumerate(X)]
    if isinstance(y, (list, tuple)):
        if y and all(isinstance(v, (list, tuple)) and len(v) == 1 for v in y):
            y = [v[0] for v in y]  # a column: [[0], [1], ...]
        y = [_label(v, field=f"spec.data.y[{i}]") for i, v in enumerate(y)]
    return X, y


def _label(value: Any, *, field: str) -> Union[int, float, str, list[Any]]:
    """A target as it came when it is a number or a bool, a row of numbers as a list (for the
    engine to refuse), else text: a binary, an atom, or a charlist (``'cat'`` is ``[99, 97, 116]``)."""
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, (list, tuple)) and any(isinstance(v, float) for v in value):
        return list(value)
    return as_text(value, field=field)


# ---- results -------------------------------------------------------------------------------

def _success(run: _Run, request: _Request, result: SearchResult, duration: float) -> Success:
    best = result.best
    objective = result.objective
    model = {**best.candidate, "task": result.task}
    history = result.population_history
    return {
        "status": "success",
        "run_id": run.run_id,
        "pulse_id": request["pulse_id"],
        "best_model": model,
        "best_architecture": {**model, "fitness": best.value},
        "best_metric": best.value,
        "test_metric": None if result.test_metrics is None else result.test_metrics[objective.name],
        "completed_trials": result.completed_trials,
        "best_trial_id": best.number,
        "population_history": history,
        "metrics": {"objective": objective.name, "direction": objective.direction,
                    "validation": result.validation_metrics, "test": result.test_metrics},
        "trials": [_trial_summary(record) for record in result.records],
        "artifacts": result.artifacts,
        "artifact_refs": [{"name": os.path.basename(path), "path": path} for path in result.artifacts],
        "duration_ms": int(duration * 1000),
        "warnings": request["warnings"] + result.warnings,
        "metadata": {
            "dataset_id": request["dataset_id"],
            "objective": objective.name,
            "direction": objective.direction,
            "task": result.task,
            "strategy": result.config.strategy,
            "ga_params": request["ga_params"],
            "strategy_params": result.strategy_params,
            "seed": result.config.seed,
            "split_seed": result.config.split_seed,
            "split_sizes": result.split_sizes,
            "folds": result.config.folds,
            "ensemble": result.ensemble,
            "refit": result.refit,
            "budget": {name: getattr(result.config, name) for name in (
                "max_trials", "max_time_seconds", "max_trial_seconds", "max_trials_without_improvement",
                "min_improvement")},
            "n_jobs": result.config.n_jobs,
            "stopped_reason": result.stopped_reason,
            "run_dir": result.run_dir,
            "generations": len(history),
            "timestamp": _timestamp(),
        },
    }


def _trial_summary(record: TrialRecord) -> dict[str, Any]:
    """The trial's journal fields and the older names a caller version reads."""
    fields = _with_aliases(record.to_json(), _TRIAL_ALIASES)
    fields["duration_ms"] = int(record.duration_seconds * 1000)
    return fields


def _with_aliases(fields: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """``fields`` and, under each alias, the value of the field it stands for."""
    return {**fields, **{alias: fields[name] for alias, name in aliases.items()}}


def _failure(request: _Request, exc: BaseException, error_type: str, field: Optional[str] = None,
             completed: int = 0) -> Failure:
    return {
        "status": "failed",
        "error": str(exc) or type(exc).__name__,
        "run_id": request["run_id"],
        "pulse_id": request["pulse_id"],
        "completed_trials": completed,
        "warnings": request["warnings"],
        "metadata": {"error_type": error_type, "field": field, "dataset_id": request["dataset_id"],
                     "errno": exc.errno_name if isinstance(exc, StorageError) else None,
                     "timestamp": _timestamp()},
    }


def _timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


# ---- progress, runs, cancellation ------------------------------------------------------------

def _progress_callback(request: _Request, run: _Run, objective: objectives.Objective) -> Callable[[TrialEvent], None]:
    destination = request["progress_to"]

    def on_trial(event: TrialEvent) -> None:
        with _runs_lock:
            run.completed_trials = event.completed
            run.best_metric = event.best_value
        if destination is None:
            return
        message = {"run_id": request["run_id"], "pulse_id": request["pulse_id"], "objective": objective.name,
                   **_with_aliases(event.to_json(), _PROGRESS_ALIASES)}
        try:
            destination.send((PROGRESS_TAG, message))
        except Exception as exc:  # a lost progress message must not stop the search
            request["warnings"].append(f"a progress message to opts.progress_to failed: {exc}")

    return on_trial


def _register(run_id: str, run_dir: str) -> _Run:
    with _runs_lock:
        current = _runs.get(run_id)
        if current is not None and current.state == "running":
            raise FieldError("opts.run_id", f"a run called {run_id!r} is already running")
        run = _runs[run_id] = _Run(run_id, run_dir)
        finished = [r for r in _runs.values() if r.state != "running"]
        for old in sorted(finished, key=lambda r: r.finished or 0.0)[:max(0, len(finished) - _KEPT_RUNS)]:
            del _runs[old.run_id]
        return run


def _finish(run: Optional[_Run], result: Union[Success, Failure]) -> Union[Success, Failure]:
    if run is not None:
        cancelled = result["status"] == "failed" and result["metadata"].get("error_type") == "cancelled"
        _close(run, "cancelled" if cancelled or run.cancel.is_set() else result["status"], result["completed_trials"])
    return result


def _close(run: _Run, state: str, completed_trials: int) -> None:
    with _runs_lock:
        run.state = state
        run.completed_trials = completed_trials
        run.finished = time.monotonic()


def cancel_run(run_id: Any) -> CancelAnswer:
    """Ask a running search to stop; it returns its best so far. Status: cancelling, not_running or unknown."""
    run_id = _text_or_none(run_id)
    with _runs_lock:
        run = _runs.get(run_id)
        if run is None:
            return {"run_id": run_id, "status": "unknown"}
        if run.state != "running":
            return {"run_id": run_id, "status": "not_running"}
        run.cancel.set()
        return {"run_id": run_id, "status": "cancelling"}


def run_status(run_id: Any) -> RunStatus:
    """A run's state (running, success, failed, cancelled, incomplete, unreadable or unknown) and progress.

    A run this process did not start, or no longer remembers (another worker's, one from
    before a restart), is read from its directory under the runs root (``_status_on_disk``).
    """
    run_id = _text_or_none(run_id)
    with _runs_lock:
        run = _runs.get(run_id)
        if run is not None:
            end = run.finished if run.finished is not None else time.monotonic()
            return {"run_id": run_id, "status": run.state, "completed_trials": run.completed_trials,
                    "best_metric": run.best_metric, "elapsed_seconds": round(end - run.started, 3),
                    "run_dir": run.run_dir}
    status: RunStatus = {"run_id": run_id, "status": "unknown", "completed_trials": 0, "best_metric": None,
                         "elapsed_seconds": None, "run_dir": None}
    path = os.path.join(_runs_root(), run_id) if run_id and _RUN_ID.fullmatch(run_id) else None
    if path is not None and os.path.isfile(os.path.join(path, JOURNAL)):
        try:
            status.update(_status_on_disk(RunDirectory(path)))
        except (OSError, ValueError, KeyError, TypeError):  # a damaged directory: say what we cannot read
            status.update({"status": "unreadable", "run_dir": path})
    return status


class _StatusOnDisk(TypedDict, total=False):
    status: str
    completed_trials: int
    best_metric: Optional[float]
    elapsed_seconds: Optional[float]
    run_dir: Optional[str]


def _status_on_disk(run_dir: RunDirectory) -> _StatusOnDisk:
    """The status fields of a run from its directory: "running" while a search (in any process)
    holds it; "success" or "cancelled" once its summary covers its whole journal; otherwise
    "incomplete": it stopped before it finished (a crash, a killed worker) or no trial of it
    succeeded, and ``opts.resume`` continues it."""
    records = [TrialRecord.from_json(line, f"{run_dir.path} journal line {number}")
               for number, line in enumerate(run_dir.read_journal(), start=1)]
    config = run_dir.read_json(CONFIG)
    objective = objectives.get(config["objective"], config["task"])
    values = [r.value for r in records if r.value is not None]
    fields: _StatusOnDisk = {"run_dir": run_dir.path, "completed_trials": len(records),
                             "best_metric": max(values, key=objective.fitness) if values else None}
    if run_dir.in_use():
        return {**fields, "status": "running"}
    if os.path.isfile(run_dir.file(SUMMARY)):
        summary = run_dir.read_json(SUMMARY)
        if summary["completed_trials"] == len(records):
            return {**fields, "status": "cancelled" if summary["stopped_reason"] == "cancelled" else "success",
                    "best_metric": summary["best_trial"]["value"],
                    "elapsed_seconds": round(summary["duration_seconds"], 3)}
    return {**fields, "status": "incomplete"}


def _text_or_none(value: Any) -> Optional[str]:
    try:
        return as_text(value, field="run_id")
    except FieldError:
        return None


# ---- predict ---------------------------------------------------------------------------------

def predict(run_id_or_artifact: Any, X: Any) -> Union[Prediction, Failure]:
    """Predictions of a run's saved model (by run id, run directory, or the path of one of its
    networks) for rows ``X``.

    Success: ``Prediction``. Failure: the failure shape with error_type unknown_run, no_model,
    invalid_field or internal_error; its run_id is the reference when that is shaped as a run id.
    """
    request: _Request = {"run_id": None, "pulse_id": None, "dataset_id": None, "warnings": []}
    try:
        reference = as_text(run_id_or_artifact, field="run_id_or_artifact")
        request["run_id"] = reference if _RUN_ID.fullmatch(reference) else None
        run_id, path = _model_location(reference)
        request["run_id"] = run_id
        X = from_term(X) if is_tensor(X) else X
        rows = X.shape[0] if isinstance(X, np.ndarray) and X.ndim else len(X) if isinstance(X, (list, tuple)) else 0
        if rows > MAX_PREDICT_ROWS:
            raise FieldError("X", f"at most {MAX_PREDICT_ROWS} rows a call, got {rows}")
        if isinstance(X, (list, tuple)):
            X = [as_float_list(row, field=f"X[{i}]") for i, row in enumerate(X)]
        model = _saved_model(path)
        classification = model.task == "classification"
        predictions = model.predict(X).tolist()  # a FieldError names X: its shape, its values
        probabilities = model.predict_proba(X).tolist() if classification else None
        return {
            "status": "success",
            "run_id": run_id,
            "model_path": os.path.abspath(path),
            "predictions": predictions,
            "probabilities": probabilities,
            "classes": model.classes_.tolist() if classification else None,
        }
    except FileNotFoundError as exc:
        return _failure(request, exc, "no_model", "run_id_or_artifact")
    except FieldError as exc:
        return _failure(request, exc, _error_type(exc, "unknown_run"), exc.field)
    except Exception as exc:
        return _failure(request, exc, "internal_error")


def _saved_model(path: str) -> Ensemble:
    """``load_model(path)``; a file or run directory that holds no readable model names the reference."""
    try:
        return load_model(path)
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:  # not our .npz; a damaged ensemble.json
        raise FieldError("run_id_or_artifact", f"{path} holds no readable saved model ({exc})") from None


def _model_location(reference: str) -> tuple[Optional[str], str]:
    """``(run id, path)`` of the model ``reference`` names: a run of this process's, a path (its
    run id then None), or a run under the runs root."""
    with _runs_lock:
        run = _runs.get(reference)
    if run is not None:
        return reference, run.run_dir
    if os.path.exists(reference):
        return None, reference
    default = os.path.join(_runs_root(), reference)
    if _RUN_ID.fullmatch(reference) and os.path.isdir(default):
        return reference, default
    raise FieldError("run_id_or_artifact", f"no run or saved model called {reference!r}", kind="not_found")
