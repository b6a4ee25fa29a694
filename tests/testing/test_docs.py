"""docs/testing.md runs as written: each ``python`` block is a test module of its own (a block
starting ``# conftest.py`` is the conftest of the block after it), run by pytest with the
dynaflow plugin as a project would."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", DOC.read_text(), flags=re.S | re.M)


def test_the_page_has_the_examples_it_promises() -> None:
    found = blocks()
    assert len(found) >= 8
    assert "AuditMachine" in found[0]  # a plugin author's test comes first
    assert all("def test_" in block for block in found if not block.startswith("# conftest.py"))


def test_every_block_runs_and_passes(pytester: pytest.Pytester) -> None:
    found = blocks()
    conftest = None
    expected = 0
    for index, block in enumerate(found):
        if block.startswith("# conftest.py"):
            conftest = block
            continue
        directory = pytester.mkdir(f"block_{index}")
        if conftest is not None:
            (directory / "conftest.py").write_text(conftest)
            conftest = None
        (directory / f"test_block_{index}.py").write_text(block)
        expected += block.count("\ndef test_") + block.startswith("def test_")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=expected)
