"""Provider registry: config names to backend classes, imported only when used."""

from __future__ import annotations

import importlib

from .base import Provider

_REGISTRY = {
    "youku": "vidupd.providers.youku.provider:YoukuProvider",
    "aliyun-vod": "vidupd.providers.aliyun_vod.provider:AliyunVodProvider",
    "directory": "vidupd.providers.directory:DirectoryProvider",
    "null": "vidupd.providers.null:NullProvider",
}


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def provider_class(name: str) -> type[Provider]:
    """The class for a provider name; KeyError if unknown, ImportError if its module is missing."""
    module, _, cls = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), cls)
