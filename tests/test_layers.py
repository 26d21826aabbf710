"""The folders are the architecture: a module imports only from layers below its own.

core < {ledger, providers} < config < intake < engine < service < cli. The ledger and the
providers are peers that never import each other (the engine joins them); inside providers,
the shared modules (base, transfer, ...) come first, then oss, then the platform packages,
which never import each other. The sandbox is a separate program: it imports nothing of the
client, and only the CLI's `sandbox` command imports it. Every import counts, including
those inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "vidupd"
ORDER = {"core": 0, "ledger": 1, "providers": 1, "config": 2, "intake": 3, "engine": 4, "service": 5, "cli": 6}
PROVIDER_ORDER = {"oss": 1, "youku": 2, "aliyun_vod": 2}  # anything else under providers/ is 0


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute vidupd module or name) for every import in the file."""
    mod = _module(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "vidupd"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vidupd":
                continue
            if node.module is None or target.count(".") <= 1:  # `from vidupd[.x] import y`: y may be a module
                found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _problem(importer: str, imported: str) -> str | None:
    mine, theirs = _layer(importer), _layer(imported)
    if theirs is None or theirs in ("__version__",):
        return None  # the root package: only the version
    if mine == "sandbox":
        return None if theirs == "sandbox" else "the sandbox imports nothing of the client"
    if theirs == "sandbox":
        return None if mine == "cli" else "only the CLI starts the sandbox"
    if mine in (None, "__main__"):  # vidupd/__main__.py
        return None if theirs == "cli" else "the entry point only calls the CLI"
    if mine not in ORDER:
        return f"{mine}/ is not a known layer: add it to ORDER"
    if theirs not in ORDER:
        return f"{theirs} is not a known layer"
    if mine == theirs == "providers":
        a = importer.split(".")[2] if importer.count(".") >= 2 else ""
        b = imported.split(".")[2] if imported.count(".") >= 2 else ""
        ra, rb = PROVIDER_ORDER.get(a, 0), PROVIDER_ORDER.get(b, 0)
        if a == b or rb < ra or ra == rb == 0:
            return None
        return f"providers.{a or '*'} may not import providers.{b}"
    if mine == theirs:
        return None
    if ORDER[theirs] < ORDER[mine]:
        return None
    return f"{mine} (layer {ORDER[mine]}) may not import {theirs} (layer {ORDER[theirs]})"


def test_every_import_goes_down_the_layers():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        importer = _module(path)
        for line, imported in _imports(path):
            why = _problem(importer, imported)
            if why:
                problems.append(f"{path.relative_to(ROOT)}:{line}: imports {imported}: {why}")
    assert not problems, "\n".join(problems)


def test_every_package_says_what_it_is_for():
    missing = [str(p.relative_to(ROOT)) for p in PKG.rglob("__init__.py")
               if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()]
    assert not missing, missing


@pytest.mark.parametrize("importer,imported,ok", [
    ("vidupd.core.events", "vidupd.config.model", False),
    ("vidupd.ledger.sqlite", "vidupd.providers.base", False),
    ("vidupd.providers.base", "vidupd.ledger", False),
    ("vidupd.providers.oss.multipart", "vidupd.providers.aliyun_vod.rpc", False),
    ("vidupd.providers.youku.provider", "vidupd.providers.aliyun_vod.rpc", False),
    ("vidupd.providers.youku.provider", "vidupd.providers.oss.multipart", True),
    ("vidupd.providers.aliyun_vod.provider", "vidupd.providers.transfer", True),
    ("vidupd.engine.pool", "vidupd.intake.companions", True),
    ("vidupd.intake.offers", "vidupd.engine.pool", False),
    ("vidupd.sandbox.oss", "vidupd.core.errors", False),
    ("vidupd.engine.pool", "vidupd.sandbox.app", False),
    ("vidupd.cli.main", "vidupd.sandbox.app", True),
    ("vidupd.providers.transfer", "vidupd.providers.base", True),
    ("vidupd.providers.base", "vidupd.providers.youku.api", False),
])
def test_the_rule_itself(importer, imported, ok):
    assert (_problem(importer, imported) is None) is ok
