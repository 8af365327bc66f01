"""Search strategies, all behind one ask/tell interface (the style of Optuna's).

``strategy.ask()`` returns the next ``Trial`` to train, or None while the strategy needs
the results of trials it has handed out (a generation or rung is not finished yet);
``strategy.tell(trial, fitness)`` reports one result, higher is better; ``-inf``, None or
NaN for a failed trial, which is never an elite, never promoted, and never a parent while
any trial of its generation succeeded. A strategy never decides when to stop: the study's
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

import numpy as np

from .space import Candidate

_STREAM = 0x5EA4C4  # keeps the strategy's random stream apart from the trials' streams


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

    def __init__(self, space, n_inputs, seed):
        self.space = space
        self.n_inputs = n_inputs
        self.rng = np.random.default_rng([seed, _STREAM])
        self._next_number = 0

    def _trial(self, candidate, epochs=None, generation=0, bracket=0):
        trial = Trial(self._next_number, candidate, candidate.epochs if epochs is None else epochs,
                      generation, bracket)
        self._next_number += 1
        return trial

    def ask(self):
        raise NotImplementedError

    def tell(self, trial, fitness):
        """Record a result; the base strategy learns nothing from it."""

    @property
    def population_history(self):
        """One entry per generation (evolution only; empty otherwise)."""
        return []

    def params(self):
        """The strategy's settings, defaults included (for the result and the summary)."""
        return {"strategy": self.name}

    def warnings(self):
        """What the caller should know about these settings (texts; none by default)."""
        return []


class RandomSearch(Strategy):
    """Independent samples from the search space."""

    name = "random"

    def ask(self):
        return self._trial(self.space.sample(self.rng, self.n_inputs))


class Evolution(Strategy):
    """A generational genetic algorithm.

    Generation 0 is ``population_size`` random samples. Each later generation keeps the
    ``elite_size`` fittest members (not retrained) and fills the rest with children: a
    parent chosen by softmax tournament, crossed with a second one with probability
    ``crossover_rate``, then mutated with per-gene rate ``mutation_rate``. The tournament
    picks member ``i`` with probability proportional to ``exp(z_i / tau)``, ``z`` being the
    fitness standardised over the population (so ``tau`` does not depend on the metric's
    scale; small ``tau`` is greedy, large ``tau`` uniform). Children already evaluated are
    re-mutated, a few times at most, so trials are not spent twice on one candidate.
    """

    name = "evolution"
    _MAX_DUPLICATE_TRIES = 5

    def __init__(self, space, n_inputs, seed, *, population_size=20, tau=1.0, crossover_rate=0.7,
                 mutation_rate=0.1, elite_size=2):
        super().__init__(space, n_inputs, seed)
        _check_int("population_size", population_size, 2)
        _check_int("elite_size", elite_size, 0)
        if elite_size >= population_size:
            raise ValueError(f"elite_size: must be smaller than population_size ({population_size}), "
                             f"got {elite_size}")
        _check_fraction("crossover_rate", crossover_rate)
        _check_fraction("mutation_rate", mutation_rate)
        if not (_is_real(tau) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau: must be a positive number, got {tau!r}")
        self.population_size = int(population_size)
        self.tau = float(tau)
        self.crossover_rate = float(crossover_rate)
        self.mutation_rate = float(mutation_rate)
        self.elite_size = int(elite_size)
        self._generation = 0
        self._queue = [space.sample(self.rng, n_inputs) for _ in range(population_size)]
        self._members = []  # (trial number, candidate, fitness) of the current generation
        self._pending = 0
        self._seen = set()
        self._history = []

    def params(self):
        return {"strategy": self.name, "population_size": self.population_size, "tau": self.tau,
                "crossover_rate": self.crossover_rate, "mutation_rate": self.mutation_rate,
                "elite_size": self.elite_size}

    def ask(self):
        if not self._queue:
            return None
        candidate = self._queue.pop(0)
        self._seen.add(candidate.key())
        self._pending += 1
        return self._trial(candidate, generation=self._generation)

    def tell(self, trial, fitness):
        self._pending -= 1
        self._members.append((trial.number, trial.candidate, _as_fitness(fitness)))
        self._record_generation()
        if not self._queue and self._pending == 0:
            self._breed()

    @property
    def population_history(self):
        return list(self._history)

    def _record_generation(self):
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

    def _breed(self):
        ranked = sorted(self._members, key=lambda m: (-m[2], m[0]))
        elites = [member for member in ranked if math.isfinite(member[2])][:self.elite_size]
        weights = self._selection_weights([f for _, _, f in ranked])
        children = []
        for _ in range(self.population_size - len(elites)):
            children.append(self._child(ranked, weights))
        self._generation += 1
        self._members = list(elites)
        self._queue = children

    def _selection_weights(self, fitness):
        fitness = np.array(fitness, dtype=np.float64)
        finite = np.isfinite(fitness)
        if not finite.any():
            return np.full(len(fitness), 1.0 / len(fitness))
        spread = fitness[finite].std()
        z = np.where(finite, (fitness - fitness[finite].max()) / (spread if spread > 0 else 1.0), -np.inf)
        weights = np.exp(z / self.tau)
        return weights / weights.sum()

    def _child(self, ranked, weights):
        def pick():
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

    def __init__(self, space, n_inputs, seed, *, n_configs=9, min_epochs=5, max_epochs=None, eta=3):
        super().__init__(space, n_inputs, seed)
        _check_int("n_configs", n_configs, 1)
        _check_int("min_epochs", min_epochs, 1)
        _check_int("eta", eta, 2)
        if max_epochs is None:
            if min_epochs > space.maximum_epochs:
                raise ValueError(f"min_epochs: must be at most the space's maximum_epochs ({space.maximum_epochs}) "
                                 f"when max_epochs is not given, got {min_epochs}")
            max_epochs = space.maximum_epochs
        _check_int("max_epochs", max_epochs, min_epochs)
        self.n_configs, self.min_epochs = int(n_configs), int(min_epochs)
        self.max_epochs, self.eta = int(max_epochs), int(eta)
        self._bracket = -1
        self._start_bracket()

    def params(self):
        return {"strategy": self.name, "n_configs": self.n_configs, "min_epochs": self.min_epochs,
                "max_epochs": self.max_epochs, "eta": self.eta}

    def warnings(self):
        configs, epochs = self.n_configs, self.min_epochs
        while epochs < self.max_epochs and configs > 1:
            configs, epochs = self._next_rung(configs, epochs)
        if epochs < self.max_epochs:
            return [f"successive_halving: with n_configs {self.n_configs} and eta {self.eta} a bracket keeps one "
                    f"candidate at {epochs} epochs, so no trial trains for max_epochs {self.max_epochs}"]
        return []

    def _next_rung(self, configs, epochs):
        """The next rung's size and epochs after a rung of ``configs`` trained for ``epochs``."""
        return max(1, configs // self.eta), min(epochs * self.eta, self.max_epochs)

    def _start_bracket(self):
        self._bracket += 1
        self._rung = 0
        self._epochs = self.min_epochs
        self._queue = [self.space.sample(self.rng, self.n_inputs) for _ in range(self.n_configs)]
        self._results = []
        self._pending = 0

    def ask(self):
        if not self._queue:
            return None
        self._pending += 1
        return self._trial(self._queue.pop(0), self._epochs, self._rung, self._bracket)

    def tell(self, trial, fitness):
        self._pending -= 1
        self._results.append((trial.number, trial.candidate, _as_fitness(fitness)))
        if self._queue or self._pending:
            return
        ranked = sorted((r for r in self._results if math.isfinite(r[2])), key=lambda r: (-r[2], r[0]))
        if self._epochs >= self.max_epochs or len(self._results) == 1 or not ranked:
            self._start_bracket()
            return
        keep, self._epochs = self._next_rung(len(self._results), self._epochs)
        self._rung += 1
        self._queue = [candidate for _, candidate, _ in ranked[:keep]]  # successes only
        self._results = []


STRATEGIES = {cls.name: cls for cls in (RandomSearch, Evolution, SuccessiveHalving)}


def create(name, space, n_inputs, seed, **params):
    """The strategy called ``name`` (a key of ``STRATEGIES``) with its own ``params``."""
    if name not in STRATEGIES:
        raise ValueError(f"strategy: unknown strategy {name!r} (known: {', '.join(STRATEGIES)})")
    cls = STRATEGIES[name]
    accepted = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of the {name} strategy "
                         f"(its parameters: {', '.join(accepted) or 'none'})")
    return cls(space, n_inputs, seed, **params)


def _as_fitness(value):
    """A told result as a float; a failure (None, NaN) is ``-inf``."""
    if value is None or math.isnan(value):
        return -math.inf
    return float(value)


def _is_real(value):
    """A real number (numpy's included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _check_int(name, value, low):
    if not (_is_real(value) and isinstance(value, numbers.Integral)) or value < low:
        raise ValueError(f"{name}: must be an integer >= {low}, got {value!r}")


def _check_fraction(name, value):
    if not _is_real(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: must be a number in [0, 1], got {value!r}")
