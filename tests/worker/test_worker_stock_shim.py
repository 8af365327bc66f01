"""The worker's stand-in for stock ErlPort's ``erlport`` package, and which package wins."""
import sys
import textwrap

import pytest

from codec import Atom
from erlport_worker.stock_api import SHIM_PATH

sys.path.append(SHIM_PATH)
import erlport.erlterms as erlterms  # noqa: E402 (the stand-in is on the path only now)
import erlport.erlang as erlang  # noqa: E402
S = erlterms


def test_atoms_are_one_object_per_name_and_checked():
    assert S.Atom(b"ok") is S.Atom(bytes([111, 107])) is S.Atom(S.Atom(b"ok"))
    assert repr(S.Atom(b"ok")) == "Atom(b'ok')" and str(S.Atom(b"ok")) == "b'ok'"
    with pytest.raises(TypeError):
        S.Atom("ok")
    with pytest.raises(ValueError):
        S.Atom(b"x" * 256)


@pytest.mark.parametrize("change", [
    lambda v: v.append(1), lambda v: v.extend([1]), lambda v: v.insert(0, 1),
    lambda v: v.pop(), lambda v: v.sort(), lambda v: v.reverse(), lambda v: v.remove(1),
    lambda v: v.__setitem__(0, 2), lambda v: v.__delitem__(0), lambda v: v.clear(),
    lambda v: v.__iadd__([1]),
])
@pytest.mark.parametrize("make", [lambda: S.List([1, 2]), lambda: S.ImproperList([1, 2], 3)],
                         ids=["List", "ImproperList"])
def test_lists_cannot_change(make, change):
    value = make()
    with pytest.raises(S.MutationError):
        change(value)
    assert list(value) == [1, 2]


@pytest.mark.parametrize("change", [
    lambda m: m.__setitem__(1, 2), lambda m: m.__delitem__(1), lambda m: m.clear(),
    lambda m: m.pop(1), lambda m: m.popitem(), lambda m: m.setdefault(3, 4),
    lambda m: m.update({3: 4}),
])
def test_maps_cannot_change(change):
    value = S.Map({1: 2})
    with pytest.raises(S.MutationError):
        change(value)
    assert value == {1: 2}


def test_values_inside_become_hashable_stock_values():
    value = S.List([[1], {2: [3]}])
    assert type(value[0]) is S.List and type(value[1]) is S.Map
    assert type(value[1][2]) is S.List
    assert {value: 1, S.Map({1: [2]}): 2, S.ImproperList([1], 2): 3}
    assert repr(value) == "List([List([1]), Map({2: List([3])})])"


def test_to_string_reads_code_points():
    assert S.List([72, 0x41F, 33]).to_string() == "H\u041f!"
    with pytest.raises(TypeError):
        S.List([S.Atom(b"a")]).to_string()


def test_improper_lists_check_their_parts():
    value = S.ImproperList([1], S.Atom(b"t"))
    assert value.tail is S.Atom(b"t") and value != S.ImproperList([1], S.Atom(b"u"))
    assert repr(value) == "ImproperList([1], Atom(b't'))"
    for items, tail, error in (([], 1, ValueError), ((1,), 2, TypeError), ([1], [2], TypeError)):
        with pytest.raises(error):
            S.ImproperList(items, tail)
    with pytest.raises(S.MutationError):
        value.tail = 2


def test_opaque_objects_check_their_parts():
    assert S.OpaqueObject(b"d", S.Atom(b"erlang")) == S.OpaqueObject(b"d", S.Atom(b"erlang"))
    with pytest.raises(TypeError):
        S.OpaqueObject("d", S.Atom(b"erlang"))
    with pytest.raises(TypeError):
        S.OpaqueObject(b"d", b"erlang")


def test_call_error_splits_the_error_term():
    error = erlang.CallError((S.Atom(b"erlang"), S.Atom(b"error"), S.Atom(b"badarg"), []))
    assert (error.language, error.type, error.value, error.stacktrace) == (
        S.Atom(b"erlang"), S.Atom(b"error"), S.Atom(b"badarg"), [])
    assert str(error) == "(Atom(b'erlang'), Atom(b'error'), Atom(b'badarg'), [])"
    other = erlang.CallError(S.Atom(b"timeout"))
    assert (other.language, other.value, other.stacktrace) == (None, S.Atom(b"timeout"), [])
    assert issubclass(erlang.CallError, erlang.Error)


STOCK_LOOKALIKE = {
    "__init__.py": "",
    "erlterms.py": """
        class Atom(bytes):
            pass
        class List(list):
            pass
        class Map(dict):
            pass
        class ImproperList(list):
            def __init__(self, items, tail):
                super().__init__(items)
                self.tail = tail
        class OpaqueObject:
            def __init__(self, data, language):
                self.data, self.language = data, language
        """,
    "erlang.py": """
        class CallError(Exception):
            pass
        """,
}


@pytest.mark.parametrize("flags", [["--strict"], []], ids=["strict", "default"])
def test_an_erlport_package_on_the_path_is_used_instead_of_the_stand_in(
        start_worker, tmp_path, flags):
    package = tmp_path / "erlport"
    package.mkdir()
    for name, source in STOCK_LOOKALIKE.items():
        (package / name).write_text(textwrap.dedent(source))
    port = start_worker("--path", str(tmp_path), *flags)
    origin = port.call("worker_targets", "stock_origin", Atom("ok"))
    assert origin[0] == str(package / "erlang.py").encode()
    assert origin[1] == Atom("true")
    expected_kind = str(package / "erlterms.py") if flags else "codec/terms.py"
    assert origin[2].decode().endswith(expected_kind)
