"""Writes a benchmark's table into its own section of docs/benchmarks.md.

A section is the text between ``<!-- begin NAME -->`` and ``<!-- end NAME -->`` (NAME: the
script's name, e.g. ``codec_bench``). ``write_section(name, markdown)`` replaces it with a
line saying how, where and when the figures were measured (command, CPU model, cores, load
average, date, commit), then ``markdown``; the rest of the page is left as it is. A bench
script calls it for its ``--markdown [PAGE]`` flag; a script in another language runs
``python3 bench/markdown_section.py NAME --command CMD [FILE]`` (the table in FILE, or on stdin).
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "benchmarks.md"
NAME = re.compile(r"[A-Za-z0-9_.-]+")
MARKER = re.compile(r"<!-- (?:begin|end) [^>]*-->")


def add_markdown_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--markdown [PAGE]`` flag every bench script takes (PAGE: docs/benchmarks.md)."""
    parser.add_argument("--markdown", nargs="?", const=PAGE, default=None, metavar="PAGE",
                        help="also write the table into this script's section of PAGE "
                             "(default docs/benchmarks.md)")


def write_section(name: str, markdown: str, path: str | os.PathLike = PAGE,
                  command: str | None = None) -> None:
    """Replace section ``name`` of the page at ``path`` with a stamp and ``markdown``.

    ``command`` is what produced the figures (default: this process's command line).
    Raises ValueError, leaving the page unchanged, when the page has not exactly one such
    section or ``markdown`` holds a section marker.
    """
    if not NAME.fullmatch(name):
        raise ValueError(f"section name {name!r}: use letters, digits, '_', '.' or '-'")
    if MARKER.search(markdown):
        raise ValueError(f"section {name}: the table holds a section marker")
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"section {name}: {path} needs one '{begin}' line, then one '{end}' line")
    if command is None:
        command = " ".join(["python3", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    body = f"{begin}\n{stamp(command, path)}\n\n{markdown.strip()}\n{end}"
    start, stop = text.index(begin), text.index(end) + len(end)
    replaced = path.with_name(path.name + ".tmp")
    replaced.write_text(text[:start] + body + text[stop:], encoding="utf-8")
    os.replace(replaced, path)


def stamp(command: str, page: Path) -> str:
    """One line: the command, the machine and its load, the date and the commit."""
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"`{command}` on {cpu_model()}, {os.cpu_count()} cores (load average "
            f"{load_average()}), Python {platform.python_version()}; {today}, commit {commit(page)}.")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    try:
        return " ".join(f"{load:.2f}" for load in os.getloadavg())
    except OSError:
        return "unknown"


def commit(page: Path) -> str:
    """The short commit, with ``+changes`` when the working tree differs from it elsewhere
    than on ``page`` (which the benchmarks themselves change)."""
    def git(*arguments):
        return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        inside = page.resolve().is_relative_to(ROOT)
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      *([f":(exclude){page.resolve()}"] if inside else []))
        return git("rev-parse", "--short", "HEAD") + (" +changes" if changed else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the markdown in FILE (default: stdin) "
                                                 "into section NAME of docs/benchmarks.md.")
    parser.add_argument("name", help="the section, e.g. pool_bench")
    parser.add_argument("file", nargs="?", help="the markdown to write (default: stdin)")
    parser.add_argument("--page", default=PAGE, help="default docs/benchmarks.md")
    parser.add_argument("--command", required=True, help="the command that measured the figures")
    args = parser.parse_args()
    try:
        markdown = Path(args.file).read_text(encoding="utf-8") if args.file else sys.stdin.read()
        write_section(args.name, markdown, path=args.page, command=args.command)
    except (OSError, ValueError) as exc:
        sys.exit(f"markdown_section: {exc}")


if __name__ == "__main__":
    main()
