"""The metrics a search can optimise, each with its task and direction (scikit-learn computes them).

``fitness`` turns a metric into "higher is better", which is what the strategies compare.
"""
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as sk_metrics

from codec.errors import FieldError


@dataclass(frozen=True)
class Objective:
    """A named metric: ``task`` it applies to, ``direction`` ("maximize" or "minimize"),
    and whether it scores class probabilities rather than predictions."""

    name: str
    task: str
    direction: str
    uses_proba: bool
    score: Callable[..., float]

    def fitness(self, value: Optional[float]) -> float:
        """``value`` as higher-is-better (negated when minimised); None (a failed trial) is -inf."""
        if value is None or not math.isfinite(value):
            return -math.inf
        return value if self.direction == "maximize" else -value

    def from_fitness(self, fitness: float) -> float:
        """Inverse of ``fitness`` for finite values."""
        return fitness if self.direction == "maximize" else -fitness


class Predictor(Protocol):
    """A fitted model: a network or an ensemble of them."""

    task: str
    classes_: NDArray[Any]

    def predict(self, X: ArrayLike) -> NDArray[Any]: ...

    def predict_proba(self, X: ArrayLike) -> NDArray[Any]: ...


def _rmse(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    return math.sqrt(sk_metrics.mean_squared_error(y_true, y_pred))


OBJECTIVES = {
    "accuracy": Objective("accuracy", "classification", "maximize", False, sk_metrics.accuracy_score),
    "f1_macro": Objective("f1_macro", "classification", "maximize", False,
                          lambda t, p: sk_metrics.f1_score(t, p, average="macro")),
    "log_loss": Objective("log_loss", "classification", "minimize", True, sk_metrics.log_loss),
    "rmse": Objective("rmse", "regression", "minimize", False, _rmse),
    "mae": Objective("mae", "regression", "minimize", False, sk_metrics.mean_absolute_error),
    "r2": Objective("r2", "regression", "maximize", False, sk_metrics.r2_score),
}
DEFAULTS = {"classification": "accuracy", "regression": "r2"}


def get(name: Optional[str], task: str) -> Objective:
    """The objective called ``name`` for ``task``; None gives the task's default."""
    if name is None:
        name = DEFAULTS[task]
    if name not in OBJECTIVES:
        raise FieldError("objective", f"unknown objective {name!r} (known: {', '.join(OBJECTIVES)})")
    objective = OBJECTIVES[name]
    if objective.task != task:
        usable = ", ".join(n for n, o in OBJECTIVES.items() if o.task == task)
        raise FieldError("objective", f"{name!r} is a {objective.task} metric but the dataset is a "
                                      f"{task} task (use one of {usable})")
    return objective


def evaluate(model: Predictor, X: ArrayLike, y: ArrayLike) -> dict[str, float]:
    """Every metric of the model's task on ``(X, y)``, as ``{name: float}``."""
    if model.task == "classification":
        return score_predictions(model.task, y, model.predict(X), model.predict_proba(X), model.classes_)
    return score_predictions(model.task, y, model.predict(X))


def score_outputs(task: str, y: ArrayLike, outputs: NDArray[Any],
                  classes: Optional[NDArray[Any]] = None) -> dict[str, float]:
    """Every metric of ``task`` from a model's outputs: class probabilities (columns in
    ``classes`` order; the prediction is the most probable class), or predicted values."""
    if task == "classification" and classes is not None:
        return score_predictions(task, y, classes[np.argmax(outputs, axis=1)], outputs, classes)
    return score_predictions(task, y, outputs)


def score_predictions(task: str, y: ArrayLike, predictions: ArrayLike, proba: Optional[ArrayLike] = None,
                      classes: Optional[ArrayLike] = None) -> dict[str, float]:
    """Every metric of ``task`` from predictions (and, for classification, the class
    probabilities with their ``classes`` in column order), as ``{name: float}``."""
    results: dict[str, float] = {}
    for name, objective in OBJECTIVES.items():
        if objective.task != task:
            continue
        if objective.uses_proba:
            value = objective.score(y, proba, labels=classes)
        else:
            value = objective.score(y, predictions)
        results[name] = float(value)
    return results
