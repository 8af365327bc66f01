"""Hostile input: mutation fuzzing in OTP's style, refusals, bombs, depth and memory."""
import tracemalloc
import zlib

import pytest

from codec import DecodeError, decode, decode_from, encode
from codec.erl_oracle import OracleRefused
from codec.fuzz import mutations

from test_etf_vectors import READ_ONLY, WRITTEN

MAX_SAMPLE_SIZE = 400


@pytest.fixture(scope="module")
def samples(erl_oracle):
    """~100 representative encodings: the fixed vectors plus small Erlang-built terms."""
    vectors = [b"\x83" + v[1] for v in WRITTEN + READ_ONLY if len(v[1]) < MAX_SAMPLE_SIZE]
    built = [b for b in erl_oracle.generate(300, seed=11, options=[("minor_version", 2)], depth=2)
             if len(b) <= MAX_SAMPLE_SIZE]
    compressed = [encode([1.5] * 40 + [b"x" * 30], compressed=6),
                  encode({b"key": [7] * 60}, compressed=1)]
    return vectors + built[:100 - len(vectors) - len(compressed)] + compressed


def outcome(data):
    """What decode_from makes of ``data``: (re-encoding, holds a fun), or the DecodeError."""
    try:
        term, _ = decode_from(data)
    except DecodeError as exc:
        return exc
    return encode(term), "Fun(" in repr(term)


def test_samples_cover_many_encodings(samples):
    assert len(samples) >= 95


def test_mutations_raise_only_decode_error_and_agree_with_erlang(samples, erl_oracle):
    inputs = [m for sample in samples for m in mutations(sample)]
    ours = [outcome(m) for m in inputs]  # anything but DecodeError would propagate here
    theirs = erl_oracle.roundtrip(inputs, [("minor_version", 2)])
    disagreements = [
        (m, o, t) for m, o, t in zip(inputs, ours, theirs)
        if comparable(m, o)
        and (isinstance(o, DecodeError) != isinstance(t, OracleRefused)
             or (isinstance(o, tuple) and not o[1] and o[0] != t))
    ]
    assert len(inputs) > 25_000
    assert disagreements == []


def comparable(data, ours):
    """Whether Erlang's verdict on ``data`` is the one to match.

    Terms naming the oracle's own node become local terms there (pids and
    references are checked and normalized against the live node), and OTP 25
    leaks internal tags through binary_to_term, which this codec refuses.
    Funs are compared by verdict only: their bytes are kept verbatim here,
    while Erlang rewrites legacy forms inside them.
    """
    if ORACLE_NODE in data:
        return False
    return not (isinstance(ours, DecodeError) and "internal tag" in ours.reason)


ORACLE_NODE = b"nonode@nohost"


@pytest.mark.parametrize("data,reason", [
    (b"", "no data"),
    (b"\x84a\x01", "bad version byte 132"),
    (b"\x83", "nothing after the version byte"),
    (b"\x83F\x7f\xf8\x00\x00\x00\x00\x00\x00", "not finite"),
    (b"\x83F\x7f\xf0\x00\x00\x00\x00\x00\x00", "not finite"),
    (b"\x83l\x00\x00\x00\x40" + b"F\xff\xf0\x00\x00\x00\x00\x00\x00" * 64 + b"j", "not finite"),
    (b"\x83c" + b"nan".ljust(31, b"\0"), "not a number"),
    (b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02", "duplicate map key 1"),
    (b"\x83R\x00", "ATOM_CACHE_REF"),
    (b"\x83D\x01", "distribution header"),
    (b"\x83E\x01", "distribution header"),
    (b"\x83K\x00", "internal tag 75"),
    (b"\x83u\x00", "FUN_EXT"),
    (b"\x83y\x00", "LOCAL_EXT"),
    (b"\x83\x01", "unknown tag 1"),
    (b"\x83a\x01\x00", "1 trailing bytes"),
    (b"\x83h\x01P\x00\x00\x00\x02x\x9c", "compressed marker"),
    (b"\x83m\xff\xff\xff\xff", "binary of 4294967295 bytes but only 0 left"),
    (b"\x83l\xff\xff\xff\xffj", "list of 4294967295 elements"),
    (b"\x83i\xff\xff\xff\xff", "tuple of 4294967295 elements"),
    (b"\x83t\xff\xff\xff\xff", "map of 4294967295 pairs"),
    (b"\x83o\xff\xff\xff\xff\x00", "big integer of 4294967295 bytes"),
    (b"\x83w\x05ab", "atom of 5 bytes but only 2 left"),
    (b"\x83d\x01\x00" + b"a" * 256, "atom of 256 characters"),
    (b"\x83w\x02\xc3\x28", "not valid UTF-8"),
])
def test_refusals_name_the_problem(data, reason):
    with pytest.raises(DecodeError, match=reason) as info:
        decode(data)
    assert 0 <= info.value.offset <= len(data)


def test_error_offset_points_at_the_bad_term():
    data = b"\x83l\x00\x00\x00\x02a\x01R\x00j"
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert info.value.offset == 8


def _bomb(inflated_size):
    """A zlib stream of ``inflated_size`` zero bytes, built without holding them."""
    packer = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [packer.compress(chunk) for _ in range(inflated_size >> 20)]
    return b"".join(parts) + packer.flush()


def test_zip_bomb_declaring_a_small_size_is_stopped_early():
    bomb = _bomb(200 << 20)
    data = b"\x83P\x00\x00\x00\x10" + bomb
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="inflates past its declared 16 bytes"):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * len(data) + (1 << 20)


def test_declared_size_over_the_cap_or_impossible_is_refused_before_inflating():
    small = zlib.compress(b"a\x01")
    with pytest.raises(DecodeError, match="over the 1000-byte limit"):
        decode(b"\x83P\x00\x00\x10\x00" + small, max_inflated_size=1000)
    with pytest.raises(DecodeError, match="more than 10 compressed bytes can hold"):
        decode(b"\x83P\x00\x10\x00\x00" + small)
    with pytest.raises(DecodeError, match="inflates to 2 bytes, not the declared 3"):
        decode(b"\x83P\x00\x00\x00\x03" + small)


def test_compressed_terms_decode_within_the_cap():
    data = encode([7.25] * 5000, compressed=9)
    assert data[1] == 80
    assert decode(data) == [7.25] * 5000
    with pytest.raises(DecodeError, match="limit"):
        decode(data, max_inflated_size=1000)


@pytest.mark.parametrize("data", [
    b"\x83l\xff\xff\xff\xff" + b"a\x01" * 5000,
    b"\x83m\xff\xff\xff\xf0" + bytes(10000),
    b"\x83t\x7f\xff\xff\xff" + b"j" * 10000,
    b"\x83" + b"l\x00\x00\x00\x01" * 5000,
], ids=["list", "binary", "map", "deep-truncated"])
def test_hostile_lengths_allocate_nothing_big(data):
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100 * len(data) + 65536


@pytest.mark.parametrize("body", [
    b"l\x00\x00\x4e\x20" + b"j" * 20000 + b"j",  # 20 000 empty lists
    b"i\x00\x00\x4e\x20" + b"t\x00\x00\x00\x00" * 20000,  # empty maps
    b"l\x00\x00\x00\x01" * 20000 + b"j" * 20001,  # nesting
], ids=["nils", "maps", "deep"])
def test_peak_memory_is_proportional_to_the_input(body):
    data = b"\x83" + body
    tracemalloc.start()
    try:
        term = decode(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert encode(term) == data
    assert peak < 200 * len(data)


DEPTH = 100_000


@pytest.mark.parametrize("opener,closer", [
    (b"l\x00\x00\x00\x01", b"j"),
    (b"h\x01", b""),
], ids=["list", "tuple"])
def test_hundred_thousand_deep_nesting_both_ways(opener, closer):
    data = b"\x83" + opener * DEPTH + b"j" + closer * DEPTH
    term = decode(data)
    assert encode(term) == data
    built = []
    for _ in range(DEPTH):
        built = [built] if opener[0] == 108 else (built,)
    assert encode(built) == data


def test_deep_map_key_is_safe():
    key = b"h\x01" * DEPTH + b"j"
    data = b"\x83t\x00\x00\x00\x02" + key + b"a\x01" + key + b"a\x02"
    with pytest.raises(DecodeError, match="duplicate map key"):
        decode(data)
    single = b"\x83t\x00\x00\x00\x01" + key + b"a\x01"
    assert encode(decode(single)) == single
