"""`vidupd health`: ask the running daemon's /healthz (needs `[metrics] listen`).

Exit 0: healthy. Exit 1: unhealthy (the reasons are printed), or no daemon answers. Exit 2:
the config has no `[metrics] listen`, so there is nothing to ask. For a cron job, a
Nagios-style check or a container HEALTHCHECK; Prometheus scrapes /healthz or alerts on
`vidupd_healthy == 0` instead.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

from ..config import Config
from ..config.model import parse_listen

TIMEOUT = 5.0


def check(config: Config, timeout: float = TIMEOUT) -> int:
    if not config.metrics_listen:
        print(f"{config.source}: metrics.listen: not set, so the daemon serves no /healthz", file=sys.stderr)
        return 2
    host, port = parse_listen(config.metrics_listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - our own loopback endpoint
            print(f"healthy ({url})")
            return 0 if r.status == 200 else 1
    except urllib.error.HTTPError as e:
        try:
            problems = json.loads(e.read() or b"{}").get("problems") or [f"HTTP {e.code}"]
        except ValueError:
            problems = [f"HTTP {e.code}"]
        for p in problems:
            print(f"unhealthy: {p}")
        return 1
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", e)
        print(f"no answer from {url} ({reason}): is the daemon running?", file=sys.stderr)
        return 1
