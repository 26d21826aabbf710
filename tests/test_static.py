"""Static checks of the source tree that catch what tests of behaviour miss: a name used
but never imported (typical of a merge that keeps one side's imports), an unused import
or variable, and print() outside the CLI (everything else speaks through the event log)."""

from __future__ import annotations

import ast
from pathlib import Path

from pyflakes.api import checkPath
from pyflakes.reporter import Reporter

ROOT = Path(__file__).resolve().parent.parent


class _Collect(Reporter):
    def __init__(self) -> None:
        self.problems: list[str] = []

    def unexpectedError(self, filename: str, message: str) -> None:
        self.problems.append(f"{filename}: {message}")

    def syntaxError(self, filename: str, msg: str, lineno: int, offset: int, text: str) -> None:
        self.problems.append(f"{filename}:{lineno}: {msg}")

    def flake(self, message) -> None:
        self.problems.append(str(message))


def _sources() -> list[Path]:
    return sorted(p for d in ("vidupd", "tests", "benchmarks") for p in (ROOT / d).rglob("*.py"))


def test_pyflakes_finds_nothing():
    reporter = _Collect()
    for path in _sources():
        checkPath(str(path), reporter)
    assert reporter.problems == []


def test_no_print_outside_the_cli():
    offenders = []
    for path in (ROOT / "vidupd").rglob("*.py"):
        if path.relative_to(ROOT / "vidupd").parts[0] in ("cli", "sandbox"):  # the CLI package prints
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
