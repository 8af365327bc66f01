"""The C decoder against the pure-Python reference: same terms, same hook calls, same errors."""
import dataclasses
import gc
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import decoder as py
from codec import plain
from codec.encoder import encode
from codec.fuzz import mutations
from codec.plain_strategies import plain_values, same_plain
from codec.strategies import terms
from codec.terms import Atom, Fun, ImproperList, Map, Pid

from test_etf_vectors import READ_ONLY, WRITTEN

c = pytest.importorskip("codec._cdecode")


def same(a, b):
    """Whether two decoded terms or plain values are identical: types, float bits, dict and
    map key order, arrays and views (and what they view) included."""
    todo = [(a, b)]
    while todo:
        x, y = todo.pop()
        if type(x) is not type(y):
            return False
        if type(x) is float:
            if x.hex() != y.hex():
                return False
        elif type(x) in (list, tuple):
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y))
        elif type(x) is dict:
            if len(x) != len(y):
                return False
            todo.extend(zip(x, y))
            todo.extend(zip(x.values(), y.values()))
        elif type(x) is Map:
            if list(x._entries) != list(y._entries) or (x._hash is None) != (y._hash is None):
                return False
            todo.extend(zip(x._entries.values(), y._entries.values()))
        elif type(x) is np.ndarray:
            if (x.dtype, x.shape, x.tobytes(), x.flags.writeable, type(x.base)) != (
                    y.dtype, y.shape, y.tobytes(), y.flags.writeable, type(y.base)):
                return False
        elif type(x) is memoryview:
            if (bytes(x), x.readonly, type(x.obj)) != (bytes(y), y.readonly, type(y.obj)):
                return False
        elif dataclasses.is_dataclass(x) and not isinstance(x, Fun):  # a Fun compares its payload
            todo.extend((getattr(x, f.name), getattr(y, f.name)) for f in dataclasses.fields(x))
        elif x != y:
            return False
    return True


def outcome(function, *args, **options):
    """("ok", result) or ("error", type, message, offset) of one call."""
    try:
        return ("ok", function(*args, **options))
    except Exception as exc:  # noqa: BLE001 - the very thing compared
        return ("error", type(exc), str(exc), getattr(exc, "offset", None))


def same_outcome(a, b):
    if a[0] == "ok" and b[0] == "ok":
        return same(a[1], b[1])
    return a == b


class Recorder:
    """Hooks that log every call; ``transform`` also makes them change the term."""

    def __init__(self, names, transform):
        self.log = []
        self.names = names
        self.transform = transform

    def hooks(self):
        return {name: getattr(self, name) for name in self.names}

    def atom_hook(self, atom):
        self.log.append(("atom", atom))
        return ("A", atom) if self.transform else atom

    def binary_hook(self, binary):
        self.log.append(("binary", binary))
        return binary

    def map_hook(self, pairs, offset):
        self.log.append(("map", pairs, offset))
        return ("M", pairs, offset) if self.transform else Map.from_unique_pairs(pairs)

    def tuple_hook(self, items):
        self.log.append(("tuple", items))
        # A list made of a tuple may end up as a list tail: exercises list joining.
        return list(items) if self.transform else items

    def pid_hook(self, pid):
        self.log.append(("pid", pid))
        return ("P", pid) if self.transform else pid


HOOK_NAMES = ["atom_hook", "binary_hook", "map_hook", "tuple_hook", "pid_hook"]
hook_sets = st.tuples(st.lists(st.sampled_from(HOOK_NAMES), unique=True), st.booleans())
inputs = st.sampled_from([bytes, bytearray, memoryview])


def compare(data, offset=None, names=(), transform=False, **options):
    """Decode ``data`` both ways with fresh recording hooks; assert the same everything."""
    results = []
    for module in (py, c):
        recorder = Recorder(names, transform)
        if offset is None:
            got = outcome(module.decode, data, **options, **recorder.hooks())
        else:
            got = outcome(module.decode_from, data, offset, **options, **recorder.hooks())
        results.append((got, recorder.log))
    (ours, our_log), (theirs, their_log) = results[1], results[0]
    assert same_outcome(ours, theirs), (data, ours, theirs)
    if ours[0] == "ok":
        assert same(our_log, their_log)
    return ours


@given(terms(), st.sampled_from([1, 2]), st.sampled_from([False, 6]), st.booleans(), hook_sets,
       inputs)
def test_terms_decode_the_same(term, minor, compressed, zero_copy, hooks, kind):
    data = encode(term, minor_version=minor, compressed=compressed)
    names, transform = hooks
    compare(kind(data), zero_copy=zero_copy, names=names, transform=transform)


@given(terms(max_leaves=10), st.binary(max_size=3), st.binary(max_size=3), st.booleans())
def test_decode_from_the_same(term, before, after, zero_copy):
    data = before + encode(term) + after
    for offset in range(-1, len(data) + 1):
        compare(data, offset, zero_copy=zero_copy)


@given(plain_values(), st.booleans(), st.sampled_from([False, 1]))
def test_plain_hooks_decode_the_same(value, zero_copy, compressed):
    data = plain.encode(value, compressed=compressed)
    for tuple_hook in (None, lambda t: ("wrapped", t)):
        a = outcome(py.decode, data, zero_copy=zero_copy, **plain._hooks(None, tuple_hook))
        b = outcome(c.decode, data, zero_copy=zero_copy, **plain._hooks(None, tuple_hook))
        assert a == b if a[0] == "error" else b[0] == "ok" and same_plain(a[1], b[1])


SAMPLES = [b"\x83" + body for _, body, *_ in WRITTEN + READ_ONLY if len(body) < 300] + [
    encode([1.5] * 40 + [b"x" * 30], compressed=6),
    encode(Map({b"key": [7] * 40, Atom("k"): (Pid(Atom("n@h"), 1, 2, 3), -2**70)}), compressed=1),
    encode([Map({Atom("a"): b"v", b"k": [1, 2]}), ImproperList((1, 2), Atom("t")), "\u2713"]),
    encode([[3] * 40, [1.0] * 35 + [2**40], (), Map()], minor_version=1),
]


@pytest.mark.parametrize("sample", SAMPLES[::3] + SAMPLES[-4:], ids=repr)
def test_mutated_inputs_give_the_same_result_or_error(sample):
    for index, data in enumerate(mutations(sample)):
        # Rotate through options so every one meets damaged input.
        names = [HOOK_NAMES[index % 5]] if index % 3 else HOOK_NAMES
        compare(data, zero_copy=index % 2 == 0, names=names, transform=index % 4 == 1)
        compare(data, 0, names=(), transform=False)


def test_plain_hooks_on_mutated_inputs():
    for sample in SAMPLES[-4:]:
        for data in mutations(sample):
            a = outcome(py.decode, data, **plain._hooks(None, None))
            b = outcome(c.decode, data, **plain._hooks(None, None))
            assert a[0] == b[0] and (a[0] == "ok" or a == b), (data, a, b)


@pytest.mark.parametrize("data, options", [
    (b"\x83a\x01", {"zero_copy": 1}),
    (b"\x83a\x01", {"unknown": 1}),
    (b"\x83a\x01\x83a\x02", {"max_inflated_size": 10}),
    (b"\x83a\x01", {}),
    (b"", {}),
    (b"\x83P\x00\x00\x00\x02x\x9c\x00", {}),
    (b"\x83P\xff\xff\xff\xff" + bytes(20), {"max_inflated_size": 10}),
])
def test_arguments_and_frames_behave_the_same(data, options):
    compare(data, **options)
    for offset in (0, 3, True, 2**70, -2**70, 1.0, "0"):
        compare(data, offset, **options)


def test_argument_errors_are_the_same():
    for args, kwargs in [((), {}), ((b"\x83j", 0), {}), ((b"\x83j", 0, 1), {}),
                         ((), {"data": b"\x83j"}), ((b"\x83j",), {"offset": 0}),
                         ((b"\x83j", 0), {"offset": 0})]:
        for name in ("decode", "decode_from"):
            a = outcome(getattr(py, name), *args, **kwargs)
            b = outcome(getattr(c, name), *args, **kwargs)
            assert same_outcome(a, b), (name, args, kwargs, a, b)


@pytest.mark.parametrize("data", [None, 5, "text", [1], memoryview(b"\x83j" * 4)[::2],
                                  memoryview(bytes(8)).cast("B", (2, 4))])
def test_non_byte_inputs_behave_the_same(data):
    compare(data)


def test_zero_copy_views_share_the_input_except_map_keys():
    data = encode(Map({b"key": b"value"}))
    term = c.decode(data, zero_copy=True)
    (key, value), = term.items()
    assert type(key) is bytes and type(value) is memoryview and value.obj is data
    assert value.readonly


def test_hook_exceptions_propagate_without_a_second_run():
    class Boom(Exception):
        pass
    calls = []

    def atom_hook(atom):
        calls.append(atom)
        if len(calls) == 2:
            raise Boom("second atom")
        return atom
    data = encode((Atom("a"), Atom("b"), Atom("c")))
    with pytest.raises(Boom, match="second atom"):
        c.decode(data, atom_hook=atom_hook)
    assert calls == ["a", "b"]


def test_hook_decode_errors_inside_compressed_terms_are_wrapped_the_same():
    def map_hook(pairs, offset):
        raise py.DecodeError("refused by hook", offset)
    data = encode([Map({1: 2})] * 50, compressed=9)
    assert data[1] == 80
    a = outcome(py.decode, data, map_hook=map_hook)
    b = outcome(c.decode, data, map_hook=map_hook)
    assert a == b and "in compressed term" in a[2]


@pytest.mark.parametrize("opener, closer", [(b"l\x00\x00\x00\x01", b"j"), (b"h\x01", b""),
                                            (b"t\x00\x00\x00\x01a\x00", b"")])
def test_deep_nesting_needs_no_recursion(opener, closer):
    depth = 100_000
    data = b"\x83" + opener * depth + b"j" + closer * depth
    assert same(c.decode(data), py.decode(data))


def test_long_numeric_lists_decode_the_same():
    for values in ([1.25] * 5000, list(range(-2000, 3000)), [1, 2.5, -7, 300] * 500):
        data = encode(values)
        assert same(c.decode(data), py.decode(data))
    floats = [b"F" + struct.pack(">d", 1.0)] * 39 + [b"F" + struct.pack(">d", float("nan"))]
    compare(b"\x83l\x00\x00\x00\x28" + b"".join(floats) + b"j")


def test_atom_cache_stays_bounded():
    # Far more distinct atoms than the cache holds: all decode right, and a
    # second batch of new ones takes no more memory than the first left.
    batches = [encode([Atom(f"{name}_{i}") for i in range(20_000)]) for name in "ab"]
    tracemalloc.start()
    try:
        c.decode(batches[0])
        held = tracemalloc.get_traced_memory()[0]
        c.decode(batches[1])
        assert tracemalloc.get_traced_memory()[0] - held < 100_000
    finally:
        tracemalloc.stop()
    assert c.decode(batches[1]) == py.decode(batches[1])


@pytest.mark.parametrize("header", [b"i\x00\x01\x00\x00", b"l\x00\x01\x00\x00",
                                    b"t\x00\x00\x80\x00"])
def test_nested_huge_headers_allocate_nothing_ahead(header):
    # Each header claims about as many elements as there are bytes left: fine
    # alone, 20 000 of them nested would be gigabytes if allocated up front.
    data = b"\x83" + header * 20_000
    tracemalloc.start()
    try:
        compare(data)
        assert tracemalloc.get_traced_memory()[1] < 20_000_000
    finally:
        tracemalloc.stop()


def test_half_built_containers_stay_out_of_the_garbage_collectors_sight():
    seen = []

    def look_at_everything(atom):
        # The garbage collector's traversal skips empty slots: a container
        # with fewer referents than elements is half built (and a hook that
        # touched it would crash the interpreter).
        if atom == "v":
            seen.extend(obj for obj in gc.get_objects() if type(obj) in (list, tuple)
                        and len(gc.get_referents(obj)) != len(obj))
        return atom
    data = encode([(1, Atom("x"), 2), [Atom("y")] * 3, Map({Atom("k"): (5, [Atom("v"), 6])})])
    assert same(c.decode(data, atom_hook=look_at_everything), py.decode(data))
    assert seen == []


@pytest.mark.parametrize("data", [
    encode([Atom("a"), Atom("b"), Atom("c")])[:-3],                       # truncated
    encode([Atom("a"), (Atom("b"),), Map({Atom("k"): 1})])[:-1],
    encode((Atom("a"), [Atom("b")] * 40), compressed=9)[:-2],             # corrupt zlib
    b"\x83l\x00\x00\x00\x02w\x01aw\x01bv",                                # bad tail
    b"\x83h\x03w\x01ab\x00\x00\x00\x00i\xff\xff\xff\xff",                # claims too much
])
def test_malformed_input_runs_each_hook_once_per_value(data):
    logs = []
    for module in (py, c):
        recorder = Recorder(HOOK_NAMES, transform=False)
        got = outcome(module.decode, data, **recorder.hooks())
        logs.append((got, recorder.log))
    (python, python_log), (compiled, compiled_log) = logs
    assert python[0] == "error" and compiled == python
    assert same(compiled_log, python_log)


def test_a_duplicate_key_the_hooks_make_is_reported_like_the_reference():
    data = encode(Map({Atom("a"): 1, Atom("b"): 2}))
    for module in (py, c):
        calls = []

        def one_name(atom, calls=calls):
            calls.append(atom)
            return Atom("same")
        with pytest.raises(py.DecodeError) as info:
            module.decode(data, atom_hook=one_name)
        assert info.value.reason == "duplicate map key Atom('same')" and info.value.offset == 1
        assert calls == ["a", "b"]


@pytest.mark.parametrize("module", [py, c], ids=["python", "c"])
def test_strided_views_decode_as_their_bytes(module):
    data = encode([1, 2.5, b"xy", Map({Atom("k"): (Atom("v"),)})])
    spread = bytearray(2 * len(data))
    spread[::2] = data
    for zero_copy in (False, True):
        assert same(module.decode(memoryview(spread)[::2], zero_copy=zero_copy),
                    py.decode(data, zero_copy=zero_copy))


@pytest.mark.parametrize("data", [
    b"\x83l\x00\x00\x00\x00l\x00\x00\x00\x00j",                   # [] as the tail of []
    b"\x83l\x00\x00\x00\x00l\x00\x00\x00\x01a\x01j",
    b"\x83l\x00\x00\x00\x01a\x01l\x00\x00\x00\x00a\x02",          # [1 | 2]
    b"\x83l\x00\x00\x00\x01a\x01l\x00\x00\x00\x01k\x00\x01xj",     # a string in a tail's head
])
def test_lists_as_tails_decode_the_same(data):
    assert compare(data)[0] == "ok"
