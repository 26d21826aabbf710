"""What the VOD emulation remembers: media (videos, images, attached media, pulled and
registered media) and URL pull jobs. One JSON file per record, written atomically, so a
restarted sandbox knows every ID it handed out and every change is O(1) on disk.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .common import write_atomic

UPLOAD_KINDS = ("video", "image", "attached", "url_pull")  # media whose object is uploaded to OSS
VIDEO_KINDS = ("video", "url_pull", "registered")  # media GetVideoInfo knows


@dataclass(frozen=True)
class MediaRecord:
    """One media ID and what the sandbox knows about it."""

    media_id: str
    kind: str  # video | image | attached | url_pull | registered
    title: str
    object_key: str
    created_at: float
    completed_at: float | None = None  # when its object was complete in OSS
    size: int | None = None
    md5: str | None = None
    journaled: bool = False
    ext: str = ""
    sub_type: str = ""  # ImageType (default|cover) or BusinessType (watermark|subtitle|material)
    file_name: str = ""
    source_url: str = ""  # URL pull source or RegisterMedia FileURL
    reported_bytes: int = 0  # from the stock SDK's ReportUploadProgress calls
    extra: dict[str, str] = field(default_factory=dict)  # Description, Tags, CateId, CoverURL, UserData, ...
    reference_id: str = ""  # the caller's ReferenceId (CreateUploadVideo), unique per account


@dataclass(frozen=True)
class UrlJob:
    """One URL of an UploadMediaByURL call."""

    job_id: str
    source_url: str  # as the client sent it (percent-encoded)
    url: str  # decoded: what is fetched
    media_id: str
    created_at: float
    status: str = "PENDING"
    error_code: str = ""
    error_message: str = ""
    file_size: int | None = None
    completed_at: float | None = None
    title: str = ""
    user_data: str = ""


def new_id() -> str:
    return secrets.token_hex(16)


class VodState:
    """Thread-safe, persisted maps of media records and URL jobs."""

    def __init__(self, root: Path):
        self._media_dir = root / "media"
        self._jobs_dir = root / "jobs"
        self._media_dir.mkdir(parents=True, exist_ok=True)
        self._jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._media: dict[str, MediaRecord] = {}
        self._jobs: dict[str, UrlJob] = {}
        self._by_key: dict[str, str] = {}  # object key -> uploaded media id
        self._registered: dict[str, str] = {}  # object key -> registered media id
        self._by_reference: dict[str, str] = {}  # ReferenceId -> media id
        self._last_issued: dict[str, str] = {}  # kind -> most recent media id (duplicate_ids)
        for path in sorted(self._media_dir.glob("*.json")):
            self._index(MediaRecord(**json.loads(path.read_text(encoding="utf-8"))))
        for path in self._jobs_dir.glob("*.json"):
            job = UrlJob(**json.loads(path.read_text(encoding="utf-8")))
            self._jobs[job.job_id] = job
        order = sorted(self._media.values(), key=lambda r: r.created_at)
        self._last_issued = {r.kind: r.media_id for r in order}

    def _index(self, rec: MediaRecord) -> None:
        self._media[rec.media_id] = rec
        if rec.reference_id:
            self._by_reference[rec.reference_id] = rec.media_id
        if rec.kind == "registered":
            self._registered[rec.object_key] = rec.media_id
        else:
            self._by_key[rec.object_key] = rec.media_id

    @staticmethod
    def _write(path: Path, value: Any) -> None:
        write_atomic(path, json.dumps(asdict(value), ensure_ascii=False, sort_keys=True).encode("utf-8"))

    # ----- media -----
    def add_media(self, rec: MediaRecord) -> MediaRecord:
        """Store a new record; ValueError if its ReferenceId is already taken (checked atomically)."""
        with self._lock:
            if rec.reference_id and rec.reference_id in self._by_reference:
                raise ValueError(rec.reference_id)
            self._write(self._media_dir / f"{rec.media_id}.json", rec)
            self._index(rec)
            self._last_issued[rec.kind] = rec.media_id
        return rec

    def update_media(self, media_id: str, **changes: Any) -> MediaRecord:
        with self._lock:
            rec = replace(self._media[media_id], **changes)
            self._write(self._media_dir / f"{media_id}.json", rec)
            self._media[media_id] = rec
        return rec

    def complete_media(self, key: str, completed_at: float, size: int, md5: str | None) -> tuple[MediaRecord, bool]:
        """Mark the media uploaded at `key` complete; True when it must be journaled (first time)."""
        with self._lock:
            media_id = self._by_key.get(key)
            if media_id is None:
                raise KeyError(key)
            old = self._media[media_id]
            first = not old.journaled
            rec = replace(old, completed_at=old.completed_at if old.journaled else completed_at,
                          size=size, md5=md5, journaled=True)
            self._write(self._media_dir / f"{media_id}.json", rec)
            self._media[media_id] = rec
        return rec, first

    def move_media(self, media_id: str, key: str) -> MediaRecord:
        """Give the media a new object key (what a refresh that moves the upload address does)."""
        with self._lock:
            old = self._media[media_id]
            rec = replace(old, object_key=key)
            self._write(self._media_dir / f"{media_id}.json", rec)
            self._media[media_id] = rec
            if self._by_key.get(old.object_key) == media_id:
                del self._by_key[old.object_key]
            self._by_key[key] = media_id
        return rec

    def delete_media(self, media_id: str) -> bool:
        """Forget a video (DeleteVideo): False when no such media exists."""
        with self._lock:
            rec = self._media.pop(media_id, None)
            if rec is None:
                return False
            (self._media_dir / f"{media_id}.json").unlink(missing_ok=True)
            for index in (self._by_key, self._registered, self._by_reference):
                for k in [k for k, v in index.items() if v == media_id]:
                    del index[k]
            for kind in [k for k, v in self._last_issued.items() if v == media_id]:
                del self._last_issued[kind]
        return True

    def by_reference(self, reference_id: str) -> MediaRecord | None:
        with self._lock:
            media_id = self._by_reference.get(reference_id)
            return self._media.get(media_id) if media_id else None

    def media(self, media_id: str) -> MediaRecord | None:
        with self._lock:
            return self._media.get(media_id)

    def registered_at(self, key: str) -> MediaRecord | None:
        with self._lock:
            media_id = self._registered.get(key)
            return self._media.get(media_id) if media_id else None

    def last_issued(self, kind: str) -> MediaRecord | None:
        with self._lock:
            media_id = self._last_issued.get(kind)
            return self._media.get(media_id) if media_id else None

    # ----- URL jobs -----
    def put_job(self, job: UrlJob) -> UrlJob:
        with self._lock:
            self._write(self._jobs_dir / f"{job.job_id}.json", job)
            self._jobs[job.job_id] = job
        return job

    def update_job(self, job_id: str, **changes: Any) -> UrlJob:
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
            self._write(self._jobs_dir / f"{job_id}.json", job)
            self._jobs[job_id] = job
        return job

    def job(self, job_id: str) -> UrlJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs_for_url(self, url: str) -> list[UrlJob]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.url == url), key=lambda j: j.created_at)

    def uploading(self) -> list[str]:
        """Ids of videos created whose object never completed (GetVideoInfo: "Uploading")."""
        with self._lock:
            return sorted(m.media_id for m in self._media.values() if m.kind == "video" and m.completed_at is None)

    def unfinished_jobs(self) -> list[UrlJob]:
        done = ("SUCCESS", "FAIL", "DOWNLOAD_FAIL", "UPLOAD_FAIL")
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.status not in done), key=lambda j: j.created_at)
