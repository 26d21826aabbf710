"""A host cut off from PostgreSQL mid-upload (issue 13), with real network plumbing (root):
one daemon runs in its own network namespace, joined to this host by two veth pairs, one
for the platforms and one for PostgreSQL only; a second daemon runs on the host. Both
share the outbox and the ledger (a throwaway server listening on loopback and on the
PostgreSQL veth's host address).

Mid-upload the PostgreSQL veth's host end goes down: the namespace's packets to the ledger
vanish (no error, as when a cable or a switch dies) while the platforms stay reachable.
The cut-off daemon must stop sending within one lease and stay stopped (the bytes it sends,
counted where they leave its namespace, do not grow from one lease after the cut until a
ledger call on the dead link has timed out; its log says `upload.lease_expiring`), and the
other daemon must finish its uploads exactly once, resumed in the same multipart uploads.
The cut-off daemon says `ledger.unreachable` once a ledger call fails on the dead link (the
store's TCP timeouts), and `ledger.reachable` when the link is back.

The sandboxes bind loopback only and hand out 127.0.0.1 addresses, so the namespace reaches
them through two relays on the same ports (tests/tcp_relay.py): 127.0.0.1 in the namespace
-> the platform veth's host address -> 127.0.0.1 here. The namespace is removed in any case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from urllib.parse import urlsplit

import pytest
from fleet import MiB, LedgerView, Platforms, make_host, part_digests
from helpers import ROOT, actions, drop_random, wait_for
from tcp_relay import Relay

pytestmark = pytest.mark.timeout(300)

LEASE = 6.0
PART = MiB
WATCH = LEASE + 18  # seconds the cut-off host is watched: past the store's TCP timeout (15 s)
NET = 10 + os.getpid() % 200  # 10.231.NET.0/30 (platforms) and 10.232.NET.0/30 (PostgreSQL)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


class Namespace:
    """NS with lo up and two veth pairs (platforms, PostgreSQL); removed by `close`."""

    def __init__(self, name: str):
        self.name = name
        self.web_host, self.web_ns = f"10.231.{NET}.1", f"10.231.{NET}.2"
        self.pg_host, self.pg_ns = f"10.232.{NET}.1", f"10.232.{NET}.2"
        self.pg_link = f"vfp{NET}h"  # the host end of the PostgreSQL veth: the one cut
        _ip("netns", "add", name)
        try:
            self._pair(f"vfw{NET}h", f"vfw{NET}n", self.web_host, self.web_ns)
            self._pair(self.pg_link, f"vfp{NET}n", self.pg_host, self.pg_ns)
            _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def _pair(self, host_end: str, ns_end: str, host_addr: str, ns_addr: str) -> None:
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", self.name)
        _ip("addr", "add", f"{host_addr}/30", "dev", host_end)
        _ip("link", "set", host_end, "up")
        _ip("netns", "exec", self.name, "ip", "addr", "add", f"{ns_addr}/30", "dev", ns_end)
        _ip("netns", "exec", self.name, "ip", "link", "set", ns_end, "up")

    def cut_pg(self, down: bool = True) -> None:
        _ip("link", "set", self.pg_link, "down" if down else "up")

    def close(self) -> None:
        _ip("netns", "del", self.name, check=False)  # takes the namespace ends, and so their peers
        for link in (f"vfw{NET}h", self.pg_link):
            _ip("link", "del", link, check=False)


def _netns_or_skip(name: str) -> Namespace:
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces and veth pairs (ip netns, ip link)")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's `ip` for network namespaces")
    try:
        return Namespace(name)
    except (subprocess.CalledProcessError, OSError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        pytest.skip(f"cannot make a network namespace with a veth pair here: {detail.strip()}")


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["@timestamp"].replace("Z", "+00:00")).timestamp()


def _ports(platforms: Platforms) -> list[int]:
    urls = [platforms.youku.api_base, platforms.youku.upload_server, platforms.vod.endpoint,
            platforms.oss.endpoint, platforms.youku.oss.endpoint]
    return sorted({urlsplit(u if "://" in u else f"http://{u}").port for u in urls})


def test_a_host_cut_off_from_postgresql_stops_and_the_other_finishes(tmp_path):
    import pg_server as pg

    ns = _netns_or_skip(f"vidupd-fleet-{os.getpid()}")
    server = relay_in = relay_out = view = platforms = None
    hosts = []
    try:
        server = pg.start(also_listen=(ns.pg_host,), admit=(f"{ns.pg_ns}/32",))
        if server is None:
            pytest.skip(pg.SKIP_REASON)
        with server.admin() as db:
            db.execute("CREATE SCHEMA netns")
        local_url = server.url(schema="netns")
        platforms = Platforms(tmp_path)
        ports = _ports(platforms)
        relay_out = Relay(ns.web_host, "127.0.0.1", ports)  # what the namespace sends, counted here
        relay_in = subprocess.Popen(["ip", "netns", "exec", ns.name, sys.executable, str(ROOT / "tests" / "tcp_relay.py"),
                                     "127.0.0.1", ns.web_host, *map(str, ports)], stdout=subprocess.PIPE, text=True)
        assert relay_in.stdout is not None and relay_in.stdout.readline().strip() == "listening"
        outbox = tmp_path / "outbox"
        outbox.mkdir()
        targets = platforms.targets(PART)
        cut = make_host(tmp_path, "fleet-cut", outbox, targets, server.url(schema="netns", host=ns.pg_host),
                        server.password, lease=LEASE, workers=2, max_rate="2M", netns=ns.name)
        other = make_host(tmp_path, "fleet-other", outbox, targets, local_url, server.password, lease=LEASE,
                          workers=2)
        hosts = [cut, other]
        view = LedgerView(local_url, server.password)
        cut.daemon.start()
        big = drop_random(outbox / "big.mp4", 24 * MiB + 12345)  # ~25 s per target at 1 MB/s each
        wait_for(lambda: sum(cut.holds(j) and j.bytes_done >= 2 * PART for j in view.jobs(["uploading"])) == 2,
                 60, interval=0.2, what="both uploads under way in the namespace")
        other.daemon.start()
        small = [drop_random(outbox / f"s{i}.mp4", 40_000 + i) for i in range(4)]  # the other's own work

        ns.cut_pg()
        t_cut, cut_at = time.monotonic(), time.time()
        samples = []  # (seconds since the cut, bytes the namespace has sent)
        while time.monotonic() - t_cut < WATCH:
            samples.append((time.monotonic() - t_cut, relay_out.forwarded))
            time.sleep(0.25)
        at_lease = max(b for t, b in samples if t <= LEASE)
        sent_late = samples[-1][1] - at_lease
        moving_until = max((t for (t, b), (_, prev) in zip(samples[1:], samples) if b > prev), default=0.0)
        print(f"\nthe namespace sent {at_lease - samples[0][1]} bytes in the lease after the cut, {sent_late} "
              f"after it; its last bytes {moving_until:.1f}s after the cut")
        assert sent_late <= 64 << 10, f"still sending {sent_late} bytes more than one lease after the cut"
        assert actions(cut.events, "upload.lease_expiring"), "no upload.lease_expiring in the cut-off host's log"

        want = (1 + len(small)) * len(targets)
        wait_for(lambda: len(view.jobs(["done"])) == want, 180, interval=0.5, what=f"all {want} jobs done")
        # a call stuck on the dead connection fails at the store's TCP timeouts: said once
        (down,) = wait_for(lambda: actions(cut.events, "ledger.unreachable"),
                           max(1.0, 40 - (time.monotonic() - t_cut)), what="ledger.unreachable from the cut-off host")
        expiring = actions(cut.events, "upload.lease_expiring")[0]
        print(f"upload.lease_expiring {_stamp(expiring) - cut_at:.1f}s and ledger.unreachable "
              f"{_stamp(down) - cut_at:.1f}s after the cut")
        ns.cut_pg(down=False)  # back: the cut-off daemon reconnects, says so, and stops cleanly
        wait_for(lambda: actions(cut.events, "ledger.reachable"), 40, what="ledger.reachable once the link is back")
        for h in hosts:
            assert h.daemon.stop(timeout=90) == 0, h.daemon.stderr()[-3000:]
        jobs = view.jobs()
    finally:
        for h in hosts:
            if h.daemon.proc is not None and h.daemon.proc.poll() is None:
                h.daemon.proc.kill()
                h.daemon.proc.wait(timeout=10)
        if relay_in is not None:
            relay_in.kill()
            relay_in.wait(timeout=10)
        if view is not None:
            view.close()
        if relay_out is not None:
            relay_out.close()
        if platforms is not None:
            open_left = platforms.open_uploads()
            platforms.close()
        if server is not None:
            server.stop()
        ns.close()

    # the other daemon finished the cut-off one's uploads, once, in the same multipart uploads
    journal = platforms.journal_ids()
    for t in targets:
        (job,) = [j for j in jobs if j.target == t and j.path.name == big.name]
        assert job.state == "done" and journal[t][job.remote_id] == 1, (t, job.state, journal[t])
        assert max(journal[t].values()) == 1 and set(journal[t]) == {j.remote_id for j in jobs if j.target == t}
        parts, received, uploads = platforms.parts[t].of(part_digests(big, PART))
        print(f"big.mp4 to {t}: {received} bytes received for {job.size} in {parts} parts, {len(uploads)} upload(s)")
        assert len(uploads) == 1, f"{t}: restarted as {len(uploads)} multipart uploads"
    done_by = {h.name: {(e["file.path"], e["vidupd.target"]) for e in actions(h.events, "upload.completed")}
               for h in hosts}
    assert {(str(big), t) for t in targets} <= done_by["fleet-other"]
    assert not done_by["fleet-cut"] & done_by["fleet-other"]
    assert open_left == {"multipart": [], "tokens": [], "vod_uploading": []}, open_left
    for h in hosts:
        assert server.password not in h.events.read_text() + h.daemon.stderr()
    print({h.name: {a: len(actions(h.events, a)) for a in ("upload.lease_expiring", "upload.lease_lost",
                                                             "ledger.unreachable", "ledger.reachable")}
           for h in hosts})
