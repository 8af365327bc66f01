"""Stock ErlPort's users migrating: the cases of ErlPort's own Python suite, in both modes.

The test plays stock ErlPort's Erlang side: frames made with minor version 1,
pids and other opaque terms wrapped as ``{'$erlport.opaque', erlang, Bytes}``,
'L' calls answered by the owning process. ``stock_style_targets`` is written
against stock's Python API (``erlport.erlang``, ``erlport.erlterms``).
"""
import codec
import pytest
from codec import Atom, BitBinary, Export, ImproperList, Map, Pid, Reference

from test_worker_erlang_side import serve_erlang_side
from worker_harness import C, E, M, P, R

S = "stock_style_targets"
STOCK_API = "erlport.erlang"
OPAQUE = Atom("$erlport.opaque")
PID = Pid(Atom("erl@host"), 81, 0, 3)
REF = Reference(Atom("erl@host"), 3, (1, 2, 3))


def wrapped(term):
    """``term`` as stock's Erlang side sends it: ``{'$erlport.opaque', erlang, Bytes}``."""
    return (OPAQUE, Atom("erlang"), codec.encode(term, minor_version=1)[1:])


def text(value) -> str:
    """A string sent to Erlang: a charlist (strict mode) or a binary (default mode)."""
    return "".join(map(chr, value)) if isinstance(value, list) else bytes(value).decode()


DATA = [
    0, 1, -1, 100000, -100000, 1000000000000, -1000000000000, 2 << 2040, -2 << 2040,
    0.0, 0.5, -0.5, 3.1415926, -3.1415926,
    Atom(""), Atom("test"), Atom("TEST"), Atom("true"), Atom("false"), Atom("nil"),
    [], [0], [1, 2, 3], [[]], [[], [], []], list(range(1, 10001)), list(range(-10, 11)),
    ImproperList((0,), 1), ImproperList((1, 2, 3), 4), ImproperList((Atom("head"),), Atom("tail")),
    (), (0,), (1, 2, 3), ((),), ((), ()), tuple(range(1, 10001)),
    b"", b"test", bytes(range(6)), "héllo".encode(),
    {Atom("a"): [1], b"k": (b"v",)},
]


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_every_data_type_comes_back_as_itself(start_worker, flags):
    port = start_worker(*flags)
    for value in DATA:
        assert port.call(S, "identity", value) == value, value


def test_strict_mode_keeps_undefined_and_default_mode_sends_nil(start_worker):
    assert start_worker("--strict").call(S, "identity", Atom("undefined")) == Atom("undefined")
    assert start_worker().call(S, "identity", Atom("undefined")) == Atom("nil")


def test_strict_mode_hands_called_code_stock_types(start_worker):
    port = start_worker("--strict")
    kinds = port.call("worker_targets", "kinds", b"bin", [104, 105], Atom("ok"), {b"k": 1},
                      ImproperList((1,), 2), Atom("undefined"), Atom("nil"))
    names = ["bytes", "list", "bytes", "dict", "list", "NoneType", "bytes"]
    assert kinds == [list(name.encode()) for name in names]


@pytest.mark.parametrize("term", [PID, REF, Export(Atom("erlang"), Atom("is_atom"), 1),
                                  BitBinary(b"\x40", 2)], ids=repr)
def test_strict_mode_sends_wrapped_terms_back_as_themselves(start_worker, term):
    port = start_worker("--strict")
    assert port.call(S, "identity", wrapped(term)) == term
    assert port.call(S, "identity", [(Atom("pid"), wrapped(term))]) == [(Atom("pid"), term)]


def test_strict_mode_refuses_bad_calls_with_an_error_reply_and_carries_on(start_worker):
    port = start_worker("--strict")
    pickled = (OPAQUE, Atom("python"), b"\x80\x04K\x01.")
    assert port.error(S, "identity", [pickled])[1] == Atom("erlport_worker.wire.RefusedOpaque")
    call_id = port.new_id()
    port.send((C, call_id, Atom(S), Atom("identity"), b"not a list"))
    tag, _, (_, kind, message, _) = port.reply_to(call_id)
    assert (tag, kind) == (E, Atom("builtins.TypeError"))
    assert text(message).startswith("arguments must be a list")
    assert port.call(S, "identity", b"still serving") == b"still serving"


def test_compressed_binaries_stay_binaries(start_worker):
    port = start_worker("--strict", "--compressed=9")
    first, second = b"0" * 200, b"1" * 200
    call_id = port.new_id()
    port.send_raw(codec.encode((C, call_id, Atom("operator"), Atom("add"), [first, second]),
                               minor_version=1, compressed=9))
    assert port.reply_to(call_id) == (R, call_id, first + second)
    assert port.compressed_frames == 1


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_stock_value_types_are_sent_as_what_they_are(start_worker, flags):
    port = start_worker(*flags)
    pid_data = wrapped(PID)[2]
    assert port.call(S, "stock_values", pid_data) == [
        Atom("ok"), [1, Atom("two")], Map({Atom("k"): []}),
        ImproperList((1, 2), Atom("tail")), PID, (OPAQUE, Atom("ruby"), b"\x01\x02")]


def test_erlang_module_functions_are_callable_from_erlang(start_worker):
    port = start_worker("--strict")
    assert port.call(STOCK_API, "cast", wrapped(PID), Atom("test_message")) == Atom("undefined")
    assert port.side == [(M, PID, Atom("test_message"))]


def test_self_is_asked_once_and_make_ref_every_time(start_worker):
    port = start_worker("--strict")
    asked = []

    def answer(port, module, function, args, context):
        asked.append((module, function, args, context))
        return R, wrapped(PID if function == "self" else REF)

    for _ in range(2):
        assert serve_erlang_side(port, port.send_call(STOCK_API, "self", []), answer)[2] == PID
    for _ in range(2):
        assert serve_erlang_side(port, port.send_call(STOCK_API, "make_ref", []),
                                 answer)[2] == REF
    assert asked == [(Atom("erlang"), Atom("self"), [], Atom("L"))] + [
        (Atom("erlang"), Atom("make_ref"), [], Atom("L"))] * 2


def _fail_with(error):
    return lambda port, module, function, args, context: (E, error)


@pytest.mark.parametrize("error, message", [
    ((Atom("erlang"), Atom("error"), Atom("undef"), [(Atom("unknown"), Atom("unknown"), [], [])]),
     "(Atom(b'erlang'), Atom(b'error'), Atom(b'undef'), "
     "List([(Atom(b'unknown'), Atom(b'unknown'), List([]), List([]))]))"),
    ((Atom("python"), Atom("builtins.ImportError"), list(b"No module named 'unknown'"),
      [list(b"  File ...")]),
     "(Atom(b'python'), Atom(b'builtins.ImportError'), List(["),
], ids=["erlang", "python"])
def test_failed_calls_to_erlang_raise_stock_call_error(start_worker, error, message):
    port = start_worker("--strict")
    call_id = port.send_call(STOCK_API, "call", [Atom("unknown"), Atom("unknown"), []])
    tag, _, (language, kind, value, traceback) = serve_erlang_side(port, call_id,
                                                                   _fail_with(error))
    assert (tag, language, kind) == (E, Atom("python"), Atom("erlport.erlang.CallError"))
    assert text(value).startswith(message)
    assert traceback


@pytest.mark.parametrize("flags, expected", [
    (["--strict"], [Atom("erlang"), Atom("error"), Atom("boom")]),
    ([], [Atom("erlang"), Atom("error"), Atom("boom")]),
], ids=["strict", "default"])
def test_call_error_has_stock_attributes(start_worker, flags, expected):
    port = start_worker(*flags)
    call_id = port.send_call(S, "caught_call_error", [])
    reply = serve_erlang_side(port, call_id, _fail_with(
        (Atom("erlang"), Atom("error"), Atom("boom"), [])))
    assert reply == (R, call_id, tuple(expected))


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_call_backs_in_a_loop(start_worker, flags):
    port = start_worker(*flags)
    seen = []

    def echo(port, module, function, args, context):
        seen.append(args[0])
        return R, args[0]

    call_id = port.send_call(S, "accumulate", [5])
    assert serve_erlang_side(port, call_id, echo) == (R, call_id, 5)
    assert seen == [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4)]


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_message_handler_calls_back(start_worker, flags):
    port = start_worker(*flags)
    assert port.call(S, "report_messages") == Atom("ok")
    port.send((M, Atom("test_message")))
    _, call_id, module, function, args, context = port.recv()
    assert (module, function, args, context) == (
        Atom("stock_side"), Atom("echo"), [(Atom("message"), Atom("test_message"))], Atom("N"))
    port.send((R, call_id, args[0]))


@pytest.mark.parametrize("flags, message", [(["--strict"], "b'test_message'"),
                                            ([], "test_message")], ids=["strict", "default"])
def test_failing_message_handler_reports_without_an_id(start_worker, flags, message):
    port = start_worker(*flags)
    assert port.call(S, "refuse_messages") == Atom("ok")
    port.send((M, Atom("test_message")))
    tag, (language, kind, value, traceback) = port.recv()
    assert (tag, language, kind, text(value)) == (
        E, Atom("python"), Atom("builtins.ValueError"), message)
    assert traceback


@pytest.mark.parametrize("function", ["two_argument_handler", "call_with_text_module"])
def test_stock_api_checks_its_arguments(start_worker, function):
    port = start_worker("--strict")
    assert port.error(S, function)[1] == Atom("builtins.ValueError")


@pytest.mark.parametrize("chars", ["HELLO!", "Привет!"])
def test_charlists_have_to_string_in_strict_mode(start_worker, chars):
    port = start_worker("--strict")
    assert port.call(S, "print_text", [ord(c) for c in chars]) == Atom("undefined")
    assert "".join(text(frame[1]) for frame in port.side if frame[0] == P) == chars + "\n"


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_encoder_and_decoder_hooks(start_worker, flags):
    port = start_worker(*flags)
    assert port.call(S, "use_dates") == Atom("ok")
    assert port.call("operator", "add", (Atom("date"), (2013, 1, 31)),
                     (Atom("days"), 1)) == (Atom("date"), (2013, 2, 1))


@pytest.mark.parametrize("flags, kind, message", [
    (["--strict"], "io.UnsupportedOperation", "readline"),
    ([], "builtins.EOFError", "EOF when reading a line"),
], ids=["strict", "default"])
def test_input_fails_with_a_traceback(start_worker, flags, kind, message):
    _, error_kind, value, traceback = start_worker(*flags).error("builtins", "input")
    assert (error_kind, text(value)) == (Atom(kind), message)
    assert traceback
