"""The C encoder against the pure-Python one: same bytes, same exceptions, for every input."""
import collections
import enum
import math
import random
import sys
import threading
import types

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import encoder, plain
from codec import strategies as raw
from codec.plain_strategies import plain_values
from codec.strategies import terms
from codec.decoder import decode as py_decode
from codec.terms import (Atom, BitBinary, Export, Fun, ImproperList, Map, Opaque, Pid, Port,
                         Reference)

from test_etf_vectors import FUN_PAYLOAD

c = pytest.importorskip("codec._cencode")

options = st.fixed_dictionaries({}, optional={
    "minor_version": st.sampled_from([1, 2]),
    "compressed": st.sampled_from([False, True, 0, 1, 9]),
    "deterministic": st.booleans(),
    "str_as": st.sampled_from(["binary", "charlist"]),
    "none_as": st.sampled_from(["nil", "undefined", "", "x" * 256]),
    "default": st.sampled_from([None, plain._default, repr]),
})


def outcome(function, term, **kwargs):
    """The bytes ``function`` writes, or its exception as (type, message, path)."""
    try:
        return function(term, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is what is compared
        return type(exc), str(exc), getattr(exc, "path", None)


def assert_same(term, **kwargs):
    expected = outcome(encoder.encode, term, **kwargs)
    assert outcome(c.encode, term, **kwargs) == expected


@given(terms(), options)
def test_raw_terms_encode_the_same(term, kwargs):
    assert_same(term, **kwargs)


@given(plain_values(), options)
def test_plain_values_encode_the_same(value, kwargs):
    assert_same(value, **kwargs)


# Values the encoder refuses, wherever they sit in a term.
bad_values = st.sampled_from([
    math.nan, -math.inf, Atom("a" * 256), Atom("\ud800"), "\udfff", object(),
    ImproperList((), 1), BitBinary(b"", 1), BitBinary(b"a", 9),
    Reference(Atom("n@h"), 1, (1, 2, 3, 4, 5, 6)), Export(Atom("m"), Atom("f"), 256),
    Pid(Atom("n@h"), 2**40, 0, 0), Port(Atom("n@h"), -1, 0), [1.0] * 40 + [math.nan],
])
hashable_leaves = st.one_of(raw.integers, raw.floats.map(lambda f: f + 0.0), raw.atoms,
                            raw.binaries, st.text(max_size=5), st.none(), st.booleans())


def with_bad_values(children):
    return st.one_of(
        st.lists(children, max_size=5), st.lists(children, max_size=5).map(tuple),
        st.dictionaries(hashable_leaves, children, max_size=4),
        st.lists(st.tuples(hashable_leaves, children), max_size=4).map(Map),
        st.builds(lambda items, tail: ImproperList(tuple(items), tail),
                  st.lists(children, min_size=1, max_size=3), children),
    )


@given(st.recursive(st.one_of(raw.leaves(with_funs=False), bad_values), with_bad_values,
                    max_leaves=20), options)
def test_refused_terms_fail_the_same(term, kwargs):
    assert_same(term, **kwargs)


def erlang_twin(key, none_as):
    """Another Python key that is the same Erlang term as ``key``, or None."""
    if key is None:
        return Atom(none_as)
    if type(key) is bool:
        return Atom("true" if key else "false")
    if type(key) is str:
        return key.encode()
    return None


@given(st.dictionaries(hashable_leaves, st.integers(), max_size=6), st.booleans(),
       st.sampled_from(["nil", "undefined"]))
def test_dict_keys_colliding_as_erlang_terms_fail_the_same(mapping, deterministic, none_as):
    for key in list(mapping):
        twin = erlang_twin(key, none_as)
        if twin is not None:
            mapping[twin] = 0
    assert_same(mapping, deterministic=deterministic, none_as=none_as)


class Color(enum.IntEnum):
    RED = 300
    BLUE = 2**70


class Name(str):
    pass


class Shout(str):
    def __str__(self):
        return self.upper()


class LoudAtom(Atom):
    def __str__(self):
        return "LOUD"


class Score(float):
    pass


class Row(tuple):
    pass


class Items(list):
    pass


class Record(dict):
    pass


class Blob(bytes):
    pass


class Bad:
    def __index__(self):
        raise KeyError("no index")


class Small:
    def __index__(self):
        return 5


SUBCLASS_TERMS = [
    Color.RED, Color.BLUE, [Color.RED] * 40, [1, Color.RED], Name("n"), Name("h\u00e9"),
    Shout("loud"), LoudAtom("quiet"), Score(2.5), Score(math.nan), Row((1, Name("x"))),
    Items([1, 2, [3]]), Record(a=1), collections.OrderedDict(b=2, a=1), Blob(b"xy"),
    bytearray(b"ab"), memoryview(b"abcd")[::2], memoryview(np.arange(3, dtype=np.int16)),
    [1, True, 2], [0, Small()], [1, Bad()], [1, 256], [1] * 65535, [1] * 65536, [255, -1],
    np.float64(1.5), np.int64(7), np.arange(4), [np.float32(1.0)] * 3, {1: Name("v")},
    Map([(Row((1,)), Items([2]))]), Opaque(Atom("python"), b"\x80"), {True: 1, Atom("x"): 2},
]


# Ids by type: a repr holds object addresses, which differ between pytest-xdist workers.
@pytest.mark.parametrize("term", SUBCLASS_TERMS, ids=lambda term: type(term).__name__)
@pytest.mark.parametrize("kwargs", [
    {}, {"minor_version": 1, "str_as": "charlist"}, {"deterministic": True, "none_as": "undefined"},
    {"default": plain._default}, {"default": repr, "compressed": True},
])
def test_subclasses_and_other_kinds_encode_the_same(term, kwargs):
    assert_same(term, **kwargs)


@pytest.mark.parametrize("text", [
    "", "a", "\u00ff" * 70000, "\u0100", "\ud800x", "\U0001F600" * 3, "x" * 65535, "x" * 65536,
    Atom(""), Atom("\u00e9"), Atom("\u0100" * 128), Atom("\u00ff" * 255), Atom("\U0001F600" * 64),
])
@pytest.mark.parametrize("kwargs", [{}, {"minor_version": 1}, {"str_as": "charlist"},
                                    {"minor_version": 1, "str_as": "charlist"}])
def test_strings_and_atoms_encode_the_same(text, kwargs):
    assert_same([text, {text: text}], **kwargs)


@pytest.mark.parametrize("number", [
    0, 255, 256, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63, -(2**63),
    2**64 - 1, 2**64, -(2**64), 2**2040, 2**2048, -(2**2048), 0.0, -0.0, 1e308, 5e-324,
])
def test_numbers_encode_the_same(number):
    assert_same(number)
    assert_same([number] * 40)


def test_default_is_called_the_same_way():
    for function in (encoder.encode, c.encode):
        seen = []

        def default(obj, seen=seen):
            seen.append(obj)
            return [obj.value] if obj.value < 3 else Atom("done")

        things = [type("Thing", (), {"value": v})() for v in range(4)]
        term = {"a": things[:2], "b": (things[2], things[3])}
        data = function(term, default=default)
        assert [t.value for t in seen] == [0, 1, 2, 3]
        assert data == encoder.encode({"a": [[0], [1]], "b": ([2], Atom("done"))})


def test_default_exceptions_propagate_unchanged_without_a_second_run():
    class Refused(Exception):
        pass

    error = Refused("no")
    calls = []

    def refuse(obj):
        calls.append(obj)
        raise error

    for function in (encoder.encode, c.encode):
        with pytest.raises(Refused) as info:
            function([1, {"k": object()}], default=refuse)
        assert info.value is error
    assert len(calls) == 2
    assert_same([object()], default=42)


def test_recursion_errors_become_the_same_encode_error():
    def too_deep(obj):
        raise RecursionError("deep")

    caught = []
    for function in (encoder.encode, c.encode):
        with pytest.raises(encoder.EncodeError) as info:
            function([object()], default=too_deep)
        caught.append(info.value)
    python, compiled = caught
    assert (str(compiled), compiled.path) == (str(python), python.path)
    assert compiled.__cause__ is None and compiled.__suppress_context__
    assert type(compiled.__context__) is RecursionError


def test_deep_nesting_needs_no_recursion():
    nested_list, nested_tuple, nested_map = [], (), {}
    for _ in range(100_000):
        nested_list, nested_tuple, nested_map = [nested_list], (nested_tuple,), {1: nested_map}
    for term in (nested_list, nested_tuple, nested_map):
        assert c.encode(term) == encoder.encode(term)


@pytest.mark.parametrize("kwargs", [
    {"minor_version": 0}, {"minor_version": 1.0}, {"minor_version": True}, {"minor_version": 2**70},
    {"minor_version": 2**32 + 1}, {"compressed": 10}, {"compressed": "yes"}, {"compressed": -1},
    {"compressed": 2**70}, {"compressed": 2**32 + 6},
    {"deterministic": 1}, {"deterministic": None}, {"str_as": "utf16"}, {"str_as": Name("binary")},
    {"none_as": Name("nil")}, {"none_as": ["nil"]}, {"none_as": 5}, {"bogus": 1},
])
def test_options_are_read_the_same(kwargs):
    assert_same([None, {None: 1, "a": 2}], **kwargs)
    assert_same([None, {None: 1, "a": 2}], default=repr, **kwargs)


def test_call_errors_are_the_same():
    for args, kwargs in [((), {}), ((1, 2), {}), ((1,), {"term": 2})]:
        with pytest.raises(TypeError) as python:
            encoder.encode(*args, **kwargs)
        with pytest.raises(TypeError) as compiled:
            c.encode(*args, **kwargs)
        assert str(compiled.value) == str(python.value)
    assert c.encode(term=[1]) == encoder.encode([1])


def test_maps_not_built_by_map_are_encoded_the_same():
    broken = Map.__new__(Map)
    assert_same(broken)
    odd = Map([(1, 2)])
    object.__setattr__(odd, "_entries", {1: [1, 2]})
    assert_same(odd)


def test_long_numeric_lists_encode_the_same():
    rng = np.random.default_rng(3)
    for values in (rng.random(100_000).tolist(), rng.integers(-2**40, 2**40, 100_000).tolist(),
                   rng.integers(0, 1000, 100_000).tolist(), list(range(70_000))):
        assert c.encode(values) == encoder.encode(values)


ENCODERS = [pytest.param(encoder.encode, id="python"), pytest.param(c.encode, id="c")]


class Box:
    pass


class Me(list):
    def __iter__(self):
        yield self


def cyclic_list():
    term = [1]
    term.append(term)
    return term


def cyclic_dict():
    term = {}
    term["k"] = [term]
    return term


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("make, kwargs, reason, path", [
    (cyclic_list, {}, "list contains itself", "$[1]"),
    (cyclic_dict, {}, "dict contains itself", '$["k"][0]'),
    (lambda: [Box()], {"default": lambda obj: obj}, "Box contains itself", "$[0]"),
    (lambda: [Me()], {}, "Me contains itself", "$[0][0]"),
    (lambda: Box(), {"default": lambda obj: Box()}, "term nested deeper than 200000 levels",
     "$..."),
])
def test_cycles_and_runaway_defaults_are_refused_with_a_path(encode, make, kwargs, reason, path):
    with pytest.raises(encoder.EncodeError) as info:
        encode(make(), **kwargs)
    assert info.value.reason.startswith(reason) and info.value.path == path


@pytest.mark.parametrize("encode", ENCODERS)
def test_the_maximum_depth_is_allowed(encode):
    term = []
    for _ in range(encoder.MAX_DEPTH):
        term = [term]
    assert encode(term) == encoder.encode(term)
    with pytest.raises(encoder.EncodeError, match="deeper than"):
        encode([term])


class Shrinking:
    """Its __index__ (called by bytes(list) in the encoder) takes the list's last element."""

    def __init__(self, victim):
        self.victim = victim

    def __index__(self):
        self.victim.pop()
        return 2


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_list_shrunk_by_its_element_is_written_as_it_is_then(encode):
    term = [1, 2, 3, 4, 5]
    term[1] = Shrinking(term)
    assert py_decode(encode(term, default=lambda obj: 2)) == [1, 2, 3, 4]


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_list_grown_by_default_gives_a_whole_frame(encode):
    term = [object(), 1, 2]
    term_now = py_decode(encode(term, default=lambda obj: term.append(9) or 0))
    assert term_now[:3] == [0, 1, 2] and set(term_now[3:]) <= {9}


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("scalar", [1.5, 7, 2**40, "s", b"b", Atom("a"), True, None])
def test_a_flat_list_changed_by_a_default_after_its_scalars_is_written_as_it_was(encode, scalar):
    """The C core writes a list's leading scalars from the list itself (no copy), yet
    still copies the rest before a `default` can clear or grow it."""
    term = [scalar] * 40 + [object()] + [scalar, 2**70] * 20

    def default(obj):
        term.clear()
        term.extend([0] * 100)
        return 0

    expected = [scalar] * 40 + [0] + [scalar, 2**70] * 20
    assert py_decode(encode(term, default=default)) == py_decode(encoder.encode(expected))


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_bytearray_grown_by_a_later_default_keeps_its_length(encode):
    data = bytearray(b"ab")
    term = [data, object()]
    assert py_decode(encode(term, default=lambda obj: data.extend(b"cd") or 0)) == [b"ab", 0]


class LyingBytes(bytes):
    def __len__(self):
        return 99


def released():
    view = memoryview(b"ab")
    view.release()
    return view


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("term, reason, path", [
    ({("a",): 1, (b"a",): 2}, "map keys ('a',) and (b'a',) are the same Erlang term", "$"),
    ([{Atom("k"): 1, (b"k",): 2, ("k",): 3}],
     "map keys (b'k',) and ('k',) are the same Erlang term", "$[0]"),
    ([memoryview(b"abcd")[::2]], "cannot read memoryview as bytes", "$[0]"),
    ([1, released()], "cannot read memoryview as bytes", "$[1]"),
    ((ImproperList(5, 1),), "ImproperList needs a tuple of at least one element", "$[0]"),
    ([Fun(Atom("m"), 0, "payload")], "Fun payload must be bytes, not str", "$[0]"),
    ([Fun(Atom("m"), 0, b"\x00\x00\x00\x05x")],
     "Fun payload is not a fun Erlang can decode: truncated fun header", "$[0]"),
    ({"f": Fun(Atom("t"), 1, FUN_PAYLOAD + b"a\x01")},
     "Fun payload is not a fun Erlang can decode: 2 trailing bytes after the term", '$["f"]'),
    ((Fun(Atom("m"), 1, FUN_PAYLOAD),), "Fun says m/1 but its payload is t/1", "$[0]"),
    ([BitBinary("ab", 3)], "BitBinary needs bytes and an int", "$[0]"),
])
def test_unencodable_values_are_encode_errors_with_a_path(encode, term, reason, path):
    with pytest.raises(encoder.EncodeError) as info:
        encode(term)
    assert info.value.reason.startswith(reason) and info.value.path == path


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_bytes_subclass_is_written_as_its_buffer_not_its_len(encode):
    assert py_decode(encode([LyingBytes(b"ab")])) == [b"ab"]


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("error", [KeyboardInterrupt(), MemoryError(), ValueError("mine")])
def test_exceptions_from_user_code_propagate_unchanged_and_once(encode, error):
    calls = []

    class Interrupting(int):
        def __int__(self):
            calls.append(self)
            raise error

    for term in ([1, Interrupting(5)], {"k": [Interrupting(5)]}, [1] * 40 + [Interrupting(5)]):
        calls.clear()
        with pytest.raises(type(error)) as info:
            encode(term)
        assert info.value is error and len(calls) == 1


def outcome_and_calls(encode, make, **kwargs):
    """What ``encode`` gives for a fresh term from ``make``, and the calls its callbacks logged."""
    calls = []
    term, options = make(calls)
    return outcome(encode, term, **options, **kwargs), calls


def refused_at_depth(calls):
    def default(obj):
        calls.append(obj)
        return [1, {"layers": [math.nan]}]
    return {"a": [0, 1, Box()]}, {"default": default}


def generator_default(calls):
    def default(obj):
        calls.append(obj)
        if isinstance(obj, types.GeneratorType):
            return list(obj)
        return (value for value in [1, math.inf])
    return [[Box()]], {"default": default}


def one_shot_iterable(calls):
    def default(obj):
        calls.append(obj)
        values = iter([obj.n, object()])
        return Items(values)
    box = Box()
    box.n = 7
    return [box], {"default": default}


def stateful_hook(calls):
    def default(obj):
        calls.append(obj)
        return Atom("a" * (100 * len(calls)))
    return [Box(), Box(), Box()], {"default": default}


def resized_by_index(calls):
    term = [1, 2, 3, 4, 5]

    class Growing:
        def __index__(self):
            calls.append(self)
            term.extend([math.nan] * 3)
            return 2

    term[1] = Growing()
    return term, {}


def shrunk_by_index(calls):
    term = [1, 2, 3, Box()]

    class Shrinking:
        def __index__(self):
            calls.append(self)
            term.pop()
            return 2

    term[1] = Shrinking()
    return term, {"default": lambda obj: calls.append(obj) or 0}


def replaced_by_later_default(calls):
    term = [Box(), 1, math.nan]

    def default(obj):
        calls.append(obj)
        term[2] = 5
        return 0
    return term, {"default": default}


@pytest.mark.parametrize("make", [refused_at_depth, generator_default, one_shot_iterable,
                                  stateful_hook, resized_by_index, shrunk_by_index,
                                  replaced_by_later_default])
def test_callbacks_run_once_and_the_outcome_is_the_references(make):
    python, python_calls = outcome_and_calls(encoder.encode, make)
    compiled, compiled_calls = outcome_and_calls(c.encode, make)
    assert compiled == python
    assert len(compiled_calls) == len(python_calls)


def test_an_error_at_depth_names_the_path_after_one_default_call():
    expected = (encoder.EncodeError, "float nan is not finite (Erlang refuses NaN and "
                "infinities) at $[\"a\"][2][1][\"layers\"][0]", '$["a"][2][1]["layers"][0]')
    for encode in (encoder.encode, c.encode):
        assert outcome_and_calls(encode, refused_at_depth)[0] == expected


@pytest.mark.parametrize("encode", ENCODERS)
@pytest.mark.parametrize("error", [KeyboardInterrupt(), MemoryError()])
def test_an_index_raising_propagates_unchanged_and_once(encode, error):
    calls = []

    class Interrupting:
        def __index__(self):
            calls.append(self)
            raise error

    with pytest.raises(type(error)) as info:
        encode([1, Interrupting(), 3], default=lambda obj: calls.append(obj) or 0)
    assert info.value is error and len(calls) == 1


@pytest.mark.parametrize("encode", ENCODERS)
def test_empty_and_bulk_containers_count_against_the_maximum_depth_as_in_python(encode):
    for innermost in ((), {}, [1.5] * 40, list(range(40))):
        term = innermost
        for _ in range(encoder.MAX_DEPTH):
            term = [term]
        assert outcome(encode, term) == outcome(encoder.encode, term)


@pytest.mark.parametrize("encode", ENCODERS)
def test_a_list_and_a_dict_changed_by_another_thread_give_whole_frames(encode):
    """Each frame decodes, and holds only values its container held, or is an EncodeError."""
    held = [1, "two", [3], (4,), Box()]
    values = held + [5.5, "six"]
    shared_list = list(held)
    shared_dict = {i: value for i, value in enumerate(held)}
    stop = threading.Event()

    def mutate():
        rng = random.Random(1)
        while not stop.is_set():
            value = rng.choice(values)
            shared_list.append(value)
            shared_dict[rng.randrange(10)] = value
            if len(shared_list) > 12:
                del shared_list[:rng.randrange(1, 8)]
            shared_dict.pop(rng.randrange(10), None)

    def default(obj):
        return Atom("box")

    written = [py_decode(encoder.encode(value, default=default)) for value in values]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    mutator = threading.Thread(target=mutate)
    mutator.start()
    try:
        for _ in range(300):
            for term in (shared_list, shared_dict):
                try:
                    decoded = py_decode(encode(term, default=default))
                except encoder.EncodeError:
                    continue
                items = decoded if isinstance(decoded, list) else list(decoded.values())
                assert all(item in written for item in items)
    finally:
        stop.set()
        mutator.join()
        sys.setswitchinterval(interval)
