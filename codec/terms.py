"""Python types for the Erlang terms that have no natural Python equivalent.

Every type here is immutable, hashable where the Erlang term can be a map key,
has a readable repr, and re-encodes to exactly the bytes it was decoded from.

Plain Python covers the rest of the raw layer: int, float, bytes (binaries),
tuple (tuples) and list (proper lists).
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Iterable, Iterator, Mapping, Optional, Tuple


class Atom(str):
    """An Erlang atom. A ``str`` subclass, so it hashes and compares cheaply.

    ``Atom("ok") == "ok"`` is True (as for any str subclass), but the encoder
    writes an Atom as an atom and a plain str as a binary.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"


@dataclass(frozen=True)
class Pid:
    """An Erlang process identifier (NEW_PID_EXT)."""

    node: Atom
    id: int
    serial: int
    creation: int

    def __repr__(self) -> str:
        return f"Pid(<{self.node}.{self.id}.{self.serial}>, creation={self.creation})"


@dataclass(frozen=True)
class Reference:
    """An Erlang reference (NEWER_REFERENCE_EXT); ``ids`` holds 1 to 5 words."""

    node: Atom
    creation: int
    ids: Tuple[int, ...]

    def __repr__(self) -> str:
        words = ".".join(str(i) for i in reversed(self.ids))
        return f"Reference(#Ref<{self.node}.{words}>, creation={self.creation})"


@dataclass(frozen=True)
class Port:
    """An Erlang port (NEW_PORT_EXT, or V4_PORT_EXT when ``id`` needs 64 bits)."""

    node: Atom
    id: int
    creation: int

    def __repr__(self) -> str:
        return f"Port(#Port<{self.node}.{self.id}>, creation={self.creation})"


@dataclass(frozen=True)
class Export:
    """An external fun ``fun Module:Function/Arity`` (EXPORT_EXT)."""

    module: Atom
    function: Atom
    arity: int

    def __repr__(self) -> str:
        return f"Export(fun {self.module}:{self.function}/{self.arity})"


def _random_prime(bits: int) -> int:
    """A random prime of exactly ``bits`` bits (at most 64: Miller-Rabin with these
    witnesses is exact below 3.3e24)."""
    witnesses = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)
    while True:
        n = secrets.randbits(bits) | (1 << (bits - 1)) | 1
        if any(n % w == 0 for w in witnesses):
            continue
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for w in witnesses:
            x = pow(w, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = x * x % n
                if x == n - 1:
                    break
            else:
                break
        else:
            return n


# A fun's hash is its payload read as a number modulo a prime drawn per process: two
# different payloads collide only if the prime divides their difference, which a caller
# who does not know it cannot arrange. Unlike a hash of the bytes, it composes
# (``_residue_append``): a decoded fun's is made from the residues of the funs inside it,
# so hashing nested funs (map keys in funs that are map keys ...) reads each byte once.
_FUN_MODULUS = _random_prime(61)


def _residue_of(data: Any) -> int:
    """The residue of a bytes-like ``data``, read as a big-endian number, modulo the prime."""
    return int.from_bytes(data, "big") % _FUN_MODULUS


def _residue_append(residue: int, tail_residue: int, tail_length: int) -> int:
    """The residue of ``a + b`` from the residue of ``a`` and ``b``'s residue and length."""
    return (residue * pow(256, tail_length, _FUN_MODULUS) + tail_residue) % _FUN_MODULUS


@dataclass(frozen=True, eq=False)
class Fun:
    """A local fun (NEW_FUN_EXT), kept opaque.

    ``payload`` is everything after the tag byte, byte for byte, so the fun
    re-encodes exactly; ``module`` and ``arity`` are parsed out for display.
    """

    module: Atom
    arity: int
    payload: bytes

    @classmethod
    def _decoded(cls, module: Atom, arity: int, size: bytes, source: list, start: int, end: int,
                 inside: list, payload: Optional[bytes] = None) -> "Fun":
        """A Fun as the decoder makes it: its payload is ``size`` then its body, input bytes
        ``start:end``, which are ``source[0][start - source[1]:end - source[1]]``; ``inside``
        holds ``(start, end, Fun)`` of the funs directly inside it.

        The funs inside a fun's free variables get ``payload`` None: the enclosing fun's
        payload holds theirs, so copying each would be quadratic in the nesting depth;
        theirs is copied out on first use. ``source`` (bytes, offset) is one list shared by
        them all, pointed at the outermost fun's payload once that exists. The residue
        (the hash) is also made on first use, from those of the funs ``inside``.
        """
        fun = cls.__new__(cls)
        object.__setattr__(fun, "module", module)
        object.__setattr__(fun, "arity", arity)
        object.__setattr__(fun, "_span", (size, source, start, end, inside))
        if payload is not None:
            object.__setattr__(fun, "payload", payload)
        return fun

    def __getattr__(self, name: str):
        # Only reached for what is made on first use: a decoded fun's payload (see
        # _decoded) and any fun's residue.
        span = self.__dict__.get("_span")
        if name == "_residue":
            if span is None:
                object.__setattr__(self, "_residue", _residue_of(self.payload))
            else:
                self._compose_residues()
            return self.__dict__["_residue"]
        if name != "payload" or span is None:
            raise AttributeError(name)
        size, (data, offset), start, end, _ = span
        payload = size + bytes(data[start - offset:end - offset])
        object.__setattr__(self, "payload", payload)
        return payload

    def _compose_residues(self) -> None:
        """Set the residue of this decoded fun, and of the funs inside it that lack one, each
        from its own bytes and the residues of the funs inside it (no recursion: funs nest
        100 000 deep); then let go of the funs inside, which only the residue needed."""
        todo = [self]
        while todo:
            fun = todo[-1]
            size, source, start, end, inside = fun.__dict__["_span"]
            data, offset = source
            missing = [inner for _, _, inner in inside if "_body_residue" not in inner.__dict__]
            if missing:
                todo.extend(missing)
                continue
            todo.pop()
            body, done = 0, start
            for inner_start, inner_end, inner in inside:
                # The inner fun's tag and size bytes as they were sent, then its body.
                body = _residue_append(body, _residue_of(data[done - offset:inner_start + 5 - offset]),
                                       inner_start + 5 - done)
                body = _residue_append(body, inner.__dict__["_body_residue"], inner_end - inner_start - 5)
                done = inner_end
            body = _residue_append(body, _residue_of(data[done - offset:end - offset]), end - done)
            object.__setattr__(fun, "_body_residue", body)
            object.__setattr__(fun, "_residue", _residue_append(_residue_of(size), body, end - start))
            object.__setattr__(fun, "_span", (size, source, start, end, ()))

    def _size(self) -> int:
        span = self.__dict__.get("_span")
        return len(self.payload) if span is None else 4 + span[3] - span[2]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Fun):
            return NotImplemented
        # The payloads are compared only when everything else, the residue
        # included, says they are equal: then they almost surely are.
        return (self.module == other.module and self.arity == other.arity
                and self._size() == other._size() and self._residue == other._residue
                and self.payload == other.payload)

    def __hash__(self) -> int:
        return hash((self.module, self.arity, self._size(), self._residue))

    def __reduce__(self):
        return (Fun, (self.module, self.arity, self.payload))

    def __repr__(self) -> str:
        return f"Fun(#Fun<{self.module}/{self.arity}>, {self._size()} bytes)"


@dataclass(frozen=True)
class BitBinary:
    """A bitstring whose length is not a whole number of bytes (BIT_BINARY_EXT).

    ``bits`` (1..8) is how many bits of the last byte are used, from the most
    significant bit; the unused low bits are zero.
    """

    data: bytes
    bits: int

    def __repr__(self) -> str:
        return f"BitBinary({self.data!r}, bits={self.bits})"


@dataclass(frozen=True)
class ImproperList:
    """A list whose tail is not ``[]``: ``[a, b | tail]``."""

    items: Tuple[Any, ...]
    tail: Any

    def __repr__(self) -> str:
        inner = ", ".join(repr(i) for i in self.items)
        return f"ImproperList([{inner} | {self.tail!r}])"


@dataclass(frozen=True)
class Opaque:
    """ErlPort's ``{'$erlport.opaque', Language, Data}`` wrapper, kept as is.

    Stock ErlPort wraps pids, references, ports and funs this way; handing the
    value back unchanged gives Erlang the original term.
    """

    language: Atom
    data: bytes

    def __repr__(self) -> str:
        return f"Opaque({self.language}, {len(self.data)} bytes)"


class _Marker:
    """A private tag inside exact keys; equal only to itself."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_FLOAT = _Marker("float")
_COMPOUND = _Marker("compound")
_SCALAR_DIGEST = 16


def exact_key(term: Any) -> Any:
    """Return a hashable value equal for two terms exactly when Erlang's ``=:=`` is.

    Python says ``1 == 1.0 == True``; Erlang says those are three different
    map keys. Tagging floats (and bools, which encode as atoms) keeps them apart.
    Compound terms (tuples, lists, maps, ...) become a structural digest
    computed without recursion, so even a 100 000-deep key is safe to hash.
    ``0.0`` and ``-0.0`` are different keys, as in OTP 27 and later.
    """
    kind = type(term)
    if kind is bytes or kind is Atom or kind is int:
        return term
    if kind is bool:
        return Atom("true" if term else "false")
    if kind is float:
        return (_FLOAT, term.hex())
    if kind is str:
        # A plain str encodes as a binary.
        return term.encode("utf-8")
    if isinstance(term, (tuple, list, Map, dict, ImproperList, Opaque)):
        return (_COMPOUND, _digest(term))
    if isinstance(term, (bytearray, memoryview)):
        return bytes(term)
    return term


def _scalar_bytes(term: Any) -> bytes:
    """A tagged byte string that identifies a non-compound term exactly."""
    if isinstance(term, bool):
        return b"a" + (b"true" if term else b"false")
    if isinstance(term, int):
        return b"i" + term.to_bytes(term.bit_length() // 8 + 1, "big", signed=True)
    if isinstance(term, float):
        return b"f" + term.hex().encode()
    if isinstance(term, Atom) or term is None:
        return b"a" + ("nil" if term is None else term).encode("utf-8", "surrogatepass")
    if isinstance(term, str):
        return b"b" + term.encode("utf-8", "surrogatepass")
    if isinstance(term, (bytes, bytearray, memoryview)):
        return b"b" + bytes(term)
    if isinstance(term, Fun):
        # Its hash's parts, so a fun inside a key is not read again.
        return (b"u" + term._size().to_bytes(8, "big") + term._residue.to_bytes(8, "big")
                + repr((term.module, term.arity)).encode("utf-8", "surrogatepass"))
    if is_dataclass(term):
        term = (type(term).__name__,) + tuple(getattr(term, f.name) for f in fields(term))
    return b"o" + repr(term).encode("utf-8", "surrogatepass")


def _children(term: Any) -> Tuple[bytes, list]:
    """A compound term's kind marker and its children in a canonical order."""
    if isinstance(term, tuple):
        return b"T", list(term)
    if isinstance(term, list):
        return b"L", list(term) + [[]]
    if isinstance(term, ImproperList):
        # [a | [b]] is the proper list [a, b].
        tail = term.tail
        if isinstance(tail, list):
            return b"L", list(term.items) + list(tail) + [[]]
        return b"L", list(term.items) + [tail]
    if isinstance(term, Opaque):
        return b"T", [Atom("$erlport.opaque"), term.language, term.data]
    return b"M", [part for pair in term.items() for part in pair]


def _digest(root: Any) -> bytes:
    """Structural digest of a compound term, bottom-up with an explicit stack.

    A Map keeps its digest: a map key that holds a map that has a map key
    ... is then digested in time linear in its size, not quadratic.
    """
    done: list = []
    todo: list = [(root, None, None)]
    while todo:
        term, marker, map_ = todo.pop()
        if marker is not None:
            count = len(term)
            parts = done[len(done) - count:] if count else []
            del done[len(done) - count:]
            if marker == b"M":
                # Key order must not matter: sort the (key, value) digests.
                pairs = sorted(zip(parts[0::2], parts[1::2]))
                parts = [part for pair in pairs for part in pair]
            done.append(_hash(marker + len(parts).to_bytes(8, "big") + b"".join(parts)))
            if map_ is not None:
                map_._exact_digest = done[-1]
        elif isinstance(term, (tuple, list, Map, dict, ImproperList, Opaque)):
            if isinstance(term, list) and not term:
                done.append(_hash(b"N"))
                continue
            map_ = term if isinstance(term, Map) else None
            if map_ is not None and getattr(map_, "_exact_digest", None) is not None:
                done.append(map_._exact_digest)
                continue
            marker, kids = _children(term)
            todo.append((kids, marker, map_))
            todo.extend((kid, None, None) for kid in reversed(kids))
        else:
            done.append(_hash(_scalar_bytes(term)))
    return done[0]


def _hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_SCALAR_DIGEST).digest()


class Map(Mapping):
    """An Erlang map: keys compared the Erlang way, wire order kept.

    ``Map([(1, a), (1.0, b), (True, c)])`` holds three keys. Lookup with any
    term, including unhashable ones such as lists. Immutable and hashable.
    """

    # _exact_digest (see _digest) is unset until first needed, also in the Maps
    # the C decoder makes.
    __slots__ = ("_entries", "_hash", "_exact_digest")

    def __init__(self, pairs: Iterable[Tuple[Any, Any]] | Mapping = ()) -> None:
        items = pairs.items() if isinstance(pairs, Mapping) else pairs
        entries = {}
        for key, value in items:
            entries[exact_key(key)] = (key, value)
        self._entries = entries
        self._hash = None

    @classmethod
    def from_unique_pairs(cls, pairs: Iterable[Tuple[Any, Any]]) -> "Map":
        """Build a Map, raising KeyError(key) on the first duplicate key."""
        entries = {}
        for key, value in pairs:
            kind = type(key)
            # Inlined exact_key for the kinds that are their own exact key.
            ek = key if kind is Atom or kind is bytes or kind is int else exact_key(key)
            if ek in entries:
                raise KeyError(key)
            entries[ek] = (key, value)
        new = cls.__new__(cls)
        new._entries = entries
        new._hash = None
        return new

    def __getitem__(self, key: Any) -> Any:
        return self._entries[exact_key(key)][1]

    def __contains__(self, key: Any) -> bool:
        return exact_key(key) in self._entries

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _ in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):  # type: ignore[override]
        return list(self._entries.values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Map, dict)):
            return exact_key(self) == exact_key(other)
        return NotImplemented

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(exact_key(self))
        return self._hash

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self._entries.values())
        return f"Map({{{inner}}})"
