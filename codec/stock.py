"""Stock ErlPort's Python values (``erlport.erlterms``) <-> this codec's terms.

Stock ErlPort's own Python side presents BEAM terms as its own types: an
``Atom`` (a ``bytes`` subclass holding the atom's Latin-1 name), a ``List``
(an immutable ``list`` subclass with ``to_string()``), a ``Map`` (an
immutable ``dict`` subclass), an ``ImproperList`` (a ``list`` subclass with a
``tail``) and an ``OpaqueObject`` (``data`` and ``language``). Binaries are
``bytes``; ``true``/``false``/``undefined`` are True/False/None.

- ``stock_kind`` recognizes those values by their class's module and name,
  so stock's package and any stand-in package of the same names work, and
  neither is imported here. ``stand_in`` gives the codec term for one of
  them: the encoder writes stock's values as what they mean, not as the
  binary, list or dict they subclass.
- ``to_stock`` turns a decoded term into stock's values, built with the
  classes of a given ``erlport.erlterms`` module.
"""
from __future__ import annotations

from .decoder import decode
from .errors import DecodeError
from .terms import Atom, ImproperList, Map

MODULE = "erlport.erlterms"
"""The module that stock ErlPort's value types live in."""

_KINDS = ("Atom", "List", "Map", "ImproperList", "OpaqueObject")
_VERSION = b"\x83"
_OPAQUE = "$erlport.opaque"
_ATOM_VALUES = {"true": True, "false": False, "undefined": None}
_MAX_LATIN1 = "\xff"


def stock_kind(obj):
    """The name of stock's type that ``obj`` is an instance of, or None."""
    for cls in type(obj).__mro__:
        if cls.__module__ == MODULE and cls.__name__ in _KINDS:
            return cls.__name__
    return None


def stand_in(obj):
    """The codec term that stock ErlPort sends for ``obj``, one of stock's values.

    An ``OpaqueObject`` of language ``erlang`` is the Erlang term its data
    holds (a pid, reference, fun, ...), so it goes back as itself; of any
    other language it is the ``{'$erlport.opaque', Language, Data}`` tuple.
    Raises ValueError for an opaque whose fields are not what stock allows.
    """
    kind = stock_kind(obj)
    if kind is None:
        raise TypeError(f"not a value of stock ErlPort's types: {type(obj).__name__}")
    if kind == "Atom":
        return Atom(bytes(obj).decode("latin-1"))
    if kind == "List":
        return list(obj)
    if kind == "Map":
        return dict(obj)
    if kind == "ImproperList":
        items = tuple(obj)
        return ImproperList(items, obj.tail) if items else obj.tail
    return _opaque_term(obj)


def _opaque_term(obj):
    language, data = getattr(obj, "language", None), getattr(obj, "data", None)
    if not isinstance(language, bytes) or not isinstance(data, bytes):
        raise ValueError("OpaqueObject needs bytes data and an Atom language")
    name = bytes(language).decode("latin-1")
    if name != "erlang":
        return (Atom(_OPAQUE), Atom(name), bytes(data))
    try:
        return decode(_VERSION + data)
    except DecodeError as exc:
        raise ValueError(f"OpaqueObject data is not an Erlang term: {exc}") from None


def to_stock(term, types, opaque):
    """``term`` (as ``codec.decode`` gives it) as stock ErlPort's values.

    ``types`` is an ``erlport.erlterms`` module (stock's own, or one with the
    same five classes). ``opaque(language, data)`` makes the value of each
    ``{'$erlport.opaque', Language, Data}`` tuple (``language`` a str).
    Atoms whose names go beyond Latin-1, which stock cannot decode at all,
    stay ``codec.Atom``; pids, references and the other terms stock only
    sees wrapped stay the codec's types. No recursion: any depth works.
    """
    done = []
    todo = [(term, False)]
    while todo:
        value, children_done = todo.pop()
        kind = type(value)
        if children_done:
            done.append(_assemble(value, done, types))
        elif kind is Atom:
            done.append(_atom(value, types))
        elif kind is tuple and _is_opaque(value):
            done.append(opaque(str(value[1]), bytes(value[2])))
        elif kind is list and _numbers_only(value):
            done.append(types.List(value))
        elif kind in (list, tuple, ImproperList, Map):
            todo.append((value, True))
            todo.extend((child, False) for child in reversed(_children(value)))
        else:
            done.append(value)
    return done[0]


def _atom(name, types):
    if name in _ATOM_VALUES:
        return _ATOM_VALUES[name]
    if max(name, default="\0") > _MAX_LATIN1:
        return name
    return types.Atom(name.encode("latin-1"))


def _is_opaque(value) -> bool:
    return (len(value) == 3 and type(value[0]) is Atom and value[0] == _OPAQUE
            and type(value[1]) is Atom and isinstance(value[2], (bytes, memoryview)))


def _numbers_only(items) -> bool:
    return all(type(item) is int or type(item) is float for item in items)


def _children(value):
    if type(value) is ImproperList:
        return list(value.items) + [value.tail]
    if type(value) is Map:
        return [part for pair in value.items() for part in pair]
    return value


def _assemble(container, done, types):
    """The stock value of ``container`` from its converted children, taken off ``done``."""
    kind = type(container)
    if kind is Map:
        count = 2 * len(container)
    elif kind is ImproperList:
        count = len(container.items) + 1
    else:
        count = len(container)
    parts = done[len(done) - count:] if count else []
    del done[len(done) - count:]
    if kind is tuple:
        return tuple(parts)
    if kind is list:
        return types.List(parts)
    if kind is ImproperList:
        return types.ImproperList(parts[:-1], parts[-1])
    pairs = list(zip(parts[0::2], parts[1::2]))
    try:
        result = types.Map(pairs)
    except TypeError as exc:
        raise DecodeError(f"map key cannot be used in Python: {exc}", 0) from None
    if len(result) < len(pairs):
        raise DecodeError("map keys that are one key in Python (stock ErlPort would "
                          "merge them)", 0)
    return result
