"""Stock ErlPort's value types in the codec: written as what they stand for, and built from terms.

The classes come from the worker's stand-in ``erlport`` package; the codec
knows them only by module and class name, as it knows stock's own.
"""
import sys

import pytest

import codec
from codec import DecodeError, EncodeError, encoder, plain
from codec.stock import stand_in, stock_kind, to_stock
from codec.terms import Atom, BitBinary, ImproperList, Map, Pid, Reference
from erlport_worker.stock_api import SHIM_PATH

sys.path.append(SHIM_PATH)
import erlport.erlterms as erlterms  # noqa: E402 (the stand-in is on the path only now)
S = erlterms
PID = Pid(Atom("erl@host"), 81, 0, 3)


def pid_data():
    return codec.encode(PID)[1:]


class LoudAtom(S.Atom):
    """A user's subclass of stock's Atom."""


STOCK_AND_TERM = [
    (S.Atom(b"ok"), Atom("ok")),
    (S.Atom(b"h\xe9"), Atom("h\u00e9")),
    (LoudAtom(b"loud"), Atom("loud")),
    (S.List([]), []),
    (S.List([1, S.Atom(b"two"), [3]]), [1, Atom("two"), [3]]),
    (S.Map({S.Atom(b"k"): S.List([1])}), {Atom("k"): [1]}),
    (S.ImproperList([1, 2], S.Atom(b"tail")), ImproperList((1, 2), Atom("tail"))),
    (S.OpaqueObject(pid_data(), S.Atom(b"erlang")), PID),
    (S.OpaqueObject(codec.encode(BitBinary(b"\x40", 2))[1:], S.Atom(b"erlang")),
     BitBinary(b"\x40", 2)),
    (S.OpaqueObject(b"\x01\x02", S.Atom(b"ruby")),
     (Atom("$erlport.opaque"), Atom("ruby"), b"\x01\x02")),
    ((S.Atom(b"nested"), [S.List([S.Atom(b"a")])], {1: S.Map({})}),
     (Atom("nested"), [[Atom("a")]], {1: {}})),
]


@pytest.mark.parametrize("encode", [codec.encode, encoder.encode], ids=["core", "python"])
@pytest.mark.parametrize("minor_version", [1, 2])
@pytest.mark.parametrize("value, term", STOCK_AND_TERM, ids=repr)
def test_stock_values_are_written_as_the_term_they_stand_for(encode, minor_version, value, term):
    assert encode(value, minor_version=minor_version) == codec.encode(
        term, minor_version=minor_version)


@pytest.mark.parametrize("value, term", STOCK_AND_TERM, ids=repr)
def test_plain_encoding_writes_them_the_same(value, term):
    for options in ({}, {"strings": "charlist", "none": "undefined"}):
        assert plain.encode(value, **options) == plain.encode(term, **options)


@pytest.mark.parametrize("encode", [codec.encode, encoder.encode], ids=["core", "python"])
def test_an_opaque_whose_data_is_not_a_term_is_refused_with_its_path(encode):
    with pytest.raises(EncodeError) as caught:
        encode([1, S.OpaqueObject(b"\xff\x00", S.Atom(b"erlang"))])
    assert caught.value.path == "$[1]"
    assert "OpaqueObject data is not an Erlang term" in str(caught.value)


def test_only_stock_types_are_recognized():
    assert [stock_kind(v) for v, _ in STOCK_AND_TERM[:8]] == [
        "Atom", "Atom", "Atom", "List", "List", "Map", "ImproperList", "OpaqueObject"]
    assert [stock_kind(v) for v in (b"ok", Atom("ok"), [], {}, None, 1.5)] == [None] * 6
    with pytest.raises(TypeError):
        stand_in(b"ok")


def keep_erlang_opaques(language, data):
    assert language == "erlang"
    return S.OpaqueObject(data, S.Atom(b"erlang"))


def decoded(term):
    return to_stock(codec.decode(codec.encode(term, minor_version=1)), S, keep_erlang_opaques)


def test_terms_become_stock_values():
    value = decoded([b"bin", Atom("ok"), Atom("true"), Atom("false"), Atom("undefined"),
                     Atom("nil"), [104, 105], {Atom("k"): [(1,)]}, ImproperList((1,), 2),
                     (Atom("$erlport.opaque"), Atom("erlang"), pid_data()), 1.5])
    assert type(value) is S.List
    assert value == [b"bin", S.Atom(b"ok"), True, False, None, S.Atom(b"nil"), [104, 105],
                     {S.Atom(b"k"): [(1,)]}, S.ImproperList([1], 2),
                     S.OpaqueObject(pid_data(), S.Atom(b"erlang")), 1.5]
    assert type(value[0]) is bytes and value[1] is S.Atom(b"ok")
    assert value[6].to_string() == "hi"
    assert type(value[7]) is S.Map and type(value[7][S.Atom(b"k")]) is S.List


def test_terms_stock_cannot_decode_keep_the_codec_types():
    ref = Reference(Atom("erl@host"), 3, (1, 2, 3))
    assert decoded([Atom("\u0100tom"), PID, ref]) == [Atom("\u0100tom"), PID, ref]
    assert type(decoded([Atom("\u0100tom")])[0]) is Atom


def test_any_depth_converts_without_recursion():
    deep = []
    for _ in range(100_000):
        deep = [deep]
    value = decoded(deep)
    for _ in range(100_000):
        assert type(value) is S.List and len(value) == 1
        value = value[0]
    assert value == []


@pytest.mark.parametrize("pairs", [[(1, Atom("a")), (1.0, Atom("b"))],
                                   [(b"a", 1), (Atom("a"), 2)]], ids=["int-float", "bin-atom"])
def test_map_keys_python_would_merge_are_refused(pairs):
    with pytest.raises(DecodeError, match="one key in Python"):
        decoded(Map(pairs))
