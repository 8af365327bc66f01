"""codec.plain in the compiled core against the reference mapping (Python hooks on the
pure-Python decoder, ``default`` on the pure-Python encoder): same values, same hook
calls, same errors and messages."""
import dataclasses
import datetime
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import decoder as py
from codec import encoder, plain
from codec.encoder import encode
from codec.fuzz import mutations
from codec.plain_strategies import plain_values
from codec.strategies import terms
from codec.terms import Atom, Fun, ImproperList, Map, Opaque, Pid

from test_cdecode import SAMPLES, outcome, same

c = pytest.importorskip("codec._cdecode")
cencode = pytest.importorskip("codec._cencode")


class Hooks:
    """pid and tuple hooks that log their calls (and wrap, with ``transform``)."""

    def __init__(self, transform):
        self.log = []
        self.transform = transform

    def pid_hook(self, pid):
        self.log.append(("pid", pid))
        return ("P", pid) if self.transform else pid

    def tuple_hook(self, value):
        self.log.append(("tuple", value))
        return ["T", value] if self.transform else value


def compare(data, offset=None, hooks=None, transform=False, **options):
    """Decode ``data`` with the C core's codec.plain and with the reference mapping on the
    Python decoder; assert the same outcome (value or error) and the same hook calls."""
    results = []
    for run in ("reference", "c"):
        recorder = Hooks(transform)
        given_hooks = {name: getattr(recorder, name) for name in hooks or ()}
        if run == "reference":
            mapping = plain._hooks(given_hooks.get("pid_hook"), given_hooks.get("tuple_hook"))
            function = py.decode if offset is None else py.decode_from
            kwargs = dict(options, **mapping)
        else:
            function = c.plain_decode if offset is None else c.plain_decode_from
            kwargs = dict(options, **given_hooks)
        args = (data,) if offset is None else (data, offset)
        results.append((outcome(function, *args, **kwargs), recorder.log))
    (theirs, their_log), (ours, our_log) = results
    if ours[0] == theirs[0] == "ok":
        assert same(ours[1], theirs[1]), (data, ours, theirs)
        assert same(our_log, their_log)
    else:
        assert without_addresses(ours) == without_addresses(theirs), (data, ours, theirs)
    return ours


def without_addresses(result):
    """An outcome with the addresses in its message (a memoryview's repr) taken out."""
    return result[:2] + (re.sub(r" at 0x[0-9a-f]+", "", result[2]),) + result[3:]


hook_choices = st.sampled_from([(), ("pid_hook",), ("tuple_hook",), ("pid_hook", "tuple_hook")])


@given(plain_values(), st.booleans(), st.sampled_from([False, 1]), hook_choices, st.booleans())
def test_plain_values_decode_the_same(value, zero_copy, compressed, hooks, transform):
    data = plain.reference_encode(value, compressed=compressed)
    compare(data, zero_copy=zero_copy, hooks=hooks, transform=transform)


@given(terms(), st.sampled_from([1, 2]), st.sampled_from([False, 6]), st.booleans(),
       hook_choices, st.sampled_from([bytes, bytearray, memoryview]))
def test_raw_terms_decode_the_same(term, minor, compressed, zero_copy, hooks, kind):
    data = encode(term, minor_version=minor, compressed=compressed)
    compare(kind(data), zero_copy=zero_copy, hooks=hooks)


@given(terms(max_leaves=8), st.binary(max_size=2), st.binary(max_size=2))
def test_decode_from_the_same(term, before, after):
    data = before + encode(term) + after
    for offset in range(-1, len(data) + 1):
        compare(data, offset)


TENSOR = Atom("tensor")
OPAQUE = Atom("$erlport.opaque")
PID = Pid(Atom("n@h"), 1, 2, 3)
FUN = py.decode(b"\x83p\x00\x00\x00\x2c\x01" + bytes(16) + b"\x00\x00\x00\x00\x00\x00\x00\x01"
                + b"w\x01m" + b"a\x00a\x00" + b"X\x77\x01n" + bytes(12) + b"m\x00\x00\x00\x02ab")
# Terms the plain mapping treats specially, each in a few surroundings.
SPECIAL = [
    Map([(1, Atom("a")), (1.0, Atom("b"))]),
    Map({Atom("true"): 1, 1: 2}),
    Map({b"a": 1, Atom("a"): 2}),
    Map({Atom("nil"): 1, Atom("undefined"): 2}),
    Map({b"k": 1, (b"k",): 2, Atom("x"): 3}),
    Map([([1], 1), (b"a", 2), (Atom("a"), 3)]),
    Map([([1], 1), ((1,), 2), (1, 3)]),
    Map([(Map({1: 2}), 1), (b"\xff", 2)]),
    Map({Atom("__struct__"): Atom("Elixir.Foo"), Atom("a"): b"\xff\xfe"}),
    Map({FUN: 1, 2.5: FUN}),
    (TENSOR, (Atom("f"), 32), (2,), b"\x00\x00\x80?\x00\x00\x00@"),
    (TENSOR, (Atom("u"), 8), (2,), b"ab"),
    (TENSOR, (Atom("u"), 8), (3,), b"ab"),
    (TENSOR, (Atom("bf"), 16), (1,), b"ab"),
    (TENSOR, (Atom("u"), 8), (2,), [1, 2]),
    (TENSOR, (Atom("u"), 8), (1, Atom("x")), b"a"),
    (TENSOR, (Atom("u"), 8), (1,), (1, b"a")),
    (OPAQUE, Atom("python"), b"\x80\x04K\x01."),
    (OPAQUE, Atom("python"), b"text"),
    (OPAQUE, b"python", b"text"),
    (OPAQUE, Atom("python"), 5),
    (Atom("true"), Atom("false"), Atom("nil"), Atom("undefined"), Atom("nill"), Atom("ok")),
    (b"", b"a", b"\xe9", "\u00e9".encode(), "\u2713".encode(), "\U0001f600".encode(),
     b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80", b"a" * 5000 + b"\xff", b"\xffa" * 3000,
     b"ab" * 3000 + "\u2713".encode()),
    [PID, (PID,), Map({PID: PID})],
    ImproperList((b"a", Atom("nil")), b"tail"),
]
SURROUNDINGS = [lambda t: t, lambda t: [t, t], lambda t: (t, b"after"),
                lambda t: Map({b"k": t}), lambda t: ImproperList((t,), t)]


@pytest.mark.parametrize("term", SPECIAL, ids=repr)
@pytest.mark.parametrize("zero_copy", [False, True])
@pytest.mark.parametrize("compressed", [False, 1])
def test_special_terms_decode_the_same(term, zero_copy, compressed):
    for surround in SURROUNDINGS:
        data = encode(surround(term), compressed=compressed)
        for hooks in ((), ("pid_hook", "tuple_hook")):
            compare(data, zero_copy=zero_copy, hooks=hooks, transform=bool(hooks))
            compare(bytearray(data), zero_copy=zero_copy, hooks=hooks)


PLAIN_SAMPLES = SAMPLES[-4:] + [
    encode([Map([(1, 2), (1.0, 3)]), (TENSOR, (Atom("u"), 8), (2,), b"ab"), b"\xff"]),
    encode((OPAQUE, Atom("python"), b"data"), compressed=1),
    encode(Map({b"a": Map({Atom("true"): 1}), Atom("b"): [b"x", Atom("nil")]})),
]


@pytest.mark.parametrize("sample", PLAIN_SAMPLES, ids=repr)
def test_mutated_inputs_give_the_same_result_or_error(sample):
    for index, data in enumerate(mutations(sample)):
        compare(data, zero_copy=index % 2 == 0, hooks=("tuple_hook",) if index % 3 else ())


def test_a_mapping_error_before_a_fault_wins_and_after_it_loses():
    merged = encode(Map([(1, 2), (1.0, 3)]))[1:]
    before = b"\x83l\x00\x00\x00\x02" + merged + b"h\x05"   # then a truncated tuple
    after = b"\x83l\x00\x00\x00\x02h\x01" + merged[:-1]   # truncated inside the map
    assert compare(before)[2].startswith("map keys 1 and 1.0")
    assert "truncated" in compare(after)[2]


def test_calls_it_does_not_take_go_to_the_reference():
    data = encode([Atom("nil"), b"a"])
    for args, kwargs in [((data,), {"atom_hook": None}), ((data,), {"map_hook": len}),
                         ((data,), {"zero_copy": 1}), ((data, 0), {}), ((), {}),
                         ((data,), {"unknown": 1}), ((), {"data": data})]:
        a = outcome(plain.reference_decode, *args, **kwargs)
        b = outcome(c.plain_decode, *args, **kwargs)
        assert a[0] == "error" and a[:3] == b[:3] or same(a, b), (args, kwargs, a, b)
    assert c.plain_decode_from(b"x" + data, 1) == plain.reference_decode_from(b"x" + data, 1)
    assert c.plain_decode_from(data, offset=0) == plain.reference_decode_from(data, offset=0)


def test_zero_copy_keeps_the_input_under_non_text_binaries_and_tensors():
    data = encode([b"\xff\x00", (TENSOR, (Atom("u"), 8), (2,), b"ab"), Map({b"\xff": 1})])
    view, array, mapping = c.plain_decode(data, zero_copy=True)
    assert type(view) is memoryview and view.obj is data and view.readonly
    assert np.shares_memory(array, np.frombuffer(data, np.uint8)) and not array.flags.writeable
    assert list(mapping) == [b"\xff"]


# ---- Encoding ----

plain_options = st.fixed_dictionaries({}, optional={
    "strings": st.sampled_from(["binary", "charlist"]),
    "none": st.sampled_from(["nil", "undefined"]),
    "minor_version": st.sampled_from([1, 2]),
    "compressed": st.sampled_from([False, True, 1]),
    "deterministic": st.booleans(),
})


def encode_outcome(function, value, **options):
    try:
        return ("ok", function(value, **options))
    except Exception as exc:  # noqa: BLE001 - the very thing compared
        return ("error", type(exc), str(exc), getattr(exc, "path", None), exc.__cause__,
                exc.__suppress_context__, type(exc.__context__))


def compare_encoding(value, **options):
    a = encode_outcome(plain.reference_encode, value, **options)
    b = encode_outcome(cencode.plain_encode, value, **options)
    assert a == b, (value, options, a, b)
    return b


@given(plain_values(), plain_options)
def test_plain_values_encode_the_same(value, options):
    compare_encoding(value, **options)


@given(terms(), plain_options)
def test_raw_terms_encode_the_same(term, options):
    compare_encoding(term, **options)


@pytest.mark.parametrize("value", [
    {"a": [1, {2, 3}]}, [np.float32(1.5), np.int64(-3), np.bool_(True)],
    np.arange(6, dtype=np.int16).reshape(2, 3), np.array(["text"]),
    {"when": [datetime.date(2026, 12, 6), datetime.time(5, 1)]}, (1, [object()]),
    [math.nan], {(b"a",): 1, ("a",): 2}, Opaque(Atom("python"), b"x"), None, True,
    [Fun(Atom("m"), 0, b"\x00")],
])
@pytest.mark.parametrize("options", [{}, {"strings": "charlist", "none": "undefined"},
                                     {"none": "null"}, {"none": Atom("nil")},
                                     {"strings": "other"}, {"default": repr}, {"minor_version": 3}])
def test_special_values_and_options_encode_the_same(value, options):
    compare_encoding(value, **options)
