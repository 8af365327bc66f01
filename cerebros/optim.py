"""AdamW: Adam with weight decay decoupled from the gradient (Loshchilov & Hutter), in place on a flat vector."""
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray


class AdamW:
    """Updates ``params`` (one flat array, changed in place) from a gradient of the same shape.

    Only the first ``n_decayed`` entries (the weight matrices; not biases or batch-norm
    scales and shifts) are shrunk by weight decay, as ``p *= 1 - learning_rate * weight_decay``
    each step, independent of the gradient's scale. One flat vector means a dozen numpy
    calls per step however many layers there are.
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
        self._scratch = np.empty_like(params)
        self.steps = 0

    def step(self, grad: NDArray[Any]) -> None:
        """One update from ``grad`` (same shape as ``params``)."""
        self.steps += 1
        b1, b2, m, v, tmp = self.beta1, self.beta2, self.m, self.v, self._scratch
        # bias corrections folded into the step size, so no corrected copies of m and v are made
        correction = math.sqrt(1 - b2 ** self.steps)
        step_size = self.learning_rate * correction / (1 - b1 ** self.steps)
        m *= b1
        np.multiply(grad, 1 - b1, out=tmp)
        m += tmp
        v *= b2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - b2
        v += tmp
        self.params[:self.n_decayed] *= 1 - self.learning_rate * self.weight_decay
        np.sqrt(v, out=tmp)
        tmp += self.eps * correction
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        self.params -= tmp
