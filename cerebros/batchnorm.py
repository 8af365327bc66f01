"""Batch normalisation's training passes over one node's (rows, width) output, in place.

The passes run in ``cerebros._batchnorm`` (C, one call a direction) when it was built, else
in ``numpy_forward`` / ``numpy_backward``; both give the same values bit for bit
(``FORWARD`` and ``BACKWARD`` are the ones in use). Evaluation uses the running statistics
and needs neither.
"""
from typing import Any, Callable, Optional

import numpy as np
from numpy.typing import NDArray

Forward = Callable[[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any], float, float], None]
Backward = Callable[[NDArray[Any], NDArray[Any], NDArray[Any], NDArray[Any]], None]


def column_sums(array: NDArray[Any]) -> NDArray[Any]:
    """Each column's sum, added row after row from the first row, whatever the layout
    (``np.add.reduce`` sums a column pairwise when its entries are adjacent in memory)."""
    return np.add.accumulate(array, axis=0)[-1]


def numpy_forward(values: NDArray[Any], out: NDArray[Any], inv_std: NDArray[Any], running_mean: NDArray[Any],
                  running_var: NDArray[Any], rest: float, eps: float) -> None:
    """Write ``values`` standardised by the batch's mean and (biased) variance into ``out``,
    and 1 / sqrt(variance + ``eps``) into ``inv_std``; move each running statistic ``rest`` of
    the way to the batch's."""
    rows = len(values)
    mean = column_sums(values)
    mean /= rows
    np.subtract(values, mean, out=out)
    var = column_sums(out * out)
    var /= rows
    running_mean += rest * (mean - running_mean)
    running_var += rest * (var - running_var)
    np.divide(1.0, np.sqrt(var + eps), out=inv_std)
    out *= inv_std


def numpy_backward(d_out: NDArray[Any], xhat: NDArray[Any], inv_std: NDArray[Any], out: NDArray[Any]) -> None:
    """Write into ``out`` the loss's gradient with respect to a node's values, given ``d_out``,
    its gradient with respect to ``xhat``, the values as ``numpy_forward`` standardised them."""
    rows = len(d_out)
    mean_d = column_sums(d_out)
    mean_d /= rows
    mean_dx = column_sums(d_out * xhat)
    mean_dx /= rows
    np.subtract(d_out, mean_d, out=out)
    out -= xhat * mean_dx
    out *= inv_std


compiled_forward: Optional[Forward] = None
compiled_backward: Optional[Backward] = None
try:
    from ._batchnorm import backward, forward
except ImportError:  # built without a C compiler: the numpy passes, same values
    pass
else:
    compiled_forward, compiled_backward = forward, backward
FORWARD: Forward = compiled_forward or numpy_forward
BACKWARD: Backward = compiled_backward or numpy_backward
