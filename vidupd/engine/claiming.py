"""Filling free worker threads from the ledger within per-target caps (`[targets.NAME]
workers`), so a slow platform cannot occupy every worker: a target running its cap is
skipped (`skip_targets`), and the free threads take the next jobs of the other targets in
the same order."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable, Mapping

from ..ledger import Job

Claim = Callable[[int, int, list[str]], list[Job]]  # (upload limit, poll limit, targets to skip) -> jobs


def claim_within_caps(claim: Claim, submit: Callable[[Job], None], caps: Mapping[str, int], free_uploads: int,
                      free_polls: int, running_targets: Iterable[str]) -> int:
    """Claim and submit jobs for `free_uploads` upload and `free_polls` poll threads, with
    the targets of the uploads running now; returns how many jobs were claimed. One claim takes
    no more uploads than the least room a capped target has left (it might all be that
    target's); while every job asked for came, claim again. Without caps: one claim, both
    lanes in one transaction."""
    claimed = 0
    running = Counter(running_targets)
    while True:
        full = sorted(t for t, cap in caps.items() if running[t] >= cap)
        limit = min([free_uploads] + [cap - running[t] for t, cap in caps.items() if running[t] < cap])
        jobs = claim(limit, free_polls, full)
        free_polls = 0
        for job in jobs:
            submit(job)
        claimed += len(jobs)
        uploads = [j for j in jobs if j.state != "committed"]
        running.update(j.target for j in uploads)
        free_uploads -= len(uploads)
        if not caps or len(uploads) < limit or free_uploads <= 0:
            return claimed
