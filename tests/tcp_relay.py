"""A plain TCP relay for the network-namespace test: listens on LISTEN_HOST:PORT for each
port and copies both ways to TO_HOST:PORT, counting the bytes it carried towards TO_HOST.

The sandboxes bind loopback only and name 127.0.0.1 in the addresses they hand out (OSS
endpoints, upload servers); a daemon in its own network namespace reaches them through two
relays on the same ports: one inside the namespace (127.0.0.1 -> the host's veth address)
and one on the host (that veth address -> 127.0.0.1). As a script:

    python tests/tcp_relay.py LISTEN_HOST TO_HOST PORT [PORT ...]
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Iterable


class Relay:
    """Threads only: one accept loop per port, two copy threads per connection."""

    def __init__(self, listen_host: str, to_host: str, ports: Iterable[int]):
        self.to_host = to_host
        self.forwarded = 0  # bytes carried towards to_host (request bodies, mostly)
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._stopped = threading.Event()
        for port in ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((listen_host, port))
            s.listen(128)
            self._listeners.append(s)
            threading.Thread(target=self._accept, args=(s, port), daemon=True).start()

    def _accept(self, listener: socket.socket, port: int) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((self.to_host, port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._copy, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._copy, args=(upstream, client, False), daemon=True).start()

    def _copy(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
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
        for s in self._listeners:
            s.close()


if __name__ == "__main__":
    relay = Relay(sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]])
    print("listening", flush=True)
    threading.Event().wait()
