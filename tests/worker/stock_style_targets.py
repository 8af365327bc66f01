"""A module written against stock ErlPort's Python API, as its users write them.

It imports only ``erlport``: under erlport-worker that is stock's package
when it is on the path, else the worker's stand-in.
"""
from datetime import date, timedelta

from erlport import erlang
from erlport.erlang import call, set_decoder, set_encoder, set_message_handler
from erlport.erlterms import Atom, ImproperList, List, Map, OpaqueObject

CALLBACKS = Atom(b"stock_side")


def identity(value):
    return value


def stock_values(pid_data):
    """One value of each of stock's types; ``pid_data`` is a pid's term_to_binary minus 131."""
    if isinstance(pid_data, str):
        # The default mode hands over a binary that is valid UTF-8 as str.
        pid_data = pid_data.encode()
    return [Atom(b"ok"), List([1, Atom(b"two")]), Map({Atom(b"k"): List([])}),
            ImproperList([1, 2], Atom(b"tail")), OpaqueObject(pid_data, Atom(b"erlang")),
            OpaqueObject(b"\x01\x02", Atom(b"ruby"))]


def accumulate(count):
    """Ask Erlang ``count`` times, feeding each answer into the next question."""
    total = 0
    for step in range(count):
        _, total = call(CALLBACKS, Atom(b"echo"), [(total, step)])
    return count


def report_messages():
    def handler(message):
        call(CALLBACKS, Atom(b"echo"), [(Atom(b"message"), message)])
    set_message_handler(handler)
    return Atom(b"ok")


def refuse_messages():
    def handler(message):
        raise ValueError(message)
    set_message_handler(handler)
    return Atom(b"ok")


def two_argument_handler():
    set_message_handler(lambda first, second: None)


def call_with_text_module():
    return call("erlang", Atom(b"self"), [])


def caught_call_error():
    """The attributes of the CallError that a failing Erlang call raises."""
    try:
        call(Atom(b"erlang"), Atom(b"error"), [Atom(b"boom")])
    except erlang.CallError as exc:
        return (exc.language, exc.type, exc.value)
    return Atom(b"no_error")


def print_text(chars):
    print(chars.to_string())


def use_dates():
    set_encoder(_encode_dates)
    set_decoder(_decode_dates)
    return Atom(b"ok")


def _is_atom(value, name):
    # Atoms are Atom (bytes) in strict mode and codec.Atom (str) in the default mode.
    return value in (Atom(name), name.decode())


def _encode_dates(value):
    if isinstance(value, date):
        return (Atom(b"date"), (value.year, value.month, value.day))
    if isinstance(value, timedelta):
        return (Atom(b"days"), value.days)
    return value


def _decode_dates(value):
    if type(value) is tuple and len(value) == 2:
        if _is_atom(value[0], b"date"):
            return date(*value[1])
        if _is_atom(value[0], b"days"):
            return timedelta(days=value[1])
    return value
