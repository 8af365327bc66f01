"""AdamW: the compiled step and the numpy step give the same bits; the update is Adam's; bad arrays are refused."""
import math

import numpy as np
import pytest

from cerebros import optim
from cerebros.optim import AdamW


def test_the_compiled_step_is_built_and_in_use():
    assert optim.compiled_step is not None, (
        "cerebros._adamw is not built: install a C compiler and the Python headers, then `pip install -e .` again")
    assert optim.STEP is optim.compiled_step


def moments(dtype, size, seed):
    rng = np.random.default_rng(seed)
    params, grad = (rng.standard_normal(size).astype(dtype) for _ in range(2))
    grad[::7] *= 1e4  # large and tiny gradients: where rounding differs first if the order differs
    grad[1::7] *= 1e-6
    m = (rng.standard_normal(size) * 0.1).astype(dtype)
    v = (rng.random(size) * 0.01).astype(dtype)
    return params, grad, m, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size, n_decayed", [(1, 0), (1, 1), (17, 9), (1000, 0), (4097, 4097), (10_000, 6_123)])
def test_compiled_and_numpy_steps_give_the_same_bits(dtype, size, n_decayed):
    arrays = moments(dtype, size, seed=size + n_decayed)
    compiled = [a.copy() for a in arrays]
    constants = (0.9, 0.999, 1 - 3e-3 * 0.5, 1e-8 * math.sqrt(1 - 0.999 ** 3), 3e-3 * 0.07)
    for _ in range(3):  # the moments carry over: three steps
        optim.numpy_step(*arrays, n_decayed, *constants)
        optim.compiled_step(*compiled, n_decayed, *constants)
    for name, ours, theirs in zip(("params", "grad", "m", "v"), arrays, compiled):
        assert ours.dtype == theirs.dtype == dtype
        assert np.array_equal(ours, theirs), name


def test_a_step_is_adams_update_with_decoupled_weight_decay():
    params = np.array([1.0, -2.0, 0.5])
    grad = np.array([0.3, -0.1, 0.0])
    optimizer = AdamW(params, 2, learning_rate=0.01, weight_decay=0.5)
    optimizer.step(grad)
    # first step: m / (1 - beta1) = g and v / (1 - beta2) = g^2, so the update is lr * g / (|g| + eps)
    expected = np.array([1.0 * (1 - 0.005), -2.0 * (1 - 0.005), 0.5]) - 0.01 * grad / (np.abs(grad) + 1e-8)
    assert np.allclose(params, expected, rtol=1e-9, atol=1e-12)
    assert optimizer.steps == 1 and np.allclose(optimizer.m, 0.1 * grad) and np.allclose(optimizer.v, 0.001 * grad ** 2)


def overlapping(size, shift):
    """Two float32 vectors of ``size`` in one buffer, the second starting ``shift`` entries on."""
    shared = np.random.default_rng(shift).random(size + shift).astype(np.float32)
    return shared[:size], shared[shift:]


@pytest.mark.parametrize("swap, error, message", [
    (lambda a: [a[0][:, np.newaxis], *a[1:]], TypeError, "params must be a 1-d float32 or float64 array"),
    (lambda a: [a[0], a[1].astype(np.float64), *a[2:]], ValueError, "grad must have params' dtype and length"),
    (lambda a: [*a[:2], a[2][:-1], a[3]], ValueError, "m must have params' dtype and length"),
    (lambda a: [*a[:3], a[3].astype(np.int32)], TypeError, "v must be a 1-d float32 or float64 array"),
    (lambda a: [a[0].astype(">f4"), *a[1:]], TypeError, "params must be a 1-d float32 or float64 array"),
    (lambda a: [*a[:3], a[3][::2]], ValueError, "not C-contiguous"),  # numpy refuses the buffer
    (lambda a: [a[0], a[1], a[2], bytes(len(a[3]) * 4)], BufferError, "not writable"),
    (lambda a: [a[0], a[1], a[2], a[2]], ValueError, "m and v share memory"),
    (lambda a: [a[0], a[1], *overlapping(64, 30)], ValueError, "m and v share memory"),
    (lambda a: [*overlapping(64, 63), *a[2:]], ValueError, "params and grad share memory"),
])
def test_the_compiled_step_refuses_arrays_it_cannot_update_and_leaves_them_unchanged(swap, error, message):
    arrays = swap(list(moments(np.float32, 64, seed=1)))
    kept = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]
    with pytest.raises(error, match=message):
        optim.compiled_step(*arrays, 0, 0.9, 0.999, 1.0, 1e-8, 1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, kept) if isinstance(a, np.ndarray))


@pytest.mark.parametrize("n_decayed", [-1, 65])
def test_the_compiled_step_refuses_a_decayed_count_outside_the_vector(n_decayed):
    arrays = moments(np.float32, 64, seed=2)
    kept = [a.copy() for a in arrays]
    with pytest.raises(ValueError, match=rf"n_decayed must be in \[0, 64\], got {n_decayed}"):
        optim.compiled_step(*arrays, n_decayed, 0.9, 0.999, 1.0, 1e-8, 1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, kept))


@pytest.mark.parametrize("normalization", ["batchnorm", "dropout"])
def test_a_network_trains_to_the_same_weights_with_either_step(monkeypatch, normalization):
    from cerebros.network import CerebrosNetwork
    from cerebros.space import SearchSpace
    candidate = SearchSpace(minimum_levels=2, normalizations=(normalization,)).sample(np.random.default_rng(3), 5)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    weights = []
    for step in (optim.numpy_step, optim.compiled_step):
        monkeypatch.setattr(optim, "STEP", step)
        network = CerebrosNetwork(candidate, random_state=0).fit(X[:200], y[:200], X[200:], y[200:], epochs=5)
        assert network.n_epochs_trained_ >= 1 and network.history_[0]["train_loss"] > 0  # it did train
        weights.append({name: array.copy() for name, array in network.parameters().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][name], weights[1][name]) for name in weights[0])
