"""The one unit system for what people read: SI bytes and bytes per second (1 kB = 1000 B,
1 MB = 10^6 B), in `status`, the STATUS= line, the one-shot progress bar and the events'
`bytes_per_second`, as `max_rate = "10M"` reads (10^6 bytes/s per M)."""

from __future__ import annotations


def human_rate(bps: float) -> str:
    """999 B/s, 12.3 kB/s, 4.0 MB/s."""
    for unit in ("B/s", "kB/s", "MB/s", "GB/s"):
        if bps < 1000 or unit == "GB/s":
            return f"{bps:.1f} {unit}" if unit != "B/s" else f"{bps:.0f} {unit}"
        bps /= 1000
    return ""


def human_bytes(n: float) -> str:
    """999 B, 12.3 kB, 4.0 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} {unit}"
        n /= 1000
    return ""
