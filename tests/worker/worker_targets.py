"""Functions that the worker tests (and the Erlang integration tests) call through the worker."""
import os
import subprocess
import sys
import time

from erlport_worker import api

LOOPS = {"iterations": 0}


def echo(value):
    return value


def add(a, b):
    return a + b


def kinds(*values):
    """The builtin type of each argument as the worker delivered it (subclasses count as it)."""
    return [next(c.__name__ for c in type(v).__mro__ if c.__module__ == "builtins")
            for v in values]


def fail(message):
    raise ValueError(message)


def nan():
    return [1.0, float("nan")]


def unencodable():
    return {"ok": object()}


def nothing():
    return None


def greeting():
    return "héllo"


def sleep_then(seconds, value):
    time.sleep(seconds)
    return value


def spin():
    """A plain Python loop that never checks for cancellation."""
    while True:
        LOOPS["iterations"] += 1


def wait_for_cancel():
    api.sleep(120)
    return "not cancelled"


def job_id():
    return api.current_job()


def nested(depth):
    """Recurse through Erlang: ask Erlang to call nested(depth - 1) back, then add one."""
    if depth == 0:
        return 0
    return api.call("worker_port_tests", "nested", [depth - 1]) + 1


def erlang_call(module, function, args):
    return api.call(module, function, args)


def erlang_failure():
    try:
        api.call("erlang", "error", ["boom"])
    except api.ErlangError as exc:
        return [exc.error_class, exc.reason]
    return "no error"


def my_self():
    return api.self()


def new_ref():
    return api.make_ref()


def send_back(pid, message):
    """Cast ``message`` to ``pid`` with the duck-typed ``send``, then return it unchanged."""
    pid.send(message)
    return pid


def progress(dest):
    api.progress(dest, 0.5)
    return "reported"


def cast_to(dest, message):
    api.cast(dest, message)
    return "cast"


def noisy():
    """Write to stdout at every level: print, fd 1, and a child process."""
    print("printed line")
    sys.stdout.flush()
    os.write(1, b"fd one noise\n")
    subprocess.run(["echo", "child noise"], check=True)
    return "quiet"


def forward_messages(pid):
    api.set_message_handler(lambda message: pid.send(("got", message)))
    return "installed"


def crash_on_messages():
    def handler(message):
        raise RuntimeError(f"cannot handle {message!r}")
    api.set_message_handler(handler)
    return "installed"


def blob(size):
    return b"x" * size


def stock_origin(value):
    """Where ``erlport.erlang`` was found, whether the worker filled in its API, and the
    file that defines ``value``'s type."""
    import erlport.erlang
    return [erlport.erlang.__file__.encode(), callable(getattr(erlport.erlang, "call", None)),
            sys.modules[type(value).__module__].__file__.encode()]


def table(size):
    return {"table": b"x" * size}


def ints(count):
    return [1000] * count
