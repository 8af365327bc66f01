"""Ensemble selection (Caruana et al., 2004): which trials' models to average, and how often.

Greedy forward selection with replacement over the trials' out-of-fold outputs, and
``select_checked``, which keeps the ensemble only if it beats the best candidate alone when
the selection itself is cross-validated (docs/engine.md). A candidate's weight is the number
of times it was added.

Every round scores each candidate's average at once with the numpy metrics below: scikit-
learn's scorers (``cerebros.objectives``) cost about a millisecond a call, too slow for
``MAX_ROUNDS`` x candidates calls after a deadline. The tests check that both agree.
"""
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .objectives import Objective

Array = NDArray[Any]
Outputs = Union[Sequence[ArrayLike], Array]  # the candidates' outputs, one per candidate
Score = tuple[float, ...]  # a candidate's fitness, then a tie-break (``_scorer``)

# Weights are counts, so the ensemble's mixture has a resolution of 1 / rounds; auto-sklearn
# uses 50 rounds too. Greedy selection usually stops far earlier, at no improvement.
MAX_ROUNDS = 50

# The check's cross-validation of the selection: two folds leave the selection half the rows
# (on fewer rows it overfits more, so the check errs, if at all, towards the best alone);
# repeating it on fresh splits averages out the luck of one split, at tens of milliseconds a
# repeat for 20 candidates at digits scale.
CHECK_FOLDS = 2
CHECK_REPEATS = 3


def select_checked(outputs: Outputs, y: ArrayLike, objective: Objective,
                   classes: Optional[Array] = None, seed: int = 0) -> tuple[Array, dict[str, Any]]:
    """``select``'s weights if the selection beats the best candidate alone on held-out rows,
    else the best candidate alone (weights ``[1, 0, ...]``); and the check's report.

    Arguments as ``select``'s; ``seed`` seeds the check's splits. ``CHECK_REPEATS`` times, the
    rows are dealt into ``CHECK_FOLDS`` folds (stratified for classification); for each fold,
    the best candidate and the greedy selection (started from it) are both chosen on the
    other rows and predict the fold's rows. The ensemble is kept only if its score on those
    pooled held-out predictions, averaged over the repeats, beats the best-alone one (for
    accuracy and F1, log-loss breaks ties, as in ``select``). The
    report: ``"kept"`` ("ensemble" or "best") and ``"ensemble_cv"`` and ``"best_cv"``, those two
    scores in the objective's units.
    """
    stacked = _stack(outputs)
    targets = np.asarray(y)
    rng = np.random.default_rng(seed)
    repeats = [_cross_validate(stacked, targets, objective, classes, rng) for _ in range(CHECK_REPEATS)]
    ensemble_cv, best_cv = (tuple(np.mean(scores, axis=0)) for scores in zip(*repeats))
    if ensemble_cv > best_cv:
        kept, weights = "ensemble", select(stacked, targets, objective, classes)
    else:
        kept, weights = "best", np.eye(len(stacked), dtype=int)[0]
    return weights, {"kept": kept, "ensemble_cv": objective.from_fitness(float(ensemble_cv[0])),
                     "best_cv": objective.from_fitness(float(best_cv[0]))}


def select(outputs: Outputs, y: ArrayLike, objective: Objective, classes: Optional[Array] = None,
           max_rounds: int = MAX_ROUNDS) -> Array:
    """Integer weights, one per candidate, from greedy forward selection with replacement.

    ``outputs``: each candidate's out-of-fold outputs for the same rows, the best candidate
    first (it starts the ensemble; ties between candidates go to the earlier one); ``y``: the
    targets of those rows; ``classes``: the class labels in the probabilities' column order
    (classification only).
    """
    stacked = _stack(outputs)
    score = _scorer(objective, y, classes)
    weights = np.zeros(len(stacked), dtype=int)
    weights[0] = 1
    total = stacked[0].copy()
    current = score(total[np.newaxis])[0]
    for _ in range(max_rounds - 1):
        scores = score((total + stacked) / (weights.sum() + 1))
        best = max(range(len(scores)), key=scores.__getitem__)
        if not scores[best] > current:
            break
        weights[best] += 1
        total += stacked[best]
        current = scores[best]
    return weights


def average(outputs: Outputs, weights: Array) -> Array:
    """The ensemble's outputs: the ``weights``-weighted mean of the candidates' outputs."""
    return np.average(_stack(outputs), axis=0, weights=weights)


def _stack(outputs: Outputs) -> Array:
    return np.stack([np.asarray(o, dtype=np.float64) for o in outputs])


def _cross_validate(stacked: Array, y: Array, objective: Objective, classes: Optional[Array],
                    rng: np.random.Generator) -> list[Score]:
    """One repeat of ``select_checked``'s check: the scores (as ``_scorer``'s) of the ensemble's
    and of the best candidate's held-out predictions, pooled over the folds."""
    folds = _deal_folds(y, objective.task == "classification", rng)
    ensemble, best = np.empty_like(stacked[0]), np.empty_like(stacked[0])
    for fold in range(CHECK_FOLDS):
        chosen, held_out = folds != fold, folds == fold
        on_chosen = stacked[:, chosen]
        scores = _scorer(objective, y[chosen], classes)(on_chosen)
        ranked = sorted(range(len(scores)), key=scores.__getitem__, reverse=True)  # stable: ties to the earlier
        weights = np.zeros(len(stacked), dtype=int)
        weights[ranked] = select(on_chosen[ranked], y[chosen], objective, classes)
        ensemble[held_out] = average(stacked[:, held_out], weights)
        best[held_out] = stacked[ranked[0], held_out]
    return _scorer(objective, y, classes)(np.stack([ensemble, best]))


def _deal_folds(y: Array, stratify: bool, rng: np.random.Generator) -> Array:
    """Each row's fold: the rows shuffled (then grouped by class when ``stratify``) and dealt
    round-robin, so fold sizes, and each class's share of them, differ by at most one row."""
    order = rng.permutation(len(y))
    if stratify:
        order = order[np.argsort(y[order], kind="stable")]
    folds = np.empty(len(y), dtype=int)
    folds[order] = np.arange(len(y)) % CHECK_FOLDS
    return folds


def _scorer(objective: Objective, y: ArrayLike, classes: Optional[Array]) -> Callable[[Array], list[Score]]:
    """A function of a stack of candidate outputs, shape (candidates, rows, ...), giving one
    comparable score per candidate: its fitness (higher is better), then, for accuracy and F1,
    minus its log-loss."""
    metric = _BATCH_METRICS[objective.name]
    classification = objective.task == "classification"
    targets = np.searchsorted(classes, y) if classification and classes is not None else \
        np.asarray(y, dtype=np.float64)
    tie_break = classification and not objective.uses_proba

    def score(stack: Array) -> list[Score]:
        fitness = [objective.fitness(value) for value in metric(targets, stack)]
        if not tie_break:
            return [(value,) for value in fitness]
        return list(zip(fitness, -_log_loss(targets, stack)))

    return score


# ---- the objectives' metrics for a stack of candidates (one value per candidate) -------------
# Classification: ``targets`` are class indices, ``stack`` probabilities (candidates, rows,
# classes). Regression: ``stack`` values (candidates, rows) or (candidates, rows, outputs).

def _accuracy(targets: Array, stack: Array) -> Array:
    return np.mean(stack.argmax(axis=2) == targets, axis=1)


def _f1_macro(targets: Array, stack: Array) -> Array:
    """Mean F1 over the classes that occur in the targets or the predictions (scikit-learn's set)."""
    one_hot = np.arange(stack.shape[2])
    predicted = stack.argmax(axis=2)[..., np.newaxis] == one_hot
    actual = targets[:, np.newaxis] == one_hot
    true_positives = np.sum(predicted & actual, axis=1)
    occurrences = predicted.sum(axis=1) + actual.sum(axis=0)
    f1 = 2 * true_positives / np.maximum(occurrences, 1)
    present = occurrences > 0
    return np.sum(f1 * present, axis=1) / present.sum(axis=1)


def _log_loss(targets: Array, stack: Array) -> Array:
    likelihood = stack[:, np.arange(len(targets)), targets]
    return -np.mean(np.log(np.clip(likelihood, np.finfo(stack.dtype).eps, 1.0)), axis=1)


def _errors(targets: Array, stack: Array) -> tuple[Array, Array]:
    """Prediction minus target as (candidates, rows, outputs)."""
    columns = targets.reshape(len(targets), -1)
    return stack.reshape(len(stack), *columns.shape) - columns, columns


def _rmse(targets: Array, stack: Array) -> Array:
    errors, _ = _errors(targets, stack)
    return np.sqrt(np.mean(errors ** 2, axis=(1, 2)))


def _mae(targets: Array, stack: Array) -> Array:
    errors, _ = _errors(targets, stack)
    return np.mean(np.abs(errors), axis=(1, 2))


def _r2(targets: Array, stack: Array) -> Array:
    """R^2 per output, averaged; a constant output scores 1 if predicted exactly, else 0 (as scikit-learn)."""
    errors, columns = _errors(targets, stack)
    residual = np.sum(errors ** 2, axis=1)
    spread = np.sum((columns - columns.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(spread > 0, 1 - residual / spread, np.where(residual == 0, 1.0, 0.0))
    return r2.mean(axis=1)


_BATCH_METRICS: dict[str, Callable[[Array, Array], Array]] = {"accuracy": _accuracy, "f1_macro": _f1_macro, "log_loss": _log_loss,
                  "rmse": _rmse, "mae": _mae, "r2": _r2}
