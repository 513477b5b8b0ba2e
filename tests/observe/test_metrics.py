"""/metrics after a mixed run: the counters match what was sent, and nothing from a request
or a secret becomes a label."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import (
    ALL_SECRETS,
    CUSTOMER,
    ENVIRON,
    OLD_SESSION_SECRET,
    SPIN,
    Harness,
    make_settings,
    open_harness,
    token,
)
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


def value(found: dict[str, float], name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for key, number in found.items():
        metric, _, rest = key.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if metric == name and got == wanted:
            return number
    return 0.0


PUBLIC = make_settings(server={"metrics_on_main_port": True})


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """This module reads /metrics on the main port."""
    async with open_harness(PUBLIC) as h:
        yield h


async def test_counters_match_a_mixed_run(harness: Harness) -> None:
    for _ in range(4):  # the spin trigger allows 3 a minute
        await harness.spin()
    await harness.spin(token(secret=OLD_SESSION_SECRET, customer_id="customer-0002"))
    await harness.spin(headers={"authorization": "Bearer forged"})
    await harness.post("/v1/triggers/spin-wheel")
    await harness.spin(token("customer-0003"), headers={"idempotency-key": "a"})
    await harness.spin(token("customer-0003"), headers={"idempotency-key": "a"})
    await harness.spin(body={"trace": {}})
    for i in range(50):  # made-up triggers and paths must not become label values
        await harness.post(f"/v1/triggers/made-up-{i}", tok=token())
        await harness.client.get(f"/made-up-{i}")
    response = await harness.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)

    def requests(outcome: str, trigger: str = "spin-wheel") -> float:
        labels = {"route": "/v1/triggers/{trigger}", "trigger": trigger, "outcome": outcome}
        return value(found, "trigger_proxy_requests_total", **labels)

    assert requests("ok") == 5
    assert requests("rate_limited") == 1
    assert requests("replayed") == 1
    assert requests("forbidden_field") == 1
    assert requests("trigger_not_allowed", trigger="unknown") == 50
    assert (
        value(
            found,
            "trigger_proxy_requests_total",
            route="unknown",
            trigger="unknown",
            outcome="not_found",
        )
        == 50
    )
    assert value(found, "trigger_proxy_session_refusals_total", reason="invalid_session") == 1
    assert value(found, "trigger_proxy_session_refusals_total", reason="missing_session") == 1
    # 4 spins, 2 with the idempotency key, 1 with a forbidden field, 50 made-up triggers
    assert value(found, "trigger_proxy_session_key_verified_total", key_index="1") == 57
    assert value(found, "trigger_proxy_session_key_verified_total", key_index="0") == 1
    assert value(found, "trigger_proxy_limit_decisions_total", decision="admitted") == 5
    assert value(found, "trigger_proxy_limit_decisions_total", decision="rate_limited") == 1
    assert value(found, "trigger_proxy_limit_decisions_total", decision="replay") == 1
    assert value(found, "trigger_proxy_upstream_responses_total", result="2xx") == 5
    assert value(found, "trigger_proxy_upstream_seconds_count") == 5
    assert "made-up" not in response.text
    assert CUSTOMER not in response.text
    for secret in ALL_SECRETS:
        assert secret not in response.text


async def test_only_the_session_check_counts_session_refusals(harness: Harness) -> None:
    # Refused by the CORS check before any session is read: not a session refusal.
    await harness.spin(headers={"origin": "https://evil.example"})
    # A cookie session without an allowed Origin: refused at the session check.
    harness.client.cookies.set("trigger_session", token())
    await harness.post("/v1/triggers/spin-wheel")
    found = samples((await harness.client.get("/metrics")).text)
    assert value(found, "trigger_proxy_session_refusals_total", reason="origin_not_allowed") == 1
    route = "/v1/triggers/{trigger}"
    refused = value(found, "trigger_proxy_requests_total", route=route, trigger="unknown",
                    outcome="origin_not_allowed")  # fmt: skip
    assert refused == 2


async def test_upstream_faults_are_counted_by_code() -> None:
    async with open_harness(PUBLIC) as h:
        h.upstream.answer = lambda request: httpx.Response(500)
        await h.spin()
        found = samples((await h.client.get("/metrics")).text)
        assert value(found, "trigger_proxy_upstream_responses_total", result="upstream_error") == 1


async def test_counts_reach_the_collectors_without_a_scrape() -> None:
    """Requests are tallied on the request path and added to the collectors every 0.2 s, so a
    scrape elsewhere (the admin port's thread, another worker) lags by at most that."""
    async with open_harness() as h:
        await h.spin()
        await h.spin(headers={"authorization": "Bearer forged"})
        registry = h.app.metrics.registry
        labels = {"route": "/v1/triggers/{trigger}", "trigger": "spin-wheel", "outcome": "ok"}
        await asyncio.sleep(0.5)
        assert registry.get_sample_value("trigger_proxy_requests_total", labels) == 1
        refused = {"reason": "invalid_session"}
        assert registry.get_sample_value("trigger_proxy_session_refusals_total", refused) == 1


async def test_request_duration_in_flight_build_and_process_are_exposed(
    harness: Harness,
) -> None:
    await harness.spin()
    await harness.client.get("/healthz")
    text = (await harness.client.get("/metrics")).text
    found = samples(text)
    count = "trigger_proxy_request_seconds_count"
    assert value(found, count, route="/v1/triggers/{trigger}") == 1
    assert value(found, count, route="/healthz") == 1
    assert value(found, "trigger_proxy_requests_in_flight") == 1  # the scrape itself
    assert re.search(
        r'^trigger_proxy_build_info\{python="[0-9.]+",version="[^"]+"\} 1\.0$', text, re.M
    )
    assert value(found, "process_resident_memory_bytes") > 0
    assert value(found, "trigger_proxy_worker_cpu_seconds") > 0


async def test_metrics_are_off_the_public_port_unless_asked_for() -> None:
    for server in ({}, {"metrics_port": 9999}):
        async with open_harness(make_settings(server=server)) as h:
            assert (await h.client.get("/metrics")).status_code == 404


@pytest.mark.slow
def test_metrics_sum_every_worker(tmp_path: Path) -> None:
    """Several uvicorn workers (which need Redis) report through prometheus-client's
    multiprocess mode: the admin port serves the sum over workers."""
    from tests.helpers import need
    from tests.redis_util import SHARED_REDIS, free_port, redis_available

    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    admin = free_port()
    with StandInServer(stand_in_for(SPIN)) as nector:
        config = proxy_config(
            nector.url,
            server={"workers": 2, "metrics_port": admin},
            limits={"storage_url": "redis://127.0.0.1:6379/6", "per_customer": "1000/minute"},
        )
        import redis

        redis.Redis.from_url("redis://127.0.0.1:6379/6").flushdb()
        temp = tmp_path / "temp"
        temp.mkdir()
        with ProxyProcess(tmp_path, config, environ={**ENVIRON, "TMPDIR": str(temp)}) as proxy:
            assert [p.name[:14] for p in temp.iterdir()] == ["trigger-proxy-"]
            n = 30
            with httpx.Client() as client:  # new connections, so the kernel spreads them
                for i in range(n):
                    auth = {"authorization": "Bearer " + token(f"customer-{i:04}")}
                    r = httpx.post(f"{proxy.base_url}/v1/triggers/spin-wheel", headers=auth)
                    assert r.status_code == 200
                # Each worker adds its counts to the shared files every 0.2 s.
                deadline = time.monotonic() + 5
                while True:
                    text = client.get(f"http://127.0.0.1:{admin}/metrics").text
                    total = sum(
                        float(line.rsplit(" ", 1)[1])
                        for line in text.splitlines()
                        if line.startswith("trigger_proxy_requests_total{")
                        and 'outcome="ok"' in line
                        and 'route="/v1/triggers/{trigger}"' in line
                    )
                    if total == n or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
            assert total == n
            assert re.search(r'key_index="1"', text)
            found = samples(text)
            route = {"route": "/v1/triggers/{trigger}"}
            assert value(found, "trigger_proxy_request_seconds_count", **route) == n
            assert value(found, "trigger_proxy_requests_in_flight") == 0
            assert re.search(r'trigger_proxy_build_info\{python="[0-9.]+",version=', text)
            assert (
                len(re.findall(r"^trigger_proxy_worker_resident_memory_bytes\{", text, re.M)) == 2
            )
        assert list(temp.iterdir()) == []  # the workers' metric files went with them
