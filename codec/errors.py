"""The codec's exceptions: bad ETF input, unencodable terms, and a caller's value that cannot be
what its field means (``FieldError``, raised by ``codec.coerce`` and by every layer above)."""
import difflib
from typing import Optional


class DecodeError(ValueError):
    """Malformed or refused ETF input; ``offset`` is where in the input it was found."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at byte offset {offset})")
        self.offset = offset
        self.reason = message


class EncodeError(ValueError):
    """A Python value that cannot travel as ETF; ``path`` locates it, e.g. ``$[2]["layers"][0]``."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"{message} at {path}")
        self.path = path
        self.reason = message


class FieldError(ValueError):
    """A value a caller gave that cannot be used.

    ``field`` names it as the caller wrote it (``opts.budget.max_trials``, ``search_space.activation``),
    ``problem`` says what is wrong, and ``kind`` how: ``"invalid"`` (the value is wrong) or
    ``"not_found"`` (it names a dataset, file or run that does not exist).
    """

    def __init__(self, field: str, problem: str, kind: str = "invalid") -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.kind = kind

    @classmethod
    def unknown_key(cls, where: str, name: str, known, problem: str = "unknown field") -> "FieldError":
        """The error for a key ``name`` that the map ``where`` (or, if empty, the top level) does
        not take: it names the closest of the ``known`` keys, if one is close, and lists them all."""
        known = sorted(known)
        closest = difflib.get_close_matches(name, known, n=1, cutoff=0.75)  # 0.6 offers `tau` for `eta`
        hint = f"did you mean `{closest[0]}`? " if closest else ""
        return cls(f"{where}.{name}" if where else name, f"{problem}; {hint}known: {', '.join(known) or 'none'}")

    def renamed(self, field: str, problem: Optional[str] = None) -> "FieldError":
        """The same error with its field called ``field`` (how the caller wrote it), and its
        ``problem`` replaced when one is given."""
        return FieldError(field, self.problem if problem is None else problem, self.kind)
