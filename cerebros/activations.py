"""Activation functions and their derivatives, vectorised over numpy arrays.

Each entry of ``ACTIVATIONS`` is ``(forward, derivative, init_gain)``: ``forward(z) -> a``;
``derivative(z, a) -> da/dz`` (it gets both so it can reuse the forward result);
``init_gain`` picks the weight initialisation that keeps activations' variance stable
(``"he"`` for rectifier-like functions, ``"glorot"`` for saturating ones, ``"lecun"`` for selu).
All work in the array's own dtype (float32 stays float32).
"""
from typing import Any, Callable

import numpy as np
from numpy.typing import NDArray

Array = NDArray[Any]

_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_GELU_C = 0.7978845608028654  # sqrt(2 / pi), for the tanh approximation of gelu
_LEAKY_SLOPE = 0.01


def _sigmoid(z: Array) -> Array:
    # tanh form: no overflow warnings for large |z|, unlike 1 / (1 + exp(-z))
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _elu(z: Array) -> Array:
    # expm1(min(z, 0)) >= z everywhere, with equality only at 0, so the maximum picks z for z > 0:
    # two array passes instead of a where over two computed branches
    a = np.expm1(np.minimum(z, 0))
    return np.maximum(a, z, out=a)


def _elu_grad(z: Array, a: Array) -> Array:
    # a + 1 is exp(z) <= 1 for z <= 0 and above 1 for z > 0, where the slope is 1
    grad = a + 1.0
    return np.minimum(grad, 1.0, out=grad)


def _relu(z: Array) -> Array:
    return np.maximum(z, 0)


def _relu_grad(z: Array, a: Array) -> Array:
    return (z > 0).astype(z.dtype)


def _leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, _LEAKY_SLOPE * z)


def _leaky_relu_grad(z: Array, a: Array) -> Array:
    return np.where(z > 0, 1.0, _LEAKY_SLOPE).astype(z.dtype, copy=False)


def _selu(z: Array) -> Array:
    return _SELU_SCALE * np.where(z > 0, z, _SELU_ALPHA * np.expm1(np.minimum(z, 0)))


def _selu_grad(z: Array, a: Array) -> Array:
    return np.where(z > 0, _SELU_SCALE, a + _SELU_SCALE * _SELU_ALPHA).astype(z.dtype, copy=False)


def _gelu_inner(z: Array) -> Array:
    return np.tanh(_GELU_C * (z + 0.044715 * (z * z * z)))  # z * z * z: float32 ** 3 is ~100x slower


def _gelu(z: Array) -> Array:
    return 0.5 * z * (1.0 + _gelu_inner(z))


def _gelu_grad(z: Array, a: Array) -> Array:
    t = _gelu_inner(z)
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * _GELU_C * (1.0 + 3 * 0.044715 * z * z)


def _tanh_grad(z: Array, a: Array) -> Array:
    return 1.0 - a * a


def _sigmoid_grad(z: Array, a: Array) -> Array:
    return a * (1.0 - a)


def _swish(z: Array) -> Array:
    return z * _sigmoid(z)


def _swish_grad(z: Array, a: Array) -> Array:
    s = _sigmoid(z)
    return s + a * (1.0 - s)


def _softplus(z: Array) -> Array:
    return np.logaddexp(0, z).astype(z.dtype, copy=False)


def _softplus_grad(z: Array, a: Array) -> Array:
    return _sigmoid(z)


ACTIVATIONS: dict[str, tuple[Callable[[Array], Array], Callable[[Array, Array], Array], str]] = {
    "elu": (_elu, _elu_grad, "he"),
    "gelu": (_gelu, _gelu_grad, "he"),
    "relu": (_relu, _relu_grad, "he"),
    "leaky_relu": (_leaky_relu, _leaky_relu_grad, "he"),
    "selu": (_selu, _selu_grad, "lecun"),
    "swish": (_swish, _swish_grad, "he"),
    "tanh": (np.tanh, _tanh_grad, "glorot"),
    "sigmoid": (_sigmoid, _sigmoid_grad, "glorot"),
    "softplus": (_softplus, _softplus_grad, "glorot"),
}
