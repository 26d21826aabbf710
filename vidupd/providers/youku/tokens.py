"""Youku OAuth access tokens shared by every upload of every process using one ledger.

Youku's refresh token rotates on every refresh: once any process refreshes, the pair every
other process holds is dead. So the pair lives in the ledger's shared store (one value per
Youku app and configured pair), every process re-reads it when Youku refuses a token
(1009 expired, 1008 invalid), and a refresh happens under the store's lock, which excludes
the other processes: read the newest pair, and only if it is still the one that was
refused, refresh with its refresh token and store the answer. Whoever comes second finds
the new pair and uses it instead of refreshing again.

The configured pair seeds the store; a changed configured pair (the operator authorised the
app again) is a new key, so it wins over what an older pair was refreshed into. A
`tokens.json` left by an older vidupd in the target's state dir is taken over once (it may
hold the only live refresh token) and then removed.

The stored pair is sealed (Fernet, a key derived from the app's client_secret and the store
key): the ledger's text holds no usable token, whoever reads it (a backup, a shared
PostgreSQL server's other users); every process and host with the same config opens it.
A pair stored in the clear by an older vidupd is still read, and sealed when next stored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from cryptography.fernet import Fernet, InvalidToken

from ...core.errors import CredentialsExpired, PermanentError, TransientError
from ...core.model import SharedStore, SharedValue
from ...core.secrets import register
from .api import TokenPair, YoukuApi
from .wire import AccessTokenInvalid

T = TypeVar("T")

LEGACY_TOKENS_FILE = "tokens.json"
MAX_TOKEN_TRIES = 4  # calls of `fn` per `call`: other processes may rotate the pair meanwhile


def _pair_id(pair: TokenPair) -> str:
    """Identifies the configured pair without storing it (a hash of both tokens)."""
    h = hashlib.sha256()
    h.update(pair.access_token.encode())
    h.update(b"\0")
    h.update(pair.refresh_token.encode())
    return h.hexdigest()


def _pair_data(pair: TokenPair) -> dict[str, Any]:
    return {"access_token": pair.access_token, "refresh_token": pair.refresh_token,
            "expires_in": pair.expires_in, "refreshed_at": time.time()}


def _valid(data: Any) -> bool:
    return (isinstance(data, dict) and isinstance(data.get("access_token"), str) and bool(data["access_token"])
            and isinstance(data.get("refresh_token"), str))


class SealedStore:
    """`store` with each value sealed under a key only the app's configuration gives."""

    def __init__(self, store: SharedStore, client_secret: str, key: str):
        digest = hashlib.sha256(b"vidupd youku tokens\0" + client_secret.encode() + b"\0" + key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._store = store

    def _open(self, value: SharedValue | None) -> SharedValue | None:
        if value is None or "sealed" not in value.data:
            return value  # nothing yet, or stored in the clear by an older vidupd
        try:
            data = json.loads(self._fernet.decrypt(str(value.data["sealed"]).encode()))
        except (InvalidToken, ValueError):
            data = {}  # sealed under another client_secret: not usable, _valid() says so
        return SharedValue(value.generation, data)

    def load(self, key: str) -> SharedValue | None:
        return self._open(self._store.load(key))

    def update(self, key: str,
               change: Callable[[SharedValue | None], Mapping[str, Any] | None]) -> SharedValue | None:
        def sealed(current: SharedValue | None) -> Mapping[str, Any] | None:
            new = change(self._open(current))
            return None if new is None else {"sealed": self._fernet.encrypt(json.dumps(new).encode()).decode()}

        return self._open(self._store.update(key, sealed))


class TokenKeeper:
    """The current access token; refreshed at most once per expiry, whatever the number of
    threads and processes that hit the expiry together."""

    def __init__(self, api: YoukuApi, configured: TokenPair, client_secret: str, store: SharedStore,
                 client_id: str, legacy_dir: Path | None = None):
        self._api = api
        self._client_secret = client_secret
        self.key = f"youku-oauth:{client_id}:{_pair_id(configured)[:32]}"
        self._store = SealedStore(store, client_secret, self.key)
        self._lock = threading.Lock()
        self._refreshes = 0
        self._unsaved: tuple[int, dict[str, Any]] | None = None  # refreshed, not yet stored (full disk)
        register(configured.access_token)
        register(configured.refresh_token)
        legacy = legacy_dir / LEGACY_TOKENS_FILE if legacy_dir is not None else None
        self._seed(configured, legacy)

    @property
    def refreshes(self) -> int:
        """How many refreshes this keeper performed (tests and status use it)."""
        return self._refreshes

    # -- the stored pair ------------------------------------------------------------------------
    def _seed(self, configured: TokenPair, legacy: Path | None) -> None:
        """Start from the stored pair; else from an old tokens.json (stored now), else from the
        configured pair, as generation 0, not stored: the config already holds it, and the
        ledger then holds only pairs a refresh produced."""
        self._value = SharedValue(0, _pair_data(configured))
        stored = self._store.load(self.key)
        if stored is None and legacy is not None and (old := _legacy_pair(legacy, configured)) is not None:
            stored = self._store.update(self.key, lambda current: old if current is None else None)
        if legacy is not None:
            legacy.unlink(missing_ok=True)  # its pair is in the ledger now (or was older than the ledger's)
        if stored is not None and _valid(stored.data):
            self._adopt(stored)

    def _adopt(self, value: SharedValue) -> None:
        """Use `value` unless a newer one is already in use."""
        register(value.data["access_token"])
        register(value.data["refresh_token"])
        with self._lock:
            if value.generation >= self._value.generation:
                self._value = value

    def current(self) -> tuple[int, str]:
        """(generation, access token) to use for the next call."""
        if self._unsaved is not None:
            self._save_unsaved()
        with self._lock:
            return self._value.generation, self._value.data["access_token"]

    # -- calls --------------------------------------------------------------------------------------
    def call(self, fn: Callable[[str], T], on_refresh: Callable[[], None] | None = None) -> T:
        """Run `fn(access_token)`. When Youku refuses the token (expired or invalid), take
        the newest pair from the store, refreshing it if it is still the refused one, and
        run `fn` again.

        A token refused right after this call refreshed it escapes (CredentialsExpired is
        retried by the caller's policy; an invalid token is permanent); a refused token
        that another process replaced meanwhile is simply retried with the new one."""
        error: Exception | None = None
        refreshed_here = False
        for _ in range(MAX_TOKEN_TRIES):
            generation, token = self.current()
            try:
                return fn(token)
            except (CredentialsExpired, AccessTokenInvalid) as e:
                error = e
                if refreshed_here and self._latest().generation == generation:
                    raise  # refused although we just refreshed it: not a race
                if self.refresh(generation):
                    refreshed_here = True
                    if on_refresh is not None:
                        on_refresh()
        assert error is not None
        raise error

    def _latest(self) -> SharedValue:
        value = self._store.load(self.key)
        if value is not None and _valid(value.data):
            self._adopt(value)
        with self._lock:
            return self._value

    def refresh(self, refused_generation: int) -> bool:
        """The pair of `refused_generation` was refused. Under the store's lock: if a newer
        pair is stored, use it; else refresh. True if this call refreshed."""
        did: list[dict[str, Any]] = []

        def change(current: SharedValue | None) -> dict[str, Any] | None:
            if current is not None and current.generation != refused_generation and _valid(current.data):
                return None  # another thread, process or host refreshed already
            data = current.data if current is not None and _valid(current.data) else self._value.data
            if not data.get("refresh_token"):
                raise PermanentError("youku: the access token was refused and there is no refresh_token "
                                     "configured to replace it (no refresh_token configured)")
            pair = self._api.refresh(data["refresh_token"], self._client_secret)
            register(pair.access_token)
            register(pair.refresh_token)
            new = _pair_data(pair)
            did.append(new)
            self._refreshes += 1  # under the store's lock, like every refresh
            # kept until stored: the old refresh token may already be void on the server
            self._unsaved = (current.generation if current is not None else 0, new)
            return new

        try:
            value = self._store.update(self.key, change)
        except Exception:
            if did:  # refreshed but not stored (a full disk): use it here, store it later
                with self._lock:
                    self._value = SharedValue(self._value.generation, did[0])
                raise TransientError("youku: refreshed the access token but could not store it in the ledger; "
                                     "will store it on the next call") from None
            raise
        if did:
            self._unsaved = None
        assert value is not None
        self._adopt(value)
        return bool(did)

    def _save_unsaved(self) -> None:
        pending = self._unsaved
        if pending is None:
            return
        base, data = pending

        def change(current: SharedValue | None) -> dict[str, Any] | None:
            if (current.generation if current is not None else 0) != base:
                return None  # something newer was stored meanwhile
            return data

        try:
            value = self._store.update(self.key, change)
        except Exception:
            return  # still failing: keep it in memory and use it
        self._unsaved = None
        if value is not None:
            self._adopt(value)


def _legacy_pair(path: Path | None, configured: TokenPair) -> dict[str, Any] | None:
    """The pair an older vidupd kept in tokens.json, if it was derived from today's config."""
    if path is None:
        return None
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("configured") != _pair_id(configured) or not _valid(data):
        return None
    return {"access_token": data["access_token"], "refresh_token": data["refresh_token"],
            "expires_in": data.get("expires_in"), "refreshed_at": data.get("refreshed_at") or time.time()}
