"""The numpy network: gradients against finite differences, training control, persistence, determinism."""
import dataclasses
import json
import pickle
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from cerebros.activations import ACTIVATIONS
from cerebros import network
from cerebros.network import CerebrosNetwork
from cerebros.space import Candidate, SearchSpace


def small_candidate(seed, n_inputs=3, **overrides):
    space = SearchSpace(minimum_levels=1, maximum_levels=3, minimum_units_per_level=1, maximum_units_per_level=3,
                        minimum_neurons_per_unit=2, maximum_neurons_per_unit=4, p_lateral_connection=0.8,
                        rounding="floor" if seed % 2 else "ceil", affinity_main=1.5)
    return dataclasses.replace(space.sample(np.random.default_rng(seed), n_inputs), **overrides)


def blobs(seed, n=60, n_inputs=3, n_classes=3):
    """Separable-ish Gaussian blobs: features (n, n_inputs) and integer labels."""
    generator = np.random.default_rng(seed)
    labels = generator.integers(n_classes, size=n)
    centres = generator.normal(0, 2, size=(n_classes, n_inputs))
    return centres[labels] + generator.normal(size=(n, n_inputs)), labels


def numeric_gradient(loss, array, index, eps=1e-6):
    saved = array[index]
    array[index] = saved + eps
    plus, _ = loss()
    array[index] = saved - eps
    minus, _ = loss()
    array[index] = saved
    return (plus - minus) / (2 * eps)


def check_gradients(net, X, y, max_entries=6, fixed_masks=False):
    """Compare backward's gradients with central differences; ``fixed_masks`` redraws the same
    dropout masks for every evaluation (training-mode dropout is random otherwise)."""
    def loss():
        if fixed_masks:
            net._rng = np.random.default_rng(7)
        return net.loss_and_gradients(X, y)

    _, grads = loss()
    picker = np.random.default_rng(0)
    checked = 0
    for name, array in net.parameters().items():
        flat_indices = picker.choice(array.size, size=min(array.size, max_entries), replace=False)
        for flat in flat_indices:
            index = np.unravel_index(flat, array.shape)
            expected = numeric_gradient(loss, array, index)
            got = grads[name][index]
            assert abs(got - expected) <= 1e-6 + 1e-4 * abs(expected), (name, index, got, expected)
            checked += 1
    return checked


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@pytest.mark.parametrize("normalization", ["batchnorm", "none"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_backward_matches_central_finite_differences(activation, normalization, task):
    seed = sorted(ACTIVATIONS).index(activation) + 11 * (normalization == "none") + 23 * (task == "regression")
    candidate = small_candidate(seed, activation=activation, normalization=normalization)
    X, labels = blobs(seed, n=24)
    y = labels if task == "classification" else np.column_stack([X.sum(axis=1), labels])
    net = CerebrosNetwork(candidate, task=task, random_state=seed, dtype=np.float64)
    net.fit(X, y, epochs=1)  # sets the shapes; then move off the initial point
    assert check_gradients(net, X, y) > 10


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_backward_matches_central_finite_differences_through_dropout(task):
    candidate = small_candidate(4, activation="gelu", normalization="dropout", dropout=0.3)
    X, labels = blobs(4, n=24)
    y = labels if task == "classification" else X.sum(axis=1)
    net = CerebrosNetwork(candidate, task=task, random_state=4, dtype=np.float64)
    net.fit(X, y, epochs=1)
    assert check_gradients(net, X, y, fixed_masks=True) > 10
    first, _ = net.loss_and_gradients(X, y)
    assert net.loss_and_gradients(X, y)[0] != first  # the masks do change between training passes


def test_gradient_check_covers_lateral_connections_and_catches_a_wrong_derivative(monkeypatch):
    candidate = small_candidate(3, n_inputs=2, activation="tanh", normalization="batchnorm")
    assert any(unit.lateral_inputs for level in candidate.levels for unit in level)
    X, y = blobs(5, n=16, n_inputs=2)
    net = CerebrosNetwork(candidate, random_state=0, dtype=np.float64).fit(X, y, epochs=1)
    check_gradients(net, X, y, max_entries=100)
    forward, forward_and_slope, gain = ACTIVATIONS["tanh"]

    def wrong_slope(z):
        a, slope = forward_and_slope(z)
        return a, 1.02 * slope

    monkeypatch.setitem(ACTIVATIONS, "tanh", (forward, wrong_slope, gain))
    with pytest.raises(AssertionError):
        check_gradients(net, X, y, max_entries=100)


def test_classification_learns_blobs_and_reports_training_state():
    X, y = blobs(1, n=300, n_inputs=4)
    labels = np.array(["cat", "dog", "emu"])[y]
    candidate = small_candidate(2, n_inputs=4, learning_rate=0.01, epochs=60, batch_size=32)
    epochs_seen = []
    net = CerebrosNetwork(candidate, random_state=0).fit(
        X[:200], labels[:200], X[200:], labels[200:], on_epoch=lambda e, t, v: epochs_seen.append((e, t, v)))
    assert list(net.classes_) == ["cat", "dog", "emu"]
    assert (net.predict(X[200:]) == labels[200:]).mean() > 0.9
    proba = net.predict_proba(X[200:])
    assert proba.shape == (100, 3) and np.allclose(proba.sum(axis=1), 1)
    assert len(net.history_) == net.n_epochs_trained_ == len(epochs_seen)
    assert [e for e, _, _ in epochs_seen] == list(range(1, net.n_epochs_trained_ + 1))
    assert net.best_val_loss_ == min(v for _, _, v in epochs_seen)
    assert net.history_[net.best_epoch_ - 1]["val_loss"] == net.best_val_loss_
    assert net.stopped_reason_ in ("completed", "early_stopping")


@pytest.mark.parametrize("shape", [(None,), (None, 2)])
def test_regression_predicts_in_target_units_and_shape(shape):
    generator = np.random.default_rng(0)
    X = generator.normal(size=(300, 3))
    y = 1000 + 50 * X[:, :1] - 20 * X[:, 1:2]
    if len(shape) == 2:
        y = np.hstack([y, -y])
    else:
        y = y[:, 0]
    candidate = small_candidate(4, learning_rate=0.01, epochs=80, batch_size=32, normalization="none")
    net = CerebrosNetwork(candidate, task="regression", random_state=0).fit(X[:200], y[:200], X[200:], y[200:])
    predicted = net.predict(X[200:])
    assert predicted.shape == y[200:].shape
    r2 = 1 - ((predicted - y[200:]) ** 2).sum() / ((y[200:] - y[200:].mean(axis=0)) ** 2).sum()
    assert r2 > 0.9


def test_early_stopping_restores_the_best_epoch_not_the_last():
    # random labels: the network memorises the training rows, so validation loss soon rises
    generator = np.random.default_rng(0)
    X, X_val = generator.normal(size=(80, 5)), generator.normal(size=(40, 5))
    y, y_val = generator.integers(2, size=80), generator.integers(2, size=40)
    candidate = small_candidate(6, n_inputs=5, learning_rate=0.03, epochs=60, patience=8, batch_size=16,
                                normalization="none", weight_decay=0.0)
    net = CerebrosNetwork(candidate, random_state=1)
    snapshots = {}
    net.fit(X, y, X_val, y_val,
            on_epoch=lambda epoch, t, v: snapshots.update({epoch: {k: a.copy() for k, a in net.parameters().items()}}))
    assert net.stopped_reason_ == "early_stopping"
    assert net.best_epoch_ == net.n_epochs_trained_ - candidate.patience
    final, best = snapshots[net.n_epochs_trained_], snapshots[net.best_epoch_]
    params = net.parameters()
    assert all(np.array_equal(params[k], best[k]) for k in params)
    assert not all(np.array_equal(params[k], final[k]) for k in params)
    proba = net.predict_proba(X_val)
    val_loss = -np.log(proba[np.arange(len(y_val)), y_val]).mean()
    assert val_loss == pytest.approx(net.best_val_loss_, rel=1e-5)
    assert val_loss < net.history_[-1]["val_loss"]


def test_batchnorm_running_statistics_are_restored_with_the_best_weights():
    generator = np.random.default_rng(3)
    X, X_val = generator.normal(size=(80, 5)), generator.normal(size=(40, 5))
    y, y_val = generator.integers(2, size=80), generator.integers(2, size=40)
    candidate = small_candidate(6, n_inputs=5, learning_rate=0.03, epochs=60, patience=8, batch_size=16,
                                normalization="batchnorm")
    net = CerebrosNetwork(candidate, random_state=1).fit(X, y, X_val, y_val)
    assert net.best_epoch_ < net.n_epochs_trained_
    proba = net.predict_proba(X_val)
    assert -np.log(proba[np.arange(len(y_val)), y_val]).mean() == pytest.approx(net.best_val_loss_, rel=1e-5)


def test_deadline_and_cancellation_stop_after_the_current_batch():
    X, y = blobs(2, n=200)
    candidate = small_candidate(1, batch_size=20, epochs=50)
    net = CerebrosNetwork(candidate, random_state=0).fit(X, y, X, y, deadline=time.monotonic())
    assert net.stopped_reason_ == "deadline" and net.n_epochs_trained_ == 1
    assert net.best_epoch_ == 1 and np.isfinite(net.best_val_loss_)

    calls = []
    net = CerebrosNetwork(candidate, random_state=0).fit(
        X, y, X, y, should_stop=lambda: calls.append(1) or len(calls) >= 25)
    assert net.stopped_reason_ == "stopped"
    assert len(calls) == 25 and net.n_epochs_trained_ == 3   # 10 batches per epoch
    assert net.predict(X).shape == (200,)


def test_warm_start_continues_training_and_epochs_override_the_candidate():
    X, y = blobs(3, n=120)
    candidate = small_candidate(5, epochs=40, patience=100)
    net = CerebrosNetwork(candidate, random_state=0).fit(X, y, X, y, epochs=3)
    assert net.n_epochs_trained_ == 3 and net.stopped_reason_ == "completed"
    first_best = net.best_val_loss_
    net.fit(X, y, X, y, epochs=4, warm_start=True)
    assert net.n_epochs_trained_ == 7 and [h["epoch"] for h in net.history_] == list(range(1, 8))
    assert net.best_val_loss_ <= first_best
    net.fit(X, y, X, y, epochs=2)
    assert net.n_epochs_trained_ == 2


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_dropout_masks_keep_the_asked_share_and_are_unbiased(rate):
    X, y = blobs(3, n=50)
    net = CerebrosNetwork(small_candidate(8, normalization="dropout", dropout=rate), random_state=0)
    net.fit(X, y, epochs=1)
    masks = np.concatenate([net._dropout_masks(len(X)) for _ in range(200)])
    kept = masks > 0
    # 200 batches of 50 rows: the kept share's standard error is under 0.002
    assert abs(kept.mean() - (1 - rate)) < 0.01
    assert set(np.unique(masks)) == {0, masks.max()} and masks.dtype == net.dtype
    assert abs(masks.mean() - 1) < 0.01 / (1 - rate)
    assert not np.array_equal(net._dropout_masks(len(X)), net._dropout_masks(len(X)))


@pytest.mark.parametrize("rate, kept", [(0.3, 179), (0.999, 1), (0.0001, 256)])
def test_dropout_keep_is_the_multiple_of_1_256_nearest_the_asked_one(rate, kept):
    """8 raw bits an entry: 1 - 0.3 is 179.2/256; a rate near 1 still keeps 1/256 (no division
    by zero), one near 0 keeps every entry."""
    X, y = blobs(3, n=50)
    net = CerebrosNetwork(small_candidate(8, normalization="dropout", dropout=rate), random_state=0)
    net.fit(X, y, epochs=1)
    masks = np.concatenate([net._dropout_masks(len(X)) for _ in range(200)])
    assert set(np.unique(masks)) <= {0, net.dtype.type(256 / kept)}
    assert abs((masks > 0).mean() - kept / 256) < 0.01


def test_training_is_deterministic_for_a_random_state():
    X, y = blobs(4, n=100)
    candidate = small_candidate(8, normalization="dropout", dropout=0.3, epochs=5)
    a = CerebrosNetwork(candidate, random_state=42).fit(X, y, X, y)
    b = CerebrosNetwork(candidate, random_state=42).fit(X, y, X, y)
    c = CerebrosNetwork(candidate, random_state=43).fit(X, y, X, y)
    assert a.history_ == b.history_
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    a.fit(X, y, X, y)  # a refit starts again from the seed
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_save_and_load_predict_identically(tmp_path, task):
    X, y = blobs(5, n=90)
    if task == "classification":
        y = np.array(["a", "b", "c"])[y]
    else:
        y = X @ np.array([1.0, -2.0, 0.5]) + 7
    candidate = small_candidate(9, normalization="batchnorm", epochs=5)
    net = CerebrosNetwork(candidate, task=task, random_state=0).fit(X, y, X, y)
    npz_path, json_path = net.save(tmp_path / "model")
    assert npz_path.endswith("model.npz")
    assert json.load(open(json_path))["candidate"] == candidate.to_dict()
    loaded = CerebrosNetwork.load(npz_path)
    assert np.array_equal(loaded.predict(X), net.predict(X))
    if task == "classification":
        assert np.array_equal(loaded.predict_proba(X), net.predict_proba(X))
    assert loaded.best_epoch_ == net.best_epoch_ and loaded.history_ == net.history_
    with np.load(npz_path, allow_pickle=False) as data:
        assert all(data[key].dtype != object for key in data.files)


def linear_candidate(n_inputs, **overrides):
    """A candidate with no hidden level: the inputs go straight to the output unit."""
    fields = {"n_inputs": n_inputs, "levels": [], "output_inputs": [[0, 0]], "activation": "relu",
              "normalization": "none", "dropout": 0.0, "learning_rate": 0.02, "weight_decay": 1e-4,
              "batch_size": 32, "epochs": 80, "patience": 10, **overrides}
    return Candidate.from_dict(fields)


@pytest.mark.parametrize("normalization", ["none", "batchnorm"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_network_without_hidden_levels_trains_saves_reloads_and_predicts(tmp_path, task, normalization):
    X, labels = blobs(11, n=200)
    y = np.array(["a", "b", "c"])[labels] if task == "classification" else X @ np.array([1.0, -2.0, 0.5]) + 7
    net = CerebrosNetwork(linear_candidate(3, normalization=normalization), task=task, random_state=0)
    net.fit(X[:150], y[:150], X[150:], y[150:])
    [(name, weights), _] = net.parameters().items()  # one weight matrix and one bias: a linear model
    assert weights.shape == (3, 3 if task == "classification" else 1)
    if task == "classification":  # about as good as scikit-learn's logistic regression
        logistic = LogisticRegression().fit(X[:150], y[:150]).score(X[150:], y[150:])
        assert (net.predict(X[150:]) == y[150:]).mean() >= logistic - 0.04
    else:  # a linear target: the linear model finds it
        assert np.abs(net.predict(X[150:]) - y[150:]).max() < 0.3
    loaded = CerebrosNetwork.load(net.save(tmp_path / "linear")[0])
    assert loaded.candidate.levels == () and np.array_equal(loaded.predict(X), net.predict(X))
    check = CerebrosNetwork(linear_candidate(3, normalization=normalization), task=task, random_state=0,
                            dtype=np.float64).fit(X[:24], y[:24], epochs=1)
    assert check_gradients(check, X[:24], y[:24]) > 3


def test_an_epoch_has_at_most_max_batches_per_epoch_batches(monkeypatch):
    def counted(net):
        def loss_and_grads(X, targets):
            steps.append(len(X))
            net._grads[...] = 0
            return 1.0
        monkeypatch.setattr(net, "_loss_and_grads", loss_and_grads)
        return net

    steps = []
    X, y = blobs(12, n=1000)
    counted(CerebrosNetwork(small_candidate(2, batch_size=10, epochs=2, patience=5), random_state=0)).fit(X, y)
    assert len(steps) == 2 * network.MAX_BATCHES_PER_EPOCH  # not 2 * 100 batches of 10 rows
    assert sum(steps) == 2 * 1000 and max(steps) - min(steps) <= 1  # every row, in near-equal batches
    steps.clear()
    counted(CerebrosNetwork(small_candidate(2, batch_size=10, epochs=1), random_state=0)).fit(X[:100], y[:100])
    assert steps == [10] * 10  # below the bound, the candidate's own batch size


@pytest.mark.parametrize("rows, batch_size, n_batches", [
    (100, 256, 8),  # not one batch of all rows: one optimiser step an epoch
    (100, 50, 8),
    (100, 10, 10),
    (40, 256, 5),  # no batch under MIN_BATCH_ROWS rows
    (15, 256, 1),
    (3, 256, 1),
    (1, 16, 1),
])
def test_an_epoch_has_at_least_min_batches_per_epoch_batches_unless_they_would_be_tiny(rows, batch_size, n_batches):
    assert network.MIN_BATCHES_PER_EPOCH == 8 and network.MIN_BATCH_ROWS == 8
    sizes = np.diff(network.batch_bounds(rows, batch_size))
    assert len(sizes) == n_batches and sizes.sum() == rows and sizes.max() - sizes.min() <= 1


def test_a_pickled_network_keeps_training_like_the_original():
    X, y = blobs(7, n=90)
    net = CerebrosNetwork(small_candidate(10, normalization="batchnorm", patience=50), random_state=0)
    net.fit(X, y, X, y, epochs=2)
    clone = pickle.loads(pickle.dumps(net))
    for model in (net, clone):
        model.fit(X, y, X, y, epochs=3, warm_start=True)
    assert clone.history_ == net.history_
    assert np.array_equal(clone.predict_proba(X), net.predict_proba(X))


def test_bad_inputs_are_reported_by_name():
    X, y = blobs(6, n=30)
    net = CerebrosNetwork(small_candidate(1), random_state=0)
    with pytest.raises(ValueError, match="not fitted"):
        net.predict(X)
    with pytest.raises(ValueError, match="X: the model takes 3 features, got 2"):
        net.fit(X[:, :2], y)
    with pytest.raises(ValueError, match="X_val: expected a 2-d array .* at least 1 row"):
        net.fit(X, y, X[:0], y[:0])
    with pytest.raises(ValueError, match="X_val: contains NaN"):
        net.fit(X, y, np.full_like(X, np.nan), y)
    with pytest.raises(ValueError, match="y: expected 1-d with 30 rows"):
        net.fit(X, y[:10])
    with pytest.raises(ValueError, match="y_val: label 7 was not among the training classes"):
        net.fit(X, y, X, np.full_like(y, 7))
    with pytest.raises(ValueError, match="at least 2 classes"):
        net.fit(X, np.zeros_like(y))
    with pytest.raises(ValueError, match="task: must be one of"):
        CerebrosNetwork(small_candidate(1), task="ranking")
    with pytest.raises(ValueError, match="predict_proba: only for task='classification'"):
        CerebrosNetwork(small_candidate(1), task="regression").fit(X, X[:, 0], epochs=1).predict_proba(X)


@pytest.mark.parametrize("seed", range(6))
def test_matrix_products_name_every_weight_and_which_layers_a_step_multiplies_back_through(seed):
    candidate = small_candidate(seed)
    X, y = blobs(seed)
    net = CerebrosNetwork(candidate, random_state=0).fit(X, y, epochs=1)
    products = net.matrix_products()
    weights = [array for name, array in net.parameters().items() if name.endswith(".W")]
    assert len(products) == len(weights) and all(w is v or np.shares_memory(w, v)
                                                 for (w, _), v in zip(products, weights))
    # a unit fed by the raw features alone, input (0, 0), needs no input gradient
    fed_by_units = [any(ref != (0, 0) for ref in unit.inputs) or bool(unit.lateral_inputs)
                    for level in candidate.levels for unit in level]
    fed_by_units.append(any(ref != (0, 0) for ref in candidate.output_inputs))
    assert [needs for _, needs in products] == fed_by_units
    assert any(fed_by_units) and not all(fed_by_units)
