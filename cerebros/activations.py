"""Activation functions and their slopes, vectorised over numpy arrays.

Each entry of ``ACTIVATIONS`` is ``(forward, forward_and_slope, init_gain)``: ``forward(z) -> a``
at inference; ``forward_and_slope(z) -> (a, da/dz)`` while training, so the slope shares the
forward pass's work (gelu's tanh, swish's sigmoid) and the backward pass is one multiply;
``init_gain`` picks the weight initialisation that keeps activations' variance stable
(``"he"`` for rectifier-like functions, ``"glorot"`` for saturating ones, ``"lecun"`` for selu).
None changes its input. All work in the array's own dtype (float32 stays float32), in a few
whole-array passes each: on training-sized arrays a ``np.where`` over computed branches or a
float32 ``np.logaddexp`` cost more than the layer's matrix product (docs/benchmarks.md, trial cost),
and so do ``np.expm1`` and ``np.log1p`` where numpy has no vector code for them (without
AVX-512: an entry at a time, 5-8 times ``np.exp`` and ``np.log``), so elu, selu and softplus
use the latter, at the cost of digits below an ulp of 1.
"""
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_GELU_C = 0.7978845608028654  # sqrt(2 / pi), for the tanh approximation of gelu
_GELU_CUBIC = 0.044715
_LEAKY_SLOPE = 0.01


def _elu_parts(z: Array) -> tuple[Array, Array]:
    """elu(z) and its slope, exp(min(z, 0))."""
    slope = np.minimum(z, 0)
    np.exp(slope, out=slope)
    a = np.subtract(slope, 1)
    # exp(z) - 1 >= z for z <= 0 and 0 < z for z > 0, so the maximum is elu; near 0, where
    # exp(z) - 1 loses digits (an ulp of 1; expm1 would keep them at four times the cost), z wins
    return np.maximum(a, z, out=a), slope


def _elu(z: Array) -> Array:
    return _elu_parts(z)[0]


def _relu(z: Array) -> Array:
    return np.maximum(z, 0)


def _relu_train(z: Array) -> tuple[Array, Array]:
    return _relu(z), np.greater(z, 0).astype(z.dtype)


def _leaky_relu(z: Array) -> Array:
    # the slope is below 1, so the larger of z and slope * z is z above 0 and slope * z below
    return np.maximum(z, _LEAKY_SLOPE * z)


def _leaky_relu_train(z: Array) -> tuple[Array, Array]:
    slope = np.greater(z, 0).astype(z.dtype)
    slope *= 1 - _LEAKY_SLOPE
    slope += _LEAKY_SLOPE
    return _leaky_relu(z), slope


def _selu_parts(z: Array) -> tuple[Array, Array]:
    """selu(z) and exp(min(z, 0)) (1 for z >= 0)."""
    exp_negative = np.minimum(z, 0)
    np.exp(exp_negative, out=exp_negative)
    a = np.subtract(exp_negative, 1)  # alpha times this is the negative part before scaling
    a *= _SELU_ALPHA
    a += np.maximum(z, 0)
    a *= _SELU_SCALE
    return a, exp_negative


def _selu(z: Array) -> Array:
    return _selu_parts(z)[0]


def _selu_train(z: Array) -> tuple[Array, Array]:
    a, exp_negative = _selu_parts(z)
    # over scale, the slope is 1 above 0 and alpha * exp(z) below, so it is
    # (1 - alpha) [z > 0] + alpha * exp(min(z, 0)), in passes cheaper than a masked copy
    slope = np.greater(z, 0).astype(z.dtype)
    slope *= (1 - _SELU_ALPHA) * _SELU_SCALE
    exp_negative *= _SELU_ALPHA * _SELU_SCALE
    slope += exp_negative
    return a, slope


def _gelu_parts(z: Array) -> tuple[Array, Array, Array]:
    """gelu(z), (1 + t) / 2 and z * z, where t = tanh(C (z + 0.044715 z^3))."""
    squared = z * z
    t = squared * _GELU_CUBIC
    t += 1
    t *= z
    t *= _GELU_C
    np.tanh(t, out=t)
    half = np.add(t, 1, out=t)
    half *= 0.5
    return z * half, half, squared


def _gelu(z: Array) -> Array:
    return _gelu_parts(z)[0]


def _gelu_train(z: Array) -> tuple[Array, Array]:
    a, half, squared = _gelu_parts(z)
    # d/dz of z (1 + t) / 2 is (1 + t) / 2 + z (1 - t^2) C (1 + 3 * 0.044715 z^2) / 2, and
    # (1 - t^2) / 2 = 2 half (1 - half)
    slope = np.subtract(1, half)
    slope *= half
    slope *= z
    squared *= 3 * _GELU_CUBIC * 2 * _GELU_C
    squared += 2 * _GELU_C
    slope *= squared
    slope += half
    return a, slope


def _sigmoid(z: Array) -> Array:
    # tanh form: no overflow warnings for large |z|, unlike 1 / (1 + exp(-z))
    s = np.multiply(z, 0.5)
    np.tanh(s, out=s)
    s += 1
    s *= 0.5
    return s


def _sigmoid_train(z: Array) -> tuple[Array, Array]:
    s = _sigmoid(z)
    slope = np.subtract(1, s)
    slope *= s
    return s, slope


def _tanh_train(z: Array) -> tuple[Array, Array]:
    a = np.tanh(z)
    slope = a * a
    return a, np.subtract(1, slope, out=slope)


def _swish(z: Array) -> Array:
    return z * _sigmoid(z)


def _swish_train(z: Array) -> tuple[Array, Array]:
    s = _sigmoid(z)
    a = z * s
    slope = np.subtract(1, s)  # slope = s + a (1 - s)
    slope *= a
    slope += s
    return a, slope


def _softplus(z: Array) -> Array:
    # log(1 + exp(z)) = max(z, 0) + log(1 + exp(-|z|)): no overflow, and in z's dtype; log1p
    # would keep the last digits of a term below an ulp of 1 at five times the cost
    a = np.abs(z)
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    np.log(a, out=a)
    a += np.maximum(z, 0)
    return a


def _softplus_train(z: Array) -> tuple[Array, Array]:
    return _softplus(z), _sigmoid(z)


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array], tuple[Array, Array]], str]] = {
    "elu": (_elu, _elu_parts, "he"),
    "gelu": (_gelu, _gelu_train, "he"),
    "relu": (_relu, _relu_train, "he"),
    "leaky_relu": (_leaky_relu, _leaky_relu_train, "he"),
    "selu": (_selu, _selu_train, "lecun"),
    "swish": (_swish, _swish_train, "he"),
    "tanh": (np.tanh, _tanh_train, "glorot"),
    "sigmoid": (_sigmoid, _sigmoid_train, "glorot"),
    "softplus": (_softplus, _softplus_train, "glorot"),
}
