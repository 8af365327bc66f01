"""Terms on the wire: frames <-> plain Python values, and the error terms of the protocol.

Incoming frames are decoded with the codec's plain mapping (binaries -> str,
atoms -> codec.Atom, a str, except true/false/nil/undefined -> True/False/None,
maps -> dict) plus two hooks of the worker's own. Every pid becomes sendable
(see ``sendable``). ``{'$erlport.opaque', erlang, Bytes}``, which is how stock
ErlPort's Erlang side sends pids, references, ports, funs and bitstrings,
becomes the term its bytes hold, so it goes back to Erlang raw, as stock's
Python side sends it, and a wrapped pid is a pid that can be sent to. In
strict mode frames get stock ErlPort's own mapping (``codec.stock``), where such
an opaque is stock's ``OpaqueObject``, which goes back as that term too.
``{'$erlport.opaque', python, Bytes}`` is refused: stock ErlPort unpickles
it, which would let anyone who can send a frame run code.
"""
from __future__ import annotations

import re
import traceback

from codec import DEFAULT_MAX_INFLATED_SIZE, Atom, DecodeError, Opaque, plain
from codec import decode as decode_raw
from codec.stock import to_stock

from .sendable import SendablePid

_ERLANG = "erlang"
_ETF_VERSION = b"\x83"
_PYTHON = Atom("python")
_E = Atom("e")
_MAX_ATOM = 255
_DESCRIBE_LIMIT = 200
_UNCOUNTED = frozenset((int, float, bool, type(None), Atom))
_COUNTED = frozenset((str, bytes, bytearray, dict, list, tuple))
# An opaque's atom is always spelt out in an uncompressed frame (ETF has no
# atom references outside distribution), so a small frame without this text
# cannot hold one and is decoded without the per-tuple hook. Past
# _SCAN_LIMIT bytes the scan would cost more than the hook saves.
_OPAQUE_TEXT = re.compile(re.escape(b"$erlport.opaque"))
_COMPRESSED = b"P"  # the tag of a compressed term (80), after the version byte
_SCAN_LIMIT = 4096


class RefusedOpaque(ValueError):
    """A frame held an ``{'$erlport.opaque', Language, Bytes}`` the worker does not take:
    one from a language other than erlang, or one whose bytes are not an Erlang term.

    ``message`` is the decoded frame, so a call can still get an error reply.
    """

    def __init__(self, reason: str, message) -> None:
        super().__init__(reason)
        self.message = message


def _pid_hook(pid):
    return SendablePid.of(pid)


def _refusal(language: str) -> str:
    return (f"refused {{'$erlport.opaque', {language}, ...}}: only Erlang-side opaque values "
            "are accepted (stock ErlPort would unpickle this)")


def _unwrap(opaque: Opaque, refused: list, max_inflated_size: int):
    """The term an Erlang-side opaque wraps; anything else is noted in ``refused``.

    Opaques inside it are kept as they are: stock ErlPort never nests them.
    """
    if opaque.language != _ERLANG:
        refused.append(_refusal(opaque.language))
        return opaque

    def inner_tuple(value):
        if type(value) is Opaque and value.language != _ERLANG:
            return _unwrap(value, refused, max_inflated_size)
        return value

    try:
        return plain.decode(_ETF_VERSION + opaque.data, tuple_hook=inner_tuple,
                            pid_hook=_pid_hook, max_inflated_size=max_inflated_size)
    except DecodeError as exc:
        refused.append(f"refused {{'$erlport.opaque', erlang, Bytes}}: Bytes is not an "
                       f"Erlang term ({exc})")
        return opaque


class Wire:
    """Encoding options of one worker, and the decoding hooks."""

    def __init__(self, strings: str = "binary", none: str = "nil", compressed: int = 0,
                 max_inflated_size: int = DEFAULT_MAX_INFLATED_SIZE, stock_types=None) -> None:
        self._strings = strings
        self._none = none
        self._compressed = compressed
        self._max_inflated_size = max_inflated_size
        self._stock_types = stock_types

    def decode(self, frame):
        """Decode one frame into plain Python values.

        Raises DecodeError if it is malformed, RefusedOpaque if it holds a
        non-Erlang opaque value.
        """
        if self._stock_types is not None:
            return self._decode_as_stock(frame)
        if len(frame) <= _SCAN_LIMIT and _OPAQUE_TEXT.search(frame) is None \
                and frame[1:2] != _COMPRESSED:
            return plain.decode(frame, pid_hook=_pid_hook,
                                max_inflated_size=self._max_inflated_size)
        refused = []

        def tuple_hook(value):
            if type(value) is Opaque:
                return _unwrap(value, refused, self._max_inflated_size)
            return value

        message = plain.decode(frame, tuple_hook=tuple_hook, pid_hook=_pid_hook,
                               max_inflated_size=self._max_inflated_size)
        if refused:
            raise RefusedOpaque(refused[0], message)
        return message

    def _decode_as_stock(self, frame):
        """Decode one frame with stock ErlPort's mapping (``codec.stock``), except the
        message's tag and, in a call, its module, function and argument list, which
        stay plain for the dispatcher."""
        types = self._stock_types
        refused = []

        def opaque(language, data):
            if language != _ERLANG:
                refused.append(_refusal(language))
                return None
            return types.OpaqueObject(data, types.Atom(b"erlang"))

        message = decode_raw(frame, pid_hook=_pid_hook, max_inflated_size=self._max_inflated_size)
        if type(message) is tuple and len(message) == 5 and message[0] == "C":
            args = message[4]
            if type(args) is list:
                args = [to_stock(arg, types, opaque) for arg in args]
            else:
                args = to_stock(args, types, opaque)
            message = message[:4] + (args,)
        elif type(message) is tuple and message:
            message = message[:1] + tuple(to_stock(part, types, opaque) for part in message[1:])
        if refused:
            raise RefusedOpaque(refused[0], message)
        return message

    def encode(self, term) -> bytes:
        """Encode ``term`` with this worker's string, None and compression settings."""
        return plain.encode(term, strings=self._strings, none=self._none,
                            compressed=self._compressed)

    def error_term(self, exc: BaseException):
        """``{python, 'module.Class', Message, Traceback}`` for ``exc``, traceback innermost first."""
        kind = type(exc)
        name = f"{kind.__module__}.{kind.__qualname__}"[:_MAX_ATOM]
        frames = traceback.format_tb(exc.__traceback__)
        frames.reverse()
        return (_PYTHON, Atom(name), _text(_message(exc)), [_text(f) for f in frames])

    def error_reply(self, call_id: int, exc: BaseException):
        """The ``{'e', Id, Error}`` reply for a call that raised ``exc``."""
        return (_E, call_id, self.error_term(exc))


def encoded_size_at_least(value) -> int:
    """A lower bound of ``value``'s encoded size, from the value alone: the bytes of a
    binary, text or array, a container's length. It never looks inside a container and
    matches types exactly (a subclass counts as nothing), so it costs next to nothing on
    the hot path."""
    kind = type(value)
    if kind in _UNCOUNTED:
        return 0
    if kind in _COUNTED:
        return len(value)
    nbytes = getattr(value, "nbytes", None)  # memoryview, numpy array
    return nbytes if type(nbytes) is int else 0


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__name__}>"


def _text(text: str) -> str:
    """``text`` made encodable as UTF-8 (lone surrogates escaped)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe(term) -> str:
    """A short repr of ``term`` for error messages."""
    text = repr(term)
    if len(text) > _DESCRIBE_LIMIT:
        text = text[:_DESCRIBE_LIMIT] + "..."
    return text
