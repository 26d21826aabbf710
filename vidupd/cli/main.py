"""Command line: run, check-config, status, hosts, upload, retry, sandbox, demo, limit; pause,
resume, cancel and forget (vidupd.cli.control).

Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Sequence

from .. import __version__
from ..config import Config, ConfigError, default_path, load
from ..core.fsnames import safe_text
from ..core.state_lock import AlreadyRunning
from ..ledger.model import STATES
from . import order_cmds
from .hosts import add_parser as hosts_parser
from .limit import add_parser as limit_parser, rate_arg

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _say(line: str) -> None:
    print(safe_text(line), flush=True)  # a non-UTF-8 file name in it shows as \xff, never crashes


def _complain(line: str) -> None:
    print(safe_text(line), file=sys.stderr, flush=True)


def _load(args: argparse.Namespace, writes: bool = False, read_secrets: bool = True) -> Config:
    """The config, its warnings on stderr. A command that `writes` state first makes the
    state dir private (vidupd.core.statedir), warning about what it tightened; a read-only
    one, or one that changes only the ledger (retry, pause, prioritize), need not read the
    platforms' secrets (they work without the unit's credentials); the ledger's own
    password is read whatever `read_secrets` says."""
    from ..config.state_modes import secured

    config = load(args.config, read_secrets=read_secrets)
    if writes:
        config = secured(config)
    for w in config.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return config


def cmd_check_config(args: argparse.Namespace) -> int:
    from ..config.state_modes import secured

    if args.show_plan:  # vidupd.cli.order_cmds: the config checked the same way, then the plan
        return order_cmds.cmd_plan(args)
    config = load(args.config)
    for w in secured(config, change=False).warnings:  # what a run would tighten, changing nothing
        print(f"warning: {w}", file=sys.stderr)
    print(f"{config.source}: ok ({len(config.watches)} watch(es), targets: {', '.join(config.targets)})")
    if config.ledger.shared:  # not connected: a config check must not depend on the server being up
        print(f"{config.source}: ledger: {config.ledger.describe(config.state_dir)} (PostgreSQL; not contacted)")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from ..service.daemon import Daemon

    if args.dry_run:
        return order_cmds.cmd_plan(args)
    return Daemon(_load(args, writes=True)).run()


def cmd_status(args: argparse.Namespace) -> int:
    """The ledger's jobs (vidupd.cli.status_view): a table, `--json`, or live with `--watch`."""
    from . import status_view as view

    config = _load(args, read_secrets=False)  # shows the ledger: needs no platform credentials

    open_readonly = partial(view.open_readonly, config)
    console = view.console_for_stdout()
    if args.watch:
        if args.json or not sys.stdout.isatty():
            print("status: --watch needs a terminal (and no --json); for scripts: status --json in a loop",
                  file=sys.stderr)
            return EXIT_USAGE
        return view.watch(open_readonly, args, config.retry.attempts, console, config.max_rate)
    if args.json and args.since is None:
        args.all = True  # scripts get every job, as before; the table hides finished ones
    ledger = open_readonly()
    if ledger is None:
        print(json.dumps({"counts": {}, "hosts": [], "jobs": []}) if args.json else "no jobs yet")
        return EXIT_OK
    try:
        snap = view.take(ledger, args, config.retry.attempts, schedule=config.max_rate)
    finally:
        ledger.close()
    if args.json:
        print(view.as_json(snap))
    else:
        view.show(snap, console)
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    from .health import check

    return check(_load(args, read_secrets=False))


def cmd_retry(args: argparse.Namespace) -> int:
    from ..ledger import open_ledger

    if not args.jobs and not args.failed:
        print("retry: give job ids or --failed", file=sys.stderr)
        return EXIT_USAGE
    config = _load(args, writes=True, read_secrets=False)  # the ledger alone: no platform credentials
    ledger = open_ledger(config, config.state_dir)
    try:
        missing = [j for j in args.jobs if ledger.get(j) is None]
        if missing:  # a mistyped id changes nothing, and says so (not "0 job(s) queued again")
            print(f"retry: no such job: {', '.join(map(str, missing))} (vidupd status --all lists them)",
                  file=sys.stderr)
            return EXIT_FAILURE
        n = ledger.retry(args.jobs, failed=args.failed)
    finally:
        ledger.close()
    print(f"{n} job(s) queued again")
    return EXIT_OK


def cmd_upload(args: argparse.Namespace) -> int:
    from .oneshot import upload_files

    config = _load(args, writes=True)
    if args.target not in config.targets:
        print(f"{config.source}: targets.{args.target}: no such target (defined: {', '.join(config.targets)})",
              file=sys.stderr)
        return EXIT_USAGE
    return upload_files(config, args.target, [Path(f) for f in args.files], _say, _complain,
                        progress=not args.no_progress, wait_ready=args.wait)


def cmd_pull(args: argparse.Namespace) -> int:
    """URL pull through the ledger: the URLs become a `.url` job under state_dir/pulls, so the
    submission happens once and the status is polled like any other job."""
    from ..core.atomic import write_atomic
    from ..core.statedir import make_dirs
    from ..providers import provider_class
    from ..providers.features import features
    from .oneshot import upload_files

    config = _load(args, writes=True)
    target = config.targets.get(args.target)
    if target is None:
        print(f"{config.source}: targets.{args.target}: no such target", file=sys.stderr)
        return EXIT_USAGE
    if not features(provider_class(target.provider)).pull:  # before anything is written
        print(f"pull: provider {target.provider} cannot pull media from URLs", file=sys.stderr)
        return EXIT_USAGE
    bad = [u for u in args.urls if not u.startswith(("http://", "https://"))]
    if bad:
        print(f"pull: not an http(s) URL: {bad[0]}", file=sys.stderr)
        return EXIT_USAGE
    pulls = config.state_dir / "pulls"
    make_dirs(pulls)  # 0700, as everything under state_dir
    name = f"pull-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    write_atomic(pulls / f"{name}.url", ("\n".join(args.urls) + "\n").encode())
    if args.title:
        write_atomic(pulls / f"{name}.json", json.dumps({"title": args.title}).encode())
    return upload_files(config, args.target, [pulls / f"{name}.url"], _say, _complain, progress=False,
                        wait_ready=not args.no_wait)


def cmd_register(args: argparse.Namespace) -> int:
    """RegisterMedia for files already in the platform's storage; each MediaId is logged."""
    from ..core import events
    from ..ledger import open_ledger
    from ..providers import provider_class
    from ..providers.features import RegistersMedia, features
    from ..service.daemon import build_providers

    config = _load(args, writes=True)
    target = config.targets.get(args.target)
    if target is None:
        print(f"{config.source}: targets.{args.target}: no such target", file=sys.stderr)
        return EXIT_USAGE
    if not features(provider_class(target.provider)).register:  # before a ledger or a session is opened
        print(f"register: provider {target.provider} cannot register media", file=sys.stderr)
        return EXIT_USAGE
    ledger = open_ledger(config, config.state_dir)
    try:
        provider = build_providers(config, ledger, only=args.target)[args.target]
    except BaseException:
        ledger.close()
        raise
    assert isinstance(provider, RegistersMedia)  # what features() said; tells the type checker
    events.configure(config.log, mirror=False)  # its own result lines say what happened
    registered, failed = provider.register(list(args.file_urls), args.title)
    for url, media_id in registered:
        events.emit("media.registered", f"{url}: registered as {media_id}", outcome="success", remote_id=media_id,
                    remote_kind="registered", target=args.target, provider=provider.name, url=url)
        print(f"{url}\t{media_id}")
    for url in failed:
        events.emit("media.register_failed", f"{url}: registration failed", level="error", outcome="failure",
                    target=args.target, provider=provider.name, url=url)
        print(f"{url}\tFAILED", file=sys.stderr)
    provider.close()
    ledger.close()
    return EXIT_OK if not failed else EXIT_FAILURE


def _loopback_endpoint(text: str) -> str:
    """`http://127.0.0.1:PORT` (the sandbox names nothing but loopback), else an argparse error."""
    host, _, port = text.removeprefix("http://").rpartition(":")
    if text and (not text.startswith("http://") or host not in ("127.0.0.1", "localhost") or not port.isdigit()
                 or not 0 < int(port) < 65536):
        raise argparse.ArgumentTypeError(f"{text!r} is not http://127.0.0.1:PORT")
    return text


def cmd_sandbox(args: argparse.Namespace) -> int:
    from ..sandbox.app import run_sandbox

    return run_sandbox(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args)


def cmd_config_reference(args: argparse.Namespace) -> int:
    from ..config.reference import render_markdown

    sys.stdout.write(render_markdown())
    return EXIT_OK


def _since(text: str) -> float:
    from .status_view import since_seconds

    return since_seconds(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vidupd", description="Watch folders and upload finished videos, resumably.")
    p.add_argument("--version", action="version", version=f"vidupd {__version__}", help="show the version and exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="what to do (COMMAND --help: its flags)")

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("-c", "--config", type=Path, default=None,
                        help=f"config file (default: $VIDUPD_CONFIG or {default_path()})")
        return sp

    run = with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    run.set_defaults(func=cmd_run)
    check = with_config(sub.add_parser("check-config", help="validate the config as run would (exit 2 on a "
                                       "problem); writes nothing"))
    check.set_defaults(func=cmd_check_config)
    st = with_config(sub.add_parser("status", help="jobs with state, progress, rate and remote ids"))
    st.add_argument("--json", action="store_true", help="machine-readable output (ISO-8601 times, ETA, next retry)")
    st.add_argument("--state", action="append", choices=STATES, help="only jobs in this state (repeatable)")
    st.add_argument("--all", action="store_true",
                    help="also finished jobs (done, skipped, cancelled), hidden by default")
    st.add_argument("--since", type=_since, metavar="DURATION",
                    help="also jobs finished within DURATION (90s, 15m, 1h, 2d), or only those changed since")
    st.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    st.add_argument("--interval", type=float, default=2.0, help="seconds between --watch refreshes (default 2)")
    st.set_defaults(func=cmd_status)
    with_config(sub.add_parser("health", help="ask the running daemon's /healthz (exit 0 healthy, 1 not)")
                ).set_defaults(func=cmd_health)
    up = with_config(sub.add_parser("upload", help="upload files now, through the same ledger"))
    up.add_argument("--target", required=True, help="the [targets.NAME] to upload to")
    up.add_argument("--no-progress", action="store_true", help="no progress bar")
    up.add_argument("--wait", action="store_true", help="also wait until the platform has processed the media")
    up.add_argument("files", nargs="+", help="the files to upload")
    up.set_defaults(func=cmd_upload)
    pl = with_config(sub.add_parser("pull", help="have the platform fetch media from URLs (UploadMediaByURL)"))
    pl.add_argument("--target", required=True, help="the [targets.NAME] whose platform fetches the URLs")
    pl.add_argument("--title", help="title for the pulled media (default: from the URL)")
    pl.add_argument("--no-wait", action="store_true", help="return once submitted; the daemon polls the status")
    pl.add_argument("urls", nargs="+", help="http(s) URLs of the media")
    pl.set_defaults(func=cmd_pull)
    rg = with_config(sub.add_parser("register", help="register files already in platform storage (RegisterMedia)"))
    rg.add_argument("--target", required=True, help="the [targets.NAME] whose storage holds the files")
    rg.add_argument("--title", help="title for the registered media (default: from the file name)")
    rg.add_argument("file_urls", nargs="+", help="URLs of the files in the platform's storage")
    rg.set_defaults(func=cmd_register)
    rt = with_config(sub.add_parser("retry", help="queue failed jobs again (a cancelled JOB: from scratch)"))
    rt.add_argument("jobs", nargs="*", type=int, help="job ids (vidupd status); an unknown one changes nothing, exit 1")
    rt.add_argument("--failed", action="store_true", help="every failed job")
    rt.set_defaults(func=cmd_retry)
    sb = sub.add_parser("sandbox", help="run the emulated platforms on 127.0.0.1")
    sb.add_argument("--dir", type=Path, required=True, help="data folder; DIR/vidupd.toml is written there")
    sb.add_argument("--fail-rate", type=float, default=0.0, metavar="RATE",
                    help="fraction of requests answered 5xx or dropped (0-1)")
    sb.add_argument("--token-ttl", type=float, default=0.0, metavar="SECONDS",
                    help="lifetime of access tokens and STS credentials (0: each service's default)")
    sb.add_argument("--confirm-delay", type=float, default=0.0, metavar="SECONDS",
                    help="Youku: how long `check` reports 2/3 after the last slice")
    sb.add_argument("--duplicate-ids", action="store_true",
                    help="hand back an id already issued (a platform bug seen in the wild)")
    sb.add_argument("--max-rate", type=rate_arg, default=0, metavar="RATE",
                    help="bytes/s each emulated server reads request bodies at (10M, 10MiB/s, 80Mbit/s; "
                    "default: no cap)")
    sb.add_argument("--hash-only", action="store_true",
                    help="keep digests of received bytes, not the bytes (benchmarks)")
    sb.add_argument("--seed", type=int, default=None, help="random seed, for reproducible fault runs")
    sb.add_argument("--drop-create-answer", type=int, default=0, metavar="N",
                    help="VOD: the first N CreateUploadVideo calls succeed but lose their answer")
    sb.add_argument("--drop-complete-answer", type=int, default=0, metavar="N",
                    help="OSS: the first N CompleteMultipartUpload calls complete, then drop the connection")
    sb.add_argument("--refresh-new-key", type=int, default=0, metavar="N",
                    help="VOD: the Nth RefreshUploadVideo moves the video to a new object key")
    sb.add_argument("--refresh-new-endpoint", type=int, default=0, metavar="N",
                    help="VOD: the Nth RefreshUploadVideo names the OSS endpoint differently")
    sb.add_argument("--throttle-rate", type=float, default=0.0, metavar="RATE",
                    help="VOD: fraction of calls refused with 503 Throttling.User")
    sb.add_argument("--video-status", default="", choices=("", "Checking", "Blocked", "TranscodeFail", "ProduceFail",
                                                           "UploadFail", "Transcoding", "Normal"),
                    help="VOD: the status GetVideoInfo reports once a video is uploaded")
    sb.add_argument("--vod-forbidden", default="", metavar="CODE",
                    help="VOD: refuse every signed call with 403 CODE (e.g. Forbidden.RAM)")
    sb.add_argument("--youku-protocol", choices=("oss", "slices", "both"), default="both",
                    help="Youku create: oss = isnew=1 only, slices = the six steps always, both = by isnew")
    sb.add_argument("--youku-slice-length", type=int, default=0, metavar="BYTES",
                    help="bytes per Youku slice task (default: 12345 bytes short of what the client asks)")
    sb.add_argument("--oss-signature", choices=("v4", "v1", "both"), default="v4",
                    help="OSS signatures accepted: v4 (the default: an account opened since 2025-03), v1, both")
    sb.add_argument("--oss-endpoint", default="", metavar="http://127.0.0.1:PORT", type=_loopback_endpoint,
                    help="VOD: hand out this OSS endpoint instead of the bucket's own (a relay in front of it, "
                         "for network-fault tests); loopback only")
    sb.add_argument("--answer-call", default="", metavar="CALL",
                    help="a hostile server: answer this call (a VOD Action, or a Youku path like /gupload/new_slice) "
                         "with the raw HTTP response in --answer-file")
    sb.add_argument("--answer-file", default="", metavar="FILE",
                    help="the raw HTTP response (status line, headers, blank line, body) for --answer-call")
    sb.add_argument("--answer-times", type=int, default=1, metavar="N",
                    help="how many of the --answer-call calls get it (default 1; later ones are answered normally)")
    sb.add_argument("--hold-answer", default="", metavar="NAME=SECONDS,...",
                    help="act on each request NAME (a VOD Action, an OSS operation such as CompleteMultipartUpload, "
                         "a Youku API such as create or commit), then hold its answer SECONDS (crash tests)")
    sb.set_defaults(func=cmd_sandbox)
    dm = sub.add_parser("demo", help="sandbox and daemon together, for a first look")
    dm.add_argument("--dir", type=Path, default=Path("sandbox-demo"), help="demo data (default ./sandbox-demo)")
    dm.add_argument("--no-sample", action="store_true", help="do not drop a sample file into the outbox")
    dm.add_argument("--sample-mib", type=int, default=8, help="size of the sample file")
    dm.add_argument("--once", action="store_true", help="stop when everything in the outbox is uploaded")
    dm.set_defaults(func=cmd_demo)
    cr = sub.add_parser("config-reference", help="print every config key (type, default, allowed values, meaning)")
    cr.add_argument("--format", choices=("markdown",), default="markdown", help="output format (docs/CONFIG.md is it)")
    cr.set_defaults(func=cmd_config_reference)
    order_cmds.add_arguments(sub, run, check, with_config)

    from .control import add_commands  # pause, resume, cancel, forget

    add_commands(sub, with_config, _load)
    limit_parser(sub, with_config, _load)
    hosts_parser(sub, with_config, _load)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    rc = _main(argv)
    _exit_if_workers_stuck(rc)
    return rc


def _exit_if_workers_stuck(rc: int) -> None:
    """End the process now if a stop gave up on a worker stuck in a system call (Pool.stop):
    a normal exit would join that thread forever (concurrent.futures' atexit hook). The
    command has finished its work (ledger closed, events written); only the flush is left."""
    pool = sys.modules.get("vidupd.engine.pool")  # never imported (status, check-config): no workers
    if pool is not None and pool.workers_left_behind():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(("warning: " if problem.warning else "") + str(problem), file=sys.stderr)
        return EXIT_USAGE
    except AlreadyRunning as e:  # a second daemon on one state_dir: a usage error, say who runs
        print(f"vidupd: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_FAILURE
    except Exception as e:  # runtime failure: one clear line, no traceback with secrets in locals
        from ..core.secrets import redact

        print(f"vidupd: {type(e).__name__}: {redact(str(e))}", file=sys.stderr)
        if os.environ.get("VIDUPD_DEBUG"):
            raise
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
