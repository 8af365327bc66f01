"""Decode the External Term Format: exact, iterative, and safe on hostile input.

The decoder is one loop over the input with an explicit stack of open
containers, so nesting depth is limited only by memory, never by Python's
recursion limit. Every length field is checked against the bytes that are
actually left before anything is built from it, so a short input claiming a
huge size costs nothing. Anything malformed raises ``DecodeError`` with the
offset where it was found.
"""
from __future__ import annotations

import math
import re
import struct
import zlib

import numpy as np

from . import tags as T
from .errors import DecodeError
from .terms import (
    Atom,
    BitBinary,
    Export,
    Fun,
    ImproperList,
    Map,
    Pid,
    Port,
    Reference,
)

DEFAULT_MAX_INFLATED_SIZE = 64 * 1024 * 1024
"""Largest uncompressed size a compressed term may declare (64 MiB)."""

# zlib cannot expand data by more than about 1032:1; a declared size beyond
# that is a lie we can refuse before inflating anything.
_ZLIB_MAX_RATIO = 1032
_INFLATE_CHUNK = 1 << 20

_u16 = struct.Struct(">H").unpack_from
_u32 = struct.Struct(">I").unpack_from
_i32 = struct.Struct(">i").unpack_from
_u64 = struct.Struct(">Q").unpack_from
_f64 = struct.Struct(">d").unpack_from
_u32x2 = struct.Struct(">II").unpack_from
_u32x3 = struct.Struct(">III").unpack_from

# Frame kinds on the explicit stack.
_TUPLE, _LIST, _MAP, _FUN = range(4)

# Lists at least this long are first tried as runs of one numeric tag, which
# numpy converts in bulk; shorter ones are not worth the set-up cost.
_RUN_MIN = 32
_RUN_MAX_SHORT = 4
_RUN_BLOCK = 4096
# tag -> (bytes per element, numpy dtype of the value after the tag byte)
_RUNS = {
    T.SMALL_INTEGER_EXT: (2, np.dtype("u1")),
    T.INTEGER_EXT: (5, np.dtype(">i4")),
    T.NEW_FLOAT_EXT: (9, np.dtype(">f8")),
}

# Atoms are interned per encoding in small caches; when a cache is full new
# atoms are still decoded, just not remembered, so memory stays bounded.
_ATOM_CACHE_LIMIT = 4096
_latin1_atoms: dict = {}
_utf8_atoms: dict = {}

# What OTP accepts in FLOAT_EXT: digits, a dot (or comma), digits, an optional
# exponent, then NUL padding (anything after the first NUL is ignored).
_FLOAT_TEXT = re.compile(rb"[+-]?[0-9]+[.,][0-9]+([eE][+-]?[0-9]+)?(?=\x00|\Z)")

# Legacy pid, port and reference forms carry a 2-bit creation, and an old
# reference an 18-bit id; OTP refuses anything wider.
_OLD_CREATION_LIMIT = 3
_OLD_REFERENCE_ID_LIMIT = (1 << 18) - 1


def decode(data, *, zero_copy=False, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE,
           atom_hook=None, binary_hook=None, map_hook=None, tuple_hook=None, pid_hook=None):
    """Decode one whole ETF frame (leading 131, no trailing bytes) into a term."""
    src, view, size = _source(data, zero_copy)
    term, end = _decode_frame(src, view, 0, size, max_inflated_size, (
        zero_copy, atom_hook, binary_hook, map_hook, tuple_hook, pid_hook))
    if end != size:
        raise DecodeError(f"{size - end} trailing bytes after the term", end)
    return term


def decode_from(data, offset=0, *, zero_copy=False, max_inflated_size=DEFAULT_MAX_INFLATED_SIZE,
                atom_hook=None, binary_hook=None, map_hook=None, tuple_hook=None, pid_hook=None):
    """Decode the term starting at ``data[offset]`` (its 131); return ``(term, end_offset)``."""
    src, view, size = _source(data, zero_copy)
    return _decode_frame(src, view, offset, size, max_inflated_size, (
        zero_copy, atom_hook, binary_hook, map_hook, tuple_hook, pid_hook))


def _source(data, zero_copy):
    """(indexable bytes or byte view, read-only view or None, size) for ``data``.

    Plain bytes are indexed directly (slices are then one copy each); the view
    is only needed for zero-copy slices.
    """
    if type(data) is bytes:
        return data, (memoryview(data) if zero_copy else None), len(data)
    view = _byte_view(data)
    return view, view, view.nbytes


def _decode_frame(src, view, offset, end, max_inflated_size, hooks):
    """Decode the frame at ``offset`` (its 131); return ``(term, end_offset)``."""
    if offset < 0 or offset >= end:
        raise DecodeError("no data: expected the version byte 131", offset)
    if src[offset] != T.VERSION:
        raise DecodeError(f"bad version byte {src[offset]}, expected 131", offset)
    pos = offset + 1
    if pos >= end:
        raise DecodeError("truncated: nothing after the version byte", pos)
    if src[pos] == T.COMPRESSED:
        inflated, end_offset = _inflate(src, pos, end, max_inflated_size)
        try:
            term, used = _decode_term(inflated, memoryview(inflated), 0, len(inflated), hooks)
        except DecodeError as exc:
            raise DecodeError(f"in compressed term at inflated offset {exc.offset}: {exc.reason}",
                              pos) from None
        if used != len(inflated):
            raise DecodeError(f"compressed term has {len(inflated) - used} trailing bytes "
                              "after inflating", pos)
        return term, end_offset
    return _decode_term(src, view, pos, end, hooks)


def _byte_view(data) -> memoryview:
    """A read-only flat byte view of ``data``, copied only when it is strided."""
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"decode needs bytes, bytearray or memoryview, not "
                        f"{type(data).__name__}") from None
    if not view.c_contiguous:
        return memoryview(view.tobytes())
    if view.ndim != 1 or view.format != "B":
        view = view.cast("B")
    return view.toreadonly()


def _inflate(src, pos, end, limit):
    """Inflate the compressed term at ``src[pos]`` (tag 80); return (bytes, end_offset)."""
    if end - pos < 5:
        raise DecodeError("truncated compressed header", pos)
    size = _u32(src, pos + 1)[0]
    start = pos + 5
    if size > limit:
        raise DecodeError(f"compressed term declares {size} bytes, over the {limit}-byte limit", pos)
    if size > (end - start) * _ZLIB_MAX_RATIO + 64:
        raise DecodeError(f"compressed term declares {size} bytes, more than "
                          f"{end - start} compressed bytes can hold", pos)
    inflater = zlib.decompressobj()
    pieces = []
    got = 0
    pending = memoryview(src)[start:end]
    try:
        while not inflater.eof:
            # Ask for one byte more than declared so an over-long stream shows
            # itself without inflating the rest of it.
            piece = inflater.decompress(pending, min(size - got + 1, _INFLATE_CHUNK))
            pending = inflater.unconsumed_tail
            got += len(piece)
            if got > size:
                raise DecodeError(f"compressed term inflates past its declared {size} bytes", pos)
            if piece:
                pieces.append(piece)
            elif not pending:
                raise DecodeError("truncated compressed data", end)
    except zlib.error as exc:
        raise DecodeError(f"corrupt compressed data ({exc})", start) from None
    if got != size:
        raise DecodeError(f"compressed term inflates to {got} bytes, not the declared {size}", pos)
    return b"".join(pieces), end - len(inflater.unused_data)


def _decode_term(src, view, pos, end, hooks, owed=0):
    """Decode one term at ``pos`` (its tag); return ``(term, end_offset)``.

    ``owed`` counts the terms that enclosing containers still expect after
    this one; each needs a byte, so no container may claim those bytes.
    """
    zero_copy, atom_hook, binary_hook, map_hook, tuple_hook, pid_hook = hooks
    u32 = _u32
    utf8_atoms = _utf8_atoms
    latin1_atoms = _latin1_atoms
    # Open containers: (kind, items, how many items it needs, start offset,
    # terms its enclosing containers are owed after it).
    stack = [(None, None, 0, 0, owed)]
    # The innermost open container's element list and how many it needs,
    # kept in locals because every decoded value goes there.
    top_items = None
    top_need = 0
    # Per fun open, the funs finished inside it so far; and where the ones
    # inside another fun find their payload (see _finish_fun).
    funs_inside = []
    fun_source = None
    while True:
        if pos >= end:
            raise DecodeError("truncated: expected a term", pos)
        start = pos
        tag = src[pos]
        pos += 1
        if tag == 97:  # SMALL_INTEGER_EXT
            if pos >= end:
                raise DecodeError("truncated small integer", start)
            value = src[pos]
            pos += 1
        elif tag == 119 or tag == 100:  # SMALL_ATOM_UTF8_EXT, ATOM_EXT
            if tag == 119:
                size = src[pos] if pos < end else 0
                key_end = pos + 1 + size
                value = utf8_atoms.get(bytes(src[pos + 1:key_end]))
            else:
                size = _u16(src, pos)[0] if pos + 2 <= end else 0
                key_end = pos + 2 + size
                value = latin1_atoms.get(bytes(src[pos + 2:key_end]))
            if value is None or key_end > end:
                value, pos = _read_atom(src, start, end)
            else:
                pos = key_end
            if atom_hook is not None:
                value = atom_hook(value)
        elif tag == 109:  # BINARY_EXT
            if pos + 4 > end:
                raise DecodeError("truncated binary length", start)
            size = u32(src, pos)[0]
            pos += 4
            if size > end - pos:
                raise DecodeError(f"binary of {size} bytes but only {end - pos} left", start)
            if zero_copy and not (stack[-1][0] == _MAP and not len(top_items) & 1):
                value = view[pos:pos + size]
            else:
                value = bytes(src[pos:pos + size])
            pos += size
            if binary_hook is not None:
                value = binary_hook(value)
        elif tag == 98:  # INTEGER_EXT
            if pos + 4 > end:
                raise DecodeError("truncated integer", start)
            value = _i32(src, pos)[0]
            pos += 4
        elif tag == 70:  # NEW_FLOAT_EXT
            if pos + 8 > end:
                raise DecodeError("truncated float", start)
            value = _f64(src, pos)[0]
            if value - value != 0.0:
                raise DecodeError(f"float {value} is not finite", start)
            pos += 8
        elif tag == 118 or tag == 115:  # ATOM_UTF8_EXT, SMALL_ATOM_EXT
            value, pos = _read_atom(src, start, end)
            if atom_hook is not None:
                value = atom_hook(value)
        elif tag == 106:  # NIL_EXT
            value = []
        elif tag == 104 or tag == 105:  # SMALL_TUPLE_EXT, LARGE_TUPLE_EXT
            if tag == 104:
                if pos >= end:
                    raise DecodeError("truncated tuple arity", start)
                arity = src[pos]
                pos += 1
            else:
                if pos + 4 > end:
                    raise DecodeError("truncated tuple arity", start)
                arity = u32(src, pos)[0]
                pos += 4
            left = end - pos - _owed(stack, top_items, top_need)
            if arity > left:
                raise DecodeError(f"tuple of {arity} elements but only {max(left, 0)} bytes left",
                                  start)
            if arity:
                stack.append((_TUPLE, [], arity, start, end - pos - left))
                top_items = stack[-1][1]
                top_need = arity
                continue
            value = ()
            if tuple_hook is not None:
                value = tuple_hook(value)
        elif tag == 116:  # MAP_EXT
            if pos + 4 > end:
                raise DecodeError("truncated map arity", start)
            arity = u32(src, pos)[0]
            pos += 4
            left = end - pos - _owed(stack, top_items, top_need)
            if arity > left // 2:
                raise DecodeError(f"map of {arity} pairs but only {max(left, 0)} bytes left",
                                  start)
            if arity:
                stack.append((_MAP, [], 2 * arity, start, end - pos - left))
                top_items = stack[-1][1]
                top_need = 2 * arity
                continue
            value = _finish_map([], start, map_hook)
        elif tag == 108:  # LIST_EXT
            if pos + 4 > end:
                raise DecodeError("truncated list length", start)
            length = u32(src, pos)[0]
            pos += 4
            left = end - pos - _owed(stack, top_items, top_need)
            if length >= left:
                raise DecodeError(f"list of {length} elements but only {max(left, 0)} bytes left",
                                  start)
            if stack[-1][0] == _LIST and len(top_items) + 1 == top_need:
                # The tail of the open list: its elements join that list's
                # (copying the tail once per level would be quadratic).
                top_need += length
                stack[-1] = stack[-1][:2] + (top_need,) + stack[-1][3:]
            else:
                stack.append((_LIST, [], length + 1, start, end - pos - left))
                top_items = stack[-1][1]
                top_need = length + 1
            if length >= _RUN_MIN:
                before = len(top_items)
                pos = _numeric_runs(src, pos, end, length, top_items)
                if binary_hook is None and not zero_copy:
                    pos = _binary_run(src, pos, end, length - (len(top_items) - before),
                                      top_items)
            continue
        elif tag == 107:  # STRING_EXT
            if pos + 2 > end:
                raise DecodeError("truncated string length", start)
            length = _u16(src, pos)[0]
            pos += 2
            if length > end - pos:
                raise DecodeError(f"string of {length} bytes but only {end - pos} left", start)
            value = list(src[pos:pos + length])
            pos += length
        elif tag == 112:  # NEW_FUN_EXT
            frame, pos = _open_fun(src, start, end, _owed(stack, top_items, top_need))
            if not funs_inside:
                fun_source = [src, 0]
            funs_inside.append([])
            stack.append(frame)
            top_items = frame[1]
            top_need = frame[2]
            continue
        else:
            reader = _READERS.get(tag)
            if reader is None:
                raise DecodeError(_refusal(tag), start)
            value, pos = reader(src, start, end)
            if pid_hook is not None and type(value) is Pid:
                value = pid_hook(value)

        # Hand the finished value to the open containers, closing each one
        # that it completes.
        if top_items is None:
            return value, pos
        top_items.append(value)
        while len(top_items) >= top_need:
            kind, items, _, opened, _ = stack.pop()
            if kind == _LIST:
                value = _finish_list(items)
            elif kind == _TUPLE:
                value = tuple(items)
                if tuple_hook is not None:
                    value = tuple_hook(value)
            elif kind == _MAP:
                value = _finish_map(items, opened, map_hook)
            else:
                inside = funs_inside.pop()
                value = _finish_fun(src, items, opened, pos, fun_source, inside, enclosed=bool(funs_inside))
                if funs_inside:
                    funs_inside[-1].append((opened, pos, value))
            if len(stack) == 1:
                return value, pos
            _, top_items, top_need, _, _ = stack[-1]
            top_items.append(value)


def _finish_list(items):
    """Turn decoded elements plus tail into a list or an ImproperList."""
    tail = items.pop()
    if not items:
        # LIST_EXT of length 0 is just its tail.
        return tail
    if type(tail) is list:
        items.extend(tail)
        return items
    if type(tail) is ImproperList:
        items.extend(tail.items)
        tail = tail.tail
    return ImproperList(tuple(items), tail)


def _finish_map(items, offset, map_hook):
    """Pair up decoded keys and values; refuse duplicate keys unless a hook takes over."""
    flat = iter(items)
    if map_hook is not None:
        return map_hook(list(zip(flat, flat)), offset)
    try:
        return Map.from_unique_pairs(zip(flat, flat))
    except KeyError as exc:
        raise _duplicate_key(exc.args[0], offset) from None


def _duplicate_key(key, offset):
    """The DecodeError for a map whose key ``key`` (as decoded) is there twice."""
    return DecodeError(f"duplicate map key {_describe(key)}", offset)


def _unchecked_map(pairs, offset):
    """A map_hook that builds nothing and checks nothing.

    The C core re-reads an input it found malformed with this and no other
    hooks, for the reference's error: the hooks already saw every value up
    to the fault, and the C core checked map keys as they made them.
    """
    return None


def _describe(term):
    """A short description of a term for error messages (never deep, never long)."""
    if isinstance(term, (tuple, list, Map, ImproperList)):
        return f"({type(term).__name__} of {len(getattr(term, 'items', term))} elements)"
    text = repr(term)
    return text if len(text) <= 60 else text[:57] + "..."


def _numeric_runs(src, pos, end, length, items):
    """Bulk-convert leading runs of same-tag numbers of a list; return the new offset.

    A run shorter than ``_RUN_MIN`` (say one small integer among INTEGER_EXTs)
    is converted too, but after ``_RUN_MAX_SHORT`` short runs in a row the
    list is left to the caller's element-by-element loop, as it is at the
    first element that is not SMALL_INTEGER_EXT, INTEGER_EXT or NEW_FLOAT_EXT.
    """
    done = 0
    short_runs = 0
    while done < length and pos < end and short_runs < _RUN_MAX_SHORT:
        tag = src[pos]
        run = _RUNS.get(tag)
        if run is None:
            break
        width, dtype = run
        count = min(length - done, _RUN_BLOCK, (end - pos) // width)
        if count == 0:
            break
        block = np.frombuffer(src, np.uint8, count * width, pos).reshape(count, width)
        same = block[:, 0] == tag
        if not same.all():
            count = int(same.argmin())
        short_runs = short_runs + 1 if count < _RUN_MIN else 0
        values = np.ndarray((count,), dtype, src, pos + 1, (width,))
        if width == 9 and not np.isfinite(values).all():
            bad = pos + width * int(np.isfinite(values).argmin())
            raise DecodeError("float is not finite", bad)
        items.extend(values.tolist())
        pos += count * width
        done += count
    return pos


def _binary_run(src, pos, end, count, items):
    """Decode up to ``count`` consecutive well-formed BINARY_EXTs in a tight loop.

    Returns the new offset; anything else (or a malformed binary, which the
    caller's loop then reports) ends the run.
    """
    u32 = _u32
    while count and pos + 5 <= end and src[pos] == 109:
        start = pos + 5
        stop = start + u32(src, pos + 1)[0]
        if stop > end:
            break
        items.append(bytes(src[start:stop]))
        pos = stop
        count -= 1
    return pos


def _read_atom(src, start, end):
    """Read an atom of any atom tag at ``start``; return (Atom, end_offset)."""
    if start >= end:
        raise DecodeError("truncated: expected an atom", start)
    tag = src[start]
    if tag == 119 or tag == 115:
        if start + 2 > end:
            raise DecodeError("truncated atom length", start)
        size = src[start + 1]
        pos = start + 2
    elif tag == 100 or tag == 118:
        if start + 3 > end:
            raise DecodeError("truncated atom length", start)
        size = _u16(src, start + 1)[0]
        pos = start + 3
    else:
        raise DecodeError(f"expected an atom, found tag {tag}", start)
    if size > end - pos:
        raise DecodeError(f"atom of {size} bytes but only {end - pos} left", start)
    raw = bytes(src[pos:pos + size])
    latin1 = tag == 100 or tag == 115
    cache = _latin1_atoms if latin1 else _utf8_atoms
    atom = cache.get(raw)
    if atom is None:
        if latin1:
            text = raw.decode("latin-1")
        else:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DecodeError("atom is not valid UTF-8", start) from None
        if len(text) > 255:
            raise DecodeError(f"atom of {len(text)} characters, over the 255 limit", start)
        atom = Atom(text)
        if len(cache) < _ATOM_CACHE_LIMIT:
            cache[raw] = atom
    return atom, pos + size


def _need(pos, count, end, what, start):
    """Refuse if fewer than ``count`` bytes are left at ``pos``."""
    if pos + count > end:
        raise DecodeError(f"truncated {what}", start)


def _read_small_big(src, start, end):
    _need(start, 3, end, "small big integer", start)
    return _read_big(src, start, start + 3, src[start + 1], src[start + 2], end)


def _read_large_big(src, start, end):
    _need(start, 6, end, "large big integer", start)
    return _read_big(src, start, start + 6, _u32(src, start + 1)[0], src[start + 5], end)


def _read_big(src, start, pos, size, sign, end):
    if size > end - pos:
        raise DecodeError(f"big integer of {size} bytes but only {end - pos} left", start)
    value = int.from_bytes(src[pos:pos + size], "little")
    return (-value if sign else value), pos + size


def _read_old_float(src, start, end):
    _need(start, 32, end, "float", start)
    number = _FLOAT_TEXT.match(bytes(src[start + 1:start + 32]))
    if number is None:
        raise DecodeError("FLOAT_EXT text is not a number", start)
    value = float(number.group().replace(b",", b"."))
    if not math.isfinite(value):
        raise DecodeError("FLOAT_EXT value is not finite", start)
    return value, start + 32


def _read_bit_binary(src, start, end):
    _need(start, 6, end, "bit binary header", start)
    size = _u32(src, start + 1)[0]
    bits = src[start + 5]
    pos = start + 6
    if size > end - pos:
        raise DecodeError(f"bit binary of {size} bytes but only {end - pos} left", start)
    if size == 0 and bits == 0:
        return b"", pos
    if size == 0 or not 1 <= bits <= 8:
        raise DecodeError(f"bit binary of {size} bytes cannot use {bits} bits of its last byte",
                          start)
    if bits == 8:
        return bytes(src[pos:pos + size]), pos + size
    # OTP ignores the unused low bits of the last byte; clear them.
    last = src[pos + size - 1] & (0xFF << (8 - bits)) & 0xFF
    data = bytes(src[pos:pos + size - 1]) + bytes((last,))
    return BitBinary(data, bits), pos + size


def _read_pid(src, start, end):
    node, pos = _read_atom(src, start + 1, end)
    if src[start] == T.NEW_PID_EXT:
        _need(pos, 12, end, "pid", start)
        ident, serial, creation = _u32x3(src, pos)
        return Pid(node, ident, serial, creation), pos + 12
    _need(pos, 9, end, "pid", start)
    ident, serial = _u32x2(src, pos)
    return Pid(node, ident, serial, _old_creation(src, pos + 8)), pos + 9


def _read_port(src, start, end):
    tag = src[start]
    node, pos = _read_atom(src, start + 1, end)
    if tag == T.V4_PORT_EXT:
        _need(pos, 12, end, "port", start)
        return Port(node, _u64(src, pos)[0], _u32(src, pos + 8)[0]), pos + 12
    if tag == T.NEW_PORT_EXT:
        _need(pos, 8, end, "port", start)
        ident, creation = _u32x2(src, pos)
        return Port(node, ident, creation), pos + 8
    _need(pos, 5, end, "port", start)
    return Port(node, _u32(src, pos)[0], _old_creation(src, pos + 4)), pos + 5


def _old_creation(src, pos):
    """The one-byte creation of a legacy pid, port or reference."""
    creation = src[pos]
    if creation > _OLD_CREATION_LIMIT:
        raise DecodeError(f"legacy creation {creation} is over {_OLD_CREATION_LIMIT}", pos)
    return creation


def _read_old_reference(src, start, end):
    node, pos = _read_atom(src, start + 1, end)
    _need(pos, 5, end, "reference", start)
    ident = _old_reference_id(src, pos)
    return Reference(node, _old_creation(src, pos + 4), (ident,)), pos + 5


def _old_reference_id(src, pos):
    """The first id word of a legacy reference, of which only 18 bits may be set."""
    ident = _u32(src, pos)[0]
    if ident > _OLD_REFERENCE_ID_LIMIT:
        raise DecodeError(f"legacy reference id {ident} is over 18 bits", pos)
    return ident


def _read_reference(src, start, end):
    _need(start, 3, end, "reference length", start)
    count = _u16(src, start + 1)[0]
    if count > 5:
        raise DecodeError(f"reference of {count} words, expected at most 5", start)
    node, pos = _read_atom(src, start + 3, end)
    if src[start] == T.NEWER_REFERENCE_EXT:
        _need(pos, 4 + 4 * count, end, "reference", start)
        creation = _u32(src, pos)[0]
        pos += 4
    else:
        _need(pos, 1 + 4 * count, end, "reference", start)
        creation = _old_creation(src, pos)
        pos += 1
        if count:
            _old_reference_id(src, pos)
    ids = struct.unpack_from(f">{count}I", src, pos)
    return Reference(node, creation, ids), pos + 4 * count


def _read_export(src, start, end):
    module, pos = _read_atom(src, start + 1, end)
    function, pos = _read_atom(src, pos, end)
    _need(pos, 2, end, "export arity", start)
    if src[pos] == T.SMALL_INTEGER_EXT:
        return Export(module, function, src[pos + 1]), pos + 2
    _need(pos, 5, end, "export arity", start)
    arity = _i32(src, pos + 1)[0]
    if src[pos] != T.INTEGER_EXT or not 0 <= arity <= 255:
        raise DecodeError("export arity must be an integer 0..255", pos)
    return Export(module, function, arity), pos + 5


def _owed(stack, top_items, top_need):
    """How many terms open containers still expect after the one at hand."""
    if top_items is None:
        return stack[0][4]
    return stack[-1][4] + top_need - len(top_items) - 1


def _open_fun(src, start, end, owed):
    """Parse a NEW_FUN_EXT header; return the stack frame for its trailing terms.

    The fun's old index, old uniq, creator pid and free variables are decoded
    (to validate them) by the main loop; ``_finish_fun`` then keeps the raw bytes.
    Like OTP, the size field is not trusted: the parts determine the size.
    """
    _need(start, 30, end, "fun header", start)
    arity = src[start + 5]
    num_free = _u32(src, start + 26)[0]
    module, pos = _read_atom(src, start + 30, end)
    left = end - pos - owed
    if num_free + 3 > left:
        raise DecodeError(f"fun with {num_free} free variables but only {max(left, 0)} bytes "
                          "left", start)
    return (_FUN, [module, arity], num_free + 5, start, owed), pos


def _finish_fun(src, items, start, pos, source, inside, enclosed):
    """Close a fun frame: check its parts; keep its bytes with their true size.

    A fun ``enclosed`` in another one's free variables does not copy its bytes:
    they are part of the enclosing fun's payload, and copying them at every
    level would make nested funs quadratic. It reads them, when asked, from
    ``source``, the list shared by the funs inside one outermost fun, which
    its payload then replaces (payload offset = input offset - start - 1).
    ``inside``: the funs directly inside this one, which its hash is made from.
    """
    module, arity, old_index, old_uniq, pid = items[:5]
    if type(old_index) is not int or type(old_uniq) is not int:
        raise DecodeError("fun old index and old uniq must be integers", start)
    size = struct.pack(">I", pos - start - 1)
    if enclosed:
        return Fun._decoded(module, arity, size, source, start + 5, pos, inside)
    payload = size + bytes(src[start + 5:pos])
    source[:] = (payload, start + 1)
    return Fun._decoded(module, arity, size, source, start + 5, pos, inside, payload)


_READERS = {
    T.SMALL_BIG_EXT: _read_small_big,
    T.LARGE_BIG_EXT: _read_large_big,
    T.FLOAT_EXT: _read_old_float,
    T.BIT_BINARY_EXT: _read_bit_binary,
    T.NEW_PID_EXT: _read_pid,
    T.PID_EXT: _read_pid,
    T.NEW_PORT_EXT: _read_port,
    T.V4_PORT_EXT: _read_port,
    T.PORT_EXT: _read_port,
    T.NEWER_REFERENCE_EXT: _read_reference,
    T.NEW_REFERENCE_EXT: _read_reference,
    T.REFERENCE_EXT: _read_old_reference,
    T.EXPORT_EXT: _read_export,
}


def _refusal(tag):
    """Why a tag the decoder does not accept is refused."""
    if tag == T.ATOM_CACHE_REF:
        return "ATOM_CACHE_REF (82) is only valid on a distribution link"
    if tag in (T.DIST_HEADER, T.DIST_FRAG_HEADER):
        return f"distribution header tag {tag} is not a term"
    if tag in T.INTERNAL_TAGS:
        return f"internal tag {tag} is never valid in external data"
    if tag == T.COMPRESSED:
        return "compressed marker (80) is only valid right after the version byte"
    if tag == T.FUN_EXT:
        return "old FUN_EXT (117) is no longer supported by Erlang"
    if tag == T.LOCAL_EXT:
        return "LOCAL_EXT (121) is only decodable by the node that wrote it"
    return f"unknown tag {tag}"
