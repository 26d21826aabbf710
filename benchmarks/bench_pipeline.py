#!/usr/bin/env python3
"""Pipeline throughput: N small files dropped into a watched folder, through watcher ->
ledger -> pool -> the `null` provider -> event log, with the real daemon in a subprocess.

Prints per run: seconds from the first drop to the last `upload.completed`, files/s, the
daemon's peak RSS (VmHWM) and its CPU seconds; then medians. Target (issue 2): 10,000
files in under 60 s, peak RSS under 150 MiB, on the 2-core CI machine.

    .venv/bin/python benchmarks/bench_pipeline.py [--files 10000] [--runs 3] [--workers 4]
    .venv/bin/python benchmarks/bench_pipeline.py --observability   # issue 11: off vs on, same run
    .venv/bin/python benchmarks/bench_pipeline.py --ledger postgresql://vidupd@db/vidupd   # issue 13
    .venv/bin/python benchmarks/bench_pipeline.py --ledger pg   # a throwaway server (tests/pg_server.py)
    .venv/bin/python benchmarks/bench_pipeline.py --ledger both   # SQLite vs a throwaway server, alternating

With --observability every run is made twice, alternating: as above, and with `[metrics]
listen` scraped every second plus a `[[notify]]` webhook for every upload.completed to a
receiver on loopback (answering 204); it prints both medians and their ratio.

With --ledger the daemon's ledger is PostgreSQL instead of SQLite under the state dir: each
run gets a new schema in that database (created with the URL's role, which needs CREATE
there; dropped after the run), so runs start empty. A password in the URL is handed to the
daemon as `[ledger] password` from the environment (the config refuses one in the URL).
`--ledger pg` starts a throwaway server on loopback for the benchmark, as the tests do.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import add_json_option, emit_summary  # noqa: E402


def count_completed(events: Path, state: dict) -> int:
    """Count upload.completed lines, reading only what was appended since last time."""
    try:
        with open(events, "rb") as f:
            f.seek(state.get("pos", 0))
            data = f.read()
    except FileNotFoundError:
        return 0
    cut = data.rfind(b"\n") + 1
    state["pos"] = state.get("pos", 0) + cut
    state["n"] = state.get("n", 0) + data[:cut].count(b'"event.action": "upload.completed"')
    return state["n"]


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its live children and the children it has reaped (a
    PostgreSQL server: the postmaster, its backends, and backends that have exited)."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            total += sum(cpu_seconds(int(child)))
        except (FileNotFoundError, ProcessLookupError):
            pass  # exited meanwhile: counted in cutime from now on
    return total


class _Observer:
    """A webhook receiver and a /metrics scraper on loopback, counting what they saw."""

    def __init__(self) -> None:
        import socket
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received = 0
        self.scrapes = 0
        outer = self

        class Hook(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real receivers (nginx, Slack, ...) answer

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.received += 1
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.metrics_port = sock.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._scrape, daemon=True).start()

    def config(self) -> str:
        return (f'[metrics]\nlisten = "127.0.0.1:{self.metrics_port}"\n[[notify]]\n'
                f'url = "http://127.0.0.1:{self.server.server_address[1]}/hook"\nevents = ["upload.completed"]\n'
                'queue = 100000\n')

    def _scrape(self) -> None:
        import urllib.request

        while not self._stop.wait(1.0):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                    r.read()
                self.scrapes += 1
            except OSError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


class _PgLedgers:
    """A new, empty PostgreSQL ledger (a schema) per run, on a given server or a throwaway one."""

    PASSWORD_ENV = "VIDUPD_BENCH_PG_PASSWORD"

    def __init__(self, spec: str):
        from urllib.parse import urlsplit

        self.server = None
        if spec == "pg":
            sys.path.insert(0, str(ROOT / "tests"))
            import pg_server

            self.server = pg_server.start()
            if self.server is None:
                raise SystemExit(pg_server.SKIP_REASON)
            self.url, self.password = self.server.url(), self.server.password
        else:  # the password goes to the daemon as [ledger] password (the config refuses one in the URL)
            sys.path.insert(0, str(ROOT))
            from vidupd.ledger.location import scrub_url

            self.url, self.password = scrub_url(spec), urlsplit(spec).password
        self.schemas = 0

    def _admin(self):
        import psycopg

        return psycopg.connect(self.url, password=self.password, autocommit=True, connect_timeout=10)

    def new(self) -> tuple[str, str, dict[str, str]]:
        """(schema, the config's [ledger] table for it, the daemon's environment)."""
        from urllib.parse import quote

        self.schemas += 1
        schema = f"vidupd_bench_{os.getpid()}_{self.schemas}"
        with self._admin() as db:
            db.execute(f"CREATE SCHEMA {schema}")
        url = f"{self.url}{'&' if '?' in self.url else '?'}options={quote(f'-csearch_path={schema}')}"
        table = f'\n[ledger]\nurl = "{url}"\n'
        env = {}
        if self.password:
            table += f'password = {{ env = "{self.PASSWORD_ENV}" }}\n'
            env[self.PASSWORD_ENV] = self.password
        return schema, table, env

    def drop(self, schema: str) -> None:
        with self._admin() as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()

    def server_cpu(self) -> float | None:
        """The throwaway server's CPU seconds so far (None for a server elsewhere)."""
        if self.server is None:
            return None
        return tree_cpu_seconds(int((self.server.data / "postmaster.pid").read_text().split()[0]))


LEDGERS: "_PgLedgers | None" = None  # --ledger: PostgreSQL; None: SQLite under the state dir


def one_run(files: int, workers: int, size: int, observe: bool = False, pg: bool = True) -> dict:
    observer = _Observer() if observe else None
    ledgers = LEDGERS if pg else None
    schema, ledger, env = ledgers.new() if ledgers else (None, "", {})
    server_before = ledgers.server_cpu() if ledgers else None
    try:
        result = _one_run(files, workers, size, (observer.config() if observer else "") + ledger, env)
        if ledgers and server_before is not None:
            time.sleep(1.0)  # the daemon's connections closed: their backends exit and are reaped
            result["server_cpu_s"] = ledgers.server_cpu() - server_before
    finally:
        if observer is not None:
            observer.close()
        if ledgers and schema:
            ledgers.drop(schema)
    if observer is not None:
        result.update(notified=observer.received, scrapes=observer.scrapes)
    return result


def _one_run(files: int, workers: int, size: int, extra: str, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="vidupd-bench-") as tmp:
        root = Path(tmp)
        outbox, state, events = root / "outbox", root / "state", root / "events.jsonl"
        outbox.mkdir()
        cfg = root / "vidupd.toml"
        cfg.write_text(f"""
state_dir = "{state}"
workers = {workers}
[log]
events = "{events}"
[targets.null]
provider = "null"
wait_ready = false
[[watch]]
path = "{outbox}"
targets = ["null"]
settle_seconds = 1
{extra}""")
        proc = subprocess.Popen([sys.executable, "-m", "vidupd", "run", "-c", str(cfg)], cwd=ROOT,
                                env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while b"daemon.started" not in (events.read_bytes() if events.exists() else b""):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"daemon did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.05)
        payload = os.urandom(size)
        t0 = time.monotonic()
        for i in range(files):
            tmpf = outbox / f".clip{i:06d}.mp4.part"
            with open(tmpf, "wb") as f:
                f.write(i.to_bytes(8, "big") + payload)
            os.rename(tmpf, outbox / f"clip{i:06d}.mp4")
        dropped = time.monotonic() - t0
        st: dict = {}
        limit = time.monotonic() + 600
        while count_completed(events, st) < files:
            if time.monotonic() > limit or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"only {st.get('n', 0)} of {files} completed")
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        rss = vm_hwm_kib(proc.pid)
        user, system = cpu_seconds(proc.pid)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        return {"seconds": elapsed, "files_per_s": files / elapsed, "drop_seconds": dropped,
                "peak_rss_mib": rss / 1024, "daemon_cpu_s": user + system, "user_s": user, "sys_s": system,
                "cpu_ms_per_file": 1000 * (user + system) / files, "exit": rc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096, help="bytes per file")
    ap.add_argument("--observability", action="store_true", help="also with metrics scraped and a webhook, alternating")
    ap.add_argument("--ledger", default="sqlite",
                    help="sqlite (default: under the state dir), a postgresql:// URL (a new schema per run, "
                         "dropped after), pg: a throwaway PostgreSQL server on loopback (tests/pg_server.py), "
                         "or both: SQLite and a throwaway server alternately, compared")
    add_json_option(ap)
    args = ap.parse_args()
    global LEDGERS
    if args.ledger != "sqlite":
        if args.ledger not in ("pg", "both") and not args.ledger.startswith(("postgresql://", "postgres://")):
            ap.error("--ledger: sqlite, pg or a postgresql:// URL")
        LEDGERS = _PgLedgers("pg" if args.ledger == "both" else args.ledger)
    try:
        if args.ledger == "both":
            return compare_ledgers(args)
        if args.observability:
            return compare(args)
        return _measure(args)
    finally:
        if LEDGERS is not None:
            LEDGERS.close()


def _measure(args: argparse.Namespace) -> None:
    results = []
    for n in range(args.runs):
        r = one_run(args.files, args.workers, args.size)
        results.append(r)
        print(f"run {n + 1}: {r['seconds']:.1f} s for {args.files} files = {r['files_per_s']:.0f} files/s "
              f"(dropping took {r['drop_seconds']:.1f} s); peak RSS {r['peak_rss_mib']:.1f} MiB; "
              f"daemon CPU {r['daemon_cpu_s']:.1f} s (user {r['user_s']:.1f}, sys {r['sys_s']:.1f}; "
              f"{r['cpu_ms_per_file']:.2f} ms/file); exit {r['exit']}", flush=True)
    med = {k: statistics.median(r[k] for r in results)
           for k in ("seconds", "files_per_s", "peak_rss_mib", "daemon_cpu_s", "cpu_ms_per_file")}
    emit_summary({"files": args.files, "runs": args.runs, "workers": args.workers, "ledger": args.ledger if
                  args.ledger in ("sqlite", "pg") else "postgresql", "median": med,
                  "max_peak_rss_mib": max(r["peak_rss_mib"] for r in results)}, args.json)
    print(f"median: {med['seconds']:.1f} s ({med['files_per_s']:.0f} files/s; target < 60 s -> "
          f"{60 / med['seconds']:.1f}x margin), peak RSS {med['peak_rss_mib']:.1f} MiB (target < 150 MiB)")


def compare(args: argparse.Namespace) -> None:
    """Off and on alternately, so the machine's load drifts over both alike."""
    runs: dict[bool, list[dict]] = {False: [], True: []}
    for n in range(args.runs):
        for observe in (False, True):
            r = one_run(args.files, args.workers, args.size, observe)
            runs[observe].append(r)
            extra = f"; {r['notified']} webhook POSTs received, {r['scrapes']} scrapes" if observe else ""
            print(f"run {n + 1} {'on ' if observe else 'off'}: {r['seconds']:.1f} s = {r['files_per_s']:.0f} files/s; "
                  f"peak RSS {r['peak_rss_mib']:.1f} MiB; daemon CPU {r['daemon_cpu_s']:.1f} s{extra}", flush=True)
    med = {o: {k: statistics.median(r[k] for r in rs) for k in ("seconds", "peak_rss_mib", "daemon_cpu_s")}
           for o, rs in runs.items()}
    emit_summary({"files": args.files, "runs": args.runs, "off": med[False], "on": med[True]}, args.json)
    print(f"metrics + webhook vs off: wall x{med[True]['seconds'] / med[False]['seconds']:.2f}, "
          f"CPU x{med[True]['daemon_cpu_s'] / med[False]['daemon_cpu_s']:.2f}, "
          f"peak RSS {med[True]['peak_rss_mib'] - med[False]['peak_rss_mib']:+.1f} MiB")


def compare_ledgers(args: argparse.Namespace) -> None:
    """SQLite and PostgreSQL alternately (issue 13: the shared ledger's cost per file). The
    PostgreSQL side's cost is the daemon's CPU plus the server's (its backends included),
    as both run on one machine here."""
    runs: dict[str, list[dict]] = {"sqlite": [], "postgresql": []}
    for n in range(args.runs):
        for name in runs:
            r = one_run(args.files, args.workers, args.size, pg=name == "postgresql")
            r["total_cpu_s"] = r["daemon_cpu_s"] + r.get("server_cpu_s", 0.0)
            runs[name].append(r)
            server = f", server {r['server_cpu_s']:.1f} s" if "server_cpu_s" in r else ""
            print(f"run {n + 1} {name:10}: {r['seconds']:.1f} s = {r['files_per_s']:.0f} files/s; peak RSS "
                  f"{r['peak_rss_mib']:.1f} MiB; daemon CPU {r['daemon_cpu_s']:.1f} s{server}", flush=True)
    keys = ("seconds", "files_per_s", "peak_rss_mib", "daemon_cpu_s", "total_cpu_s")
    med = {name: {k: statistics.median(r[k] for r in rs) for k in keys} for name, rs in runs.items()}
    per_file = {name: {k: 1000 * med[name][k] / args.files for k in ("daemon_cpu_s", "total_cpu_s")}
                for name in runs}
    emit_summary({"files": args.files, "runs": args.runs, "median": med, "cpu_ms_per_file": per_file}, args.json)
    daemon = per_file["postgresql"]["daemon_cpu_s"] - per_file["sqlite"]["daemon_cpu_s"]
    total = per_file["postgresql"]["total_cpu_s"] - per_file["sqlite"]["total_cpu_s"]
    print(f"PostgreSQL vs SQLite, medians of {args.runs}: wall x{med['postgresql']['seconds'] / med['sqlite']['seconds']:.2f}; "
          f"CPU per file {daemon:+.2f} ms in the daemon, {total:+.2f} ms with the server's (target <= 5 ms)")


if __name__ == "__main__":
    main()
