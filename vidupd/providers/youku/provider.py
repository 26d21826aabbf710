"""Youku provider: settings, the choice of flow, the video status call, and giving an upload
up for good. Two flows send the bytes: `oss_flow.OssUpload` (create with isnew=1 answers an
OSS grant: the current platform) and `slices.SliceUpload` (the seed's six steps through an
upload server). `upload_protocol` picks: "auto" (create with isnew=1 and follow whichever
kind of answer comes back), "oss" (refuse a server that answers with an upload server), or
"slices" (create without isnew). A checkpoint names its flow, so a resume never switches.
The wire format lives in `api`/`wire`, create's metadata rules in `params`, the OAuth token
bookkeeping in `tokens`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Mapping
from urllib.parse import urlsplit

import oss2

from ...core.errors import ContentMismatch, LeaseLost, PermanentError, ProviderError, TransientError
from ...core.model import SharedStore
from ...core.retry import RetryPolicy, call_with_retry
from ...core.secrets import register, reveal
from ..base import MediaStatus, Option, Provider, UploadContext, UploadRequest, UploadResult, option_value
from ..features import Abandons, ReportsStatus, Resumable
from ..oss.credentials import Note, Renew, StsCredentials, StsKeeper
from ..oss.multipart import MIN_PART_SIZE
from ..oss.signing import DEFAULT_SIGNATURE, SIGNATURES
from . import oss_flow, params as create_rules
from .api import CreateResult, OssGrant, TokenPair, YoukuApi
from .oss_flow import OssCheckpoint, OssUpload
from .slices import Checkpoint, SliceUpload
from .steps import with_token
from .tokens import TokenKeeper
from .wire import CODE_UPLOAD_TOKEN_EXPIRED, UploadTokenExpired

MIB = 1 << 20
MAX_RESTARTS = 2  # new `create`s after expired upload tokens within one attempt
_STATUS_RETRY = RetryPolicy(attempts=3, initial=1.0, maximum=10.0)
_YOUKU_HOSTS = ("youku.com",)
COPYRIGHT_TYPES = ("original", "reproduced")  # what `create` accepts (else error 1013)
PUBLIC_TYPES = ("all", "friend", "password")
PROTOCOLS = ("auto", "oss", "slices")
MAX_CONCURRENCY = 64
MAX_PART_SIZE = 5 << 30  # OSS's largest part


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
    upload_protocol: str = "auto"
    part_size: int = 8 * MIB
    part_concurrency: int = 4
    oss_signature: str = DEFAULT_SIGNATURE
    oss_region: str = "cn-shanghai"

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
            upload_protocol=str(get("upload_protocol")),
            part_size=int(get("part_size")),
            part_concurrency=int(get("part_concurrency")),
            oss_signature=str(get("oss_signature")),
            oss_region=str(get("oss_region")),
        )


class YoukuProvider(Resumable, ReportsStatus, Abandons, Provider):
    """Uploads videos through Youku's open platform: the OSS flow or the six-step slice flow."""

    name: ClassVar[str] = "youku"
    summary: ClassVar[str] = ("Youku's open platform: videos through the OSS flow or the six-step slice flow, "
                              "OAuth tokens refreshed as they expire.")
    kinds: ClassVar[frozenset[str]] = frozenset({"video"})
    options: ClassVar[Mapping[str, Option]] = {
        "client_id": Option(str, help="Youku app client_id"),
        "client_secret": Option(str, "", secret=True, help="sent with token refreshes when set"),
        "access_token": Option(str, secret=True, help="OAuth access token"),
        "refresh_token": Option(str, None, secret=True, help="OAuth refresh token; without it an expired token fails"),
        "api_base": Option(str, "https://api.youku.com", schemes=("https", "http"),
                           help="API host (the sandbox replaces it)"),
        "tags": Option(list, ["vidupd"], help="tags when the sidecar has none: 1-10 of 2-20 characters"),
        "category": Option(str, None, help="Youku category"),
        "copyright_type": Option(str, "original", choices=COPYRIGHT_TYPES, help="original | reproduced"),
        "public_type": Option(str, "all", choices=PUBLIC_TYPES, help="all | friend | password"),
        "watch_password": Option(str, None, secret=True, help="the viewers' password; required with public_type "
                                 "= \"password\""),
        "upload_protocol": Option(str, "auto", choices=PROTOCOLS,
                                  help="auto (follow create's answer) | oss (the OSS flow only) | slices (six steps)"),
        "slice_concurrency": Option(int, 4, minimum=1, maximum=MAX_CONCURRENCY,
                                    help="slices uploaded in parallel per file (six-step flow)"),
        "part_size": Option(int, 8 * MIB, minimum=MIN_PART_SIZE, maximum=MAX_PART_SIZE,
                            help="OSS flow: multipart part size in bytes (at least 100 KiB)"),
        "part_concurrency": Option(int, 4, minimum=1, maximum=MAX_CONCURRENCY,
                                   help="OSS flow: parts uploaded in parallel per file"),
        "oss_signature": Option(str, DEFAULT_SIGNATURE, choices=SIGNATURES,
                                help="OSS flow: v4 (default) | v1 (old set-ups)"),
        "oss_region": Option(str, "cn-shanghai", help="OSS flow: the bucket's region for V4 signatures when the "
                             "endpoint's host name does not tell it"),
        "confirm_wait": Option((int, float), 60.0, positive=True, duration=1,
                               help="longest wait (s) between checks while Youku confirms"),
        "confirm_timeout": Option((int, float), 3600.0, positive=True, duration=1,
                                  help="give up waiting for confirmation after this (s)"),
        "request_timeout": Option((int, float), 60.0, positive=True, duration=1, help="per-request timeout (s)"),
    }

    def __init__(self, target: str, settings: Mapping[str, Any], state_dir: Path,
                 shared: SharedStore | None = None):
        super().__init__(target, settings, state_dir, shared)
        self.config = YoukuSettings.from_mapping(settings, self.options)
        if shared is None:
            raise TypeError("YoukuProvider needs the ledger's shared store: its refresh token rotates")
        cfg = self.config
        # The pool's hashing pass computes the file's MD5 alone, in both flows: the upload
        # server decides each slice's offset and length (a realistic one hands out lengths
        # that are not 2 MiB, PROTOCOLS.md section 3), so 2 MiB piece MD5s taken up front
        # would be wasted and every slice hashed again; a slice is hashed once as it is sent.
        self.piece_size = None
        self._api = YoukuApi(cfg.api_base, cfg.client_id, timeout=cfg.request_timeout,
                             pool_size=max(16, 2 * cfg.slice_concurrency))
        self._oss_session = oss2.Session(pool_size=max(16, 4 * cfg.part_concurrency))
        self._oss_timeout = (min(10.0, cfg.request_timeout), cfg.request_timeout)
        if cfg.watch_password:
            register(reveal(cfg.watch_password))  # a secret: scrubbed from any error text
        configured = TokenPair(reveal(cfg.access_token), reveal(cfg.refresh_token))
        self.tokens = TokenKeeper(self._api, configured, reveal(cfg.client_secret), shared, cfg.client_id,
                                  legacy_dir=state_dir)
        self._closed = threading.Event()

    # ---- uploading ------------------------------------------------------------------

    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        """Resume the checkpointed upload (in the flow it names) if it is for this content,
        else create one and follow the flow of the answer."""
        if request.kind != "video":
            raise PermanentError(f"youku uploads videos only, not {request.kind!r}")
        if request.size <= 0:
            raise PermanentError("youku: empty files cannot be uploaded")
        with ctx.open_source(request) as src:
            for _ in range(MAX_RESTARTS + 1):
                answer = None if self._resumable(request, ctx) else self._create(request, ctx)
                run: OssUpload | SliceUpload
                if isinstance(answer, OssGrant) or (answer is None and _is_oss(ctx.checkpoint.load())):
                    run = OssUpload(self, request, ctx, src)
                else:
                    run = SliceUpload(self, request, ctx, src)
                try:
                    return run.execute(answer)  # type: ignore[arg-type]
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
                    if run.state is not None:
                        self._abandon_refused(run.state.to_json(), ctx)
                    raise  # the pool forgets the fingerprint and checkpoint, and starts over
                except LeaseLost:
                    # Our create was answered after the job was taken over (we were frozen or
                    # cut off meanwhile): its token never reached the shared checkpoint, so no
                    # other host can find it, and the new holder has a session of its own.
                    if answer is not None and not run.recorded:
                        self._cancel_quietly(answer.upload_token)
                    raise
        raise TransientError("youku: upload tokens kept expiring; will try again later")

    def _resumable(self, request: UploadRequest, ctx: UploadContext) -> bool:
        """Whether the checkpoint holds an upload of this content (else it is cleared)."""
        data = ctx.checkpoint.load()
        if not data:
            return False
        cp = OssCheckpoint.from_json(data) or Checkpoint.from_json(data)
        if cp is not None and cp.md5 == request.md5 and cp.size == request.size:
            return True
        ctx.checkpoint.clear()
        ctx.note("upload.restarted", "checkpoint is for other content; starting over", reason="content changed")
        return False

    def _create(self, request: UploadRequest, ctx: UploadContext) -> CreateResult | OssGrant:
        """create.json as `upload_protocol` says (isnew=1 unless "slices")."""
        protocol = self.config.upload_protocol
        params = self.create_params(request)
        answer = with_token(self.tokens, ctx, "create",
                            lambda at: self._api.create(at, params, isnew=protocol != "slices"))
        if protocol == "oss" and isinstance(answer, CreateResult):
            self._cancel_quietly(answer.upload_token)
            raise PermanentError('youku: upload_protocol is "oss" but create answered with an upload server (the '
                                 'six-step flow); set upload_protocol = "auto" or "slices" for this server')
        if protocol == "slices" and isinstance(answer, OssGrant):
            self._cancel_quietly(answer.upload_token)
            raise PermanentError('youku: upload_protocol is "slices" but create answered with an OSS grant; set '
                                 'upload_protocol = "auto" or "oss"')
        ctx.note("upload.created", f"Youku upload created ({'oss' if isinstance(answer, OssGrant) else 'slices'} "
                 "flow)", protocol="oss" if isinstance(answer, OssGrant) else "slices")
        return answer

    def sts_keeper(self, creds: StsCredentials, renew: Renew | None, note: Note) -> StsKeeper:
        """The OSS credentials keeper of an OSS-flow upload, signing as `oss_signature` says."""
        return StsKeeper(creds, renew, self._oss_session, self._oss_timeout, note,
                         signature=self.config.oss_signature, region_setting="oss_region")

    # ---- giving up for good ---------------------------------------------------------

    def abandon(self, checkpoint: Mapping[str, Any]) -> str | None:
        """Cancel the checkpoint's upload on Youku (cancel.json) and, for the OSS flow, abort
        its multipart upload on OSS first (its credentials come from the still-valid upload
        token). One try of each; None when there is nothing to cancel (no upload, or a commit
        was sent: the video may exist)."""
        oss = OssCheckpoint.from_json(checkpoint)
        cp = oss or Checkpoint.from_json(checkpoint)
        if cp is None or cp.video_id or cp.committing:
            return None
        done: list[str] = []
        failed: list[str] = []
        if oss is not None:
            try:
                done += oss_flow.abandon(self, oss)
            except ProviderError as e:
                failed.append(f"could not abort its OSS multipart upload ({e})")
        try:
            self.tokens.call(lambda at: self._api.cancel(at, cp.upload_token))
            done.insert(0, "cancelled the upload on Youku")
        except ProviderError as e:
            failed.append(f"could not cancel it on Youku ({e}); Youku drops it when its upload token expires")
        if failed:
            raise TransientError("; ".join(done + failed))
        return "; ".join(done)

    def _abandon_refused(self, checkpoint: Mapping[str, Any], ctx: UploadContext) -> None:
        """Youku refused the content: give the upload up (best effort), with an event either way.
        A commit it refused for the content created no video, so it does not hold the cancel back.
        Never for a job taken over meanwhile (LeaseLost): its new holder may resume the upload."""
        ctx.ensure_held()
        try:
            done = self.abandon(dict(checkpoint, committing=False))
        except ProviderError as e:
            ctx.note("upload.cancel_failed", f"the refused upload was not fully abandoned: {e}", level="warning",
                     error=str(e))
            return
        if done:
            ctx.note("upload.abandoned", f"the refused upload was given up: {done}", reason="content refused")

    def _cancel_quietly(self, upload_token: str) -> None:
        try:
            self.tokens.call(lambda at: self._api.cancel(at, upload_token))
        except ProviderError:
            pass  # Youku drops an uncommitted upload when its token expires

    # ---- status and the rest --------------------------------------------------------

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
        self._oss_session.session.close()

    def link_for(self, video_id: str) -> str | None:
        """The public page of a video, only when talking to the real Youku."""
        host = urlsplit(self.config.api_base).hostname or ""
        if any(host == h or host.endswith("." + h) for h in _YOUKU_HOSTS):
            return f"https://v.youku.com/v_show/id_{video_id}.html"
        return None

    def create_params(self, request: UploadRequest) -> dict[str, Any]:
        """The `create` parameters from the sidecar metadata, cut to Youku's limits."""
        cfg = self.config
        params = create_rules.create_params(request.metadata, request.path.name, request.path.stem, request.size,
                                            request.md5, cfg.tags, cfg.category, cfg.copyright_type,
                                            cfg.public_type)
        if cfg.public_type == "password":
            params["watch_password"] = reveal(cfg.watch_password)
        return params

    @classmethod
    def settings_problems(cls, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        if settings.get("public_type") == "password" and not settings.get("watch_password"):
            return [("watch_password", 'is required with public_type = "password" (Youku refuses the upload '
                                       "without it)")]
        return []

    # used by the flows
    @property
    def api(self) -> YoukuApi:
        return self._api


def _is_oss(data: Mapping[str, Any] | None) -> bool:
    return bool(data) and OssCheckpoint.from_json(data or {}) is not None
