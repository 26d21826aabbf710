"""ECS (Elastic Common Schema) names of the event log: the categorisation of each action
(event.kind, event.category, event.type, allowed values only) and the vidupd.* fields that
moved to their ECS names. vidupd.core.events applies them to every line."""

from __future__ import annotations

ECS_VERSION = "8.11.0"
# Fields that moved to their ECS names (issue 11); the old vidupd.* name is written too, for
# one release (deprecated: dashboards should move to the ECS name).
MOVED = {"duration_seconds": "event.duration", "md5": "file.hash.md5", "url": "url.full", "version": "service.version"}
FAILING = ("error", "critical")


def categorise(action: str, level: str) -> tuple[str, list[str], list[str]]:
    """ECS event.kind, event.category and event.type of an action (allowed values only)."""
    family, _, step = action.partition(".")
    category = {"upload": ["file", "web"], "media": ["web"], "file": ["file"], "watch": ["file"],
                "auth": ["authentication"], "ledger": ["database"], "config": ["configuration"],
                "daemon": ["process"], "metrics": ["process"], "notify": ["web"],
                "rate": ["configuration"]}.get(family, [])
    if action in ("daemon.reloaded", "daemon.reload_failed"):
        category = ["configuration"]
    if level in FAILING or step.endswith("failed") or step == "error":
        kind_of = "error"
    elif step == "rejected":
        kind_of = "denied"
    elif step in ("started", "listening"):
        kind_of = "start"
    elif step in ("stopped", "stopping", "stop_timeout", "cancelled"):
        kind_of = "end"
    elif action in ("upload.completed", "media.ready", "media.registered", "upload.remote_id"):
        kind_of = "creation"
    elif step in ("deleted", "pruned", "forgotten"):
        kind_of = "deletion"
    elif step in ("moved", "renamed", "reloaded", "refreshed", "paused", "resumed", "changed"):
        kind_of = "change"
    else:
        kind_of = "info"
    return ("metric" if action == "upload.progress" else "event"), category, [kind_of]
