"""Alibaba Cloud ApsaraVideo VOD provider: videos (with a cover), images, attached media
(subtitles) over OSS, URL pull and media registration (PROTOCOLS.md section 2).

Upload: Create* -> checkpoint {media id, decoded UploadAddress} + remote_id_known -> OSS
(PutObject below `multipart_threshold`, else parallel multipart: the `oss` package). The
RPC wire and error translation live in `aliyun_vod_rpc`, parameter rules in
`aliyun_vod_media`. The decoded UploadAuth is never persisted nor logged; its secret and
token are registered for redaction as soon as they are decoded.

Checkpoint (JSON, ctx.checkpoint; version 1):
    {"provider": "aliyun-vod", "version": 1, "kind": KIND, "md5": HEX, "size": N,
     "media": SLOT, "cover": SLOT | {"failed": TEXT} | null,      (video, image, attached)
     "jobs": [[URL, JobId], ...], "pending_since": EPOCH | null}   (url_pull)
    SLOT = {"id": MEDIA_ID, "kind": "video"|"image", "address": {"Endpoint", "Bucket", "FileName"},
            "urls": {"ImageURL"|"MediaURL"|"FileURL": URL}, "uploaded": BOOL, "content": "crc64:HEX" (once uploaded),
            "oss": {"upload_id": ID, "part_size": N, "parts": [[NUMBER, ETAG, CRC64, SIZE], ...]} | null}

Sidecar overrides (metadata.extra, VOD or snake_case spelling): CateId, TemplateGroupId,
WorkflowId, StorageLocation, AppId, UserData; a numeric `category` is also taken as CateId.
URL-pull titles: the sidecar's title (numbered " (n)" when the list has several URLs);
without one (the title is the file's stem) each pull is named after its URL's file name.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
import time
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping
from urllib.parse import unquote, urlsplit

import oss2
from aliyunsdkvod.request.v20170321 import (CreateUploadImageRequest, GetURLUploadInfosRequest, GetVideoInfoRequest,
                                            RefreshUploadVideoRequest, RegisterMediaRequest)

from ...core.errors import ContentMismatch, FileChanged, PermanentError, TransientError
from ...core.fsnames import safe_text
from ...core.model import FileIdentity, SharedStore
from ...core.retry import RetryPolicy, call_with_retry
from ...core.secrets import reveal
from ...core.source import SourceFile
from ..base import MediaStatus, Option, Provider, UploadContext, UploadRequest, UploadResult
from ..features import Abandons, PullsFromUrl, RegistersMedia, Resumable, TakesCovers
from ..oss.credentials import StsKeeper
from ..oss.errors import AddressChanged
from ..oss.multipart import MIN_PART_SIZE, PUT_OBJECT_MAX, MultipartState, OssUploader, content_id
from ..oss.signing import DEFAULT_SIGNATURE, SIGNATURES
from .abandon import abandon_video
from .checkpoint import UploadState
from .create import Creator, param, title_of
from .media import (BUSINESS_TYPES, IMAGE_TYPES, INFO_GROUP, MAX_CONCURRENCY, MAX_PART_SIZE, REGISTER_GROUP,
                    TITLE_MAX, URL_LIST_MAX, PullJob, VodSettings, check_url, chunks, clean_text, extension,
                    parse_url_list, pull_status)
from .pull import PullSubmitter
from .rpc import UploadTicket, VodPermanentError, VodRpc, decode_ticket

MIB = 1 << 20
_CALL_RETRY = RetryPolicy(attempts=4, initial=1.0, maximum=10.0)  # status polls and CLI calls
_VIDEO_FAILED = frozenset({"UploadFail", "TranscodeFail", "Blocked", "ProduceFail"})
_MAX_MOVES = 3  # address changes (RefreshUploadVideo moving the object) followed within one upload


class AliyunVodProvider(Resumable, TakesCovers, PullsFromUrl, RegistersMedia, Abandons, Provider):
    """Uploads to ApsaraVideo VOD; see the module docstring for the flow and checkpoint."""

    name: ClassVar[str] = "aliyun-vod"
    summary: ClassVar[str] = ("Alibaba Cloud ApsaraVideo VOD: videos, images and attached media into VOD's "
                              "OSS storage (multipart, resumable), and URL pulls.")
    kinds: ClassVar[frozenset[str]] = frozenset({"video", "image", "attached", "url_pull"})
    needs_md5: ClassVar[bool] = False  # OSS checks CRC-64 per part; no whole-file MD5 pass needed
    options: ClassVar[Mapping[str, Option]] = {
        "access_key_id": Option(str, help="AccessKey ID of a RAM user allowed to use VOD"),
        "access_key_secret": Option(str, secret=True, help="its AccessKey secret"),
        "region": Option(str, "cn-shanghai", help="VOD region, e.g. cn-shanghai"),
        "endpoint": Option(str, None, schemes=("https", "http"),
                           help="override 'host:port' (plain HTTP; the sandbox; a *.aliyuncs.com host always gets "
                                "HTTPS); default HTTPS to vod.{region}.aliyuncs.com"),
        "part_size": Option(int, 8 * MIB, minimum=MIN_PART_SIZE, maximum=MAX_PART_SIZE,
                            help="multipart part size in bytes (at least 100 KiB)"),
        "part_concurrency": Option(int, 4, minimum=1, maximum=MAX_CONCURRENCY, help="parts uploaded in parallel per file"),
        "multipart_threshold": Option(int, None, minimum=1, maximum=PUT_OBJECT_MAX,  # OSS's PutObject limit
                                      help="files from this size (bytes) go multipart; default part_size; max 5 GB"),
        "oss_signature": Option(str, DEFAULT_SIGNATURE, choices=SIGNATURES, help="OSS signature: v4 | v1 (old set-ups)"),
        "template_group_id": Option(str, None, help="transcoding template group"),
        "workflow_id": Option(str, None, help="workflow run after upload"),
        "cate_id": Option((int, str), None, minimum=1, help="category id"),
        "storage_location": Option(str, None, help="storage address (bucket) inside VOD"),
        "app_id": Option(str, None, help="VOD application id"),
        "user_data": Option(str, None, help="UserData JSON text (callbacks, extensions)"),
        "image_type": Option(str, "default", choices=IMAGE_TYPES,
                             help="ImageType of images uploaded on their own: default | cover"),
        "attached_business_type": Option(str, "subtitle", choices=BUSINESS_TYPES,
                                         help="BusinessType of attached media: subtitle | watermark | material"),
        "request_timeout": Option((int, float), 60.0, positive=True, duration=1,
                                  help="per-request timeout (s), RPC and OSS"),
        "tags": Option(list, [], help="tags when the sidecar has none (at most 16 of 32 characters)"),
    }

    def __init__(self, target: str, settings: Mapping[str, Any], state_dir: Path,
                 shared: SharedStore | None = None):
        super().__init__(target, settings, state_dir, shared)
        self.config = cfg = VodSettings.from_mapping(settings, self.options)
        self.rpc = VodRpc(cfg.access_key_id, reveal(cfg.access_key_secret), cfg.region, cfg.host, cfg.https,
                          cfg.request_timeout, pool_size=max(16, cfg.part_concurrency))
        self.call_retry = _CALL_RETRY  # for status polls and CLI calls (tests shorten it)
        self._oss_session = oss2.Session(pool_size=max(16, 4 * cfg.part_concurrency))
        self._oss_timeout = (min(10.0, cfg.request_timeout), cfg.request_timeout)
        self._closed = threading.Event()
        self._tickets: dict[str, UploadTicket] = {}  # in memory only: credentials never persist
        self._tickets_lock = threading.Lock()

    # ---- the Provider interface ----------------------------------------------------------

    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        """Resume the checkpointed upload if it is for this content, else start one."""
        if request.kind not in self.kinds:
            raise PermanentError(f"aliyun-vod does not take {request.kind!r} files")
        if request.size <= 0:
            raise PermanentError("aliyun-vod: empty files cannot be uploaded")
        job = UploadState(request, ctx, abandon=self.abandon)
        if request.kind == "url_pull":
            return self._pull(request, ctx, job)
        cover = self._cover(request, ctx, job) if request.kind == "video" else None
        with ctx.open_source(request) as src:
            slot = self._transfer(ctx, job, "media", src, request.kind,
                                  lambda: self._creator(ctx).media(request, job, cover), fingerprint=request.content_id)
        # Not hashed before sending (no twin was possible): the CRC-64 the parts combined to.
        sent = None if request.content_id else slot.get("content")
        ctx.progress(request.size)
        urls = slot.get("urls") or {}
        if request.kind == "image":
            details = {k: urls[k] for k in ("ImageURL", "FileURL") if k in urls}
        elif request.kind == "attached":
            details = {k: urls[k] for k in ("MediaURL", "FileURL") if k in urls}
        else:
            details = {"CoverURL": cover["urls"]["ImageURL"], "CoverImageId": cover["id"]} if cover else {}
        return UploadResult(str(slot["id"]), request.kind, details, content_id=sent)

    def media_status(self, remote_id: str, remote_kind: str) -> MediaStatus:
        """GetVideoInfo for videos, GetURLUploadInfos for URL pulls; images need no processing."""
        if remote_kind in ("image", "attached"):
            return MediaStatus("ready")
        if remote_kind == "url_pull":
            job_ids = [j for j in remote_id.split(",") if j]
            jobs: dict[str, PullJob] = {}
            for group in chunks(job_ids, INFO_GROUP):
                answer = self._call(GetURLUploadInfosRequest.GetURLUploadInfosRequest, JobIds=",".join(group))
                for info in answer.get("URLUploadInfoList") or ():
                    job = PullJob.from_info(info)
                    jobs[job.job_id] = job
            return pull_status(job_ids, jobs)
        if remote_kind not in ("video", "registered"):
            raise PermanentError(f"aliyun-vod has no {remote_kind!r} objects")
        video = self._call(GetVideoInfoRequest.GetVideoInfoRequest, VideoId=remote_id).get("Video") or {}
        status = str(video.get("Status") or "unknown")
        if status == "Normal":
            return MediaStatus("ready")
        if status in _VIDEO_FAILED:
            return MediaStatus("failed", status)
        return MediaStatus("pending", status)

    def close(self) -> None:
        self._closed.set()
        with self._tickets_lock:
            self._tickets.clear()
        self.rpc.close()
        self._oss_session.session.close()

    # ---- PullsFromUrl and RegistersMedia (the CLI) -------------------------------------

    def submit_pull(self, urls: list[str], title: str | None) -> list[tuple[str, str]]:
        """UploadMediaByURL for `urls` (groups of 20): the (url, JobId) pairs, in order."""
        checked = [check_url(u.strip(), f"URL {i}") for i, u in enumerate(urls, 1)]
        submitter = self._submitter(self.call_retry, self._closed, lambda *a, **k: None)
        pairs: list[tuple[str, str]] = []
        for group in submitter.groups(checked):
            titles = [clean_text(title, TITLE_MAX) or _url_title(url) for url in group]
            pairs += submitter.submit(group, titles, since=time.time(), look_first=False)
        return pairs

    def register(self, file_urls: list[str], title: str | None) -> tuple[list[tuple[str, str]], list[str]]:
        """RegisterMedia (groups of 10): (FileURL, MediaId) pairs and the URLs VOD refused."""
        checked = [check_url(u.strip(), f"URL {i}") for i, u in enumerate(file_urls, 1)]
        registered: list[tuple[str, str]] = []
        failed: list[str] = []
        for group in chunks(checked, REGISTER_GROUP):
            metas = [{"FileURL": url, "Title": clean_text(title, TITLE_MAX) or _url_title(url)} for url in group]
            answer = self._call(RegisterMediaRequest.RegisterMediaRequest,
                                RegisterMetadatas=json.dumps(metas, ensure_ascii=False),
                                TemplateGroupId=self.config.template_group_id, WorkflowId=self.config.workflow_id,
                                UserData=self.config.user_data)
            registered += [(str(m.get("FileURL")), str(m.get("MediaId"))) for m in answer.get("RegisteredMediaList")
                           or () if m.get("MediaId")]
            failed += [str(u) for u in answer.get("FailedFileURLs") or ()]
        return registered, failed

    def abandon(self, checkpoint: Mapping[str, Any]) -> str | None:
        """Abort the checkpoint's OSS multipart upload (vidupd.providers.aliyun_vod.abandon)."""
        return abandon_video(self.rpc, self.config, self._oss_session, self._oss_timeout, checkpoint)

    # ---- media objects -------------------------------------------------------------------

    def _transfer(self, ctx: UploadContext, job: UploadState, name: str, src: SourceFile, kind: str,
                  create: Callable[[], UploadTicket], fingerprint: str = "") -> dict[str, Any]:
        """Create the media (once: id and address are saved before the first byte), then OSS."""
        slot = job.slot(name)
        if slot.get("uploaded"):
            return slot
        ticket = self._resume_ticket(ctx, job, name, slot) if slot.get("id") else None
        if ticket is None:
            ticket = create()
            slot = {**job.slot(name), "id": ticket.media_id, "kind": kind, "address": ticket.address.to_json(),
                    "urls": dict(ticket.urls), "uploaded": False, "oss": None}  # keeps the ReferenceId
            job.set(**{name: slot})  # before the first byte: a retried Create would be a duplicate
            ctx.remote_id_known(ticket.media_id, kind)
        for moves in range(_MAX_MOVES + 1):
            try:
                return self._send(ctx, job, name, src, kind, ticket, fingerprint)
            except AddressChanged:
                if moves == _MAX_MOVES:
                    raise TransientError(f"VOD moved the upload address of {ticket.media_id} {moves + 1} times "
                                         "during one upload; trying again later") from None
                # The refresh that moved it left its ticket in the cache; the object starts over there.
                ticket = self._cached(ticket.media_id) or self._refresh(ctx, ticket.media_id)
                self._readdress(ctx, job, name, ticket)
        raise AssertionError("unreachable")

    def _send(self, ctx: UploadContext, job: UploadState, name: str, src: SourceFile, kind: str,
              ticket: UploadTicket, fingerprint: str) -> dict[str, Any]:
        """The object's bytes to OSS (PutObject or multipart, resumed from the slot), then marked uploaded."""
        self._remember(ticket)
        renew = (lambda: self._refresh(ctx, ticket.media_id).credentials) if kind == "video" else None
        keeper = StsKeeper(ticket.credentials, renew, self._oss_session, self._oss_timeout, ctx.note,
                           signature=self.config.oss_signature)
        progress = ctx.progress if name == "media" else (lambda n: None)
        uploader = OssUploader(keeper, src, cancel=ctx.cancel, retry=ctx.retry, note=ctx.note, progress=progress,
                               concurrency=self.config.part_concurrency, fingerprint=fingerprint,
                               held=ctx.ensure_held)
        if src.size < self.config.multipart_threshold:
            crc = uploader.put()
        else:
            def save(state: MultipartState | None) -> None:
                job.update_slot(name, oss=state.to_json() if state else None)

            crc = uploader.multipart(MultipartState.from_json(job.slot(name).get("oss")), self.config.part_size, save)
        job.update_slot(name, uploaded=True, oss=None, content=content_id(crc))
        self._forget(ticket.media_id)
        return job.slot(name)

    def _readdress(self, ctx: UploadContext, job: UploadState, name: str, ticket: UploadTicket) -> None:
        """Follow the address a refresh handed back: another bucket or key starts the object
        over there (the parts sent cannot be completed elsewhere); another endpoint alone keeps them."""
        saved = job.slot(name).get("address") or {}
        new = ticket.address.to_json()
        if (new["Bucket"], new["FileName"]) != (saved.get("Bucket"), saved.get("FileName")):
            ctx.note("upload.restarted", "VOD moved the video's upload address (RefreshUploadVideo handed back another "
                     "bucket or object key); the object starts over there", level="warning",
                     reason="address changed", remote_id_kept=ticket.media_id)
            job.update_slot(name, address=new, oss=None)
        elif new != saved:
            job.update_slot(name, address=new)  # a new endpoint for the same object: the parts stay

    def _resume_ticket(self, ctx: UploadContext, job: UploadState, name: str, slot: dict[str, Any]) -> UploadTicket | None:
        """Credentials for the saved media: cached, or RefreshUploadVideo; None means create anew."""
        media_id = str(slot["id"])
        cached = self._cached(media_id)
        if cached is not None:
            return cached
        if slot.get("kind") != "video":
            ctx.note("upload.restarted", f"the upload credentials of {slot.get('kind')} {media_id} are gone (they "
                     "cannot be refreshed); creating it again", reason="credentials lost", old_remote_id=media_id)
            return None
        try:
            ticket = self._refresh(ctx, media_id)
        except VodPermanentError as e:
            if e.code != "InvalidVideo.NotFound":
                raise
            ctx.note("upload.restarted", f"video {media_id} no longer exists on VOD; creating a new one",
                     level="warning", reason=e.code, old_remote_id=media_id)
            job.set(**{name: None})
            return None
        self._readdress(ctx, job, name, ticket)
        return ticket

    def _cover(self, request: UploadRequest, ctx: UploadContext, job: UploadState) -> dict[str, Any] | None:
        """Upload the companion cover image first (once); a refused cover does not stop the video."""
        path = request.companions.get("cover")
        saved = job.slot("cover")
        if path is None or saved.get("failed"):
            return None
        if saved.get("uploaded"):
            return saved  # an earlier attempt sent it: never twice
        try:
            with SourceFile(path, FileIdentity.of(os.stat(path)), ctx.throttle, ctx.cancel) as src:
                params = dict(ImageType="cover", ImageExt=extension(path.name),
                              OriginalFileName=safe_text(path.name),
                              Title=clean_text(f"{title_of(request)} cover", TITLE_MAX),
                              StorageLocation=param(request, "StorageLocation", self.config.storage_location),
                              AppId=param(request, "AppId", self.config.app_id))
                slot = self._transfer(ctx, job, "cover", src, "image",
                                      lambda: self._creator(ctx).ticket(
                                          CreateUploadImageRequest.CreateUploadImageRequest, "ImageId", params))
        except FileNotFoundError:
            ctx.note("upload.cover_failed", f"cover {path.name} disappeared; uploading the video without it",
                     level="warning", cover=str(path))
            return None
        except FileChanged:  # the video itself did not change: just try again later
            raise TransientError(f"cover {path.name} changed while it was read; trying again") from None
        except ContentMismatch:  # rewritten in place under a resumed upload: its parts are sent again
            job.update_slot("cover", oss=None)
            raise TransientError(f"cover {path.name} was rewritten while it was uploaded; sending it again") from None
        except PermanentError as e:
            ctx.note("upload.cover_failed", f"cover {path.name} not uploaded: {e}; uploading the video without it",
                     level="warning", cover=str(path), error=str(e))
            job.set(cover={"failed": str(e)})
            return None
        return slot if slot.get("urls", {}).get("ImageURL") else None

    def _creator(self, ctx: UploadContext) -> Creator:
        return Creator(self.rpc, self.config, ctx.retry, ctx.cancel, ctx.note)

    def _refresh(self, ctx: UploadContext, video_id: str) -> UploadTicket:
        """RefreshUploadVideo: fresh credentials for the same object (kept in memory only)."""
        answer = self._call(RefreshUploadVideoRequest.RefreshUploadVideoRequest, ctx=ctx, VideoId=video_id)
        ticket = decode_ticket(answer, "VideoId", force_https=self.rpc.https, region=self.config.region)
        self._remember(ticket)
        return ticket

    # ---- URL pull ------------------------------------------------------------------------

    def _pull(self, request: UploadRequest, ctx: UploadContext, job: UploadState) -> UploadResult:
        """Submit the URLs of a .url file; JobIds are saved per group, so nothing is sent twice."""
        if request.size > URL_LIST_MAX:
            raise PermanentError(f"{request.path.name}: larger than {URL_LIST_MAX} bytes; not a URL list")
        with ctx.open_source(request) as src:
            text = src.read_at(0, request.size).decode("utf-8", "replace")
        urls = parse_url_list(text, request.path.name)
        submitter = self._submitter(ctx.retry, ctx.cancel, ctx.note)
        # No title of its own (the default is the file's stem): each pull is named after its URL.
        title = None if request.metadata.title == request.path.stem else title_of(request)
        pairs = [(str(u), str(j)) for u, j in job.state.get("jobs") or ()]
        for group in submitter.groups(urls[len(pairs):]):
            since = job.state.get("pending_since")
            look_first = since is not None  # an earlier attempt may have submitted this group
            if since is None:
                since = time.time()
                job.set(pending_since=since)
            titles = [_url_title(url) if title is None else title if len(urls) == 1
                      else clean_text(f"{title} ({len(pairs) + i})", TITLE_MAX) for i, url in enumerate(group, 1)]
            pairs += submitter.submit(group, titles, since=float(since), look_first=look_first)
            job.set(jobs=[list(p) for p in pairs], pending_since=None)
        job_ids = [j for _, j in pairs]
        remote_id = ",".join(job_ids)
        ctx.remote_id_known(remote_id, "url_pull")
        ctx.progress(request.size)
        return UploadResult(remote_id, "url_pull", {"job_ids": remote_id, "urls": str(len(pairs))})

    def _submitter(self, retry: RetryPolicy, cancel: threading.Event, note: Callable[..., None]) -> PullSubmitter:
        cfg = self.config
        extra = dict(TemplateGroupId=cfg.template_group_id, WorkflowId=cfg.workflow_id,
                     StorageLocation=cfg.storage_location, AppId=cfg.app_id, UserData=cfg.user_data)
        return PullSubmitter(self.rpc, retry, cancel, note, extra)

    # ---- helpers -------------------------------------------------------------------------

    def _call(self, request_class: type, ctx: UploadContext | None = None, **params: Any) -> dict[str, Any]:
        """One RPC with per-request retries: the job's policy and cancel, else the provider's."""
        action = request_class.__name__.removesuffix("Request")

        def on_retry(attempt: int, error: BaseException, wait_s: float) -> None:
            if ctx is not None:
                ctx.note("upload.retrying", f"VOD {action} failed; retrying", step=action, attempt=attempt,
                         wait_seconds=round(wait_s, 3), error=str(error))

        retry, cancel = (ctx.retry, ctx.cancel) if ctx is not None else (self.call_retry, self._closed)
        return call_with_retry(lambda: self.rpc.call(request_class, **params), retry, cancel, on_retry=on_retry)

    def _remember(self, ticket: UploadTicket) -> None:
        now = time.time()
        with self._tickets_lock:
            self._tickets = {k: t for k, t in self._tickets.items() if t.credentials.expires_at > now}
            self._tickets[ticket.media_id] = ticket

    def _cached(self, media_id: str) -> UploadTicket | None:
        with self._tickets_lock:
            ticket = self._tickets.get(media_id)
        return ticket if ticket is not None and not ticket.credentials.renewal_due() else None

    def _forget(self, media_id: str) -> None:
        with self._tickets_lock:
            self._tickets.pop(media_id, None)


def _url_title(url: str) -> str:
    """A title from a URL's last path segment (decoded), for media without one of their own."""
    name = posixpath.basename(unquote(urlsplit(url).path))
    return clean_text(name, TITLE_MAX) or "untitled"
