"""One Erlang oracle node shared by every codec test in the session."""
import pytest

from codec.erl_oracle import ErlOracle


@pytest.fixture(scope="session")
def erl_oracle():
    """A running ``codec.erl_oracle.ErlOracle`` (needs ``erl`` on PATH)."""
    oracle = ErlOracle()
    yield oracle
    oracle.close()
