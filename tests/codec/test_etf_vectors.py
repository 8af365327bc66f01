"""Fixed byte vectors for every tag: what OTP 25 writes, what OTP 26+ writes, legacy forms."""
import struct

import pytest

from codec import (
    Atom,
    BitBinary,
    Export,
    Fun,
    ImproperList,
    Map,
    Pid,
    Port,
    Reference,
    decode,
    encode,
    exact_key,
)

# A node other than the oracle's own (which would turn these into local terms).
NODE = b"d\x00\x08far@host"  # ATOM_EXT, as OTP 25 writes node names
NODE_UTF8 = b"w\x08far@host"  # SMALL_ATOM_UTF8_EXT, as OTP 26+ writes them
NONODE = Atom("far@host")

# Written with UTF-8 atoms, as OTP writes funs under minor_version 2.
_FUN_BODY = (
    b"\x01" + bytes(range(16)) + b"\x00\x00\x00\x00\x00\x00\x00\x01"
    + b"w\x01t" + b"a\x00" + b"b\x06\xc8\xdaS" + b"X" + NODE_UTF8 + b"\x00\x00\x00\x09"
    + b"\x00\x00\x00\x00\x00\x00\x00\x00" + b"a\x07"
)
FUN_PAYLOAD = struct.pack(">I", 4 + len(_FUN_BODY)) + _FUN_BODY

# (name, bytes after 131, decoded term, minor_version that writes exactly these bytes)
WRITTEN = [
    ("SMALL_INTEGER_EXT", b"a\xff", 255, 2),
    ("INTEGER_EXT", b"b\xff\xff\xff\xff", -1, 2),
    ("INTEGER_EXT 256", b"b\x00\x00\x01\x00", 256, 2),
    ("INTEGER_EXT min", b"b\x80\x00\x00\x00", -(2**31), 2),
    ("SMALL_BIG_EXT 2^31", b"n\x04\x00\x00\x00\x00\x80", 2**31, 2),
    ("SMALL_BIG_EXT -2^31-1", b"n\x04\x01\x01\x00\x00\x80", -(2**31) - 1, 2),
    ("LARGE_BIG_EXT", b"o\x00\x00\x01\x00\x00" + bytes(255) + b"\x01", 2**2040, 2),
    ("NEW_FLOAT_EXT", b"F?\xf8\x00\x00\x00\x00\x00\x00", 1.5, 2),
    ("NEW_FLOAT_EXT -0.0", b"F\x80\x00\x00\x00\x00\x00\x00\x00", -0.0, 2),
    ("ATOM_EXT (OTP 25 default)", b"d\x00\x02ok", Atom("ok"), 1),
    ("ATOM_EXT Latin-1", b"d\x00\x01\xe4", Atom("\xe4"), 1),
    ("SMALL_ATOM_UTF8_EXT (OTP 26+)", b"w\x02ok", Atom("ok"), 2),
    ("SMALL_ATOM_UTF8_EXT Latin-1 char", b"w\x02\xc3\xa4", Atom("\xe4"), 2),
    ("SMALL_ATOM_UTF8_EXT under minor 1", b"w\x03\xe2\x9c\x93", Atom("\u2713"), 1),
    ("ATOM_UTF8_EXT", b"v\x01\xfe" + "\u2713".encode() * 170, Atom("\u2713" * 170), 2),
    ("SMALL_TUPLE_EXT", b"h\x02a\x01j", (1, []), 2),
    ("SMALL_TUPLE_EXT empty", b"h\x00", (), 2),
    ("LARGE_TUPLE_EXT", b"i\x00\x00\x01\x00" + b"a\x00" * 256, (0,) * 256, 2),
    ("MAP_EXT", b"t\x00\x00\x00\x01w\x01ka\x01", Map({Atom("k"): 1}), 2),
    ("NIL_EXT", b"j", [], 2),
    ("STRING_EXT", b"k\x00\x02 @", [32, 64], 2),
    ("LIST_EXT", b"l\x00\x00\x00\x02a\x01b\x00\x00\x01\x00j", [1, 256], 2),
    ("LIST_EXT improper", b"l\x00\x00\x00\x01a\x01w\x01t", ImproperList((1,), Atom("t")), 2),
    ("BINARY_EXT", b"m\x00\x00\x00\x03abc", b"abc", 2),
    ("BIT_BINARY_EXT", b"M\x00\x00\x00\x02\x03\xff\xe0", BitBinary(b"\xff\xe0", 3), 2),
    ("NEW_PID_EXT", b"X" + NODE + b"\x00\x00\x00\x09\x00\x00\x00\x00\x00\x00\x00\x00",
     Pid(NONODE, 9, 0, 0), 1),
    ("NEW_PID_EXT utf8 node", b"X" + NODE_UTF8 + b"\x00\x00\x00\x09" + bytes(8),
     Pid(NONODE, 9, 0, 0), 2),
    ("NEWER_REFERENCE_EXT", b"Z\x00\x03" + NODE + bytes(4) + b"\x00\x02\x88\xc4\x00\x00\x00\x01"
     b"\x00\x00\x00\x02", Reference(NONODE, 0, (0x288C4, 1, 2)), 1),
    ("NEW_PORT_EXT (OTP 25)", b"Y" + NODE + b"\x00\x00\x00\x05" + bytes(4), Port(NONODE, 5, 0), 1),
    ("V4_PORT_EXT 64-bit id", b"x" + NODE_UTF8 + struct.pack(">QI", 2**40, 3),
     Port(NONODE, 2**40, 3), 2),
    ("V4_PORT_EXT id over 28 bits (OTP 25)", b"x" + NODE_UTF8 + struct.pack(">QI", 2**28, 3),
     Port(NONODE, 2**28, 3), 2),
    ("EXPORT_EXT", b"qw\x05listsw\x03mapa\x02", Export(Atom("lists"), Atom("map"), 2), 2),
    ("NEW_FUN_EXT", b"p" + FUN_PAYLOAD, Fun(Atom("t"), 1, FUN_PAYLOAD), 2),
]

# (name, bytes after 131, decoded term): forms that decode but are written differently.
READ_ONLY = [
    ("FLOAT_EXT", b"c" + b"1.50000000000000000000e+00".ljust(31, b"\0"), 1.5),
    ("SMALL_ATOM_EXT", b"s\x02ok", Atom("ok")),
    ("PID_EXT", b"g" + NODE + b"\x00\x00\x00\x09\x00\x00\x00\x00\x02", Pid(NONODE, 9, 0, 2)),
    ("PORT_EXT", b"f" + NODE + b"\x00\x00\x00\x05\x02", Port(NONODE, 5, 2)),
    ("REFERENCE_EXT", b"e" + NODE + b"\x00\x00\x00\x07\x02", Reference(NONODE, 2, (7,))),
    ("NEW_REFERENCE_EXT", b"r\x00\x02" + NODE + b"\x02\x00\x00\x00\x07\x00\x00\x00\x08",
     Reference(NONODE, 2, (7, 8))),
    ("V4_PORT_EXT (OTP 26+ writes it for every port)", b"x" + NODE_UTF8 + struct.pack(">QI", 5, 0),
     Port(NONODE, 5, 0)),
    ("LARGE_TUPLE_EXT small", b"i\x00\x00\x00\x01a\x01", (1,)),
    ("SMALL_BIG_EXT small value", b"n\x01\x00\x05", 5),
    ("LIST_EXT of small ints", b"l\x00\x00\x00\x01a\x01j", [1]),
    ("BIT_BINARY_EXT whole bytes", b"M\x00\x00\x00\x01\x08\xff", b"\xff"),
    ("LIST_EXT of length 0 is its tail", b"l\x00\x00\x00\x00a\x01", 1),
]


@pytest.mark.parametrize("name,body,term,minor", WRITTEN, ids=[v[0] for v in WRITTEN])
def test_written_forms_decode_and_encode_exactly(name, body, term, minor):
    data = b"\x83" + body
    decoded = decode(data)
    assert exact_key(decoded) == exact_key(term)
    assert type(decoded) is type(term)
    assert encode(decoded, minor_version=minor) == data
    assert encode(term, minor_version=minor) == data


@pytest.mark.parametrize("name,body,term", READ_ONLY, ids=[v[0] for v in READ_ONLY])
def test_legacy_forms_decode(name, body, term):
    decoded = decode(b"\x83" + body)
    assert exact_key(decoded) == exact_key(term)
    assert type(decoded) is type(term)


def test_atom_tags_follow_minor_version():
    assert encode(Atom("ok"), minor_version=1) == b"\x83d\x00\x02ok"
    assert encode(Atom("ok"), minor_version=2) == b"\x83w\x02ok"
    long_latin1 = Atom("\xe4" * 255)
    assert encode(long_latin1, minor_version=1)[:4] == b"\x83d\x00\xff"
    assert encode(long_latin1, minor_version=2)[:4] == b"\x83v\x01\xfe"


def test_bitstrings_sort_bit_by_bit_and_lose_unused_bits():
    keys = [BitBinary(b"\xff", 1), b"\x80\x00", b"\x80", BitBinary(b"\x80\x00", 1), b"",
            BitBinary(b"\x00", 1), b"\x7f", BitBinary(b"\xc0", 2)]
    data = encode(Map([(k, i) for i, k in enumerate(keys)]), deterministic=True)
    # Order as OTP 25 writes it; <<1:1>> (from 0xff with 7 unused bits) sorts before <<128>>.
    assert list(decode(data).values()) == [4, 5, 6, 0, 2, 3, 1, 7]
    assert decode(encode(BitBinary(b"\xff", 1))) == BitBinary(b"\x80", 1)


def test_three_keys_that_python_thinks_equal_stay_three():
    data = b"\x83t\x00\x00\x00\x03a\x01a\x0aF?\xf0\x00\x00\x00\x00\x00\x00a\x0bw\x04truea\x0c"
    decoded = decode(data)
    assert len(decoded) == 3
    assert [decoded[1], decoded[1.0], decoded[True]] == [10, 11, 12]
    assert encode(decoded) == data
