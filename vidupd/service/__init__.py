"""The daemon around the engine: `vidupd run` under systemd.

`daemon` wires intake, ledger, pool and providers together, holds the one-daemon-per-state-
dir lock, handles SIGTERM/SIGINT (checkpoint and stop within `stop_timeout`) and SIGHUP;
`reload` applies a changed config to the running parts; `notify` speaks sd_notify (READY,
STATUS, WATCHDOG); `bandwidth` keeps the throttle at the cap in force (max_rate, its
timetable, `vidupd limit`); `controls` are the operator's overrides kept in the ledger.
"""
