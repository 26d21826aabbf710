"""What the provider tests (Youku, Alibaba Cloud VOD) share: a JSON-file checkpoint store,
one upload's Job (request, context and everything the provider told it), a builder of Jobs
for a file, and a writer of test files whose every MiB differs."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from vidupd.core.content import ContentHash
from vidupd.core.model import FileIdentity, Metadata
from vidupd.core.retry import RetryPolicy
from vidupd.core.throttle import Throttle
from vidupd.providers.base import UploadContext, UploadRequest

MIB = 1 << 20
POLICY = RetryPolicy(attempts=5, initial=0.05, maximum=0.5)  # fast retries for the sandboxes


class FileCheckpoint:
    """A CheckpointStore in one JSON file (every saved value must be JSON); `frozen` drops saves,
    as a process killed right after the server's answer would."""

    def __init__(self, path: Path):
        self.path = path
        self.saves: list[dict[str, Any]] = []
        self.frozen = False
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None

    def save(self, state: dict[str, Any]) -> None:
        text = json.dumps(state)
        with self._lock:
            self.saves.append(json.loads(text))
            if not self.frozen:
                self.path.write_text(text)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Job:
    """One upload's request and context, and everything the provider told it."""

    request: UploadRequest
    ctx: UploadContext
    checkpoint: FileCheckpoint
    cancel: threading.Event
    progress: list[int] = field(default_factory=list)
    notes: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    remote_ids: list[tuple[str, str]] = field(default_factory=list)

    def actions(self, action: str) -> list[dict[str, Any]]:
        return [f for a, _, f in self.notes if a == action]


def make_job(path: Path, root: Path, metadata: Metadata, *, kind: str = "video", job_id: int = 1,
             checkpoint: FileCheckpoint | None = None, on_progress: Callable[[Job, int], None] | None = None,
             on_remote_id: Callable[[str, str], None] | None = None, companions: Mapping[str, Path] | None = None,
             throttle: Throttle | None = None, retry: RetryPolicy = POLICY) -> Job:
    """A Job uploading `path` (its MD5 as content): its checkpoint (unless given) lives in `root`, named
    after job_id; no bandwidth cap unless `throttle`. Progress, notes and remote ids are recorded
    on the Job; `on_progress(job, done)` and `on_remote_id(remote_id, kind)` are called after."""
    request = UploadRequest(job_id, path, kind, FileIdentity.of(os.stat(path)), ContentHash("md5", md5_of(path)),
                            metadata, companions=companions or {})
    cp = checkpoint or FileCheckpoint(root / f"checkpoint-{job_id}.json")
    cancel = threading.Event()
    holder: list[Job] = []

    def progress(n: int) -> None:
        holder[0].progress.append(n)
        if on_progress is not None:
            on_progress(holder[0], n)

    def note(action: str, message: str, **fields: Any) -> None:
        holder[0].notes.append((action, message, fields))

    def remote_id_known(remote_id: str, remote_kind: str) -> None:
        holder[0].remote_ids.append((remote_id, remote_kind))
        if on_remote_id is not None:
            on_remote_id(remote_id, remote_kind)

    ctx = UploadContext(checkpoint=cp, progress=progress, remote_id_known=remote_id_known, note=note,
                        cancel=cancel, throttle=throttle or Throttle(None), retry=retry)
    job = Job(request, ctx, cp, cancel)
    holder.append(job)
    return job


def write_file(path: Path, size: int, seed: int = 1) -> Path:
    """`size` bytes from `seed`; each MiB starts with its own offset, so parts and slices differ."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MIB // 32)
    with open(path, "wb") as f:
        for i in range(0, size, MIB):
            f.write((i.to_bytes(8, "big") + block)[: min(MIB, size - i)])
    return path


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def record_issued_secrets(oss: Any, vod: Any, into: list[str]) -> None:
    """Wrap the OSS sandbox's STS issue and the VOD sandbox's upload info so every temporary
    secret they hand out (STS secret and token, UploadAuth) is appended to `into`: the
    secret-leak checks search for all of them."""
    real_issue, real_info = oss.sts.issue, vod._upload_info

    def issue(*args: Any, **kw: Any) -> Any:
        cred = real_issue(*args, **kw)
        into.extend((cred.access_key_secret, cred.security_token))
        return cred

    def upload_info(key: str, *rest: Any) -> dict[str, str]:
        info = real_info(key, *rest)
        into.append(info["UploadAuth"])
        return info

    oss.sts.issue, vod._upload_info = issue, upload_info
