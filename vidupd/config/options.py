"""Every key of the daemon's config, defined once: the loader reads each table through these
definitions (type, default, allowed values) and `vidupd config-reference` renders them, with
each provider's own `Option`s, into docs/CONFIG.md. A key the loader takes that is not here
is a defect (tests/test_config_reference.py finds it)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from ..core.console import FORMATS
from ..core.units import DAY
from ..ledger.claim_order import DEFAULT_ORDER, ORDERS
from ..ledger.location import DEFAULT_LEASE
from ..providers.base import REQUIRED, Option
from .model import AFTER_UPLOAD, LEVELS, NOTIFY_EVENTS, RETAIN_DAYS, STOP_TIMEOUT, WATCH_KINDS

SECONDS = 1.0  # Option(duration=SECONDS): a bare number is seconds


@dataclass(frozen=True)
class Section:
    """One table of the config file: the key it sits under ("" for the top level), how it is
    written, what it is for, and its keys."""

    key: str
    title: str
    help: str
    options: Mapping[str, Option]


def _table(**options: Option) -> Mapping[str, Option]:
    return MappingProxyType(options)


TOP = Section("", "Top level", "The daemon as a whole: where its state lives and how much it does at once.", _table(
    state_dir=Option(str, REQUIRED, help="folder of the ledger (SQLite), resume checkpoints and refreshed tokens; "
                     "made 0700; must not be inside a watched folder nor contain one"),
    workers=Option(int, 2, minimum=1, maximum=64, help="uploads running at once, over every target"),
    max_rate=Option((int, str), None, help="bandwidth cap shared fairly by all uploads, bytes per second: "
                    "\"10M\", \"10MB/s\", \"10mb\" (SI, 10^6 B/s), \"8MiB/s\" (binary, 2^20), \"80Mbit/s\" or "
                    "\"80Mbps\" (bits), a number of bytes/s, \"off\"; or an rclone-style timetable in local time, "
                    "\"08:00,10M 19:00,off Mon-08:00,5M\" (the latest entry before now is in force); "
                    "`vidupd limit` overrides it; unset: no cap"),
    rescan_interval=Option(float, 300.0, minimum=1, duration=SECONDS,
                           help="full rescan of every watched folder (catches what inotify missed)"),
    skip_duplicates=Option(bool, True, help="content already uploaded under another name is not uploaded again "
                           "(upload.skipped names the remote id it has)"),
    stop_timeout=Option(float, STOP_TIMEOUT, positive=True, maximum=3600, duration=SECONDS,
                        help="on SIGTERM, how long running uploads get to checkpoint before the daemon exits "
                        "without them; keep it below systemd's TimeoutStopSec"),
    retain_days=Option(float, RETAIN_DAYS, minimum=0, duration=DAY,
                       help="finished jobs older than this are pruned from the ledger once their file has left "
                       "the watched folder (a bare number is days; 0: keep every job)"),
    order=Option(str, DEFAULT_ORDER, choices=ORDERS,
                 help="which waiting job of equal priority goes first: oldest (queued first), smallest, largest "
                 "or name (path order); applies to every waiting job at once"),
))

RETRY = Section("retry", "[retry]", "How often and how patiently a failing job is tried again.", _table(
    attempts=Option(int, 8, minimum=1, help="tries per job before it is marked failed (`vidupd retry --failed`)"),
    initial_backoff=Option(float, 2.0, positive=True, duration=SECONDS,
                           help="first wait between tries; doubled each time, with full jitter"),
    max_backoff=Option(float, 300.0, positive=True, duration=SECONDS,
                       help="cap of one wait; not less than initial_backoff (unset: at least initial_backoff)"),
))

LOG = Section("log", "[log]", "The event log: one JSON object per line (ECS field names).", _table(
    events=Option(str, "-", help="file the events are appended to (its folder is created); \"-\": stdout. "
                  "check-config refuses a path that cannot be created or written"),
    level=Option(str, "info", choices=LEVELS, help="lowest level logged"),
    format=Option(str, "auto", choices=FORMATS, help="auto: a readable line per event on a terminal, JSON "
                  "everywhere else; json: always JSON; console: always readable"),
))

METRICS = Section("metrics", "[metrics]", "Prometheus metrics on /metrics and a health check on /healthz.", _table(
    listen=Option(str, None, help="HOST:PORT to serve on, e.g. \"127.0.0.1:9464\", \"[::1]:9464\", \":9464\" "
                  "(every IPv4 interface); unset: off"),
))

NOTIFY = Section("notify", "[[notify]]", "Webhooks: chosen events POSTed as JSON to a URL (repeat the table "
                 "for more receivers).", _table(
    url=Option(str, REQUIRED, help="http:// or https:// URL the events are POSTed to"),
    events=Option((list, str), NOTIFY_EVENTS, help="event actions sent (notify.* events are never sent)"),
    secret=Option(str, None, secret=True, help="signs each body with HMAC-SHA256 (X-Vidupd-Signature-256); "
                  "unset: unsigned"),
    timeout=Option(float, 10.0, positive=True, maximum=300, duration=SECONDS, help="per request"),
    attempts=Option(int, 5, minimum=1, maximum=100, help="tries per notification, with backoff, before "
                    "notify.failed"),
    queue=Option(int, 1000, minimum=1, maximum=1_000_000, help="notifications waiting at most; more are dropped "
                 "(uploads never wait for webhooks)"),
))

LEDGER = Section("ledger", "[ledger]", "Where the ledger lives: SQLite under state_dir unless `url` is set; a "
                 "PostgreSQL ledger is shared by every host pointed at it (several hosts on one outbox).", _table(
    url=Option(str, None, help="postgresql://USER@HOST[:PORT]/DATABASE (libpq URL; parameters such as sslmode "
               "allowed), without a password; unset: SQLite under state_dir"),
    password=Option(str, None, secret=True, help="the PostgreSQL role's password (only with url); read by "
                    "`status` too; unset: libpq's PGPASSWORD or ~/.pgpass"),
    lease=Option(float, DEFAULT_LEASE, minimum=2, maximum=3600, duration=SECONDS,
                 help="how long a claimed job stays this host's without a renewal (renewed every quarter of it); "
                 "a host that cannot renew for half of it stops its uploads, and once it has run out another "
                 "host resumes the job: shorter means a faster takeover, longer rides out a longer outage of "
                 "the ledger; the same on every host of one ledger"),
))

WATCH = Section("watch", "[[watch]]", "A watched folder (repeat the table for more). A file is taken once its size "
                "and mtime have been still for settle_seconds; hidden and temporary names are never taken.", _table(
    path=Option(str, REQUIRED, help="the folder (relative paths: to the config file's folder)"),
    targets=Option((list, str), REQUIRED, help="names of [targets.NAME] tables every file goes to; each once"),
    include=Option((list, str), ("*",), help="file name patterns taken"),
    exclude=Option((list, str), (), help="patterns never taken (relative paths, e.g. \"drafts/*\"), besides the "
                   "built-in temporary names"),
    recursive=Option(bool, False, help="also watch sub-folders"),
    settle_seconds=Option(float, 10.0, minimum=0, duration=SECONDS,
                          help="how long size and mtime must stay still before a file is taken"),
    after_upload=Option(str, "keep", choices=AFTER_UPLOAD, help="what happens to the file once every target "
                        "has it"),
    move_to=Option(str, None, help="folder files are moved to; required with after_upload = \"move\""),
    poll=Option(bool, False, help="poll instead of inotify (NFS/SMB shares changed by other hosts)"),
    poll_interval=Option(float, 5.0, positive=True, duration=SECONDS, help="time between polls"),
    ready_marker=Option(str, None, help="suffix of a marker file, e.g. \".done\": NAME is taken only once "
                        "NAME.done exists"),
    kind=Option(str, "auto", choices=WATCH_KINDS, help="what the files are; auto: by extension"),
    priority=Option(int, 0, minimum=-1_000_000, maximum=1_000_000,
                    help="jobs of a watch with a higher priority are sent first; recorded when a job is queued "
                    "(a change applies to jobs queued after the reload; `vidupd prioritize` changes waiting ones)"),
))

TARGET = Section("targets", "[targets.NAME]", "A platform account files are sent to. These keys are common to "
                 "every provider; the provider's own follow below.", _table(
    provider=Option(str, REQUIRED, help="which backend: youku, aliyun-vod, directory or null"),
    wait_ready=Option(bool, True, help="after upload, poll the platform until the media is playable (media.ready)"),
    ready_timeout=Option(float, 7200.0, positive=True, duration=SECONDS,
                         help="how long media may stay processing before it counts as failed"),
    max_rate=Option((int, str), None, help="this target's bandwidth cap, in the forms of the top-level "
                    "max_rate (a rate or a timetable), under the global one; unset: only the global cap"),
    workers=Option(int, None, minimum=1, maximum=64,
                   help="uploads to this target at once, under the global workers (unset: the global value), "
                   "so a slow platform cannot occupy every worker"),
))

# The tables in the order of the file and the reference; the top level's own keys come first.
SECTIONS: tuple[Section, ...] = (TOP, RETRY, LOG, METRICS, NOTIFY, LEDGER, WATCH, TARGET)
TOP_KEYS = frozenset(TOP.options) | {s.key for s in SECTIONS if s.key}
