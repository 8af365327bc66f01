"""One trial's shape, everywhere: the journal line, the progress event and the result's trials.

``TrialRecord`` holds one finished trial under the journal's field names; ``to_json`` is its
journal line (and the ``trials`` entries and progress messages of ``cerebros_service``, which
add the contract's older names beside these: docs/engine.md#one-shape-per-trial). A
``TrialEvent`` is the progress event the search sends after each trial: the record and how far
the search has got.
"""
import enum
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from codec.errors import FieldError

from .space import Candidate


class TrialState(str, enum.Enum):
    """How a trial ended. A str, so a journal line and a result hold its plain value."""

    COMPLETED = "completed"  # every fold trained to its end or its early stop
    TIMEOUT = "timeout"  # stopped at the per-trial limit (max_trial_seconds)
    INTERRUPTED = "interrupted"  # stopped by the run's deadline or a cancellation
    FAILED = "failed"  # raised (diverged, degenerate); ``error`` says why

    def __str__(self) -> str:  # "completed" in messages and f-strings, as in the journal
        return self.value


@dataclass
class TrialOutcome:
    """What training a trial found (``cerebros.trials``): how it ended and scored. ``value`` is
    the objective on the validation rows (None when the trial has no score); ``stopped_reason``
    and ``best_epoch`` have one entry per fold network."""

    status: TrialState
    value: Optional[float]
    metrics: dict[str, float]
    val_loss: Optional[float]
    stopped_reason: list[Optional[str]]
    best_epoch: list[int]
    epochs_trained: int
    duration_seconds: float
    error: Optional[str]
    # Where it trained, in a search over BEAM nodes (opts.cluster; None otherwise): the node's
    # name, and the seconds its round trip took beyond the training (``cerebros.remote``).
    node: Optional[str] = None
    dispatch_seconds: Optional[float] = None

    def __post_init__(self) -> None:
        self.status = TrialState(self.status)  # its text ("completed") is that state


_NUMBER = (int, float)
# Each journal field's JSON types; resuming and reporting rely on them.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "number": (int,), "generation": (int,), "bracket": (int,), "epochs": (int,), "seed": (int,),
    "candidate": (dict,), "status": (str,), "value": _NUMBER + (type(None),), "metrics": (dict,),
    "val_loss": _NUMBER + (type(None),), "stopped_reason": (list,), "best_epoch": (list,),
    "epochs_trained": (int,), "duration_seconds": _NUMBER, "error": (str, type(None))}
# Fields only a trial trained on another node has (None otherwise, and left out of its line).
_PLACEMENT = ("node", "dispatch_seconds")
# Fields journals written before them lack, and what such a trial had.
_ADDED_LATER: dict[str, Any] = {"bracket": 0, "stopped_reason": []}


@dataclass(kw_only=True)  # its own fields follow TrialOutcome's defaulted ones: keywords only
class TrialRecord(TrialOutcome):
    """One finished trial: how it went (the ``TrialOutcome`` fields) and what was trained: trial
    ``number``, its ``generation`` and ``bracket`` (``strategies.Trial``), ``epochs``, its
    networks' ``seed`` and its ``candidate`` (a ``Candidate.to_dict``)."""

    number: int
    generation: int
    bracket: int
    epochs: int
    seed: int
    candidate: dict[str, Any]

    @classmethod
    def of(cls, outcome: TrialOutcome, *, number: int, generation: int, bracket: int, epochs: int, seed: int,
           candidate: dict[str, Any]) -> "TrialRecord":
        """The record of a trial that trained to ``outcome``."""
        return cls(**vars(outcome), number=number, generation=generation, bracket=bracket, epochs=epochs, seed=seed,
                   candidate=candidate)

    def to_json(self) -> dict[str, Any]:
        """The journal line's fields: plain JSON values, the state as its text; ``node`` and
        ``dispatch_seconds`` only for a trial trained on another node."""
        record = asdict(self)
        record["status"] = self.status.value
        return {name: value for name, value in record.items() if value is not None or name not in _PLACEMENT}

    @classmethod
    def from_json(cls, record: object, where: str) -> "TrialRecord":
        """The record of a journal line; ``FieldError`` (``run_dir``, ``where`` saying which line)
        unless it has every field, of its JSON type, and a valid candidate."""
        if not isinstance(record, dict):
            raise FieldError("run_dir", f"{where}: expected a JSON object, got {type(record).__name__}")
        record = {**_ADDED_LATER, **record}
        for name, types in _JSON_TYPES.items():
            if name not in record:
                raise FieldError("run_dir", f"{where}: the record lacks {name!r}")
            if not isinstance(record[name], types) or isinstance(record[name], bool):
                raise FieldError("run_dir", f"{where}: {name} is {record[name]!r}, not a {types[0].__name__}")
        try:
            status = TrialState(record["status"])
        except ValueError:
            known = ", ".join(state.value for state in TrialState)
            raise FieldError("run_dir", f"{where}: status is {record['status']!r}, not one of {known}") from None
        try:
            Candidate.from_dict(record["candidate"])
        except ValueError as exc:
            raise FieldError("run_dir", f"{where}: the trial's network: {exc}") from None
        known_fields = {field.name for field in fields(cls)}
        return cls(**{name: value for name, value in record.items() if name in known_fields} | {"status": status})


@dataclass
class TrialEvent:
    """The progress event after each trial told: its ``record``; ``completed`` trials so far (of
    ``max_trials``, None without a trial cap); the best trial so far (``best_trial`` its number,
    ``best_value`` its value; None before any trial has a value); seconds since the search
    started."""

    record: TrialRecord
    completed: int
    max_trials: Optional[int]
    best_value: Optional[float]
    best_trial: Optional[int]
    elapsed_seconds: float

    def to_json(self) -> dict[str, Any]:
        """The record's journal fields and the event's own, in one flat dict."""
        return {**self.record.to_json(), "completed": self.completed, "max_trials": self.max_trials,
                "best_value": self.best_value, "best_trial": self.best_trial,
                "elapsed_seconds": self.elapsed_seconds}
