"""The README and docs/ as a user reads them: every relative link and anchor resolves, every
repository path they name exists, nothing points outside the repository, and every command in
a ```sh block runs as written: its script or module exists and takes each flag it is given.

The Elixir and Erlang snippets call placeholder modules (`my_module`); what they show is run
by tests/beam (BeamNas.call, run_nas, predict, run_status, cancel_run, beam_nas_worker:call
and its timeouts and errors, pools)."""
import configparser
import functools
import glob
import os
import re
import shlex
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(["README.md", "CHANGELOG.md"]
               + [os.path.relpath(path, ROOT) for path in glob.glob(os.path.join(ROOT, "docs", "*.md"))])
REPO_DIRS = ("bench", "cerebros", "codec", "docs", "erlport_worker", "examples", "lib", "scripts", "src",
             "tests")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


@functools.lru_cache(maxsize=None)
def tracked():
    """Every file and folder of the repository (not what a build or a run left behind)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    return set(files) | {parent for path in files for parent in _parents(path)}


def _parents(path):
    while (path := os.path.dirname(path)):
        yield path


def in_repository(path):
    return path.rstrip("/") in tracked()


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def prose(text):
    """The page without its fenced code blocks."""
    return FENCE.sub("", text)


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page):
    return {slug(line.lstrip("#")) for line in prose(read(page)).splitlines() if line.startswith("#")}


def test_the_pages_are_the_ones_the_readme_promises():
    assert {"docs/architecture.md", "docs/beam.md", "docs/benchmarks.md", "docs/codec.md",
            "docs/engine.md", "docs/worker.md"} <= set(PAGES)
    assert len(read("README.md").splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES)
def test_every_relative_link_resolves_to_a_file_and_heading_in_the_repository(page):
    for target in LINK.findall(prose(read(page))):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) if path \
            else os.path.join(ROOT, page)
        assert resolved.startswith(ROOT + os.sep), f"{page}: {target} leaves the repository"
        assert in_repository(os.path.relpath(resolved, ROOT)), f"{page}: {target} is not in the repository"
        if anchor:
            assert anchor in anchors(os.path.relpath(resolved, ROOT)), f"{page}: no heading for {target}"


def test_nothing_points_at_files_users_do_not_have():
    outside = re.compile(r"\.\./shared|shared/specs|/work/")
    offenders = [path for path in sorted(tracked()) if os.path.isfile(os.path.join(ROOT, path))
                 and path != "tests/test_docs.py" and path.endswith((".md", ".py", ".erl", ".ex", ".exs", ".sh"))
                 and outside.search(read(path))]
    assert offenders == []


@pytest.mark.parametrize("page", PAGES)
def test_every_repository_path_a_page_names_exists(page):
    named = re.findall(r"`((?:%s)/[\w./-]*)" % "|".join(REPO_DIRS), read(page))
    missing = [path for path in named if not in_repository(path)]
    assert missing == [], f"{page} names paths that do not exist"


def sh_commands(page):
    """Each command of the page's ```sh blocks, continuations joined, comments dropped."""
    for language, body in FENCE.findall(read(page)):
        if language != "sh":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                yield words


SH_COMMANDS = [(page, words) for page in PAGES for words in sh_commands(page)]


@functools.lru_cache(maxsize=None)
def help_text(*command):
    done = subprocess.run([*command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} --help failed: {done.stderr}"
    return done.stdout


@functools.lru_cache(maxsize=None)
def mix_help(task):
    """The documentation of a Mix task of this project, compiled first (a fresh clone has no
    `_build`, and `mix help` does not compile) into a build folder outside the repository."""
    with tempfile.TemporaryDirectory() as build_root:
        done = subprocess.run(["mix", "do", "compile", "+", "help", task], cwd=ROOT,
                              env=dict(os.environ, MIX_BUILD_ROOT=build_root, HEX_OFFLINE="1"),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"mix help {task} failed: {done.stdout}{done.stderr}"
    return done.stdout


def check_flags(words, help_output):
    flags = [word.split("=")[0] for word in words if word.startswith("--")]
    unknown = [flag for flag in flags if flag not in help_output]
    assert unknown == [], f"{' '.join(words)}: unknown flags {unknown}"


def test_the_pages_hold_the_commands_users_start_with():
    starts = {" ".join(words[:3] if words[1:2] == ["-m"] else words[:2]) for _, words in SH_COMMANDS}
    assert {"bash scripts/demo", "bash scripts/test", "python -m cerebros", "python -m codec.fuzz"} <= starts


@pytest.mark.parametrize("page, words", SH_COMMANDS, ids=lambda value: " ".join(value)
                         if isinstance(value, list) else value)
def test_every_shell_command_runs_as_written(page, words):
    program, arguments = words[0], words[1:]
    if program == "bash":
        assert arguments[0] in tracked()
    elif program in ("python", "python3") and arguments[0] == "-m":
        module, rest = arguments[1], arguments[2:]
        subcommand = [rest[0]] if rest and not rest[0].startswith("-") else []
        check_flags(rest, help_text(sys.executable, "-m", module, *subcommand))
    elif program in ("python", "python3"):
        assert arguments[0] in tracked()
        if arguments[0].startswith("bench/"):  # --help would need the bench extras
            check_flags(arguments[1:], read(arguments[0]) + read("bench/markdown_section.py"))
    elif program == "erlport-worker":
        check_flags(arguments, help_text(sys.executable, "-m", "erlport_worker"))
    elif program == "elixir":
        assert arguments[0] in tracked()
    elif program == "pip":
        extras = re.fullmatch(r"\.\[(\w+)\]", arguments[-1])
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        assert arguments[:2] == ["install", "-e"] and extras
        assert extras.group(1) in config["options.extras_require"]
    elif program == "mix":
        check_flags(arguments[1:], mix_help(arguments[0]))
    elif program == "erl":  # erl ... -run MODULE FUNCTION -extra FLAGS: the module's own flags
        module = arguments[arguments.index("-run") + 1]
        check_flags(arguments, read(f"src/{module}.erl"))
    elif program == "tox":
        assert "tox.ini" in tracked()
    else:
        pytest.fail(f"{page}: no check for `{' '.join(words)}`: add one here")
