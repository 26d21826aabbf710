"""`null`: reads each file through the throttle and sends it nowhere.

For dry runs of a watch set-up (which files would go, in what order, at what rate) and
for benchmarking the pipeline without a platform in the way.
"""

from __future__ import annotations

from ..core.model import KINDS
from .base import Option, Provider, UploadContext, UploadRequest, UploadResult


class NullProvider(Provider):
    name = "null"
    summary = "Sends nothing: reads (or only stats) each file; for tests and benchmarks."
    options = {"read": Option(bool, True, help="read the file (exercises disk and throttle); false: only stat it")}
    kinds = frozenset(KINDS)

    def upload(self, request: UploadRequest, ctx: UploadContext) -> UploadResult:
        if self.settings.get("read", True):
            with ctx.open_source(request) as src:
                done = 0
                for block in src.iter_blocks(0, request.size):
                    done += len(block)
                    ctx.progress(done)
        else:
            ctx.progress(request.size)
        tag = request.content_id.rpartition(":")[2][:12]
        return UploadResult(f"null-{request.job_id}-{tag}", "video" if request.kind == "video" else request.kind)
