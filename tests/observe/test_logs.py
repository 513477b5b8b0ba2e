"""Logs as ``serve`` sets them up: batched, request lines written without a LogRecord."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest

from proxy.observe import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    saved = (logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate)
    logs.configure("info", "json")
    out = io.StringIO()
    handler = logs.LOG.handlers[0]
    assert isinstance(handler, logs.BatchingStreamHandler)
    handler.setStream(out)
    handler.interval = 3600.0  # written only when full or flushed
    try:
        yield out
    finally:
        logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate = saved


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_request_lines_keep_their_values_and_order_with_other_lines(stream: io.StringIO) -> None:
    record = logs.AccessRecord("r1", "POST", "/v1/triggers/{trigger}")
    record.status = 401
    log = logs.RequestLog()
    log.access(record)
    record.status = 500  # after the line was logged: not in it
    logs.LOG.warning("between")  # through logging's LogRecord path
    log.audit("invalid_session", record, "203.0.113.9", suppressed=3)
    assert stream.getvalue() == ""  # batched
    logs.flush()
    first, second, third = lines(stream)
    assert (first["logger"], first["msg"], first["status"]) == (
        "trigger_proxy.access",
        "request",
        401,
    )
    assert first["request_id"] == "r1"
    assert isinstance(first["ts"], float)
    assert (second["msg"], second["level"]) == ("between", "warning")
    assert (third["logger"], third["event"], third["suppressed"]) == (
        "trigger_proxy.audit",
        "invalid_session",
        3,
    )


def test_a_full_batch_is_written_at_once(stream: io.StringIO) -> None:
    handler = logs.LOG.handlers[0]
    assert isinstance(handler, logs.BatchingStreamHandler)
    log = logs.RequestLog()
    for i in range(handler.max_lines - 1):
        log.access(logs.AccessRecord(f"r{i}", "GET", "/healthz"))
    assert stream.getvalue() == ""
    log.access(logs.AccessRecord("last", "GET", "/healthz"))
    written = lines(stream)
    assert len(written) == handler.max_lines
    assert [line["request_id"] for line in written[-2:]] == [f"r{handler.max_lines - 2}", "last"]
