"""Youku's OSS-based upload (PROTOCOLS.md section 3), the server side: `create` with
isnew=1 hands out an object key in the Youku bucket and STS credentials limited to it,
`get_sts_inf` renews them, `commit` checks the object (size and whole-file MD5) before the
video exists, `cancel` kills the token and drops what was uploaded.

The Youku bucket is a second `OssSandbox` (its own port, data dir, bucket name and
region), as strict as VOD's: V1/V4 signatures as the OSS sandbox verifies them, STS
credentials that reach only the upload's object and expire after --token-ttl (else
3,000 s). Upload sessions live in the six-step flow's `UploadStore` (one token space,
one commit journal, one videos/show); this module only adds what OSS needs.

Wire answers (JSON):
  create (HTTP 201): upload_token, endpoint ("http://127.0.0.1:PORT"), oss_bucket,
    oss_object, temp_access_id, temp_access_secret, security_token, expire_time
    ("%Y-%m-%dT%H:%M:%SZ", UTC).
  get_sts_inf (HTTP 200): endpoint, security_token, temp_access_id, temp_access_secret,
    expire_time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

from .common import SandboxOptions, UploadsJournal
from .oss import OssSandbox
from .oss_store import ObjectInfo
from .oss_xml import OssError
from .youku_state import (
    FILE_MD5_MISMATCH,
    FILE_SIZE_MISMATCH,
    PARAM_INVALID,
    UPLOAD_INCOMPLETE,
    Session,
    UploadMeta,
    UploadStore,
    YoukuError,
)

__all__ = ["YoukuOssFlow", "YOUKU_BUCKET", "YOUKU_REGION", "DEFAULT_STS_TTL"]

YOUKU_BUCKET = "youku-sandbox"
YOUKU_REGION = "cn-shanghai"
DEFAULT_STS_TTL = 3000.0  # seconds, as Alibaba Cloud's upload credentials last
EXPIRE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class YoukuOssFlow:
    """The OSS flow's calls, over the Youku bucket and the shared upload store.

    Counters (for tests; read them, never write): `sts_issued` (credentials handed out by
    create and get_sts_inf), `sts_renewed` (by get_sts_inf only), `objects_verified`
    (commits whose object passed the size/MD5 check), `put_bytes_received` (bytes of
    objects completed by PutObject; multipart bodies are in `oss.part_bytes_received`),
    and `bytes_received` (both: every UploadPart body, repeats included, plus PutObject).
    """

    def __init__(self, data_dir: Path, options: SandboxOptions, journal: UploadsJournal, store: UploadStore,
                 port: int = 0):
        self._options = options
        self._journal = journal
        self._store = store
        self.oss = OssSandbox(data_dir, options, journal, port=port, bucket=YOUKU_BUCKET, region=YOUKU_REGION)
        self.oss.add_completion_hook(self._object_completed)
        self._lock = threading.Lock()
        self.sts_issued = 0
        self.sts_renewed = 0
        self.objects_verified = 0
        self.put_bytes_received = 0

    # ---- lifecycle (the Youku sandbox starts and stops its bucket with its own servers) ----

    def start(self) -> None:
        """Bind the bucket's port; a remembered port that is taken now gives way to a free one."""
        try:
            self.oss.start()
        except OSError:
            if not self.oss._port:  # noqa: SLF001 - same package; port 0 cannot be "taken"
                raise
            self.oss._port = 0  # noqa: SLF001
            self.oss.start()

    def shutdown(self) -> None:
        self.oss.shutdown()

    @property
    def bytes_received(self) -> int:
        return self.oss.part_bytes_received + self.put_bytes_received

    # ---- the calls ----

    def create(self, meta: UploadMeta) -> dict[str, Any]:
        """uploads/create.json with isnew=1: a token, an object key and credentials for it."""
        token, _ = self._store.create(meta, oss_key=lambda t: object_key(t, meta.file_name))
        s = self._store.oss_session(token, meta.client_id)
        return {"upload_token": token, "oss_bucket": self.oss.bucket, "oss_object": s.oss_object,
                **self._credentials(s.oss_object)}

    def renew(self, params: dict[str, str]) -> dict[str, Any]:
        """uploads/get_sts_inf.json: fresh credentials for the same object (the multipart
        upload started with the old ones continues with these)."""
        s = self._store.oss_session(params["upload_token"], params["client_id"])
        if params.get("oss_bucket") != self.oss.bucket:
            raise YoukuError(PARAM_INVALID, "Invalid parameter: oss_bucket is not this upload's bucket",
                             "SystemException")
        if params.get("oss_object") != s.oss_object:
            raise YoukuError(PARAM_INVALID, "Invalid parameter: oss_object is not this upload's object",
                             "SystemException")
        answer = self._credentials(s.oss_object)
        with self._lock:
            self.sts_renewed += 1
        return answer

    def check_object(self, s: Session) -> None:
        """commit.json: the object must be complete, of file_size bytes, with file_md5.

        In hash_only mode a multipart object has no whole-file MD5 (OSS keeps part digests
        only), so there the size alone is checked; PutObject objects are checked fully."""
        info = self.oss.object_info(s.oss_object)
        if info is None:
            pending = any(key == s.oss_object for _, key in self.oss.store.incomplete_uploads())
            why = "its multipart upload is not completed" if pending else "nothing was uploaded"
            raise YoukuError(UPLOAD_INCOMPLETE, f"upload is not complete: {why} (object {s.oss_object})")
        if info.size != s.meta.file_size:
            raise YoukuError(FILE_SIZE_MISMATCH,
                             f"object is {info.size} bytes; file_size given at create was {s.meta.file_size}")
        if info.md5 is not None and info.md5 != s.meta.file_md5:
            raise YoukuError(FILE_MD5_MISMATCH, f"uploaded object MD5 {info.md5} differs from file_md5 "
                             f"{s.meta.file_md5}")
        with self._lock:
            self.objects_verified += 1

    def discard(self, key: str) -> None:
        """After cancel/expiry: the object and any multipart upload of it are dropped."""
        if not key:
            return
        for upload_id, k in list(self.oss.store.incomplete_uploads()):
            if k == key:
                with contextlib.suppress(OssError):
                    self.oss.store.abort(upload_id, key)
        self.oss.store.delete(key)

    # ---- helpers ----

    def _credentials(self, key: str) -> dict[str, str]:
        ttl = self._options.token_ttl or DEFAULT_STS_TTL
        auth = self.oss.issue_sts(ttl, prefix=key)
        with self._lock:
            self.sts_issued += 1
        return {
            "endpoint": self.oss.endpoint,
            "temp_access_id": auth["AccessKeyId"],
            "temp_access_secret": auth["AccessKeySecret"],
            "security_token": auth["SecurityToken"],
            "expire_time": auth["ExpireUTCTime"],
        }

    def _object_completed(self, info: ObjectInfo) -> None:
        if "-" not in info.etag:  # PutObject (a multipart ETag ends in -N; its parts are counted by OSS)
            with self._lock:
                self.put_bytes_received += info.size


def object_key(token: str, file_name: str) -> str:
    """Where an upload's bytes go: a per-day folder, the token, the file's extension."""
    ext = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else "bin"
    return f"videos/{time.strftime('%Y%m%d', time.gmtime())}/{token}.{ext}"
