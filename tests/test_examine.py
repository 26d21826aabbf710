"""intake.examine: the one decision about an incoming file, shared by the daemon's intake and
`vidupd upload` (which used to re-implement it)."""

from __future__ import annotations

import os
from pathlib import Path

from vidupd.intake.examine import examine
from vidupd.providers.base import Provider, UploadResult
from vidupd.providers.features import TakesCovers


class Videos(Provider):
    name = "videos"
    options = {}
    kinds = frozenset({"video"})

    def upload(self, request, ctx):  # pragma: no cover - never called here
        return UploadResult("x", "video")


class WithCovers(TakesCovers, Videos):
    name = "covers"
    kinds = frozenset({"video", "image"})


def provider(cls, tmp_path: Path) -> Provider:
    return cls("t", {}, tmp_path)


def test_a_fifo_is_refused_before_anything_else(tmp_path: Path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    seen = examine(fifo, fifo.stat(), "auto", {"t": provider(Videos, tmp_path)})
    assert seen.not_regular == "a FIFO" and seen.refusal == "is a FIFO, not a regular file"
    assert seen.wanted == () and seen.unwanted == () and seen.metadata is None


def test_kinds_decide_per_target(tmp_path: Path):
    clip, notes = tmp_path / "clip.mp4", tmp_path / "notes.txt"
    clip.write_bytes(b"v")
    notes.write_bytes(b"n")
    targets = {"a": provider(Videos, tmp_path), "b": provider(WithCovers, tmp_path)}
    seen = examine(clip, clip.stat(), "auto", targets)
    assert seen.kind == "video" and seen.wanted == (("a", "video"), ("b", "video"))
    assert seen.metadata is not None and seen.metadata.title == "clip"
    unknown = examine(notes, notes.stat(), "auto", targets)
    assert unknown.kind is None and unknown.wanted == () and unknown.metadata is None
    assert [t for t, _ in unknown.unwanted] == ["a", "b"] and "unknown extension" in unknown.unwanted[0][1]
    forced = examine(notes, notes.stat(), "video", targets)  # a watch's fixed kind wins over the extension
    assert forced.wanted == (("a", "video"), ("b", "video"))


def test_a_cover_goes_with_its_video_except_when_named_on_its_own(tmp_path: Path):
    (tmp_path / "clip.mp4").write_bytes(b"v")
    cover = tmp_path / "clip.jpg"
    cover.write_bytes(b"i")
    targets = {"a": provider(Videos, tmp_path), "b": provider(WithCovers, tmp_path)}
    watched = examine(cover, cover.stat(), "auto", targets)
    assert watched.wanted == ()  # b sends it within the video's job
    assert watched.unwanted == (("a", "videos does not take image files"),)
    named = examine(cover, cover.stat(), "auto", {"b": targets["b"]}, covers_travel_with_videos=False)
    assert named.wanted == (("b", "image"),)


def test_a_bad_sidecar_queues_nothing_and_says_why(tmp_path: Path):
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"v")
    (tmp_path / "clip.mp4.json").write_text("{not json")
    seen = examine(clip, clip.stat(), "auto", {"a": provider(Videos, tmp_path)})
    assert seen.sidecar_error is not None and seen.metadata is None
    assert seen.refusal == str(seen.sidecar_error) and "clip.mp4.json" in seen.refusal
