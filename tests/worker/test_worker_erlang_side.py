"""The API for called code, with the test playing Erlang: nested calls, casts, pids, cancel."""
import pytest

import codec
from codec import Atom, BitBinary, Export, Pid, Port, Reference

from worker_harness import C, E, M, R

T = "worker_targets"
JOBS = "erlport_worker.jobs"
PID = Pid(Atom("test@host"), 81, 0, 3)


def wrapped(term):
    """``term`` as stock ErlPort's Erlang side sends it: its ETF bytes, 131 dropped, wrapped."""
    return (Atom("$erlport.opaque"), Atom("erlang"), codec.encode(term, minor_version=1)[1:])


def serve_erlang_side(port, call_id, answer):
    """Play Erlang until the reply to ``call_id`` arrives: answer each Python->Erlang call
    with ``answer(module, function, args, context)`` -> reply frame tail (tag, value)."""
    while True:
        term = port.recv()
        if term[0] == C and len(term) == 6:
            _, py_id, module, function, args, context = term
            tag, value = answer(port, module, function, args, context)
            port.send((tag, py_id, value))
        elif term[0] in (R, E) and term[1] == call_id:
            return term
        else:
            port.side.append(term)


@pytest.mark.parametrize("concurrency", ["8", "1"])
def test_nested_calls_fifty_deep(start_worker, concurrency):
    port = start_worker("--concurrency", concurrency)
    pending = {}

    def answer(port, module, function, args, context):
        # worker_port_tests:nested(D) in Erlang calls back Python nested(D).
        assert (module, function, context) == (Atom("worker_port_tests"), Atom("nested"), Atom("N"))
        inner = port.send_call(T, "nested", args)
        reply = serve_erlang_side(port, inner, answer)
        assert reply[0] == R, reply
        pending[inner] = reply
        return R, reply[2]

    outer = port.send_call(T, "nested", [50])
    assert serve_erlang_side(port, outer, answer) == (R, outer, 50)
    assert len(pending) == 50


def test_self_and_make_ref_run_in_the_erlang_process(worker):
    seen = []

    def answer(port, module, function, args, context):
        seen.append((module, function, args, context))
        return R, PID

    call_id = worker.send_call(T, "my_self", [])
    assert serve_erlang_side(worker, call_id, answer) == (R, call_id, PID)
    call_id = worker.send_call(T, "new_ref", [])
    serve_erlang_side(worker, call_id, answer)
    assert seen == [(Atom("erlang"), Atom("self"), [], Atom("L")),
                    (Atom("erlang"), Atom("make_ref"), [], Atom("L"))]


def test_erlang_errors_raise_erlang_error(worker):
    def answer(port, module, function, args, context):
        return E, (Atom("erlang"), Atom("error"), Atom("boom"), [])

    call_id = worker.send_call(T, "erlang_failure", [])
    assert serve_erlang_side(worker, call_id, answer) == (R, call_id, [Atom("error"), Atom("boom")])


@pytest.mark.parametrize("dest", [PID, wrapped(PID)], ids=["pid", "wrapped"])
def test_received_pids_can_send_and_come_back_as_pids(worker, dest):
    message = (Atom("hello"), 1)
    assert worker.call(T, "send_back", dest, message) == PID
    assert worker.side == [(M, PID, message)]


def test_a_cast_to_a_wrapped_pid_goes_to_the_pid(worker):
    assert worker.call(T, "cast_to", wrapped(PID), 5) == b"cast"
    assert worker.side == [(M, PID, 5)]


@pytest.mark.parametrize("term", [
    PID,
    Reference(Atom("test@host"), 2, (1, 2, 3)),
    Port(Atom("test@host"), 7, 1),
    Export(Atom("lists"), Atom("sum"), 1),
    BitBinary(b"\xa0", 3),
    [PID, (Atom("k"), {b"key": PID})],
], ids=["pid", "reference", "port", "fun", "bitstring", "nested"])
def test_wrapped_values_come_back_raw(worker, term):
    assert worker.call("copy", "copy", wrapped(term)) == term


def test_a_wrapped_pid_inside_a_wrapped_value_stays_as_it_came(worker):
    inner = wrapped(PID)
    assert worker.call(T, "echo", wrapped([inner])) == [inner]


def test_a_wrapped_value_that_is_not_a_term_is_refused_alone(worker):
    junk = (Atom("$erlport.opaque"), Atom("erlang"), b"\xff\x00")
    error = worker.error(T, "echo", junk)
    assert error[1] == Atom("erlport_worker.wire.RefusedOpaque")
    assert b"not an Erlang term" in error[2]
    assert worker.call(T, "add", 1, 2) == 3


def test_cast_to_registered_name(worker):
    assert worker.call(T, "cast_to", b"logger_proc", 5) == b"cast"
    assert worker.side == [(M, Atom("logger_proc"), 5)]


@pytest.mark.parametrize("dest", [PID, wrapped(PID)], ids=["pid", "wrapped"])
def test_progress_names_the_call(worker, dest):
    call_id = worker.send_call(T, "progress", [dest])
    assert worker.reply_to(call_id) == (R, call_id, b"reported")
    assert worker.side == [(M, PID, (Atom("progress"), call_id, 0.5))]


def test_current_job_is_the_erlang_call_id(worker):
    call_id = worker.send_call(T, "job_id", [])
    assert worker.reply_to(call_id) == (R, call_id, call_id)


def test_messages_reach_the_handler_in_order(worker):
    assert worker.call(T, "forward_messages", PID) == b"installed"
    for i in range(20):
        worker.send((M, i))
    received = [worker.recv() for _ in range(20)]
    assert received == [(M, PID, (b"got", i)) for i in range(20)]


def test_a_crashing_message_handler_reports_an_error_without_id(worker):
    assert worker.call(T, "crash_on_messages") == b"installed"
    worker.send((M, b"bad"))
    tag, error = worker.recv()
    assert tag == E
    assert error[:2] == (Atom("python"), Atom("builtins.RuntimeError"))
    assert worker.call(T, "add", 1, 2) == 3


@pytest.mark.parametrize("function", ["spin", "wait_for_cancel"])
@pytest.mark.parametrize("concurrency", ["8", "1"])
def test_cancel_stops_a_running_call(start_worker, function, concurrency):
    port = start_worker("--concurrency", concurrency)
    long_id = port.send_call(T, function, [])
    running = []
    while not running:
        running = port.call(JOBS, "running")
    assert running[0][b"id"] == long_id
    assert running[0][b"function"] == function.encode()
    assert port.call(JOBS, "cancel", long_id) == Atom("true")
    tag, _, error = port.reply_to(long_id)
    assert tag == E
    assert error[1] == Atom("erlport_worker.jobs.JobCancelled")
    assert port.call(JOBS, "running") == []
    assert port.call(T, "add", 1, 2) == 3


def test_cancel_of_an_unknown_call_is_false(worker):
    assert worker.call(JOBS, "cancel", 12345) == Atom("false")
