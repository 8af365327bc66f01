"""The worker's command line: its own flags plus the exact command line stock ErlPort passes.

Stock ErlPort treats the worker as a Python interpreter. It first runs
``<python> -V`` and expects CPython's answer, then starts
``<python> -u -m erlport.cli --packet=N --use_stdio|--nouse_stdio --compressed=L
--buffer_size=S``. Both forms are accepted by one parser, so own flags can be
mixed in (stock ErlPort keeps extra words of its ``python`` option, e.g.
``{python, "erlport-worker --strict"}``).
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
from dataclasses import dataclass, field
from typing import List, Optional

from .allow import check_module_name
from .framing import DEFAULT_BUFFER_SIZE, DEFAULT_MAX_FRAME_SIZE, DEFAULT_SPIN_SECONDS

DEFAULT_CONCURRENCY = 8
STOCK_MODULE = "erlport.cli"


@dataclass
class Options:
    """Everything the worker needs to know to start serving."""

    packet: int = 4
    use_stdio: bool = True
    compressed: int = 0
    buffer_size: int = DEFAULT_BUFFER_SIZE
    strings: str = "binary"
    none: str = "nil"
    strict: bool = False
    paths: List[str] = field(default_factory=list)
    allow: Optional[List[str]] = None
    concurrency: int = DEFAULT_CONCURRENCY
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    spin_seconds: float = DEFAULT_SPIN_SECONDS
    log_level: str = "WARNING"


class _Version(argparse.Action):
    """``-V``: answer exactly as CPython does (stock ErlPort parses it)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        sys.stdout.write(f"Python {platform.python_version()}\n")
        sys.stdout.flush()
        parser.exit(0)


def _at_least(low: int):
    """An argparse type: an integer no smaller than ``low``."""
    def parse(text: str) -> int:
        value = _integer(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value
    return parse


_positive = _at_least(1)
_non_negative = _at_least(0)


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def _module_name(text: str) -> str:
    try:
        return check_module_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _level(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= 9:
        raise argparse.ArgumentTypeError(f"compression level must be 0..9, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="erlport-worker",
        description="Serve the ErlPort protocol to an Erlang/Elixir port.",
        allow_abbrev=False)
    p.add_argument("-V", "--version", action=_Version, help="print 'Python X.Y.Z' and exit")
    p.add_argument("-u", dest="unbuffered", action="store_true",
                   help="accepted for stock ErlPort; the worker never buffers the protocol")
    p.add_argument("-m", dest="module", metavar="MODULE",
                   help=f"accepted for stock ErlPort; must be {STOCK_MODULE}")
    p.add_argument("--packet", type=int, choices=(1, 2, 4), default=4,
                   help="length header size of {packet,N} (default 4)")
    stdio = p.add_mutually_exclusive_group()
    stdio.add_argument("--use-stdio", "--use_stdio", dest="use_stdio", action="store_true",
                       default=True, help="protocol on fds 0/1 (default)")
    stdio.add_argument("--nouse-stdio", "--nouse_stdio", dest="use_stdio",
                       action="store_false", help="protocol on fds 3/4")
    p.add_argument("--compressed", type=_level, default=0, metavar="LEVEL",
                   help="zlib level 0..9 for frames sent to Erlang (default 0)")
    p.add_argument("--buffer-size", "--buffer_size", type=_positive,
                   default=DEFAULT_BUFFER_SIZE, metavar="BYTES",
                   help=f"read buffer size (default {DEFAULT_BUFFER_SIZE})")
    p.add_argument("--strings", choices=("binary", "charlist"), default=None,
                   help="how Python str is sent (default binary)")
    p.add_argument("--none", choices=("nil", "undefined"), default=None,
                   help="which atom Python None is sent as (default nil)")
    p.add_argument("--strict", action="store_true",
                   help="stock ErlPort's mapping both ways: binaries as bytes, str as "
                        "charlists, None as undefined, stock's value types")
    p.add_argument("--path", action="append", default=[], metavar="DIR",
                   help="prepend DIR to the module search path (repeatable)")
    p.add_argument("--allow", action="append", default=None, metavar="MODULE",
                   type=_module_name,
                   help="only what MODULE and its submodules define or export may be called "
                        "(repeatable; default: anything, so any caller runs arbitrary code)")
    p.add_argument("--concurrency", type=_positive, default=DEFAULT_CONCURRENCY, metavar="N",
                   help=f"calls running at once (default {DEFAULT_CONCURRENCY}; "
                        "1 = one at a time)")
    p.add_argument("--max-frame-size", type=_positive, default=DEFAULT_MAX_FRAME_SIZE,
                   metavar="BYTES",
                   help=f"largest frame accepted from Erlang (default {DEFAULT_MAX_FRAME_SIZE})")
    p.add_argument("--spin-us", type=_non_negative, default=round(DEFAULT_SPIN_SECONDS * 1e6),
                   metavar="MICROSECONDS",
                   help="poll for the next frame this long before sleeping (default "
                        f"{round(DEFAULT_SPIN_SECONDS * 1e6)}; 0 never polls)")
    p.add_argument("--log-level", default="WARNING",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                   type=str.upper, help="stderr log level (default WARNING)")
    return p


def parse(argv) -> Options:
    """Parse ``argv`` (without the program name); exits with status 2 on bad usage."""
    parser = _parser()
    ns = parser.parse_args(argv)
    if ns.module is not None and ns.module != STOCK_MODULE:
        parser.error(f"-m: only {STOCK_MODULE} is served, not {ns.module!r}")
    strict_strings, strict_none = ("charlist", "undefined") if ns.strict else ("binary", "nil")
    return Options(
        packet=ns.packet,
        use_stdio=ns.use_stdio,
        compressed=ns.compressed,
        buffer_size=ns.buffer_size,
        strings=ns.strings or strict_strings,
        none=ns.none or strict_none,
        strict=ns.strict,
        paths=ns.path,
        allow=ns.allow,
        concurrency=ns.concurrency,
        max_frame_size=ns.max_frame_size,
        spin_seconds=ns.spin_us / 1e6,
        log_level=ns.log_level,
    )


def configure_logging(level: str) -> None:
    """Send log records to stderr only: stdout may carry the protocol."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("erlport-worker[%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level))
