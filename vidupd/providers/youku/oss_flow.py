"""Youku's OSS-based upload for one file (PROTOCOLS.md section 3), resumable across restarts.

create (isnew=1; the provider makes it and hands the grant over) -> checkpoint {upload token,
OSS endpoint/bucket/object, the file's MD5 and size} before the first byte -> the shared OSS
multipart upload (parallel parts, CRC-64 per part, ListParts-based resume; the part state is
saved in the checkpoint as parts complete; a file of at most one part: one PutObject) ->
commit.json (no upload_server_ip) -> video_id.
The STS credentials are never saved: a resumed upload asks get_sts_inf.json for fresh ones,
and the same call renews them before `expire_time` or when OSS answers SecurityTokenExpired,
for every part thread at once (oss.StsKeeper), so the same multipart upload goes on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ...core.errors import CredentialsExpired, TransientError
from ...core.model import from_fields
from ...core.source import SourceFile
from ..base import UploadContext, UploadRequest, UploadResult
from ..oss.abort import abort_multipart
from ..oss.credentials import StsCredentials
from ..oss.multipart import MultipartState, OssUploader
from ..oss.signing import region_from_endpoint
from .api import OssGrant
from .steps import with_token

if TYPE_CHECKING:
    from .provider import YoukuProvider

CHECKPOINT_VERSION = 1
PROTOCOL = "oss"


@dataclass(frozen=True)
class OssCheckpoint:
    """Resume state of one OSS-flow upload. Holds neither the OAuth token nor the STS secret
    or token: only the upload token (scoped to this upload) and the OSS address."""

    upload_token: str = field(repr=False)
    endpoint: str
    oss_bucket: str
    oss_object: str
    md5: str
    size: int
    created: float
    oss: Mapping[str, Any] | None = None  # MultipartState.to_json(): upload id, part size, done parts
    uploaded: bool = False  # CompleteMultipartUpload succeeded: only commit is left
    committing: bool = False  # commit was sent at least once: never `create` again silently
    video_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(dataclasses.asdict(self), version=CHECKPOINT_VERSION, provider="youku", protocol=PROTOCOL)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "OssCheckpoint | None":
        """None when the stored value is not a usable OSS-flow Youku checkpoint."""
        if (data.get("version"), data.get("provider"), data.get("protocol")) != (CHECKPOINT_VERSION, "youku", PROTOCOL):
            return None
        cp = from_fields(cls, data)
        if cp is None:
            return None
        if not (cp.upload_token and cp.endpoint and cp.oss_bucket and cp.oss_object) or not isinstance(cp.size, int):
            return None
        return cp


def credentials(grant: OssGrant, endpoint: str, bucket: str, key: str, default_region: str) -> StsCredentials:
    """The grant as the OSS module's credentials (region: the endpoint's, else the option)."""
    url = with_scheme(grant.endpoint or endpoint)
    return StsCredentials(grant.access_key_id, grant.access_key_secret, grant.security_token, grant.expires_at,
                          grant.lifetime, url, bucket, key, region=region_from_endpoint(url) or default_region)


def with_scheme(endpoint: str) -> str:
    """Youku answers an endpoint host (oss-cn-shanghai.aliyuncs.com); OSS is spoken over HTTPS
    unless the endpoint names its scheme (the sandbox's http://127.0.0.1:PORT)."""
    return endpoint if "://" in endpoint else f"https://{endpoint}"


class OssUpload:
    """One pass over the OSS flow for one file; `state` mirrors the saved checkpoint."""

    def __init__(self, provider: "YoukuProvider", request: UploadRequest, ctx: UploadContext, src: SourceFile):
        self.p = provider
        self.cfg = provider.config
        self.request = request
        self.ctx = ctx
        self.src = src
        self.state: OssCheckpoint | None = None
        self.commit_ambiguous = False  # as SliceUpload's: a commit may have reached the server
        self.recorded = False  # the upload token is in the shared checkpoint (another host can resume it)
        self._grant: OssGrant | None = None

    # ---- the flow -------------------------------------------------------------------

    def execute(self, grant: OssGrant | None = None) -> UploadResult:
        """Resume the checkpointed upload, else start one from `grant` (create's answer)."""
        data = self.ctx.checkpoint.load()
        self.state = OssCheckpoint.from_json(data) if data else None
        if self.state is None:
            assert grant is not None, "a new OSS-flow upload starts from create's grant"
            self._start(grant)
        st = self._st
        if st.video_id:
            return self._done(st.video_id)  # committed before a crash: report, never redo
        if not st.committing and not st.uploaded:
            self._transfer()
        return self._commit()

    def _start(self, grant: OssGrant) -> None:
        self._grant = grant
        self.state = OssCheckpoint(upload_token=grant.upload_token, endpoint=grant.endpoint, oss_bucket=grant.bucket,
                                   oss_object=grant.key, md5=str(self.request.md5), size=self.request.size,
                                   created=time.time())
        self.ctx.checkpoint.save(self.state.to_json())  # before any byte goes out
        self.recorded = True

    def _save(self, **changes: Any) -> None:
        self.state = dataclasses.replace(self._st, **changes)
        self.ctx.checkpoint.save(self.state.to_json())

    def _transfer(self) -> None:
        st = self._st
        grant, self._grant = self._grant or self._renewed(), None
        keeper = self.p.sts_keeper(credentials(grant, st.endpoint, st.oss_bucket, st.oss_object, self.cfg.oss_region),
                                   self._renew_credentials, self.ctx.note)
        # The fingerprint is the file's MD5 (create's file_md5): kept parts are not read again
        # on a resume, since Youku's commit checks the whole object against that MD5 (a
        # rewritten file is refused there as ContentMismatch, and hashed and sent again).
        uploader = OssUploader(keeper, self.src, cancel=self.ctx.cancel, retry=self.ctx.retry, note=self.ctx.note,
                               progress=self.ctx.progress, concurrency=self.cfg.part_concurrency,
                               fingerprint=self.request.content_id, held=self.ctx.ensure_held)

        def save(state: MultipartState | None) -> None:
            self._save(oss=state.to_json() if state else None)

        if self.request.size <= self.cfg.part_size and not self._st.oss:
            uploader.put()  # one part's worth: one PutObject (checked against the MD5), not three calls
        else:
            uploader.multipart(MultipartState.from_json(self._st.oss), self.cfg.part_size, save)
        self._save(uploaded=True)

    def _renewed(self) -> OssGrant:
        """get_sts_inf.json: fresh STS credentials for this upload's object."""
        st = self._st
        return with_token(self.p.tokens, self.ctx, "get_sts_inf",
                          lambda at: self.p.api.get_sts_inf(at, st.upload_token, st.oss_bucket, st.oss_object))

    def _renew_credentials(self) -> StsCredentials:
        """StsKeeper's renew callback (any part thread, once per expiry)."""
        st = self._st
        return credentials(self._renewed(), st.endpoint, st.oss_bucket, st.oss_object, self.cfg.oss_region)

    def _commit(self) -> UploadResult:
        st = self._st
        self.commit_ambiguous = st.committing
        self._save(committing=True)

        def commit(access_token: str) -> str:
            self.ctx.ensure_held()  # each try: the job may have been taken over since the save above
            try:
                return self.p.api.commit(access_token, st.upload_token)
            except CredentialsExpired:
                raise  # rejected before anything happened
            except TransientError:
                self.commit_ambiguous = True
                raise

        return self._done(with_token(self.p.tokens, self.ctx, "commit", commit))

    def _done(self, video_id: str) -> UploadResult:
        self.ctx.remote_id_known(video_id, "video")
        if self._st.video_id != video_id:
            self._save(video_id=video_id)
        self.ctx.progress(self.request.size)
        link = self.p.link_for(video_id)
        return UploadResult(video_id, "video", {"link": link} if link else {})

    @property
    def _st(self) -> OssCheckpoint:
        assert self.state is not None
        return self.state


def abandon(provider: "YoukuProvider", cp: OssCheckpoint) -> list[str]:
    """Abort the checkpoint's multipart upload on OSS (with credentials from get_sts_inf),
    one try each; returns what was done. The caller cancels the upload token afterwards."""
    upload_id = str((cp.oss or {}).get("upload_id") or "")
    if not upload_id or cp.uploaded:
        return []
    grant = provider.tokens.call(lambda at: provider.api.get_sts_inf(at, cp.upload_token, cp.oss_bucket,
                                                                       cp.oss_object))
    keeper = provider.sts_keeper(credentials(grant, cp.endpoint, cp.oss_bucket, cp.oss_object,
                                             provider.config.oss_region), None, lambda *a, **k: None)
    return ["aborted its OSS multipart upload" if abort_multipart(keeper, upload_id)
            else "its OSS multipart upload was already gone"]
