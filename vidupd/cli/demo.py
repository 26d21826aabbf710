"""`vidupd demo`: the emulated platforms and the daemon in one process, for a first look."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
import time

from ..config import load


def run_demo(args: argparse.Namespace) -> int:
    """Sandbox + daemon in one process, events on stdout, and a sample file to watch go through."""
    from ..config.state_modes import secured
    from ..core.events import LogConfig
    from ..ledger import open_ledger
    from ..sandbox.app import start_sandbox
    from ..sandbox.common import SandboxOptions
    from ..service.daemon import Daemon

    box = start_sandbox(args.dir, SandboxOptions())
    config = dataclasses.replace(secured(load(box.config)), log=LogConfig(events="-", level="info"))
    outbox = config.watches[0].path
    print(f"# vidupd demo: platforms emulated on 127.0.0.1; config {box.config}", file=sys.stderr)
    print(f"# copy video files into {outbox}/ and watch their ids appear below; "
          f"accepted media are listed in {box.journal.path}. Ctrl-C stops.", file=sys.stderr)
    if not args.no_sample:
        sample = outbox / "vidupd-sample.mp4"
        tmp = outbox / ".vidupd-sample.mp4.part"
        tmp.write_bytes(os.urandom(args.sample_mib << 20))  # random bytes: a new video every run
        os.replace(tmp, sample)
    daemon = Daemon(config)
    if args.once:
        def stop_when_settled() -> None:
            started = time.monotonic()
            while time.monotonic() - started < 300:
                time.sleep(0.5)
                try:
                    ledger = open_ledger(config, config.state_dir, readonly=True)
                except Exception:
                    continue
                counts = ledger.counts()
                ledger.close()
                if counts and not any(counts.get(s) for s in ("queued", "uploading", "committed")):
                    break
            daemon.request_stop()

        threading.Thread(target=stop_when_settled, daemon=True).start()
    try:
        return daemon.run()
    finally:
        box.shutdown()
