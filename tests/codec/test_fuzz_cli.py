"""``python -m codec.fuzz``: budgets, the Erlang oracle, targets and findings."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import codec

# Run from a scratch folder yet import this checkout's codec (the targets too).
ROOT = str(Path(codec.__file__).resolve().parent.parent)
PATHS = [ROOT, os.environ.get("PYTHONPATH")]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in PATHS if p)}

# A {packet,4} echo target built on this codec: "good" echoes every term it
# can decode (an empty frame when it cannot); "unchecked" echoes every frame
# without decoding it, as a decoder that validates nothing would.
TARGET = r'''
import struct, sys
import codec

mode = sys.argv[1]
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write

while True:
    header = read(4)
    if len(header) < 4:
        break
    frame = read(struct.unpack(">I", header)[0])
    if mode == "unchecked":
        write(header + frame)
        sys.stdout.buffer.flush()
        continue
    try:
        term = codec.decode_from(frame)[0]
    except codec.DecodeError:
        reply = b""
    else:
        reply = codec.encode(term)
    write(struct.pack(">I", len(reply)) + reply)
    sys.stdout.buffer.flush()
'''


def fuzz(*args, cwd):
    return subprocess.run([sys.executable, "-m", "codec.fuzz", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=240)


def write_target(tmp_path):
    path = tmp_path / "target.py"
    path.write_text(TARGET)
    return path


def table(stdout):
    """{property: (examples, findings)} from the printed table."""
    rows = [line.split() for line in stdout.splitlines()]
    return {row[0]: (int(row[1]), int(row[3])) for row in rows
            if len(row) == 4 and row[1].isdigit()}


def test_an_example_budget_runs_every_property_and_reports_rates(tmp_path):
    result = fuzz("--examples", "60", "--seed", "1", "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "examples/s" in result.stdout
    counts = table(result.stdout)
    assert counts["total"] == (60, 0)
    assert all(counts[name][0] == 20 for name in ("roundtrip", "plain", "mutate"))
    assert not list(tmp_path.glob("*.etf"))


def test_a_time_budget_stops_the_campaign(tmp_path):
    result = fuzz("--seconds", "1", "--seed", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table(result.stdout)["total"][0] > 0


def test_the_erlang_oracle_checks_every_property(tmp_path):
    result = fuzz("--examples", "45", "--seed", "7", "--oracle", "erl", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert table(result.stdout)["total"] == (45, 0)


def test_a_correct_target_passes(tmp_path):
    target = write_target(tmp_path)
    result = fuzz("--examples", "60", "--seed", "3", "--target",
                  f"{sys.executable} {target} good", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = table(result.stdout)
    assert counts["target-echo"][0] == 30 and counts["target-mutate"][0] == 30


def test_a_finding_writes_the_minimal_input_and_exits_non_zero(tmp_path):
    target = write_target(tmp_path)
    out = tmp_path / "findings"
    result = fuzz("--examples", "300", "--seed", "3", "--target",
                  f"{sys.executable} {target} unchecked", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("FINDING in target-mutate: target accepted a frame that the reference refuses"
            in result.stdout)
    minimal = (out / "target-mutate-seed3.etf").read_bytes()
    with pytest.raises(codec.DecodeError):
        codec.decode_from(minimal)
    assert 0 < len(minimal) <= 2, minimal
    assert "reference: " in (out / "target-mutate-seed3.txt").read_text()


def test_a_target_that_cannot_start_a_conversation_is_a_finding(tmp_path):
    result = fuzz("--examples", "10", "--target", f"{sys.executable} -c pass",
                  "--out", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1 and "target exited (status 0)" in result.stdout
