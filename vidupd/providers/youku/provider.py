"""Youku provider: settings, create parameters, the video status call, and the start of an
upload, which `slices.SliceUpload` runs (the six-step slice flow, resumable across
restarts). The wire format lives in `api`, the OAuth token bookkeeping in `tokens`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping
from urllib.parse import urlsplit

from ...core.errors import ContentMismatch, PermanentError, ProviderError, TransientError
from ...core.fsnames import safe_text
from ...core.model import SharedStore
from ...core.retry import RetryPolicy, call_with_retry
from ...core.secrets import register, reveal
from ..base import MediaStatus, Option, Provider, UploadContext, UploadRequest, UploadResult, option_value
from ..features import ReportsStatus, Resumable
from .api import CODE_UPLOAD_TOKEN_EXPIRED, SLICE_LENGTH_KB, TokenPair, UploadTokenExpired, YoukuApi
from .slices import SliceUpload
from .tokens import TokenKeeper


TITLE_MAX = 60
DESCRIPTION_MAX = 2000
TAGS_MAX = 10
TAG_LEN = (2, 20)
MAX_RESTARTS = 2  # new `create`s after expired upload tokens within one attempt
_STATUS_RETRY = RetryPolicy(attempts=3, initial=1.0, maximum=10.0)
_YOUKU_HOSTS = ("youku.com",)
COPYRIGHT_TYPES = ("original", "reproduced")  # what `create` accepts (else error 1013)
PUBLIC_TYPES = ("all", "friend", "password")
MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class YoukuSettings:
    """The validated options, typed; secrets stay `Secret` (or str in tests) until used."""

    client_id: str
    client_secret: Any = field(repr=False)
    access_token: Any = field(repr=False)
    refresh_token: Any = field(repr=False)
    api_base: str
    tags: tuple[str, ...]
    category: str | None
    copyright_type: str
    public_type: str
    watch_password: Any = field(repr=False)
    slice_concurrency: int
    confirm_wait: float
    confirm_timeout: float
    request_timeout: float

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any], options: Mapping[str, Option]) -> "YoukuSettings":
        def get(key: str) -> Any:
            return option_value("youku", options, settings, key)

        return cls(
            client_id=str(get("client_id")),
            client_secret=get("client_secret") or "",
            access_token=get("access_token"),
            refresh_token=get("refresh_token") or "",
            api_base=str(get("api_base")).rstrip("/"),
            tags=tuple(str(t) for t in (get("tags") or ())),
            category=get("category") or None,
            copyright_type=str(get("copyright_type")),
            public_type=str(get("public_type")),
            watch_password=get("watch_password") or "",
            slice_concurrency=int(get("slice_concurrency")),
            confirm_wait=float(get("confirm_wait")),
            confirm_timeout=float(get("confirm_timeout")),
            request_timeout=float(get("request_timeout")),
        )


def _clean_tags(tags: tuple[str, ...] | list[str]) -> list[str]:
    """Youku takes 1-10 comma-separated tags of 2-20 characters: split, trim, dedupe, cut."""
    out: list[str] = []
    for raw in tags:
        for tag in str(raw).replace("，", ",").split(","):
            tag = tag.strip()[: TAG_LEN[1]].strip()
            if len(tag) >= TAG_LEN[0] and tag not in out:
                out.append(tag)
    return out[:TAGS_MAX]


class YoukuProvider(Resumable, ReportsStatus, Provider):
    """Uploads videos through Youku's open platform (create/slices/check/commit)."""

    name: ClassVar[str] = "youku"
    kinds: ClassVar[frozenset[str]] = frozenset({"video"})
    piece_size: ClassVar[int | None] = SLICE_LENGTH_KB * 1024  # slice MD5s come from the pool's one pass
    options: ClassVar[Mapping[str, Option]] = {
        "client_id": Option(str, help="Youku app client_id"),
        "client_secret": Option(str, "", secret=True, help="sent with token refreshes when set"),
        "access_token": Option(str, secret=True, help="OAuth access token"),
        "refresh_token": Option(str, None, secret=True, help="OAuth refresh token; without it an expired token fails"),
        "api_base": Option(str, "https://api.youku.com", help="API host (the sandbox replaces it)"),
        "tags": Option(list, ["vidupd"], help="tags when the sidecar has none: 1-10 of 2-20 characters"),
        "category": Option(str, None, help="Youku category"),
        "copyright_type": Option(str, "original", choices=COPYRIGHT_TYPES, help="original | reproduced"),
        "public_type": Option(str, "all", choices=PUBLIC_TYPES, help="all | friend | password"),
        "watch_password": Option(str, None, secret=True, help="the viewers' password; required with public_type "
                                 "= \"password\""),
        "slice_concurrency": Option(int, 4, minimum=1, maximum=MAX_CONCURRENCY,
                                    help="slices uploaded in parallel per file"),
        "confirm_wait": Option((int, float), 60.0, positive=True,
                               help="longest wait (s) between checks while Youku confirms"),
        "confirm_timeout": Option((int, float), 3600.0, positive=True,
                                  help="give up waiting for confirmation after this (s)"),
        "request_timeout": Option((int, float), 60.0, positive=True, help="per-request timeout (s)"),
    }

    def __init__(self, target: str, settings: Mapping[str, Any], state_dir: Path,
                 shared: SharedStore | None = None):
        super().__init__(target, settings, state_dir, shared)
        self.config = YoukuSettings.from_mapping(settings, self.options)
        if shared is None:
            raise TypeError("YoukuProvider needs the ledger's shared store: its refresh token rotates")
        cfg = self.config
        self._api = YoukuApi(cfg.api_base, cfg.client_id, timeout=cfg.request_timeout,
                             pool_size=max(16, 2 * cfg.slice_concurrency))
        if cfg.watch_password:
            register(reveal(cfg.watch_password))  # rides in create's query string: scrub it from errors
        configured = TokenPair(reveal(cfg.access_token), reveal(cfg.refresh_token))
        self.tokens = TokenKeeper(self._api, configured, reveal(cfg.client_secret), shared, cfg.client_id,
                                  legacy_dir=state_dir)
        self._closed = threading.Event()

    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        """Resume the checkpointed upload if it is for this content, else start one."""
        if request.kind != "video":
            raise PermanentError(f"youku uploads videos only, not {request.kind!r}")
        if request.size <= 0:
            raise PermanentError("youku: empty files cannot be uploaded")
        with ctx.open_source(request) as src:
            for _ in range(MAX_RESTARTS + 1):
                run = SliceUpload(self, request, ctx, src)
                try:
                    return run.execute()
                except UploadTokenExpired:
                    ctx.checkpoint.clear()
                    if run.commit_ambiguous:
                        raise PermanentError(
                            "youku: the upload token expired after commit was attempted; the video may "
                            "already exist on Youku, so vidupd will not upload it again by itself "
                            "(retry the job to upload a new copy)") from None
                    ctx.note("upload.restarted", "upload token expired; starting over",
                             reason=str(CODE_UPLOAD_TOKEN_EXPIRED))
                except ContentMismatch:
                    self._abandon(run, ctx)
                    raise  # the pool forgets the fingerprint and checkpoint, and starts over
        raise TransientError("youku: upload tokens kept expiring; will try again later")

    def _abandon(self, run: "SliceUpload", ctx: UploadContext) -> None:
        """Cancel an upload Youku refused for its content (one try, best effort), so the server
        drops its slices now instead of when the upload token expires."""
        if run.state is None or run.state.video_id:
            return
        token = run.state.upload_token
        try:
            self.tokens.call(lambda access_token: self._api.cancel(access_token, token))
        except ProviderError as e:
            ctx.note("upload.cancel_failed", f"could not cancel the refused upload ({e}); Youku drops it when "
                     "its upload token expires", error=str(e))

    def media_status(self, remote_id: str, remote_kind: str) -> MediaStatus:
        """Youku's `state` of a committed video: normal/limited ready, fail failed, else pending."""
        if remote_kind != "video":
            raise PermanentError(f"youku has no {remote_kind!r} objects")
        body = call_with_retry(lambda: self._api.video_show(remote_id), _STATUS_RETRY, self._closed)
        state = str(body.get("state") or "").lower()
        if state == "normal":
            return MediaStatus("ready")
        if state == "limited":
            return MediaStatus("ready", "limited: playable with restrictions")
        if state == "fail":
            return MediaStatus("failed", "transcoding failed")
        return MediaStatus("pending", state or "unknown")

    def close(self) -> None:
        self._closed.set()
        self._api.close()

    def link_for(self, video_id: str) -> str | None:
        """The public page of a video, only when talking to the real Youku."""
        host = urlsplit(self.config.api_base).hostname or ""
        if any(host == h or host.endswith("." + h) for h in _YOUKU_HOSTS):
            return f"https://v.youku.com/v_show/id_{video_id}.html"
        return None

    def create_params(self, request: UploadRequest) -> dict[str, Any]:
        """The `create` parameters from the sidecar metadata, cut to Youku's limits."""
        meta = request.metadata
        name = safe_text(request.path.name)  # valid UTF-8 on the wire, whatever the file's name
        title = (meta.title or safe_text(request.path.stem)).strip() or name
        tags = _clean_tags(meta.tags) or _clean_tags(self.config.tags) or ["vidupd"]
        params: dict[str, Any] = {
            "title": title[:TITLE_MAX],
            "tags": ",".join(tags),
            "description": (meta.description or "")[:DESCRIPTION_MAX],
            "copyright_type": self.config.copyright_type,
            "public_type": self.config.public_type,
            "file_name": name,
            "file_size": request.size,
            "file_md5": request.md5,
        }
        category = meta.category or self.config.category
        if category:
            params["category"] = category
        if self.config.public_type == "password":
            params["watch_password"] = reveal(self.config.watch_password)
        return params

    @classmethod
    def settings_problems(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        if settings.get("public_type") == "password" and not settings.get("watch_password"):
            return [("watch_password", 'is required with public_type = "password" (Youku refuses the upload '
                                       "without it)")]
        return []

    # used by SliceUpload
    @property
    def api(self) -> YoukuApi:
        return self._api


