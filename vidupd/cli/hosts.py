"""`vidupd hosts [--json]`: the daemons that work on this ledger (on a shared PostgreSQL
ledger, the fleet on one outbox), from their heartbeat rows (vidupd.ledger.hosts): host
name, pid, when each was last heard of, its state and how many uploads it runs.

State: running (beating), stopped (a clean stop said so), or silent: running by its last
word but not heard from for a while (killed, frozen, cut off from the ledger; the jobs it
held are taken over by the others once their leases run out). Read-only, like `status`: it
opens the ledger read-only and needs no platform credentials.
"""

from __future__ import annotations

import argparse
import json
from typing import Callable

from ..config import Config
from ..core.fsnames import safe_text
from ..ledger import Host

EXIT_OK = 0
_COLUMNS = ("HOST", "PID", "STATE", "LAST BEAT", "RUNNING", "VERSION", "UP", "OWNER")


def add_parser(sub: argparse._SubParsersAction, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
               load: Callable[..., Config]) -> None:
    """The `hosts` subcommand; `load` reads the config as the other commands do."""
    hs = with_config(sub.add_parser("hosts", help="the daemons on this ledger (a shared one: every host) "
                                                  "with their last heartbeat, state and running uploads"))
    hs.add_argument("--json", action="store_true", help="machine-readable output (ISO-8601 times)")
    hs.set_defaults(func=lambda args: cmd_hosts(args, load))


def table(hosts: list[Host]) -> str:
    """Aligned columns, a header first; every cell whole (for grep)."""
    from .status_view import human_duration

    rows = [[safe_text(h.hostname), str(h.pid), h.status, f"{human_duration(h.age)} ago", str(h.running),
             h.version or "-", human_duration(max(0.0, h.last_seen - h.started)), safe_text(h.owner)] for h in hosts]
    widths = [max(len(name), *(len(r[n]) for r in rows)) for n, name in enumerate(_COLUMNS)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [list(_COLUMNS), *rows]]
    return "\n".join(lines)


def cmd_hosts(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    from .status_view import host_json, open_readonly  # the status command's look at the ledger

    config = load(args, read_secrets=False)  # shows the ledger: needs no platform credentials
    ledger = open_readonly(config)
    hosts: list[Host] = []
    if ledger is not None:
        try:
            hosts = ledger.hosts()
        finally:
            ledger.close()
    if args.json:
        print(json.dumps({"hosts": [host_json(h) for h in hosts]}, ensure_ascii=False, indent=1))
    else:
        print(table(hosts) if hosts else "no hosts yet (no daemon has run against this ledger)")
    return EXIT_OK
