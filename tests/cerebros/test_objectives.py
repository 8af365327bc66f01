"""Objectives: names, tasks, directions, and scores that match scikit-learn."""
import math

import numpy as np
import pytest
from sklearn import metrics

from cerebros import objectives
from codec import FieldError


class FixedModel:
    """A stand-in model whose outputs are given."""

    def __init__(self, task, predictions, proba=None, classes=None):
        self.task, self._predictions, self._proba, self.classes_ = task, predictions, proba, classes

    def predict(self, X):
        return self._predictions

    def predict_proba(self, X):
        return self._proba


def test_directions_and_fitness():
    assert objectives.get("accuracy", "classification").fitness(0.9) == 0.9
    rmse = objectives.get("rmse", "regression")
    assert rmse.direction == "minimize" and rmse.fitness(2.0) == -2.0 and rmse.from_fitness(-2.0) == 2.0
    assert rmse.fitness(None) == -math.inf and rmse.fitness(float("nan")) == -math.inf
    assert {o.name: o.direction for o in objectives.OBJECTIVES.values()} == {
        "accuracy": "maximize", "f1_macro": "maximize", "log_loss": "minimize",
        "rmse": "minimize", "mae": "minimize", "r2": "maximize"}


def test_defaults_and_errors():
    assert objectives.get(None, "classification").name == "accuracy"
    assert objectives.get(None, "regression").name == "r2"
    with pytest.raises(FieldError, match="unknown objective 'auc'"):
        objectives.get("auc", "classification")
    with pytest.raises(FieldError, match="'accuracy' is a classification metric .* regression"):
        objectives.get("accuracy", "regression")


def test_evaluate_classification_matches_sklearn():
    y = np.array([0, 1, 2, 1])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    result = objectives.evaluate(FixedModel("classification", proba.argmax(axis=1), proba, np.arange(3)), None, y)
    assert result == {"accuracy": 0.75, "f1_macro": metrics.f1_score(y, proba.argmax(axis=1), average="macro"),
                      "log_loss": metrics.log_loss(y, proba)}


def test_evaluate_regression_matches_sklearn():
    y, predicted = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.0, 3.0])
    result = objectives.evaluate(FixedModel("regression", predicted), None, y)
    assert result == pytest.approx({"rmse": math.sqrt(1.25 / 3), "mae": 0.5, "r2": metrics.r2_score(y, predicted)})
