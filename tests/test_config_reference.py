"""The config reference (issue 12, point 8) is generated from the definitions the loader reads
through, and complete: docs/CONFIG.md is that rendering, every key the loader takes is
defined with a help text, every defined key is taken, and every key etc/vidupd.toml shows is
defined. A key added the loader's old way (a literal in an allowed set or a getter call)
fails here until it gets a definition in config/options.py or its provider's options."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
from helpers import ROOT, vidupd

from vidupd import providers
from vidupd.config import ConfigError, load
from vidupd.config.options import SECTIONS, TARGET, TOP_KEYS
from vidupd.config.reference import render_markdown
from vidupd.providers.base import REQUIRED

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOC = ROOT / "docs" / "CONFIG.md"
GETTERS = {"_take", "_checked", "_strings", "_option"}


def defined() -> dict[str, set[str]]:
    """Table key ("" top level, "retry", ..., "targets", and each provider's name) -> its keys."""
    out = {s.key: set(s.options) for s in SECTIONS}
    out[""] |= TOP_KEYS
    for name in providers.names():
        out[name] = set(providers.provider_class(name).options)
    return out


def every_defined_key() -> set[str]:
    return set().union(*defined().values())


def test_the_committed_reference_is_the_rendering():
    assert DOC.read_text() == render_markdown(), "run: vidupd config-reference > docs/CONFIG.md"


def test_config_reference_command_prints_it():
    out = vidupd("config-reference", "--format", "markdown")
    assert out.returncode == 0 and out.stdout == DOC.read_text()


def test_every_definition_has_a_help_text_and_shows_in_the_reference():
    text = DOC.read_text()
    options = [(s.title, k, o) for s in SECTIONS for k, o in s.options.items()]
    options += [(n, k, o) for n in providers.names() for k, o in providers.provider_class(n).options.items()]
    for where, key, option in options:
        assert len(option.help) >= 8, f"{where} {key}: no help text"
        assert f"| `{key}` |" in text, key
    for name in providers.names():
        assert providers.provider_class(name).summary, f"provider {name}: no summary for the reference"


def keys_the_loader_names() -> set[tuple[str, str]]:
    """(file:line, key) for every key written as a literal in the config package: an allowed
    set `{"a", "b"}` anywhere, or the key argument of a typed getter."""
    found = set()
    for path in sorted((ROOT / "vidupd" / "config").glob("*.py")):
        if path.name in ("options.py", "reference.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Set) and all(isinstance(e, ast.Constant) and isinstance(e.value, str)
                                                 for e in node.elts):
                found |= {(f"{path.name}:{node.lineno}", e.value) for e in node.elts}
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in GETTERS
                    and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                    and isinstance(node.args[1].value, str)):
                found.add((f"{path.name}:{node.lineno}", node.args[1].value))
    return found


def test_every_key_the_loader_takes_is_defined():
    named = keys_the_loader_names()
    assert {"max_rate", "targets", "path"} <= {k for _, k in named}  # the scan sees the loader's keys
    missing = sorted(f"{where}: {key}" for where, key in named if key not in every_defined_key())
    assert not missing, f"keys without a definition (add them to config/options.py): {missing}"


def _sample(option):
    if option.default not in (REQUIRED, None):
        return option.default
    kinds = option.type if isinstance(option.type, tuple) else (option.type,)
    return {str: "x", int: 1, float: 1.0, bool: True, list: ["x"]}[kinds[0]]


def test_every_defined_key_is_taken_by_the_loader(tmp_path: Path, monkeypatch):
    """Each definition given a value: whatever else is wrong, no key is 'unknown'. And the
    other way, per table: every allowed set the loader checks a table against (however it is
    written) holds only keys defined for that table."""
    from helpers import write_config

    from vidupd.config import loader

    allowed: dict[str, set[str]] = {}
    real_unknown = loader._Loader._unknown

    def recording(self, table, keys, where):
        allowed.setdefault(where, set()).update(keys)
        return real_unknown(self, table, keys, where)

    monkeypatch.setattr(loader._Loader, "_unknown", recording)

    top = {k: _sample(o) for k, o in SECTIONS[0].options.items()}
    sections = {s.key: {k: _sample(o) for k, o in s.options.items()} for s in SECTIONS[1:]}
    targets = {}
    for name in providers.names():
        targets[f"t_{name.replace('-', '_')}"] = {**sections["targets"], "provider": name, **{
            k: _sample(o) for k, o in providers.provider_class(name).options.items()}}
    cfg = write_config(tmp_path / "all.toml", top, targets, [sections["watch"]], sections["log"])
    with cfg.open("a") as f:
        for key in ("retry", "metrics"):
            f.write(f"[{key}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in sections[key].items()))
        f.write("[[notify]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in sections["notify"].items()))
    with pytest.raises(ConfigError) as e:  # sample values need not make sense together
        load(cfg)
    assert not [str(p) for p in e.value.problems if "unknown key" in p.message]
    tables = defined()
    kinds = {name: body["provider"] for name, body in targets.items()}
    for where, keys in allowed.items():
        table = re.sub(r"\[\d+\]$", "", where)
        if table.startswith("targets."):
            expected = tables["targets"] | tables[kinds[table.split(".", 1)[1]]]
        else:
            expected = tables[table]
        assert keys <= expected, f"{where}: allowed but not defined: {sorted(keys - expected)}"
    assert {"", "retry", "log", "metrics", "notify[0]", "watch[0]", "targets.t_youku"} <= set(allowed)
    assert len({s.key for s in SECTIONS}) == len(SECTIONS) and TARGET in SECTIONS


def _toml(v) -> str:
    from helpers import toml_value

    return toml_value(list(v) if isinstance(v, tuple) else v)


def test_every_key_in_the_example_config_is_defined():
    text = (ROOT / "etc" / "vidupd.toml").read_text()
    example = tomllib.loads(text)
    tables = defined()
    for key, value in example.items():
        assert key in tables[""], key
    for section in ("retry", "log", "metrics"):
        assert set(example.get(section, {})) <= tables[section], section
    for w in example["watch"]:
        assert set(w) <= tables["watch"]
    for name, body in example["targets"].items():
        assert set(body) <= tables["targets"] | tables[body["provider"]], name
    # the commented-out examples too: `# key = value` lines
    commented = set(re.findall(r"^# ([a-z_]+) *=", text, re.M))  # not "#   key = { env = ... }", prose
    assert commented and commented <= every_defined_key(), commented - every_defined_key()
