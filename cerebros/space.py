"""The Cerebros search space: what a candidate network is, and how to sample, mutate and cross them.

A candidate is a stack of levels: level 0 the input, taken as ONE block of ``n_inputs``
features (so "number of inputs" in the Cerebros rules is 1), levels ``1..L`` hidden levels of
dense units, level ``L + 1`` the single output unit. ``L`` may be 0: the output unit then
reads the inputs alone, a linear (regression) or logistic (classification) model trained like
any other candidate, which noisy or small data may want; the default space draws ``L`` from 0
to 3. A unit's inputs are vertical
(``(level, unit)`` pairs on earlier levels; ``(0, 0)`` is the input block) and lateral
(indices of earlier units on its own level). ``SearchSpace.sample`` draws them by the rules
in docs/engine.md; ``repair`` then makes the network valid, and ``Candidate.from_dict`` and
every operation here keep it so: every unit is reached from the input and reaches the output.
"""
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import numpy as np

from codec.errors import FieldError

from .activations import ACTIVATIONS

NORMALIZATIONS = ("batchnorm", "dropout", "none")
ROUNDINGS = ("ceil", "floor")
LATERAL_DECAY = 0.95
Ref = Tuple[int, int]  # a unit: (level, index on the level)
Hyper = dict[str, Any]  # a candidate's training hyper-parameters (``_HYPER_KEYS``)


@dataclass(frozen=True)
class Unit:
    """A hidden unit: ``neurons`` outputs, vertical ``inputs`` ((level, unit) pairs) and
    ``lateral_inputs`` (indices of earlier units on the same level), both sorted."""

    neurons: int
    inputs: Tuple[Tuple[int, int], ...]
    lateral_inputs: Tuple[int, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """One architecture with its training hyper-parameters.

    ``levels`` holds the hidden levels 1..L (each a tuple of ``Unit``); ``output_inputs``
    the output unit's (level, unit) inputs. ``dropout`` is 0.0 unless ``normalization`` is
    "dropout". ``epochs`` is the most epochs to train; ``patience`` the early-stopping
    patience in epochs. Build with ``SearchSpace.sample`` or ``Candidate.from_dict``.
    """

    n_inputs: int
    levels: Tuple[Tuple[Unit, ...], ...]
    output_inputs: Tuple[Tuple[int, int], ...]
    activation: str
    normalization: str
    dropout: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe plain dict (only str, int, float, lists, dicts); ``from_dict`` inverts it."""
        return {
            "n_inputs": self.n_inputs,
            "levels": [
                [
                    {
                        "neurons": unit.neurons,
                        "inputs": [list(ref) for ref in unit.inputs],
                        "lateral_inputs": list(unit.lateral_inputs),
                    }
                    for unit in level
                ]
                for level in self.levels
            ],
            "output_inputs": [list(ref) for ref in self.output_inputs],
            "activation": self.activation,
            "normalization": self.normalization,
            "dropout": self.dropout,
            "learning_rate": self.learning_rate,
            "weight_decay": self.weight_decay,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "patience": self.patience,
        }

    @classmethod
    def from_dict(cls, d: object) -> "Candidate":
        """Rebuild and validate a candidate from ``to_dict`` output; ``FieldError`` on any defect."""
        d = _require_mapping(d, "candidate")
        _reject_unknown(d, _CANDIDATE_KEYS, "candidate")
        missing = [key for key in _CANDIDATE_KEYS if key not in d]
        if missing:
            raise FieldError("candidate", f"missing field(s) {', '.join(missing)}")
        levels = _require_list(d["levels"], "levels")
        candidate = cls(
            n_inputs=_as_int(d["n_inputs"], "n_inputs", low=1),
            levels=tuple(
                tuple(_unit_from_dict(u, f"levels[{k}][{i}]") for i, u in
                      enumerate(_require_list(level, f"levels[{k}]")))
                for k, level in enumerate(levels)
            ),
            output_inputs=_refs_from_list(d["output_inputs"], "output_inputs"),
            activation=_as_choice(d["activation"], "activation", tuple(ACTIVATIONS)),
            normalization=_as_choice(d["normalization"], "normalization", NORMALIZATIONS),
            dropout=_as_float(d["dropout"], "dropout", low=0.0, high=1.0, high_open=True),
            learning_rate=_as_float(d["learning_rate"], "learning_rate", low=0.0, low_open=True),
            weight_decay=_as_float(d["weight_decay"], "weight_decay", low=0.0),
            batch_size=_as_int(d["batch_size"], "batch_size", low=1),
            epochs=_as_int(d["epochs"], "epochs", low=1),
            patience=_as_int(d["patience"], "patience", low=1),
        )
        _check_decay_step(candidate.learning_rate, candidate.weight_decay, "")
        candidate.check()
        return candidate

    def key(self) -> str:
        """A stable hex digest of the whole candidate: equal candidates, equal keys (de-duplication)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def check(self) -> None:
        """Raise ``FieldError`` unless the wiring is a valid network (see the module docstring)."""
        widths = [1] + [len(level) for level in self.levels]
        consumed: set[Ref] = set()
        for k, level in enumerate(self.levels, start=1):
            if not level:
                raise FieldError(f"levels[{k - 1}]", "a hidden level needs at least one unit")
            for i, unit in enumerate(level):
                where = f"levels[{k - 1}][{i}]"
                if unit.neurons < 1:
                    raise FieldError(f"{where}.neurons", f"must be >= 1, got {unit.neurons}")
                _check_refs(unit.inputs, k, widths, f"{where}.inputs")
                for m in unit.lateral_inputs:
                    if not 0 <= m < i:
                        raise FieldError(f"{where}.lateral_inputs", f"{m} is not an earlier unit of the same level")
                    consumed.add((k, m))
                consumed.update(unit.inputs)
        _check_refs(self.output_inputs, len(self.levels) + 1, widths, "output_inputs")
        consumed.update(self.output_inputs)
        for k, level in enumerate(self.levels, start=1):
            for i in range(len(level)):
                if (k, i) not in consumed:
                    raise FieldError(f"levels[{k - 1}][{i}]", "the unit feeds nothing downstream (orphan)")


@dataclass(frozen=True)
class SearchSpace:
    """Ranges and choices a candidate is drawn from; every range is inclusive.

    Integer ranges are sampled uniformly, except ``batch_size`` which is log-uniform like
    ``learning_rate`` and ``weight_decay`` (``weight_decay`` may be fixed at 0 by giving 0
    as both ends). ``dropout`` is uniform and used only with the "dropout" normalization.
    Build from caller data with ``SearchSpace.from_dict``; ``FieldError`` on any bad field.
    """

    minimum_levels: int = 0
    maximum_levels: int = 3
    minimum_units_per_level: int = 1
    maximum_units_per_level: int = 3
    minimum_neurons_per_unit: int = 8
    maximum_neurons_per_unit: int = 128
    affinity_first: float = 5.0
    affinity_main: float = 0.7
    affinity_decay: float = 0.7
    rounding: str = "ceil"
    p_lateral_connection: float = 0.5
    max_consecutive_lateral_connections: int = 2
    minimum_skip_connection_depth: int = 1
    maximum_skip_connection_depth: int = 7
    activations: Tuple[str, ...] = ("elu", "gelu", "relu", "swish", "tanh")
    minimum_learning_rate: float = 3e-4
    maximum_learning_rate: float = 3e-2
    minimum_weight_decay: float = 1e-4
    maximum_weight_decay: float = 10.0
    minimum_batch_size: int = 16
    maximum_batch_size: int = 256
    minimum_epochs: int = 20
    maximum_epochs: int = 120
    patience: int = 10
    normalizations: Tuple[str, ...] = NORMALIZATIONS
    minimum_dropout: float = 0.0
    maximum_dropout: float = 0.5

    def __post_init__(self) -> None:
        self._validate()

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: object) -> "SearchSpace":
        """Validate caller data into a space; missing fields keep their defaults.

        Accepts every field name of this class, plus short forms: ``levels``,
        ``units_per_level``, ``neurons_per_unit``, ``learning_rate``, ``weight_decay``,
        ``batch_size``, ``epochs``, ``dropout``, ``skip_connection_depth`` as a number (fixed)
        or a ``[minimum, maximum]`` pair; ``activation``/``normalization`` as one name;
        and Cerebros's long names for the affinities. Keys must be text (``str``).
        """
        mapping = _require_mapping(d, "search_space")
        values: dict[str, Any] = {}
        written: dict[str, str] = {}  # each field's key as the caller wrote it, so that errors name that key
        for key, value in mapping.items():
            if not isinstance(key, str):
                raise FieldError("search_space", f"field names must be text, got {key!r}")
            key = str(key)  # an Atom key becomes a plain name
            name = _ALIASES.get(key, key)
            fields: dict[str, Any]
            if name in _RANGE_SHORT_FORMS:
                low, high = _as_pair(value, f"search_space.{key}")
                fields = {f"minimum_{name}": low, f"maximum_{name}": high}
            elif name in _CHOICE_SHORT_FORMS:
                fields = {_CHOICE_SHORT_FORMS[name]: value if isinstance(value, (list, tuple)) else [value]}
            elif name in _FIELD_TYPES:
                fields = {name: value}
            else:
                raise FieldError.unknown_key("search_space", key, _KNOWN_KEYS)
            for field, item in fields.items():
                if field in values:
                    raise FieldError(f"search_space.{key}", f"{field} given twice (by {written[field]} and by {key})")
                values[field] = item
                written[field] = key
        try:
            return cls(**{name: _converted(name, value) for name, value in values.items()})
        except FieldError as exc:  # named for the space's own fields: name the keys that set them
            name = exc.field.split("[")[0]
            key = written.get(name, name)
            raise exc.renamed(f"search_space.{key}{exc.field[len(name):]}", _as_written(exc.problem, written, key)) \
                from None

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-safe dict (tuples become lists); ``from_dict`` inverts it."""
        return {f.name: list(v) if isinstance(v, tuple) else v
                for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}

    def _validate(self) -> None:
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if kind is int:
                _as_int(value, name)
            elif kind is float:
                _as_float(value, name)
        for name, (low, high) in _BOUNDS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise FieldError(name, f"must be between {low} and {high}, got {value!r}")
        for name in ("levels", "units_per_level", "neurons_per_unit", "skip_connection_depth",
                     "learning_rate", "weight_decay", "batch_size", "epochs", "dropout"):
            low_name, high_name = _range_names(name)
            low, high = getattr(self, low_name), getattr(self, high_name)
            if low > high:
                raise FieldError(low_name, f"{low!r} is greater than {high_name} {high!r}")
        if self.minimum_weight_decay == 0 and self.maximum_weight_decay > 0:
            raise FieldError(
                "minimum_weight_decay", "0 cannot start a log-uniform range; give a positive "
                f"minimum or 0 for both ends (maximum_weight_decay is {self.maximum_weight_decay!r})")
        _check_decay_step(self.maximum_learning_rate, self.maximum_weight_decay, "maximum_")
        if self.rounding not in ROUNDINGS:
            raise FieldError("rounding", f"must be one of {', '.join(ROUNDINGS)}, got {self.rounding!r}")
        for name, known in (("activations", ACTIVATIONS), ("normalizations", NORMALIZATIONS)):
            choices = getattr(self, name)
            if not isinstance(choices, tuple) or not choices:
                raise FieldError(name, f"must be a non-empty tuple of names, got {choices!r}")
            for choice in choices:
                if choice not in known:
                    raise FieldError(name, f"unknown name {choice!r} (known: {', '.join(known)})")

    # ---- sampling -----------------------------------------------------------------------

    def predecessor_count(self, level: int, earlier_level: int, units_on_earlier_level: int) -> int:
        """How many predecessors (drawn with replacement) a unit on ``level`` takes from ``earlier_level``."""
        if level == 1 and earlier_level == 0:
            expected = self.affinity_first * units_on_earlier_level
        else:
            expected = self.affinity_main * self.affinity_decay ** (level - earlier_level) * units_on_earlier_level
        # the tolerance stops float error (0.7 * 0.7 * 100 is 48.99999999999999) moving the count
        return math.ceil(expected - 1e-9) if self.rounding == "ceil" else math.floor(expected + 1e-9)

    def draw_predecessors(self, rng: np.random.Generator, level: int, widths: Sequence[int]) -> list[Ref]:
        """The vertical draws, with repeats, for one unit on ``level``: ``predecessor_count`` draws
        of ``(j, unit)`` for each earlier level ``j``, whose unit count is ``widths[j]``."""
        return [(j, int(u)) for j in range(level)
                for u in rng.integers(0, widths[j], size=self.predecessor_count(level, j, widths[j]))]

    def sample(self, rng: np.random.Generator, n_inputs: int) -> "Candidate":
        """Draw a valid candidate for ``n_inputs`` input features using ``rng`` (a numpy Generator)."""
        inputs = _as_int(n_inputs, "n_inputs", low=1)
        n_levels = _integer(rng, self.minimum_levels, self.maximum_levels)
        neurons = [[self._sample_neurons(rng)
                    for _ in range(_integer(rng, self.minimum_units_per_level, self.maximum_units_per_level))]
                   for _ in range(n_levels)]
        draft = self._wired(inputs, neurons, rng)
        return self._finish(draft, rng, self._sample_hyper(rng))

    def build(self, rng: np.random.Generator, n_inputs: int, neurons: Sequence[Sequence[int]], hyper: Hyper) -> "Candidate":
        """A valid candidate with the given widths and hyper-parameters, wired by the space's
        rules using ``rng``: ``neurons[k][i]`` is the width of unit ``i`` on hidden level
        ``k + 1``; ``hyper`` holds activation, normalization, dropout, learning_rate,
        weight_decay, batch_size and epochs (for strategies that choose these themselves)."""
        return self._finish(self._wired(_as_int(n_inputs, "n_inputs", low=1), neurons, rng), rng, dict(hyper))

    def _wired(self, n_inputs: int, neurons: Sequence[Sequence[int]], rng: np.random.Generator) -> "_Draft":
        draft = _Draft(n_inputs, [[_DraftUnit(int(width)) for width in level] for level in neurons])
        for k in range(1, draft.output_level + 1):
            for i in range(draft.width(k)):
                self._wire(draft, k, i, rng)
        return draft

    def _sample_neurons(self, rng: np.random.Generator) -> int:
        return _integer(rng, self.minimum_neurons_per_unit, self.maximum_neurons_per_unit)

    def _sample_hyper(self, rng: np.random.Generator) -> Hyper:
        normalization = self.normalizations[rng.integers(len(self.normalizations))]
        return {
            "activation": self.activations[rng.integers(len(self.activations))],
            "normalization": normalization,
            "dropout": self._sample_dropout(rng, normalization),
            "learning_rate": _log_uniform(rng, self.minimum_learning_rate, self.maximum_learning_rate),
            "weight_decay": _log_uniform(rng, self.minimum_weight_decay, self.maximum_weight_decay),
            "batch_size": int(round(_log_uniform(rng, self.minimum_batch_size, self.maximum_batch_size))),
            "epochs": _integer(rng, self.minimum_epochs, self.maximum_epochs),
        }

    def _sample_dropout(self, rng: np.random.Generator, normalization: str) -> float:
        if normalization != "dropout":
            return 0.0
        return float(rng.uniform(self.minimum_dropout, self.maximum_dropout))

    def _wire(self, draft: "_Draft", k: int, i: int, rng: np.random.Generator) -> None:
        """(Re)draw the vertical and lateral inputs of unit ``i`` on level ``k`` (output: k = L + 1)."""
        unit = draft.unit(k, i)
        unit.inputs = set(self.draw_predecessors(rng, k, [draft.width(j) for j in range(k)]))
        unit.lateral = set()
        if k <= len(draft.levels):
            depth = draft.lateral_depths(k)
            for m in range(i):
                chance = self.p_lateral_connection * LATERAL_DECAY ** (i - m)
                if rng.random() < chance and depth[m] < self.max_consecutive_lateral_connections:
                    unit.lateral.add(m)

    # ---- repair, mutation, crossover ---------------------------------------------------

    def repair(self, candidate: "Candidate", rng: np.random.Generator) -> "Candidate":
        """Return ``candidate`` made valid: bad references dropped, unfed units and orphans wired,
        lateral chains cut to ``max_consecutive_lateral_connections``."""
        return self._finish(_Draft.of(candidate), rng, _hyper_of(candidate))

    def _finish(self, draft: "_Draft", rng: np.random.Generator, hyper: Hyper) -> "Candidate":
        draft.drop_invalid_refs()
        for k in range(1, draft.output_level + 1):
            for i in range(draft.width(k)):
                unit = draft.unit(k, i)
                if not unit.inputs:
                    unit.inputs.add((k - 1, int(rng.integers(draft.width(k - 1)))))
        for k in range(1, draft.output_level):
            depth = [0] * draft.width(k)
            for i, unit in enumerate(draft.levels[k - 1]):
                unit.lateral = {m for m in unit.lateral if depth[m] < self.max_consecutive_lateral_connections}
                depth[i] = max((depth[m] + 1 for m in unit.lateral), default=0)
        consumed = draft.consumed()
        for k in range(1, draft.output_level):
            for i in range(draft.width(k)):
                if (k, i) not in consumed:
                    low = min(k + self.minimum_skip_connection_depth, draft.output_level)
                    high = min(k + self.maximum_skip_connection_depth, draft.output_level)
                    target = _integer(rng, low, high)
                    draft.unit(target, int(rng.integers(draft.width(target)))).inputs.add((k, i))
        return draft.freeze(hyper, self.patience)

    def mutate(self, candidate: "Candidate", rng: np.random.Generator, rate: float) -> "Candidate":
        """A changed copy of ``candidate``: each hyper-parameter, unit width, unit wiring and
        level/unit count changes with probability ``rate``; if nothing did, it tries again with
        at least ``_MIN_FORCED_RATE``, up to ``_MAX_MUTATION_TRIES`` times, so the candidate comes
        back equal only when the space leaves (almost) nothing to change."""
        rate = _as_float(rate, "rate", low=0.0, high=1.0)
        for _ in range(_MAX_MUTATION_TRIES):
            draft = _Draft.of(candidate)
            hyper = _hyper_of(candidate)
            self._mutate_hyper(hyper, rng, rate)
            self._mutate_structure(draft, rng, rate)
            child = self._finish(draft, rng, hyper)
            if child != candidate:
                return child
            rate = max(rate, _MIN_FORCED_RATE)  # nothing changed: push harder next time
        return child

    def _mutate_hyper(self, hyper: Hyper, rng: np.random.Generator, rate: float) -> None:
        if rng.random() < rate:
            hyper["activation"] = self.activations[rng.integers(len(self.activations))]
        if rng.random() < rate:
            hyper["normalization"] = self.normalizations[rng.integers(len(self.normalizations))]
            hyper["dropout"] = self._sample_dropout(rng, hyper["normalization"])
        for name, integral in (("learning_rate", False), ("weight_decay", False), ("batch_size", True),
                               ("epochs", True)):
            if rng.random() < rate:
                low, high = getattr(self, f"minimum_{name}"), getattr(self, f"maximum_{name}")
                value = _log_step(rng, hyper[name], low, high)
                hyper[name] = int(round(value)) if integral else value

    def _mutate_structure(self, draft: "_Draft", rng: np.random.Generator, rate: float) -> None:
        n_levels = len(draft.levels)
        if rng.random() < rate and n_levels < self.maximum_levels:
            at = _integer(rng, 1, n_levels + 1)
            units = [_DraftUnit(self._sample_neurons(rng))
                     for _ in range(_integer(rng, self.minimum_units_per_level, self.maximum_units_per_level))]
            draft.insert_level(at, units)
            for i in range(len(units)):
                self._wire(draft, at, i, rng)
        elif rng.random() < rate and n_levels > self.minimum_levels:
            draft.remove_level(_integer(rng, 1, n_levels))
        for k in range(1, len(draft.levels) + 1):
            width = draft.width(k)
            if rng.random() < rate and width < self.maximum_units_per_level:
                draft.levels[k - 1].append(_DraftUnit(self._sample_neurons(rng)))
                self._wire(draft, k, width, rng)
            elif rng.random() < rate and width > max(self.minimum_units_per_level, 1):
                draft.remove_unit(k, int(rng.integers(width)))
        for k in range(1, len(draft.levels) + 1):
            for i, unit in enumerate(draft.levels[k - 1]):
                if rng.random() < rate:
                    unit.neurons = int(round(_log_step(rng, unit.neurons, self.minimum_neurons_per_unit,
                                                       self.maximum_neurons_per_unit)))
                if rng.random() < rate:
                    self._wire(draft, k, i, rng)
        if rng.random() < rate:
            self._wire(draft, draft.output_level, 0, rng)

    def crossover(self, a: "Candidate", b: "Candidate", rng: np.random.Generator) -> "Candidate":
        """A child of ``a`` and ``b`` (same ``n_inputs``): each hyper-parameter from either parent,
        each level from a parent that has it, the level count and output wiring from either;
        then repaired, so the child is always valid."""
        if a.n_inputs != b.n_inputs:
            raise ValueError(f"crossover: parents differ in n_inputs ({a.n_inputs} vs {b.n_inputs})")
        ha, hb = _hyper_of(a), _hyper_of(b)
        hyper: Hyper = {}
        for name in ha:
            if name == "dropout":
                continue  # travels with normalization, below
            hyper[name] = (ha if rng.random() < 0.5 else hb)[name]
            if name == "normalization":  # the dropout rate of a parent with that normalization
                holders = [h for h in (ha, hb) if h["normalization"] == hyper[name]]
                hyper["dropout"] = holders[int(rng.integers(len(holders))) if len(holders) > 1 else 0]["dropout"]
        parents = (_Draft.of(a), _Draft.of(b))
        n_levels = len(parents[int(rng.integers(2))].levels)
        levels: list[list[_DraftUnit]] = []
        for k in range(n_levels):
            having = [p for p in parents if k < len(p.levels)]
            levels.append(having[int(rng.integers(len(having)))].levels[k])
        child = _Draft(a.n_inputs, levels)
        child.output.inputs = set(parents[int(rng.integers(2))].output.inputs)
        return self._finish(child, rng, hyper)


# ---- the mutable working copy used while sampling and repairing ---------------------------

class _DraftUnit:
    def __init__(self, neurons: int, inputs: Sequence[Ref] = (), lateral: Sequence[int] = ()) -> None:
        self.neurons = neurons
        self.inputs = set(inputs)
        self.lateral = set(lateral)


class _Draft:
    """A candidate's wiring as mutable sets, with the index bookkeeping that edits need."""

    def __init__(self, n_inputs: int, levels: list[list[_DraftUnit]]) -> None:
        self.n_inputs = n_inputs
        self.levels = levels
        self.output = _DraftUnit(0)

    @classmethod
    def of(cls, candidate: "Candidate") -> "_Draft":
        draft = cls(candidate.n_inputs, [[_DraftUnit(u.neurons, u.inputs, u.lateral_inputs) for u in level]
                                         for level in candidate.levels])
        draft.output.inputs = set(candidate.output_inputs)
        return draft

    @property
    def output_level(self) -> int:
        return len(self.levels) + 1

    def width(self, k: int) -> int:
        """Units on level ``k``: the input block and the output count as one."""
        return 1 if k in (0, self.output_level) else len(self.levels[k - 1])

    def unit(self, k: int, i: int) -> _DraftUnit:
        return self.output if k == self.output_level else self.levels[k - 1][i]

    def all_units(self) -> Iterator[tuple[int, _DraftUnit]]:
        for k, level in enumerate(self.levels, start=1):
            for unit in level:
                yield k, unit
        yield self.output_level, self.output

    def lateral_depths(self, k: int) -> list[int]:
        depth: list[int] = []
        for unit in self.levels[k - 1]:
            depth.append(max((depth[m] + 1 for m in unit.lateral if m < len(depth)), default=0))
        return depth

    def consumed(self) -> set[Ref]:
        used: set[Ref] = set()
        for k, unit in self.all_units():
            used.update(unit.inputs)
            used.update((k, m) for m in unit.lateral)
        return used

    def drop_invalid_refs(self) -> None:
        for k, unit in self.all_units():
            unit.inputs = {(j, u) for j, u in unit.inputs if 0 <= j < k and 0 <= u < self.width(j)}
        for level in self.levels:
            for i, unit in enumerate(level):
                unit.lateral = {m for m in unit.lateral if 0 <= m < i}

    def insert_level(self, at: int, units: list[_DraftUnit]) -> None:
        for _, unit in self.all_units():
            unit.inputs = {(j + 1 if j >= at else j, u) for j, u in unit.inputs}
        self.levels.insert(at - 1, units)

    def remove_level(self, at: int) -> None:
        del self.levels[at - 1]
        for _, unit in self.all_units():
            unit.inputs = {(j - 1 if j > at else j, u) for j, u in unit.inputs if j != at}

    def remove_unit(self, k: int, i: int) -> None:
        del self.levels[k - 1][i]
        for _, unit in self.all_units():
            unit.inputs = {(j, u - 1 if j == k and u > i else u) for j, u in unit.inputs if (j, u) != (k, i)}
        for unit in self.levels[k - 1]:
            unit.lateral = {m - 1 if m > i else m for m in unit.lateral if m != i}

    def freeze(self, hyper: Hyper, patience: int) -> "Candidate":
        return Candidate(
            n_inputs=self.n_inputs,
            levels=tuple(tuple(Unit(u.neurons, tuple(sorted(u.inputs)), tuple(sorted(u.lateral)))
                               for u in level) for level in self.levels),
            output_inputs=tuple(sorted(self.output.inputs)),
            patience=patience,
            **hyper,
        )


# ---- helpers -------------------------------------------------------------------------------

_MAX_MUTATION_TRIES = 20
_MIN_FORCED_RATE = 0.1

_HYPER_KEYS = ("activation", "normalization", "dropout", "learning_rate", "weight_decay", "batch_size", "epochs")
_CANDIDATE_KEYS = ("n_inputs", "levels", "output_inputs") + _HYPER_KEYS + ("patience",)
_UNIT_KEYS = ("neurons", "inputs", "lateral_inputs")

# int, float, str, or tuple (of names)
_FIELD_TYPES: dict[str, Any] = {f.name: tuple if f.type == Tuple[str, ...] else f.type for f in dataclasses.fields(SearchSpace)}

# inclusive (low, high) bounds; the caps keep a typo from asking for a huge network
_BOUNDS: dict[str, tuple[float, float]] = {
    "minimum_levels": (0, 32), "maximum_levels": (0, 32),
    "minimum_units_per_level": (1, 64), "maximum_units_per_level": (1, 64),
    "minimum_neurons_per_unit": (1, 8192), "maximum_neurons_per_unit": (1, 8192),
    "affinity_first": (0.0, 1000.0), "affinity_main": (0.0, 1000.0), "affinity_decay": (0.0, 1.0),
    "p_lateral_connection": (0.0, 1.0), "max_consecutive_lateral_connections": (0, 64),
    "minimum_skip_connection_depth": (1, 64), "maximum_skip_connection_depth": (1, 64),
    "minimum_learning_rate": (1e-8, 10.0), "maximum_learning_rate": (1e-8, 10.0),
    "minimum_weight_decay": (0.0, 10.0), "maximum_weight_decay": (0.0, 10.0),
    "minimum_batch_size": (1, 1 << 20), "maximum_batch_size": (1, 1 << 20),
    "minimum_epochs": (1, 100000), "maximum_epochs": (1, 100000),
    "patience": (1, 100000),
    "minimum_dropout": (0.0, 0.95), "maximum_dropout": (0.0, 0.95),
}

_RANGE_SHORT_FORMS = ("levels", "units_per_level", "neurons_per_unit", "skip_connection_depth",
                      "learning_rate", "weight_decay", "batch_size", "epochs", "dropout")
_CHOICE_SHORT_FORMS = {"activation": "activations", "normalization": "normalizations"}
_ALIASES = {
    "predecessor_level_connection_affinity_factor_first": "affinity_first",
    "predecessor_level_connection_affinity_factor_main": "affinity_main",
    "predecessor_level_connection_affinity_factor_decay_main": "affinity_decay",
}
_KNOWN_KEYS = set(_FIELD_TYPES) | set(_RANGE_SHORT_FORMS) | set(_CHOICE_SHORT_FORMS) | set(_ALIASES)


def field_kind(name: str) -> Optional[str]:
    """What the ``search_space`` field a caller calls ``name`` holds, for callers that must coerce
    wire values first: "int", "float", "text", "names" (one name or a list of them),
    "int_range" or "float_range" (one number, or a ``[minimum, maximum]`` pair); None if unknown."""
    name = _ALIASES.get(name, name)
    if name in _RANGE_SHORT_FORMS:
        return "int_range" if _FIELD_TYPES[f"minimum_{name}"] is int else "float_range"
    if name in _CHOICE_SHORT_FORMS:
        return "names"
    kinds: dict[Any, str] = {int: "int", float: "float", str: "text", tuple: "names"}
    return kinds.get(_FIELD_TYPES.get(name))


def _check_decay_step(learning_rate: float, weight_decay: float, prefix: str) -> None:
    """``FieldError`` on ``{prefix}weight_decay`` unless a step's decay factor
    1 - learning_rate * weight_decay stays positive (at 0 or below it zeroes or flips the weights)."""
    if learning_rate * weight_decay >= 1:
        raise FieldError(f"{prefix}weight_decay", f"{weight_decay!r} times {prefix}learning_rate {learning_rate!r} "
                         "must be below 1 (each step scales the weights by 1 - learning_rate * weight_decay)")


# a quoted value (a str's repr) or, outside one, the name of a range's end
_QUOTED_OR_END_NAME = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|\b(?:minimum|maximum)_\w+")


def _as_written(problem: str, written: dict[str, str], key: str) -> str:
    """``problem`` with each other field it mentions called by the key the caller set it with
    (``maximum_learning_rate`` set by ``learning_rate`` becomes ``learning_rate``). The other end
    of the erring key's own range keeps its name, which says which end it is; a value the
    problem quotes is the caller's and is left as it is."""
    def caller_name(match: "re.Match[str]") -> str:
        text = match.group(0)
        other = text if text[0] in "'\"" else written.get(text, text)
        return text if other == key else other
    return _QUOTED_OR_END_NAME.sub(caller_name, problem)


def _range_names(name: str) -> tuple[str, str]:
    return f"minimum_{name}", f"maximum_{name}"


def _converted(name: str, value: object) -> Any:
    """A ``from_dict`` value as the type of the space's field ``name``."""
    kind = _FIELD_TYPES[name]
    if kind is int:
        return _as_int(value, name)
    if kind is float:
        return _as_float(value, name)
    if kind is str:
        return _as_text(value, name)
    items = _require_list(value, name)
    if not items:
        raise FieldError(name, f"must name at least one choice, got {value!r}")
    return tuple(dict.fromkeys(_as_text(v, f"{name}[{i}]") for i, v in enumerate(items)))


def _hyper_of(candidate: "Candidate") -> Hyper:
    return {name: getattr(candidate, name) for name in _HYPER_KEYS}


def _integer(rng: np.random.Generator, low: int, high: int) -> int:
    return int(rng.integers(low, high + 1))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    if low == high:
        return float(low)
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _log_step(rng: np.random.Generator, value: float, low: float, high: float) -> float:
    """A multiplicative random step from ``value`` (about x/÷1.6 typical), clipped to [low, high]."""
    if low == high:
        return float(low)
    return float(min(max(value * math.exp(rng.normal(0.0, 0.5)), low), high))


def _require_mapping(d: object, where: str) -> dict[Any, Any]:
    if not isinstance(d, dict):
        raise FieldError(where, f"expected a map, got {type(d).__name__}")
    return d


def _require_list(value: object, where: str) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)):
        raise FieldError(where, f"expected a list, got {type(value).__name__} {value!r}")
    return value


def _reject_unknown(d: dict[Any, Any], known: Sequence[str], where: str) -> None:
    for key in d:
        if key not in known:
            raise FieldError(where, f"unknown field {key!r}")


def _as_int(value: object, name: str, low: Optional[int] = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FieldError(name, f"expected an integer, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise FieldError(name, f"must be >= {low}, got {value!r}")
    return int(value)


def _as_float(value: object, name: str, low: Optional[float] = None, high: Optional[float] = None,
              low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise FieldError(name, f"expected a number, got {type(value).__name__} {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise FieldError(name, f"must be finite, got {number!r}")
    if low is not None and (number < low or (low_open and number == low)):
        raise FieldError(name, f"must be {'>' if low_open else '>='} {low}, got {number!r}")
    if high is not None and (number > high or (high_open and number == high)):
        raise FieldError(name, f"must be {'<' if high_open else '<='} {high}, got {number!r}")
    return number


def _as_text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise FieldError(name, f"expected text, got {type(value).__name__} {value!r}")
    return str(value)


def _as_choice(value: object, name: str, choices: Sequence[str]) -> str:
    text = _as_text(value, name)
    if text not in choices:
        raise FieldError(name, f"must be one of {', '.join(choices)}, got {text!r}")
    return text


def _as_pair(value: object, name: str) -> tuple[Any, Any]:
    """A short-form range: one number (fixed) or a [minimum, maximum] pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise FieldError(name, f"a range is [minimum, maximum], got {list(value)!r}")
        return value[0], value[1]
    return value, value


def _refs_from_list(value: object, where: str) -> Tuple[Ref, ...]:
    refs: list[Ref] = []
    for n, ref in enumerate(_require_list(value, where)):
        if not isinstance(ref, (list, tuple)) or len(ref) != 2:
            raise FieldError(f"{where}[{n}]", f"expected a [level, unit] pair, got {ref!r}")
        refs.append((_as_int(ref[0], f"{where}[{n}] level"), _as_int(ref[1], f"{where}[{n}] unit")))
    return tuple(sorted(set(refs)))


def _unit_from_dict(d: object, where: str) -> Unit:
    fields = _require_mapping(d, where)
    _reject_unknown(fields, _UNIT_KEYS, where)
    if "neurons" not in fields or "inputs" not in fields:
        raise FieldError(where, "a unit needs 'neurons' and 'inputs'")
    lateral = _require_list(fields.get("lateral_inputs", []), f"{where}.lateral_inputs")
    return Unit(
        neurons=_as_int(fields["neurons"], f"{where}.neurons", low=1),
        inputs=_refs_from_list(fields["inputs"], f"{where}.inputs"),
        lateral_inputs=tuple(sorted({_as_int(m, f"{where}.lateral_inputs[{n}]") for n, m in enumerate(lateral)})),
    )


def _check_refs(refs: Tuple[Ref, ...], k: int, widths: Sequence[int], where: str) -> None:
    if not refs:
        raise FieldError(where, "a unit needs at least one input from an earlier level")
    for j, u in refs:
        if not (0 <= j < k and 0 <= u < widths[j]):
            raise FieldError(where, f"({j}, {u}) is not a unit on an earlier level")
