"""Before a job is sent: is the file still the one queued, must it be read for its content
first, and is the same content already on (or on its way to) the target?

Reading a file before sending it costs a whole extra pass (for a 200 GB master on a NAS,
hours before the first byte leaves), so it is done only when needed:
  - the provider needs the whole file's MD5 before it starts (`needs_md5`: Youku's create
    call declares it), or
  - duplicates are skipped and the ledger holds another job of the same size for the target
    that may be the same content (`Ledger.twin_possible`: queued or uploading, or finished
    with its content known); else `Ledger.send_unhashed` marks the job in the same
    transaction as the check.
Otherwise the file is sent with no fingerprint, and the provider reports the content id it
computed while sending (`UploadResult.content_id`), which the commit stores: a job of the
same size that comes later hashes and compares with it. Of two identical files queued
together each sees the other, so both hash and `record_content` lets exactly one go; a
hashed job that finds a same-size job sending unhashed waits until that one has committed
its content id (then skip or go) or failed.

Trade-off: an unhashed file has nothing to compare the sent bytes with, so a lone file
rewritten in place during its upload with its size and mtime kept (a forged mtime) is no
longer caught by the provider's content check; a hashed one still is.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from ..core.content import ContentHash, content_hash
from ..core.errors import FileChanged, NotRegularFile
from ..core.model import FileIdentity
from ..core.safe_open import check_regular
from ..ledger import Failed, Job, Ledger, Outcome, Skipped, WaitForTwin
from ..providers.base import Provider

VANISHED = "FileNotFoundError"  # the error_type of a job failed because its file is gone: given up for good


@dataclass(frozen=True)
class Prepared:
    """What the upload request carries about the content."""

    content: ContentHash | None  # None: not read before sending


def prepare(job: Job, provider: Provider, ledger: Ledger, lease: dict, skip_duplicates: bool,
            cancel: threading.Event) -> Prepared | Outcome:
    """`Prepared` to send the job, or the outcome to apply instead (failed, skipped as a
    duplicate, waiting for a twin). FileChanged if the file is not the version queued."""
    try:
        st = os.stat(job.path)
        check_regular(job.path, st)  # a FIFO would block the worker in open(); a directory is no media
    except FileNotFoundError:
        return Failed("file disappeared before it was uploaded", VANISHED)
    except NotRegularFile as e:  # permanent: no retries (queued by a one-shot of an older version)
        return Failed(e.reason, type(e).__name__)
    if FileIdentity.of(st) != job.identity:
        raise FileChanged(f"{job.path} changed after it was queued")
    # the ledger's content column holds what an earlier attempt hashed
    content = ContentHash.from_content_id(job.md5) if job.md5 is not None else None
    # (a plain read first: a folder of same-size files has twins everywhere, and needs no write to say so)
    if content is None and (provider.needs_md5 or (skip_duplicates and (
            ledger.twin_possible(job.id) or not ledger.send_unhashed(job.id, **lease)))):
        # one read pass: the MD5 (and piece MD5s) if the provider needs them, else CRC-64 (~20x cheaper)
        content = content_hash(job.path, job.identity, "md5" if provider.needs_md5 else "crc64", cancel=cancel,
                               piece_size=provider.piece_size)
    if content is None:
        return Prepared(None)
    # One transaction records the fingerprint and looks for twins, so of two identical
    # files hashed at the same time exactly one is sent and the other waits for it.
    verdict, twin = ledger.record_content(job.id, content.content_id, skip_duplicates, **lease)
    if verdict == "skip":
        assert twin is not None
        return Skipped(twin.id, str(twin.path), twin.remote_id, twin.remote_kind)
    if verdict == "wait":
        assert twin is not None
        return WaitForTwin(twin.id)
    return Prepared(content)

