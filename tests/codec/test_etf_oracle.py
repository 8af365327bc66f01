"""Exactness against a live Erlang node (the session's ``erl_oracle``)."""
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from codec import decode, encode
from codec.erl_oracle import OracleRefused
from codec.strategies import terms

# term_to_binary option lists and the same options for codec.encode.
OPTION_SETS = [
    ([("minor_version", 1)], {"minor_version": 1}),
    ([("minor_version", 2)], {"minor_version": 2}),
    (["deterministic", ("minor_version", 1)], {"deterministic": True, "minor_version": 1}),
    (["deterministic", ("minor_version", 2)], {"deterministic": True, "minor_version": 2}),
    (["compressed", ("minor_version", 2)], {"compressed": True, "minor_version": 2}),
    ([("compressed", 1), ("minor_version", 1)], {"compressed": 1, "minor_version": 1}),
    ([("compressed", 9), "deterministic", ("minor_version", 2)],
     {"compressed": 9, "deterministic": True, "minor_version": 2}),
    ([("compressed", 0), ("minor_version", 2)], {"compressed": 0, "minor_version": 2}),
]


@pytest.mark.parametrize("erl_options,options", OPTION_SETS, ids=[str(o[0]) for o in OPTION_SETS])
def test_reencoding_erlang_terms_gives_the_same_bytes(erl_oracle, erl_options, options):
    binaries = erl_oracle.generate(400, seed=len(str(erl_options)), options=erl_options)
    mismatches = [b for b in binaries if encode(decode(b), **options) != b]
    assert mismatches == []


@pytest.mark.parametrize("minor_version", [1, 2])
# Batches of ten modest terms: one round trip each, and small enough for
# Hypothesis to draw without discarding. No shrinking: the assertion already
# lists each term Erlang encoded differently.
@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.data_too_large, HealthCheck.too_slow])
@given(data=st.data())
def test_erlang_agrees_with_our_deterministic_encoding(erl_oracle, minor_version, data):
    batch = data.draw(st.lists(terms(minor_version=minor_version, max_leaves=10),
                               min_size=10, max_size=10))
    ours = [encode(t, deterministic=True, minor_version=minor_version) for t in batch]
    theirs = erl_oracle.roundtrip(ours, ["deterministic", ("minor_version", minor_version)])
    assert [(t, o, e) for t, o, e in zip(batch, ours, theirs) if o != e] == []


def test_erlang_refuses_what_we_refuse_on_known_traps(erl_oracle):
    refused = [
        b"\x83F\x7f\xf8\x00\x00\x00\x00\x00\x00",  # NaN
        b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02",  # duplicate key
        b"\x83R\x00",  # ATOM_CACHE_REF
        b"\x83D\x00",  # distribution header
        b"\x83l\x00\x00\x00\x05a\x01j",  # truncated list
    ]
    assert all(isinstance(r, OracleRefused) for r in erl_oracle.roundtrip(refused))
