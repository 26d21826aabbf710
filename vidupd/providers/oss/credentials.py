"""Temporary (STS) OSS credentials and the keeper that renews them for every part thread.

A platform grants an upload an OSS address and STS credentials that expire (VOD: with
Create*/RefreshUploadVideo; Youku: uploads/get_sts_inf.json). `StsCredentials` is that
grant as one frozen value; the secret and the token are `Secret`s, so no repr, log line or
exception can show them. `StsKeeper` holds the live oss2.Bucket built on them and renews
them through the platform's `renew` callback at most ONCE per expiry however many part
threads notice it (shortly before they expire, or when OSS answers SecurityTokenExpired /
InvalidAccessKeyId / InvalidSecurityToken), so the same multipart upload goes on.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import oss2

from ...core.errors import CredentialsExpired
from ...core.secrets import Secret, reveal
from .errors import AddressChanged, Fatal

RENEW_MARGIN_MAX = 300.0  # renew credentials this many seconds before they expire at most...
RENEW_MARGIN_FRACTION = 0.1  # ...or this fraction of their lifetime, whichever is smaller

Note = Callable[..., None]


@dataclass(frozen=True)
class StsCredentials:
    """Where one object goes (endpoint, bucket, key) and the temporary credentials to send
    it with. Never persisted, never logged: the secret and token are hidden Secrets."""

    access_key_id: str
    access_key_secret: Secret = field(repr=False)
    security_token: Secret = field(repr=False)
    expires_at: float  # local epoch seconds
    lifetime: float  # seconds the credentials were issued for
    endpoint: str  # with its scheme, e.g. https://oss-cn-shanghai.aliyuncs.com
    bucket: str
    key: str

    def renewal_due(self, now: float | None = None) -> bool:
        """Whether they are close enough to expiry to renew before the next call."""
        margin = min(RENEW_MARGIN_MAX, RENEW_MARGIN_FRACTION * self.lifetime)
        return (time.time() if now is None else now) >= self.expires_at - margin


Renew = Callable[[], StsCredentials]


class StsKeeper:
    """The live credentials of one upload and an oss2.Bucket built on them.

    `renew` (None when the platform cannot refresh them, as for VOD images) runs at most
    once per expiry however many part threads notice it; it must return credentials for
    the same bucket and key."""

    def __init__(self, credentials: StsCredentials, renew: Renew | None, session: oss2.Session,
                 timeout: tuple[float, float], note: Note):
        self._renew_fn = renew
        self._session = session
        self._timeout = timeout
        self._note = note
        self._lock = threading.Lock()
        self._renew_lock = threading.Lock()
        self._creds = credentials
        self._bucket = self._make(credentials)

    def _make(self, c: StsCredentials) -> oss2.Bucket:
        auth = oss2.StsAuth(c.access_key_id, reveal(c.access_key_secret), reveal(c.security_token))
        return oss2.Bucket(auth, c.endpoint, c.bucket, session=self._session, connect_timeout=self._timeout,
                           enable_crc=False)  # CRC-64 is computed while streaming, with fastcrc

    @property
    def credentials(self) -> StsCredentials:
        with self._lock:
            return self._creds

    def bucket(self) -> tuple[StsCredentials, oss2.Bucket]:
        """Current credentials and bucket, renewed first when they are about to expire."""
        with self._lock:
            creds, bucket = self._creds, self._bucket
        if self._renew_fn is not None and creds.renewal_due():
            self.renew(creds, "expiring")
            with self._lock:
                return self._creds, self._bucket
        return creds, bucket

    def renew(self, stale: StsCredentials, reason: str) -> None:
        """Replace `stale` with fresh credentials unless another thread already did."""
        if self._renew_fn is None:
            raise Fatal(CredentialsExpired(f"OSS refused the upload credentials ({reason}); they cannot be "
                                           "refreshed for this media type, so the upload will start again"))
        with self._renew_lock:
            with self._lock:
                if self._creds is not stale:
                    return
            fresh = self._renew_fn()
            if (fresh.bucket, fresh.key) != (stale.bucket, stale.key):  # only the endpoint may change
                raise Fatal(AddressChanged("the renewed upload credentials are for a different upload address "
                                           "(bucket or object key)"))
            with self._lock:
                self._creds, self._bucket = fresh, self._make(fresh)
        self._note("auth.refreshed", f"upload credentials refreshed ({reason})", reason=reason)
