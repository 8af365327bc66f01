"""The raw layer's API: round trips, framing, zero copy, hooks, encoder options and errors."""
import enum
import math
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codec import (
    Atom,
    DecodeError,
    EncodeError,
    ImproperList,
    Map,
    Opaque,
    Pid,
    decode,
    decode_from,
    encode,
    exact_key,
)
from codec.strategies import terms


@given(terms(), st.sampled_from([1, 2]), st.booleans())
def test_round_trip_is_exact(term, minor_version, deterministic):
    data = encode(term, minor_version=minor_version, deterministic=deterministic)
    decoded = decode(data)
    assert exact_key(decoded) == exact_key(term)
    assert encode(decoded, minor_version=minor_version, deterministic=deterministic) == data


@given(st.lists(terms(max_leaves=8), min_size=1, max_size=5), st.booleans())
def test_decode_from_walks_concatenated_frames(batch, compressed):
    frames = [encode(t, compressed=compressed) for t in batch]
    stream = bytearray(b"".join(frames))
    offset = 0
    for term in batch:
        decoded, offset = decode_from(memoryview(stream), offset)
        assert exact_key(decoded) == exact_key(term)
    assert offset == len(stream)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda b: memoryview(b).cast("c")])
def test_any_buffer_decodes(wrap):
    data = encode((Atom("ok"), b"payload", [1.5, 2.5]))
    assert decode(wrap(data)) == (Atom("ok"), b"payload", [1.5, 2.5])


def test_zero_copy_gives_read_only_views_except_map_keys():
    source = bytearray(encode(Map([(b"key", b"value")]) ) + b"")
    term = decode(source, zero_copy=True)
    (key, value), = term.items()
    assert type(key) is bytes
    assert type(value) is memoryview and value.readonly and value == b"value"
    big = encode(b"x" * (8 << 20))
    view = decode(big, zero_copy=True)
    assert view.obj is big  # a window on the input, not a copy


def test_hooks_run_in_the_single_pass():
    data = encode(Map([(Atom("k"), (b"bin", Pid(Atom("n@h"), 1, 2, 3)))]))
    seen_offsets = []

    def map_hook(pairs, offset):
        seen_offsets.append(offset)
        return dict(pairs)

    term = decode(data, atom_hook=str.upper, binary_hook=bytes.decode, map_hook=map_hook,
                  tuple_hook=list, pid_hook=lambda pid: ("pid", pid.id))
    assert term == {"K": ["bin", ("pid", 1)]}
    assert seen_offsets == [1]


def test_map_hook_may_refuse_with_decode_error():
    def refuse(pairs, offset):
        raise DecodeError("no maps here", offset)

    with pytest.raises(DecodeError, match="no maps here"):
        decode(encode([1, {}]), map_hook=refuse)


def test_integers_take_the_tag_otp_writes():
    assert encode(255) == b"\x83a\xff"
    assert encode(256)[1] == 98
    assert encode(-1)[1] == 98
    assert encode(2**31 - 1)[1] == 98
    assert encode(2**31)[1] == 110
    assert encode(-(2**31))[1] == 98
    assert encode(2**2040)[1] == 111


def test_lists_take_the_tag_otp_writes():
    assert encode([32, 64]) == b"\x83k\x00\x02 @"
    assert encode([1] * 65535)[1] == 107
    assert encode([1] * 65536)[1] == 108
    assert encode([1, True])[1] == 108
    assert encode([256])[1] == 108


@pytest.mark.parametrize("values", [
    [0.5 * i for i in range(1000)],
    list(range(-500, 500)),
    list(range(0, 255)) * 3,
    [2**31 - 1, -(2**31)] * 50,
    [1, 2**40] * 50,
], ids=["floats", "mixed-width ints", "small ints", "int32 bounds", "with bigs"])
def test_bulk_numeric_paths_match_the_generic_encoding(values):
    data = encode(values)
    generic = b"".join(encode(v)[1:] for v in values)
    if data[1] == 108:
        assert data == b"\x83l" + len(values).to_bytes(4, "big") + generic + b"j"
    assert decode(data) == values
    mixed = [Atom("x")] + values  # forces the element-by-element paths
    assert decode(encode(mixed))[1:] == values


def test_bulk_decode_handles_runs_and_breaks():
    values = [1] * 40 + [300] * 40 + [1.5] * 40 + [Atom("a")] + [2.5] * 40
    assert decode(encode(values)) == values


def test_dicts_and_maps_encode_like_erlang_maps():
    assert encode({"b": 1, "a": 2}, deterministic=True) == encode(
        Map([(b"a", 2), (b"b", 1)]))
    assert encode(OrderedDict(a=1)) == encode({"a": 1})
    with pytest.raises(EncodeError, match="map keys .a. and b.a. are the same Erlang term") as info:
        encode({"x": [{"a": 1, b"a": 2}]})
    assert info.value.path == '$["x"][0]'


def test_python_values_map_to_erlang_terms():
    assert decode(encode(None)) == Atom("nil")
    assert decode(encode(None, none_as="undefined")) == Atom("undefined")
    assert decode(encode(True)) == Atom("true")
    assert decode(encode("h\u00e9")) == "h\u00e9".encode()
    assert decode(encode("h\u00e9", str_as="charlist")) == [104, 233]
    assert decode(encode(bytearray(b"ab"))) == b"ab"
    assert decode(encode(memoryview(b"ab"))) == b"ab"
    assert decode(encode(Opaque(Atom("python"), b"\x80\x04"))) == (
        Atom("$erlport.opaque"), Atom("python"), b"\x80\x04")


def test_subclasses_encode_as_their_base_types():
    class Color(enum.IntEnum):
        RED = 300

    class Name(str):
        pass

    class Row(tuple):
        pass

    assert encode(Color.RED) == encode(300)
    assert encode(Name("n")) == encode("n")
    assert encode(Row((1, 2))) == encode((1, 2))
    assert encode([Color.RED] * 40) == encode([300] * 40)


def test_default_converts_unknown_types():
    assert encode({1, 2}, default=sorted) == encode([1, 2])
    assert encode([object()], default=lambda o: Atom("obj")) == encode([Atom("obj")])


@pytest.mark.parametrize("term,path,reason", [
    ({"layers": [1, object()]}, '$["layers"][1]', "cannot encode object"),
    ([0, 1, {"x": math.nan}], '$[2]["x"]', "not finite"),
    ((1, [math.inf]), "$[1][0]", "not finite"),
    ([1.0] * 50 + [math.nan], "$[50]", "not finite"),
    ({b"k": Atom("a" * 256)}, "$[b'k']", "over Erlang's 255 limit"),
    (ImproperList((), 1), "$", "at least one element"),
    ("\ud800", "$", "UTF-8"),
])
def test_encode_errors_name_the_value_and_its_path(term, path, reason):
    with pytest.raises(EncodeError, match=reason) as info:
        encode(term)
    assert info.value.path == path


@pytest.mark.parametrize("options", [
    {"minor_version": 0}, {"compressed": 10}, {"compressed": "yes"}, {"str_as": "utf16"},
])
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        encode(1, **options)


def test_compression_is_kept_only_when_smaller():
    assert encode([1], compressed=9) == encode([1])
    packed = encode([1.5] * 1000, compressed=True)
    assert packed[1] == 80 and len(packed) < len(encode([1.5] * 1000))
    assert decode(packed) == [1.5] * 1000


def test_map_keeps_erlang_key_semantics():
    term = Map([(1, "int"), (1.0, "float"), (True, "atom"), ((1,), "tuple"), ((1.0,), "ftuple")])
    assert len(term) == 5
    assert term[1.0] == "float" and term[(1,)] == "tuple" and term[Atom("true")] == "atom"
    assert decode(encode(term)) == term
    with pytest.raises(KeyError):
        Map.from_unique_pairs([((1, [2]), "a"), ((1, [2]), "b")])


def test_bulk_binary_run_stops_at_other_terms_and_bad_lengths():
    values = [b"%d" % i for i in range(40)] + [Atom("end")] + [b"tail"] * 40
    data = encode(values)
    assert decode(data) == values
    assert decode(bytearray(data)) == values
    assert data[6] == 109  # the first binary of the run; its length follows
    oversized = data[:7] + b"\xff" + data[8:]
    with pytest.raises(DecodeError, match="binary of 4278190081 bytes") as info:
        decode(oversized)
    assert info.value.offset == 6
