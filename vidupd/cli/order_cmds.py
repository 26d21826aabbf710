"""The queue's order from the command line: `vidupd prioritize JOB... [--priority N]`, and the
plan of what would be uploaded (`run --dry-run`, `check-config --show-plan`: one output)."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from ..config import load

EXIT_OK, EXIT_FAILURE = 0, 1


def add_arguments(sub: "argparse._SubParsersAction", run: argparse.ArgumentParser,
                  check: argparse.ArgumentParser,
                  with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    """This module's flags on `run` and `check-config`, and the `prioritize` command."""
    run.add_argument("--dry-run", action="store_true",
                     help="list what would be uploaded where (from the folders and the ledger), send and write "
                          "nothing, and exit")
    run.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    check.add_argument("--show-plan", action="store_true",
                       help="also list what `run` would upload where, in order (the same as run --dry-run)")
    check.add_argument("--json", action="store_true", help="with --show-plan: the plan as JSON")
    pr = with_config(sub.add_parser("prioritize", help="move waiting jobs up the queue (or down, with --priority)"))
    pr.add_argument("jobs", nargs="+", type=int, metavar="JOB", help="ids of queued jobs (see vidupd status)")
    pr.add_argument("--priority", type=int, default=None, metavar="N",
                    help="the priority to give them (higher goes first; default: one above the highest in the "
                         "ledger, so they go next)")
    pr.set_defaults(func=cmd_prioritize)


def cmd_plan(args: argparse.Namespace) -> int:
    """The dry run: the config checked as check-config checks it (exit 2 on a problem),
    then the plan; no state dir is made private, created or written."""
    from ..config.state_modes import secured
    from .plan_view import show_plan

    config = load(args.config)
    for w in secured(config, change=False).warnings:
        print(f"warning: {w}", file=sys.stderr)
    return show_plan(config, args.json)


def cmd_prioritize(args: argparse.Namespace) -> int:
    from ..config.state_modes import secured
    from ..ledger import open_ledger

    config = secured(load(args.config, read_secrets=False))  # the ledger alone: no platform credentials
    for w in config.warnings:
        print(f"warning: {w}", file=sys.stderr)
    ledger = open_ledger(config, config.state_dir)
    try:
        priority, refused = ledger.prioritize(args.jobs, args.priority)
        why = {}
        for job_id in refused:
            job = ledger.get(job_id)
            why[job_id] = "no such job" if job is None else f"not waiting ({job.state})"
    finally:
        ledger.close()
    moved = [j for j in dict.fromkeys(args.jobs) if j not in why]
    if moved:
        print(f"{len(moved)} job(s) now at priority {priority}: {', '.join(map(str, moved))}")
    for job_id, reason in why.items():
        print(f"prioritize: job {job_id}: {reason}", file=sys.stderr)
    return EXIT_FAILURE if why else EXIT_OK
