"""Prometheus metrics and health (issue 11): the real daemon against the VOD and OSS
sandboxes with faults, `[metrics] listen` on loopback, scraped over HTTP while it runs; the
counters must agree with the event log line for line."""

from __future__ import annotations

import datetime as dt
import re
import socket
import urllib.error
import urllib.request
from functools import partial

import pytest
from helpers import ROOT, actions, drop_random, vidupd, wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_vod_e2e import Env

pytestmark = pytest.mark.timeout(240)
MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture
def env(make_site):
    return partial(make_site, Env)


def test_scraped_counters_agree_with_the_event_log(env):
    e = env(fail_rate=0.3, seed=3)
    port = free_port()
    with open(e.config, "a") as f:
        f.write(f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    sizes = [3 * MiB, 2 * MiB, 1 * MiB + 5, 700_000]
    with e.daemon() as d:
        up = wait_for(lambda: actions(e.events, "metrics.listening"), 30, what="the endpoint")
        assert up[0]["vidupd.port"] == port
        first = scrape(port)
        assert total(first, "vidupd_build_info") == 1 and total(first, "vidupd_healthy") == 1
        assert total(first, "vidupd_uploads_total") == 0
        for n, size in enumerate(sizes):
            drop_random(e.outbox / f"clip{n}.mp4", size)
        wait_for(lambda: len(actions(e.events, "media.ready")) >= len(sizes), 180, what="every upload ready")
        during = scrape(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
            assert r.status == 200 and r.read() == b"ok\n"
        health = vidupd("health", "-c", str(e.config))
        assert health.returncode == 0, health.stdout + health.stderr
        assert d.stop() == 0
    completed = actions(e.events, "upload.completed")
    retrying = actions(e.events, "upload.retrying")
    assert len(completed) == len(sizes)
    assert retrying, "the faults caused retries"
    assert total(during, "vidupd_uploads_total", target="vod", outcome="completed") == len(completed)
    assert total(during, "vidupd_uploads_total", outcome="failed") == len(actions(e.events, "upload.failed"))
    assert total(during, "vidupd_upload_bytes_total", target="vod") == sum(sizes)
    assert total(during, "vidupd_retries_total", target="vod") == len(retrying)
    assert total(during, "vidupd_upload_duration_seconds_count", target="vod") == len(completed)
    took = sum(ev["vidupd.duration_seconds"] for ev in completed)
    assert total(during, "vidupd_upload_duration_seconds_sum", target="vod") == pytest.approx(took, rel=1e-3)
    assert total(during, "vidupd_media_total", target="vod", outcome="ready") == len(sizes)
    last = max(ev["@timestamp"] for ev in completed)
    stamp = total(during, "vidupd_last_success_timestamp_seconds", target="vod")
    assert abs(stamp - dt.datetime.fromisoformat(last.replace("Z", "+00:00")).timestamp()) < 5
    assert total(during, "vidupd_jobs", state="done") == len(sizes)
    assert total(during, "vidupd_jobs", state="queued") == 0 == total(during, "vidupd_queue_depth")
    assert total(during, "vidupd_uploads_in_progress") == 0
    assert total(during, "vidupd_event_log_lines_lost_total") == 0
    assert total(during, "vidupd_state_dir_free_bytes") > 0
    errors = [ev for ev in actions(e.events, "upload.failed")]
    assert total(during, "vidupd_errors_total", kind="upload.failed") == len(errors)
    assert total(during, "process_resident_memory_bytes") > 0
    # every metric the example alert rules use is one the daemon serves
    rules = (ROOT / "etc" / "prometheus" / "vidupd-alerts.yml").read_text()
    served = {name for name, _ in during}
    for name in set(re.findall(r"\b(vidupd_[a-z_]+|process_[a-z_]+)", rules)):
        assert name in served, f"alert rules use {name}, which is not served"
    # the daemon is gone: health says so
    gone = vidupd("health", "-c", str(e.config))
    assert gone.returncode == 1 and "no answer" in gone.stderr


def test_health_endpoint_says_why_it_is_unhealthy(tmp_path):
    from vidupd.service.metrics import Metrics, MetricsServer

    problems: list[str] = []
    present = {"counts": {"queued": 3}, "in_progress": 1, "free_bytes": None, "healthy": True}
    server = MetricsServer(f"127.0.0.1:{free_port()}", Metrics(lambda: present), lambda: list(problems)).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200
        problems.append("dispatcher silent for 130s")
        server._verdict = (0.0, [])  # the 2 s cache: look again now
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=10)
        assert err.value.code == 503 and b"dispatcher silent" in err.value.read()
        samples = scrape(server.port)
        assert total(samples, "vidupd_queue_depth") == 3 and total(samples, "vidupd_uploads_in_progress") == 1
    finally:
        server.stop()


def test_metrics_listen_is_checked(tmp_path):
    from helpers import write_config

    (tmp_path / "w").mkdir()
    cfg = write_config(tmp_path / "vidupd.toml", {"state_dir": str(tmp_path / "state")},
                       {"arch": {"provider": "directory", "dest": str(tmp_path / "w")}},
                       [{"path": str(tmp_path / "w"), "targets": ["arch"]}])
    with open(cfg, "a") as f:
        f.write('[metrics]\nlisten = "localhost"\n')
    r = vidupd("check-config", "-c", str(cfg))
    assert r.returncode == 2 and "metrics.listen: must be HOST:PORT" in r.stderr
    off = write_config(tmp_path / "off.toml", {"state_dir": str(tmp_path / "state")},
                       {"arch": {"provider": "directory", "dest": str(tmp_path / "w")}},
                       [{"path": str(tmp_path / "w"), "targets": ["arch"]}])
    r = vidupd("health", "-c", str(off))
    assert r.returncode == 2 and "metrics.listen" in r.stderr
