"""BEAM terms <-> plain Python values (codec.plain)."""
import datetime

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import codec
from codec import Atom, ImproperList, Map, Opaque, Pid, plain
from codec.plain_strategies import plain_values, same_plain
from codec.strategies import terms

ENCODE_OPTIONS = st.sampled_from([{}, {"minor_version": 1}, {"compressed": True},
                                  {"deterministic": True}])


@given(plain_values(), ENCODE_OPTIONS)
def test_plain_values_round_trip(value, options):
    assert same_plain(plain.decode(plain.encode(value, **options)), value)


@given(terms(), st.sampled_from([1, 2]))
def test_decoding_then_encoding_a_beam_term_gives_its_bytes_back(term, minor_version):
    frame = codec.encode(term, minor_version=minor_version)
    # `undefined` comes back as `nil`; maps with keys Python merges are refused.
    assume(b"undefined" not in frame)
    try:
        value = plain.decode(frame)
    except codec.DecodeError as exc:
        assert "same dict key in Python" in str(exc)
        assume(False)
    assert plain.encode(value, minor_version=minor_version) == frame


@pytest.mark.parametrize("term,expected", [
    (b"caf\xc3\xa9", "café"),
    (b"\xff\x00", b"\xff\x00"),
    (Atom("true"), True), (Atom("false"), False), (Atom("nil"), None), (Atom("undefined"), None),
    ([32, 64], [32, 64]),
    ((1, b"a", Atom("ok")), (1, "a", "ok")),
    (Map([(Atom("a"), b"x"), (b"b", [])]), {"a": "x", "b": []}),
])
def test_the_mapping_table(term, expected):
    value = plain.decode(codec.encode(term))
    assert value == expected and type(value) is type(expected)


def test_atoms_are_str_that_go_back_as_atoms():
    value = plain.decode(codec.encode([Atom("ok"), b"ok"]))
    assert value == ["ok", "ok"] and isinstance(value[0], str)
    assert type(value[0]) is Atom and type(value[1]) is str
    assert codec.decode(plain.encode(value)) == [Atom("ok"), b"ok"]


def test_an_elixir_struct_keeps_struct_and_comes_back_a_struct(erl_oracle):
    frame = erl_oracle.evaluate(
        "#{'__struct__' => 'Elixir.Spec', layers => [32, 64], name => <<\"n\">>}.")
    value = plain.decode(frame)
    assert value == {"__struct__": "Elixir.Spec", "layers": [32, 64], "name": "n"}
    assert type(value) is dict
    assert plain.encode(value, minor_version=1) == frame


@pytest.mark.parametrize("pairs,named", [
    ([(1, b"a"), (1.0, b"b")], "map keys 1 and 1.0"),
    ([(b"k", 1), (Atom("k"), 2)], "map keys 'k' and Atom('k')"),
    ([(Atom("true"), 1), (1, 2)], "map keys True and 1"),
])
def test_keys_python_would_merge_are_refused_by_name(pairs, named):
    frame = codec.encode({b"outer": [Map(pairs)]})
    with pytest.raises(codec.DecodeError, match=named.replace("(", r"\(").replace(")", r"\)")):
        plain.decode(frame)


def test_maps_with_list_keys_stay_erlang_maps():
    term = Map([([97, 98], 1), (b"c", 2)])
    value = plain.decode(codec.encode(term))
    assert type(value) is Map and value[[97, 98]] == 1
    assert plain.encode(value) == codec.encode(term)


def test_opaque_terms_re_encode_exactly_even_as_charlists():
    pid_bytes = codec.encode(Pid(Atom("n@h"), 1, 2, 3))[1:]
    frame = codec.encode((Atom("$erlport.opaque"), Atom("erlang"), pid_bytes), minor_version=1)
    value = plain.decode(frame)
    assert value == Opaque(Atom("erlang"), pid_bytes)
    one_element_list = b"\x83l\x00\x00\x00\x01"
    assert plain.encode([value], strings="charlist", minor_version=1) == (
        one_element_list + frame[1:] + b"j")


def test_pids_pass_through_the_pid_hook():
    pid = Pid(Atom("n@h"), 1, 2, 3)
    assert plain.decode(codec.encode([pid]), pid_hook=lambda p: ("sendable", p)) == [
        ("sendable", pid)]


def test_zero_copy_keeps_non_text_binaries_as_views():
    frame = codec.encode([b"\xff" * 10, b"text"])
    raw, text = plain.decode(frame, zero_copy=True)
    assert isinstance(raw, memoryview) and raw.readonly and bytes(raw) == b"\xff" * 10
    assert text == "text"


@pytest.mark.parametrize("data,expected_type", [
    (b"a" * 5000 + b"\xff", bytes),
    (b"a" * 4095 + "é".encode() + b"b" * 100, str),
    (b"\xff" + b"a" * 5000, bytes),
], ids=["bad-after-probe", "char-across-probe-end", "bad-first"])
def test_long_binaries_are_text_exactly_when_valid_utf8(data, expected_type):
    value = plain.decode(codec.encode(data))
    assert type(value) is expected_type
    assert (value.encode() if expected_type is str else value) == data


@pytest.mark.parametrize("value,same_as", [
    (np.int8(-5), -5), (np.uint64(2**64 - 1), 2**64 - 1), (np.float32(0.5), 0.5),
    (np.float16(-2.0), -2.0), (np.bool_(True), True), (np.float64(1.25), 1.25),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
     "2024-01-02T03:04:05+00:00"),
    (datetime.date(2024, 1, 2), "2024-01-02"), (datetime.time(3, 4), "03:04:00"),
])
def test_numpy_scalars_and_dates(value, same_as):
    assert plain.encode([value]) == plain.encode([same_as])


@pytest.mark.parametrize("value,message,path", [
    ({"a": [1, {2}]}, "cannot encode builtins.set", "$['a'][1]"),
    ([{object(): 1}], "cannot encode builtins.object", "$[0]<key "),
    ((1, 2, ImproperList((3,), 1j)), "cannot encode builtins.complex", "$[2][tail]"),
])
def test_anything_else_is_refused_naming_type_and_path(value, message, path):
    with pytest.raises(codec.EncodeError) as caught:
        plain.encode(value)
    assert message in str(caught.value) and caught.value.path.startswith(path)


def test_string_and_none_options():
    assert codec.decode(plain.encode(["ab", None], strings="charlist", none="undefined")) == [
        [97, 98], Atom("undefined")]
    with pytest.raises(ValueError, match="none must be"):
        plain.encode(None, none="null")


def test_trailing_bytes_are_refused():
    with pytest.raises(codec.DecodeError, match="trailing"):
        plain.decode(codec.encode(1) + b"\0")
    assert plain.decode_from(codec.encode(1) + b"x", 0) == (1, 3)
