"""Optional provider features, declared by type instead of by string.

A provider class lists the mixins of what it can do beside `upload`, e.g.
`class AliyunVodProvider(Resumable, ReportsStatus, TakesCovers, PullsFromUrl, RegistersMedia,
Provider)`. The methods a feature needs (`media_status`, `submit_pull`, `register`) are
declared abstract on its mixin, so a class that claims the feature without implementing it
cannot be instantiated, and a caller narrowed by `isinstance` sees their signatures.
Callers never test for a method or a name: they ask `features(provider)` (in the spirit of
rclone's `Features.Fill`), which answers for a class or an instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping

from .base import MediaStatus, Provider


class Resumable:
    """Resumes an interrupted upload from `ctx.checkpoint` (saved as it goes) instead of
    sending the whole file again."""


class ReportsStatus(ABC):
    """The platform processes media after upload; `media_status` tells where it stands, so
    the pool can wait for "ready" (`wait_ready`)."""

    @abstractmethod
    def media_status(self, remote_id: str, remote_kind: str) -> MediaStatus:
        """Processing state of a committed object (PermanentError for an id it never gave)."""


class TakesCovers:
    """Takes a same-stem image beside a video as the video's cover (request.companions
    ["cover"]), in the video's job: the image then gets no job of its own."""


class PullsFromUrl(ReportsStatus):
    """Has the platform fetch media from http(s) URLs (`.url` files of kind "url_pull", and
    `vidupd pull`); the pulls' state comes from `media_status(ids, "url_pull")`."""

    @abstractmethod
    def submit_pull(self, urls: list[str], title: str | None) -> list[tuple[str, str]]:
        """Submit `urls` once: the (url, pull job id) pairs, in order."""


class RegistersMedia(ABC):
    """Registers files already in the platform's storage as media (`vidupd register`)."""

    @abstractmethod
    def register(self, file_urls: list[str], title: str | None) -> tuple[list[tuple[str, str]], list[str]]:
        """(file URL, media id) pairs registered, and the URLs the platform refused."""


class Abandons(ABC):
    """Can give an upload up for good on the platform from its checkpoint alone (cancel it,
    abort what storage holds for it), so nothing is left to expire there. The engine calls it
    when a job with a checkpoint is given up for good (its file vanished); `vidupd cancel`
    can reuse it."""

    @abstractmethod
    def abandon(self, checkpoint: Mapping[str, Any]) -> str | None:
        """Best effort, one try of each call (with the request timeout): what was done, None
        when there was nothing to do; a ProviderError (naming what failed) otherwise."""


@dataclass(frozen=True)
class Features:
    """What a provider can do besides uploading; every flag comes from its declared types."""

    resume: bool = False
    status: bool = False
    cover: bool = False
    pull: bool = False
    register: bool = False
    abandon: bool = False


def features(provider: Provider | type[Provider]) -> Features:
    """The optional features a provider (class or instance) declares."""
    cls = provider if isinstance(provider, type) else type(provider)
    return Features(resume=issubclass(cls, Resumable), status=issubclass(cls, ReportsStatus),
                    cover=issubclass(cls, TakesCovers), pull=issubclass(cls, PullsFromUrl),
                    register=issubclass(cls, RegistersMedia), abandon=issubclass(cls, Abandons))
