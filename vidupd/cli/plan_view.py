"""`vidupd run --dry-run` / `vidupd check-config --show-plan`: the plan (vidupd.intake.plan)
as a table sized to the terminal (whole cells in a pipe, like `status`), or `--json`.
Read-only: the ledger is opened read-only (or is not there yet), nothing is sent, the
state dir is not touched and no sandbox or daemon is started."""

from __future__ import annotations

import json
from typing import Any

from ..config import Config
from ..core.fsnames import safe_text
from ..core.units import human_bytes
from ..intake.plan import WOULD_UPLOAD, PlanEntry, plan
from ..ledger import LedgerError, open_ledger
from .status_view import console_for_stdout

_COLUMNS = ("#", "ACTION", "TARGET", "KIND", "SIZE", "PRI", "FILE", "TITLE", "WHAT")
_RIGHT = {"#", "SIZE", "PRI"}
_STYLES = {"upload": "bold cyan", "queued": "cyan", "done": "green", "duplicate": "yellow", "renamed": "green",
           "failed": "bold red", "attention": "bold magenta", "refused": "red", "not-sent": "dim", "cover": "dim",
           "skipped": "dim", "waiting": "yellow", "uploading": "bold cyan", "committed": "blue"}
KIND_NAMES = {"url_pull": "url pull"}


def entries_for(config: Config) -> list[PlanEntry]:
    try:
        ledger = open_ledger(config, config.state_dir, readonly=True)
    except LedgerError as e:
        if "no ledger yet" not in str(e):
            raise
        ledger = None
    try:
        return plan(config, ledger)
    finally:
        if ledger is not None:
            ledger.close()


def summary(entries: list[PlanEntry], config: Config) -> str:
    up = [e for e in entries if e.action in WOULD_UPLOAD]
    parts = [f"{len(up)} upload(s) would start ({human_bytes(sum(e.size for e in up))}), order {config.order}"]
    for action in ("uploading", "done", "duplicate", "renamed", "failed", "refused", "not-sent"):
        n = sum(1 for e in entries if e.action == action)
        if n:
            parts.append(f"{n} {action}")
    return "dry run: " + "; ".join(parts) + "; nothing was sent or written"


def _cells(n: int | None, e: PlanEntry) -> list[str]:
    return [str(n) if n is not None else "", e.action, e.target or "-", KIND_NAMES.get(e.kind or "", e.kind or "-"),
            human_bytes(e.size), str(e.priority) if e.action in WOULD_UPLOAD else "", safe_text(e.path.name),
            safe_text(e.title or ""), e.detail]


def render(entries: list[PlanEntry], config: Config, width: int | None) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(summary(entries, config), no_wrap=True, overflow="ellipsis")
    if not entries:
        return head
    rows, n = [], 0
    for e in entries:
        if e.action in WOULD_UPLOAD:
            n += 1
        rows.append(_cells(n if e.action in WOULD_UPLOAD else None, e))
    widths = [max(len(name), *(len(r[i]) for r in rows)) for i, name in enumerate(_COLUMNS)]
    if width is not None:  # FILE and TITLE take up to 2/7 each of what is left, WHAT the rest; cut with …
        left = max(15, width - sum(widths[:-3]) - (len(_COLUMNS) - 1))
        widths[-3], widths[-2] = (max(4, min(widths[i], left * 2 // 7)) for i in (-3, -2))
        widths[-1] = max(5, min(widths[-1], left - widths[-3] - widths[-2]))
    t = Table(expand=False, box=None, header_style="bold", pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
    for i, name in enumerate(_COLUMNS):
        t.add_column(name, justify="right" if name in _RIGHT else "left", width=widths[i], no_wrap=True,
                     overflow="ellipsis")
    for r in rows:
        t.add_row(r[0], Text(r[1], style=_STYLES.get(r[1], "")), *r[2:])
    return Group(head, t)


def show_plan(config: Config, as_json: bool) -> int:
    entries = entries_for(config)
    if as_json:
        print(json.dumps({"order": config.order, "entries": [e.to_json() for e in entries]}, ensure_ascii=False,
                         indent=1))
        return 0
    console = console_for_stdout()
    console.print(render(entries, config, console.width if console.is_terminal else None))
    return 0
