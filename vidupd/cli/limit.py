"""`vidupd limit RATE|off [--for 2h]`, `vidupd limit --clear` (or `default`), `vidupd limit`:
change the running daemon's bandwidth cap at once, or show the cap in force.

The override is written to the ledger's `shared` table (key `control.rate`, see
vidupd.service.rate_override); the daemon reads it within a second and a one-shot `vidupd upload`
obeys it too. It lasts until `--for` runs out (a restart does not end it) or `--clear`.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from ..config import Config
from ..core.rate_schedule import RateSchedule
from ..core.units import RATE_FORMS, human_rate, parse_duration, parse_rate

EXIT_OK, EXIT_USAGE = 0, 2
CLEAR_WORDS = ("default", "clear")


def add_parser(sub: argparse._SubParsersAction, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
               load: Callable[..., Config]) -> None:
    """The `limit` subcommand; `load` reads the config as the other commands do."""
    lm = with_config(sub.add_parser("limit", help="change the running daemon's bandwidth cap now, or show it"))
    lm.add_argument("rate", nargs="?", metavar="RATE|off|default",
                    help=f"the cap from now on: {RATE_FORMS}; `default` goes back to the configured max_rate; "
                         "without it, the cap in force and where it comes from are shown")
    lm.add_argument("--for", dest="duration", metavar="DURATION",
                    help="only for this long (90s, 15m, 2h, 1d); then the configured max_rate applies again")
    lm.add_argument("--clear", action="store_true", help="drop the override: the configured max_rate applies again")
    lm.set_defaults(func=lambda args: cmd_limit(args, load))


def rate_arg(text: str) -> int:
    """argparse type for a rate flag (the sandbox's --max-rate): bytes/s, 0 for off."""
    try:
        return parse_rate(text) or 0
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def cmd_limit(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    from ..ledger import Ledger, LedgerShared, open_ledger

    config = load(args, writes=True, read_secrets=False)
    ledgers: list[Ledger] = []

    def open_store() -> LedgerShared:
        ledgers.append(open_ledger(config, config.state_dir))
        return LedgerShared(ledgers[-1])

    try:
        return limit(args, config.max_rate, open_store)
    finally:
        for ledger in ledgers:
            ledger.close()


def limit(args: argparse.Namespace, schedule: RateSchedule | None, open_store: Callable[[], object]) -> int:
    """The command, given the configured schedule and a way to open the ledger's shared store."""
    from ..service.bandwidth import in_force
    from ..service.rate_override import clear_rate_override, load_rate_override, set_rate_override

    word = (args.rate or "").strip().lower()
    if args.clear or word in CLEAR_WORDS:
        if args.duration:
            print("limit: --for goes with a rate, not with --clear", file=sys.stderr)
            return EXIT_USAGE
        store = open_store()
        clear_rate_override(store)  # type: ignore[arg-type]
        now = in_force(schedule, None, time.time())
        print(f"limit cleared; in force now: {now.describe()}")
        return EXIT_OK
    if args.rate is None:
        if args.duration:
            print("limit: --for needs a RATE", file=sys.stderr)
            return EXIT_USAGE
        store = open_store()
        override = load_rate_override(store)  # type: ignore[arg-type]
        now = in_force(schedule, override, time.time())
        print(f"in force: {now.describe()}")
        print(f"configured max_rate: {schedule.text if schedule is not None else 'none (no cap)'}")
        return EXIT_OK
    try:
        rate = parse_rate(args.rate)
    except ValueError as e:
        print(f"limit: RATE: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        seconds = parse_duration(args.duration) if args.duration else None
        if seconds is not None and seconds <= 0:
            raise ValueError(f"must be more than 0 seconds, not {args.duration!r}")
    except ValueError as e:
        print(f"limit: --for: {e}", file=sys.stderr)
        return EXIT_USAGE
    store = open_store()
    override = set_rate_override(store, rate, seconds)  # type: ignore[arg-type]
    until = (f" until {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(override.until))}"
             if override.until else " until `vidupd limit --clear`")
    print(f"limit set: {human_rate(rate) if rate else 'no cap'}{until}; the running daemon applies it within a second")
    return EXIT_OK

