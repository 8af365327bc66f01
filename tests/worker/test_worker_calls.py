"""Calls from Erlang through pipes: results, mapping modes, errors, ordering, concurrency."""
import time

import pytest

from codec import Atom

from worker_harness import C, E, R

T = "worker_targets"


def test_call_returns_result(worker):
    assert worker.call(T, "add", 1, 2) == 3


def test_arguments_arrive_in_the_plain_mapping(worker):
    kinds = worker.call(T, "kinds", b"bin", Atom("ok"), Atom("true"), Atom("nil"),
                        Atom("undefined"), [1, 2], {b"k": 1}, (1, 2), 1.5)
    assert kinds == [b"str", b"str", b"bool", b"NoneType", b"NoneType", b"list", b"dict",
                     b"tuple", b"float"]


def test_elixir_mode_sends_binaries_and_nil(worker):
    assert worker.call(T, "greeting") == "héllo".encode()
    assert worker.call(T, "nothing") == Atom("nil")


def test_strict_mode_sends_charlists_and_undefined(start_worker):
    port = start_worker("--strict")
    assert port.call(T, "greeting") == [ord(c) for c in "héllo"]
    assert port.call(T, "nothing") == Atom("undefined")
    error = port.error(T, "fail", b"bad")
    # The binary arrived as bytes, so the message is str(b"bad"), as under stock ErlPort.
    assert error[2] == list(b"b'bad'")
    assert all(type(line) is list for line in error[3])


def test_dotted_module_and_function_names(worker):
    assert worker.call("os.path", "join", b"a", b"b") == b"a/b"
    assert worker.call("builtins", "str.upper", b"abc") == b"ABC"


def test_exception_becomes_error_reply_with_innermost_traceback_first(worker):
    error = worker.error(T, "fail", b"bad input")
    assert error[:3] == (Atom("python"), Atom("builtins.ValueError"), b"bad input")
    assert b"raise ValueError(message)" in error[3][0]
    assert all(b"erlport_worker" not in line for line in error[3])
    assert worker.call(T, "add", 2, 2) == 4


@pytest.mark.parametrize("module, function, kind", [
    ("no_such_module_here", "f", "builtins.ModuleNotFoundError"),
    (T, "no_such_function", "builtins.AttributeError"),
])
def test_unknown_targets_are_error_replies(worker, module, function, kind):
    assert worker.error(module, function)[1] == Atom(kind)
    assert worker.call(T, "add", 1, 1) == 2


def test_nan_result_is_an_error_and_the_worker_keeps_serving(worker):
    error = worker.error(T, "nan")
    assert error[1] == Atom("erlport_worker.server.UnencodableResult")
    assert b"nan" in error[2] and b"result[1]" in error[2]
    assert worker.call(T, "echo", 7) == 7


def test_unsupported_result_type_names_the_type(worker):
    error = worker.error(T, "unencodable")
    assert error[1] == Atom("erlport_worker.server.UnencodableResult")
    assert b"object" in error[2]
    assert worker.call(T, "echo", 8) == 8


def test_ten_thousand_pipelined_calls(worker):
    count = 10_000
    payload = b"".join(
        len(frame).to_bytes(4, "big") + frame
        for frame in (__import__("codec").encode((C, i, Atom(T), Atom("add"), [i, 1]),
                                                 minor_version=1)
                      for i in range(count)))
    worker.proc.stdin.write(payload)
    worker.proc.stdin.flush()
    results = {}
    while len(results) < count:
        tag, call_id, value = worker.recv()
        assert tag == R
        results[call_id] = value
    assert results == {i: i + 1 for i in range(count)}


def test_short_call_overtakes_a_long_one(worker):
    # The long call runs until cancelled, so the order cannot depend on timing.
    slow = worker.send_call(T, "wait_for_cancel", [])
    fast = worker.send_call(T, "add", [1, 2])
    assert worker.recv() == (R, fast, 3)
    assert worker.call("erlport_worker.jobs", "cancel", slow) == Atom("true")
    tag, call_id, error = worker.reply_to(slow)
    assert (tag, error[1]) == (E, Atom("erlport_worker.jobs.JobCancelled"))


def test_concurrency_one_runs_calls_in_order(start_worker):
    port = start_worker("--concurrency", "1")
    slow = port.send_call(T, "sleep_then", [0.3, b"slow"])
    fast = port.send_call(T, "add", [1, 2])
    assert port.recv() == (R, slow, b"slow")
    assert port.recv() == (R, fast, 3)


def test_concurrency_bounds_parallel_calls(start_worker):
    port = start_worker("--concurrency", "2")
    start = time.monotonic()
    ids = [port.send_call(T, "sleep_then", [0.5, i]) for i in range(4)]
    for call_id in ids:
        assert port.reply_to(call_id)[0] == R
    # 4 calls of 0.5 s on 2 slots need two rounds; on more slots, one.
    assert time.monotonic() - start >= 1.0


@pytest.mark.parametrize("packet", [1, 2, 4])
def test_packet_sizes(start_worker, packet):
    port = start_worker(packet=packet)
    assert port.call(T, "echo", b"x" * 40) == b"x" * 40


TOO_LARGE = Atom("erlport_worker.framing.FrameTooLarge")


def test_result_too_big_for_the_packet_size_is_an_error(start_worker):
    port = start_worker(packet=1)
    error = port.error(T, "blob", 300)
    assert error[1] == TOO_LARGE
    assert error[2] == (b"the result of worker_targets.blob of at least 300 bytes is over the "
                        b"limit of 255 bytes (maximum frame size, 1-byte length header)")
    assert port.call(T, "echo", 5) == 5


@pytest.mark.parametrize("function, args, size", [
    ("blob", [300_000], b"at least 300000 bytes"),          # told before encoding
    ("ints", [60_000], b"of 300014 bytes"),                  # only the encoding tells
    ("table", [300_000], b"of 300028 bytes"),
])
def test_result_over_the_maximum_frame_size_is_an_error(start_worker, function, args, size):
    port = start_worker("--max-frame-size", "200000")
    error = port.error(T, function, *args)
    assert error[1] == TOO_LARGE
    assert size in error[2] and b"over the limit of 200000 bytes" in error[2]
    assert port.call(T, "echo", 5) == 5


def test_compression_level_applies_to_replies(start_worker):
    port = start_worker("--compressed", "6")
    assert port.call(T, "echo", b"a" * 10_000) == b"a" * 10_000
    assert port.compressed_frames == 1


def test_compressed_frames_from_erlang_are_accepted(worker):
    import codec
    frame = codec.encode((C, 1, Atom(T), Atom("echo"), [b"z" * 5000]), compressed=6)
    assert frame[1] == 80
    worker.send_raw(frame)
    assert worker.recv() == (R, 1, b"z" * 5000)


NOT_ALLOWED = Atom("erlport_worker.allow.NotAllowed")


def test_allowlist_refuses_other_modules(start_worker):
    port = start_worker("--allow", T)
    assert port.call(T, "add", 1, 2) == 3
    error = port.error("os", "getcwd")
    assert error[1] == NOT_ALLOWED
    assert b"'os'" in error[2]
    assert port.call("erlport_worker.jobs", "running") == []


def test_allowlist_is_not_a_path_to_the_modules_an_allowed_module_imports(start_worker, tmp_path):
    """The issue's reproducer: cerebros_service imports os, os.system must stay out of reach."""
    port = start_worker("--allow", "cerebros_service")
    marker = tmp_path / "F"
    error = port.error("cerebros_service", "os.system", f"touch {marker}".encode())
    assert error[1] == NOT_ALLOWED
    assert b"is the module 'os'" in error[2]
    assert not marker.exists()
    assert port.call("cerebros_service", "run_status", b"no-such-run")[b"status"] == b"unknown"


@pytest.mark.parametrize("function", [
    "o.system",                       # import os as o
    "os.system",
    "system",                         # from os import system
    "getcwd",
    "current_directory",              # a foreign function under a local name
    "add.runner",                     # a foreign function hung on a local one
    "service.runner",                 # ... or on an instance
    "add.__globals__",
    "add.__class__",
    "__builtins__",
    "Service.__init__",
    "Service.mro",                    # inherited from type
    "service.__class__.__init__",
    "Service.version.",
    "",
])
def test_allowlist_refuses_paths_out_of_the_allowed_module(start_worker, function):
    port = start_worker("--allow", "allowed_targets")
    port.send((C, 1, Atom("allowed_targets"), Atom(function), [b"echo escaped"]))
    tag, call_id, error = port.recv()
    assert (tag, call_id, error[1]) == (E, 1, NOT_ALLOWED), error
    assert port.call("allowed_targets", "add", 1, 2) == 3


@pytest.mark.parametrize("function, args, result", [
    ("add", [1, 2], 3),
    ("exported_join", [b"a", b"b"], b"a/b"),   # imported, but listed in __all__
    ("Service.version", [], b"1.0"),
    ("service.version", [], b"1.0"),
])
def test_allowlist_serves_what_the_allowed_module_defines_or_exports(start_worker, function,
                                                                       args, result):
    port = start_worker("--allow", "allowed_targets")
    assert port.call("allowed_targets", function, *args) == result


def test_allowlist_refuses_a_module_field_that_reaches_outside(start_worker):
    port = start_worker("--allow", "allowed_targets")
    for module in ("allowed_targets_x", "allowed", "os"):
        port.send((C, 1, Atom(module), Atom("system"), [b"echo escaped"]))
        tag, call_id, error = port.recv()
        assert (tag, error[1]) == (E, NOT_ALLOWED), module


def test_extra_module_path(start_worker, tmp_path):
    (tmp_path / "extra_mod_for_worker.py").write_text("def hello():\n    return 'from path'\n")
    port = start_worker("--path", str(tmp_path))
    assert port.call("extra_mod_for_worker", "hello") == b"from path"


def test_malformed_call_fields_get_an_error_reply(worker):
    worker.send((C, 9, 5, Atom("f"), []))
    tag, call_id, error = worker.recv()
    assert (tag, call_id, error[1]) == (E, 9, Atom("builtins.TypeError"))


def test_arguments_must_be_a_list(worker):
    worker.send((C, 4, Atom(T), Atom("echo"), (1,)))
    tag, call_id, error = worker.recv()
    assert (tag, call_id, error[1]) == (E, 4, Atom("builtins.TypeError"))
    assert b"arguments must be a list" in error[2]


def test_only_the_public_job_functions_are_callable(worker):
    error = worker.error("erlport_worker.jobs", "finish", 1)
    assert error[1] == NOT_ALLOWED
