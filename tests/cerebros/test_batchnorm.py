"""Batch norm's passes: the compiled and numpy ones give the same bits; they standardise and
differentiate as batch norm does; bad arrays are refused and left unchanged."""
import numpy as np
import pytest

from cerebros import batchnorm

REST, EPS = 1 - 0.9, 1e-5


def test_the_compiled_passes_are_built_and_in_use():
    assert batchnorm.compiled_forward is not None and batchnorm.compiled_backward is not None, (
        "cerebros._batchnorm is not built: install a C compiler and the Python headers, then `pip install -e .` again")
    assert batchnorm.FORWARD is batchnorm.compiled_forward and batchnorm.BACKWARD is batchnorm.compiled_backward


def batch(dtype, rows, width, seed, columns_before=0):
    """A (rows, width) batch of mixed scales, as a column slice of a wider array when
    ``columns_before`` (its rows then lie apart in memory, as a consumer's input gradient does)."""
    rng = np.random.default_rng(seed)
    wide = (rng.standard_normal((rows, columns_before + width)) * rng.choice([1e-3, 1.0, 1e3], width + columns_before)
            + rng.standard_normal(columns_before + width) * 10).astype(dtype)
    return wide[:, columns_before:]


def forward_with(step, values):
    rows, width = values.shape
    out, inv_std = np.empty((rows, width), values.dtype), np.empty(width, values.dtype)
    running_mean = np.linspace(-1, 1, width).astype(values.dtype)
    running_var = np.linspace(0.5, 2, width).astype(values.dtype)
    step(values, out, inv_std, running_mean, running_var, REST, EPS)
    return out, inv_std, running_mean, running_var


def backward_with(step, d_out, xhat, inv_std):
    out = np.empty(d_out.shape, d_out.dtype)
    step(d_out, xhat, inv_std, out)
    return out


SHAPES = [(1, 1), (1, 7), (2, 3), (31, 1), (74, 124), (300, 5), (1000, 33), (4097, 17)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("columns_before", [0, 3])
def test_compiled_and_numpy_passes_give_the_same_bits(dtype, rows, width, columns_before):
    values = batch(dtype, rows, width, seed=rows + width, columns_before=columns_before)
    ours = forward_with(batchnorm.numpy_forward, values)
    theirs = forward_with(batchnorm.compiled_forward, values)
    for name, a, b in zip(("out", "inv_std", "running_mean", "running_var"), ours, theirs):
        assert a.dtype == b.dtype == dtype
        assert np.array_equal(a, b), name
    xhat, inv_std = ours[0], ours[1]
    d_out = batch(dtype, rows, width, seed=rows * width + 1, columns_before=columns_before)
    ours = backward_with(batchnorm.numpy_backward, d_out, xhat, inv_std)
    theirs = backward_with(batchnorm.compiled_backward, d_out, xhat, inv_std)
    assert ours.dtype == theirs.dtype == dtype
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("step", ["numpy", "compiled"])
def test_the_forward_pass_standardises_with_the_batch_statistics(step):
    forward = getattr(batchnorm, f"{step}_forward")
    values = batch(np.float64, 200, 6, seed=1)
    out, inv_std, running_mean, running_var = forward_with(forward, values)
    mean, var = values.mean(axis=0), values.var(axis=0)
    assert np.allclose(out, (values - mean) / np.sqrt(var + EPS), rtol=1e-9, atol=1e-12)
    assert np.allclose(inv_std, 1 / np.sqrt(var + EPS), rtol=1e-12)
    start_mean, start_var = np.linspace(-1, 1, 6), np.linspace(0.5, 2, 6)
    assert np.allclose(running_mean, 0.9 * start_mean + 0.1 * mean, rtol=1e-12)
    assert np.allclose(running_var, 0.9 * start_var + 0.1 * var, rtol=1e-12)


@pytest.mark.parametrize("step", ["numpy", "compiled"])
def test_the_backward_pass_is_the_forward_pass_derivative(step):
    """Against central differences of sum(d_out * forward(values)) in float64."""
    values, d_out = batch(np.float64, 9, 4, seed=2), batch(np.float64, 9, 4, seed=3)

    def loss(v):
        return float(np.sum(d_out * forward_with(batchnorm.numpy_forward, v)[0]))

    xhat, inv_std = forward_with(batchnorm.numpy_forward, values)[:2]
    got = backward_with(getattr(batchnorm, f"{step}_backward"), d_out, xhat, inv_std)
    expected = np.empty_like(values)
    for index in np.ndindex(values.shape):
        h = 1e-6 * max(1.0, abs(values[index]))
        up, down = values.copy(), values.copy()
        up[index] += h
        down[index] -= h
        expected[index] = (loss(up) - loss(down)) / (2 * h)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def forward_arrays(dtype=np.float32, rows=8, width=5):
    values = batch(dtype, rows, width, seed=4)
    return [values, np.full((rows, width), 7, dtype), np.full(width, 3, dtype), np.zeros(width, dtype),
            np.ones(width, dtype)]


@pytest.mark.parametrize("swap, error, message", [
    (lambda a: [a[0][0], *a[1:]], TypeError, "values must be a 2-d float32 or float64 array"),
    (lambda a: [a[0], a[1], a[2][np.newaxis], *a[3:]], TypeError, "inv_std must be a 1-d float32 or float64 array"),
    (lambda a: [a[0].astype(np.int32), *a[1:]], TypeError, "values must be a 2-d float32 or float64 array"),
    (lambda a: [a[0].astype(">f4"), *a[1:]], TypeError, "values must be a 2-d float32 or float64 array"),
    (lambda a: [a[0], a[1].astype(np.float64), *a[2:]], TypeError, "out must have values's dtype"),
    (lambda a: [a[0], a[1][:-1], *a[2:]], ValueError, "out's shape does not match values's"),
    (lambda a: [*a[:3], a[3][:-1], a[4]], ValueError, "running_mean's shape does not match values's"),
    (lambda a: [a[0][:, ::2], a[1][:, ::2], a[2][:3], a[3][:3], a[4][:3]], ValueError,
     "values must hold each row's entries adjacent"),
    (lambda a: [a[0][::-1], *a[1:]], ValueError, "values must hold each row's entries adjacent, rows apart and in order"),
    (lambda a: [a[0][:0], a[1][:0], *a[2:]], ValueError, "values must have at least one row and one column"),
    (lambda a: [a[0], a[1], a[2], bytes(20), a[4]], BufferError, "not writable"),
    (lambda a: [a[0], a[0], *a[2:]], ValueError, "values and out share memory"),
    (lambda a: [a[0], a[1], a[2], a[3], a[3]], ValueError, "running_mean and running_var share memory"),
    (lambda a: [a[0], a[1], a[1][2], a[3], a[4]], ValueError, "out and inv_std share memory"),
])
def test_the_compiled_forward_refuses_arrays_it_cannot_use_and_leaves_them_unchanged(swap, error, message):
    arrays = swap(forward_arrays())
    kept = [np.array(a, copy=True) if isinstance(a, np.ndarray) else a for a in arrays]
    with pytest.raises(error, match=message):
        batchnorm.compiled_forward(*arrays, REST, EPS)
    assert all(np.array_equal(a, b) for a, b in zip(arrays, kept) if isinstance(a, np.ndarray))


def test_the_compiled_backward_refuses_an_output_sharing_the_gradient_it_reads():
    values = batch(np.float32, 8, 5, seed=5)
    xhat, inv_std = forward_with(batchnorm.compiled_forward, values)[:2]
    d_out = batch(np.float32, 8, 5, seed=6)
    kept = d_out.copy()
    with pytest.raises(ValueError, match="d_out and out share memory"):
        batchnorm.compiled_backward(d_out, xhat, inv_std, d_out)
    with pytest.raises(ValueError, match="inv_std's shape does not match d_out's"):
        batchnorm.compiled_backward(d_out, xhat, inv_std[:4], np.empty_like(d_out))
    assert np.array_equal(d_out, kept)


def test_a_network_trains_to_the_same_weights_with_either_pair_of_passes(monkeypatch):
    from cerebros.network import CerebrosNetwork
    from cerebros.space import SearchSpace
    candidate = SearchSpace(minimum_levels=2, normalizations=("batchnorm",)).sample(np.random.default_rng(3), 5)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((300, 5))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(int)
    weights = []
    for kind in ("numpy", "compiled"):
        monkeypatch.setattr(batchnorm, "FORWARD", getattr(batchnorm, f"{kind}_forward"))
        monkeypatch.setattr(batchnorm, "BACKWARD", getattr(batchnorm, f"{kind}_backward"))
        network = CerebrosNetwork(candidate, random_state=0).fit(X[:200], y[:200], X[200:], y[200:], epochs=5)
        assert network.n_epochs_trained_ >= 1 and network.history_[0]["train_loss"] > 0  # it did train
        weights.append({name: array.copy() for name, array in network.parameters().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(np.array_equal(weights[0][name], weights[1][name]) for name in weights[0])
