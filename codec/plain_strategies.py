"""Hypothesis strategies for plain Python values and numpy tensors.

``plain_values()`` draws values that ``codec.plain`` round-trips exactly
(``plain.decode(plain.encode(v))`` is ``same_plain`` to ``v``); ``tensors()``
draws arrays of every supported dtype and shape, empty and 0-d included;
``tensor_inputs()`` adds layouts the encoder must normalise (non-contiguous,
Fortran-order, big-endian). ``same_plain`` compares plain values exactly:
types, float signs and array dtypes included.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from . import strategies as raw
from .terms import Atom, ImproperList, Map, Opaque

# Atoms that plain decoding turns into something else, or reads as markers.
_SPECIAL_ATOMS = {"true", "false", "nil", "undefined", "tensor", "$erlport.opaque"}

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
atoms = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12).filter(
    lambda t: t not in _SPECIAL_ATOMS).map(Atom)
# Only binaries that are not UTF-8 stay bytes; the others decode as str.
non_utf8_bytes = st.binary(max_size=20).map(lambda b: b + b"\xff")
floats = st.floats(allow_nan=False, allow_infinity=False)
opaques = st.builds(Opaque, st.sampled_from([Atom("erlang"), Atom("python")]),
                    st.binary(max_size=16))



def scalars(minor_version=2):
    """Every kind of leaf; funs hold atoms as ``minor_version`` writes them."""
    return st.one_of(
        st.none(), st.booleans(), raw.integers, floats, texts, atoms, non_utf8_bytes,
        raw.bit_binaries(), raw.pids, raw.references, raw.ports, raw.exports,
        raw.funs(minor_version), opaques,
    )


# Map keys: hashable and never -0.0 (OTP before 27 merges it with 0.0).
keys = st.one_of(st.none(), st.booleans(), raw.integers, floats.map(lambda f: f + 0.0), texts,
                 atoms, non_utf8_bytes, st.tuples(texts, raw.integers))

DTYPES = ["<f2", "<f4", "<f8", "i1", "<i2", "<i4", "<i8", "u1", "<u2", "<u4", "<u8",
          "<c8", "<c16"]


def plain_values(minor_version=2, max_leaves=30):
    """Nested plain values that round-trip through ``codec.plain`` unchanged."""
    leaves = scalars(minor_version)

    def extend(children):
        return st.one_of(
            st.lists(children, max_size=6),
            st.lists(children, max_size=6).map(tuple),
            st.dictionaries(keys, children, max_size=6),
            st.builds(lambda items, tail: ImproperList(tuple(items), tail),
                      st.lists(children, min_size=1, max_size=3), leaves),
            tensors(max_side=3),
        )
    return st.recursive(leaves, extend, max_leaves=max_leaves)


def tensors(max_side=6):
    """C-contiguous little-endian arrays of every supported dtype, empty and 0-d included."""
    return st.sampled_from(DTYPES).flatmap(lambda dtype: hnp.arrays(
        np.dtype(dtype), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=max_side),
        elements=_elements(dtype)))


@st.composite
def tensor_inputs(draw):
    """Arrays in layouts the encoder must normalise: sliced, transposed, Fortran, big-endian."""
    array = draw(tensors())
    layout = draw(st.sampled_from(["as is", "strided", "transposed", "fortran", "big-endian"]))
    if layout == "strided" and array.ndim:
        array = array[..., ::2]
    elif layout == "transposed":
        array = array.T
    elif layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "big-endian":
        array = array.astype(array.dtype.newbyteorder(">"))
    return array


def _elements(dtype):
    """Every bit pattern of the element type, NaN and infinities included."""
    if np.dtype(dtype).kind in "fc":
        return None
    info = np.iinfo(dtype)
    return st.integers(int(info.min), int(info.max))


def same_plain(a, b) -> bool:
    """Whether two plain values are exactly the same: types, float signs and arrays too."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, float):
        return a.hex() == b.hex()
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_plain(x, y) for x, y in zip(a, b))
    if isinstance(a, ImproperList):
        return same_plain(a.items, b.items) and same_plain(a.tail, b.tail)
    if isinstance(a, (dict, Map)):
        return len(a) == len(b) and all(
            k in b and same_plain(v, b[k]) and same_plain(k, _key_in(b, k)) for k, v in a.items())
    return a == b


def _key_in(mapping, key):
    """The key object ``mapping`` holds for ``key`` (to compare its exact type)."""
    return next(k for k in mapping if k == key)
