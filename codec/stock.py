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

from itertools import chain

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
_NUMBERS = frozenset((int, float))
_CONTAINERS = (list, tuple, ImproperList, Map)


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
    atoms = {}
    result = []
    # The open containers: (their remaining children, converted children, container).
    stack = []
    items, parts, container = iter((term,)), result, None
    while True:
        for value in items:
            kind = type(value)
            if kind is Atom:
                atom = atoms.get(value)
                if atom is None:
                    atom = atoms[value] = _atom(value, types)
                parts.append(atom)
            elif kind is list and _numbers_only(value):
                parts.append(types.List(value))
            elif kind is tuple and _is_opaque(value):
                parts.append(opaque(str(value[1]), bytes(value[2])))
            elif kind in _CONTAINERS:
                stack.append((items, parts, container))
                items, parts, container = _children(value), [], value
                break
            else:
                parts.append(value)
        else:
            if container is None:
                return result[0]
            value = _assemble(container, parts, types)
            items, parts, container = stack.pop()
            parts.append(value)


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
    return _NUMBERS.issuperset(map(type, items))


def _children(value):
    """An iterator over a container's children, in the order ``_assemble`` takes them."""
    if type(value) is ImproperList:
        return chain(value.items, (value.tail,))
    if type(value) is Map:
        return chain.from_iterable(value.items())
    return iter(value)


def _assemble(container, parts, types):
    """The stock value of ``container`` from its converted children."""
    kind = type(container)
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
