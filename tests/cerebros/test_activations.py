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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_near_zero_the_exponential_forms_keep_order_sign_and_an_ulp_of_one(dtype):
    # elu, selu and softplus use exp(z) - 1 and log(1 + exp(-|z|)) for speed, not expm1 and
    # log1p: below an ulp of 1 their last digits go, but never the bounds that make them
    # activations: elu(z) between z and 0 for z <= 0, selu(z) / scale between alpha z and 0,
    # softplus above max(z, 0), each slope in its range, and nothing off by more than an ulp of 1
    magnitudes = np.logspace(-30, 0, 301)
    z = np.concatenate([-magnitudes, [0.0], magnitudes]).astype(dtype)
    ulp = np.finfo(dtype).eps
    negative = z <= 0
    elu, elu_slope = ACTIVATIONS["elu"][1](z)
    assert np.all((elu[negative] >= z[negative]) & (elu[negative] <= 0)) and np.array_equal(elu[~negative], z[~negative])
    assert np.all((elu_slope > 0) & (elu_slope <= 1))
    selu, selu_slope = ACTIVATIONS["selu"][1](z)
    scaled = selu / dtype(SELU_SCALE)
    assert np.all((scaled[negative] >= dtype(SELU_ALPHA) * z[negative] - ulp) & (scaled[negative] <= 0))
    assert np.all(selu_slope > 0)
    softplus, softplus_slope = ACTIVATIONS["softplus"][1](z)
    assert np.all(softplus >= np.maximum(z, 0)) and np.all((softplus_slope > 0) & (softplus_slope < 1))
    with np.errstate(over="ignore"):
        exact = {name: reference(name, z.astype(np.float64)) for name in ("elu", "selu", "softplus")}
    for name, value in (("elu", elu), ("selu", selu), ("softplus", softplus)):
        assert np.max(np.abs(value - exact[name])) <= 2 * ulp, name
