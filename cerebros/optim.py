"""AdamW: Adam with weight decay decoupled from the gradient (Loshchilov & Hutter), in place on a flat vector.

The step runs in ``cerebros._adamw`` (C, one pass over the vectors) when it was built, else in
``numpy_step``; both give the same values bit for bit (``STEP`` is the one in use).
"""
import math
from typing import Any, Callable, Optional

import numpy as np
from numpy.typing import NDArray

Step = Callable[[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], int, float, float, float, float, float],
                None]


def numpy_step(params: NDArray[Any], grad: NDArray[Any], m: NDArray[Any], v: NDArray[Any], n_decayed: int,
               beta1: float, beta2: float, decay: float, eps: float, step_size: float) -> None:
    """One update in place: ``m``, ``v`` are the moments; the first ``n_decayed`` parameters are
    multiplied by ``decay``; ``eps`` and ``step_size`` carry the bias corrections."""
    tmp = np.multiply(grad, 1 - beta1)
    m *= beta1
    m += tmp
    np.multiply(grad, grad, out=tmp)
    tmp *= 1 - beta2
    v *= beta2
    v += tmp
    params[:n_decayed] *= decay
    np.sqrt(v, out=tmp)
    tmp += eps
    np.divide(m, tmp, out=tmp)
    tmp *= step_size
    params -= tmp


compiled_step: Optional[Step] = None
try:
    from ._adamw import adamw_step
except ImportError:  # built without a C compiler: the numpy step, same values
    pass
else:
    compiled_step = adamw_step
STEP: Step = compiled_step or numpy_step


class AdamW:
    """Updates ``params`` (one flat array, changed in place) from a gradient of the same shape.

    Only the first ``n_decayed`` entries (the weight matrices; not biases or batch-norm
    scales and shifts) are shrunk by weight decay, as ``p *= 1 - learning_rate * weight_decay``
    each step, independent of the gradient's scale. One flat vector means one call per step
    however many layers there are.
    """

    def __init__(self, params: NDArray[Any], n_decayed: int, *, learning_rate: float, weight_decay: float,
                 beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        if params.ndim != 1 or not 0 <= n_decayed <= params.size:
            raise ValueError(f"AdamW: params must be 1-d with n_decayed in [0, {params.size}], got {n_decayed}")
        self.params = params
        self.n_decayed = n_decayed
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros_like(params)
        self.v = np.zeros_like(params)
        self.steps = 0

    def step(self, grad: NDArray[Any]) -> None:
        """One update from ``grad`` (same shape as ``params``)."""
        self.steps += 1
        # bias corrections folded into the step size and eps, so no corrected copies of m and v are made
        correction = math.sqrt(1 - self.beta2 ** self.steps)
        step_size = self.learning_rate * correction / (1 - self.beta1 ** self.steps)
        STEP(self.params, grad, self.m, self.v, self.n_decayed, self.beta1, self.beta2,
             1 - self.learning_rate * self.weight_decay, self.eps * correction, step_size)
