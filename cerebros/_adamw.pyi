from typing import Any

from numpy.typing import NDArray

def adamw_step(params: NDArray[Any], grad: NDArray[Any], m: NDArray[Any], v: NDArray[Any], n_decayed: int,
               beta1: float, beta2: float, decay: float, eps: float, step_size: float, /) -> None: ...
