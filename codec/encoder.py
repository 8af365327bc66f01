"""Encode Python terms as the External Term Format, byte for byte as OTP does.

One loop with an explicit stack of open containers (no recursion, any depth).
Integers, floats, atoms, strings and compression are written the way OTP 25's
``term_to_binary`` writes them, so decoding and re-encoding with the same
options gives back the same bytes. Anything Erlang would refuse to decode
(NaN, infinities, atoms over 255 characters) is refused here with an
``EncodeError`` that names the value's path.
"""
from __future__ import annotations

import json
import struct
import zlib
from itertools import chain

import numpy as np

from . import stock
from . import tags as T
from .decoder import decode
from .errors import DecodeError, EncodeError
from .order import sort_pairs
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
    exact_key,
)

_tag_i32 = struct.Struct(">Bi").pack
_tag_u32 = struct.Struct(">BI").pack
_tag_u16 = struct.Struct(">BH").pack
_tag_f64 = struct.Struct(">Bd").pack
_u32 = struct.Struct(">I").pack
_u32x2 = struct.Struct(">II").pack
_u32x3 = struct.Struct(">III").pack
_u64_u32 = struct.Struct(">QI").pack

_SMALL_INTS = [bytes((T.SMALL_INTEGER_EXT, i)) for i in range(256)]
_NIL = bytes((T.NIL_EXT,))
_MAX_STRING = 0xFFFF
_OPAQUE = Atom("$erlport.opaque")
# OTP 25 writes NEW_PORT_EXT for port ids under 28 bits, V4_PORT_EXT beyond.
_NEW_PORT_ID_LIMIT = 1 << 28

# Lists at least this long are tried through numpy when homogeneous.
_BULK_MIN = 32
_FLOAT_ROW = np.dtype([("tag", "u1"), ("value", ">f8")])
_INT_ROW = np.dtype([("tag", "u1"), ("value", ">i4")])
_SMALL_ROW = np.dtype([("tag", "u1"), ("value", "u1")])

MAX_DEPTH = 200_000
"""Most containers (and ``default`` results) a term may nest; deeper, or a cycle, is refused."""
# Key types whose distinct Python values are always distinct Erlang terms.
_FLAT_KEY_TYPES = frozenset((int, float, bytes, str, Atom))

# Encoded atoms per minor version; bounded like the decoder's cache.
_ATOM_CACHE_LIMIT = 4096
_atom_cache = {1: {}, 2: {}}
# Encoders are stateless between runs; reuse one per option set.
_ENCODER_CACHE_LIMIT = 64
_encoders: dict = {}
_VERSION = bytes((T.VERSION,))


def encode(term, *, minor_version=2, compressed=False, deterministic=False,
           str_as="binary", none_as="nil", default=None) -> bytes:
    """Encode ``term`` as one ETF frame (starting with 131)."""
    if minor_version not in (1, 2):
        raise ValueError(f"minor_version must be 1 or 2, not {minor_version!r}")
    if compressed is True:
        level = 6
    elif compressed is False:
        level = 0
    elif type(compressed) is int and 0 <= compressed <= 9:
        level = compressed
    else:
        raise ValueError(f"compressed must be a bool or a level 0..9, not {compressed!r}")
    if str_as not in ("binary", "charlist"):
        raise ValueError(f"str_as must be 'binary' or 'charlist', not {str_as!r}")
    settings = (minor_version, bool(deterministic), str_as == "charlist", none_as)
    encoder = _encoders.get(settings) if default is None else None
    if encoder is None:
        encoder = _Encoder(*settings, default)
        if default is None and len(_encoders) < _ENCODER_CACHE_LIMIT:
            _encoders[settings] = encoder
    pieces = [_VERSION]
    try:
        encoder.run(term, pieces)
    except RecursionError:
        raise EncodeError("map keys nested too deeply to sort", "$") from None
    data = b"".join(pieces)
    if level:
        return _compress(data, level)
    return data


def _compress(data: bytes, level: int) -> bytes:
    """Compress like OTP: zlib at ``level``, kept only if the frame gets smaller."""
    body = memoryview(data)[1:]
    packed = zlib.compress(body, level)
    if len(packed) + 6 > len(data):
        return data
    return b"".join((bytes((T.VERSION, T.COMPRESSED)), _u32(len(body)), packed))


class _Encoder:
    """One encoding run's options and the loop that writes terms."""

    def __init__(self, minor_version, deterministic, charlists, none_as, default):
        self.minor_version = minor_version
        self.deterministic = deterministic
        self.charlists = charlists
        self.none_as = none_as
        self.default = default
        self.atoms = _atom_cache[minor_version]

    def run(self, term, out):
        """Append the encoding of ``term`` (after the version byte) to ``out``."""
        w = out.append
        atom = self.atom
        atoms = self.atoms
        charlists = self.charlists
        stack = []
        # Each open container: (iterator over what is left to write, bytes
        # to write after it, the container itself for error paths).
        items = iter((term,))
        trailer = None
        owner = None
        while True:
            if len(stack) > MAX_DEPTH:
                _refuse_depth(stack, owner)
            for obj in items:
                kind = type(obj)
                if kind is int:
                    if 0 <= obj <= 255:
                        w(_SMALL_INTS[obj])
                    elif -2147483648 <= obj <= 2147483647:
                        w(_tag_i32(T.INTEGER_EXT, obj))
                    else:
                        w(_big(obj))
                elif kind is float:
                    if obj - obj != 0.0:
                        self.fail(f"float {obj} is not finite (Erlang refuses NaN and "
                                  "infinities)", obj, stack, owner)
                    w(_tag_f64(T.NEW_FLOAT_EXT, obj))
                elif kind is Atom:
                    encoded = atoms.get(obj)
                    w(encoded if encoded is not None else atom(obj, stack, owner))
                elif kind is bytes:
                    w(_tag_u32(T.BINARY_EXT, len(obj)))
                    w(obj)
                elif kind is str and not charlists:
                    try:
                        data = obj.encode("utf-8")
                    except UnicodeEncodeError:
                        self.fail("str is not encodable as UTF-8", obj, stack, owner)
                    w(_tag_u32(T.BINARY_EXT, len(data)))
                    w(data)
                elif kind is list:
                    if not obj:
                        w(_NIL)
                    elif not self.bulk_list(obj, w, stack, owner):
                        # As it is now: code run later (a `default`, another
                        # thread) may change the list, not what is written.
                        elements = obj.copy()
                        w(_tag_u32(T.LIST_EXT, len(elements)))
                        stack.append((items, trailer, owner))
                        items, trailer, owner = iter(elements), _NIL, obj
                        break
                elif kind is tuple:
                    self.tuple_header(len(obj), w)
                    stack.append((items, trailer, owner))
                    items, trailer, owner = iter(obj), None, obj
                    break
                elif kind is Map or kind is dict:
                    pairs = self.map_pairs(obj, stack, owner)
                    w(_tag_u32(T.MAP_EXT, len(pairs)))
                    stack.append((items, trailer, owner))
                    items, trailer, owner = chain.from_iterable(pairs), None, obj
                    break
                else:
                    opened = self.other(obj, w, stack, owner)
                    if opened is not None:
                        stack.append((items, trailer, owner))
                        items, trailer, owner = opened
                        break
            else:
                if trailer is not None:
                    w(trailer)
                if not stack:
                    return
                items, trailer, owner = stack.pop()

    def other(self, obj, w, stack, owner):
        """Write a less common term; return a new (items, trailer, owner) to open, or None."""
        if isinstance(obj, bool):
            w(self.atom(Atom("true" if obj else "false"), stack, owner))
        elif obj is None:
            w(self.atom(Atom(self.none_as), stack, owner))
        elif isinstance(obj, Atom):
            w(self.atom(obj, stack, owner))
        elif stock.stock_kind(obj) is not None:
            try:
                return iter((stock.stand_in(obj),)), None, obj
            except ValueError as exc:
                self.fail(str(exc), obj, stack, owner)
        elif isinstance(obj, int):
            return iter((int(obj),)), None, obj
        elif isinstance(obj, float):
            return iter((float(obj),)), None, obj
        elif isinstance(obj, str):
            if self.charlists:
                codes = [ord(c) for c in obj]
                return iter((codes,)), None, obj
            return iter((str(obj),)), None, obj
        elif isinstance(obj, (bytes, bytearray, memoryview)):
            # Copied now: its buffer says its length (not a subclass's
            # __len__), and a later change to it cannot tear the frame.
            try:
                data = memoryview(obj).cast("B").tobytes()
            except (TypeError, ValueError) as exc:
                self.fail(f"cannot read {type(obj).__name__} as bytes: {exc}", obj, stack, owner)
            w(_tag_u32(T.BINARY_EXT, len(data)))
            w(data)
        elif isinstance(obj, (list, tuple)):
            return iter((list(obj) if isinstance(obj, list) else tuple(obj),)), None, obj
        elif isinstance(obj, (Map, dict)):
            return iter((Map(obj) if isinstance(obj, Map) else dict(obj),)), None, obj
        elif isinstance(obj, ImproperList):
            if not isinstance(obj.items, (tuple, list)) or not obj.items:
                self.fail("ImproperList needs a tuple of at least one element", obj, stack, owner)
            elements = tuple(obj.items)
            w(_tag_u32(T.LIST_EXT, len(elements)))
            return chain(elements, (obj.tail,)), None, obj
        elif isinstance(obj, BitBinary):
            if type(obj.data) is not bytes or type(obj.bits) is not int:
                self.fail("BitBinary needs bytes and an int", obj, stack, owner)
            if not obj.data or not 1 <= obj.bits <= 8:
                self.fail(f"BitBinary of {len(obj.data)} bytes cannot use {obj.bits} bits",
                          obj, stack, owner)
            w(_tag_u32(T.BIT_BINARY_EXT, len(obj.data)))
            # Clear the unused low bits, as Erlang does on decoding.
            last = obj.data[-1] & (0xFF << (8 - obj.bits)) & 0xFF
            w(bytes((obj.bits,)) + obj.data[:-1] + bytes((last,)))
        elif isinstance(obj, Pid):
            w(bytes((T.NEW_PID_EXT,)))
            w(self.atom(obj.node, stack, owner))
            w(self.words(_u32x3, (obj.id, obj.serial, obj.creation), obj, stack, owner))
        elif isinstance(obj, Port):
            if 0 <= obj.id < _NEW_PORT_ID_LIMIT:
                w(bytes((T.NEW_PORT_EXT,)))
                w(self.atom(obj.node, stack, owner))
                w(self.words(_u32x2, (obj.id, obj.creation), obj, stack, owner))
            else:
                w(bytes((T.V4_PORT_EXT,)))
                w(self.atom(obj.node, stack, owner))
                w(self.words(_u64_u32, (obj.id, obj.creation), obj, stack, owner))
        elif isinstance(obj, Reference):
            if len(obj.ids) > 5:
                self.fail(f"Reference has {len(obj.ids)} words, more than 5", obj, stack, owner)
            w(_tag_u16(T.NEWER_REFERENCE_EXT, len(obj.ids)))
            w(self.atom(obj.node, stack, owner))
            packer = struct.Struct(f">{len(obj.ids) + 1}I").pack
            w(self.words(packer, (obj.creation,) + tuple(obj.ids), obj, stack, owner))
        elif isinstance(obj, Export):
            if not 0 <= obj.arity <= 255:
                self.fail(f"Export arity {obj.arity} is not 0..255", obj, stack, owner)
            w(bytes((T.EXPORT_EXT,)))
            w(self.atom(obj.module, stack, owner))
            w(self.atom(obj.function, stack, owner))
            w(_SMALL_INTS[obj.arity])
        elif isinstance(obj, Fun):
            if type(obj.payload) is not bytes:
                self.fail(f"Fun payload must be bytes, not {type(obj.payload).__name__}", obj,
                          stack, owner)
            problem = _fun_problem(obj)
            if problem is not None:
                self.fail(problem, obj, stack, owner)
            w(bytes((T.NEW_FUN_EXT,)))
            w(obj.payload)
        elif isinstance(obj, Opaque):
            return iter(((_OPAQUE, obj.language, obj.data),)), None, obj
        elif self.default is not None:
            return iter((self.default(obj),)), None, obj
        else:
            self.fail(f"cannot encode {type(obj).__name__}", obj, stack, owner)
        return None

    def atom(self, name, stack, owner):
        """The encoding of the atom ``name`` under this run's minor version."""
        text = str(name)
        if len(text) > 255:
            self.fail(f"atom of {len(text)} characters is over Erlang's 255 limit", name,
                      stack, owner)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail("atom is not encodable as UTF-8", name, stack, owner)
        if self.minor_version == 1 and max(text, default="\0") <= "\xff":
            encoded = _tag_u16(T.ATOM_EXT, len(text)) + text.encode("latin-1")
        elif len(data) <= 255:
            encoded = bytes((T.SMALL_ATOM_UTF8_EXT, len(data))) + data
        else:
            encoded = _tag_u16(T.ATOM_UTF8_EXT, len(data)) + data
        if len(self.atoms) < _ATOM_CACHE_LIMIT and type(name) is Atom:
            self.atoms[name] = encoded
        return encoded

    def words(self, packer, values, obj, stack, owner):
        """Pack the integer fields of a pid, port or reference, or fail naming it."""
        try:
            return packer(*values)
        except struct.error:
            self.fail(f"{type(obj).__name__} field out of range", obj, stack, owner)

    @staticmethod
    def tuple_header(arity, w):
        if arity <= 255:
            w(bytes((T.SMALL_TUPLE_EXT, arity)))
        else:
            w(_tag_u32(T.LARGE_TUPLE_EXT, arity))

    def map_pairs(self, obj, stack, owner):
        """The (key, value) pairs of a map as they are now, in the order they are written."""
        pairs = list(obj.items())
        if type(obj) is dict and len(pairs) > 1:
            kinds = {type(key) for key, _ in pairs}
            if len(kinds) > 1 or not kinds <= _FLAT_KEY_TYPES:
                # A dict merges only keys Python finds equal; some distinct
                # Python keys are one Erlang key (True and Atom("true"), "a"
                # and b"a", ("a",) and (b"a",)).
                seen = {}
                for key, _ in pairs:
                    mark = exact_key(Atom(self.none_as) if key is None else key)
                    if mark in seen:
                        self.fail(f"map keys {seen[mark]!r} and {key!r} are the same Erlang "
                                  "term", obj, stack, owner)
                    seen[mark] = key
        if self.deterministic:
            try:
                pairs = sort_pairs(pairs, self.none_as)
            except TypeError as exc:
                self.fail(str(exc), obj, stack, owner)
        return pairs

    def bulk_list(self, obj, w, stack, owner):
        """Write a list as STRING_EXT or through numpy if it qualifies; report whether it did."""
        first = type(obj[0])
        if first is int:
            if len(obj) <= _MAX_STRING:
                try:
                    data = bytes(obj)
                except (TypeError, ValueError):
                    data = None
                if (data is not None and len(data) <= _MAX_STRING
                        and set(map(type, obj)) == {int}):
                    w(_tag_u16(T.STRING_EXT, len(data)))
                    w(data)
                    return True
            if len(obj) >= _BULK_MIN and set(map(type, obj)) == {int}:
                return _bulk_ints(obj, w)
        elif first is float and len(obj) >= _BULK_MIN and set(map(type, obj)) == {float}:
            values = np.array(obj, dtype=np.float64)
            if not np.isfinite(values).all():
                bad = obj[int(np.isfinite(values).argmin())]
                self.fail(f"float {bad} is not finite (Erlang refuses NaN and infinities)",
                          bad, stack + [(None, None, owner)], obj)
            rows = np.empty(len(obj), _FLOAT_ROW)
            rows["tag"] = T.NEW_FLOAT_EXT
            rows["value"] = values
            _write_list(w, len(obj), rows.tobytes())
            return True
        return False

    def fail(self, message, obj, stack, owner):
        """Raise EncodeError for ``obj``, a child of ``owner``, with its path."""
        raise EncodeError(message, _path([entry[2] for entry in stack] + [owner], obj))


def _fun_problem(fun):
    """Why Erlang would refuse ``fun`` (its payload written after the NEW_FUN_EXT tag), or None.

    The payload is decoded as the reference decoder reads a fun, which checks every part
    (its time is linear in the payload, nested funs included).
    """
    try:
        parsed = decode(bytes((T.VERSION, T.NEW_FUN_EXT)) + fun.payload)
    except DecodeError as exc:
        return f"Fun payload is not a fun Erlang can decode: {exc.reason}"
    if type(parsed) is not Fun:
        return "Fun payload is not a fun Erlang can decode"
    if parsed.module != fun.module or parsed.arity != fun.arity:
        return (f"Fun says {fun.module}/{fun.arity} but its payload is "
                f"{parsed.module}/{parsed.arity}")
    return None


def _bulk_ints(obj, w):
    """Write a list of machine-size ints as LIST_EXT via numpy; False if some are big."""
    try:
        values = np.array(obj, dtype=np.int64)
    except OverflowError:
        return False
    small = (values >= 0) & (values <= 255)
    if small.all():
        rows = np.empty(len(obj), _SMALL_ROW)
        rows["tag"] = T.SMALL_INTEGER_EXT
    else:
        if values.min() < -2147483648 or values.max() > 2147483647:
            return False
        if small.any():
            # Mixed widths: two bytes per small int, five per other.
            widths = np.where(small, 2, 5)
            starts = np.cumsum(widths) - widths
            out = np.empty(int(widths.sum()), np.uint8)
            small_at = starts[small]
            out[small_at] = T.SMALL_INTEGER_EXT
            out[small_at + 1] = values[small]
            wide_at = starts[~small]
            out[wide_at] = T.INTEGER_EXT
            wide = values[~small].astype(">i4").view(np.uint8).reshape(-1, 4)
            out[wide_at[:, None] + np.arange(1, 5)] = wide
            _write_list(w, len(obj), out.tobytes())
            return True
        rows = np.empty(len(obj), _INT_ROW)
        rows["tag"] = T.INTEGER_EXT
    rows["value"] = values
    _write_list(w, len(obj), rows.tobytes())
    return True


def _write_list(w, count, elements):
    """Write a proper list of ``count`` elements already encoded in ``elements``."""
    w(_tag_u32(T.LIST_EXT, count))
    w(elements)
    w(_NIL)


def _big(value: int) -> bytes:
    """SMALL_BIG_EXT or LARGE_BIG_EXT for an integer outside 32 bits."""
    magnitude = -value if value < 0 else value
    size = (magnitude.bit_length() + 7) // 8
    digits = magnitude.to_bytes(size, "little")
    if size <= 255:
        return bytes((T.SMALL_BIG_EXT, size, value < 0)) + digits
    return _tag_u32(T.LARGE_BIG_EXT, size) + bytes((value < 0,)) + digits


def _refuse_depth(stack, owner):
    """Raise EncodeError for a term nested deeper than MAX_DEPTH: a cycle, or just deep."""
    owners = [entry[2] for entry in stack] + [owner]
    first_seen = {}
    for depth, container in enumerate(owners):
        if container is None:
            continue
        if id(container) in first_seen:
            raise EncodeError(f"{type(container).__name__} contains itself (a cycle, or a "
                              "`default` that returns what it was given)",
                              _path(owners[:depth], container))
        first_seen[id(container)] = depth
    shown = 20
    raise EncodeError(f"term nested deeper than {MAX_DEPTH} levels",
                      _path(owners[:shown - 1], owners[shown - 1]) + "...")


def _path(owners, obj) -> str:
    """Render where ``obj`` sits: ``$``, then one step per container from the root down."""
    chain_ = [o for o in owners if o is not None] + [obj]
    steps = ["$"]
    for parent, child in zip(chain_, chain_[1:]):
        steps.append(_step(parent, child))
    return "".join(steps)


def _step(parent, child) -> str:
    """The path step from ``parent`` to ``child`` (found by identity)."""
    if isinstance(parent, (Map, dict)):
        for key, value in parent.items():
            shown = json.dumps(key, ensure_ascii=False) if isinstance(key, str) else repr(key)
            if value is child:
                return f"[{shown}]"
            if key is child:
                return f"<key {shown}>"
    elif isinstance(parent, ImproperList):
        if parent.tail is child:
            return "[tail]"
        parent = parent.items
    if isinstance(parent, (list, tuple)):
        for index, item in enumerate(parent):
            if item is child:
                return f"[{index}]"
    return ""
