"""numpy arrays <-> Nx-shaped {tensor, Type, Shape, Data} terms."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import codec
from codec import Atom, plain, tensor
from codec.plain_strategies import tensor_inputs, tensors

# numpy dtype kind -> Nx type kind
NX_KIND = {"f": "f", "i": "s", "u": "u", "c": "c"}


@given(tensors())
def test_every_dtype_and_shape_round_trips(array):
    back = plain.decode(plain.encode(array))
    assert (back.dtype, back.shape, back.tobytes()) == (array.dtype, array.shape, array.tobytes())
    assert not back.flags.writeable


@given(tensors())
def test_term_is_type_shape_and_little_endian_bytes(array):
    term = codec.decode(plain.encode(array))
    nx_type = (Atom(NX_KIND[array.dtype.kind]), array.dtype.itemsize * 8)
    assert term == (Atom("tensor"), nx_type, array.shape, array.tobytes())
    assert type(term[2]) is tuple
    assert np.prod(array.shape, dtype=int) * array.itemsize == len(term[3])


@given(tensor_inputs())
def test_other_layouts_are_sent_contiguous_and_little_endian(array):
    expected = array.astype(array.dtype.newbyteorder("<"), order="C")
    back = plain.decode(plain.encode(array))
    assert (back.dtype, back.shape, back.tobytes()) == (expected.dtype, expected.shape,
                                                         expected.tobytes())


def test_zero_copy_decode_is_a_view_of_the_received_buffer():
    array = np.arange(1000, dtype=np.float64)
    frame = bytearray(plain.encode(array))
    back = plain.decode(frame, zero_copy=True)
    assert back[-1] == 999.0 and not back.flags.writeable
    frame[-8:] = np.float64(-1.0).tobytes()
    assert back[-1] == -1.0


def test_encoding_hands_the_encoder_the_array_buffer_itself():
    array = np.arange(12, dtype=np.int32).reshape(3, 4)
    data = tensor.to_term(array)[3]
    assert isinstance(data, memoryview) and np.shares_memory(np.asarray(data), array)


def test_bool_arrays_travel_as_u8():
    term = codec.decode(plain.encode(np.array([True, False, True])))
    assert term[1] == (Atom("u"), 8) and term[3] == b"\x01\x00\x01"
    assert plain.decode(plain.encode(np.array([True, False]))).dtype == np.uint8


@pytest.mark.parametrize("array,dtype", [
    (np.array(["a"]), "<U1"), (np.array([object()]), "object"),
    (np.array(["2024-01-01"], dtype="datetime64[D]"), "datetime64[D]"),
    (np.zeros(2, dtype=np.longdouble), "float128"),
], ids=["str", "object", "datetime64", "longdouble"])
def test_unsupported_dtypes_are_refused_with_dtype_and_path(array, dtype):
    with pytest.raises(codec.EncodeError) as caught:
        plain.encode({"batch": [1, array]})
    assert dtype in str(caught.value) and caught.value.path == "$['batch'][1]"


def _tensor_frame(nx_type, shape, data):
    return codec.encode((Atom("tensor"), nx_type, shape, data))


@pytest.mark.parametrize("nx_type,shape,data,message", [
    ((Atom("bf"), 16), (2,), b"\0" * 4, "numpy has no bfloat16"),
    ((Atom("f"), 8), (2,), b"\0" * 2, "{f, 8} is not supported"),
    ((Atom("f"), 64), (2, 3), b"\0" * 40, "has 40 bytes but shape (2, 3)"),
    ((Atom("s"), 32), (-1,), b"", "not a tuple of sizes"),
    ((Atom("u"), 8), (1,), Atom("x"), "must be a binary, not Atom"),
])
def test_malformed_tensors_are_refused_clearly(nx_type, shape, data, message):
    with pytest.raises(codec.DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plain.decode(_tensor_frame(nx_type, shape, data))


def test_tuples_without_the_tensor_outline_stay_tuples():
    assert plain.decode(codec.encode((Atom("tensor"), 1))) == ("tensor", 1)
    binary_tag = (b"tensor", (Atom("f"), 64), (1,), b"\xff" * 8)
    assert plain.decode(codec.encode(binary_tag)) == ("tensor",) + binary_tag[1:]


def test_from_term_reads_raw_decoded_tensors():
    array = np.arange(6, dtype=np.uint16).reshape(2, 3)
    frame = plain.encode(array)
    assert np.array_equal(tensor.from_term(codec.decode(frame, zero_copy=True)), array)
    with pytest.raises(tensor.TensorError):
        tensor.from_term((Atom("tensor"), 1))


# Erlang takes each tensor term apart, reads every element of Bits bits from
# Data, rebuilds the binary from them and checks the sizes against Shape.
_ERLANG_CHECK = """
Check = fun(Frame) ->
    {tensor, {Kind, Bits}, Shape, Data} = binary_to_term(Frame),
    Count = lists:foldl(fun(D, Acc) -> D * Acc end, 1, tuple_to_list(Shape)),
    Elements = [E || <<E:Bits/little-unsigned>> <= Data],
    Rebuilt = << <<E:Bits/little-unsigned>> || E <- Elements >>,
    {Kind, Bits, Shape, length(Elements) =:= Count, byte_size(Data) =:= Count * Bits div 8,
     Rebuilt =:= Data}
end,
[Check(F) || F <- [%s]].
"""


@given(st.lists(tensors(max_side=4), min_size=1, max_size=8))
def test_erlang_reads_the_tensor_terms(erl_oracle, arrays):
    frames = [plain.encode(a, minor_version=1) for a in arrays]
    literal = ", ".join("<<%s>>" % ",".join(map(str, f)) for f in frames)
    answers = codec.decode(erl_oracle.evaluate(_ERLANG_CHECK % literal))
    yes = Atom("true")
    assert answers == [(Atom(NX_KIND[a.dtype.kind]), a.itemsize * 8, a.shape, yes, yes, yes)
                       for a in arrays]
    assert erl_oracle.roundtrip(frames, [("minor_version", 1)]) == frames
