"""Stock ErlPort's value types, as code written for it expects them.

``Atom`` is a ``bytes`` subclass holding the Latin-1 name (one object per
name); ``List``, ``Map`` and ``ImproperList`` are immutable ``list``/``dict``
subclasses that turn plain lists and dicts inside them into their own kind,
so they can be hashed; ``OpaqueObject`` carries another language's value.
The worker's codec writes each of them as the Erlang term it stands for
(see ``codec.stock``).
"""

_MAX_ATOM = 255
_PLAIN_CONTAINERS = frozenset((list, dict))


class MutationError(Exception):
    """An attempt to change an immutable List, Map or ImproperList."""


def _refuse_mutation(self, *args, **kwargs):
    raise MutationError(f"{type(self).__module__}.{type(self).__name__} cannot be changed")


def _make_immutable(cls, methods):
    for name in methods:
        setattr(cls, name, _refuse_mutation)
    return cls


def _frozen(value):
    """``value`` with a plain list or dict made a List or Map."""
    if type(value) is list:
        return List(value)
    if type(value) is dict:
        return Map(value)
    return value


def _all_frozen(values):
    """``values`` as a list, with ``_frozen`` applied where it changes something."""
    values = list(values)
    if _PLAIN_CONTAINERS.isdisjoint(map(type, values)):
        return values
    return [_frozen(value) for value in values]


class Atom(bytes):
    """An Erlang atom: its name as Latin-1 bytes."""

    __slots__ = ()
    _known = {}

    def __new__(cls, name):
        if type(name) is Atom:
            return name
        if not isinstance(name, bytes):
            raise TypeError(f"an atom's name must be bytes, not {type(name).__name__}")
        if len(name) > _MAX_ATOM:
            raise ValueError(f"an atom's name has at most {_MAX_ATOM} bytes, not {len(name)}")
        atom = cls._known.get(name)
        if atom is None:
            atom = cls._known.setdefault(bytes(name), super().__new__(cls, name))
        return atom

    def __repr__(self):
        return f"Atom({bytes.__repr__(self)})"


_LIST_MUTATORS = ("append", "extend", "insert", "pop", "remove", "reverse", "sort",
                  "__setitem__", "__delitem__", "__iadd__", "__imul__", "clear")


class List(list):
    """An immutable Erlang list; ``to_string()`` reads it as character codes."""

    __slots__ = ()

    def __init__(self, items=()):
        super().__init__(_all_frozen(items))

    def to_string(self):
        """The text whose code points are this list's elements (TypeError if they are not)."""
        return "".join(chr(code) for code in self)

    def __hash__(self):
        return hash(tuple(self))

    def __repr__(self):
        return f"List({list.__repr__(self)})"


_make_immutable(List, _LIST_MUTATORS)


class Map(dict):
    """An immutable Erlang map."""

    __slots__ = ()

    def __init__(self, *args, **kwargs):
        pairs = dict(*args, **kwargs)
        if _PLAIN_CONTAINERS.isdisjoint(map(type, pairs)) and \
                _PLAIN_CONTAINERS.isdisjoint(map(type, pairs.values())):
            super().__init__(pairs)
        else:
            super().__init__((_frozen(key), _frozen(value)) for key, value in pairs.items())

    def __hash__(self):
        return hash(frozenset(self.items()))

    def __repr__(self):
        return f"Map({dict.__repr__(self)})"


_make_immutable(Map, ("__setitem__", "__delitem__", "clear", "pop", "popitem",
                      "setdefault", "update", "__ior__"))


class ImproperList(list):
    """An Erlang list whose tail is not ``[]``: the elements, and ``tail``."""

    __slots__ = ("tail",)

    def __init__(self, items, tail):
        if not isinstance(items, list):
            raise TypeError(f"an improper list's elements must be a list, not "
                            f"{type(items).__name__}")
        if not items:
            raise ValueError("an improper list needs at least one element")
        if isinstance(tail, list):
            raise TypeError("an improper list's tail cannot be a list")
        super().__init__(_all_frozen(items))
        object.__setattr__(self, "tail", tail)

    def __setattr__(self, name, value):
        _refuse_mutation(self)

    def __eq__(self, other):
        return (type(other) is type(self) and list.__eq__(self, other)
                and self.tail == other.tail)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((tuple(self), self.tail))

    def __repr__(self):
        return f"ImproperList({list.__repr__(self)}, {self.tail!r})"


_make_immutable(ImproperList, _LIST_MUTATORS)


class OpaqueObject:
    """A value of another language, kept as its ``language`` Atom and its ``data`` bytes.

    Data from Erlang (``language`` ``erlang``) goes back as the term itself.
    Python data is never unpickled here: this worker refuses it on arrival.
    """

    __slots__ = ("data", "language")

    def __init__(self, data, language):
        if type(data) is not bytes:
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if type(language) is not Atom:
            raise TypeError(f"language must be an Atom, not {type(language).__name__}")
        self.data = data
        self.language = language

    def __eq__(self, other):
        return (type(other) is type(self) and self.language == other.language
                and self.data == other.data)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self), self.language, self.data))

    def __repr__(self):
        return f"OpaqueObject({self.data!r}, {self.language!r})"
