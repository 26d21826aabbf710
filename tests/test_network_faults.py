"""Issue 14's network-fault suite: the real daemon uploading to the sandbox (its own process)
over a bad network, ending with the same check each time (tests/fault_site.py): every file
arrived intact (the MD5 in uploads.jsonl), exactly once, and the retries are in the event
log as `upload.retrying`.

- the sandbox's own fault switches: 5xx answers and connections dropped mid-body
  (`--fail-rate`), STS credentials that expire within seconds (`--token-ttl`), a bandwidth
  cap (`--max-rate`), answers lost after the server acted (`--drop-create-answer`,
  `--drop-complete-answer`);
- a bad network in user space (this kernel has no netem qdisc, and no iptables): the TCP
  relay of tests/tcp_relay.py in front of VOD and OSS (`--oss-endpoint` makes VOD hand out
  the relay's address) adds delay, resets and stalls connections at random, and blacks out
  everything for a while (a partition: nothing passes, nothing is closed);
- as root, the daemon in a network namespace behind a veth pair, partitioned with `ip link
  set ... down`; with `tc netem` when this kernel has it (skipped, saying why, when not);
- a frozen server (SIGSTOP): the daemon's `request_timeout` notices, retries, and the files
  still arrive exactly once after SIGCONT.

The soak variants (`-m soak`) partition for the full 30 s, with many more files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_site import FaultSite, assert_exactly_once, integrity, ledger_rows, outcome_counts
from helpers import ROOT, DaemonProcess, actions, drop_random, wait_for
from tcp_relay import Relay

pytestmark = pytest.mark.timeout(600)

SMALL, LARGE = 150_000, 700_000  # a PutObject, and a multipart upload of several 100 KiB parts
MULTIPART = {"part_size": 100 * 1024, "multipart_threshold": 200_000, "part_concurrency": 2}


def drop_mix(outbox: Path, n: int, prefix: str = "f") -> list[Path]:
    return [drop_random(outbox / f"{prefix}{i:03d}.mp4", LARGE if i % 2 else SMALL) for i in range(n)]


def retrying(site: FaultSite) -> list[dict]:
    return actions(site.events, "upload.retrying")


def finish(site: FaultSite, d: DaemonProcess, files: list[Path], timeout: float) -> None:
    """Wait until every file is done, stop the daemon cleanly and check the outcome."""
    wait_for(lambda: len(ledger_rows(site.state)) == len(files)
             and all(r[1] == "done" for r in ledger_rows(site.state)), timeout,
             what=f"{len(files)} uploads done ({outcome_counts(site.events)})")
    assert d.stop() == 0
    assert integrity(site.state) == "ok"
    assert not actions(site.events, "upload.failed"), actions(site.events, "upload.failed")
    assert_exactly_once(site, files)
    counts = outcome_counts(site.events)
    relay = getattr(site, "relay", None)
    print(f"\n{len(files)} files exactly once; retries {counts.get('upload.retrying', 0)}, interrupted "
          f"{counts.get('upload.interrupted', 0)}" + (f"; relay: {relay.connections} connections, {relay.resets} "
                                                     f"resets, {relay.stalls} stalls, {relay.held} held" if relay else ""))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the sandbox's own switches --------------------------------------------------------------------

def test_sandbox_faults_fail_rate_short_tokens_rate_cap_and_lost_answers(tmp_path):
    site = FaultSite(tmp_path, ("--fail-rate", "0.2", "--token-ttl", "3", "--max-rate", "2M", "--seed", "14",
                                "--drop-create-answer", "2", "--drop-complete-answer", "2"))
    try:
        site.write(target={**MULTIPART, "request_timeout": 10})
        files = drop_mix(site.outbox, 8)
        with site.daemon() as d:
            finish(site, d, files, 240)
        assert retrying(site), "a fail rate of 0.2 and no retry in the log"
        assert {e.get("vidupd.step") for e in retrying(site)} - {None}, "retries say which step"
    finally:
        site.close()


# -- a bad network in user space (the relay) -----------------------------------------------------

class RelayedSite(FaultSite):
    """The sandbox's VOD and OSS endpoints both behind one Relay (VOD hands out its address)."""

    def __init__(self, root: Path, sandbox_args: tuple[str, ...] = (), **relay: float):
        oss_front = free_port()
        super().__init__(root, ("--oss-endpoint", f"http://127.0.0.1:{oss_front}", *sandbox_args))
        ports = json.loads((self.sandbox.dir / "ports.json").read_text())
        self.relay = Relay("127.0.0.1", "127.0.0.1", {oss_front: ports["oss"], 0: ports["vod"]}, seed=14,
                           **relay)  # type: ignore[arg-type]
        self.front = f"127.0.0.1:{self.relay.port_of[ports['vod']]}"

    def close(self) -> None:
        self.relay.close()
        super().close()


def _partition_campaign(tmp_path: Path, files_n: int, partition_s: float, timeout: float) -> None:
    """Delay, random resets and stalls, and one partition while uploads run."""
    site = RelayedSite(tmp_path, ("--max-rate", "1M"), delay=0.002, drop_rate=0.02)
    try:
        site.write(endpoint=site.front, target={**MULTIPART, "request_timeout": 3},
                   retry="[retry]\nattempts = 30\ninitial_backoff = 0.2\nmax_backoff = 2.0\n")
        first = drop_mix(site.outbox, files_n // 2, "a")
        with site.daemon() as d:
            wait_for(lambda: site.completed(), 120, what="a first upload through the relay")
            site.relay.partition(True)
            later = drop_mix(site.outbox, files_n - files_n // 2, "b")  # queued while cut off
            time.sleep(1.0)  # a chunk already past the relay may still finish an object
            cut = len(site.sandbox.entries())
            time.sleep(partition_s - 1.0)
            assert site.relay.held > 0, "the partition caught no traffic"
            assert len(site.sandbox.entries()) == cut  # nothing got through the blackout
            site.relay.partition(False)
            finish(site, d, first + later, timeout)
        assert retrying(site), "timeouts and resets, and no retry in the log"
        assert site.relay.resets + site.relay.stalls > 0
    finally:
        site.close()


def test_relay_delay_random_drops_and_a_partition(tmp_path):
    _partition_campaign(tmp_path, 10, 8.0, 300)


@pytest.mark.soak
def test_relay_delay_random_drops_and_a_30s_partition_many_files(tmp_path):
    _partition_campaign(tmp_path, 60, 30.0, 900)


# -- a frozen server ---------------------------------------------------------------------------

def test_frozen_server_is_noticed_by_request_timeout_and_recovered_from(tmp_path):
    site = FaultSite(tmp_path, ("--max-rate", "300K"))
    try:
        site.write(target={**MULTIPART, "request_timeout": 3})
        files = drop_mix(site.outbox, 4)
        with site.daemon() as d:
            wait_for(lambda: actions(site.events, "upload.started"), 60, what="uploads under way")
            site.sandbox.proc.send_signal(signal.SIGSTOP)
            site.frozen = True
            before = len(retrying(site))
            wait_for(lambda: len(retrying(site)) > before, 60, what="a timeout noticed while the sandbox is frozen")
            assert any("timed out" in (e.get("vidupd.reason", "") + e["message"]).lower()
                       or "timeout" in (e.get("vidupd.reason_type", "") + e.get("vidupd.reason", "")).lower()
                       for e in retrying(site)[before:]), retrying(site)[before:]
            time.sleep(4)
            site.sandbox.proc.send_signal(signal.SIGCONT)
            site.frozen = False
            finish(site, d, files, 240)
    finally:
        site.close()


# -- as root: a network namespace behind a veth pair -------------------------------------------------

def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


NET = 10 + os.getpid() % 200  # 10.233.NET.0/30


class NetnsSite(FaultSite):
    """The daemon in namespace NS; its 127.0.0.1:PORT reaches the sandbox through a relay in
    the namespace (-> the veth's host address) and one on the host (-> 127.0.0.1)."""

    def __init__(self, root: Path, sandbox_args: tuple[str, ...] = ()):
        super().__init__(root, sandbox_args)
        self.ns = f"vidupd-faults-{os.getpid()}"
        self.host_end, self.ns_end = f"vnf{NET}h", f"vnf{NET}n"
        self.host_addr, self.ns_addr = f"10.233.{NET}.1", f"10.233.{NET}.2"
        self.inner: subprocess.Popen | None = None
        self.outer: Relay | None = None
        ports = list(json.loads((self.sandbox.dir / "ports.json").read_text()).values())
        _ip("netns", "add", self.ns)
        try:
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end)
            _ip("link", "set", self.ns_end, "netns", self.ns)
            _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            for cmd in (("addr", "add", f"{self.ns_addr}/30", "dev", self.ns_end), ("link", "set", self.ns_end, "up"),
                        ("link", "set", "lo", "up")):
                _ip("netns", "exec", self.ns, "ip", *cmd)
            self.outer = Relay(self.host_addr, "127.0.0.1", ports)
            self.inner = subprocess.Popen(["ip", "netns", "exec", self.ns, sys.executable, str(ROOT / "tests" / "tcp_relay.py"),
                                           "127.0.0.1", self.host_addr, *map(str, ports)],
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            assert self.inner.stdout is not None and self.inner.stdout.readline().strip() == "listening"
        except BaseException:
            self.close()
            raise

    def daemon(self) -> DaemonProcess:
        return DaemonProcess(self.config, self.events, command=["ip", "netns", "exec", self.ns, sys.executable, "-m",
                                                                "vidupd"])

    def link(self, up: bool) -> None:
        _ip("link", "set", self.host_end, "up" if up else "down")

    def close(self) -> None:
        if self.inner is not None and self.inner.poll() is None:
            self.inner.kill()
            self.inner.wait(timeout=10)
        if self.outer is not None:
            self.outer.close()
        _ip("netns", "del", self.ns, check=False)
        _ip("link", "del", self.host_end, check=False)
        super().close()


def _need_root_netns() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (network namespaces, veth pairs)")


def _netns_campaign(tmp_path: Path, files_n: int, partition_s: float, timeout: float, netem: bool = False) -> None:
    _need_root_netns()
    site = NetnsSite(tmp_path, ("--max-rate", "1M"))
    try:
        if netem:
            out = _ip("netns", "exec", site.ns, "tc", "qdisc", "add", "dev", site.ns_end, "root", "netem",
                      "delay", "20ms", "5ms", "loss", "2%", check=False)
            if out.returncode != 0:
                pytest.skip(f"no tc netem on this kernel: {out.stderr.strip()}")
        site.write(target={**MULTIPART, "request_timeout": 3},
                   retry="[retry]\nattempts = 30\ninitial_backoff = 0.2\nmax_backoff = 2.0\n")
        first = drop_mix(site.outbox, files_n // 2, "a")
        with site.daemon() as d:
            wait_for(lambda: site.completed(), 120, what="a first upload from the namespace")
            site.link(False)
            later = drop_mix(site.outbox, files_n - files_n // 2, "b")
            time.sleep(1.0)  # what the host relay had already received may still go out
            cut = site.outer.forwarded if site.outer else 0
            time.sleep(partition_s - 1.0)
            assert site.outer is not None and site.outer.forwarded == cut  # the link was down: nothing passed
            site.link(True)
            finish(site, d, first + later, timeout)
        assert retrying(site)
    finally:
        site.close()


def test_netns_partition_by_link_down(tmp_path):
    _netns_campaign(tmp_path, 8, 8.0, 300)


@pytest.mark.soak
def test_netns_30s_partition_many_files(tmp_path):
    _netns_campaign(tmp_path, 40, 30.0, 900)


def test_netns_with_netem_loss_and_delay(tmp_path):
    """Uses netem when the kernel has it (`tc qdisc ... netem`); skipped, saying so, when not."""
    _netns_campaign(tmp_path, 6, 5.0, 300, netem=True)
