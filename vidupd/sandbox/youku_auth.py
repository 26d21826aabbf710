"""The one app and user the emulated Youku knows: client id/secret and the access/refresh
token pair, which rotates on refresh and is persisted (a restarted sandbox honours it)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from pathlib import Path

from .common import write_atomic
from .youku_params import Params, need
from .youku_state import ACCESS_TOKEN_EXPIRED, ACCESS_TOKEN_INVALID, CLIENT_ID_INVALID, PARAM_INVALID, YoukuError

__all__ = ["Auth", "DEFAULT_TOKEN_TTL"]

DEFAULT_TOKEN_TTL = 30 * 24 * 3600  # the FAQ: access tokens last about a month


class Auth:
    """The one app/user the sandbox knows; the token pair rotates on refresh (persisted)."""

    def __init__(self, path: Path, ttl: float, clock: Callable[[], float]):
        self._path = path
        self._clock = clock
        self.ttl = ttl if ttl > 0 else DEFAULT_TOKEN_TTL
        self._lock = threading.Lock()
        try:
            saved = json.loads(path.read_bytes())
        except FileNotFoundError:
            saved = {"client_id": secrets.token_hex(8), "client_secret": secrets.token_hex(16)}
            saved.update(access_tokens={secrets.token_hex(16): clock()}, refresh_token=secrets.token_hex(16))
        self.client_id: str = saved["client_id"]
        self.client_secret: str = saved["client_secret"]
        self._access: dict[str, float] = saved["access_tokens"]  # token -> issued at
        self._refresh: str = saved["refresh_token"]
        self._save()

    def credentials(self) -> dict[str, str]:
        with self._lock:
            newest = max(self._access, key=self._access.__getitem__)
            return {"client_id": self.client_id, "client_secret": self.client_secret,
                    "access_token": newest, "refresh_token": self._refresh}  # fmt: skip

    def check_client(self, params: Params) -> None:
        if need(params, "client_id") != self.client_id:
            raise YoukuError(CLIENT_ID_INVALID, "Client id invalid", "SystemException")

    def check(self, params: Params) -> None:
        """Client id and access token of an API call (old tokens live until they expire)."""
        self.check_client(params)
        token = need(params, "access_token")
        with self._lock:
            issued = self._access.get(token)
        if issued is None:
            raise YoukuError(ACCESS_TOKEN_INVALID, "Invalid token", "SystemException")
        if self._clock() - issued >= self.ttl:
            raise YoukuError(ACCESS_TOKEN_EXPIRED, "Expired token", "SystemException")

    def refresh(self, params: Params) -> dict[str, str]:
        self.check_client(params)
        if need(params, "grant_type") != "refresh_token":
            raise YoukuError(PARAM_INVALID, "grant_type must be refresh_token", "SystemException")
        secret = params.get("client_secret")
        if secret is not None and secret != self.client_secret:
            raise YoukuError(CLIENT_ID_INVALID, "Client secret invalid", "SystemException")
        given = need(params, "refresh_token")
        with self._lock:
            if given != self._refresh:
                raise YoukuError(ACCESS_TOKEN_INVALID, "Invalid refresh token", "SystemException")
            now = self._clock()
            access, self._refresh = secrets.token_hex(16), secrets.token_hex(16)
            self._access = {t: at for t, at in self._access.items() if now - at < self.ttl}
            self._access[access] = now
            refresh = self._refresh
            self._save()
        pair = {"access_token": access, "refresh_token": refresh}
        return {**pair, "expires_in": str(int(self.ttl)), "token_type": "bearer"}  # expires_in is a string on the wire

    def _save(self) -> None:
        data = {"client_id": self.client_id, "client_secret": self.client_secret,
                "access_tokens": self._access, "refresh_token": self._refresh}  # fmt: skip
        write_atomic(self._path, json.dumps(data).encode())
