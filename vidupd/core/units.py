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


# -- reading rates people write -------------------------------------------------------------
# Byte prefixes as humanfriendly reads them: k M G T are SI (10^3 steps), Ki Mi Gi Ti binary
# (2^10 steps); a trailing B or b means bytes, `bit`/`bits`/`bps` means bits (divided by 8).
_PREFIXES = ("", "k", "m", "g", "t", "ki", "mi", "gi", "ti")
OFF_WORDS = ("off", "0")
RATE_FORMS = '10M, 10MB/s or 10mb (10^6 bytes/s), 10MiB/s (2^20), 80Mbit/s or 80Mbps (bits), 1000000, "off"'


def parse_rate(text: str | int) -> int | None:
    """Bytes per second from `10M`, `10MB/s`, `10mb` (SI: 10^6), `10MiB/s` (binary: 2^20),
    `80Mbit/s` / `80Mbps` (bits: 10^7 bytes/s), a plain number (bytes/s); None for `off`
    or 0 (no cap). ValueError says what was wrong. The number goes through humanfriendly;
    the unit is checked here first, since humanfriendly alone reads "10MX" as 10M and
    "80Mbit" as 80 megabytes."""
    import humanfriendly  # imported when a rate is read, not by every module of core
    from humanfriendly.text import tokenize

    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ValueError(f"must be a rate such as {RATE_FORMS}, not {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"must not be negative ({text})")
        return text or None
    raw = text.strip()
    if raw.lower() in OFF_WORDS:
        return None
    tokens = tokenize(raw.replace(" ", ""))
    if not tokens or not isinstance(tokens[0], (int, float)) or len(tokens) > 2:
        raise ValueError(f"{text!r} is not a rate: give a number and a unit, such as {RATE_FORMS}")
    number, unit = tokens[0], (tokens[1] if len(tokens) == 2 else "")
    word = unit.lower().removesuffix("/s")
    bits = False
    for suffix in ("bps", "bits", "bit"):
        if word.endswith(suffix):
            word, bits = word[:-len(suffix)], True
            break
    else:
        word = word.removesuffix("b") if word not in ("", "b") else ""
    if word not in _PREFIXES:
        raise ValueError(f"{text!r}: unknown unit {unit!r} (rates read like {RATE_FORMS})")
    size = humanfriendly.parse_size(f"{number}{word.upper().replace('I', 'i')}B" if word else str(number))
    value = int(size / 8) if bits else int(size)
    if value <= 0:
        raise ValueError(f"{text!r} is less than one byte per second (\"off\" means no cap)")
    return value

