"""Parzen estimators for the TPE strategy (Bergstra et al., 2011): one parameter's density
fitted to weighted observations, sampled and scored to suggest the parameter's next value.

A numeric parameter lives on an interval ``[low, high]`` of its own scale: the logarithm for
log-uniform parameters, and integers widened by half a step each side, so that rounding gives
every integer an equal share. Its estimator is a mixture of normal kernels truncated to the
interval: one kernel per observed value, weighted by its observations, and a prior kernel at
the interval's centre, as wide as the interval, with weight ``PRIOR_WEIGHT``, so that no
value loses all density. Each value's kernel is as wide as the larger gap to its neighbours
(the interval's ends bound the outermost ones), clipped to ``[width / min(100, n + 1),
width]`` for ``n`` kernels: wide where observations are sparse, narrow where they cluster. A
choice's estimator is the weighted count of each option, plus ``PRIOR_WEIGHT`` shared by all.

``NumericParameter`` and ``ChoiceParameter`` fit both estimators of one parameter, ``l`` to
the good trials' values and ``g`` to the others'; each ``suggest`` draws candidates from ``l``
and returns the one with the highest ``l / g``.
"""
import math

from typing import Any, Protocol, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

Array = NDArray[Any]
# Observations: their values and their weights.
Observed = tuple[Sequence[Any], Sequence[float]]

PRIOR_WEIGHT = 1.0


class NumericParzen:
    """A truncated-normal mixture on ``[low, high]`` (``low < high``) fitted to ``values`` (all
    within the interval) with ``weights``."""

    def __init__(self, values: ArrayLike, weights: ArrayLike, low: float, high: float) -> None:
        width = high - low
        # one kernel per distinct value, with their weights summed: integer parameters repeat
        # values often, and the kernels' cost grows with their number
        distinct, repeats = np.unique(np.asarray(values, dtype=np.float64), return_inverse=True)
        summed = np.bincount(repeats.ravel(), weights=np.asarray(weights, dtype=np.float64), minlength=len(distinct))
        centres = np.append(distinct, (low + high) / 2)
        order = np.argsort(centres, kind="stable")
        ordered = centres[order]
        bounds = np.concatenate([[low], ordered, [high]])
        gaps = np.maximum(ordered - bounds[:-2], bounds[2:] - ordered)
        sigmas = np.empty_like(centres)
        sigmas[order] = np.clip(gaps, width / min(100, len(centres) + 1), width)
        sigmas[-1] = width  # the prior
        with_prior = np.append(summed, PRIOR_WEIGHT)
        self.low, self.high = low, high
        self.centres, self.sigmas = centres, sigmas
        self.weights = with_prior / with_prior.sum()
        # each truncated kernel's normalising constant: its mass inside the interval
        mass = ndtr((high - centres) / sigmas) - ndtr((low - centres) / sigmas)
        self._log_norms = -np.log(sigmas * mass * math.sqrt(2 * math.pi))
        self._log_weights = np.log(self.weights)

    def sample(self, rng: np.random.Generator, size: int) -> Array:
        """``size`` draws: a kernel by weight, then a normal draw, redrawn while outside the interval."""
        kernels = rng.choice(len(self.centres), size=size, p=self.weights)
        draws = np.full(size, np.nan)
        outside = np.ones(size, dtype=bool)
        while outside.any():  # every kernel keeps at least a third of its mass inside
            draws[outside] = rng.normal(self.centres[kernels[outside]], self.sigmas[kernels[outside]])
            outside = (draws < self.low) | (draws > self.high)
        return draws

    def log_pdf(self, x: ArrayLike) -> Array:
        """The density's logarithm at each point of ``x`` (inside the interval)."""
        z = (np.asarray(x, dtype=np.float64)[:, np.newaxis] - self.centres) / self.sigmas
        return _log_sum_exp(-0.5 * z * z + self._log_norms + self._log_weights)


class ChoiceParzen:
    """Probabilities of ``n_options`` options: the weighted counts of the observed option
    indices ``indices``, plus the prior."""

    def __init__(self, indices: ArrayLike, weights: ArrayLike, n_options: int) -> None:
        counts = np.bincount(np.asarray(indices, dtype=np.int64), weights=np.asarray(weights, dtype=np.float64),
                             minlength=n_options)
        with_prior = counts + PRIOR_WEIGHT / n_options
        self.probabilities = with_prior / with_prior.sum()

    def sample(self, rng: np.random.Generator, size: int) -> Array:
        return rng.choice(len(self.probabilities), size=size, p=self.probabilities)

    def log_pdf(self, indices: ArrayLike) -> Array:
        return np.log(self.probabilities[np.asarray(indices)])


class NumericParameter:
    """A numeric parameter in ``[low, high]``, its two estimators fitted once to the ``good`` and
    ``bad`` observations (each a ``(values, weights)`` pair). ``log`` works on the logarithm
    (``low`` > 0); ``integer`` suggests ints."""

    def __init__(self, good: Observed, bad: Observed, low: float, high: float, *, log: bool = False,
                 integer: bool = False) -> None:
        self.low, self.high, self.log, self.integer = low, high, log, integer
        if low == high:
            return
        lo, hi = (low - 0.5, high + 0.5) if integer else (low, high)
        scale = np.log if log else np.asarray  # an integer range starts at 1 or more: low - 0.5 > 0
        lo, hi = (float(bound) for bound in scale([lo, hi]))
        self.good, self.bad = (NumericParzen(np.clip(scale(np.asarray(values, dtype=np.float64)), lo, hi),
                                             weights, lo, hi) for values, weights in (good, bad))

    def suggest(self, rng: np.random.Generator, n_candidates: int = 24) -> Union[int, float]:
        """Of ``n_candidates`` draws from the good observations' estimator, the one most likely
        under it relative to the bad ones'."""
        if self.low == self.high:
            return self.low
        draw = float(_most_promising(rng, self.good, self.bad, n_candidates))
        value = math.exp(draw) if self.log else draw
        if self.integer:
            return int(min(max(round(value), self.low), self.high))
        return float(min(max(value, self.low), self.high))


class ChoiceParameter:
    """A choice among ``options``, its two estimators fitted once to the ``good`` and ``bad``
    observations (``(values, weights)`` pairs, values being options)."""

    def __init__(self, good: Observed, bad: Observed, options: Sequence[Any]) -> None:
        index = {option: i for i, option in enumerate(options)}
        self.options = options
        self.good, self.bad = (ChoiceParzen([index[v] for v in values], weights, len(options))
                               for values, weights in (good, bad))

    def suggest(self, rng: np.random.Generator, n_candidates: int = 24) -> Any:
        """As ``NumericParameter.suggest``."""
        return self.options[int(_most_promising(rng, self.good, self.bad, n_candidates))]


class _Estimator(Protocol):
    def sample(self, rng: np.random.Generator, size: int) -> Array: ...

    def log_pdf(self, x: Array) -> Array: ...


def _most_promising(rng: np.random.Generator, good: _Estimator, bad: _Estimator, n_candidates: int) -> Any:
    draws = good.sample(rng, n_candidates)
    return draws[int(np.argmax(good.log_pdf(draws) - bad.log_pdf(draws)))]


def _log_sum_exp(values: Array) -> Array:
    top = values.max(axis=1)
    return top + np.log(np.exp(values - top[:, np.newaxis]).sum(axis=1))
