"""vidupd's own small error tree. Library errors (requests, oss2, aliyunsdkcore) are
translated into these at the provider boundary, so the pool decides on retries by type."""

from __future__ import annotations


class VidupdError(Exception):
    """Base of every error vidupd raises on purpose."""


class ProviderError(VidupdError):
    """A platform call failed. `retry_after` (seconds) is a hint from the platform, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class TransientError(ProviderError):
    """Worth retrying: 5xx, throttling, timeouts, dropped connections."""


class CredentialsExpired(TransientError):
    """Access token or temporary credentials expired; refresh, then retry the same step."""


class PermanentError(ProviderError):
    """Retrying cannot help: rejected input, unknown account, file format refused."""


class ContentMismatch(PermanentError):
    """The bytes sent differ from the job's fingerprint: the file changed after it was hashed
    without its size or mtime showing it (rewritten, mtime forged). Youku says so (a slice's
    or the assembled file's MD5 differs); OSS checks parts only against digests made from
    the same bytes, so for VOD the parts' combined CRC-64 is checked before completing.

    Permanent for this upload (sending the same bytes under the same digest fails again);
    the pool then forgets the job's fingerprint and checkpoint and starts over."""


class NotRegularFile(PermanentError):
    """A file vidupd was to read is a FIFO, directory, socket or device: opening a FIFO would
    block forever and a directory is never media, so the job fails at once (no retries).
    A PermanentError, so every layer that already stops on one (the pool, a provider's
    optional cover) treats it the same way."""

    def __init__(self, path: object, what: str):
        self.path = str(path)
        self.what = what  # "a FIFO", "a directory", "a socket", ...
        self.reason = f"is {what}, not a regular file"
        super().__init__(f"{self.path}: {self.reason}")


class UploadCancelled(VidupdError):
    """The daemon is stopping (or the job was withdrawn); the checkpoint is saved."""


class FileChanged(VidupdError):
    """The source file changed while it was being read; the upload restarts once stable."""


class DuplicateRemoteId(VidupdError):
    """The platform returned an id the ledger already holds for different content."""

    def __init__(self, remote_id: str, other_job: int):
        super().__init__(f"remote id {remote_id} already belongs to job {other_job} with different content")
        self.remote_id = remote_id
        self.other_job = other_job


class LeaseLost(VidupdError):
    """A worker's ledger write was refused: its lease on the job expired and someone else
    (a one-shot beside the daemon, later another host) holds the job now. The worker drops
    the job without another write; the new holder's state stands."""

    def __init__(self, job_id: int, owner: str | None):
        super().__init__(f"job {job_id}: lease lost (no longer held by {owner})")
        self.job_id = job_id
        self.owner = owner
