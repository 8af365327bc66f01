"""A long-lived Erlang node that answers ETF questions: the codec's reference.

One ``erl -noshell`` process runs a small module compiled at start-up and
talks ``{packet, 4}`` over two private pipes (not stdio, so nothing the VM
prints can corrupt the stream). Each request carries a whole
batch, so thousands of terms cost one round trip:

- ``roundtrip(binaries, options)``: ``term_to_binary(binary_to_term(B), Options)``
  for each ``B``, or ``OracleRefused`` when ``binary_to_term`` rejects it;
- ``generate(count, seed, options)``: ``term_to_binary`` of random terms built
  on the Erlang side (every tag OTP writes, large maps in hash order, funs,
  pids, references and ports local and remote);
- ``evaluate(expression, options)``: ``term_to_binary`` of an Erlang expression
  (used to build the benchmark payloads).

Options are Python values in Erlang's syntax: ``"deterministic"``,
``("minor_version", 1)``, ``("compressed", 6)``.
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import Any, List, Sequence, Union

from .core import decode, encode
from .terms import Atom

_MODULE = "codec_oracle"

_ERLANG_SOURCE = r"""
-module(codec_oracle).
-export([main/1]).

main([In, Out]) ->
    process_flag(trap_exit, true),
    Fd = fun(Atom) -> list_to_integer(atom_to_list(Atom)) end,
    Port = open_port({fd, Fd(In), Fd(Out)}, [{packet, 4}, binary]),
    loop(Port).

loop(Port) ->
    receive
        {Port, {data, Data}} ->
            Reply = try {ok, handle(binary_to_term(Data))}
                    catch Class:Reason -> {failed, format(Class, Reason)}
                    end,
            port_command(Port, term_to_binary(Reply)),
            loop(Port);
        {'EXIT', Port, _} ->
            halt(0)
    end.

format(Class, Reason) ->
    unicode:characters_to_binary(io_lib:format("~p:~p", [Class, Reason])).

handle({roundtrip, Opts, Bins}) ->
    [roundtrip(B, Opts) || B <- Bins];
handle({generate, Seed, Count, Depth, Opts}) ->
    rand:seed(exsss, Seed),
    [term_to_binary(gen(Depth), Opts) || _ <- seq(Count)];
handle({evaluate, Expr, Opts}) ->
    {ok, Tokens, _} = erl_scan:string(unicode:characters_to_list(Expr)),
    {ok, Exprs} = erl_parse:parse_exprs(Tokens),
    {value, Value, _} = erl_eval:exprs(Exprs, []),
    term_to_binary(Value, Opts).

roundtrip(B, Opts) ->
    try binary_to_term(B) of
        T -> {ok, term_to_binary(T, Opts)}
    catch
        error:Reason -> {error, format(error, Reason)}
    end.

seq(0) -> [];
seq(N) -> lists:seq(1, N).

gen(0) -> leaf();
gen(D) ->
    case rand:uniform(10) of
        1 -> list_to_tuple(some(D));
        2 -> some(D);
        3 -> maps:from_list([{gen(D - 1), gen(D - 1)} || _ <- seq(rand:uniform(5) - 1)]);
        4 -> maps:from_list([{key(), leaf()} || _ <- seq(30 + rand:uniform(20))]);
        5 -> [gen(D - 1) | leaf()];
        6 -> [rand:uniform(256) - 1 || _ <- seq(rand:uniform(10))];
        7 -> X = gen(D - 1), fun() -> X end;
        _ -> leaf()
    end.

some(D) -> [gen(D - 1) || _ <- seq(rand:uniform(5) - 1)].

key() ->
    case rand:uniform(5) of
        1 -> rand:uniform(1000) - 500;
        2 -> float(rand:uniform(1000) - 500);
        3 -> atom(8);
        4 -> rand:bytes(rand:uniform(4));
        5 -> {rand:uniform(3), atom(2)}
    end.

far(Tag, Rest) ->
    binary_to_term(<<131, Tag, 119, 6, "n1@far", Rest/binary>>).

leaf() ->
    case rand:uniform(24) of
        1 -> rand:uniform(256) - 1;
        2 -> rand:uniform(1 bsl 32) - (1 bsl 31) - 1;
        3 -> (rand:uniform(1 bsl 64) - (1 bsl 63)) bsl rand:uniform(2100);
        4 -> (rand:uniform() - 0.5) * math:pow(10, rand:uniform(600) - 300);
        5 -> binary_to_term(<<131, 70, 128, 0:56>>);
        6 -> 0.0;
        7 -> atom(8);
        8 -> rand:bytes(rand:uniform(20) - 1);
        9 -> N = rand:uniform(7), <<(rand:bytes(rand:uniform(3) - 1))/binary, 1:N>>;
        10 -> self();
        11 -> make_ref();
        12 -> hd(erlang:ports());
        13 -> fun lists:map/2;
        14 -> far(88, <<(rand:uniform(1 bsl 20)):32, 0:32, (rand:uniform(1 bsl 32) - 1):32>>);
        15 -> binary_to_term(<<131, 90, 0, 3, 119, 6, "n1@far", 7:32,
                               (rand:bytes(12))/binary>>);
        16 -> far(89, <<(rand:uniform(1 bsl 28)):32, 9:32>>);
        17 -> far(120, <<(rand:uniform(1 bsl 60) + (1 bsl 32)):64, 9:32>>);
        18 -> lists:nth(rand:uniform(3), [true, false, nil]);
        19 -> [];
        20 -> list_to_atom([rand:uniform(1000) + 200 || _ <- seq(255)]);
        21 -> [rand:uniform(1 bsl 20) || _ <- seq(rand:uniform(4))];
        22 -> "";
        23 -> {};
        24 -> #{}
    end.

atom(Max) ->
    Alphabet = "abcxyz_AZ09" ++ [233, 252, 937, 10003, 128512],
    list_to_atom([lists:nth(rand:uniform(length(Alphabet)), Alphabet)
                  || _ <- seq(rand:uniform(Max) - 1)]).
"""


class OracleError(RuntimeError):
    """The oracle node failed (not a refusal of one input: that is OracleRefused)."""


class OracleRefused:
    """``binary_to_term`` rejected an input; ``reason`` is Erlang's error."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"OracleRefused({self.reason!r})"


Options = Sequence[Union[str, tuple]]


class ErlOracle:
    """A running Erlang node answering batched term_to_binary/binary_to_term questions."""

    def __init__(self, erl: str = "erl") -> None:
        self._dir = tempfile.mkdtemp(prefix="codec_oracle_")
        source = os.path.join(self._dir, f"{_MODULE}.erl")
        with open(source, "w", encoding="utf-8") as handle:
            handle.write(_ERLANG_SOURCE)
        erlc = os.path.join(os.path.dirname(shutil.which(erl) or erl), "erlc")
        subprocess.run([erlc, "-o", self._dir, source], check=True)
        to_erl_read, self._to_erl = os.pipe()
        self._from_erl, from_erl_write = os.pipe()
        self._process = subprocess.Popen(
            [erl, "-noshell", "-noinput", "-pa", self._dir,
             "-s", _MODULE, "main", str(to_erl_read), str(from_erl_write)],
            pass_fds=(to_erl_read, from_erl_write), stdin=subprocess.DEVNULL)
        os.close(to_erl_read)
        os.close(from_erl_write)

    def roundtrip(self, binaries: Sequence[bytes], options: Options = ()) -> List[Any]:
        """For each binary: term_to_binary(binary_to_term(B), options), or OracleRefused."""
        replies = self._call((Atom("roundtrip"), _options(options), [bytes(b) for b in binaries]))
        results = []
        for status, value in replies:
            results.append(value if status == "ok" else OracleRefused(value.decode()))
        return results

    def generate(self, count: int, seed: int, options: Options = (), depth: int = 4) -> List[bytes]:
        """term_to_binary(T, options) of ``count`` random Erlang-built terms nested ``depth`` deep."""
        return self._call((Atom("generate"), seed, count, depth, _options(options)))

    def evaluate(self, expression: str, options: Options = ()) -> bytes:
        """term_to_binary(Value, options) of an Erlang expression such as ``"{a, 1}."``."""
        return self._call((Atom("evaluate"), expression, _options(options)))

    def _call(self, request: Any) -> Any:
        payload = encode(request)
        try:
            os.write(self._to_erl, struct.pack(">I", len(payload)))
            _write_all(self._to_erl, payload)
            size = struct.unpack(">I", self._read(4))[0]
            status, value = decode(self._read(size))
        except OSError as exc:
            raise OracleError(f"erl oracle is gone: {exc}") from None
        if status != "ok":
            raise OracleError(f"erl oracle failed: {value.decode()}")
        return value

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self._from_erl, min(size, 1 << 20))
            if not chunk:
                raise OracleError(f"erl oracle exited (status {self._process.poll()})")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Stop the node and remove its compiled module."""
        os.close(self._to_erl)
        if self._process.poll() is None:
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        os.close(self._from_erl)
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "ErlOracle":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _options(options: Options) -> list:
    """Python spellings of term_to_binary options as Erlang terms."""
    return [Atom(o) if isinstance(o, str) else (Atom(o[0]),) + tuple(o[1:]) for o in options]
