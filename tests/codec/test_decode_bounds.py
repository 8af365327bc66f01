"""Work and memory bounded by the input, on both implementations (issue 17).

Decoding: time linear in the (inflated) input and peak memory a small multiple
of it, on the shapes that used to be quadratic or to allocate ahead. Work is
compared between sizes n and 16n in CPU time of this process (not wall time,
so other processes on the machine do not count): linear code takes about 16
times as long, quadratic code about 256 times.
"""
import gc
import struct
import time
import tracemalloc
import weakref
import zlib

import pytest

from codec import decoder
from codec.errors import DecodeError
from codec.terms import Fun, Map

try:
    from codec import _cdecode
except ImportError:
    _cdecode = None

DECODERS = [pytest.param(decoder, id="python"),
            pytest.param(_cdecode, id="c", marks=pytest.mark.skipif(
                _cdecode is None, reason="C core not built"))]

ONE = b"a\x01"


def fun_head(free_length: int) -> bytes:
    """The bytes of a NEW_FUN_EXT of module m, arity 1, before its one free variable."""
    fixed = (b"\x01" + bytes(16) + struct.pack(">II", 0, 1) + b"w\x01m" + b"a\x00a\x00"
             + b"X\x77\x01n" + struct.pack(">III", 1, 0, 0))
    return b"p" + struct.pack(">I", len(fixed) + free_length + 4) + fixed


def fun_holding(free: bytes) -> bytes:
    """A NEW_FUN_EXT of module m, arity 1, whose one free variable is ``free``."""
    return fun_head(len(free)) + free


def nested_funs(n: int, before: bytes = b"", after: bytes = b"") -> bytes:
    """``n`` funs, each holding the next (between ``before`` and ``after``, a container around
    it) as its free variable; built in linear time."""
    heads, inner_length = [], len(ONE)
    for _ in range(n):
        free_length = len(before) + inner_length + len(after)
        head = fun_head(free_length)
        heads.append(head + before)
        inner_length = len(head) + free_length
    return b"".join(reversed(heads)) + ONE + after * n


SHAPES = {
    # [1 | [1 | ... []]]: each level one LIST_EXT holding one element and a tail.
    "nested tails": lambda n: b"l\x00\x00\x00\x01" + ONE + (b"l\x00\x00\x00\x01" + ONE) * n + b"j",
    "nested improper tails": lambda n: (b"l\x00\x00\x00\x01" + ONE) * n + ONE,
    "empty lists as tails": lambda n: b"l\x00\x00\x00\x01" + ONE + b"l\x00\x00\x00\x00" * n + b"j",
    "wide tuple": lambda n: b"i" + struct.pack(">I", n) + ONE * n,
    "wide map": lambda n: b"t" + struct.pack(">I", n) + b"".join(
        b"b" + struct.pack(">i", i) + ONE for i in range(n)),
    "deep tuples": lambda n: b"h\x01" * n + b"j",
    "deep lists": lambda n: b"l\x00\x00\x00\x01" * n + b"j" + b"j" * n,
    "deep maps": lambda n: (b"t\x00\x00\x00\x01" + ONE) * n + b"j",
    # #{#{#{... => 1} => 1} => 1}: each map's key is the next map.
    "nested map keys": lambda n: b"t\x00\x00\x00\x01" * n + ONE + ONE + ONE * (n - 1),
    # A fun whose free variable is a fun whose free variable is a fun ...
    "nested funs": nested_funs,
    "nested funs in tuples": lambda n: nested_funs(n, before=b"h\x01"),
    # A fun whose free variable is #{Fun => 1}, whose free variable is #{Fun => 1} ...: a
    # map hashes its keys, so hashing a fun must not read what the funs inside it hold.
    "nested funs as map keys": lambda n: nested_funs(n, before=b"t\x00\x00\x00\x01", after=ONE),
    # ... and #{[Fun] => 1}: a compound key is digested, funs inside it included.
    "nested funs inside map keys": lambda n: nested_funs(n, before=b"t\x00\x00\x00\x01l\x00\x00\x00\x01",
                                                          after=b"j" + ONE),
}


def frame(body: bytes, compressed: bool) -> bytes:
    if not compressed:
        return b"\x83" + body
    return b"\x83P" + struct.pack(">I", len(body)) + zlib.compress(body, 9)


def cpu_seconds(action, repeat=3):
    """The least CPU time of this process that ``action`` took over ``repeat`` runs, with the
    cyclic collector off: its full passes over every live object are not the decoder's work,
    and made a linear decode look 218x slower at 16x the input once in a loaded run."""
    best = float("inf")
    collecting = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            begin = time.process_time()
            action()
            best = min(best, time.process_time() - begin)
    finally:
        if collecting:
            gc.enable()
    return best


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "compressed"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", DECODERS)
def test_decode_time_is_linear_in_the_input(impl, shape, compressed):
    n = 1500
    small, large = (frame(SHAPES[shape](size), compressed) for size in (n, 16 * n))
    impl.decode(large)  # warm up caches (atoms, code paths)
    ratio = cpu_seconds(lambda: impl.decode(large)) / max(
        cpu_seconds(lambda: impl.decode(small)), 1e-6)
    # Linear is 16 (more with cache effects, and under AddressSanitizer); quadratic is 256.
    assert ratio < 100, f"{shape}: 16x the input took {ratio:.0f}x the time"


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("impl", DECODERS)
def test_decode_memory_is_a_small_multiple_of_the_input(impl, shape):
    # Quadratic memory (25 million items at this size) is far above the bound, 43 MB at most.
    body = SHAPES[shape](5_000)
    data = frame(body, compressed=True)
    tracemalloc.start()
    try:
        impl.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Python objects are big (a one-element tuple is 48 bytes for 2 input
    # bytes, and the pure decoder's stack entry for it as much again), so
    # "small" here is under 128 bytes per inflated input byte.
    assert peak < 128 * len(body) + 1_000_000, f"{shape}: {peak} bytes for {len(body)}"


@pytest.mark.parametrize("data, reason", [
    (b"\x83h\x03b\x00\x00\x00\x00i\xff\xff\xff\xff",
     "tuple of 4294967295 elements but only 0 bytes left"),
    (b"\x83h\x03b\x00\x00\x00\x00i\x08\x00\x00\x00",
     "tuple of 134217728 elements but only 0 bytes left"),
    (b"\x83h\x03b\x00\x00\x00\x00l\xff\xff\xff\xff",
     "list of 4294967295 elements but only 0 bytes left"),
    (b"\x83h\x03b\x00\x00\x00\x00t\xff\xff\xff\xff",
     "map of 4294967295 pairs but only 0 bytes left"),
])
@pytest.mark.parametrize("impl", DECODERS)
def test_a_truncated_container_allocates_nothing(impl, data, reason):
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError) as info:
            impl.decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.reason == reason
    assert peak < 1_000_000


@pytest.mark.parametrize("impl", DECODERS)
def test_funs_inside_funs_have_their_own_payload(impl):
    """A fun in another's free variables is not copied while decoding (that made nesting
    quadratic), yet gives, when asked, the payload it has decoded on its own, also after
    the input (a bytearray here) changed."""
    inner = fun_holding(b"h\x02" + fun_holding(ONE) + ONE)
    data = bytearray(b"\x83" + fun_holding(inner))
    seen = []
    outer = impl.decode(data, tuple_hook=lambda items: seen.append(items) or items)
    data[:] = bytes(len(data))
    assert outer.payload == decoder.decode(b"\x83" + fun_holding(inner)).payload
    assert [type(item) for item in seen[0]] == [Fun, int]
    assert seen[0][0] == decoder.decode(b"\x83" + fun_holding(ONE))
    assert seen[0][0].payload == decoder.decode(b"\x83" + fun_holding(ONE)).payload


@pytest.mark.parametrize("impl", DECODERS)
def test_a_decoded_fun_hashes_and_compares_like_one_made_from_its_payload(impl):
    """The decoder hashes a fun from the hashes of the funs inside it (so nesting stays
    linear); that must agree with hashing its payload, also where an inner fun's size field
    is wrong (OTP ignores it; the enclosing payload keeps it as it was sent)."""
    liar = bytearray(fun_holding(ONE))
    liar[1:5] = struct.pack(">I", 7)
    middle = fun_holding(b"h\x02" + fun_holding(ONE) + liar)
    seen = []
    outer = impl.decode(b"\x83" + fun_holding(b"h\x02" + middle + liar),
                        tuple_hook=lambda items: seen.append(items) or items)
    funs = [outer] + [fun for items in seen for fun in items]
    assert len(funs) == 5
    for fun in funs:
        rebuilt = Fun(fun.module, fun.arity, fun.payload)
        assert fun == rebuilt and hash(fun) == hash(rebuilt)
        assert Map([(fun, 1)])[rebuilt] == 1 and Map([([fun], 1)])[[rebuilt]] == 1
    assert outer != impl.decode(b"\x83" + fun_holding(b"h\x02" + middle + fun_holding(ONE)))


@pytest.mark.parametrize("impl", DECODERS)
def test_hashing_a_fun_nested_100_000_deep_needs_no_recursion(impl):
    deep = impl.decode(b"\x83" + nested_funs(100_000, before=b"h\x01"))
    assert hash(deep) == hash(Fun(deep.module, deep.arity, deep.payload))


@pytest.mark.parametrize("impl", DECODERS)
def test_a_hashed_fun_lets_the_funs_inside_it_go(impl):
    """A decoded fun holds the funs inside it only until its hash is made from theirs."""
    inner_funs = []

    def keep_a_weak_reference(items):
        if isinstance(items[0], Fun):
            inner_funs.append(weakref.ref(items[0]))
        return items
    outer = impl.decode(b"\x83" + nested_funs(1000, before=b"h\x01"), tuple_hook=keep_a_weak_reference)
    gc.collect()
    assert sum(ref() is not None for ref in inner_funs) == 999
    hash(outer)
    gc.collect()
    assert sum(ref() is not None for ref in inner_funs) == 0
    assert hash(outer) == hash(Fun(outer.module, outer.arity, outer.payload))
