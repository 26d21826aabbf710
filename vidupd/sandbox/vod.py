"""ApsaraVideo VOD emulation: the RPC endpoint (API version 2017-03-21) on 127.0.0.1.

It hands out upload addresses and STS credentials for the OSS sandbox, follows each
media object to completion through OSS's completion hook, and journals every completed
video, image, attached medium, pulled URL and registered file once in uploads.jsonl.
"""

from __future__ import annotations

import base64
import json
import posixpath
import random
import re
import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

from .common import CannedAnswer, Countdown, Faults, Holds, OPEN_UPLOADS_PATH, QuietHandler, SandboxHTTPServer, SandboxOptions, UploadsJournal, drop_connection, send_json, write_atomic
from .oss import DEFAULT_STS_TTL, OssSandbox
from .oss_store import ObjectInfo
from .vod_pull import UrlPuller
from .vod_rpc import NonceCache, VodError, verify
from .vod_state import VIDEO_KINDS, MediaRecord, UrlJob, VodState, new_id

# The upload overview's formats: what CreateUploadVideo takes in FileName (audio too).
VIDEO_EXTS = ("mp4", "ts", "3gp", "mpg", "mpeg", "mpe", "dat", "vob", "asf", "avi", "wmv", "flv", "f4v", "rm",
              "rmvb", "mov", "mkv", "m3u8", "dv", "gif", "m2t", "m4v", "mj2", "mjpeg", "mts", "ogg", "qt", "swf",
              "webm")
AUDIO_EXTS = ("mp3", "wma", "wav", "aac", "ra", "m4a", "flac", "ape", "ac3", "amr", "caf", "acm")
IMAGE_EXTS = ("png", "jpg", "jpeg", "gif")
ATTACHED_EXTS = {
    "watermark": ("png", "gif", "apng", "mov"),
    "subtitle": ("srt", "ass", "stl", "ttml", "vtt"),
    "material": ("jpg", "gif", "png", "mp4", "mat", "zip"),
}
_EXTRA_FIELDS = ("Description", "Tags", "CateId", "CoverURL", "UserData", "TemplateGroupId", "WorkflowId",
                 "StorageLocation", "AppId", "FileSize")
_MAX_FORM_BODY = 1 << 20
TITLE_BYTES, DESCRIPTION_BYTES = 128, 1024  # UTF-8 bytes, as the API reference counts them
_REFERENCE_ID = re.compile(r"[A-Za-z0-9_-]{6,64}")
VIDEO_STATUSES = ("Uploading", "UploadFail", "UploadSucc", "Transcoding", "TranscodeFail", "Checking", "Blocked",
                  "Normal", "ProduceFail")


class DropAnswer(Exception):
    """Raised by an action that did its work but whose answer the fault switches lose."""


def _iso(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""


def _b64json(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value).encode("utf-8")).decode("ascii")


def _text(p: dict[str, str], name: str, max_len: int, required: bool = False, default: str = "") -> str:
    """A string parameter checked as the service checks it (length in UTF-8 bytes, emoji)."""
    value = p.get(name, default)
    if required and not value:
        raise VodError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    _check_length(name, value, max_len)
    if any(ord(c) > 0xFFFF for c in value):  # emoji and other 4-byte UTF-8 characters
        raise VodError(400, "IllegalCharacters", f"{name} contains illegal characters (emoji).")
    return value


def _check_length(name: str, value: str, max_bytes: int) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
        raise VodError(400, "LengthExceededMax", f"{name} exceeds the maximum length of {max_bytes} bytes (UTF-8).")


def _check_tags(p: dict[str, str]) -> None:
    raw = p.get("Tags", "")
    if any(ord(c) > 0xFFFF for c in raw):
        raise VodError(400, "IllegalCharacters", "Tags contains illegal characters (emoji).")
    tags = [t for t in raw.split(",") if t.strip()]
    if len(tags) > 16:
        raise VodError(400, "TagsExceededMax", "At most 16 tags are allowed.")
    if any(len(t) > 32 for t in tags):
        raise VodError(400, "LengthExceededMax", "A tag exceeds 32 characters.")


def _extension(file_name: str) -> str:
    base = posixpath.basename(file_name.split("?", 1)[0].replace("\\", "/"))
    _, dot, ext = base.rpartition(".")
    if not dot or not ext or not ext.isalnum() or len(ext) > 10:
        raise VodError(400, "InvalidFileName.Extension", "The file name has no valid extension.")
    return ext.lower()


def _choice(p: dict[str, str], name: str, allowed: tuple[str, ...], default: str = "") -> str:
    value = (p.get(name) or default).lower()
    if not value:
        raise VodError(400, f"Missing{name}", f"{name} is mandatory for this action.")
    if value not in allowed:
        raise VodError(400, "InvalidParameter", f"{name} must be one of {', '.join(allowed)}, not {value!r}.")
    return value


class VodSandbox:
    """The VOD RPC endpoint; `endpoint` is host:port as aliyunsdkcore's endpoint settings want it."""

    def __init__(self, data_dir: Path, options: SandboxOptions, journal: UploadsJournal, oss: OssSandbox,
                 port: int = 0, region: str = "cn-shanghai", *,
                 status_delays: tuple[float, float] = (0.5, 1.5), pull_step_delay: float = 0.0):
        root = Path(data_dir) / "vod"
        root.mkdir(parents=True, exist_ok=True)
        self.options, self.journal, self.oss, self.region = options, journal, oss, region
        self.status_delays = status_delays  # seconds in UploadSucc, then in Transcoding, before Normal
        self.state = VodState(root)
        self.credentials = self._account(root / "account.json")
        self.faults = Faults(options)
        self.rng = random.Random(options.seed)
        self.nonces = NonceCache()
        self.drop_create = Countdown(options.drop_create_answer)
        self.canned = CannedAnswer(options)
        self.holds = Holds(options.hold_answer)
        self._refreshes = 0  # RefreshUploadVideo calls answered (refresh_new_key / refresh_new_endpoint)
        self._refresh_lock = threading.Lock()
        self._port = port
        self._server: SandboxHTTPServer | None = None
        self._puller = UrlPuller(self.state, oss, self._prepare_pull, pull_step_delay)
        oss.add_completion_hook(self._object_completed)

    @staticmethod
    def _account(path: Path) -> dict[str, str]:
        """The sandbox account's AccessKey pair: made once, kept across restarts (not a secret)."""
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            creds = {"access_key_id": "LTAI5sandbox" + secrets.token_hex(6),
                     "access_key_secret": secrets.token_urlsafe(22)}
            write_atomic(path, json.dumps(creds).encode("utf-8"))
            return creds

    def start(self) -> None:
        server = SandboxHTTPServer(_VodHandler, self._port)
        server.sandbox = self  # type: ignore[attr-defined]
        self._server = server
        # A short poll interval makes shutdown() quick (the default waits up to 0.5 s).
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         name=f"sandbox-vod-{server.address}", daemon=True).start()
        self._puller.start()

    def shutdown(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._puller.stop()

    @property
    def endpoint(self) -> str:
        if self._server is None:
            raise RuntimeError("VodSandbox.start() has not been called")
        return self._server.address

    # ----- OSS side -----
    def _object_completed(self, info: ObjectInfo) -> None:
        try:
            rec, first = self.state.complete_media(info.key, time.time(), info.size, info.md5)
        except KeyError:
            return  # an object no media ID points at (HLS slices, plain oss2 use)
        if first:
            self.journal.record(provider="aliyun-vod", remote_id=rec.media_id, kind=rec.kind, size=info.size,
                                md5=info.md5, title=rec.title, object_key=info.key)

    def _upload_info(self, key: str, endpoint: str | None = None) -> dict[str, str]:
        prefix = posixpath.dirname(key) + "/"
        address = {"Endpoint": endpoint or self.options.oss_endpoint or self.oss.endpoint, "Bucket": self.oss.bucket, "FileName": key,
                   "ObjectPrefix": prefix}
        sts = self.oss.issue_sts(self.options.token_ttl or DEFAULT_STS_TTL, prefix=prefix)
        auth = {**sts, "Region": self.oss.region}  # the bucket's region: what OSS V4 signatures are scoped to
        return {"UploadAddress": _b64json(address), "UploadAuth": _b64json(auth)}

    def _issue(self, kind: str, build: Callable[[str], MediaRecord]) -> MediaRecord:
        """A new media record, or with duplicate_ids the last one of that kind (the seed's bug)."""
        if self.options.duplicate_ids:
            previous = self.state.last_issued(kind)
            if previous is not None:
                return previous
        return self.state.add_media(build(new_id()))

    def _prepare_pull(self, job: UrlJob) -> str:
        ext = posixpath.splitext(urlsplit(job.url).path)[1].lstrip(".").lower() or "mp4"
        rec = self.state.media(job.media_id)
        if rec is None:
            key = self._video_key(job.media_id, ext)
            rec = self.state.add_media(MediaRecord(job.media_id, "url_pull", job.title, key, time.time(), ext=ext,
                                                   source_url=job.url, extra={"UserData": job.user_data}))
        return rec.object_key

    @staticmethod
    def _video_key(media_id: str, ext: str) -> str:
        stem = f"{media_id[:8]}-{int(time.time() * 1000):x}"
        return f"sv/{stem}/{stem}.{ext}"

    # ----- actions -----
    def open_uploads(self) -> dict[str, Any]:
        """What VOD holds open: its bucket's multipart uploads and the videos still
        "Uploading" (also served at OPEN_UPLOADS_PATH on the VOD host)."""
        return {"oss_multipart": self.oss.open_multipart(), "vod_uploading": self.state.uploading()}

    def dispatch(self, action: str, p: dict[str, str]) -> dict[str, Any]:
        handler = _ACTIONS.get(action)
        if handler is None:
            raise VodError(404, "InvalidAction.NotFound", f"Specified api {action!r} is not found.")
        return handler(self, p)

    def create_upload_video(self, p: dict[str, str]) -> dict[str, Any]:
        title = _text(p, "Title", TITLE_BYTES, required=True)
        file_name = _text(p, "FileName", 1024, required=True)
        ext = _extension(file_name)
        if ext not in VIDEO_EXTS + AUDIO_EXTS:
            raise VodError(400, "InvalidFileName.Extension", f"The file extension {ext!r} is not supported.")
        _text(p, "Description", DESCRIPTION_BYTES)
        _check_tags(p)
        reference = p.get("ReferenceId", "")
        if reference and not _REFERENCE_ID.fullmatch(reference):
            raise VodError(400, "InvalidParameter", "ReferenceId must be 6-64 letters, digits, '-' or '_'.")
        extra = {k: p[k] for k in _EXTRA_FIELDS if k in p}
        try:
            rec = self._issue("video", lambda mid: MediaRecord(mid, "video", title, self._video_key(mid, ext),
                                                               time.time(), ext=ext, file_name=file_name, extra=extra,
                                                               reference_id=reference))
        except ValueError:
            raise VodError(400, "InvalidReferenceId.AlreadyExists",
                           "The ReferenceId is already used by another video of this account.") from None
        if self.drop_create.take():
            raise DropAnswer()
        return {"VideoId": rec.media_id, **self._upload_info(rec.object_key)}

    def _video(self, p: dict[str, str]) -> MediaRecord:
        """The video a VideoId or a ReferenceId names, or InvalidVideo.NotFound."""
        if p.get("VideoId"):
            rec = self.state.media(_text(p, "VideoId", 64))
        elif p.get("ReferenceId"):
            rec = self.state.by_reference(_text(p, "ReferenceId", 64))
        else:
            raise VodError(400, "MissingVideoId", "VideoId is mandatory for this action.")
        if rec is None or rec.kind not in VIDEO_KINDS:
            raise VodError(404, "InvalidVideo.NotFound", "The video does not exist.")
        return rec

    def refresh_upload_video(self, p: dict[str, str]) -> dict[str, Any]:
        rec = self._video(p)
        if rec.kind != "video":
            raise VodError(404, "InvalidVideo.NotFound", "The video does not exist.")
        with self._refresh_lock:
            self._refreshes += 1
            n = self._refreshes
        if n == self.options.refresh_new_key:  # VOD's overwrite path: the object moves
            rec = self.state.move_media(rec.media_id, self._video_key(rec.media_id, rec.ext))
        endpoint = None
        if n == self.options.refresh_new_endpoint:  # another name for the same OSS endpoint
            endpoint = self.oss.endpoint.replace("127.0.0.1", "localhost")
        return {"VideoId": rec.media_id, **self._upload_info(rec.object_key, endpoint)}

    def create_upload_image(self, p: dict[str, str]) -> dict[str, Any]:
        image_type = _choice(p, "ImageType", ("default", "cover"), default="default")
        ext = _choice(p, "ImageExt", IMAGE_EXTS, default="png")
        title = _text(p, "Title", TITLE_BYTES)
        _text(p, "Description", DESCRIPTION_BYTES)
        _check_tags(p)
        extra = {k: p[k] for k in _EXTRA_FIELDS if k in p}
        rec = self._issue("image", lambda mid: MediaRecord(mid, "image", title, f"image/{image_type}/{mid}.{ext}",
                                                           time.time(), ext=ext, sub_type=image_type, extra=extra))
        url = self.oss.object_url(rec.object_key)
        return {"ImageId": rec.media_id, "ImageURL": url, "FileURL": url, **self._upload_info(rec.object_key)}

    def create_upload_attached_media(self, p: dict[str, str]) -> dict[str, Any]:
        business = _choice(p, "BusinessType", tuple(ATTACHED_EXTS))
        default_ext = _extension(p["FileName"]) if p.get("FileName") else ""
        ext = _choice(p, "MediaExt", ATTACHED_EXTS[business], default=default_ext)
        title = _text(p, "Title", TITLE_BYTES)
        _text(p, "Description", DESCRIPTION_BYTES)
        _check_tags(p)
        extra = {k: p[k] for k in _EXTRA_FIELDS if k in p}
        rec = self._issue("attached", lambda mid: MediaRecord(
            mid, "attached", title, f"attached/{business}/{mid}.{ext}", time.time(), ext=ext, sub_type=business,
            file_name=p.get("FileName", ""), extra=extra))
        url = self.oss.object_url(rec.object_key)
        return {"MediaId": rec.media_id, "MediaURL": url, "FileURL": url, **self._upload_info(rec.object_key)}

    def upload_media_by_url(self, p: dict[str, str]) -> dict[str, Any]:
        urls = [u for u in _text(p, "UploadURLs", 1 << 16, required=True).split(",") if u.strip()]
        if not 1 <= len(urls) <= 20:
            raise VodError(400, "InvalidParameter", "UploadURLs takes 1 to 20 URLs.")
        try:
            metas = json.loads(p.get("UploadMetadatas") or "[]")
            assert isinstance(metas, list) and all(isinstance(m, dict) for m in metas)
        except (ValueError, AssertionError):
            raise VodError(400, "InvalidParameter", "UploadMetadatas must be a JSON list of objects.") from None
        by_url = {unquote(str(m.get("SourceURL", ""))): m for m in metas}
        jobs = []
        for sent in urls:
            url = unquote(sent.strip())
            meta = by_url.get(url, {})
            title = str(meta.get("Title") or "")
            _check_length("UploadMetadatas.Title", title, TITLE_BYTES)
            title = title or posixpath.basename(urlsplit(url).path)[:TITLE_BYTES // 4] or "untitled"
            job = UrlJob(new_id(), sent.strip(), url, new_id(), time.time(), title=title,
                         user_data=p.get("UserData", ""))
            self.state.put_job(job)
            self._puller.submit(job.job_id)
            jobs.append({"JobId": job.job_id, "SourceURL": job.source_url})
        return {"UploadJobs": jobs}

    def get_url_upload_infos(self, p: dict[str, str]) -> dict[str, Any]:
        job_ids = [j for j in p.get("JobIds", "").split(",") if j.strip()]
        urls = [u for u in p.get("UploadURLs", "").split(",") if u.strip()]
        if not job_ids and not urls:
            raise VodError(400, "MissingJobIds", "JobIds or UploadURLs is mandatory for this action.")
        if len(job_ids) > 10 or len(urls) > 10:
            raise VodError(400, "InvalidParameter", "At most 10 JobIds or UploadURLs per call.")
        found: list[UrlJob] = []
        missing: list[str] = []
        for job_id in job_ids:
            job = self.state.job(job_id.strip())
            found.append(job) if job else missing.append(job_id)
        for sent in urls:
            jobs = self.state.jobs_for_url(unquote(sent.strip()))
            found.extend(jobs) if jobs else missing.append(sent)
        return {"URLUploadInfoList": [self._job_info(j) for j in found], "NonExists": missing}

    @staticmethod
    def _job_info(job: UrlJob) -> dict[str, Any]:
        return {"JobId": job.job_id, "UploadURL": job.source_url, "Status": job.status,
                "MediaId": job.media_id if job.status == "SUCCESS" else "",
                "ErrorCode": job.error_code, "ErrorMessage": job.error_message,
                "FileSize": str(job.file_size) if job.file_size is not None else "",
                "CreationTime": _iso(job.created_at), "CompleteTime": _iso(job.completed_at), "UserData": job.user_data}

    def register_media(self, p: dict[str, str]) -> dict[str, Any]:
        try:
            metas = json.loads(_text(p, "RegisterMetadatas", 1 << 16, required=True))
            assert isinstance(metas, list) and all(isinstance(m, dict) and m.get("FileURL") for m in metas)
        except (ValueError, AssertionError):
            raise VodError(400, "InvalidParameter", "RegisterMetadatas must be a JSON list of {FileURL, ...}.") \
                from None
        if not 1 <= len(metas) <= 10:
            raise VodError(400, "InvalidParameter", "RegisterMetadatas takes 1 to 10 entries.")
        registered, failed = [], []
        for meta in metas:
            file_url = str(meta["FileURL"])
            key = self.oss.key_from_url(file_url)
            info = self.oss.object_info(key) if key else None
            if key is None or info is None:
                failed.append(file_url)
                continue
            rec = self.state.registered_at(key)
            if rec is not None:
                registered.append({"FileURL": file_url, "MediaId": rec.media_id, "NewRegister": False})
                continue
            title = str(meta.get("Title") or "")
            _check_length("RegisterMetadatas.Title", title, TITLE_BYTES)
            _check_length("RegisterMetadatas.Description", str(meta.get("Description") or ""), DESCRIPTION_BYTES)
            title = title or posixpath.basename(key)[:TITLE_BYTES // 4]
            rec = self.state.add_media(MediaRecord(new_id(), "registered", title, key, time.time(),
                                                   completed_at=time.time(), size=info.size, md5=info.md5,
                                                   journaled=True, source_url=file_url))
            self.journal.record(provider="aliyun-vod", remote_id=rec.media_id, kind="registered", size=info.size,
                                md5=info.md5, title=title, object_key=key)
            registered.append({"FileURL": file_url, "MediaId": rec.media_id, "NewRegister": True})
        return {"RegisteredMediaList": registered, "FailedFileURLs": failed}

    def video_status(self, rec: MediaRecord, now: float) -> str:
        if rec.completed_at is None:
            return "Uploading"
        if self.options.video_status:  # the switch: review, blocking or a failed job
            return self.options.video_status
        elapsed = now - rec.completed_at
        if elapsed < self.status_delays[0]:
            return "UploadSucc"
        return "Transcoding" if elapsed < sum(self.status_delays) else "Normal"

    def get_video_info(self, p: dict[str, str]) -> dict[str, Any]:
        rec = self._video(p)
        status = self.video_status(rec, time.time())
        cover = rec.extra.get("CoverURL", "")
        if not cover and status == "Normal":
            cover = self.oss.object_url(posixpath.dirname(rec.object_key) + "/snapshots/normal/cover.jpg")
        video = {
            "VideoId": rec.media_id, "Title": rec.title, "Status": status, "Size": rec.size or 0,
            # The sandbox does not decode media: a nominal 1 Mbit/s duration once "transcoded".
            "Duration": round((rec.size or 0) / 125_000, 3) if status == "Normal" else 0.0,
            "CoverURL": cover, "Description": rec.extra.get("Description", ""), "Tags": rec.extra.get("Tags", ""),
            "CateId": rec.extra.get("CateId", ""), "CreationTime": _iso(rec.created_at),
            "ModificationTime": _iso(rec.completed_at or rec.created_at), "RegionId": self.region,
            "StorageLocation": self.oss.bucket, "TemplateGroupId": rec.extra.get("TemplateGroupId", ""),
            "AppId": rec.extra.get("AppId", "app-1000000"),
        }
        if rec.reference_id:
            video["ReferenceId"] = rec.reference_id
        return {"Video": video}

    def delete_video(self, p: dict[str, str]) -> dict[str, Any]:
        """DeleteVideo: VideoIds, 1 to 20 ids separated by commas; ids that name no video come
        back in NonExistVideoIds (the call itself succeeds), as the service answers."""
        ids = [v.strip() for v in _text(p, "VideoIds", 20 * 65, required=True).split(",") if v.strip()]
        if not 1 <= len(ids) <= 20:
            raise VodError(400, "InvalidParameter", "VideoIds takes 1 to 20 video ids.")
        missing = []
        for video_id in ids:
            rec = self.state.media(video_id)
            if rec is None or rec.kind not in VIDEO_KINDS or not self.state.delete_media(video_id):
                missing.append(video_id)
        return {"NonExistVideoIds": missing, "ForbiddenVideoIds": []}

    def report_upload_progress(self, p: dict[str, str]) -> dict[str, Any]:
        """The stock SDK's unsigned progress report: noted, never refused."""
        rec = self.state.media(p.get("VideoId", ""))
        if rec is not None:
            try:
                done = int(json.loads(p.get("UploadPoint") or "{}").get("doneBytes", 0))
            except (ValueError, AttributeError, TypeError):
                done = 0
            self.state.update_media(rec.media_id, reported_bytes=max(done, rec.reported_bytes))
        return {}


_ACTIONS: dict[str, Callable[[VodSandbox, dict[str, str]], dict[str, Any]]] = {
    "CreateUploadVideo": VodSandbox.create_upload_video,
    "RefreshUploadVideo": VodSandbox.refresh_upload_video,
    "CreateUploadImage": VodSandbox.create_upload_image,
    "CreateUploadAttachedMedia": VodSandbox.create_upload_attached_media,
    "UploadMediaByURL": VodSandbox.upload_media_by_url,
    "GetURLUploadInfos": VodSandbox.get_url_upload_infos,
    "RegisterMedia": VodSandbox.register_media,
    "GetVideoInfo": VodSandbox.get_video_info,
    "DeleteVideo": VodSandbox.delete_video,
}


class _VodHandler(QuietHandler):
    server_version = "Tengine"

    @property
    def sandbox(self) -> VodSandbox:
        return self.server.sandbox  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_GET

    def _handle(self) -> None:
        sb = self.sandbox
        if self.command == "GET" and self.path.split("?")[0] == OPEN_UPLOADS_PATH:  # no faults, no signature
            send_json(self, 200, sb.open_uploads())
            return
        request_id = str(uuid.uuid4()).upper()
        try:
            params = self._params()
            fault = sb.faults.roll()
            if fault == "drop":
                drop_connection(self)
                return
            if fault == "error":
                status = sb.rng.choice((500, 503))
                raise VodError(status, "InternalError" if status == 500 else "ServiceUnAvailable",
                               "Injected failure (sandbox fail_rate); please retry.")
            action = params.get("Action", "")
            if action == "ReportUploadProgress" and "Signature" not in params:
                result = sb.report_upload_progress(params)
            else:
                if sb.options.throttle_rate > 0 and sb.rng.random() < sb.options.throttle_rate:
                    raise VodError(503, "Throttling.User", "Request was denied due to user flow control.")
                verify(self.command, params, sb.credentials["access_key_id"], sb.credentials["access_key_secret"],
                       sb.nonces)
                if sb.canned.serve(self, action):
                    return
                if sb.options.vod_forbidden:
                    raise VodError(403, sb.options.vod_forbidden,
                                   "User not authorized to operate on the specified resource.")
                result = sb.dispatch(action, params)
                sb.holds.hold(action)
            send_json(self, 200, {"RequestId": request_id, **result})
        except DropAnswer:  # the action happened; its answer never arrives
            drop_connection(self)
        except VodError as err:
            send_json(self, err.status, {"RequestId": request_id, "HostId": f"vod.{sb.region}.aliyuncs.com",
                                         "Code": err.code, "Message": err.message})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # a sandbox bug: answer like the service's own 500, keep serving
            self.close_connection = True
            send_json(self, 500, {"RequestId": request_id, "Code": "InternalError", "Message": f"sandbox: {exc!r}"})

    def _params(self) -> dict[str, str]:
        """Query parameters plus form-body parameters (the SDK may send either)."""
        target = self.path
        if target.startswith(("http://", "https://")):  # absolute form: we were used as the HTTP proxy
            parts = urlsplit(target)
            host = parts.hostname or ""
            if not (parts.netloc == self.sandbox.endpoint or host.endswith(".aliyuncs.com") or host == "localhost"):
                self._read_body()
                raise VodError(403, "Forbidden", f"the VOD sandbox is not a general proxy ({parts.netloc})")
            query = parts.query
        else:
            query = target.partition("?")[2]
        params = dict(parse_qsl(query, keep_blank_values=True))
        body = self._read_body()
        ctype = self.headers.get("Content-Type", "")
        if body and ("form-urlencoded" in ctype or not ctype):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return params

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_FORM_BODY:
            self.close_connection = True
            raise VodError(400, "InvalidParameter", "The request body is missing a valid Content-Length or too big.")
        return self.rfile.read(length) if length else b""
