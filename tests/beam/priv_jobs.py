"""Python functions that the BEAM-side tests call through the worker."""
import math
import os
import sys
import time


def echo(value):
    return value


def getpid():
    return os.getpid()


def describe(value):
    """The Python type name of `value` and its text, to check how BEAM terms arrive."""
    return [type(value).__name__, str(value)]


def make_atom(text):
    from codec.terms import Atom

    return Atom(text)


def hold(pid, seconds):
    """Tells `pid` that it has started, then sleeps for `seconds`."""
    pid.send("started")
    time.sleep(seconds)
    return "held"


def burn(iterations):
    """A fixed amount of pure-Python CPU work (it holds the GIL); names the process that did it."""
    for _ in range(iterations):
        pass
    return os.getpid()


def fail(message):
    raise ValueError(message)


def not_a_number():
    return math.nan


def say(text):
    print(text)
    sys.stdout.flush()
    return len(text)


def c_level_output():
    """Writes below sys.stdout, as C extensions and child processes do."""
    os.write(1, b"written to fd 1 by C-level code\n")
    os.system("echo written by a child process")
    return "survived"


def send_to(pid, message):
    pid.send(message)
    return "sent"


def stock_opaque(data):
    """An Erlang term wrapped as stock ErlPort's Python side returns one."""
    from codec.terms import Atom

    return (Atom("$erlport.opaque"), Atom("erlang"), data)


def call_erlang(module, function, args):
    from erlport_worker import api

    return api.call(module, function, args)


def owner():
    """The pid of the Erlang process that owns this worker (a call run inside it)."""
    from erlport_worker import api

    return api.self()


def cancellable(seconds, pid):
    """Sleeps in small steps for `seconds`; tells `pid` whether it finished or was cancelled."""
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.01)
    except BaseException:
        # The worker cancels a call by raising inside its thread.
        pid.send("cancelled")
        raise
    pid.send("finished")
    return "finished"
