"""``python -m codec.fuzz``: a fuzzing campaign against this codec, or another ETF codec.

Hypothesis draws and shrinks the ``roundtrip``, ``plain`` and ``mutate`` properties, checked
against this codec, a live ``erl`` (``--oracle erl``) or another implementation
(``--target CMD``). The properties and the target protocol are in docs/codec.md.
"""
from __future__ import annotations

import argparse
import os
import select
import shlex
import struct
import subprocess
import sys
import time
import zlib

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import plain
from .core import decode, decode_from, encode
from .erl_oracle import ErlOracle, OracleRefused
from .errors import DecodeError
from .plain_strategies import plain_values, same_plain
from .strategies import terms
from .terms import Fun, ImproperList, Map, exact_key

_CHUNK = 50
_MASKS = [1, 2, 4, 8, 16, 32, 64, 128, 255]
_WORDS = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF]
_DETERMINISTIC = {"deterministic": True, "minor_version": 2}
# The oracle node's own name. Erlang treats pids, ports and references of its
# own node as local ones, with their own limits (a nonode@nohost pid of
# creation 0 needs an id below 2^15) and their own order (serial before id),
# which no codec can know; frames naming it are not compared with Erlang.
_ORACLE_NODE = b"nonode@nohost"
_INFLATE_LIMIT = 1 << 20


class Finding(Exception):
    """A property failed; ``frame`` is the offending input when it has bytes."""

    def __init__(self, summary: str, frame: bytes | None = None, detail: str = "") -> None:
        super().__init__(summary)
        self.summary = summary
        self.frame = frame
        self.detail = detail


def mutations(frame):
    """Every truncation of ``frame``, then every byte XORed with 1, 2, 4, ..., 128 and 255:
    the exhaustive mutants of OTP's own binary_to_term tests."""
    for cut in range(len(frame)):
        yield frame[:cut]
    for index in range(len(frame)):
        for mask in _MASKS:
            mutated = bytearray(frame)
            mutated[index] ^= mask
            yield bytes(mutated)


def main(argv=None) -> int:
    args = _parse(argv)
    oracle = _start_oracle(args.oracle)
    target = Target(args.target, args.reply_timeout) if args.target else None
    try:
        properties = _properties(oracle, target, args.seed)
        return _campaign(properties, args)
    finally:
        if target is not None:
            target.close()
        if oracle is not None:
            oracle.close()


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m codec.fuzz",
        description="Fuzz the ETF codec (or, with --target, another ETF implementation).")
    parser.add_argument("--seconds", type=float, help="time budget (default 10 s "
                        "unless --examples is given)")
    parser.add_argument("--examples", type=int, help="example budget, over all properties")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    parser.add_argument("--oracle", choices=["erl"], help="check every frame against a live "
                        "Erlang node (needs erl on PATH)")
    parser.add_argument("--target", metavar="CMD", help="fuzz this command instead: it echoes "
                        "{packet,4}-framed terms on stdin/stdout, an empty frame = refused")
    parser.add_argument("--reply-timeout", type=float, default=10.0,
                        help="seconds the target may take per frame (default 10)")
    parser.add_argument("--out", default="fuzz-findings", help="where minimal failing inputs "
                        "are written (default fuzz-findings/)")
    args = parser.parse_args(argv)
    if args.seconds is None and args.examples is None:
        args.seconds = 10.0
    return args


def _start_oracle(kind):
    if kind is None:
        return None
    try:
        return ErlOracle()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(f"--oracle erl needs erl and erlc on PATH: {exc}") from None


def _campaign(properties, args) -> int:
    """Run the properties in turns of a few examples until the budget is spent."""
    deadline = None if args.seconds is None else time.monotonic() + args.seconds
    left = args.examples
    stats = {name: [0, 0.0] for name, _, _ in properties}
    # An example budget is shared evenly: each property gets its turn.
    per_turn = _CHUNK if left is None else max(1, min(_CHUNK, -(-left // len(properties))))
    turn = 0
    finding = None
    while finding is None and (left is None or left > 0) and (
            deadline is None or time.monotonic() < deadline):
        name, strategy, check = properties[turn % len(properties)]
        count = per_turn if left is None else min(per_turn, left)
        started = time.monotonic()
        ran, finding = _run_chunk(strategy, check, count, args.seed * 1_000_003 + turn)
        stats[name][0] += ran
        stats[name][1] += time.monotonic() - started
        if left is not None:
            left -= ran
        turn += 1
        if finding is not None:
            finding_name = name
    _print_stats(stats, finding_name if finding is not None else None)
    if finding is None:
        return 0
    _report(finding_name, finding, args)
    return 1


def _run_chunk(strategy, check, count, seed):
    """Run ``check`` on ``count`` drawn examples; return (examples run, minimal Finding or None)."""
    ran = 0

    @settings(max_examples=count, database=None, deadline=None, derandomize=False,
              phases=(Phase.generate, Phase.shrink), suppress_health_check=list(HealthCheck),
              verbosity=Verbosity.quiet, report_multiple_bugs=False, print_blob=False)
    @hypothesis_seed(seed)
    @given(strategy)
    def run(example):
        nonlocal ran
        ran += 1
        check(example)

    try:
        run()
    except Exception as exc:
        return ran, _finding_in(exc)
    return ran, None


def _finding_in(exc):
    """The Finding that Hypothesis raised, possibly inside a group (a flaky failure)."""
    if isinstance(exc, Finding):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if isinstance(inner, Finding):
            return inner
    raise exc


def _print_stats(stats, failed):
    """One line per property, then the total; ``failed`` names the property that failed."""
    rows = [(name, count, seconds, int(name == failed)) for name, (count, seconds) in stats.items()]
    rows.append(("total", sum(r[1] for r in rows), sum(r[2] for r in rows), int(bool(failed))))
    print(f"{'property':<16}{'examples':>10}{'examples/s':>12}{'findings':>10}")
    for name, count, seconds, found in rows:
        rate = count / seconds if seconds else 0.0
        print(f"{name:<16}{count:>10}{rate:>12.1f}{found:>10}")


def _report(name, finding, args):
    """Print the finding and write its minimal input (and a description) to ``--out``."""
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{name}-seed{args.seed}")
    text = f"property {name}: {finding.summary}\n{finding.detail}".rstrip() + "\n"
    print(f"\nFINDING in {name}: {finding.summary}")
    if finding.frame is not None:
        with open(stem + ".etf", "wb") as handle:
            handle.write(finding.frame)
        text += f"minimal input ({len(finding.frame)} bytes): {finding.frame.hex(' ')}\n"
        print(f"minimal input ({len(finding.frame)} bytes) written to {stem}.etf:")
        print(f"  {finding.frame.hex(' ')}")
    with open(stem + ".txt", "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"description written to {stem}.txt")


def _properties(oracle, target, seed):
    """(name, strategy, check) for each property this campaign runs."""
    def options(minor_versions):
        return st.fixed_dictionaries({
            "minor_version": st.sampled_from(minor_versions),
            "compressed": st.sampled_from([False, False, True, 1, 9]),
            "deterministic": st.just(True),
        })
    # Funs carry atoms already encoded, so a term is drawn for one minor version.
    cases = st.one_of([st.tuples(terms(minor_version=mv), options([mv])) for mv in (1, 2)])
    plain_cases = st.one_of([st.tuples(plain_values(mv), options([mv])) for mv in (1, 2)])
    frames = cases.map(lambda case: encode(case[0], **case[1]))
    if oracle is not None:
        corpus = oracle.generate(300, seed=seed)
        frames = st.one_of(frames, st.sampled_from(corpus))
    mutants = _mutants(frames)
    checks = Checks(oracle, target)
    if target is not None:
        return [("target-echo", cases, checks.target_echo),
                ("target-mutate", mutants, checks.target_mutant)]
    return [("roundtrip", cases, checks.roundtrip),
            ("plain", plain_cases, checks.plain),
            ("mutate", mutants, checks.mutant)]


@st.composite
def _mutants(draw, frames):
    """A valid frame damaged one to three times, the ways decoders usually break."""
    frame = bytearray(draw(frames))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(frame) - 1, 0)))
        how = draw(st.sampled_from(["cut", "flip", "insert", "delete", "word", "repeat"]))
        if how == "cut":
            del frame[at:]
        elif how == "flip" and frame:
            frame[at] ^= draw(st.sampled_from(_MASKS))
        elif how == "insert":
            frame.insert(at, draw(st.integers(0, 255)))
        elif how == "delete":
            del frame[at:at + 1]
        elif how == "word":
            frame[at:at + 4] = struct.pack(">I", draw(st.sampled_from(_WORDS)))
        elif how == "repeat":
            frame[at:at] = frame[at:at + draw(st.integers(1, 16))]
    return bytes(frame)


class Checks:
    """The property checks; each raises ``Finding`` when its property fails."""

    def __init__(self, oracle, target):
        self.oracle = oracle
        self.target = target

    def roundtrip(self, case):
        term, options = case
        frame = _guard(lambda: encode(term, **options), None, "encode")
        back = _guard(lambda: decode(frame), frame, "decode")
        if exact_key(back) != exact_key(term):
            raise Finding("decoding gave a different term", frame, f"sent {term!r}\ngot {back!r}")
        again = _guard(lambda: encode(back, **options), frame, "re-encode")
        if again != frame:
            raise Finding("re-encoding gave different bytes", frame, f"again: {again.hex(' ')}")
        self._erlang_keeps(frame, options)

    def plain(self, case):
        value, options = case
        frame = _guard(lambda: plain.encode(value, **options), None, "plain.encode")
        back = _guard(lambda: plain.decode(frame), frame, "plain.decode")
        if not same_plain(back, value):
            raise Finding("plain round trip changed the value", frame,
                          f"sent {value!r}\ngot {back!r}")
        self._erlang_keeps(frame, options)

    def mutant(self, frame):
        ours = _decode_outcome(frame)
        try:
            plain.decode(frame)
            plain_ok = True
        except DecodeError:
            plain_ok = False
        except Exception as exc:
            raise Finding(f"plain.decode raised {type(exc).__name__} instead of DecodeError: "
                          f"{exc}", frame) from None
        if plain_ok and ours[0] == "refused":
            raise Finding(f"plain.decode accepted a frame decode refuses ({ours[1]})", frame)
        if ours[0] == "ok":
            again = _guard(lambda: encode(ours[1], **_DETERMINISTIC), frame, "re-encode")
            if exact_key(_guard(lambda: decode(again), frame, "decode")) != exact_key(ours[1]):
                raise Finding("a decoded mutant did not survive re-encoding", frame)
        if self._erlang_compares(frame):
            front = _decode_outcome(frame, whole=False)
            theirs = self._erlang_outcome(frame)
            if front[0] != theirs[0] and not _refused_on_purpose(front):
                raise Finding(f"Erlang {_verb(theirs)} a frame that codec.decode_from "
                              f"{_verb(front)}", frame,
                              f"ours: {front[1]!r}\nErlang: {theirs[1]!r}")
            # A fun keeps its bytes, atoms included, while Erlang rewrites its
            # atoms for the minor version: compare bytes only for fun-free terms.
            if front[0] == "refused" or holds(front[1], Fun):
                return
            mine = _guard(lambda: encode(front[1], **_DETERMINISTIC), frame, "re-encode")
            if mine != theirs[1]:
                raise Finding("Erlang decoded the frame to a different term", frame,
                              f"ours: {front[1]!r}\nErlang re-encoded: {theirs[1].hex(' ')}")

    def target_echo(self, case):
        term, options = case
        frame = encode(term, **options)
        reply = self.target.echo(frame)
        if reply is None:
            raise Finding("target refused a valid term", frame, f"term: {term!r}")
        back = _guard(lambda: decode(reply), frame, "decode of the target's reply")
        if exact_key(back) != exact_key(term):
            raise Finding("target echoed a different term", frame,
                          f"sent {term!r}\ngot {back!r}\nreply: {reply.hex(' ')}")

    def target_mutant(self, frame):
        if self._erlang_compares(frame):
            reference = self._erlang_outcome(frame)
            if reference[0] == "ok":
                reference = ("ok", decode(reference[1]))
        else:
            reference = _decode_outcome(frame, whole=False)
        reply = self.target.echo(frame)
        if (reply is None) != (reference[0] == "refused"):
            target_verb = "refused" if reply is None else "accepted"
            raise Finding(f"target {target_verb} a frame that the reference "
                          f"{_verb(reference)}", frame, f"reference: {reference[1]!r}")
        if reply is not None:
            back = _guard(lambda: decode(reply), frame, "decode of the target's reply")
            if exact_key(back) != exact_key(reference[1]):
                raise Finding("target decoded the frame to a different term", frame,
                              f"reference: {reference[1]!r}\ntarget: {back!r}")

    def _erlang_keeps(self, frame, options):
        """Erlang must decode our frame and re-encode it to the very same bytes."""
        if not self._erlang_compares(frame):
            return
        erl_options = ["deterministic", ("minor_version", options["minor_version"])]
        if options["compressed"] is not False:
            erl_options.append(("compressed", 6 if options["compressed"] is True
                                else options["compressed"]))
        theirs = self._erlang_outcome(frame, erl_options)
        if theirs != ("ok", frame):
            raise Finding("Erlang re-encodes our frame differently", frame,
                          f"Erlang: {theirs[1]!r}")

    def _erlang_compares(self, frame) -> bool:
        """Whether Erlang's answer on ``frame`` is comparable to ours (see _ORACLE_NODE)."""
        if self.oracle is None:
            return False
        if frame[1:2] == b"P":
            try:
                frame = zlib.decompressobj().decompress(frame[6:], _INFLATE_LIMIT)
            except zlib.error:
                return True
        return _ORACLE_NODE not in frame

    def _erlang_outcome(self, frame, erl_options=("deterministic", ("minor_version", 2))):
        """('ok', Erlang's re-encoding of the frame) or ('refused', Erlang's reason)."""
        [theirs] = self.oracle.roundtrip([frame], list(erl_options))
        if isinstance(theirs, OracleRefused):
            return "refused", theirs.reason
        return "ok", theirs


def _decode_outcome(frame, whole=True):
    """('ok', term) or ('refused', reason); anything but DecodeError is a finding.

    ``whole=False`` reads the term at the front and ignores trailing bytes,
    as Erlang's ``binary_to_term/1`` does.
    """
    try:
        return "ok", decode(frame) if whole else decode_from(frame)[0]
    except DecodeError as exc:
        return "refused", str(exc)
    except Exception as exc:
        raise Finding(f"decode raised {type(exc).__name__} instead of DecodeError: {exc}",
                      frame) from None


def _refused_on_purpose(outcome) -> bool:
    """Whether we refused a frame that OTP 25 accepts by a deliberate choice.

    OTP decodes its internal atom-table references (tags 73-76) into atoms of
    its own atom table; no other process can, so the codec refuses them.
    """
    return outcome[0] == "refused" and "internal tag" in outcome[1]


def holds(term, kind) -> bool:
    """Whether ``term`` holds an instance of ``kind`` anywhere inside it (itself included)."""
    todo = [term]
    while todo:
        item = todo.pop()
        if isinstance(item, kind):
            return True
        if isinstance(item, (list, tuple)):
            todo.extend(item)
        elif isinstance(item, Map):
            todo.extend(part for pair in item.items() for part in pair)
        elif isinstance(item, ImproperList):
            todo.extend(item.items)
            todo.append(item.tail)
    return False


def _guard(action, frame, what):
    """Run ``action``; any exception from it is a finding about ``what``."""
    try:
        return action()
    except Exception as exc:
        raise Finding(f"{what} raised {type(exc).__name__}: {exc}", frame) from None


def _verb(outcome):
    return "accepts" if outcome[0] == "ok" else "refuses"


class Target:
    """Another ETF implementation behind a {packet,4} echo command."""

    def __init__(self, command: str, timeout: float) -> None:
        self.argv = shlex.split(command)
        self.timeout = timeout
        self.process = None

    def echo(self, frame: bytes):
        """The target's reply to ``frame``: bytes, or None if it refused the frame."""
        if self.process is None:
            self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, bufsize=0)
        try:
            self.process.stdin.write(struct.pack(">I", len(frame)) + frame)
            size = struct.unpack(">I", self._read(4, frame))[0]
            reply = self._read(size, frame)
        except BrokenPipeError:
            raise self._gone(frame) from None
        return reply if size else None

    def _read(self, size, frame):
        chunks = []
        while size:
            ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
            if not ready:
                self.close()
                raise Finding(f"target gave no reply within {self.timeout} s", frame)
            chunk = os.read(self.process.stdout.fileno(), size)
            if not chunk:
                raise self._gone(frame)
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def _gone(self, frame):
        status = self.close()
        return Finding(f"target exited (status {status}) on this input", frame)

    def close(self):
        """Stop the target (it is restarted on the next frame); return its exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        process.stdin.close()
        try:
            return process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()
        finally:
            process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
