"""A failing dependency is logged at WARNING or ERROR with its cause, not INFO; a client's own
mistake stays INFO; every access line names the client's address."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from proxy.limits.redis_store import RedisStore
from tests.helpers import Upstream, open_harness, token
from tests.redis_util import free_port


def access_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, Any]]]:
    return [
        (r.levelname, r.fields)  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "trigger_proxy.access"
    ]


async def spin_with(answer: Any, caplog: pytest.LogCaptureFixture) -> tuple[str, dict[str, Any]]:
    with caplog.at_level(logging.INFO, logger="trigger_proxy"):
        async with open_harness(upstream=Upstream(answer)) as h:
            await h.spin()
    [line] = access_lines(caplog)
    return line


def timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


@pytest.mark.parametrize(
    ("answer", "level"),
    [
        (lambda request: httpx.Response(503, json={"message": "down"}), "WARNING"),
        (lambda request: httpx.Response(429, json={"message": "slow down"}), "WARNING"),
        (lambda request: httpx.Response(401, json={"message": "bad key"}), "ERROR"),
        (timeout, "WARNING"),
        (refused, "WARNING"),
    ],
)
async def test_nector_failing_is_a_warning_or_an_error(
    answer: Any, level: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen, fields = await spin_with(answer, caplog)
    assert seen == level
    assert fields.get("upstream_status") or fields.get("cause")  # what failed, and how


async def test_the_limit_store_down_is_an_error(caplog: pytest.LogCaptureFixture) -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout_seconds=0.5)
    with caplog.at_level(logging.INFO, logger="trigger_proxy"):
        async with open_harness(store=store) as h:
            assert (await h.spin()).status_code == 503
    [(level, fields)] = access_lines(caplog)
    assert level == "ERROR"
    assert (fields["code"], fields["cause"]) == ("storage_unavailable", "refused")


async def test_a_clients_own_refusal_and_a_success_stay_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="trigger_proxy"):
        async with open_harness() as h:
            await h.spin(tok="forged")
            await h.spin(token())
    assert [level for level, _ in access_lines(caplog)] == ["INFO", "INFO"]


async def test_the_access_line_names_the_client(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="trigger_proxy"):
        async with open_harness() as h:
            await h.spin()
    [(_, fields)] = access_lines(caplog)
    assert fields["client"] == "203.0.113.7"
