"""Erlang's map-key order, used to write maps with ``deterministic``.

It is the standard term order (number < atom < reference < fun < port < pid <
tuple < map < nil < list < bitstring) compared exactly: every integer sorts
before every float, so ``1`` and ``1.0`` are distinct, ordered keys. Within
pids, ports and references the field order is OTP 25's, checked on a node:
pids by serial, number, node, creation; ports by node, creation, number;
references by node, creation, word count, words. Comparison
walks the terms with an explicit stack, so deep terms need no recursion.
"""
from __future__ import annotations

import struct
from functools import cmp_to_key
from typing import Any, List, Tuple

from .decoder import decode
from .terms import (
    Atom,
    BitBinary,
    Export,
    Fun,
    ImproperList,
    Map,
    Opaque,
    Pid,
    Port,
    Reference,
)

_NUMBER, _ATOM, _REF, _FUN, _PORT, _PID, _TUPLE, _MAP, _NIL, _LIST, _BITS = range(11)


def _classify(term: Any, none_as: str) -> Tuple[int, Any]:
    """Return (order class, comparable key or the compound itself)."""
    if isinstance(term, bool):
        return _ATOM, "true" if term else "false"
    if isinstance(term, int):
        return _NUMBER, (0, term)
    if isinstance(term, float):
        return _NUMBER, (1, term)
    if isinstance(term, Atom):
        return _ATOM, str(term)
    if term is None:
        return _ATOM, none_as
    if isinstance(term, str):
        data = term.encode("utf-8")
        return _BITS, (data, 8 * len(data))
    if isinstance(term, (bytes, bytearray, memoryview)):
        data = bytes(term)
        return _BITS, (data, 8 * len(data))
    if isinstance(term, BitBinary):
        return _BITS, (term.data, 8 * len(term.data) - 8 + term.bits)
    if isinstance(term, tuple):
        return _TUPLE, term
    if isinstance(term, Opaque):
        return _TUPLE, (Atom("$erlport.opaque"), term.language, term.data)
    if isinstance(term, list):
        return (_LIST, term) if term else (_NIL, 0)
    if isinstance(term, ImproperList):
        return _LIST, term
    if isinstance(term, (Map, dict)):
        return _MAP, term
    if isinstance(term, Pid):
        return _PID, (term.serial, term.id, term.node, term.creation)
    if isinstance(term, Port):
        return _PORT, (term.node, term.creation, term.id)
    if isinstance(term, Reference):
        return _REF, (term.node, term.creation, len(term.ids), tuple(reversed(term.ids)))
    if isinstance(term, Export):
        return _FUN, (1, term.module, term.function, term.arity)
    if isinstance(term, Fun):
        return _FUN, _fun_key(term)
    raise TypeError(f"no Erlang order for {type(term).__name__}")


def _fun_key(fun: Fun) -> Tuple[Any, ...]:
    """(0, module, old index, old uniq, free variable count, free variables): OTP's fun order."""
    free_count = struct.unpack_from(">I", fun.payload, 25)[0]
    # Module, old index, old uniq, pid and free variables follow each other
    # like the elements of a tuple; decode them as one.
    arity = free_count + 4
    header = bytes((131, 104, arity)) if arity <= 255 else b"\x83i" + struct.pack(">I", arity)
    module, old_index, old_uniq, _pid, *free = decode(header + fun.payload[29:])
    return (0, module, old_index, old_uniq, free_count, tuple(free))


def _cells(term: Any) -> Tuple[List[Any], Any]:
    """A list as (elements, tail) with tail ``[]`` when it is proper."""
    if isinstance(term, ImproperList):
        return list(term.items), term.tail
    return term, []


def compare(a: Any, b: Any, none_as: str = "nil") -> int:
    """Return -1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` as map keys."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        cx, kx = _classify(x, none_as)
        cy, ky = _classify(y, none_as)
        if cx != cy:
            return -1 if cx < cy else 1
        if cx == _TUPLE:
            if len(kx) != len(ky):
                return -1 if len(kx) < len(ky) else 1
            pending.extend(reversed(list(zip(kx, ky))))
        elif cx == _MAP:
            if len(kx) != len(ky):
                return -1 if len(kx) < len(ky) else 1
            px = sort_pairs(list(kx.items()), none_as)
            py = sort_pairs(list(ky.items()), none_as)
            # Erlang compares all the keys first, then the values.
            pending.extend(reversed([(p[1], q[1]) for p, q in zip(px, py)]))
            pending.extend(reversed([(p[0], q[0]) for p, q in zip(px, py)]))
        elif cx == _FUN and kx[:5] != ky[:5]:
            return -1 if kx[:5] < ky[:5] else 1
        elif cx == _FUN and kx[0] == 0:
            pending.extend(reversed(list(zip(kx[5], ky[5]))))
        elif cx == _BITS:
            order = _compare_bits(kx, ky)
            if order:
                return order
        elif cx == _LIST:
            xs, xtail = _cells(kx)
            ys, ytail = _cells(ky)
            common = min(len(xs), len(ys))
            pending.append((_rest(xs[common:], xtail), _rest(ys[common:], ytail)))
            pending.extend(reversed(list(zip(xs[:common], ys[:common]))))
        elif kx != ky:
            return -1 if kx < ky else 1
    return 0


def _compare_bits(x: Tuple[bytes, int], y: Tuple[bytes, int]) -> int:
    """Compare two (data, bit length) bitstrings bit by bit; a prefix sorts first."""
    (xdata, xbits), (ydata, ybits) = x, y
    common = min(xbits, ybits)
    whole, extra = divmod(common, 8)
    if xdata[:whole] != ydata[:whole]:
        return -1 if xdata[:whole] < ydata[:whole] else 1
    if extra:
        mask = (0xFF << (8 - extra)) & 0xFF
        xpart, ypart = xdata[whole] & mask, ydata[whole] & mask
        if xpart != ypart:
            return -1 if xpart < ypart else 1
    return (xbits > ybits) - (xbits < ybits)


def _rest(items: List[Any], tail: Any) -> Any:
    """What is left of a list after a common prefix: a shorter list, or its tail."""
    if not items:
        return tail
    if isinstance(tail, list) and not tail:
        return items
    return ImproperList(tuple(items), tail)


def sort_pairs(pairs: List[Tuple[Any, Any]], none_as: str = "nil") -> List[Tuple[Any, Any]]:
    """Sort (key, value) pairs by their keys in Erlang map-key order."""
    keys = [k for k, _ in pairs]
    kinds = set(map(type, keys))
    if len(kinds) == 1 and kinds.pop() in (Atom, str, int, bytes):
        # For one of these kinds Python's order already is Erlang's.
        return sorted(pairs, key=_first)
    if none_as == "nil":
        order = _KEY_ORDER
    else:
        order = cmp_to_key(lambda x, y: compare(x, y, none_as))
    return sorted(pairs, key=lambda pair: order(pair[0]))


def _first(pair: Tuple[Any, Any]) -> Any:
    return pair[0]


_KEY_ORDER = cmp_to_key(compare)
