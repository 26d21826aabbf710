#!/usr/bin/env python3
"""Where the PostgreSQL ledger's server time goes: one bench_pipeline run on a throwaway
server with pg_stat_statements, then the top statements (by total execution time and by
calls, both per file), the transactions per file, and the jobs table's scan and update
counts (HOT or not), read before the run's schema is dropped.

    .venv/bin/python benchmarks/pg_profile.py [--files 1000] [--top 25] [--workers 4]

Needs the pg_stat_statements module (Debian's postgresql package has it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import bench_pipeline  # noqa: E402

SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all",
            "pg_stat_statements.max": "10000", "pg_stat_statements.track_planning": "on", "track_functions": "all"}


def report(db, files: int, top: int) -> None:
    def q(sql: str) -> list:
        return db.execute(sql).fetchall()

    (commits, rollbacks), = q("SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname='postgres'")
    total_ms, calls = q("SELECT sum(total_exec_time), sum(calls) FROM pg_stat_statements")[0]
    print(f"transactions: {commits} commits, {rollbacks} rollbacks = {(commits + rollbacks) / files:.1f} per file; "
          f"statements: {calls} = {calls / files:.1f} per file; execution {total_ms / 1000:.1f} s = "
          f"{total_ms / files:.2f} ms per file (planning not included)")
    cols = ("SELECT calls, total_exec_time, total_plan_time, rows, shared_blks_hit, "
            "regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements")
    for title, order in (("by total execution time", "total_exec_time"), ("by calls", "calls")):
        print(f"\ntop {top} {title}:  calls/file  exec ms/file  plan ms/file  ms/call  rows/call  blks/call  query")
        for calls_, exec_ms, plan_ms, rows, blks, query in q(f"{cols} ORDER BY {order} DESC LIMIT {top}"):
            print(f"  {calls_ / files:8.2f} {exec_ms / files:10.3f} {plan_ms / files:10.3f} {exec_ms / calls_:8.3f} "
                  f"{rows / calls_:8.1f} {blks / calls_:8.1f}  {query[:200]}")
    print("\ntables: seq_scan seq_tup_read idx_scan n_tup_ins n_tup_upd n_tup_hot_upd n_dead_tup autovacuum autoanalyze")
    for row in q("SELECT relname, seq_scan, seq_tup_read, idx_scan, n_tup_ins, n_tup_upd, n_tup_hot_upd, "
                 "n_dead_tup, autovacuum_count, autoanalyze_count FROM pg_stat_user_tables "
                 "WHERE schemaname LIKE 'vidupd_bench%' ORDER BY relname"):
        print("  ", *row)
    print("\nindexes: idx_scan idx_tup_read")
    for row in q("SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes "
                 "WHERE schemaname LIKE 'vidupd_bench%' ORDER BY idx_scan DESC"):
        print("  ", *row)


# Queries whose plan depends on the table's statistics (every bench file has one size)
PLANS = {
    "done": ("SELECT * FROM jobs WHERE target=$1 AND size=$2 AND id<>$3 AND md5=$4 AND remote_id IS NOT NULL "
             "AND state IN ('done','committed') ORDER BY id LIMIT 1", "target, size, id, md5"),
    "busy": ("SELECT * FROM jobs WHERE target=$1 AND size=$2 AND id<>$3 AND state='uploading' AND md5 IN ($4, 'x') "
             "ORDER BY md5='x', id LIMIT 1", "target, size, id, md5"),
    "conflict": ("SELECT id FROM jobs WHERE target=$1 AND remote_id=$2 AND id<>$3 AND state<>'skipped' AND NOT "
                 "(md5 IS NOT NULL AND md5<>'' AND md5=$4 AND size=$5) LIMIT 1", "target, remote_id, id, md5, size"),
    "moved": ("SELECT * FROM jobs WHERE target=$1 AND dev=$2 AND inode=$3 AND size=$4 AND mtime_ns=$5 AND path<>$6 "
              "ORDER BY id DESC LIMIT 1", "target, dev, inode, size, mtime_ns, path"),
    "path": ("SELECT * FROM jobs WHERE path=$1 AND target=$2 ORDER BY id DESC", "path, target"),
    "expired": ("SELECT id FROM jobs WHERE state='uploading' AND (lease_until IS NULL OR lease_until<$1) ORDER BY id "
                "LIMIT 4 FOR UPDATE SKIP LOCKED", "0::float8"),
    "wakeup": ("SELECT min(not_before) FROM jobs WHERE state='queued' AND not_before>$1 AND not_before<$2",
               "0::float8, 1e18::float8"),
}


def explain(db, schema: str) -> None:
    """Each of PLANS on the final table, with a middle row's values, custom and generic."""
    db.execute(f"SET search_path={schema}")
    (mid,), = db.execute("SELECT id FROM jobs ORDER BY id OFFSET (SELECT count(*)/2 FROM jobs) LIMIT 1").fetchall()
    for stats in ("before ANALYZE", "after ANALYZE"):
        if stats == "after ANALYZE":
            db.execute("ANALYZE jobs")
        for name, (sql, args) in PLANS.items():
            for mode in ("force_custom_plan", "force_generic_plan"):
                db.execute(f"SET plan_cache_mode={mode}")
                db.execute(f"PREPARE p AS {sql}")
                try:
                    values = args if "::" in args else _literals(db, args, mid)
                    lines = [r[0] for r in db.execute(f"EXPLAIN (ANALYZE, BUFFERS, TIMING OFF, COSTS OFF) "
                                                      f"EXECUTE p({values})")]
                finally:
                    db.execute("DEALLOCATE p")
                plan = " | ".join(line.strip() for line in lines if not line.strip().startswith(("Planning", "Execution")))
                print(f"  {stats:14} {name:8} {mode[6:-5]:7}: {plan[:400]}")
    db.execute("RESET plan_cache_mode")


def _literals(db, columns: str, job_id: int) -> str:
    row = db.execute(f"SELECT {columns} FROM jobs WHERE id={job_id}").fetchone()
    return ", ".join("NULL" if v is None else ("'\\x" + bytes(v).hex() + "'::bytea") if isinstance(v, (bytes, memoryview))
                     else (str(v) if isinstance(v, (int, float)) else "'" + str(v).replace("'", "''") + "'")
                     for v in row)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--size", type=int, default=4096, help="bytes per file")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--explain", action="store_true", help="also the plans of the statistics-dependent queries")
    ap.add_argument("--perf", metavar="FILE", help="record the run system-wide with `perf record -g` into FILE "
                    "(then: perf report -i FILE --comm postgres --no-children --sort sym)")
    args = ap.parse_args()
    import pg_server

    server = pg_server.start(SETTINGS)
    if server is None:
        raise SystemExit(pg_server.SKIP_REASON)
    ledgers = bench_pipeline._PgLedgers.__new__(bench_pipeline._PgLedgers)
    ledgers.server, ledgers.url, ledgers.password, ledgers.schemas = server, server.url(), server.password, 0
    drop = ledgers.drop

    def report_then_drop(schema: str) -> None:
        with server.admin() as db:
            report(db, args.files, args.top)
            if args.explain:
                print("\nplans (the final table; a middle row's values):")
                explain(db, schema)
        drop(schema)

    ledgers.drop = report_then_drop  # type: ignore[method-assign]
    bench_pipeline.LEDGERS = ledgers
    try:
        with server.admin() as db:
            db.execute("CREATE EXTENSION pg_stat_statements")
            db.execute("SELECT pg_stat_statements_reset(), pg_stat_reset()")
        perf = None
        if args.perf:
            import subprocess

            perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", args.perf],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            r = bench_pipeline.one_run(args.files, args.workers, args.size)
        finally:
            if perf is not None:
                import signal

                perf.send_signal(signal.SIGINT)
                perf.wait(timeout=60)
        print(f"\nrun: {r['seconds']:.1f} s for {args.files} files; daemon CPU {r['daemon_cpu_s']:.1f} s, "
              f"server CPU {r.get('server_cpu_s', 0.0):.1f} s")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
