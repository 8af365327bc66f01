"""Hypothesis strategies for every kind of raw term the codec handles.

``terms()`` draws nested terms mixing all of them; the leaf strategies are
exported for targeted tests. Everything drawn is what ``codec.decode`` would
return (so a round trip compares equal with ``exact_key``), and all of it is
valid for OTP 25 with one exception left to the caller: map keys never
include ``-0.0``, which OTP before 27 treats as the same key as ``0.0``.
"""
from __future__ import annotations

import struct

from hypothesis import strategies as st

from .core import encode
from .terms import Atom, BitBinary, Export, Fun, ImproperList, Map, Pid, Port, Reference

u32 = st.integers(0, 2**32 - 1)

atoms = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=200, max_size=255),
    st.sampled_from(["ok", "error", "true", "false", "nil", "undefined", ""]),
).map(Atom)

integers = st.one_of(
    st.integers(0, 255),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**64), 2**64),
    st.integers(-(2**2100), 2**2100),
)

floats = st.floats(allow_nan=False, allow_infinity=False)

binaries = st.binary(max_size=40)


@st.composite
def bit_binaries(draw):
    """A BitBinary with 1..7 used bits and its unused low bits cleared."""
    data = bytearray(draw(st.binary(min_size=1, max_size=8)))
    bits = draw(st.integers(1, 7))
    data[-1] &= (0xFF << (8 - bits)) & 0xFF
    return BitBinary(bytes(data), bits)


# Never "nonode@nohost": a node checks and rewrites terms naming itself, so
# those would not compare byte for byte against the oracle.
nodes = st.sampled_from(["a@b", "worker@host.example", "n\u00e9@h", "far@host"]).map(Atom)
pids = st.builds(Pid, nodes, st.integers(0, 2**28), st.integers(0, 2**13), u32)
references = st.builds(Reference, nodes, u32, st.lists(u32, min_size=3, max_size=5).map(tuple))
ports = st.builds(Port, nodes, st.one_of(st.integers(0, 2**28), st.integers(2**32, 2**64 - 1)),
                  u32)
exports = st.builds(Export, atoms, atoms, st.integers(0, 255))


@st.composite
def funs(draw, minor_version=2):
    """A well-formed NEW_FUN_EXT whose atoms are written as ``minor_version`` writes them."""
    module = draw(atoms)
    arity = draw(st.integers(0, 255))
    free = draw(st.lists(st.one_of(integers, binaries, atoms), max_size=3))
    parts = [
        bytes((arity,)), draw(st.binary(min_size=16, max_size=16)),
        struct.pack(">II", draw(u32), len(free)),
        *(encode(t, minor_version=minor_version)[1:]
          for t in (module, draw(st.integers(0, 2**31 - 1)), draw(st.integers(0, 2**31 - 1)),
                    draw(pids), *free)),
    ]
    body = b"".join(parts)
    return Fun(module, arity, struct.pack(">I", len(body) + 4) + body)


def leaves(with_funs=True, minor_version=2):
    """Every scalar kind of term."""
    kinds = [integers, floats, atoms, binaries, bit_binaries(), pids, references, ports,
             exports, st.just([])]
    if with_funs:
        kinds.append(funs(minor_version))
    return st.one_of(kinds)


def _key(term):
    """OTP before 27 merges 0.0 and -0.0 as map keys: use 0.0 throughout a key."""
    if type(term) is float:
        return 0.0 if term == 0.0 else term
    if type(term) is tuple:
        return tuple(_key(item) for item in term)
    if type(term) is list:
        return [_key(item) for item in term]
    if type(term) is ImproperList:
        return ImproperList(tuple(_key(item) for item in term.items), _key(term.tail))
    if type(term) is Map:
        return Map([(_key(k), _key(v)) for k, v in term.items()])
    return term


def terms(with_funs=True, minor_version=2, max_leaves=40):
    """Nested terms of every kind: tuples, lists, strings, improper lists and maps."""
    def extend(children):
        return st.one_of(
            st.lists(children, max_size=6),
            st.lists(children, max_size=6).map(tuple),
            st.lists(st.integers(0, 255), min_size=1, max_size=20),
            st.builds(lambda items, tail: ImproperList(tuple(items), tail),
                      st.lists(children, min_size=1, max_size=4),
                      st.one_of(integers, atoms, binaries, st.tuples(children))),
            # Map() keeps one pair per Erlang key, as a decoded map has.
            st.lists(st.tuples(children.map(_key), children), max_size=6).map(Map),
        )
    return st.recursive(leaves(with_funs, minor_version), extend, max_leaves=max_leaves)
