"""Search strategies, all behind one ask/tell interface (the style of Optuna's).

The strategies: ``random``, ``evolution``, ``successive_halving``, ``hyperband`` and ``tpe``
(Bayesian; its Parzen estimators are in ``cerebros.parzen``).

``strategy.ask()`` returns the next ``Trial`` to train, or None while the strategy needs
the results of trials it has handed out (a generation or rung is not finished yet, or, for
TPE, the result ``in_flight`` trials back); ``strategy.tell(trial, fitness)`` reports one
result, higher is better; ``-inf``, None or NaN for a failed trial, which is never an
elite, never promoted, never a parent while any trial of its generation succeeded, and
for TPE one of the worse trials. A strategy never decides when to stop: the study's
budgets do.

Reproducibility: a strategy draws from its own generator seeded from ``seed`` and only in
``ask`` (or when a barrier opens inside ``tell``, at a point fixed by the trial numbers),
so the same seed and the same results give the same trials whatever the number of trials
run at once, provided results are told in trial-number order.
"""
import inspect
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, TypeGuard

import numpy as np
from numpy.typing import NDArray

from codec.errors import FieldError

from . import parzen
from .space import Candidate, Hyper, SearchSpace

_STREAM = 0x5EA4C4  # keeps the strategy's random stream apart from the trials' streams
# The largest value of each size-like parameter. Candidates are drawn when asked for, so a
# strategy's memory grows with the trials run, whatever these are.
MAXIMA = {"population_size": 10_000, "n_configs": 100_000, "min_epochs": 100_000, "max_epochs": 100_000,
          "eta": 1_000, "n_startup_trials": 1_000_000, "n_ei_candidates": 10_000, "in_flight": 1_000}


@dataclass(frozen=True)
class Trial:
    """One training run: ``candidate`` trained for at most ``epochs`` epochs.

    ``generation`` is the evolution generation or the successive-halving rung (0 otherwise);
    ``bracket`` the successive-halving bracket (0 otherwise).
    """

    number: int
    candidate: Candidate
    epochs: int
    generation: int = 0
    bracket: int = 0


class Strategy:
    """Base class: numbering of trials and the strategy's random generator."""

    name = "strategy"

    def __init__(self, space: SearchSpace, n_inputs: int, seed: int) -> None:
        self.space = space
        self.n_inputs = n_inputs
        self.rng = np.random.default_rng([seed, _STREAM])
        self._next_number = 0

    def _trial(self, candidate: Candidate, epochs: Optional[int] = None, generation: int = 0,
               bracket: int = 0) -> Trial:
        trial = Trial(self._next_number, candidate, candidate.epochs if epochs is None else epochs,
                      generation, bracket)
        self._next_number += 1
        return trial

    def ask(self) -> Optional[Trial]:
        raise NotImplementedError

    def tell(self, trial: Trial, fitness: Optional[float]) -> None:
        """Record a result; the base strategy learns nothing from it."""

    @property
    def population_history(self) -> list[dict[str, Any]]:
        """One entry per generation (evolution only; empty otherwise)."""
        return []

    def params(self) -> dict[str, Any]:
        """The strategy's settings, defaults included (for the result and the summary)."""
        return {"strategy": self.name}

    def warnings(self, epoch_limit: Optional[int] = None) -> list[str]:
        """What the caller should know about these settings (texts; none by default), given
        ``epoch_limit``, the most epochs a fold network trains on the search's rows, if known."""
        return []


class RandomSearch(Strategy):
    """Independent samples from the search space."""

    name = "random"

    def ask(self) -> Optional[Trial]:
        return self._trial(self.space.sample(self.rng, self.n_inputs))


class Evolution(Strategy):
    """A generational genetic algorithm.

    Generation 0 is ``population_size`` random samples. Each later generation keeps the
    ``elite_size`` fittest members (not retrained; default ``default_elite_size``) and fills
    the rest with children: a parent chosen by softmax tournament, crossed with a second one
    with probability ``crossover_rate``, then mutated with per-gene rate ``mutation_rate``.
    The tournament picks member ``i`` with probability proportional to ``exp(z_i / tau)``,
    ``z`` being the fitness standardised over the population (so ``tau`` does not depend on
    the metric's scale; small ``tau`` is greedy, large ``tau`` uniform). Children already evaluated are
    re-mutated, a few times at most, so trials are not spent twice on one candidate.
    """

    name = "evolution"
    _MAX_DUPLICATE_TRIES = 5

    def __init__(self, space: SearchSpace, n_inputs: int, seed: int, *, population_size: int = 20, tau: float = 1.0,
                 crossover_rate: float = 0.7, mutation_rate: float = 0.1, elite_size: Optional[int] = None) -> None:
        super().__init__(space, n_inputs, seed)
        _check_int("population_size", population_size, 2)
        if elite_size is None:
            elite_size = default_elite_size(population_size)
        _check_int("elite_size", elite_size, 0)
        if elite_size >= population_size:
            raise FieldError("elite_size", f"must be smaller than population_size ({population_size}), "
                                           f"got {elite_size}")
        _check_fraction("crossover_rate", crossover_rate)
        _check_fraction("mutation_rate", mutation_rate)
        if not (_is_real(tau) and math.isfinite(tau) and tau > 0):
            raise FieldError("tau", f"must be a positive number, got {tau!r}")
        self.population_size = int(population_size)
        self.tau = float(tau)
        self.crossover_rate = float(crossover_rate)
        self.mutation_rate = float(mutation_rate)
        self.elite_size = int(elite_size)
        self._generation = 0
        self._queue: list[Candidate] = []  # the children of the current generation, bred ahead
        self._to_sample = self.population_size  # generation 0's members not drawn yet
        self._members: list[_Member] = []  # the current generation's
        self._pending = 0
        self._seen: set[str] = set()
        self._history: list[dict[str, Any]] = []

    def params(self) -> dict[str, Any]:
        return {"strategy": self.name, "population_size": self.population_size, "tau": self.tau,
                "crossover_rate": self.crossover_rate, "mutation_rate": self.mutation_rate,
                "elite_size": self.elite_size}

    def ask(self) -> Optional[Trial]:
        if self._to_sample:  # drawn one at a time: nothing else draws before generation 0 ends
            self._to_sample -= 1
            candidate = self.space.sample(self.rng, self.n_inputs)
        elif self._queue:
            candidate = self._queue.pop(0)
        else:
            return None
        self._seen.add(candidate.key())
        self._pending += 1
        return self._trial(candidate, generation=self._generation)

    def tell(self, trial: Trial, fitness: Optional[float]) -> None:
        self._pending -= 1
        self._members.append((trial.number, trial.candidate, _as_fitness(fitness)))
        self._record_generation()
        if not self._to_sample and not self._queue and self._pending == 0:
            self._breed()

    @property
    def population_history(self) -> list[dict[str, Any]]:
        return list(self._history)

    def _record_generation(self) -> None:
        scores = np.array([f for _, _, f in self._members if math.isfinite(f)])
        entry = {"generation": self._generation,
                 "best_fitness": float(scores.max()) if scores.size else None,
                 "mean_fitness": float(scores.mean()) if scores.size else None,
                 "std_fitness": float(scores.std()) if scores.size else None,
                 "population_size": len(self._members)}
        if self._history and self._history[-1]["generation"] == self._generation:
            self._history[-1] = entry
        else:
            self._history.append(entry)

    def _breed(self) -> None:
        ranked = sorted(self._members, key=lambda m: (-m[2], m[0]))
        elites = [member for member in ranked if math.isfinite(member[2])][:self.elite_size]
        weights = self._selection_weights([f for _, _, f in ranked])
        children = []
        for _ in range(self.population_size - len(elites)):
            children.append(self._child(ranked, weights))
        self._generation += 1
        self._members = list(elites)
        self._queue = children

    def _selection_weights(self, fitness: list[float]) -> NDArray[np.float64]:
        values = np.array(fitness, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            return np.full(len(values), 1.0 / len(values))
        spread = values[finite].std()
        z = np.where(finite, (values - values[finite].max()) / (spread if spread > 0 else 1.0), -np.inf)
        weights = np.exp(z / self.tau)
        return weights / weights.sum()

    def _child(self, ranked: list["_Member"], weights: NDArray[np.float64]) -> Candidate:
        def pick() -> Candidate:
            return ranked[int(self.rng.choice(len(ranked), p=weights))][1]

        child = pick()
        if self.rng.random() < self.crossover_rate:
            child = self.space.crossover(child, pick(), self.rng)
        for _ in range(self._MAX_DUPLICATE_TRIES):
            child = self.space.mutate(child, self.rng, self.mutation_rate)
            if child.key() not in self._seen:
                break
        self._seen.add(child.key())
        return child


class SuccessiveHalving(Strategy):
    """Successive halving with training epochs as the resource, bracket after bracket.

    A bracket samples ``n_configs`` candidates and trains each for ``min_epochs``; every
    following rung keeps the best ``1 / eta`` of the previous rung (at least one) and trains
    them again, from scratch, for ``eta`` times as many epochs, capped at
    ``max_epochs``. The bracket ends after the rung that reaches ``max_epochs`` or keeps a
    single candidate; the next bracket starts with fresh samples.
    """

    name = "successive_halving"

    def __init__(self, space: SearchSpace, n_inputs: int, seed: int, *, n_configs: int = 9, min_epochs: int = 5,
                 max_epochs: Optional[int] = None, eta: int = 3) -> None:
        super().__init__(space, n_inputs, seed)
        _check_int("n_configs", n_configs, 1)
        _check_int("min_epochs", min_epochs, 1)
        _check_int("eta", eta, 2)
        if max_epochs is None:
            if min_epochs > space.maximum_epochs:
                raise FieldError("min_epochs", f"must be at most the search space's maximum_epochs "
                                               f"({space.maximum_epochs}) when max_epochs is not given, "
                                               f"got {min_epochs}")
            max_epochs = space.maximum_epochs
        _check_int("max_epochs", max_epochs, min_epochs)
        self.n_configs, self.min_epochs = int(n_configs), int(min_epochs)
        self.max_epochs, self.eta = int(max_epochs), int(eta)
        self._bracket = -1
        self._start_bracket()

    def params(self) -> dict[str, Any]:
        return {"strategy": self.name, "n_configs": self.n_configs, "min_epochs": self.min_epochs,
                "max_epochs": self.max_epochs, "eta": self.eta}

    def warnings(self, epoch_limit: Optional[int] = None) -> list[str]:
        configs, epochs = self.n_configs, self.min_epochs
        while epochs < self.max_epochs and configs > 1:
            configs, epochs = self._next_rung(configs, epochs)
        if epochs < self.max_epochs:
            return [f"successive_halving: with n_configs {self.n_configs} and eta {self.eta} a bracket keeps one "
                    f"candidate at {epochs} epochs, so no trial trains for max_epochs {self.max_epochs}",
                    *self._epoch_limit_warnings(epoch_limit)]
        return self._epoch_limit_warnings(epoch_limit)

    def _epoch_limit_warnings(self, epoch_limit: Optional[int]) -> list[str]:
        """The warning that rungs above ``epoch_limit`` (``trials.epoch_bound`` on the search's
        rows) train alike, if ``max_epochs`` passes it."""
        if epoch_limit is None or self.max_epochs <= epoch_limit:
            return []
        return [f"max_epochs: {self.max_epochs} asked, but on these rows a fold network trains at most "
                f"{epoch_limit} epochs (trials.epoch_bound), so the rungs above {epoch_limit} train alike"]

    def _next_rung(self, configs: int, epochs: int) -> tuple[int, int]:
        """The next rung's size and epochs after a rung of ``configs`` trained for ``epochs``."""
        return max(1, configs // self.eta), min(epochs * self.eta, self.max_epochs)

    def _bracket_shape(self) -> tuple[int, int]:
        """The next bracket's first rung: how many candidates, trained for how many epochs."""
        return self.n_configs, self.min_epochs

    def _start_bracket(self) -> None:
        self._bracket += 1
        self._rung = 0
        self._to_sample, self._epochs = self._bracket_shape()  # the first rung's candidates, drawn when asked
        self._queue: list[Candidate] = []  # a later rung's candidates
        self._results: list[_Member] = []
        self._pending = 0

    def ask(self) -> Optional[Trial]:
        if self._to_sample:  # nothing else draws before the first rung ends
            self._to_sample -= 1
            candidate = self.space.sample(self.rng, self.n_inputs)
        elif self._queue:
            candidate = self._queue.pop(0)
        else:
            return None
        self._pending += 1
        return self._trial(candidate, self._epochs, self._rung, self._bracket)

    def tell(self, trial: Trial, fitness: Optional[float]) -> None:
        self._pending -= 1
        self._results.append((trial.number, trial.candidate, _as_fitness(fitness)))
        if self._to_sample or self._queue or self._pending:
            return
        ranked = sorted((r for r in self._results if math.isfinite(r[2])), key=lambda r: (-r[2], r[0]))
        if self._epochs >= self.max_epochs or len(self._results) == 1 or not ranked:
            self._start_bracket()
            return
        keep, self._epochs = self._next_rung(len(self._results), self._epochs)
        self._rung += 1
        self._queue = [candidate for _, candidate, _ in ranked[:keep]]  # successes only
        self._results = []


class Hyperband(SuccessiveHalving):
    """Hyperband (Li et al., 2018): successive halving in brackets that trade many short trials
    for few long ones, so no single guess of the right starting epochs is needed.

    With ``s_max`` the number of times ``eta`` fits between ``min_epochs`` and ``max_epochs``,
    brackets ``s = s_max, s_max - 1, ..., 0`` (then again from ``s_max``) start
    ``ceil((s_max + 1) / (s + 1) * eta ** s)`` candidates at ``max_epochs / eta ** s`` epochs
    (rounded, at least ``min_epochs``); each bracket then goes on as successive halving does
    (the best ``1 / eta`` again with ``eta`` times the epochs, capped at ``max_epochs``), so
    each ends near ``max_epochs`` and costs about as many epochs as the others.
    """

    name = "hyperband"

    def __init__(self, space: SearchSpace, n_inputs: int, seed: int, *, min_epochs: int = 5,
                 max_epochs: Optional[int] = None, eta: int = 3) -> None:
        super().__init__(space, n_inputs, seed, n_configs=1, min_epochs=min_epochs, max_epochs=max_epochs, eta=eta)

    def params(self) -> dict[str, Any]:
        return {"strategy": self.name, "min_epochs": self.min_epochs, "max_epochs": self.max_epochs,
                "eta": self.eta}

    def warnings(self, epoch_limit: Optional[int] = None) -> list[str]:
        return self._epoch_limit_warnings(epoch_limit)  # its brackets end at max_epochs by construction

    def _bracket_shape(self) -> tuple[int, int]:
        s_max = 0
        while self.min_epochs * self.eta ** (s_max + 1) <= self.max_epochs:
            s_max += 1
        s = s_max - self._bracket % (s_max + 1)
        n_configs = math.ceil((s_max + 1) / (s + 1) * self.eta ** s)
        return n_configs, max(self.min_epochs, round(self.max_epochs / self.eta ** s))


class Tpe(Strategy):
    """The tree-structured Parzen estimator (Bergstra et al., 2011), as Optuna's default sampler
    runs it: a model of which parameter values the best trials have, proposing more like them.

    The first ``n_startup_trials`` are random samples. Later, the finished trials are split
    into the best ``gamma`` share (at most ``_MAX_GOOD``, at least one) and the others, and each
    parameter is chosen on its own (``cerebros.parzen``): the value, among ``n_ei_candidates``
    drawn from the good trials' density ``l``, with the highest ``l / g``, ``g`` the others'
    density. The parameters are those ``SearchSpace.sample`` draws: activation and
    normalization (choices); learning rate, weight decay and batch size (log scale); epochs;
    the dropout rate (learnt from the trials with dropout, used only with it); the number of
    hidden levels, each level's units and each unit's neurons (every level and unit of a trial
    is an observation, the trial's weight shared among them). The wiring is then drawn by the
    space's rules (``SearchSpace.build``). Failed trials count among the others.

    Trial ``n`` is proposed from the results of trials ``0 .. n - in_flight`` only: ``ask``
    returns None until trial ``n - in_flight``'s result is told. So up to ``in_flight`` trials
    train at once (give at least ``n_jobs``), and what is proposed does not depend on how many
    processes run them.
    """

    name = "tpe"
    _MAX_GOOD = 25  # Optuna's cap: with many trials, the good set stays the very best

    def __init__(self, space: SearchSpace, n_inputs: int, seed: int, *, n_startup_trials: int = 20,
                 gamma: float = 0.1, n_ei_candidates: int = 24, in_flight: int = 8) -> None:
        super().__init__(space, n_inputs, seed)
        _check_int("n_startup_trials", n_startup_trials, 1)
        _check_int("n_ei_candidates", n_ei_candidates, 1)
        _check_int("in_flight", in_flight, 1)
        if not (_is_real(gamma) and 0 < gamma < 1):
            raise FieldError("gamma", f"must be a number between 0 and 1 (exclusive), got {gamma!r}")
        self.n_startup_trials = int(n_startup_trials)
        self.gamma = float(gamma)
        self.n_ei_candidates = int(n_ei_candidates)
        self.in_flight = int(in_flight)
        self._results: dict[int, tuple[_Values, float]] = {}  # trial number -> (its _parameter_values, fitness)

    def params(self) -> dict[str, Any]:
        return {"strategy": self.name, "n_startup_trials": self.n_startup_trials, "gamma": self.gamma,
                "n_ei_candidates": self.n_ei_candidates, "in_flight": self.in_flight}

    def ask(self) -> Optional[Trial]:
        number = self._next_number
        if number < self.n_startup_trials:
            return self._trial(self.space.sample(self.rng, self.n_inputs))
        known = number - self.in_flight  # the last trial whose result this proposal may use
        if known >= 0 and known not in self._results:
            return None
        told = sorted((item for item in self._results.items() if item[0] <= known),
                      key=lambda item: (-item[1][1], item[0]))
        if not told:
            return self._trial(self.space.sample(self.rng, self.n_inputs))
        n_good = min(max(1, math.ceil(self.gamma * len(told))), self._MAX_GOOD)
        good = [values for _, (values, _) in told[:n_good]]
        bad = [values for _, (values, _) in told[n_good:]]
        return self._trial(self._propose(good, bad))

    def tell(self, trial: Trial, fitness: Optional[float]) -> None:
        self._results[trial.number] = (_parameter_values(trial.candidate), _as_fitness(fitness))

    def _propose(self, good: list["_Values"], bad: list["_Values"]) -> Candidate:
        """A candidate from the ``_parameter_values`` of the good and the bad trials."""
        space, rng, n = self.space, self.rng, self.n_ei_candidates

        def numeric(name: str, log: bool = False, integer: bool = False,
                    groups: tuple[list[_Values], list[_Values]] = (good, bad)) -> parzen.NumericParameter:
            return parzen.NumericParameter(_observed(groups[0], name), _observed(groups[1], name),
                                           getattr(space, f"minimum_{name}"), getattr(space, f"maximum_{name}"),
                                           log=log, integer=integer)

        def choice(name: str, options: tuple[str, ...]) -> parzen.ChoiceParameter:
            return parzen.ChoiceParameter(_observed(good, name), _observed(bad, name), options)

        normalization = choice("normalization", space.normalizations).suggest(rng, n)
        with_dropout = tuple([values for values in group if values["normalization"] == ["dropout"]]
                             for group in (good, bad))
        hyper: Hyper = {
            "activation": choice("activation", space.activations).suggest(rng, n),
            "normalization": normalization,
            "dropout": numeric("dropout", groups=(with_dropout[0], with_dropout[1])).suggest(rng, n) if normalization == "dropout" else 0.0,
            "learning_rate": numeric("learning_rate", log=True).suggest(rng, n),
            "weight_decay": numeric("weight_decay", log=True).suggest(rng, n),
            "batch_size": numeric("batch_size", log=True, integer=True).suggest(rng, n),
            "epochs": numeric("epochs", integer=True).suggest(rng, n),
        }
        units, neurons = numeric("units_per_level", integer=True), numeric("neurons_per_unit", integer=True)
        widths = [[int(neurons.suggest(rng, n)) for _ in range(int(units.suggest(rng, n)))]
                  for _ in range(int(numeric("levels", integer=True).suggest(rng, n)))]
        return space.build(rng, self.n_inputs, widths, hyper)


_Member = tuple[int, Candidate, float]  # a told trial: its number, candidate and fitness
_Values = dict[str, list[Any]]  # ``_parameter_values``


def _parameter_values(candidate: Candidate) -> _Values:
    """What TPE learns from one candidate: each parameter's values, one per level for
    ``units_per_level`` and one per unit for ``neurons_per_unit``, one otherwise."""
    values = {name: [getattr(candidate, name)] for name in
              ("activation", "normalization", "dropout", "learning_rate", "weight_decay", "batch_size", "epochs")}
    values["levels"] = [len(candidate.levels)]
    values["units_per_level"] = [len(level) for level in candidate.levels]
    values["neurons_per_unit"] = [unit.neurons for level in candidate.levels for unit in level]
    return values


def _observed(group: list[_Values], name: str) -> parzen.Observed:
    """``(values, weights)`` of parameter ``name`` over a group of trials' ``_parameter_values``:
    each trial's values sharing a weight of 1."""
    values: list[Any] = []
    weights: list[float] = []
    for trial in group:
        own = trial[name]
        values += own
        weights += [1.0 / len(own) for _ in own]  # a trial without hidden levels has no units
    return values, weights


STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (RandomSearch, Evolution, SuccessiveHalving, Hyperband, Tpe)}


def create(name: str, space: SearchSpace, n_inputs: int, seed: int, **params: Any) -> Strategy:
    """The strategy called ``name`` (a key of ``STRATEGIES``) with its own ``params``."""
    if name not in STRATEGIES:
        raise FieldError("strategy", f"unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    cls = STRATEGIES[name]
    accepted = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise FieldError.unknown_key("", unknown[0], accepted, f"not a parameter of the {name} strategy")
    return cls(space, n_inputs, seed, **params)


def _as_fitness(value: Optional[float]) -> float:
    """A told result as a float; a failure (None, NaN) is ``-inf``."""
    if value is None or math.isnan(value):
        return -math.inf
    return float(value)


def _is_real(value: object) -> TypeGuard[float]:
    """A real number (numpy's included, compared as a float is), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def default_elite_size(population_size: int) -> int:
    """Evolution's elites when none are asked for: two, or one fewer than the population when
    that is smaller, so every valid population size works with the defaults."""
    return min(2, population_size - 1)


def _check_int(name: str, value: object, low: int) -> None:
    """``value`` must be an integer from ``low`` to the parameter's maximum (``MAXIMA``), if any."""
    high = MAXIMA.get(name)
    if not (_is_real(value) and isinstance(value, numbers.Integral)) or int(value) < low or \
            (high is not None and int(value) > high):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise FieldError(name, f"must be an integer {bounds}, got {shown(value)}")


def shown(value: object) -> str:
    """``repr(value)`` for a message, cut short: a caller's value may be huge."""
    if isinstance(value, numbers.Integral) and int(value).bit_length() > 64:
        return f"an integer of {int(value).bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fraction(name: str, value: object) -> None:
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise FieldError(name, f"must be a number in [0, 1], got {value!r}")
