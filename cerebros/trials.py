"""Training one trial: a network per validation fold, scored out of fold; and refitting a
selected trial on all the search rows.

Both run in the search's process or in a worker process (``cerebros.runners``), so they take
plain values only: the data as ``(X, y, folds, task, objective name)``, a payload dict, and a
``should_stop()`` callable, and return plain values: a trial the record's fields from training
(``records.TrialOutcome``). A network that cannot be saved
raises ``StorageError``: that is the run directory's failure, not the trial's.
"""
import math
import time
from typing import Any, Callable, Optional, Sequence, TypedDict

import numpy as np
from numpy.typing import NDArray

from . import data as data_module
from . import objectives
from .artifacts import StorageError, storage
from .network import CerebrosNetwork
from .records import TrialOutcome, TrialState
from .space import Candidate

# What a trial trains on: X, y, the folds' (training rows, validation rows), the task and the
# objective's name.
Folds = Sequence[tuple[NDArray[np.intp], NDArray[np.intp]]]
TrialData = tuple[NDArray[Any], NDArray[Any], Folds, str, str]
# A training job's payload (``Study._payload``, ``Study._refit``): plain values, for a worker process.
Payload = dict[str, Any]
ShouldStop = Callable[[], bool]
# A fold network trains on at most this many rows in all (epochs x fit rows): fewer epochs on
# large data, whose epochs cost the most, so a search there tries more candidates (the trade of
# speed against score is measured in docs/benchmarks.md, trial cost); but at least twice its
# patience, so that early stopping and the learning-rate reductions still act.
MAX_ROWS_TRAINED = 80_000


def epoch_bound(patience: int, fit_rows: int) -> int:
    """The most epochs a fold network with ``patience`` trains for on ``fit_rows`` rows."""
    return max(2 * patience, MAX_ROWS_TRAINED // max(1, fit_rows))


def train_trial(trial_data: TrialData, payload: Payload,
                should_stop: ShouldStop) -> tuple[TrialOutcome, Optional[NDArray[Any]]]:
    """Train one network per validation fold and score the trial on the validation rows.

    With one fold this is a hold-out validation; with several, every search row is predicted
    once, by the network that did not train on it, and the trial is scored on all of those
    out-of-fold predictions. Each network early-stops on a share of its fold's training rows
    (``data.early_stopping_split``, seeded from the trial's seed and the fold), never on its
    validation rows, so its outputs there are not chosen on them. It trains for
    ``payload["epochs"]``, or ``epoch_bound`` epochs if fewer. The networks go to
    ``payload["model_paths"]`` (one per fold). A deadline or cancellation stops the fold in
    training within one mini-batch (the trial is still scored), and no later fold starts (the
    trial then has no value). Returns ``(outcome, outputs)``: the out-of-fold
    outputs (see ``_out_of_fold_outputs``; None for a failed trial) and the record's fields
    from training (``TrialOutcome``): status (a ``TrialState``), stopped_reason and best_epoch (one per fold), value (the
    objective), metrics (all of the task's), val_loss (mean over folds of the networks' best
    loss on their early-stopping rows), epochs_trained (all folds), duration_seconds, error.
    """
    X, y, folds, task, objective_name = trial_data
    started = time.monotonic()
    deadline, deadline_status = _deadline(payload, started)
    candidate = Candidate.from_dict(payload["candidate"])
    networks: list[CerebrosNetwork] = []
    try:
        for fold, ((train, _), path) in enumerate(zip(folds, payload["model_paths"])):
            cut = _cut_short(deadline, deadline_status, should_stop)
            if cut:  # a fold not started has no network to score its rows: the trial has no value
                return _cut_before_fold(networks, cut, fold, len(folds), time.monotonic() - started)
            # the network stops on rows of its own training share: its validation rows' outputs
            # must come from a network that did not pick its epoch on them
            fit, stop = data_module.early_stopping_split(train, y, task, seed=[payload["seed"], fold])
            stopping = (X[stop], y[stop]) if len(stop) else (None, None)
            network = CerebrosNetwork(candidate, task=task, random_state=payload["seed"] + fold)
            epochs = min(payload["epochs"], epoch_bound(candidate.patience, len(fit)))
            network.fit(X[fit], y[fit], *stopping, epochs=epochs, deadline=deadline, should_stop=should_stop)
            with storage(path):
                network.save(path)
            networks.append(network)
        outputs = _out_of_fold_outputs(networks, X, y, folds, task)
        validation_rows = np.concatenate([validation for _, validation in folds])
        metrics = objectives.score_outputs(task, y[validation_rows], outputs, class_labels(task, y))
    except StorageError:  # the run directory, not the candidate, failed: the search stops
        raise
    except Exception as exc:  # one bad candidate (diverged, degenerate) must not end the search
        return failed_trial(f"{type(exc).__name__}: {exc}", time.monotonic() - started)
    reasons = [network.stopped_reason_ for network in networks]
    status = TrialState.COMPLETED
    if "stopped" in reasons:
        status = TrialState.INTERRUPTED
    elif "deadline" in reasons and deadline_status is not None:
        status = deadline_status
    losses = [network.best_val_loss_ for network in networks]
    outcome = TrialOutcome(status=status, value=metrics[objective_name], metrics=metrics,
                           val_loss=_finite_or_none(float(np.mean(losses))), **_training_fields(networks),
                           duration_seconds=round(time.monotonic() - started, 3), error=None)
    return outcome, outputs


def refit_trial(trial_data: TrialData, payload: Payload, should_stop: ShouldStop) -> dict[str, Any]:
    """Train one network per path in ``payload["model_paths"]`` on all the search rows, for
    ``payload["epochs"]`` epochs (seeds ``payload["seed"]`` + 0, 1, ...; with no rows held out,
    the training loss decides the learning-rate reductions and the weights kept), and save
    them. Returns ``{"status", "duration_seconds"}``, the status "completed", or why not:
    "interrupted" or "timeout" (a deadline or a cancellation came first) or "failed: <error>";
    then none is saved."""
    X, y, _, task, _ = trial_data
    started = time.monotonic()

    def report(status: str) -> dict[str, Any]:
        return {"status": status, "duration_seconds": round(time.monotonic() - started, 3)}

    deadline, deadline_status = _deadline(payload, started)
    candidate = Candidate.from_dict(payload["candidate"])
    networks: list[CerebrosNetwork] = []
    try:
        for index in range(len(payload["model_paths"])):
            network = CerebrosNetwork(candidate, task=task, random_state=payload["seed"] + index)
            network.fit(X, y, epochs=payload["epochs"], deadline=deadline, should_stop=should_stop)
            if network.stopped_reason_ in ("deadline", "stopped"):  # fewer epochs than asked: not a refit
                return report((_cut_short(deadline, deadline_status, should_stop) or TrialState.INTERRUPTED).value)
            networks.append(network)
        for network, path in zip(networks, payload["model_paths"]):
            with storage(path):
                network.save(path)
    except StorageError:
        raise
    except Exception as exc:  # one failed refit must not end the search: its fold networks remain
        return report(f"failed: {type(exc).__name__}: {exc}")
    return report(TrialState.COMPLETED.value)


def _deadline(payload: Payload, started: float) -> tuple[Optional[float], Optional[TrialState]]:
    """The earlier of the run's deadline and the per-trial limit, as a ``time.monotonic()`` value,
    with the state that work cut short by it gets (interrupted, timeout); (None, None)
    without either."""
    limits: list[tuple[float, TrialState]] = []
    if payload["run_deadline"] is not None:
        limits.append((started + payload["run_deadline"] - time.time(), TrialState.INTERRUPTED))
    if payload["trial_seconds"] is not None:
        limits.append((started + payload["trial_seconds"], TrialState.TIMEOUT))
    if not limits:
        return None, None
    deadline, state = min(limits)
    return deadline, state


class _Training(TypedDict):
    stopped_reason: list[Optional[str]]
    best_epoch: list[int]
    epochs_trained: int


def _training_fields(networks: list[CerebrosNetwork]) -> _Training:
    """The journal fields that describe how the trial's networks trained, one entry per fold."""
    return {"stopped_reason": [network.stopped_reason_ for network in networks],
            "best_epoch": [network.best_epoch_ for network in networks],
            "epochs_trained": sum(network.n_epochs_trained_ for network in networks)}


def _cut_short(deadline: Optional[float], deadline_status: Optional[TrialState],
               should_stop: ShouldStop) -> Optional[TrialState]:
    """The trial's state if it must stop now (interrupted, timeout), else None."""
    if should_stop():
        return TrialState.INTERRUPTED
    if deadline is not None and time.monotonic() >= deadline:
        return deadline_status
    return None


def _cut_before_fold(networks: list[CerebrosNetwork], status: TrialState, fold: int, folds: int,
                     duration: float) -> tuple[TrialOutcome, None]:
    """The outcome of a trial stopped before fold ``fold`` started, and no outputs."""
    outcome = TrialOutcome(status=status, value=None, metrics={}, val_loss=None, **_training_fields(networks),
                           duration_seconds=round(duration, 3),
                           error=f"stopped before fold {fold + 1} of {folds} started, so it has no out-of-fold score")
    return outcome, None


def _out_of_fold_outputs(networks: list[CerebrosNetwork], X: NDArray[Any], y: NDArray[Any],
                         folds: Folds, task: str) -> NDArray[Any]:
    """Every validation row's output from the network of its fold, rows in fold order: class
    probabilities (columns: the classes of ``y``, which every fold's network must know), or
    predicted values."""
    X_val = [X[validation] for _, validation in folds]
    if task != "classification":
        return np.concatenate([network.predict(rows) for network, rows in zip(networks, X_val)])
    if any(not np.array_equal(network.classes_, np.unique(y)) for network in networks):
        raise ValueError("a fold's training rows lack some of the classes")
    return np.concatenate([network.predict_proba(rows) for network, rows in zip(networks, X_val)])


def failed_trial(error: str, duration: float) -> tuple[TrialOutcome, None]:
    """The outcome of a trial that failed with ``error``, and no outputs."""
    outcome = TrialOutcome(status=TrialState.FAILED, stopped_reason=[], value=None, metrics={}, val_loss=None,
                           best_epoch=[], epochs_trained=0, duration_seconds=duration, error=error)
    return outcome, None


def class_labels(task: str, y: NDArray[Any]) -> Optional[NDArray[Any]]:
    """The class labels, sorted (as every network's ``classes_``), or None for regression."""
    return np.unique(y) if task == "classification" else None


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if math.isfinite(value) else None
