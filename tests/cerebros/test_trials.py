"""How long a trial's fold networks train: the trial's epochs, bounded on large data."""
import numpy as np
import pytest
from sklearn.datasets import load_iris

import cerebros.trials
from cerebros import data
from cerebros.space import Candidate, SearchSpace
from cerebros.trials import MAX_ROWS_TRAINED, epoch_bound, train_trial


def candidate(patience):
    drawn = SearchSpace(minimum_levels=1).sample(np.random.default_rng(0), 4)
    return Candidate.from_dict({**drawn.to_dict(), "patience": patience})


@pytest.mark.parametrize("rows, expected", [
    (1, MAX_ROWS_TRAINED),  # small data: the trial's own epochs decide
    (MAX_ROWS_TRAINED // 40, 40),
    (MAX_ROWS_TRAINED, 20),  # large data: never below twice the patience (10)
    (10 ** 9, 20),
    (0, MAX_ROWS_TRAINED),  # no rows: no division by zero
])
def test_the_epoch_bound_falls_with_the_rows_down_to_twice_the_patience(rows, expected):
    assert epoch_bound(10, rows) == expected


@pytest.mark.parametrize("asked, trained", [(50, 2), (1, 1)])
def test_a_trials_fold_networks_train_the_fewer_of_its_epochs_and_the_bound(tmp_path, monkeypatch, asked, trained):
    monkeypatch.setattr(cerebros.trials, "MAX_ROWS_TRAINED", 1)  # every fold at the floor: 2 x patience 1
    X, y = load_iris(return_X_y=True)
    splits = data.prepare(X, y, name="iris", test_size=0.25, folds=3, seed=0)
    payload = {"candidate": candidate(1).to_dict(), "epochs": asked, "seed": 0, "run_deadline": None,
               "trial_seconds": None, "model_paths": [str(tmp_path / f"{fold}.npz") for fold in range(3)]}
    outcome, outputs = train_trial((splits.X, splits.y, splits.folds, splits.task, "accuracy"), payload,
                                   lambda: False)
    assert outcome.status == "completed" and outputs is not None
    # the first epoch always improves on no weights, so a patience of 1 cannot stop before the second
    assert outcome.epochs_trained == 3 * trained
