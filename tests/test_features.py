"""Issue 9 point 4: optional provider features are declared by type and read by one
`features()` function; the content hash travels as one ContentHash; `vidupd pull` and
`vidupd register` refuse a provider without the feature before writing anything; and the
option checks of the issue's VOD target are made by check-config."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import fastcrc
import pytest
from helpers import vidupd, write_config

from vidupd import providers
from vidupd.core.content import ContentHash, content_hash
from vidupd.core.model import FileIdentity, Metadata
from vidupd.providers.base import Provider, UploadContext, UploadRequest
from vidupd.providers.features import (Features, PullsFromUrl, RegistersMedia, ReportsStatus, Resumable, TakesCovers,
                                       features)

# What each provider offers (PROTOCOLS.md, README): the declared types must say exactly this.
EXPECTED = {
    "youku": Features(resume=True, status=True, abandon=True),
    "aliyun-vod": Features(resume=True, status=True, cover=True, pull=True, register=True, abandon=True),
    "directory": Features(resume=True),
    "null": Features(),
}
# The methods each feature brings: a class has them exactly when it declares the feature.
METHODS = {"status": ("media_status",), "pull": ("submit_pull",), "register": ("register",)}


@pytest.mark.parametrize("name", providers.names())
def test_every_provider_declares_exactly_what_it_implements(name: str) -> None:
    cls = providers.provider_class(name)
    found = features(cls)
    assert found == EXPECTED[name]
    for feature, methods in METHODS.items():
        for method in methods:
            # from the class's own MRO: every ABC's metaclass has a `register` of its own
            defined = [vars(c)[method] for c in cls.__mro__ if method in vars(c)]
            implemented = bool(defined) and not getattr(defined[0], "__isabstractmethod__", False)
            assert implemented is getattr(found, feature), f"{name}: {method} vs the {feature} feature"
    assert not inspect.isabstract(cls), f"{name} declares a feature it does not implement"
    # `.url` files reach a puller as kind url_pull (null takes them too: a dry run sends nothing)
    assert "url_pull" in cls.kinds or not found.pull, f"{name} pulls but takes no url_pull files"
    assert found.status is issubclass(cls, ReportsStatus) and found.pull is issubclass(cls, PullsFromUrl)
    assert found.register is issubclass(cls, RegistersMedia) and found.cover is issubclass(cls, TakesCovers)
    assert found.resume is issubclass(cls, Resumable)


def test_no_string_abilities_are_left() -> None:
    assert not hasattr(Provider, "abilities")
    for name in providers.names():
        assert not hasattr(providers.provider_class(name), "abilities"), name
    assert "work_dir" not in {f.name for f in dataclasses.fields(UploadContext)}


class _Plain(Provider):
    name = "plain"
    options: dict = {}

    def upload(self, request, ctx):  # type: ignore[no-untyped-def]
        raise AssertionError("not called")


class _Claims(ReportsStatus, _Plain):
    """Claims the status feature without implementing media_status."""


def test_features_of_an_instance_and_a_claim_without_the_method(tmp_path: Path) -> None:
    plain = _Plain("t", {}, tmp_path)
    assert features(plain) == features(_Plain) == Features()
    assert not hasattr(plain, "media_status")  # no duck-typed default on the base any more
    with pytest.raises(TypeError, match="media_status"):
        _Claims("t", {}, tmp_path)


def test_content_hash_is_one_value_with_its_conveniences(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    data = bytes(range(256)) * 5000  # 1.28 MB: three 512 KiB pieces
    path.write_bytes(data)
    identity = FileIdentity.of(path.stat())
    md5 = content_hash(path, identity, "md5", piece_size=512 << 10)
    assert (md5.kind, md5.value, md5.md5, md5.content_id) == ("md5", hashlib.md5(data).hexdigest(),
                                                               hashlib.md5(data).hexdigest(),
                                                               hashlib.md5(data).hexdigest())
    assert md5.pieces is not None and md5.pieces.pieces == tuple(
        hashlib.md5(data[i:i + (512 << 10)]).hexdigest() for i in range(0, len(data), 512 << 10))
    crc = content_hash(path, identity, "crc64")
    assert crc == ContentHash("crc64", f"{fastcrc.crc64.xz(data):016x}")
    assert crc.content_id == f"crc64:{crc.value}" and crc.md5 is None and crc.pieces is None
    for value in (md5, crc):  # the ledger's one-string form reads back as the same value
        assert ContentHash.from_content_id(value.content_id) == dataclasses.replace(value, pieces=None)
    with pytest.raises(ValueError):
        ContentHash("sha1", "00")

    request = UploadRequest(1, path, "video", identity, md5, Metadata("t"))
    assert (request.md5, request.content_id, request.digests) == (md5.value, md5.value, md5.pieces)
    request = dataclasses.replace(request, content=crc)
    assert (request.md5, request.content_id, request.digests) == (None, crc.content_id, None)
    request = dataclasses.replace(request, content=None)  # sent without a hash taken first
    assert (request.md5, request.content_id, request.digests) == (None, "", None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.md5 = "x"  # type: ignore[misc]


def _config(root: Path, provider: str, body: dict) -> Path:
    (root / "outbox").mkdir(exist_ok=True)
    return write_config(root / "vidupd.toml", {"state_dir": str(root / "state")}, {"t": {"provider": provider, **body}},
                        [{"path": str(root / "outbox"), "targets": ["t"]}])


def test_pull_on_a_provider_that_cannot_pull_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "directory", {"dest": str(tmp_path / "dest")})
    out = vidupd("pull", "-c", str(cfg), "--target", "t", "https://example.com/a.mp4")
    assert out.returncode == 2
    assert "pull: provider directory cannot pull media from URLs" in out.stderr
    assert not (tmp_path / "state" / "pulls").exists() or not any((tmp_path / "state" / "pulls").iterdir())
    assert not (tmp_path / "state" / "ledger.sqlite3").exists()


def test_register_on_a_provider_that_cannot_register_is_refused(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "null", {})
    out = vidupd("register", "-c", str(cfg), "--target", "t", "https://bucket.example.com/a.mp4")
    assert out.returncode == 2
    assert "register: provider null cannot register media" in out.stderr


def test_check_config_refuses_the_vod_values_of_the_issue(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "aliyun-vod", {"access_key_id": "AK", "access_key_secret": "vod-secret-31415",
                                           "part_size": 1000, "part_concurrency": 0, "image_type": "bogus"})
    out = vidupd("check-config", "-c", str(cfg))
    assert out.returncode == 2 and "ok" not in out.stdout
    lines = out.stderr.splitlines()
    assert f"{cfg}: targets.t.part_size: must be between 102400 and 5368709120, not 1000" in lines
    assert f"{cfg}: targets.t.part_concurrency: must be between 1 and 64, not 0" in lines
    assert f"{cfg}: targets.t.image_type: must be one of default, cover, not 'bogus'" in lines
    assert "vod-secret-31415" not in out.stderr + out.stdout
