"""BEAM terms <-> plain Python values, as hooks on the codec's single pass.

The mapping (binaries to ``str``, ``nil`` to None, tensors to numpy arrays, ...) is the
table in docs/codec.md. The functions named ``reference_*`` do it in Python, as hooks on
the raw codec (and ``default`` for encoding); they are the reference. ``decode``,
``decode_from`` and ``encode`` are the compiled core's versions of them when it is built
(``codec._cdecode.plain_decode``, ``codec._cencode.plain_encode``: same results, same
errors), else these (``IMPLEMENTATION`` says which).
"""
from __future__ import annotations

import codecs
import datetime

import numpy as np

from . import core, tensor
from .decoder import DEFAULT_MAX_INFLATED_SIZE
from .core import decode as _decode
from .core import decode_from as _decode_from
from .core import encode as _encode
from .errors import DecodeError, EncodeError
from .terms import Atom, ImproperList, Map, Opaque

_ATOM_VALUES = {"true": True, "false": False, "nil": None, "undefined": None}
_OPAQUE = Atom("$erlport.opaque")

# A binary that is not UTF-8 usually shows it in its first bytes. Probing a
# prefix first avoids a failed decode of the whole binary, which copies it
# (the UnicodeDecodeError keeps the input): tensor data would lose zero-copy.
_PROBE = 4096
_utf8_probe = codecs.getincrementaldecoder("utf-8")


def reference_decode(data, *, zero_copy=False, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE,
                     pid_hook=None, tuple_hook=None):
    """Decode one whole ETF frame into plain Python values.

    With ``zero_copy`` the non-UTF-8 binaries and tensor arrays share the
    input buffer, which must then stay unchanged while they are in use.
    ``pid_hook`` gets each pid; ``tuple_hook`` gets each value the plain
    mapping made of a tuple (a tuple, an ``Opaque`` or a tensor array).
    """
    return _decode(data, zero_copy=zero_copy, max_inflated_size=max_inflated_size,
                   **_hooks(pid_hook, tuple_hook))


def reference_decode_from(data, offset=0, *, zero_copy=False,
                          max_inflated_size=DEFAULT_MAX_INFLATED_SIZE, pid_hook=None,
                          tuple_hook=None):
    """Decode the term at ``data[offset]`` into plain values; return ``(value, end_offset)``."""
    return _decode_from(data, offset, zero_copy=zero_copy, max_inflated_size=max_inflated_size,
                        **_hooks(pid_hook, tuple_hook))


def reference_encode(value, *, strings="binary", none="nil", minor_version=2, compressed=False,
                     deterministic=False) -> bytes:
    """Encode a plain Python value as one ETF frame.

    ``strings="charlist"`` sends every ``str`` as a list of code points;
    ``none`` names the atom ``None`` becomes (``"nil"`` or ``"undefined"``).
    """
    if none not in ("nil", "undefined"):
        raise ValueError(f"none must be 'nil' or 'undefined', not {none!r}")
    try:
        return _encode(value, minor_version=minor_version, compressed=compressed,
                       deterministic=deterministic, str_as=strings, none_as=none,
                       default=_default)
    except _Refused as refused:
        raise _refusal(value, refused) from None


def _refusal(value, refused):
    """The EncodeError for a value ``_default`` refused (``refused``) inside ``value``."""
    return EncodeError(refused.reason, _locate(value, refused.obj))


def _delegated_hooks(zero_copy, pid_hook, tuple_hook):
    """The plain mapping as the raw decoder's hooks tuple, for the C core's delegated terms."""
    hooks = _hooks(pid_hook, tuple_hook)
    return (zero_copy, hooks["atom_hook"], hooks["binary_hook"], hooks["map_hook"],
            hooks["tuple_hook"], hooks["pid_hook"])


def _hooks(pid_hook, tuple_hook):
    """The plain mapping as decoder hooks, fresh for one decoding run."""
    run = _Hooks()
    plain_tuple = run.tuple
    if tuple_hook is not None:
        def plain_tuple(items):
            return tuple_hook(run.tuple(items))
    return {"atom_hook": _atom, "binary_hook": run.binary, "map_hook": _map,
            "tuple_hook": plain_tuple, "pid_hook": pid_hook}


def _atom(atom):
    return _ATOM_VALUES.get(atom, atom)


def _map(pairs, offset):
    """A dict of the pairs, refusing keys that Python would merge."""
    try:
        result = dict(pairs)
    except TypeError:
        # A list or map key: keep every pair in a Map, which compares keys
        # the Erlang way and accepts unhashable ones.
        try:
            return Map.from_unique_pairs(pairs)
        except KeyError as exc:
            raise DecodeError(f"duplicate map key {exc.args[0]!r}", offset) from None
        except TypeError as exc:
            raise DecodeError(f"map key cannot be used in Python: {exc}", offset) from None
    if len(result) < len(pairs):
        seen = {}
        for key, _ in pairs:
            if key in seen:
                raise DecodeError(f"map keys {seen[key]!r} and {key!r} are the same dict key "
                                  "in Python (codec.decode keeps both)", offset)
            seen[key] = key
    return result


class _Hooks:
    """Hooks of one decoding run; they remember the last binary's raw bytes.

    A tuple's last element is decoded just before the tuple closes, so when
    a tensor's or opaque's data is the value the binary hook last returned,
    ``last_raw`` holds its bytes, even if the hook turned them into a str.
    """

    __slots__ = ("last_value", "last_raw")

    def __init__(self):
        self.last_value = self.last_raw = None

    def binary(self, raw):
        value = raw
        try:
            if len(raw) > _PROBE:
                _utf8_probe().decode(raw[:_PROBE])
            value = str(raw, "utf-8")
        except UnicodeDecodeError:
            pass
        self.last_value, self.last_raw = value, raw
        return value

    def tuple(self, items):
        if len(items) in (3, 4):
            data = self.last_raw if items[-1] is self.last_value else items[-1]
            return _tuple_value(items, data)
        return items


def _tuple_value(items, data):
    """A tuple's plain value: an Opaque, a tensor array or the tuple itself.

    ``data`` is its last element, or the binary it was decoded from when that
    became a str.
    """
    if len(items) == 3 and type(items[0]) is Atom and items[0] == _OPAQUE:
        if type(items[1]) is Atom and isinstance(data, (bytes, memoryview)):
            return Opaque(items[1], bytes(data))
    elif tensor.is_tensor(items):
        return tensor.from_parts(items[1], items[2], data)
    return items


class _Refused(Exception):
    """Raised by ``_default`` for a value plain encoding does not take."""

    def __init__(self, obj, reason):
        super().__init__(reason)
        self.obj = obj
        self.reason = reason


def _default(obj):
    """The encodable stand-in for a value the raw encoder does not know."""
    if isinstance(obj, np.ndarray):
        try:
            return tensor.to_term(obj)
        except EncodeError as exc:
            raise _Refused(obj, exc.reason) from None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, (datetime.date, datetime.time)):
        return obj.isoformat()
    raise _Refused(obj, f"cannot encode {type(obj).__module__}.{type(obj).__qualname__}")


def _locate(root, target) -> str:
    """The path of ``target`` (found by identity) inside ``root``, like ``$[0]['layers']``."""
    todo = [(root, "$")]
    while todo:
        value, path = todo.pop()
        if value is target:
            return path
        if isinstance(value, (dict, Map)):
            for key, item in value.items():
                todo.append((key, f"{path}<key {key!r}>"))
                todo.append((item, f"{path}[{key!r}]"))
        elif isinstance(value, (list, tuple)):
            todo.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
        elif isinstance(value, ImproperList):
            todo.extend((item, f"{path}[{index}]") for index, item in enumerate(value.items))
            todo.append((value.tail, f"{path}[tail]"))
    return "$"


decode, decode_from, encode, IMPLEMENTATION = (reference_decode, reference_decode_from,
                                               reference_encode, "python")
if core.PLAIN is not None:
    decode, decode_from, encode = core.PLAIN
    IMPLEMENTATION = "c"
