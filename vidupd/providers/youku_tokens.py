"""Youku OAuth access tokens shared by every upload of one target.

Access tokens expire and the refresh token rotates on every refresh, so the newest pair
is persisted (`tokens.json`, 0600, written atomically) and preferred over the configured
pair at start-up, unless the configured pair changed since (the operator re-authorised).
Several workers hitting an expired token at once refresh it once: each remembers the
"generation" of the token it used, and only a worker whose generation is still current
refreshes, under a lock; the others just pick up the new token.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..atomic import write_atomic
from ..errors import CredentialsExpired, PermanentError, TransientError
from ..secrets import register
from .youku_api import AccessTokenInvalid, TokenPair, YoukuApi

T = TypeVar("T")

TOKENS_FILE = "tokens.json"


def _pair_id(pair: TokenPair) -> str:
    """Identifies the configured pair without storing it twice (the file holds secrets anyway)."""
    h = hashlib.sha256()
    h.update(pair.access_token.encode())
    h.update(b"\0")
    h.update(pair.refresh_token.encode())
    return h.hexdigest()


class TokenKeeper:
    """The current access token, refreshed at most once per expiry whatever the concurrency."""

    def __init__(self, api: YoukuApi, configured: TokenPair, client_secret: str, state_dir: Path):
        self._api = api
        self._client_secret = client_secret
        self._path = state_dir / TOKENS_FILE
        self._configured_fp = _pair_id(configured)
        self._lock = threading.Lock()
        self._generation = 0
        self._refreshes = 0
        self._unsaved = False  # a refreshed pair that could not be written yet
        self._pair = self._load() or configured
        register(self._pair.access_token)
        register(self._pair.refresh_token)

    @property
    def refreshes(self) -> int:
        """How many refreshes this keeper performed (tests and status use it)."""
        return self._refreshes

    def current(self) -> tuple[int, str]:
        """(generation, access token) to use for the next call."""
        with self._lock:
            if self._unsaved:
                self._try_save()
            return self._generation, self._pair.access_token

    def call(self, fn: Callable[[str], T], on_refresh: Callable[[], None] | None = None) -> T:
        """Run `fn(access_token)`; on an expired token refresh once (shared) and run it again.

        A second expiry right after a refresh escapes as CredentialsExpired for the caller's
        retry policy; a missing or rejected refresh token is a PermanentError. "Invalid
        token" (1008) for a token another worker replaced meanwhile is retried with the new
        one: the server may forget a replaced token instead of calling it expired.
        """
        generation, token = self.current()
        try:
            return fn(token)
        except CredentialsExpired:
            if self.refresh(generation) and on_refresh is not None:
                on_refresh()
        except AccessTokenInvalid:
            if self.current()[0] == generation:
                raise
        _, token = self.current()
        return fn(token)

    def refresh(self, seen_generation: int) -> bool:
        """Refresh unless someone already did since `seen_generation`; True if this call did."""
        with self._lock:
            if self._generation != seen_generation:
                return False
            if not self._pair.refresh_token:
                raise PermanentError("access token expired and no refresh_token configured")
            pair = self._api.refresh(self._pair.refresh_token, self._client_secret)
            register(pair.access_token)
            register(pair.refresh_token)
            self._pair = pair
            self._generation += 1
            self._refreshes += 1
            self._unsaved = True
            if not self._try_save():  # under the lock: files are written in generation order
                raise TransientError("refreshed the Youku access token but could not write tokens.json")
            return True

    def _load(self) -> TokenPair | None:
        """The persisted pair, if it exists, is readable and was derived from today's config."""
        try:
            data: Any = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("configured") != self._configured_fp:
            return None
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            return None
        return TokenPair(access, refresh)

    def _try_save(self) -> bool:
        """Persist the newest pair (the old refresh token may already be void on the server);
        on failure (a full disk) keep it in memory and try again on the next call."""
        pair = self._pair
        data = {
            "access_token": pair.access_token,
            "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in,
            "refreshed_at": time.time(),
            "configured": self._configured_fp,
        }
        try:
            write_atomic(self._path, json.dumps(data, indent=1).encode("utf-8"), mode=0o600)
        except OSError:
            return False
        self._unsaved = False
        return True
