"""The engine and the service type-check: mypy with the project's settings (setup.cfg's [mypy]:
``cerebros`` and ``cerebros_service.py``, every function annotated)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_mypy_passes_on_the_engine_and_the_service():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found" in result.stdout


def test_the_engine_says_it_is_typed():
    assert os.path.isfile(os.path.join(ROOT, "cerebros", "py.typed"))
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        assert "cerebros = py.typed" in f.read()  # packaged: PEP 561
