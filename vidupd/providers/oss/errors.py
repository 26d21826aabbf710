"""oss2 and requests errors as vidupd's own, at the OSS boundary (never quoting credentials)."""

from __future__ import annotations

import oss2
import requests

from ...core.errors import CredentialsExpired, PermanentError, ProviderError, TransientError
from ...core.secrets import redact

# OSS's answers to credentials that expired or were replaced: renew them and go on.
RENEWABLE_CODES = frozenset({"SecurityTokenExpired", "InvalidAccessKeyId", "InvalidSecurityToken"})
_TRANSIENT_CODES = frozenset({"RequestTimeout", "InternalError", "ServiceUnavailable", "InvalidDigest"})


class StsExpired(CredentialsExpired):
    """OSS refused the temporary credentials (expired or replaced): renew them and go on."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


class NoSuchUpload(PermanentError):
    """The multipart upload is gone (aborted, completed, or removed by a lifecycle rule)."""


class AddressChanged(PermanentError):
    """The renewed credentials are for another bucket or object key: the parts sent so far
    cannot be completed there. VOD (RefreshUploadVideo is also its overwrite path) starts the
    object over at the new address; a platform that does not catch it fails the upload."""


class Fatal(Exception):
    """Carries an error out of call_with_retry without further tries."""

    def __init__(self, error: ProviderError):
        super().__init__(str(error))
        self.error = error


def translate_oss(exc: Exception, op: str) -> ProviderError:
    """oss2 (and requests) errors as vidupd's own; never quotes credentials."""
    if isinstance(exc, oss2.exceptions.OssError):
        status, code = int(exc.status), str(exc.code or "")
        if status < 0:  # RequestError (-2: connection, timeout), ClientError (-1), ...
            text = redact(str(exc.body or type(exc).__name__))[:300]
            if status == oss2.exceptions.OSS_REQUEST_ERROR_STATUS:
                return TransientError(f"OSS {op}: connection problem: {text}")
            return PermanentError(f"OSS {op}: {text}")
        message = f"OSS {op}: {code or 'error'} (HTTP {status}): {redact(str(exc.message or ''))[:300]}"
        if exc.request_id:
            message += f" [RequestId {exc.request_id}]"
        if status == 403 and code in RENEWABLE_CODES:
            return StsExpired(message, code)
        if code == "NoSuchUpload":
            return NoSuchUpload(message)
        if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
            return TransientError(message)
        return PermanentError(message)
    if isinstance(exc, (requests.RequestException, OSError)):
        return TransientError(f"OSS {op}: connection problem: {type(exc).__name__}")
    return TransientError(f"OSS {op}: unexpected {type(exc).__name__}")
