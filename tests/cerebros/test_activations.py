"""Every activation against its textbook formula: values, slopes, dtypes, large inputs."""
import numpy as np
import pytest

from cerebros.activations import ACTIVATIONS

SELU_ALPHA, SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def reference(name, z):
    """The activation written plainly, in float64."""
    gelu_inner = np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3))
    return {
        "elu": np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
        "gelu": 0.5 * z * (1 + gelu_inner),
        "relu": np.where(z > 0, z, 0.0),
        "leaky_relu": np.where(z > 0, z, 0.01 * z),
        "selu": SELU_SCALE * np.where(z > 0, z, SELU_ALPHA * np.expm1(np.minimum(z, 0))),
        "swish": z / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "sigmoid": 1 / (1 + np.exp(-z)),
        "softplus": np.logaddexp(0, z),
    }[name]


GRID = np.concatenate([np.linspace(-8, 8, 1601), [-1e4, -100.0, -30.0, 30.0, 100.0, 1e4]])


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_forward_and_slope_match_the_formula_and_keep_the_input_and_its_dtype(name, dtype):
    forward, forward_and_slope, _ = ACTIVATIONS[name]
    z = GRID.astype(dtype)
    kept = z.copy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, (trained, slope) = forward(z), forward_and_slope(z)
    with np.errstate(over="ignore"):
        expected = reference(name, GRID)
    assert np.array_equal(z, kept), "an activation changed its input"
    assert value.dtype == trained.dtype == slope.dtype == dtype and value.shape == slope.shape == z.shape
    assert np.array_equal(value, trained)  # training and inference compute the same activation
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    assert np.allclose(value, expected, rtol=tolerance * 10, atol=tolerance)
    # the slope against central differences of the formula, away from the kinks at 0
    h = 1e-6 * np.maximum(1, np.abs(GRID))
    smooth = np.abs(GRID) > 1e-3
    with np.errstate(over="ignore"):
        numeric = (reference(name, GRID + h) - reference(name, GRID - h)) / (2 * h)
    # float32 rounds 1 + tanh near -1 (gelu below -5): an absolute error of a few 1e-6 there
    assert np.allclose(slope[smooth], numeric[smooth], rtol=1e-5 if dtype == np.float64 else 1e-4,
                       atol=1e-7 if dtype == np.float64 else 5e-6)
    assert np.all(np.isfinite(slope))
