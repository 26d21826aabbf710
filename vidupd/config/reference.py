"""The config reference (docs/CONFIG.md), rendered from the definitions the loader uses: the
daemon's tables (config.options) and each provider's `Option`s. Written by
`vidupd config-reference > docs/CONFIG.md`; a test keeps the committed file equal to it, so
the reference cannot drift from what `check-config` accepts."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from .. import providers
from ..core.units import DAY
from ..providers.base import REQUIRED, Option
from .options import SECTIONS, TARGET

INTRO = """\
# vidupd configuration reference

Generated from the code's option definitions by `vidupd config-reference > docs/CONFIG.md`
(do not edit by hand; `tests/test_config_reference.py` checks it). `vidupd check-config -c FILE`
reports every problem as `FILE: KEY: what is wrong` and exits 2; `vidupd run` refuses the same.
An annotated example: `etc/vidupd.toml`.

- **duration**: a number of seconds (`10`, `2.5`) or a string with units: `"90s"`, `"2m"`,
  `"1h30m"`, `"1.5h"`, `"2d"`, `"1w"` (`ms`, `s`, `m`, `h`, `d`, `w`, `y`, or their full names).
  `retain_days` takes the same strings; a bare number there is days.
- **secret**: a string given inline (then the config file must not be readable by group or
  other, or `check-config` warns), or a reference: `{ env = "NAME" }`, `{ file = "/path" }`
  (chmod 600), `{ credential = "name" }` (systemd `LoadCredential=`).
- **string or list**: `"*.mp4"` is the same as `["*.mp4"]`.
- Choices are case-insensitive. Relative paths are relative to the config file's folder.
"""


def render_markdown() -> str:
    """The whole reference, as Markdown."""
    parts = [INTRO]
    for section in SECTIONS:
        if section is TARGET:
            continue
        parts.append(_section(f"## {section.title}", section.help, section.options))
    parts.append(_section(f"## {TARGET.title}", TARGET.help, TARGET.options))
    for name in providers.names():
        cls = providers.provider_class(name)
        parts.append(_section(f"### provider = \"{name}\"", cls.summary, cls.options))
    return "\n".join(parts)


def _section(heading: str, text: str, options: Mapping[str, Option]) -> str:
    rows = [heading, "", text, "", "| Key | Type | Default | Allowed | Meaning |", "| --- | --- | --- | --- | --- |"]
    rows += [f"| `{key}` | {type_text(o)} | {default_text(o)} | {allowed_text(o)} | {_cell(o.help)} |"
             for key, o in options.items()]
    return "\n".join(rows) + "\n"


def type_text(o: Option) -> str:
    if o.secret:
        return "secret"
    if o.duration:
        return "duration (days)" if o.duration == DAY else "duration"
    kinds = o.type if isinstance(o.type, tuple) else (o.type,)
    if set(kinds) == {list, str}:
        return "string or list of strings"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list of strings"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def default_text(o: Option) -> str:
    if o.default is REQUIRED:
        return "**required**"
    if o.default is None:
        return "unset"
    return f"`{_toml(o.default)}`"


def allowed_text(o: Option) -> str:
    if o.choices:
        return _cell(" | ".join(f"`{c}`" for c in o.choices))
    if o.minimum is not None and o.maximum is not None:
        return f"{_number(o.minimum)} to {_number(o.maximum)}"
    bounds = [f">= {_number(o.minimum)}"] if o.minimum is not None else []
    bounds += ["> 0"] if o.positive else []
    bounds += [f"<= {_number(o.maximum)}"] if o.maximum is not None else []
    return ", ".join(bounds)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Iterable):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")

