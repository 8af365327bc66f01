from typing import Any

from numpy.typing import NDArray

def forward(values: NDArray[Any], out: NDArray[Any], inv_std: NDArray[Any], running_mean: NDArray[Any],
            running_var: NDArray[Any], rest: float, eps: float, /) -> None: ...
def backward(d_out: NDArray[Any], xhat: NDArray[Any], inv_std: NDArray[Any], out: NDArray[Any], /) -> None: ...
