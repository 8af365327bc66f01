"""Fixtures for the worker tests: a worker subprocess per test, always reaped."""
import pytest

from worker_harness import Port


@pytest.fixture
def start_worker():
    """``start_worker(*flags, **options)`` -> Port; every worker is killed at teardown."""
    ports = []

    def start(*flags, **options):
        port = Port(*flags, **options)
        ports.append(port)
        return port

    yield start
    for port in ports:
        port.kill()


@pytest.fixture
def worker(start_worker):
    return start_worker()
