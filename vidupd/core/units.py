"""The one unit system for what people read: SI bytes and bytes per second (1 kB = 1000 B,
1 MB = 10^6 B), in `status`, the STATUS= line, the one-shot progress bar and the events'
`bytes_per_second`, as `max_rate = "10M"` reads (10^6 bytes/s per M); and the one duration
parser (`parse_duration`, humanfriendly's unit names) for every config key in seconds or
days and `status --since`."""

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


DAY = 86400.0  # seconds: the unit of a bare `retain_days` number


def parse_duration(text: str | int | float, unit: float = 1.0) -> float:
    """A duration as people write it -> seconds: "10s", "2m", "1h30m", "1.5h", "90d", "1w"
    (humanfriendly's unit names, parts added up), or a bare number of `unit` seconds (1: a
    plain number stays seconds). ValueError saying what is wrong, never a guess."""
    from humanfriendly import InvalidTimespan, parse_timespan
    from humanfriendly.text import tokenize

    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) * unit
    bare = "seconds" if unit == 1 else "days" if unit == DAY else f"{unit:g}-second units"
    example = f'e.g. "90s", "2m", "1h30m", "2d", or a number of {bare}'
    if not isinstance(text, str):
        raise ValueError(f"not a duration: {text!r} ({example})")
    tokens = tokenize(text.strip())
    if len(tokens) == 1 and isinstance(tokens[0], (int, float)):
        return float(tokens[0]) * unit
    pairs = list(zip(tokens[0::2], tokens[1::2]))
    if not tokens or len(tokens) % 2 or not all(isinstance(n, (int, float)) and isinstance(u, str) for n, u in pairs):
        raise ValueError(f"not a duration: {text!r} ({example})")
    try:
        return sum(parse_timespan(f"{n}{u}") for n, u in pairs)
    except InvalidTimespan:
        raise ValueError(f"not a duration: {text!r} (unknown unit; {example})") from None
