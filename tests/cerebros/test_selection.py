"""Greedy ensemble selection on crafted out-of-fold outputs, and its metrics against scikit-learn's."""
import numpy as np
import pytest

from cerebros import objectives, selection

CLASSES = np.array([0, 1, 2])


def one_hot_guesses(labels, confidence=0.8):
    """Class probabilities that put ``confidence`` on each row's guessed label."""
    proba = np.full((len(labels), 3), (1 - confidence) / 2)
    proba[np.arange(len(labels)), labels] = confidence
    return proba


def guesses(y, wrong_rows, confidence=0.8):
    """Class probabilities: ``confidence`` on the true label, except on ``wrong_rows``, where
    the next label gets 0.5 and the true one 0.4 (a hesitant mistake)."""
    proba = one_hot_guesses(y, confidence)
    for row in wrong_rows:
        proba[row] = 0.1
        proba[row, y[row]] = 0.4
        proba[row, (y[row] + 1) % 3] = 0.5
    return proba


def test_it_picks_the_complementary_member_not_the_look_alike():
    y = np.array([0, 1, 2, 0, 1, 2])
    best = guesses(y, wrong_rows=[4, 5])
    look_alike = guesses(y, wrong_rows=[4, 5], confidence=0.7)
    complement = guesses(y, wrong_rows=[0, 3])
    weights = selection.select([best, look_alike, complement], y, objectives.get("accuracy", "classification"),
                               CLASSES)
    assert weights[0] >= 1 and weights[1] == 0 and weights[2] >= 1
    mixed = selection.average([best, look_alike, complement], weights)
    assert objectives.score_outputs("classification", y, mixed, CLASSES)["accuracy"] == 1.0


def test_weights_count_repeated_picks():
    y = np.linspace(-1, 1, 20)
    # (2 * (y + 1) + (y - 2)) / 3 == y: the exact mixture needs the first member twice
    weights = selection.select([y + 1, y - 2], y, objectives.get("rmse", "regression"))
    assert weights.tolist() == [2, 1]


@pytest.mark.parametrize("name", ["rmse", "mae", "r2"])
def test_minimised_and_maximised_objectives_both_improve(name):
    y = np.random.default_rng(0).normal(size=50)
    noise = np.random.default_rng(1).normal(size=50)
    outputs = [y + noise, y + 1.2 * noise, y - noise]  # the first and the last cancel out
    objective = objectives.get(name, "regression")
    weights = selection.select(outputs, y, objective)
    assert weights.tolist() == [1, 0, 1]
    alone = objectives.score_outputs("regression", y, outputs[0])[name]
    mixed = objectives.score_outputs("regression", y, selection.average(outputs, weights))[name]
    assert objective.fitness(mixed) > objective.fitness(alone)


def test_log_loss_breaks_accuracy_ties():
    y = np.array([0, 1, 2, 0])
    hesitant = one_hot_guesses(y, confidence=0.4)
    confident = one_hot_guesses(y, confidence=0.95)
    weights = selection.select([hesitant, confident], y, objectives.get("accuracy", "classification"), CLASSES)
    assert weights[1] >= 1  # same accuracy, lower log-loss


def test_one_candidate_or_nothing_to_gain_keeps_the_best_alone():
    y = np.array([0, 1, 2])
    perfect = one_hot_guesses(y)
    accuracy = objectives.get("accuracy", "classification")
    assert selection.select([perfect], y, accuracy, CLASSES).tolist() == [1]
    assert selection.select([y + 0.0, y + 3.0], y, objectives.get("r2", "regression")).tolist() == [1, 0]


def test_rounds_are_bounded():
    y = np.array([0, 1, 2, 0])
    steps = [one_hot_guesses(y, confidence=c) for c in (0.4, 0.99)]
    assert selection.select(steps, y, objectives.get("accuracy", "classification"), CLASSES,
                            max_rounds=5).sum() == 5


@pytest.mark.parametrize("name", sorted(objectives.OBJECTIVES))
def test_batch_metrics_agree_with_the_objectives(name):
    objective = objectives.OBJECTIVES[name]
    rng = np.random.default_rng(2)
    if objective.task == "classification":
        y = rng.choice(np.array(["a", "b", "c", "d"]), size=40)
        classes = np.unique(y)
        stack = rng.dirichlet(np.ones(4), size=(3, 40))
        stack[2, :, 3] = 0.0  # a class never predicted, and zero probabilities
        stack[2] /= stack[2].sum(axis=1, keepdims=True)
        targets = np.searchsorted(classes, y)
    else:
        y, classes = rng.normal(size=40), None
        stack = y + rng.normal(size=(3, 40))
        targets = y
    batch = selection._BATCH_METRICS[name](targets, stack)
    expected = [objectives.score_outputs(objective.task, y, outputs, classes)[name] for outputs in stack]
    assert batch == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_the_check_keeps_an_ensemble_that_helps_on_held_out_rows():
    y = np.random.default_rng(0).normal(size=200)
    noise = np.random.default_rng(1).normal(size=200)
    outputs = [y + noise, y + 1.2 * noise, y - noise]  # the first and the last cancel out on every row
    weights, report = selection.select_checked(outputs, y, objectives.get("r2", "regression"), seed=0)
    assert weights.tolist() == [1, 0, 1]
    assert report["kept"] == "ensemble" and report["ensemble_cv"] > report["best_cv"]


def test_the_check_drops_members_that_only_fit_the_selection_rows_noise():
    rng = np.random.default_rng(3)
    y = rng.normal(size=200)
    errors = rng.normal(size=200)
    best = y + errors
    # each other member is the best, but right on one row and twice as wrong on another: in
    # expectation it hurts the average, yet on whichever rows hold only its right one it helps
    members = []
    for right, wrong in rng.permutation(200).reshape(100, 2):
        member = best.copy()
        member[right] -= 2 * errors[right]
        member[wrong] += 2 * errors[wrong]
        members.append(member)
    objective = objectives.get("rmse", "regression")
    assert selection.select([best] + members, y, objective).sum() > 1  # unchecked, the greedy rounds take some
    weights, report = selection.select_checked([best] + members, y, objective, seed=0)
    assert weights.tolist() == [1] + [0] * 100
    assert report["kept"] == "best" and report["ensemble_cv"] > report["best_cv"]  # rmse: lower is better


def test_the_check_is_deterministic_for_a_seed():
    y = np.array([0, 1, 2] * 10)
    outputs = [guesses(y, wrong_rows=range(start, 30, 4)) for start in range(4)]
    accuracy = objectives.get("accuracy", "classification")
    first, again = (selection.select_checked(outputs, y, accuracy, CLASSES, seed=7) for _ in range(2))
    assert first[0].tolist() == again[0].tolist() and first[1] == again[1]


def test_check_folds_are_stratified_and_balanced():
    y = np.array(["a"] * 7 + ["b"] * 4 + ["c"] * 1)
    folds = selection._deal_folds(y, True, np.random.default_rng(0))
    assert sorted(np.bincount(folds)) == [6, 6]
    for label in "abc":
        assert abs(np.sum(folds[y == label] == 0) - np.sum(folds[y == label] == 1)) <= 1
