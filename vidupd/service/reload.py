"""What a reload (SIGHUP) would change, and what it cannot change while running.

Pure functions over two `Config`s; the daemon applies the result. Everything except
`state_dir` can change at runtime: watches, targets, workers, max_rate, retry policy,
rescan interval, duplicate skipping, retain_days and the log (file, level, format).
Moving the ledger (state_dir, [ledger] url) while uploads run is refused; that takes a restart. `[metrics]` and
`[[notify]]` are set up at start: a change is reported and applies at the next start.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..config import Config


@dataclass(frozen=True)
class Plan:
    changes: tuple[str, ...] = ()  # human lines, e.g. "workers 2 -> 4", "watch added: /srv/b"
    problems: tuple[str, ...] = ()  # why the new config cannot be applied while running
    targets_added: tuple[str, ...] = ()
    targets_removed: tuple[str, ...] = ()
    targets_changed: tuple[str, ...] = ()
    keep_providers: frozenset[str] = field(default_factory=frozenset)  # unchanged targets


def plan(old: Config, new: Config) -> Plan:
    problems: list[str] = []
    if old.state_dir != new.state_dir:
        problems.append(f"{new.source}: state_dir: cannot change from {old.state_dir} to {new.state_dir} "
                        "while running; restart the service to move the ledger")
    if old.ledger.url != new.ledger.url:  # the URL shown without a password; the password itself is not compared
        problems.append(f"{new.source}: ledger.url: cannot change from {old.ledger.describe(old.state_dir)} to "
                        f"{new.ledger.describe(new.state_dir)} while running; restart the service to move the ledger")
    changes: list[str] = []
    for name in ("workers", "max_rate", "rescan_interval", "skip_duplicates", "stop_timeout", "retry",
                 "retain_days", "order"):
        a, b = getattr(old, name), getattr(new, name)
        if a != b:
            changes.append(f"{name} {a} -> {b}")
    if old.log.level != new.log.level:
        changes.append(f"log.level {old.log.level} -> {new.log.level}")
    if old.log.events != new.log.events:
        changes.append(f"log.events {old.log.events} -> {new.log.events}")
    if old.log.format != new.log.format:
        changes.append(f"log.format {old.log.format} -> {new.log.format}")
    # the endpoint and the webhooks are set up at start: said, not applied (secrets not compared by value)
    if old.metrics_listen != new.metrics_listen:
        changes.append(f"metrics.listen {old.metrics_listen} -> {new.metrics_listen} (at the next start)")
    if [(n.url, n.events) for n in old.notify] != [(n.url, n.events) for n in new.notify]:
        changes.append("notify changed (at the next start)")

    added = tuple(sorted(set(new.targets) - set(old.targets)))
    removed = tuple(sorted(set(old.targets) - set(new.targets)))
    changed = tuple(sorted(n for n in set(old.targets) & set(new.targets)
                           if replace(old.targets[n], max_rate=None) != replace(new.targets[n], max_rate=None)))
    changes += [f"targets.{n}.max_rate {old.targets[n].max_rate} -> {new.targets[n].max_rate}"
                for n in sorted(set(old.targets) & set(new.targets))
                if old.targets[n].max_rate != new.targets[n].max_rate]  # a cap changes in place
    changes += [f"target added: {n}" for n in added]
    changes += [f"target removed: {n}" for n in removed]
    changes += [f"target changed: {n}" for n in changed]

    old_w = {w.path: w for w in old.watches}
    new_w = {w.path: w for w in new.watches}
    changes += [f"watch added: {p}" for p in new_w if p not in old_w]
    changes += [f"watch removed: {p}" for p in old_w if p not in new_w]
    changes += [f"watch changed: {p}" for p in new_w if p in old_w and old_w[p] != new_w[p]]
    keep = frozenset(n for n in new.targets if n in old.targets and n not in changed)
    return Plan(tuple(changes), tuple(problems), added, removed, changed, keep)
