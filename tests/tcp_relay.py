"""A TCP relay between a client and the sandbox: listens on LISTEN_HOST for each port and
copies both ways to TO_HOST, counting the bytes it carried towards TO_HOST; optionally a bad
network in user space (this machine's kernel has no netem qdisc, and no iptables):

- `delay`: seconds added before each chunk is passed on (latency, both ways);
- `drop_rate`: per chunk, the chance that its connection is reset (RST, as a dying NAT
  does) or stalled (nothing more passes, the socket stays open: only a timeout notices);
- `partition(True)`: a blackout: nothing passes and nothing is closed (new connections are
  accepted, then held) until `partition(False)`, when what was held goes on, as TCP's
  retransmissions would carry it over a link that came back.

`ports` is a list (each port relayed to the same port: the network-namespace tests, where the
sandboxes' addresses must keep their ports) or a mapping {listen port: to port} (listen port
0: any free one; `port_of[to port]` says which).

The sandboxes bind loopback only and name 127.0.0.1 in the addresses they hand out (OSS
endpoints, upload servers); a daemon in its own network namespace reaches them through two
relays on the same ports: one inside the namespace (127.0.0.1 -> the host's veth address)
and one on the host (that veth address -> 127.0.0.1). As a script:

    python tests/tcp_relay.py LISTEN_HOST TO_HOST PORT [PORT ...]
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
import time
from typing import Iterable, Mapping

STALL_LIMIT = 300.0  # seconds a stalled connection is held at most (the client's timeout ends it sooner)


class Relay:
    """Threads only: one accept loop per port, two copy threads per connection."""

    def __init__(self, listen_host: str, to_host: str, ports: Iterable[int] | Mapping[int, int], *,
                 delay: float = 0.0, drop_rate: float = 0.0, seed: int | None = None):
        self.to_host = to_host
        self.delay = delay
        self.drop_rate = drop_rate
        self.forwarded = 0  # bytes carried towards to_host (request bodies, mostly)
        self.connections = 0
        self.resets = 0  # connections reset on purpose (drop_rate)
        self.stalls = 0  # connections stalled on purpose (drop_rate)
        self.held = 0  # chunks or connections that waited for a partition to end
        self.port_of: dict[int, int] = {}  # to port -> the port this relay listens on for it
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._stopped = threading.Event()
        self._open = threading.Event()  # cleared during a partition
        self._open.set()
        pairs = ports.items() if isinstance(ports, Mapping) else ((p, p) for p in ports)
        for listen_port, to_port in pairs:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((listen_host, listen_port))
            s.listen(128)
            self.port_of[to_port] = s.getsockname()[1]
            self._listeners.append(s)
            threading.Thread(target=self._accept, args=(s, to_port), daemon=True).start()

    # -- faults --------------------------------------------------------------------------------
    def partition(self, on: bool = True) -> None:
        """Black out (True) or heal (False) every connection, open or new, without closing any."""
        if on:
            self._open.clear()
        else:
            self._open.set()

    @property
    def partitioned(self) -> bool:
        return not self._open.is_set()

    def _pass(self) -> bool:
        """Wait out a partition (bounded by close()); False once the relay is closed."""
        if not self._open.is_set():
            with self._lock:
                self.held += 1
            while not self._open.wait(0.2):
                if self._stopped.is_set():
                    return False
        return not self._stopped.is_set()

    def _roll(self) -> str | None:
        if self.drop_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.drop_rate:
                return None
            fault = "reset" if self._rng.random() < 0.5 else "stall"
            if fault == "reset":
                self.resets += 1
            else:
                self.stalls += 1
            return fault

    # -- plumbing ------------------------------------------------------------------------------
    def _accept(self, listener: socket.socket, port: int) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connect, args=(client, port), daemon=True).start()

    def _connect(self, client: socket.socket, port: int) -> None:
        if not self._pass():  # a partition: the connection is accepted, then nothing happens
            client.close()
            return
        try:
            upstream = socket.create_connection((self.to_host, port), timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        with self._lock:
            self.connections += 1
        threading.Thread(target=self._copy, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._copy, args=(upstream, client, False), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if not self._pass():
                    break
                if self.delay > 0:
                    time.sleep(self.delay)
                fault = self._roll()
                if fault == "reset":
                    for s in (src, dst):  # RST, not FIN: SO_LINGER 0
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    dst.close()
                    break
                if fault == "stall":
                    self._stopped.wait(STALL_LIMIT)  # holds both ends open; the client gives up first
                    break
                dst.sendall(data)
                if count:
                    with self._lock:
                        self.forwarded += len(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()

    def close(self) -> None:
        self._stopped.set()
        self._open.set()
        for s in self._listeners:
            s.close()


if __name__ == "__main__":
    relay = Relay(sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]])
    print("listening", flush=True)
    threading.Event().wait()
