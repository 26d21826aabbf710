"""`vidupd sandbox`: both platforms on 127.0.0.1, and a config that points vidupd at them.

Writes DIR/vidupd.toml (watch DIR/outbox, a Youku target and a VOD target, state in
DIR/state, events to DIR/events.jsonl); every accepted media object is appended to
DIR/uploads.jsonl, and the request-body bytes each server received per second are kept in
DIR/received.json (rewritten every second). Ports are remembered in DIR/ports.json and reused on the next start, so
an upload that remembered its upload server can resume after a sandbox restart.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from .common import ReceiveMeter, SandboxOptions, UploadsJournal, write_atomic
from .oss import OssSandbox
from .vod import VodSandbox
from .youku import YoukuSandbox

_PROVIDERS_DIR = Path(__file__).resolve().parent.parent / "providers"


@dataclass
class Sandbox:
    """The running emulated services and where their config was written."""

    dir: Path
    youku: YoukuSandbox
    oss: OssSandbox
    vod: VodSandbox
    config: Path
    journal: UploadsJournal
    youku_oss: OssSandbox  # the Youku bucket of the OSS flow (owned and started by `youku`)

    def shutdown(self) -> None:
        for service in (self.vod, self.oss, self.youku):
            service.shutdown()

    def meters(self) -> dict[str, ReceiveMeter]:
        """What each server that takes media bytes received, per second: VOD's OSS bucket,
        Youku's OSS-flow bucket, Youku's slice upload server."""
        return {"oss": self.oss.received, "youku_oss": self.youku_oss.received, "youku_upload": self.youku.received}

    def write_received(self) -> None:
        """DIR/received.json: {server: {"total": bytes, "per_second": {epoch second: bytes}}}."""
        data = {name: {"total": m.total, "per_second": m.per_second()} for name, m in self.meters().items()}
        write_atomic(self.dir / "received.json", json.dumps(data, sort_keys=True).encode())


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _start_all(data: Path, options: SandboxOptions, journal: UploadsJournal, ports: dict[str, int]) -> Sandbox:
    youku = YoukuSandbox(data, options, journal, api_port=ports.get("youku_api", 0),
                         upload_port=ports.get("youku_upload", 0), oss_port=ports.get("youku_oss", 0))
    oss = OssSandbox(data, options, journal, port=ports.get("oss", 0))
    vod = VodSandbox(data, options, journal, oss, port=ports.get("vod", 0))
    started = []
    try:
        for s in (youku, oss, vod):
            s.start()
            started.append(s)
    except OSError:
        for s in reversed(started):
            s.shutdown()
        raise
    return Sandbox(data, youku, oss, vod, data / "vidupd.toml", journal, youku.oss)


def start_sandbox(directory: Path, options: SandboxOptions, settle_seconds: float = 1.0) -> Sandbox:
    data = directory.resolve()
    (data / "outbox").mkdir(parents=True, exist_ok=True)
    (data / "state").mkdir(exist_ok=True, mode=0o700)  # the client's state dir: private (its ledger holds tokens)
    journal = UploadsJournal(data / "uploads.jsonl")
    ports_file = data / "ports.json"
    saved = json.loads(ports_file.read_text()) if ports_file.exists() else {}
    try:
        box = _start_all(data, options, journal, saved)
    except OSError:  # a remembered port is taken now: take fresh ones
        box = _start_all(data, options, journal, {})
    ports = {"youku_api": _port(box.youku.api_base), "youku_upload": _port(box.youku.upload_server),
             "oss": _port(box.oss.endpoint), "vod": _port(box.vod.endpoint),
             "youku_oss": _port(box.youku_oss.endpoint)}
    write_atomic(ports_file, json.dumps(ports).encode())
    write_atomic(box.config, render_config(box, settle_seconds).encode())
    return box


def render_config(box: Sandbox, settle_seconds: float) -> str:
    """The generated vidupd.toml. The sandbox's credentials are not secrets, so they are inline."""
    yk = box.youku.credentials
    d = box.dir
    targets = ["youku"]
    lines = [
        "# Written by `vidupd sandbox`: vidupd against the emulated platforms on 127.0.0.1.",
        "# Drop a file into the outbox; its ids appear in events.jsonl (and uploads.jsonl).",
        f'state_dir = "{d / "state"}"',
        "workers = 2",
        "",
        "[log]",
        f'events = "{d / "events.jsonl"}"',
        'level = "info"',
        "",
        "[targets.youku]",
        'provider = "youku"',
        f'api_base = "{box.youku.api_base}"',
        f'client_id = "{yk["client_id"]}"',
        f'client_secret = "{yk["client_secret"]}"',
        f'access_token = "{yk["access_token"]}"',
        f'refresh_token = "{yk["refresh_token"]}"',
        "ready_timeout = 300",
    ]
    if (_PROVIDERS_DIR / "aliyun_vod" / "provider.py").exists():  # checked by file, never by importing client code
        vc = box.vod.credentials
        targets.append("vod")
        lines += [
            "",
            "[targets.vod]",
            'provider = "aliyun-vod"',
            f'endpoint = "{box.vod.endpoint}"',
            f'region = "{box.vod.region}"',
            f'access_key_id = "{vc["access_key_id"]}"',
            f'access_key_secret = "{vc["access_key_secret"]}"',
            "ready_timeout = 300",
        ]
    lines += [
        "",
        "[[watch]]",
        f'path = "{d / "outbox"}"',
        f"targets = {json.dumps(targets)}",
        f"settle_seconds = {settle_seconds}",
        "",
    ]
    return "\n".join(lines)


def options_from(args: argparse.Namespace) -> SandboxOptions:
    return SandboxOptions(fail_rate=args.fail_rate, token_ttl=args.token_ttl, confirm_delay=args.confirm_delay,
                          duplicate_ids=args.duplicate_ids, max_rate=args.max_rate, hash_only=args.hash_only,
                          seed=args.seed,
                          drop_create_answer=args.drop_create_answer, drop_complete_answer=args.drop_complete_answer,
                          refresh_new_key=args.refresh_new_key, refresh_new_endpoint=args.refresh_new_endpoint,
                          throttle_rate=args.throttle_rate, video_status=args.video_status,
                          vod_forbidden=args.vod_forbidden, youku_protocol=args.youku_protocol,
                          youku_slice_length=args.youku_slice_length, oss_signature=args.oss_signature,
                          oss_endpoint=args.oss_endpoint,
                          answer_call=args.answer_call, answer_file=args.answer_file, answer_times=args.answer_times,
                          hold_answer=args.hold_answer)


def run_sandbox(args: argparse.Namespace) -> int:
    box = start_sandbox(args.dir, options_from(args))
    print(f"sandbox running on 127.0.0.1: youku api {box.youku.api_base}, upload {box.youku.upload_server}, "
          f"youku oss {box.youku_oss.endpoint}, vod {box.vod.endpoint}, oss {box.oss.endpoint}", flush=True)
    print(f"config: {box.config}  (vidupd run -c {box.config})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        box.write_received()  # what each server received, per second (DIR/received.json)
    box.write_received()
    box.shutdown()
    return 0
