"""`vidupd pause`, `resume`, `cancel` and `forget`: the operator's hold on the queue.

Pause and resume change `control.pause` in the ledger (vidupd.service.controls), which the
running daemon applies within a second; nothing needs the daemon to be running. Cancel is
fenced through the ledger: a job some process holds is marked and stopped by its holder at
its next check (<= 1 s in the daemon), a job nobody holds is leased and cancelled here
(vidupd.ledger.sqlite_control). Forget drops finished jobs with the pruning delete.
Exit codes: 0 all done, 1 a job that does not exist or could not be handled (named), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from ..config import Config
from ..core.fsnames import safe_text

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
CANCEL_LEASE = 120.0  # seconds the command holds a job it cancels itself (one abandon request each)


def _out(line: str, err: bool = False) -> None:
    print(safe_text(line), file=sys.stderr if err else sys.stdout, flush=True)


def _scope(config: Config, args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """(scope, name) pairs the options name, [("all", "")] for none; None (said) if unknown."""
    from ..service.controls import ALL, TARGET, WATCH

    pairs: list[tuple[str, str]] = []
    for t in args.target or ():
        if t not in config.targets:
            _out(f"{config.source}: targets.{t}: no such target (defined: {', '.join(config.targets)})", err=True)
            return None
        pairs.append((TARGET, t))
    watches = {str(w.path): w for w in config.watches}
    for given in args.watch or ():
        path = str(Path(given).expanduser().resolve())
        if path not in watches:
            _out(f"{config.source}: watch: no watch of {given} (watched: {', '.join(watches)})", err=True)
            return None
        pairs.append((WATCH, path))
    return pairs or [(ALL, "")]


def cmd_pause(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    from ..ledger import LedgerShared, open_ledger
    from ..service.controls import change_pause, operator

    config = load(args, writes=True, read_secrets=False)
    pairs = _scope(config, args)
    if pairs is None:
        return EXIT_USAGE
    ledger = open_ledger(config, config.state_dir)
    by, now = operator(), time.time()

    def add(current):  # type: ignore[no-untyped-def]
        for scope, name in pairs:
            current = current.paused(scope, name, by, now)
        return current

    try:
        paused = change_pause(LedgerShared(ledger), add)
    finally:
        ledger.close()
    _out(f"paused: {paused.describe()} (the daemon stops running uploads in it within a second; "
         "`vidupd resume` continues them)")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    from ..ledger import LedgerShared, open_ledger
    from ..service.controls import ALL, change_pause

    config = load(args, writes=True, read_secrets=False)
    pairs = _scope(config, args)
    if pairs is None:
        return EXIT_USAGE
    everything = pairs == [(ALL, "")]

    def drop(current):  # type: ignore[no-untyped-def]
        if everything:
            return current.resumed(None)
        for scope, name in pairs:
            current = current.resumed(scope, name)
        return current

    ledger = open_ledger(config, config.state_dir)
    try:
        left = change_pause(LedgerShared(ledger), drop)
    finally:
        ledger.close()
    _out(f"resumed; still paused: {left.describe()}" if left.entries else "resumed: nothing is paused")
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    """Cancel each job for good (see the module); waits up to --timeout for holders."""
    from ..core import events
    from ..engine.abandon import cancel_job
    from ..engine.pool_settings import job_fields
    from ..ledger import LeaseLost, lease_owner_id, open_ledger
    from ..providers.base import Provider
    from ..service.daemon import build_providers

    config = load(args, writes=True)
    events.configure(config.log, mirror=False)  # its result lines say what happened
    ledger = open_ledger(config, config.state_dir)
    ledger.recover()  # a holder on this host that died (kill -9) leaves no lease to wait for
    owner = lease_owner_id()
    providers: dict[str, Provider | None] = {}
    status = EXIT_OK

    def provider_for(target: str) -> Provider | None:
        if target not in providers:
            providers[target] = (build_providers(config, ledger, only=target)[target]
                                 if target in config.targets else None)
        return providers[target]

    def refuse(line: str) -> None:
        nonlocal status
        status = EXIT_FAILURE
        _out(line, err=True)

    try:
        pending: list[int] = []
        for job_id, job in ledger.request_cancel(args.jobs).items():
            if job is None:
                refuse(f"job {job_id}: no such job")
            elif job.state == "cancelled":
                _out(f"job {job_id}: already cancelled")
            elif job.state == "done":
                refuse(f"job {job_id}: already uploaded to {job.target} as {job.remote_id}; nothing to cancel "
                       f"(`vidupd forget {job_id}` drops it from the ledger)")
            elif job.state == "committed":
                refuse(f"job {job_id}: already uploaded to {job.target} as {job.remote_id} (the platform is "
                       "processing it); nothing to cancel")
            elif job.state == "skipped":
                refuse(f"job {job_id}: skipped, nothing was sent ({job.last_error or 'not uploaded'}); "
                       f"`vidupd forget {job_id}` drops it")
            else:
                pending.append(job_id)
        deadline = time.monotonic() + args.timeout
        while pending:
            for job_id in list(pending):
                job = ledger.take_for_cancel(owner, job_id, CANCEL_LEASE)
                if job is not None:  # nobody held it: ours now, cancelled here
                    provider = provider_for(job.target)
                    lease = dict(owner=owner, generation=job.lease_gen)
                    try:
                        _, cleanup = cancel_job(job, provider, ledger, lease,
                                                job_fields(job, provider.name if provider else None))
                    except LeaseLost:
                        continue  # taken over meanwhile (expired): look again
                    pending.remove(job_id)
                    _out(f"job {job_id}: cancelled ({safe_text(job.path)} to {job.target})"
                         + (f"; {cleanup}" if cleanup else ""))
                    continue
                now = ledger.get(job_id)
                if now is None or now.state == "cancelled":
                    pending.remove(job_id)
                    _out(f"job {job_id}: cancelled by its holder" if now else f"job {job_id}: gone (forgotten)")
                elif now.state in ("done", "committed", "skipped"):
                    pending.remove(job_id)
                    refuse(f"job {job_id}: finished before the cancel reached it ({now.state}"
                           + (f", {now.remote_id})" if now.remote_id else ")"))
            if pending and time.monotonic() >= deadline:
                for job_id in pending:
                    held = ledger.get(job_id)
                    refuse(f"job {job_id}: cancel requested, but its holder ({held.lease_owner if held else '?'}) "
                           f"has not stopped it within {args.timeout:g}s; it will at its next check")
                break
            if pending:
                time.sleep(0.2)
    finally:
        for p in providers.values():
            if p is not None:
                p.close()
        ledger.close()
    return status


def cmd_forget(args: argparse.Namespace, load: Callable[..., Config]) -> int:
    """Drop finished jobs (done, skipped, cancelled, failed) from the ledger."""
    from ..core import events
    from ..ledger import FORGETTABLE, open_ledger

    config = load(args, writes=True, read_secrets=False)
    events.configure(config.log, mirror=False)
    ledger = open_ledger(config, config.state_dir)
    status = EXIT_OK
    try:
        chosen = {}
        for job_id in sorted(set(args.jobs)):
            job = ledger.get(job_id)
            why = None
            if job is None:
                why = "no such job"
            elif job.state in ("queued", "uploading"):
                why = f"{job.state}; cancel it first (`vidupd cancel {job_id}`)"
            elif job.state == "committed":
                why = "uploaded, the platform is still processing it; forget it once it is done"
            elif job.state == "attention":
                why = "needs attention; `vidupd retry` or `vidupd cancel` it first"
            elif job.state == "failed" and ledger.checkpoint(job_id).load():
                why = (f"failed with an unfinished upload on {job.target}; `vidupd cancel {job_id}` first (it "
                       "cleans the upload up there), then forget it")
            if why is not None:
                status = EXIT_FAILURE
                _out(f"job {job_id}: {why}", err=True)
            else:
                chosen[job_id] = job
        ledger.forget(chosen, None, FORGETTABLE)
        for job_id, job in chosen.items():
            if ledger.get(job_id) is not None:
                status = EXIT_FAILURE
                _out(f"job {job_id}: changed meanwhile; not forgotten", err=True)
                continue
            events.emit("ledger.forgotten", f"{job.path.name}: job {job_id} ({job.state}) forgotten; the same "
                        "content may be sent again", job_id=job_id, path=str(job.path), target=job.target,
                        state=job.state, remote_id=job.remote_id)
            _out(f"job {job_id}: forgotten ({safe_text(job.path)} to {job.target}, was {job.state}"
                 + (f" as {job.remote_id})" if job.remote_id else ")"))
    finally:
        ledger.close()
    return status


def add_commands(sub: argparse._SubParsersAction, with_config: Callable[[argparse.ArgumentParser],
                 argparse.ArgumentParser], load: Callable[..., Config]) -> None:
    """The subcommands, with their help."""
    for name, func, text in (
            ("pause", cmd_pause, "stop starting uploads (all, or --target/--watch); running ones checkpoint and "
                                 "stop; survives a restart"),
            ("resume", cmd_resume, "continue what `pause` stopped (all, or only --target/--watch)")):
        sp = with_config(sub.add_parser(name, help=text, description=text))
        sp.add_argument("--target", action="append", metavar="NAME",
                        help="only uploads to this target (repeatable)")
        sp.add_argument("--watch", action="append", metavar="PATH",
                        help="only uploads of files from this watched folder (repeatable)")
        sp.set_defaults(func=lambda a, f=func: f(a, load))
    cancel_help = ("give jobs up for good: the platform upload is cancelled (Youku cancel.json, OSS "
                   "AbortMultipartUpload), the job ends `cancelled` and its file is not offered again unless it "
                   "changes or `vidupd retry JOB` is asked")
    cn = with_config(sub.add_parser("cancel", help=cancel_help, description=cancel_help))
    cn.add_argument("jobs", nargs="+", type=int, metavar="JOB", help="job id (see `vidupd status`)")
    cn.add_argument("--timeout", type=float, default=30.0,
                    help="seconds to wait for a process holding a job to stop it (default 30)")
    cn.set_defaults(func=lambda a: cmd_cancel(a, load))
    forget_help = ("drop finished jobs (done, skipped, cancelled, failed) from the ledger, so the same content "
                   "can be sent again on purpose: a file still in a watched folder (after_upload = keep) is "
                   "offered again at the next rescan and uploaded again")
    fg = with_config(sub.add_parser("forget", help=forget_help, description=forget_help))
    fg.add_argument("jobs", nargs="+", type=int, metavar="JOB", help="job id (see `vidupd status --all`)")
    fg.set_defaults(func=lambda a: cmd_forget(a, load))
