"""Library lines must not raise false alarms: aliyunsdkcore logs every ServerException at
error level, also for requests vidupd retries and then reports in its own events, so
`log.level:error` and `journalctl -p warning` fired for uploads that went through (issue 11).
Those lines are kept, at debug; other libraries' warnings stay warnings."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from aliyunsdkcore import client as aliyun_client

from vidupd.core import events
from vidupd.core.events import LogConfig

SDK_LINE = "ServerException occurred. Host:vod.cn-shanghai.aliyuncs.com SDK-Version:2.16.0 ServerException:HTTP Status: 500 Error:InternalError please retry"


def lines(log: Path) -> list[dict]:
    return [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []


def test_the_aliyun_sdks_error_lines_are_debug(tmp_path: Path):
    log = tmp_path / "events.jsonl"
    try:
        events.configure(LogConfig(events=str(log), level="info"))
        aliyun_client.logger.error(SDK_LINE)  # exactly as the SDK's client logs it
        logging.getLogger("urllib3.connectionpool").warning("Connection pool is full, discarding connection")
        got = lines(log)
        assert [(e["log.logger"], e["log.level"]) for e in got] == [("urllib3.connectionpool", "warn")]
        events.configure(LogConfig(events=str(log), level="debug"))
        aliyun_client.logger.error(SDK_LINE)
        (sdk,) = [e for e in lines(log) if e["log.logger"] == "aliyunsdkcore.client"]
        assert sdk["log.level"] == "debug" and "ServerException" in sdk["message"]
        events.configure(LogConfig(events=str(log), level="info"))  # configured again: one filter, not two
        assert sum(type(f).__name__ == "_AsDebug" for f in aliyun_client.logger.filters) == 1
    finally:
        events.configure(LogConfig())
