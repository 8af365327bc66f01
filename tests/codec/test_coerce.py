"""Schema-driven coercion on every shape a BEAM value can arrive in."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import codec
from codec import Atom, FieldError, ImproperList, Map, plain
from codec.coerce import (as_bool, as_float, as_float_list, as_int, as_int_list, as_str_keys,
                          as_text)


# Stand-ins with the shape of stock ErlPort's own runtime types.
class ErlPortAtom(bytes):
    pass


ErlPortAtom.__name__ = "Atom"


class List(list):
    def __hash__(self):
        return hash(tuple(self))

    def to_string(self):
        return "".join(map(chr, self))


class ErlPortMap(dict):
    pass


class ErlPortImproperList(list):
    def __init__(self, items, tail):
        super().__init__(items)
        self.tail = tail


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@st.composite
def chardata(draw, text):
    """``text`` as nested Erlang chardata: code points, UTF-8 binaries, strs, tails."""
    pieces = []
    rest = text
    while rest:
        size = draw(st.integers(1, len(rest)))
        piece, rest = rest[:size], rest[size:]
        form = draw(st.sampled_from(["codes", "binary", "str", "nested", "improper", "erlport"]))
        if form == "codes":
            pieces.extend(ord(c) for c in piece)
        elif form == "binary":
            pieces.append(piece.encode())
        elif form == "str":
            pieces.append(piece)
        elif form == "nested":
            pieces.append([[ord(c)] for c in piece])
        elif form == "improper":
            pieces.append(ImproperList(tuple(ord(c) for c in piece[:1]), piece[1:].encode()))
        else:
            pieces.append(ErlPortImproperList([ord(c) for c in piece[:1]], piece[1:].encode()))
    return pieces


@given(texts, st.data())
def test_as_text_reads_every_shape_of_text(text, data):
    shapes = [text, Atom(text), text.encode(), bytearray(text.encode()),
              memoryview(text.encode()), [ord(c) for c in text], List(map(ord, text)),
              data.draw(chardata(text))]
    assert [as_text(shape, field="f") for shape in shapes] == [text] * len(shapes)
    assert all(type(as_text(shape, field="f")) is str for shape in shapes)


@given(st.text(st.characters(max_codepoint=255), max_size=30))
def test_erlport_atoms_hold_latin1_text(text):
    assert as_text(ErlPortAtom(text.encode("latin-1")), field="f") == text


@given(st.lists(st.integers(0, 0x10FFFF).filter(lambda i: not 0xD800 <= i <= 0xDFFF),
                max_size=20))
def test_as_int_list_reads_every_shape_of_int_list(ints):
    shapes = [ints, tuple(ints), List(ints), np.array(ints, dtype=np.int64),
              [np.int32(i) for i in ints], "".join(map(chr, ints))]
    if all(i < 256 for i in ints):
        shapes += [bytes(ints), bytearray(ints)]
    assert [as_int_list(shape, field="f") for shape in shapes] == [ints] * len(shapes)


def test_layers_sent_as_a_string_ext_come_back_as_ints():
    layers = plain.decode(codec.encode({Atom("layers"): [32, 64]}))["layers"]
    assert as_int_list(layers, field="search_space.layers") == [32, 64]
    assert as_int_list(" @", field="search_space.layers") == [32, 64]
    assert as_text(layers, field="name") == " @"


@given(st.integers(-(2**70), 2**70))
def test_as_int_reads_every_shape_of_int(number):
    shapes = [number, float(number) if abs(number) < 2**53 else number, str(number),
              str(number).encode(), [ord(c) for c in str(number)]]
    if -(2**63) <= number < 2**63:
        shapes.append(np.int64(number))
    assert [as_int(shape, field="f") for shape in shapes] == [number] * len(shapes)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_as_float_reads_every_shape_of_float(number):
    shapes = [number, repr(number), repr(number).encode(), Atom(repr(number)),
              np.float64(number), List(map(ord, repr(number)))]
    assert [as_float(shape, field="f") for shape in shapes] == [number] * len(shapes)
    assert as_float(int(number), field="f") == float(int(number))


@given(st.lists(st.one_of(st.integers(-1000, 1000),
                          st.floats(allow_nan=False, allow_infinity=False)), max_size=10))
def test_as_float_list_reads_lists_tuples_and_arrays(numbers):
    floats = [float(n) for n in numbers]
    shapes = [numbers, tuple(numbers), List(numbers), np.array(floats)]
    assert [as_float_list(shape, field="f") for shape in shapes] == [floats] * len(shapes)


def test_as_bool_reads_bools_atoms_and_text():
    yes = [True, np.bool_(True), Atom("true"), "true", b"true", ErlPortAtom(b"true"),
           List(map(ord, "true"))]
    no = [False, Atom("false"), "false", [102, 97, 108, 115, 101]]
    assert [as_bool(v, field="f") for v in yes] == [True] * len(yes)
    assert [as_bool(v, field="f") for v in no] == [False] * len(no)


@given(st.dictionaries(texts, st.integers(), max_size=6), st.data())
def test_as_str_keys_normalises_every_key_shape(mapping, data):
    forms = st.sampled_from([str, Atom, str.encode, lambda k: List(map(ord, k))])
    pairs = [(data.draw(forms)(key), value) for key, value in mapping.items()]
    for container in [Map(pairs), ErlPortMap(pairs), dict(pairs), pairs]:
        result = as_str_keys(container, field="m")
        assert result == mapping and all(type(key) is str for key in result)


def test_as_str_keys_refuses_keys_that_become_one():
    with pytest.raises(FieldError, match=r"spec: keys bytes b'a' and Atom Atom\('a'\)"):
        as_str_keys(Map([(b"a", 1), (Atom("a"), 2)]), field="spec")
    with pytest.raises(FieldError, match=r"spec \(a key\): expected text, got int 1"):
        as_str_keys({1: 2}, field="spec")


@pytest.mark.parametrize("helper,value,got", [
    (as_text, None, "NoneType None"),
    (as_text, b"\xff", r"bytes b'\\xff'"),
    (as_text, [1.5], r"list \[1.5\]"),
    (as_text, [0xD800], "list"),
    (as_text, 7, "int 7"),
    (as_int, 1.5, "float 1.5"),
    (as_int, True, "bool True"),
    (as_int, "x", "str 'x'"),
    (as_float, "nan", "str 'nan'"),
    (as_float, 10**400, "int 1000"),
    (as_bool, 1, "int 1"),
    (as_int_list, [1, True], r"list \[1, True\]"),
    (as_int_list, [1, 2.0], r"list \[1, 2.0\]"),
    (as_int_list, None, "NoneType"),
    (as_int_list, ErlPortImproperList([1], 2), "ErlPortImproperList"),
    (as_float_list, [1.0, "a"], "list"),
    (as_float_list, np.array([[1.0]]), "ndarray"),
    (as_str_keys, [1, 2], r"list \[1, 2\]"),
])
def test_errors_name_the_field_and_what_arrived(helper, value, got):
    with pytest.raises(FieldError, match=f"^search_space.layers: expected .*, got {got}") as e:
        helper(value, field="search_space.layers")
    assert e.value.field == "search_space.layers" and isinstance(e.value, ValueError)


def test_long_values_are_clipped_in_messages():
    with pytest.raises(FieldError) as caught:
        as_int_list(list(range(1000)) + [None], field="f")
    assert len(str(caught.value)) < 150 and str(caught.value).endswith("...")


@pytest.mark.parametrize("where,name,known,message", [
    ("opts.budget", "max_time_secs", {"max_trials", "max_time_seconds"},
     "opts.budget.max_time_secs: unknown field; did you mean `max_time_seconds`? known: max_time_seconds, max_trials"),
    ("opts", "colour", {"seed", "strategy"}, "opts.colour: unknown field; known: seed, strategy"),
    ("", "eta", {"tau"}, "eta: unknown field; known: tau"),  # too far from tau to suggest it
])
def test_an_unknown_key_names_the_closest_known_and_lists_them(where, name, known, message):
    error = FieldError.unknown_key(where, name, known)
    assert str(error) == message and error.field == message.split(":")[0] and error.kind == "invalid"
    renamed = error.renamed("y")
    assert (renamed.field, renamed.problem, renamed.kind) == ("y", error.problem, "invalid")
