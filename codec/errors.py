"""The two exceptions of the codec: one for bad input, one for unencodable terms."""


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
