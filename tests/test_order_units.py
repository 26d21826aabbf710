"""Per-target caps in the pool's claims (vidupd.engine.claiming) and the config keys of order
and priority; the end-to-end cases are tests/test_order_e2e.py."""

from __future__ import annotations

from pathlib import Path

from vidupd.config import load
from vidupd.engine.claiming import claim_within_caps
from vidupd.engine.pool import settings_from
from vidupd.ledger import Job


class FakeJob:
    def __init__(self, target: str, state: str = "uploading"):
        self.target, self.state = target, state


def queue_claim(queue: list[str], calls: list[tuple[int, int, list[str]]]):
    """A claim over a queue of targets, in order, honouring skip_targets (as the ledger does)."""

    def claim(limit: int, polls: int, full: list[str]) -> list[Job]:
        calls.append((limit, polls, full))
        got = [t for t in queue if t not in full][:limit]
        for t in got:
            queue.remove(t)
        return [FakeJob(t) for t in got] + [FakeJob("p", "committed")] * polls  # type: ignore[misc]

    return claim


def test_a_capped_target_takes_its_room_and_the_others_fill_the_rest():
    queue = ["slow"] * 5 + ["fast"] * 5
    calls: list = []
    submitted: list = []
    n = claim_within_caps(queue_claim(queue, calls), submitted.append, {"slow": 1}, 3, 2, [])
    assert [j.target for j in submitted] == ["slow", "p", "p", "fast", "fast"] and n == 5
    assert calls == [(1, 2, []), (2, 0, ["slow"])]  # one slow (its room), then the rest without it


def test_running_uploads_count_against_their_cap():
    queue = ["slow", "fast", "slow", "fast"]
    calls: list = []
    submitted: list = []
    claim_within_caps(queue_claim(queue, calls), submitted.append, {"slow": 2}, 2, 0, ["slow"])
    assert [j.target for j in submitted] == ["slow", "fast"] and calls[0] == (1, 0, [])
    assert calls[1] == (1, 0, ["slow"])


def test_without_caps_one_claim_takes_every_free_thread():
    calls: list = []
    claim_within_caps(queue_claim(["a"] * 9, calls), lambda j: None, {}, 4, 2, ["a"] * 10)
    assert calls == [(4, 2, [])]


def test_a_short_claim_ends_the_round():
    calls: list = []
    claim_within_caps(queue_claim(["slow"] * 3, calls), lambda j: None, {"slow": 1}, 3, 0, [])
    assert calls == [(1, 0, []), (2, 0, ["slow"])]  # nothing else waits: no third claim


def test_config_order_priority_and_target_workers(tmp_path: Path):
    (tmp_path / "out").mkdir()
    cfg = tmp_path / "v.toml"
    cfg.write_text(f"""
state_dir = "{tmp_path}/state"
workers = 4
order = "Largest"
[targets.a]
provider = "directory"
dest = "{tmp_path}/a"
workers = 1
[targets.b]
provider = "directory"
dest = "{tmp_path}/b"
workers = 4
[targets.c]
provider = "directory"
dest = "{tmp_path}/c"
[[watch]]
path = "{tmp_path}/out"
targets = ["a", "b", "c"]
priority = -3
""")
    config = load(cfg)
    assert config.order == "largest" and config.watches[0].priority == -3
    assert [t.workers for t in config.targets.values()] == [1, 4, None]
    settings = settings_from(config)
    assert settings.order == "largest" and settings.target_workers == (("a", 1),)  # b and c: the global 4
