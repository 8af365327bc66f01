"""The benchmarks write their own tables into docs/benchmarks.md (``--markdown``), through
``bench/markdown_section.py``: only their own section changes, stamped with machine, date and
commit, and a table keeps its header row."""
import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "bench")
PAGE = """# Benchmarks

Intro text.

<!-- begin one -->
old table of one
<!-- end one -->

Between the sections.

<!-- begin two -->
old table of two
<!-- end two -->
"""


@pytest.fixture
def helper():
    spec = importlib.util.spec_from_file_location("markdown_section",
                                                  os.path.join(BENCH, "markdown_section.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def page(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(PAGE)
    return path


def section(text, name):
    begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    return text[text.index(begin) + len(begin):text.index(end)]


def test_write_section_replaces_only_its_own_section_and_stamps_it(helper, page):
    helper.write_section("one", "| a | b |\n|---|---|\n| 1 | 2 |", path=page)
    text = page.read_text()
    written = section(text, "one")
    assert "old table of one" not in written
    assert "| a | b |\n|---|---|\n| 1 | 2 |" in written
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert commit in written and f"{os.cpu_count()} cores" in written
    assert text.replace(written, "") == PAGE.replace(section(PAGE, "one"), "")


def test_writing_a_section_twice_leaves_one_copy(helper, page):
    helper.write_section("two", "first", path=page)
    helper.write_section("two", "second", path=page)
    text = page.read_text()
    assert "second" in section(text, "two") and "first" not in text
    assert text.count("<!-- begin two -->") == 1 and "old table of one" in text


@pytest.mark.parametrize("name, markdown", [
    ("three", "a table"),                            # no such section on the page
    ("one", "text\n<!-- end one -->\nmore"),         # would end the section early next time
    ("one", "<!-- begin two -->"),                   # would open a second section two
    ("bad name -->", "a table"),                     # not a name a marker can hold
])
def test_a_section_that_cannot_be_written_exactly_is_refused_and_the_page_is_unchanged(
        helper, page, name, markdown):
    with pytest.raises(ValueError, match="section"):
        helper.write_section(name, markdown, path=page)
    assert page.read_text() == PAGE


def test_the_command_line_writes_a_section_read_from_stdin(page):
    done = subprocess.run([sys.executable, os.path.join(BENCH, "markdown_section.py"), "two",
                           "--page", str(page), "--command", "elixir bench/pool_bench.exs"],
                          input="| x |\n|---|\n| 3 |\n", capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = section(page.read_text(), "two")
    assert "| x |\n|---|\n| 3 |" in written and "`elixir bench/pool_bench.exs`" in written


@pytest.mark.parametrize("script, arguments, header, rule, rows", [
    ("tensor_bench", ["--runs", "1"], "| payload | step | this codec | msgpack (C) | ratio |",
     "|---|---|---:|---:|---:|", 6),
    ("worker_bench", ["--rounds", "20", "--conditions", "quiet"],
     "| measurement | erlport-worker | erlport-worker --spin-us 0 | pipe floor (raw echo) "
     "| stock ErlPort (Python side) | process per call | target |",
     "|---|---:|---:|---:|---:|---:|---|", 5),
], ids=["tensor_bench", "worker_bench"])
def test_a_bench_script_writes_its_table_with_its_header_row(tmp_path, script, arguments, header,
                                                             rule, rows):
    path = tmp_path / "benchmarks.md"
    path.write_text(f"<!-- begin {script} -->\n<!-- end {script} -->\n")
    done = subprocess.run([sys.executable, os.path.join(BENCH, f"{script}.py"), *arguments,
                           "--markdown", str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = section(path.read_text(), script).splitlines()
    assert lines[lines.index(header) + 1] == rule
    assert len([line for line in lines[lines.index(header) + 2:] if line.startswith("| ")]) == rows


def test_the_benchmarks_page_changing_does_not_mark_the_commit_changed(helper):
    page = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(page, encoding="utf-8") as f:
        original = f.read()
    before = helper.commit(helper.PAGE)
    try:
        with open(page, "a", encoding="utf-8") as f:
            f.write("\n")  # what an earlier bench's --markdown did to the page
        assert helper.commit(helper.PAGE) == before
    finally:
        with open(page, "w", encoding="utf-8") as f:
            f.write(original)
