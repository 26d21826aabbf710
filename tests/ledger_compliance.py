"""The ledger compliance suite: what any ledger backend must do, written against the
ledger's interface only (like Filebeat's storecompliance or rclone's fstests).

A backend's test module subclasses `LedgerCompliance` and provides a `backend` fixture with:
  - `open()`: open the backend's store (the same store every call: a second call is a reopen);
  - `use_fixture(name)`: make the store the committed fixture `name` (see `MIGRATED`, `DAMAGED`);
  - `stored()`: the store's raw content, to show a refused store was left untouched.
tests/test_ledger_sqlite.py runs it for SQLite, tests/test_ledger_postgresql.py for
PostgreSQL (with its own fixtures of the same names, made by SQL). What only a shared
ledger has (processes claiming, offering, migrating at once) is in the latter.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import pytest

from vidupd.core.errors import LeaseLost
from vidupd.core.model import FileIdentity, Metadata
from vidupd.ledger import (DUPLICATE_REMOTE_ID, FORGETTABLE, HELD, MIGRATIONS, Cancelled, Completed, ContentReset,
                           Failed, HeldForChange, Intent, Interrupted, Job, Ledger, LedgerError, MediaFailed, PollLater,
                           Ready, RemoteIdRecorded, RetryLater, Skipped, Unconfigured, WaitForTwin)

META = Metadata(title="t")
MIGRATED = ("v1",)  # older schemas every backend keeps as fixtures: opening migrates them
DAMAGED = ("corrupt", "not-sqlite")  # stores that must be refused, never started over


def ident(inode: int = 1, size: int = 100, mtime: int = 5, dev: int = 1) -> FileIdentity:
    return FileIdentity(dev, inode, size, mtime)


class LedgerBackend(Protocol):
    def open(self) -> Ledger: ...
    def use_fixture(self, name: str) -> None: ...
    def stored(self) -> bytes: ...


# Each worker transition, called with a given lease (owner, generation). The fencing cases
# run every one of them with a lost lease and expect LeaseLost and no change at all.
TRANSITIONS: dict[str, Callable[[Ledger, int, str, int], Any]] = {
    "record_content": lambda l, j, o, g: l.record_content(j, "f" * 32, True, owner=o, generation=g),
    "record_remote_id": lambda l, j, o, g: l.apply(j, RemoteIdRecorded("R9", "video"), owner=o, generation=g),
    "cover_id": lambda l, j, o, g: l.apply(j, RemoteIdRecorded("C9", "image"), owner=o, generation=g),
    "committed": lambda l, j, o, g: l.apply(j, Completed("R9", "video", final=False, poll_in=5), owner=o,
                                             generation=g),
    "committed_final": lambda l, j, o, g: l.apply(j, Completed("R9", "video", content_id="crc64:01"), owner=o,
                                                   generation=g),
    "retry_later": lambda l, j, o, g: l.apply(j, RetryLater("503", 1.0, 1, "TransientError"), owner=o,
                                               generation=g),
    "wait_for_twin": lambda l, j, o, g: l.apply(j, WaitForTwin(99), owner=o, generation=g),
    "failed": lambda l, j, o, g: l.apply(j, Failed("bad", "PermanentError"), owner=o, generation=g),
    "unconfigured": lambda l, j, o, g: l.apply(j, Unconfigured(), owner=o, generation=g),
    "skipped": lambda l, j, o, g: l.apply(j, Skipped(99, "/w/b.mp4", "R0", "video"), owner=o, generation=g),
    "interrupted": lambda l, j, o, g: l.apply(j, Interrupted(), owner=o, generation=g),
    "paused": lambda l, j, o, g: l.apply(j, Interrupted("paused"), owner=o, generation=g),
    "cancelled": lambda l, j, o, g: l.apply(j, Cancelled(), owner=o, generation=g),
    "hold_for_change": lambda l, j, o, g: l.apply(j, HeldForChange("changed"), owner=o, generation=g),
    "forget_content": lambda l, j, o, g: l.apply(j, ContentReset("differs", 5), owner=o, generation=g),
    "poll_later": lambda l, j, o, g: l.apply(j, PollLater(1.0, 1, "processing"), owner=o, generation=g),
    "done": lambda l, j, o, g: l.apply(j, Ready(("M1",)), owner=o, generation=g),
    "media_failed": lambda l, j, o, g: l.apply(j, MediaFailed("transcode failed"), owner=o, generation=g),
    "progress": lambda l, j, o, g: l.progress(j, 50, 1.0, o, 60, generation=g),
    "checkpoint_save": lambda l, j, o, g: l.checkpoint(j, o, g).save({"by": o}),
    "checkpoint_clear": lambda l, j, o, g: l.checkpoint(j, o, g).clear(),
    "release": lambda l, j, o, g: l.release(o, [j], g),
}


def done(ledger: Ledger, job_id: int, remote_id: str) -> None:
    """Unfenced: the platform acknowledged `job_id` as `remote_id`, nothing left to wait for."""
    ledger.apply(job_id, Completed(remote_id, "video"), owner=None)


def _row(ledger: Ledger, job_id: int) -> tuple[Job | None, Any]:
    return ledger.get(job_id), ledger.checkpoint(job_id).load()


class LedgerCompliance:
    """Subclass with a `backend` fixture (see the module docstring)."""

    @pytest.fixture
    def ledger(self, backend: LedgerBackend):
        l = backend.open()
        yield l
        l.close()

    # -- intake: offer, rename, requeue ---------------------------------------------------------
    def test_offer_is_idempotent_per_file_version(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        (o1,) = ledger.offer(p, "/w", [("yk", "video")], ident(), META)
        (o2,) = ledger.offer(p, "/w", [("yk", "video")], ident(), META)
        assert o1.outcome == "queued" and o2.outcome == "known" and o1.job_id == o2.job_id
        both = ledger.offer(p, "/w", [("yk", "video"), ("vod", "video")], ident(), META)
        assert [o.outcome for o in both] == ["known", "queued"]

    def test_done_file_renamed_is_recognised(self, ledger: Ledger, tmp_path: Path):
        old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
        (o,) = ledger.offer(old, "/w", [("t", "video")], ident(), META)
        ledger.claim("A", 1, 60)
        done(ledger, o.job_id, "R1")
        (r,) = ledger.offer(new, "/w", [("t", "video")], ident(), META)  # old path no longer exists
        assert r.outcome == "renamed" and r.job_id == o.job_id
        assert ledger.get(o.job_id).path == new and ledger.get(o.job_id).state == "done"

    # -- a file version is the same on every host: the device number is never compared ----------------
    def test_one_file_version_seen_with_two_device_numbers_is_one_job(self, ledger: Ledger, tmp_path: Path):
        """Two hosts of one shared outbox (NFS, SMB) see one file with different st_dev: one job,
        whatever state it is in, and its after-upload step is taken once."""
        p = tmp_path / "a.mp4"
        (a,) = ledger.offer(p, "/w", [("t", "video")], ident(dev=101), META)
        (b,) = ledger.offer(p, "/w", [("t", "video")], ident(dev=202), META)
        assert (a.outcome, b.outcome, b.job_id) == ("queued", "known", a.job_id)
        job = ledger.get(a.job_id)
        assert job.identity == ident(dev=202) and job.identity.dev == 101  # stored, never matched
        done(ledger, a.job_id, "R1")
        (c,) = ledger.offer(p, "/w", [("t", "video")], ident(dev=303), META)
        assert (c.outcome, c.job_id) == ("known", a.job_id) and len(ledger.jobs()) == 1
        assert [j.id for j in ledger.take_after_upload(p, ident(dev=404))] == [a.job_id]
        assert ledger.take_after_upload(p, ident(dev=101)) is None  # once, whichever host asks
        assert ledger.skip_new(p, "/w", "t", "video", ident(dev=505), "too big") is None
        (d,) = ledger.offer(p, "/w", [("t", "video")], ident(dev=101, mtime=6), META)  # a new version
        assert d.outcome == "queued" and d.job_id != a.job_id

    def test_a_rename_seen_by_another_host_is_recognised(self, ledger: Ledger, tmp_path: Path):
        old, new = tmp_path / "old.mp4", tmp_path / "new.mp4"
        (o,) = ledger.offer(old, "/w", [("t", "video")], ident(dev=101), META)
        done(ledger, o.job_id, "R1")
        (r,) = ledger.offer(new, "/w", [("t", "video")], ident(dev=202), META)  # old path no longer exists
        assert (r.outcome, r.job_id) == ("renamed", o.job_id) and ledger.get(o.job_id).path == new
        assert ledger.offer(new, "/w", [("t", "video")], ident(dev=101), META)[0].outcome == "known"

    def test_a_skipped_version_is_recorded_once_whichever_host_sees_it(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.fifo"
        first = ledger.skip_new(p, "/w", "t", "unknown", ident(dev=101), "is a FIFO")
        assert first is not None and ledger.skip_new(p, "/w", "t", "unknown", ident(dev=202), "is a FIFO") is None

    def test_same_name_new_content_is_a_new_job_after_done(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        (o,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=1), META)
        done(ledger, o.job_id, "R1")
        (o2,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=2), META)
        assert o2.outcome == "queued" and o2.job_id != o.job_id

    def test_same_name_new_content_requeues_a_job_not_yet_uploaded(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        (o,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=1), META)
        ledger.checkpoint(o.job_id).save({"offset": 1})
        (o2,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=2), META)
        assert o2.outcome == "requeued" and o2.job_id == o.job_id
        assert ledger.get(o.job_id).identity.mtime_ns == 2 and ledger.checkpoint(o.job_id).load() is None

    def test_changed_file_is_held_until_stable_again(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        (o,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=1), META)
        ledger.claim("A", 1, 60)
        ledger.checkpoint(o.job_id).save({"offset": 10})
        ledger.apply(o.job_id, HeldForChange("changed"), owner=None)
        assert ledger.get(o.job_id).not_before >= HELD and ledger.claim("A", 1, 60) == []
        assert ledger.checkpoint(o.job_id).load() is None
        (o2,) = ledger.offer(p, "/w", [("t", "video")], ident(mtime=2), META)
        assert o2.outcome == "requeued" and o2.job_id == o.job_id
        (j,) = ledger.claim("A", 1, 60)
        assert j.identity.mtime_ns == 2

    def test_duplicate_remote_id_for_different_content_needs_attention(self, ledger: Ledger, tmp_path: Path):
        (a,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)
        (b,) = ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)
        ledger.record_content(a.job_id, "aaa", False)
        ledger.record_content(b.job_id, "bbb", False)
        assert ledger.apply(a.job_id, RemoteIdRecorded("SAME", "video"), owner=None).action == "upload.remote_id"
        clash = ledger.apply(b.job_id, RemoteIdRecorded("SAME", "video"), owner=None)
        assert clash.action == DUPLICATE_REMOTE_ID and clash.fields["other_job_id"] == a.job_id
        assert ledger.get(b.job_id).state == "attention"
        again = ledger.apply(a.job_id, RemoteIdRecorded("SAME", "video"), owner=None)  # the same job again is fine
        assert again.action == "upload.remote_id"

    def test_after_upload_taken_once_when_all_targets_finished(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        offers = ledger.offer(p, "/w", [("t1", "video"), ("t2", "video")], ident(), META)
        done(ledger, offers[0].job_id, "R1")
        assert ledger.take_after_upload(p, ident()) is None
        done(ledger, offers[1].job_id, "R2")
        assert len(ledger.take_after_upload(p, ident())) == 2
        assert ledger.take_after_upload(p, ident()) is None

    def test_identical_content_hashed_at_once_goes_exactly_once(self, ledger: Ledger, tmp_path: Path):
        (a,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)
        (b,) = ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)
        ledger.claim("A", 2, 60)  # both uploading (hashing)
        # b finishes hashing first: it goes (a still hashing is no reason to wait); a, later,
        # waits for b instead of sending a copy
        assert ledger.record_content(b.job_id, "same", True) == ("go", None)
        verdict, twin = ledger.record_content(a.job_id, "same", True)
        assert verdict == "wait" and twin.id == b.job_id
        ledger.apply(a.job_id, WaitForTwin(b.job_id), owner=None)
        assert ledger.get(a.job_id).md5 == "same"  # a is not hashed again when it comes back
        ledger.apply(b.job_id, Completed("R1", "video"), owner=None)
        verdict, twin = ledger.record_content(a.job_id, "same", True)
        assert verdict == "skip" and twin.remote_id == "R1"
        assert ledger.record_content(a.job_id, "same", False) == ("go", None)

    def test_operator_retry_requeues_failed_jobs(self, ledger: Ledger, tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        ledger.apply(j.id, Failed("bad", "PermanentError"), owner="A", generation=j.lease_gen)
        assert ledger.retry(failed=True) == 1
        job = ledger.get(o.job_id)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)

    # -- claims -------------------------------------------------------------------------------------
    def test_claim_is_exclusive_and_bounded(self, ledger: Ledger, tmp_path: Path):
        for i in range(5):
            ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)
        a = ledger.claim("A", 2, 60)
        b = ledger.claim("B", 10, 60)
        assert len(a) == 2 and len(b) == 3
        assert not {j.id for j in a} & {j.id for j in b}
        assert ledger.claim("C", 10, 60) == []
        assert all(j.state == "uploading" for j in a + b)

    def test_claim_order_and_lanes(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(6)]
        assert [j.id for j in ledger.claim("A", 2, 60)] == ids[:2]  # oldest first
        ledger.apply(ids[0], Completed("R0", "video", final=False, poll_in=0), owner=None)  # a status poll is due
        ledger.apply(ids[2], RetryLater("503", 3600, 1, "TransientError"), owner=None)  # not before an hour
        assert ledger.claim("B", 1, 60, ids=[ids[4], ids[5]])[0].id == ids[4]  # restricted to `ids`
        jobs = ledger.claim("B", 1, 60, poll_limit=1)  # one upload and, besides, one poll
        assert sorted((j.id, j.state) for j in jobs) == [(ids[0], "committed"), (ids[3], "uploading")]
        assert ledger.claim("C", 0, 60, poll_limit=5) == [] and ledger.claim("C", 5, 60, ids=[]) == []
        assert [j.id for j in ledger.claim("C", 5, 60)] == [ids[5]]

    def test_claim_bumps_the_lease_generation(self, ledger: Ledger, tmp_path: Path):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 0.05)
        time.sleep(0.1)
        (k,) = ledger.claim("A", 1, 60)  # the same owner again, after its lease ran out
        assert k.id == j.id and k.lease_gen > j.lease_gen and ledger.get(j.id).lease_gen == k.lease_gen

    def test_claim_skips_paused_targets_and_watches_but_not_polls(self, ledger: Ledger, tmp_path: Path):
        a = ledger.offer(tmp_path / "a.mp4", "/w1", [("yk", "video")], ident(inode=1), META)[0].job_id
        b = ledger.offer(tmp_path / "b.mp4", "/w1", [("vod", "video")], ident(inode=2), META)[0].job_id
        c = ledger.offer(tmp_path / "c.mp4", "/w2", [("vod", "video")], ident(inode=3), META)[0].job_id
        d = ledger.offer(tmp_path / "d.mp4", None, [("vod", "video")], ident(inode=4), META)[0].job_id  # one-shot
        p = ledger.offer(tmp_path / "p.mp4", "/w1", [("yk", "video")], ident(inode=5), META)[0].job_id
        ledger.apply(p, Completed("R5", "video", final=False, poll_in=0), owner=None)  # a status poll is due
        got = ledger.claim("A", 10, 60, poll_limit=5, skip_targets=["yk"], skip_watches={"/w2"})
        assert sorted(j.id for j in got) == [b, d, p]  # uploads of yk and of /w2 stay; the poll goes
        assert ledger.get(a).state == ledger.get(c).state == "queued"
        (stale,) = ledger.claim("B", 1, 0.05, skip_watches=["/w1"])  # an upload whose lease runs out
        assert stale.id == c
        time.sleep(0.1)
        assert ledger.claim("C", 5, 60, skip_targets=["yk", "vod"]) == []  # not even the expired upload
        assert sorted(j.id for j in ledger.claim("C", 5, 60)) == [a, c]

    # -- cancel and forget (vidupd cancel / forget) ------------------------------------------------
    def test_cancel_request_marks_only_cancellable_jobs(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(4)]
        done(ledger, ids[0], "R0")
        ledger.apply(ids[1], Failed("bad", "PermanentError"), owner=None)
        got = ledger.request_cancel([ids[0], ids[1], ids[2], 999])
        assert got[999] is None and got[ids[0]].state == "done" and got[ids[0]].cancel_requested is None
        assert got[ids[1]].cancel_requested is not None and got[ids[2]].cancel_requested is not None
        first = got[ids[2]].cancel_requested
        assert ledger.request_cancel([ids[2]])[ids[2]].cancel_requested == first  # idempotent
        assert ledger.get(ids[3]).cancel_requested is None

    def test_cancel_of_a_job_nobody_holds_is_taken_and_applied_under_a_lease(self, ledger: Ledger,
                                                                             tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        ledger.checkpoint(o.job_id).save({"upload": "u1"})
        assert ledger.take_for_cancel("X", o.job_id, 60) is None  # not requested: never taken
        ledger.request_cancel([o.job_id])
        j = ledger.take_for_cancel("X", o.job_id, 60)
        assert (j.state, j.lease_owner) == ("uploading", "X")  # so no pool claims it meanwhile
        assert ledger.claim("P", 5, 60) == [] and ledger.take_for_cancel("Y", o.job_id, 60) is None
        event = ledger.apply(j.id, Cancelled(), owner="X", generation=j.lease_gen)
        job = ledger.get(j.id)
        assert event.action == "upload.cancelled" and event.fields["job_id"] == j.id
        assert (job.state, job.lease_owner, job.cancel_requested) == ("cancelled", None, None)
        assert ledger.checkpoint(j.id).load() is None
        assert ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)[0].outcome == "known"
        assert ledger.claim("P", 5, 60) == [] and ledger.take_for_cancel("X", j.id, 60) is None

    def test_cancel_of_a_held_job_is_seen_by_its_holder_and_a_stale_lease_cannot_apply_it(self, ledger: Ledger,
                                                                                         tmp_path: Path):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)
        ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)
        held, other = ledger.claim("D", 2, 0.3)
        assert ledger.cancels_wanted("D", [held.id, other.id]) == []
        ledger.request_cancel([held.id])
        assert ledger.take_for_cancel("X", held.id, 60) is None  # the holder's lease is live: not ours
        assert ledger.cancels_wanted("D", [held.id, other.id]) == [held.id]
        assert ledger.cancels_wanted("E", [held.id]) == [] and ledger.cancels_wanted("D", []) == []
        time.sleep(0.4)  # the holder died: its lease runs out
        taken = ledger.take_for_cancel("X", held.id, 60)
        assert taken is not None and taken.lease_gen > held.lease_gen
        before = _row(ledger, held.id)
        with pytest.raises(LeaseLost):
            ledger.apply(held.id, Cancelled(), owner="D", generation=held.lease_gen)
        with pytest.raises(LeaseLost):
            ledger.apply(held.id, Completed("R1", "video"), owner="D", generation=held.lease_gen)
        assert _row(ledger, held.id) == before
        ledger.apply(held.id, Cancelled(), owner="X", generation=taken.lease_gen)
        assert ledger.get(held.id).state == "cancelled"

    def test_a_claimed_cancel_request_reaches_the_next_holder(self, ledger: Ledger, tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        ledger.request_cancel([o.job_id])
        (j,) = ledger.claim("P", 1, 60)  # e.g. the cancel command died: whoever claims it cancels it
        assert j.cancel_requested is not None

    def test_cancelled_outcome_leaves_a_job_that_reached_the_platform_alone(self, ledger: Ledger, tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        ledger.apply(j.id, Completed("R1", "video", final=False, poll_in=60), owner="A", generation=j.lease_gen)
        assert ledger.apply(j.id, Cancelled(), owner=None) is None
        assert (ledger.get(j.id).state, ledger.get(j.id).remote_id) == ("committed", "R1")

    def test_retry_of_a_cancelled_job_starts_from_scratch(self, ledger: Ledger, tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        ledger.apply(j.id, RemoteIdRecorded("R1", "video"), owner="A", generation=j.lease_gen)
        ledger.progress(j.id, 60, 1.0, "A", 60, generation=j.lease_gen)
        ledger.request_cancel([j.id])
        ledger.apply(j.id, Cancelled(), owner="A", generation=j.lease_gen)
        assert ledger.retry(failed=True) == 0  # --failed never brings cancelled jobs back
        assert ledger.retry([j.id]) == 1
        job = ledger.get(j.id)
        assert (job.state, job.remote_id, job.bytes_done, job.attempts, job.cancel_requested) == \
            ("queued", None, 0, 0, None)
        assert ledger.checkpoint(j.id).load() is None and ledger.claim("B", 1, 60)[0].id == j.id

    def test_forget_drops_only_jobs_in_the_given_states(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(5)]
        done(ledger, ids[0], "R0")
        ledger.apply(ids[1], Failed("bad", "PermanentError"), owner=None)
        ledger.apply(ids[2], Cancelled(), owner=None)
        ledger.claim("A", 1, 60, ids=[ids[3]])  # uploading: stays
        assert ledger.forget(ids, None, FORGETTABLE) == 3
        assert [j.id for j in ledger.jobs()] == ids[3:]
        # the same content offered again is a new job, and no duplicate of the forgotten one
        (again,) = ledger.offer(tmp_path / "0.mp4", "/w", [("t", "video")], ident(inode=0), META)
        assert again.outcome == "queued" and again.job_id not in ids
        assert ledger.record_content(again.job_id, "f" * 32, True) == ("go", None)

    # -- leases -------------------------------------------------------------------------------------
    def test_expired_lease_can_be_taken_over(self, ledger: Ledger, tmp_path: Path):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 0.05)
        time.sleep(0.1)
        (k,) = ledger.claim("B", 1, 60)
        assert k.id == j.id and k.lease_owner == "B"

    def test_renewal_keeps_a_lease_and_reports_lost_ones(self, ledger: Ledger, tmp_path: Path):
        a = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(inode=1), META)[0].job_id
        b = ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=2), META)[0].job_id
        ledger.claim("A", 2, 0.3)
        assert ledger.renew("A", [a], 60) == []
        time.sleep(0.4)
        assert [j.id for j in ledger.claim("B", 5, 60)] == [b]  # a's lease was renewed, b's ran out
        assert ledger.renew("A", [a, b], 60) == [b] and ledger.renew("A", [], 60) == []

    def test_release_gives_uploads_back_to_the_queue(self, ledger: Ledger, tmp_path: Path):
        for i in range(2):
            ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)
        first, second = ledger.claim("A", 2, 60)
        ledger.release("A", [first.id], first.lease_gen)
        assert (ledger.get(first.id).state, ledger.get(first.id).lease_owner) == ("queued", None)
        ledger.release("A")
        assert ledger.get(second.id).state == "queued" and ledger.claim("B", 5, 60) != []

    def test_recover_frees_leases_of_dead_processes(self, ledger: Ledger, tmp_path: Path):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        ledger.claim(f"{socket.gethostname()}:{dead.pid}:1", 1, 3600)
        assert ledger.claim("X", 1, 60) == []
        assert ledger.recover() == 1
        (j,) = ledger.claim("X", 1, 60)
        assert j.state == "uploading"

    # -- order and priority -------------------------------------------------------------------------
    @staticmethod
    def _queue(ledger: Ledger, tmp_path: Path, files: list[tuple[str, int, int]], target: str = "t",
               watch: str | None = "/w") -> dict[str, int]:
        """Offer (name, size, priority) files in this order; name -> job id."""
        intents = [Intent(tmp_path / name, watch, ((target, "video"),), ident(inode=hash((target, name)) % 10**9,
                                                                              size=size), META, priority)
                   for name, size, priority in files]
        return {o.path.name: o.job_id for o in ledger.offer_many(intents)}

    @pytest.mark.parametrize("order, expected", [
        ("oldest", ["a", "b", "c", "d", "e"]), ("smallest", ["d", "a", "e", "c", "b"]),
        ("largest", ["b", "c", "e", "a", "d"]), ("name", ["a", "b", "c", "d", "e"])])
    def test_claim_takes_higher_priority_first_then_the_order(self, ledger: Ledger, tmp_path: Path, order: str,
                                                              expected: list[str]):
        ids = self._queue(ledger, tmp_path, [("c", 300, 0), ("a", 200, 0), ("x", 900, -1), ("e", 250, 0),
                                             ("b", 400, 0), ("d", 100, 0), ("hi", 50, 5)])
        by_id = {v: k for k, v in ids.items()}
        if order == "oldest":
            expected = ["c", "a", "e", "b", "d"]  # by job id: the order they were queued in
        taken = [by_id[j.id] for _ in range(7) for j in ledger.claim("A", 1, 60, order=order)]
        assert taken == ["hi", *expected, "x"]  # priority 5 first, -1 last, whatever the order
        assert ledger.get(ids["hi"]).priority == 5 and ledger.get(ids["a"]).priority == 0

    def test_claim_of_several_merges_the_groups_in_order(self, ledger: Ledger, tmp_path: Path):
        a = self._queue(ledger, tmp_path, [("a1", 10, 0), ("a2", 30, 0), ("a3", 50, 1)], target="A")
        b = self._queue(ledger, tmp_path, [("b1", 20, 0), ("b2", 40, 0)], target="B", watch="/v")
        c = self._queue(ledger, tmp_path, [("c1", 5, 0)], target="A", watch=None)  # a one-shot upload's job
        got = [j.id for j in ledger.claim("X", 4, 60, order="smallest")]
        assert sorted(got) == sorted([a["a3"], c["c1"], a["a1"], b["b1"]])
        assert [j.id for j in ledger.claim("X", 5, 60, order="smallest")] == sorted([a["a2"], b["b2"]])

    def test_skip_targets_and_watches_leave_the_rest_to_the_others(self, ledger: Ledger, tmp_path: Path):
        slow = self._queue(ledger, tmp_path, [(f"s{i}.mp4", 100, 9) for i in range(20)], target="slow")
        fast = self._queue(ledger, tmp_path, [(f"f{i}.mp4", 100, 0) for i in range(3)], target="fast")
        paused = self._queue(ledger, tmp_path, [("p.mp4", 1, 99)], target="fast", watch="/paused")
        # the slow target's higher-priority queue does not starve the fast one: its jobs fill the claim
        got = ledger.claim("A", 3, 60, skip_targets=["slow"], skip_watches=["/paused"])
        assert [j.id for j in got] == [fast[f"f{i}.mp4"] for i in range(3)]
        assert ledger.claim("A", 3, 60, skip_targets=("slow", "fast")) == []
        assert [j.id for j in ledger.claim("A", 1, 60, skip_watches={"/w"})] == [paused["p.mp4"]]
        (first,) = ledger.claim("A", 1, 60)
        assert first.id == slow["s0.mp4"]

    def test_skip_applies_to_expired_uploads_but_not_to_status_polls(self, ledger: Ledger, tmp_path: Path):
        ids = self._queue(ledger, tmp_path, [("up.mp4", 100, 0), ("poll.mp4", 200, 0)], target="slow")
        ledger.claim("A", 2, 0.05)
        ledger.apply(ids["poll.mp4"], Completed("R1", "video", final=False, poll_in=0), owner=None)
        time.sleep(0.1)  # the upload's lease ran out
        assert ledger.claim("B", 5, 60, skip_targets=["slow"], poll_limit=0) == []
        (poll,) = ledger.claim("B", 0, 60, poll_limit=1, skip_targets=["slow"])
        assert poll.id == ids["poll.mp4"] and poll.state == "committed"
        (up,) = ledger.claim("B", 1, 60)
        assert up.id == ids["up.mp4"] and up.state == "uploading"

    def test_claim_restricted_to_ids_follows_the_order_too(self, ledger: Ledger, tmp_path: Path):
        ids = self._queue(ledger, tmp_path, [("a", 300, 0), ("b", 100, 0), ("c", 200, 0), ("d", 50, 1)])
        got = ledger.claim("A", 2, 60, ids=[ids["a"], ids["b"], ids["c"]], order="smallest")
        assert [j.id for j in got] == sorted([ids["b"], ids["c"]])
        assert ledger.get(ids["d"]).state == "queued"

    def test_prioritize_moves_waiting_jobs_to_the_front(self, ledger: Ledger, tmp_path: Path):
        ids = self._queue(ledger, tmp_path, [("a", 1, 0), ("b", 2, 3), ("c", 3, 0), ("d", 4, 0)])
        (running,) = ledger.claim("A", 1, 60)
        assert running.id == ids["b"]
        priority, refused = ledger.prioritize([ids["d"], ids["b"], 999])  # b runs: not waiting; 999: no such job
        assert priority == 4 and refused == [ids["b"], 999]  # one above the highest in the ledger
        assert ledger.get(ids["d"]).priority == 4 and ledger.get(ids["b"]).priority == 3
        assert [j.id for j in ledger.claim("A", 1, 60)] == [ids["d"]]
        assert ledger.prioritize([ids["a"]], priority=-2) == (-2, [])
        assert [j.id for j in ledger.claim("A", 1, 60)] == [ids["c"]]  # a, older, now comes after c
        assert [j.id for j in ledger.claim("A", 1, 60)] == [ids["a"]] and ledger.get(ids["a"]).priority == -2

    def test_prioritize_with_nothing_to_change(self, ledger: Ledger, tmp_path: Path):
        assert ledger.prioritize([]) == (1, [])
        assert ledger.prioritize([5], priority=7) == (7, [5])

    def test_requeued_new_content_takes_the_priority_configured_now(self, ledger: Ledger, tmp_path: Path):
        p = tmp_path / "a.mp4"
        (o,) = ledger.offer_many([Intent(p, "/w", (("t", "video"),), ident(mtime=1), META, 1)])
        (again,) = ledger.offer_many([Intent(p, "/w", (("t", "video"),), ident(mtime=1), META, 7)])
        assert again.outcome == "known" and ledger.get(o.job_id).priority == 1  # queued before the change
        (new,) = ledger.offer_many([Intent(p, "/w", (("t", "video"),), ident(mtime=2), META, 7)])
        assert new.job_id == o.job_id and ledger.get(o.job_id).priority == 7

    def test_related_finds_a_files_jobs_and_same_size_jobs_of_the_target(self, ledger: Ledger, tmp_path: Path):
        ids = self._queue(ledger, tmp_path, [("a.mp4", 100, 0), ("b.mp4", 100, 0), ("c.mp4", 200, 0)])
        other = self._queue(ledger, tmp_path, [("a.mp4", 100, 0)], target="other")
        found = ledger.related("t", tmp_path / "a.mp4", 100)
        assert [j.id for j in found] == [ids["a.mp4"], ids["b.mp4"]]  # by id; not c (size), not the other target
        assert [j.id for j in ledger.related("t", tmp_path / "c.mp4", 7)] == [ids["c.mp4"]]  # by path alone
        assert ledger.related("t", tmp_path / "z.mp4", 5) == [] and other

    # -- fencing ------------------------------------------------------------------------------------
    @pytest.fixture
    def taken_over(self, ledger: Ledger, tmp_path: Path) -> tuple[Job, Job]:
        """A job whose lease A held, expired and B took: (A's claim, B's claim)."""
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (stale,) = ledger.claim("A", 1, 0.05)
        time.sleep(0.1)
        (fresh,) = ledger.claim("B", 1, 60)
        ledger.checkpoint(fresh.id, "B", fresh.lease_gen).save({"by": "B"})
        ledger.progress(fresh.id, 7, 1.0, "B", 60, generation=fresh.lease_gen)
        return stale, fresh

    @pytest.mark.parametrize("transition", sorted(TRANSITIONS))
    def test_transition_with_a_lost_lease_is_refused(self, ledger: Ledger, taken_over, transition: str):
        stale, fresh = taken_over
        before = _row(ledger, stale.id)
        with pytest.raises(LeaseLost):
            TRANSITIONS[transition](ledger, stale.id, "A", stale.lease_gen)
        assert _row(ledger, stale.id) == before  # nothing written, not even `updated`
        assert before[0].lease_owner == "B" and before[1] == {"by": "B"}

    @pytest.mark.parametrize("transition", sorted(TRANSITIONS))
    def test_transition_with_an_old_generation_of_the_same_owner_is_refused(self, ledger: Ledger,
                                                                          tmp_path: Path, transition: str):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (old,) = ledger.claim("A", 1, 0.05)
        time.sleep(0.1)
        (new,) = ledger.claim("A", 1, 60)  # a second worker of the same process took it up again
        before = _row(ledger, old.id)
        with pytest.raises(LeaseLost):
            TRANSITIONS[transition](ledger, old.id, "A", old.lease_gen)
        assert _row(ledger, old.id) == before
        TRANSITIONS[transition](ledger, new.id, "A", new.lease_gen)  # the holder's own write goes through

    def test_ensure_held_refuses_a_lost_lease_an_old_generation_and_an_expired_one(self, ledger: Ledger,
                                                                                  taken_over, tmp_path: Path):
        """What a provider asks before Complete/Abort/commit (issue 13): one read, no write."""
        stale, fresh = taken_over
        before = _row(ledger, stale.id)
        with pytest.raises(LeaseLost):
            ledger.checkpoint(stale.id, "A", stale.lease_gen).ensure_held()  # taken over by B
        with pytest.raises(LeaseLost):
            ledger.checkpoint(fresh.id, "B", fresh.lease_gen - 1).ensure_held()  # B's own older claim
        ledger.checkpoint(fresh.id, "B", fresh.lease_gen).ensure_held()  # the holder's goes through
        ledger.checkpoint(fresh.id).ensure_held()  # unfenced (operator commands): nothing to check
        assert _row(ledger, stale.id) == before
        ledger.offer(tmp_path / "b.mp4", "/w", [("t", "video")], ident(inode=9), META)
        (short,) = ledger.claim("C", 1, 0.05)
        time.sleep(0.1)  # run out, not yet claimed by anyone: another host may take it any moment
        with pytest.raises(LeaseLost):
            ledger.checkpoint(short.id, "C", short.lease_gen).ensure_held()
        ledger.renew("C", [short.id], 60)
        ledger.checkpoint(short.id, "C", short.lease_gen).ensure_held()

    def test_the_holders_transitions_go_through(self, ledger: Ledger, taken_over):
        _, fresh = taken_over
        assert ledger.record_content(fresh.id, "abc", True, owner="B", generation=fresh.lease_gen) == ("go", None)
        assert ledger.apply(fresh.id, RemoteIdRecorded("R1", "video"), owner="B",
                            generation=fresh.lease_gen).action == "upload.remote_id"
        assert ledger.apply(fresh.id, Completed("R1", "video", final=False, poll_in=0), owner="B",
                            generation=fresh.lease_gen).action == "upload.completed"
        assert ledger.get(fresh.id).state == "committed" and ledger.checkpoint(fresh.id).load() is None
        (poll,) = ledger.claim("C", 0, 60, poll_limit=1)
        ledger.apply(poll.id, Ready(("M1",)), owner="C", generation=poll.lease_gen)
        assert ledger.get(poll.id).state == "done"

    # -- outcomes: Ledger.apply ------------------------------------------------------------------
    OUTCOMES = {  # name: (outcome, state after, event action or None)
        "completed_final": (Completed("R1", "video", {"url": "u"}), "done", "upload.completed"),
        "completed_poll": (Completed("R1", "video", final=False, poll_in=60), "committed", "upload.completed"),
        "retry_later": (RetryLater("503", 60, 1, "TransientError"), "queued", "upload.retrying"),
        "wait_for_twin": (WaitForTwin(7), "queued", None),
        "failed": (Failed("bad", "PermanentError"), "failed", "upload.failed"),
        "unconfigured": (Unconfigured(), "failed", "upload.failed"),
        "skipped": (Skipped(7, "/w/b.mp4", "R0", "video"), "skipped", "upload.skipped"),
        "interrupted": (Interrupted(), "queued", "upload.interrupted"),
        "paused": (Interrupted("paused"), "queued", "upload.interrupted"),
        "cancelled": (Cancelled(), "cancelled", "upload.cancelled"),
        "held_for_change": (HeldForChange("changed"), "queued", "upload.restarted"),
        "content_reset": (ContentReset("differs", 5), "queued", "upload.restarted"),
        "content_reset_last": (ContentReset("differs", 1), "failed", "upload.failed"),
    }

    @pytest.mark.parametrize("name", sorted(OUTCOMES))
    def test_each_outcome_sets_its_state_ends_the_lease_and_returns_its_event(self, ledger: Ledger,
                                                                             tmp_path: Path, name: str):
        outcome, state, action = self.OUTCOMES[name]
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        ledger.checkpoint(j.id, "A", j.lease_gen).save({"offset": 1})
        event = ledger.apply(j.id, outcome, owner="A", generation=j.lease_gen)
        job = ledger.get(j.id)
        assert (job.state, job.lease_owner) == (state, None)
        assert (event.action if event else None) == action
        if event is not None:
            assert event.fields["job_id"] == j.id and event.fields["path"] == str(tmp_path / "a.mp4")
            assert event.message.startswith("a.mp4")
        drops = isinstance(outcome, (Completed, HeldForChange, ContentReset, Cancelled))
        assert (ledger.checkpoint(j.id).load() is None) == drops
        if name == "held_for_change":
            assert job.not_before >= HELD
        if name == "skipped":
            assert (job.remote_id, event.fields["duplicate_of_job"]) == ("R0", 7)

    def test_polls_end_ready_or_failed_with_their_events(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(2)]
        for i in ids:
            ledger.apply(i, Completed(f"R{i}", "video", {"k": "v"}, final=False, poll_in=0), owner=None)
        first, second = ledger.claim("P", 0, 60, poll_limit=2)
        assert ledger.apply(first.id, PollLater(60, 1, "processing"), owner="P", generation=first.lease_gen) is None
        assert (ledger.get(first.id).state, ledger.get(first.id).lease_owner) == ("committed", None)
        ready = ledger.apply(second.id, Ready(("M1", "M2"), "Normal"), owner="P", generation=second.lease_gen)
        assert ready.action == "media.ready" and ready.fields["media_ids"] == ["M1", "M2"]
        assert ready.fields["remote_id"] == f"R{second.id}" and "as M1, M2" in ready.message
        assert ledger.get(second.id).state == "done"
        failed = ledger.apply(first.id, MediaFailed("transcode failed"), owner=None)
        assert failed.action == "media.failed" and ledger.get(first.id).state == "failed"

    def test_remote_id_recorded_keeps_the_lease_and_a_cover_id_is_only_logged(self, ledger: Ledger,
                                                                           tmp_path: Path):
        ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        cover = ledger.apply(j.id, RemoteIdRecorded("C1", "image"), owner="A", generation=j.lease_gen)
        assert cover.fields["role"] == "cover" and ledger.get(j.id).remote_id is None
        ev = ledger.apply(j.id, RemoteIdRecorded("V1", "video"), owner="A", generation=j.lease_gen)
        job = ledger.get(j.id)
        assert ev.action == "upload.remote_id" and (job.remote_id, job.lease_owner) == ("V1", "A")

    def test_completed_stores_the_content_id_of_an_unhashed_upload(self, ledger: Ledger, tmp_path: Path):
        a, b = (ledger.offer(tmp_path / f"{n}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
                for i, n in enumerate("ab"))
        ev = ledger.apply(a, Completed("R1", "video", content_id="crc64:00000000000000aa"), owner=None)
        assert ledger.get(a).md5 == "crc64:00000000000000aa" and ev.fields["crc64"] == "00000000000000aa"
        ledger.record_content(b, "f" * 32, False)  # hashed before: its fingerprint stays the content
        ev = ledger.apply(b, Completed("R2", "video", content_id="crc64:01"), owner=None)
        assert ledger.get(b).md5 == "f" * 32 and ev.fields["md5"] == "f" * 32 and ev.fields["crc64"] is None

    # -- twins: read the file before sending only when one is possible -------------------------------
    def test_twin_possible_only_with_a_same_size_job_of_the_target(self, ledger: Ledger, tmp_path: Path):
        (me,) = ledger.offer(tmp_path / "me.mp4", "/w", [("t", "video")], ident(inode=1, size=100), META)
        assert not ledger.twin_possible(me.job_id)  # alone
        ledger.offer(tmp_path / "other-size.mp4", "/w", [("t", "video")], ident(inode=2, size=101), META)
        ledger.offer(tmp_path / "other-target.mp4", "/w", [("u", "video")], ident(inode=3, size=100), META)
        assert not ledger.twin_possible(me.job_id)
        (twin,) = ledger.offer(tmp_path / "twin.mp4", "/w", [("t", "video")], ident(inode=4, size=100), META)
        assert ledger.twin_possible(me.job_id) and ledger.twin_possible(twin.job_id)  # queued together: both
        ledger.apply(twin.job_id, Failed("bad", "PermanentError"), owner=None)
        assert not ledger.twin_possible(me.job_id)  # failed: not a twin
        ledger.retry([twin.job_id])
        ledger.apply(twin.job_id, Completed("R1", "video"), owner=None)  # done, content unknown
        assert not ledger.twin_possible(me.job_id)  # unknown, not a twin
        (known,) = ledger.offer(tmp_path / "known.mp4", "/w", [("t", "video")], ident(inode=5, size=100), META)
        ledger.apply(known.job_id, Completed("R2", "video", content_id="crc64:02"), owner=None)
        assert ledger.twin_possible(me.job_id)  # done with its content known

    def _sending_unhashed(self, ledger: Ledger, tmp_path: Path, later: int) -> tuple[Job, list[int]]:
        """One job alone when it decided (sent unhashed), then `later` same-size jobs offered."""
        ledger.offer(tmp_path / "0.mp4", "/w", [("t", "video")], ident(inode=100), META)
        (sending,) = ledger.claim("A", 1, 60)
        assert ledger.send_unhashed(sending.id, owner="A", generation=sending.lease_gen)
        assert ledger.get(sending.id).md5 is None  # the mark stays inside the ledger
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(1, later + 1)]
        return sending, ids

    def test_send_unhashed_only_without_a_possible_twin_and_fenced(self, ledger: Ledger, tmp_path: Path):
        for i in range(2):
            ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)
        first, _ = ledger.claim("A", 2, 60)
        assert not ledger.send_unhashed(first.id, owner="A", generation=first.lease_gen)  # queued together
        with pytest.raises(LeaseLost):
            ledger.send_unhashed(first.id, owner="A", generation=first.lease_gen - 1)
        (alone,) = ledger.offer(tmp_path / "odd.mp4", "/w", [("t", "video")], ident(inode=9, size=7), META)
        assert ledger.send_unhashed(alone.job_id)

    def test_hashed_job_waits_for_an_unhashed_twin_in_flight_until_it_commits(self, ledger: Ledger,
                                                                            tmp_path: Path):
        sending, ids = self._sending_unhashed(ledger, tmp_path, 2)
        verdict, twin = ledger.record_content(ids[0], "crc64:0a", True)
        assert verdict == "wait" and twin.id == sending.id
        ledger.apply(sending.id, Completed("R0", "video", content_id="crc64:0a"), owner="A",
                     generation=sending.lease_gen)
        verdict, twin = ledger.record_content(ids[0], "crc64:0a", True)  # identical: skipped
        assert verdict == "skip" and twin.remote_id == "R0"
        assert ledger.record_content(ids[1], "crc64:0b", True) == ("go", None)  # different: uploaded

    def test_hashed_job_stops_waiting_when_the_unhashed_twin_fails(self, ledger: Ledger, tmp_path: Path):
        sending, ids = self._sending_unhashed(ledger, tmp_path, 1)
        assert ledger.record_content(ids[0], "crc64:0a", True)[0] == "wait"
        ledger.apply(sending.id, Failed("bad", "PermanentError"), owner="A", generation=sending.lease_gen)
        assert ledger.record_content(ids[0], "crc64:0a", True) == ("go", None)

    def test_a_twin_still_hashing_is_not_waited_for(self, ledger: Ledger, tmp_path: Path):
        """Many files of one size (a camera's fixed-size chunks) hashing at once: whichever
        records its content first goes; only an identical one recorded after it waits."""
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(3)]
        claimed = ledger.claim("A", 3, 60)
        assert [j.id for j in claimed] == ids  # all uploading, none hashed yet
        assert ledger.record_content(ids[0], "crc64:01", True) == ("go", None)
        assert ledger.record_content(ids[1], "crc64:02", True) == ("go", None)  # other content: no wait
        verdict, twin = ledger.record_content(ids[2], "crc64:01", True)  # identical to one in flight
        assert verdict == "wait" and twin.id == ids[0]

    def test_committed_twin_without_content_is_not_waited_for(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(2)]
        ledger.apply(ids[0], Completed("R0", "video", final=False, poll_in=60), owner=None)  # no content id
        assert ledger.record_content(ids[1], "crc64:0a", True) == ("go", None)
        # and the platform answering with the same id for it is a conflict, not "the same content"
        clash = ledger.apply(ids[1], Completed("R0", "video"), owner=None)
        assert clash.action == DUPLICATE_REMOTE_ID and ledger.get(ids[1]).state == "attention"

    # -- status and housekeeping (issue 11) -----------------------------------------------------------
    def test_jobs_filtered_by_state_and_change_time(self, ledger: Ledger, tmp_path: Path):
        start = time.time()
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(3)]
        done(ledger, ids[0], "R0")
        job = ledger.get(ids[0])
        assert start - 1 <= job.created <= job.updated <= time.time() + 1
        assert [j.id for j in ledger.jobs(["queued"])] == ids[1:]
        assert [j.id for j in ledger.jobs(updated_since=start - 1)] == ids
        assert ledger.jobs(updated_since=time.time() + 60) == []
        assert [j.id for j in ledger.jobs(["done"], updated_since=start - 1)] == ids[:1]

    def test_progress_clears_an_earlier_attempts_error(self, ledger: Ledger, tmp_path: Path):
        (o,) = ledger.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        (j,) = ledger.claim("A", 1, 60)
        ledger.apply(j.id, RetryLater("HTTP 503", 0.0, 1, "TransientError"), owner="A", generation=j.lease_gen)
        assert ledger.get(o.job_id).last_error == "HTTP 503"
        (j,) = ledger.claim("A", 1, 60)  # delay 0: runnable at once
        assert ledger.get(o.job_id).last_error == "HTTP 503"  # current until the new attempt moves
        ledger.progress(j.id, 50, 10.0, "A", 60, generation=j.lease_gen)
        job = ledger.get(o.job_id)
        assert (job.last_error, job.attempts, job.bytes_done) == (None, 1, 50)

    def test_finished_jobs_before_a_cutoff_can_be_forgotten(self, ledger: Ledger, tmp_path: Path):
        ids = [ledger.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(5)]
        done(ledger, ids[0], "R0")
        done(ledger, ids[1], "R1")
        ledger.apply(ids[2], Skipped(ids[0], str(tmp_path / "0.mp4"), "R0", "video"), owner=None)
        ledger.apply(ids[3], Failed("bad", "PermanentError"), owner=None)  # failed: needs a person, never pruned
        ledger.checkpoint(ids[1]).save({"k": "v"})
        assert ledger.finished_before(time.time() - 3600) == []
        later = time.time() + 10
        old = ledger.finished_before(later)
        assert [j.id for j in old] == ids[:3]
        assert [j.id for j in ledger.finished_before(later, limit=2)] == ids[:2]
        assert [j.id for j in ledger.finished_before(later, after=ids[0])] == ids[1:3]
        ledger.retry([ids[2]])  # moved on since it was listed: stays
        assert ledger.forget([j.id for j in old] + [ids[3], ids[4]], later) == 2
        assert ledger.get(ids[0]) is None and ledger.get(ids[1]) is None
        assert ledger.checkpoint(ids[1]).load() is None
        assert {j.id for j in ledger.jobs()} == set(ids[2:])
        assert ledger.forget([], later) == 0 and ledger.forget([ids[4]], later) == 0
        # a forgotten remote id is no conflict any more (its record stays in the event log)
        (o,) = ledger.offer(tmp_path / "new.mp4", "/w", [("t", "video")], ident(inode=9), META)
        assert ledger.apply(o.job_id, Completed("R1", "video"), owner=None).action == "upload.completed"

    def test_check_writable_is_a_committed_write(self, backend: LedgerBackend, tmp_path: Path):
        l = backend.open()
        (o,) = l.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        l.check_writable()
        l.check_writable()  # repeatable, and changes no job
        assert l.get(o.job_id).state == "queued" and len(l.jobs()) == 1
        l.close()

    # -- checkpoints --------------------------------------------------------------------------------
    def test_checkpoints_save_load_clear_and_survive_reopen(self, backend: LedgerBackend, tmp_path: Path):
        l = backend.open()
        (o,) = l.offer(tmp_path / "a.mp4", "/w", [("t", "video")], ident(), META)
        cp = l.checkpoint(o.job_id)
        assert cp.load() is None
        cp.save({"upload_token": "u", "server": "1.2.3.4:80"})
        l.close()
        l = backend.open()
        assert l.checkpoint(o.job_id).load() == {"upload_token": "u", "server": "1.2.3.4:80"}
        l.checkpoint(o.job_id).clear()
        assert l.checkpoint(o.job_id).load() is None
        l.close()

    # -- shared values ------------------------------------------------------------------------------
    def test_shared_values_compare_and_set(self, ledger: Ledger):
        assert ledger.shared_get("oauth") is None
        v1 = ledger.shared_put("oauth", 0, {"token": "a"})
        assert v1.generation == 1 and ledger.shared_get("oauth") == v1
        with pytest.raises(LedgerError, match="lost update"):
            ledger.shared_put("oauth", 0, {"token": "b"})  # stale: someone stored generation 1
        v2 = ledger.shared_put("oauth", 1, {"token": "c"})
        assert (v2.generation, ledger.shared_get("oauth").data) == (2, {"token": "c"})

    def test_try_exclusive_is_not_waited_for_and_given_back(self, ledger: Ledger):
        with ledger.try_exclusive("rescan") as mine:
            assert mine is True
        with ledger.try_exclusive("rescan") as again:  # given back at the end of the block
            assert again is True

    def test_rescan_turns_one_host_per_interval(self, ledger: Ledger):
        """vidupd.intake.rescan_turn on this store: the first to ask takes the round."""
        from vidupd.intake.rescan_turn import RescanTurns

        a, b = RescanTurns(ledger, lambda: 300.0, "a"), RescanTurns(ledger, lambda: 300.0, "b")
        assert a() is True and b() is False and a() is False
        assert ledger.shared_get("rescan.last").data["host"] == "a"
        quick = RescanTurns(ledger, lambda: 0.001, "b")
        time.sleep(0.01)
        assert quick() is True and ledger.shared_get("rescan.last").data["host"] == "b"

    # -- hosts: each daemon's heartbeat (vidupd.ledger.hosts) -----------------------------------------
    def test_heartbeats_say_which_hosts_run_and_how_much(self, ledger: Ledger, monkeypatch):
        t = [1_800_000_000.0]
        monkeypatch.setattr(ledger.store, "now", lambda: t[0])  # the ledger's clock (the server's on PG)
        assert ledger.hosts() == []
        ledger.beat("alpha:101:1799999990", running=2, version="1.2")
        ledger.beat("beta:202:1799999995")
        t[0] += 4
        ledger.beat("alpha:101:1799999990", running=3, version="1.2")
        a, b = ledger.hosts()
        assert (a.owner, a.hostname, a.pid, a.version, a.running, a.state) == ("alpha:101:1799999990", "alpha", 101,
                                                                            "1.2", 3, "running")
        assert (a.started, a.last_seen, a.age, a.status) == (1_800_000_000.0, 1_800_000_004.0, 0.0, "running")
        assert (b.hostname, b.pid, b.running, b.age) == ("beta", 202, 0, 4.0)
        t[0] += 60
        ledger.beat("alpha:101:1799999990", running=1)
        ledger.host_stopped("beta:202:1799999995")  # a clean stop
        a, b = ledger.hosts()
        assert (a.status, a.running) == ("running", 1) and (b.state, b.status, b.running) == ("stopped", "stopped", 0)
        t[0] += 31
        assert ledger.hosts()[0].status == "silent"  # killed or frozen: running by its last word, not heard from
        assert [h.hostname for h in ledger.hosts(within=20)] == []
        assert [h.hostname for h in ledger.hosts(within=40)] == ["alpha", "beta"]
        ledger.beat("alpha:101:1799999990")
        assert ledger.hosts()[0].status == "running"

    def test_host_rows_not_beaten_for_a_week_are_pruned(self, ledger: Ledger, monkeypatch):
        t = [1_800_000_000.0]
        monkeypatch.setattr(ledger.store, "now", lambda: t[0])
        ledger.beat("old:1:1")
        ledger.host_stopped("old:1:1")
        ledger.beat("crashed:2:2")
        t[0] += 7 * 86400 - 10
        ledger.beat("new:3:3")
        assert ledger.prune_hosts() == 0
        assert [h.hostname for h in ledger.hosts()] == ["crashed", "new", "old"]
        t[0] += 20
        ledger.beat("new:3:3")
        assert [h.hostname for h in ledger.hosts()] == ["crashed", "new", "old"]  # a beat is its own row only
        assert ledger.prune_hosts() == 2 and [h.hostname for h in ledger.hosts()] == ["new"]

    def test_heartbeats_survive_a_reopen(self, backend: LedgerBackend):
        l = backend.open()
        l.beat("gamma:303:1800000000", running=1, version="9")
        before = l.hosts()
        l.close()
        again = backend.open()
        (h,) = again.hosts()
        assert (h.owner, h.running, h.version, h.started) == (before[0].owner, 1, "9", before[0].started)
        again.close()

    # -- reopen, migrations, damaged stores -----------------------------------------------------------
    def test_reopen_keeps_everything(self, backend: LedgerBackend, tmp_path: Path):
        l = backend.open()
        ids = [l.offer(tmp_path / f"{i}.mp4", "/w", [("t", "video")], ident(inode=i), META)[0].job_id
               for i in range(3)]
        claimed = l.claim("A", 2, 3600)
        l.apply(ids[0], Completed("R0", "video", {"k": "v"}), owner="A", generation=claimed[0].lease_gen)
        l.checkpoint(ids[1]).save({"offset": 3})
        l.shared_put("s", 0, {"x": 1})
        jobs, counts, shared = l.jobs(), l.counts(), l.shared_get("s")
        l.close()
        again = backend.open()
        assert again.jobs() == jobs and again.counts() == counts and again.shared_get("s") == shared
        assert again.checkpoint(ids[1]).load() == {"offset": 3}
        assert again.get(ids[1]).lease_gen == claimed[1].lease_gen  # a reopen does not reset fencing
        again.close()

    @pytest.mark.parametrize("name", MIGRATED)
    def test_older_schema_fixture_migrates_and_keeps_jobs(self, backend: LedgerBackend, name: str):
        backend.use_fixture(name)
        l = backend.open()
        assert l.schema_version == len(MIGRATIONS)
        done, half = l.jobs()
        assert done.state == "done" and done.remote_id == "XNDY5Njc0MTA4" and done.committed_at is None
        assert half.state == "uploading" and l.checkpoint(half.id).load() == {"upload_token": "tok"}
        assert l.recover() == 0  # no lease owner recorded: nothing to free, and nothing lost
        assert half.lease_gen == 0 and done.lease_gen == 0  # never claimed under fencing yet
        assert half.priority == 0 and done.priority == 0  # jobs queued before priorities existed
        # left `uploading` with no lease at all (a kill -9 before leases had expiries): it is
        # runnable, and resumes from its checkpoint
        (claimed,) = l.claim("me", 5, 60)
        assert claimed.id == half.id and claimed.lease_owner == "me" and claimed.lease_gen == 1
        assert l.checkpoint(half.id).load() == {"upload_token": "tok"}
        l.close()
        again = backend.open()  # reopening a migrated ledger is a no-op
        assert again.schema_version == len(MIGRATIONS) and len(again.jobs()) == 2
        assert again.hosts() == []  # no daemon has beaten yet
        again.close()

    @pytest.mark.parametrize("name", DAMAGED)
    def test_damaged_store_is_refused_with_advice(self, backend: LedgerBackend, name: str):
        backend.use_fixture(name)
        before = backend.stored()
        with pytest.raises(LedgerError) as e:
            backend.open()
        msg = str(e.value)
        assert "backup" in msg or "move the file aside" in msg
        assert backend.stored() == before  # never "repaired" by starting empty
