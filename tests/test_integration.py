"""End to end over loopback: real ``trigger-proxy serve`` processes, the package's Nector
stand-in on uvicorn, and real Redis (the shared one, and private ones that tests stop)."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ALL_SECRETS, CHECKIN, MOBILE_ONLY, SHOP, SPIN, error_code, need, token
from tests.redis_util import SHARED_REDIS, PrivateRedis, free_port, redis_available
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow

LEAD = "2b7e1516-28ae-4d2a-a6f7-15887e09cf4f"


def spin(base: str, tok: str | None = None, **kwargs: Any) -> httpx.Response:
    headers = kwargs.pop("headers", {})
    headers.setdefault("authorization", f"Bearer {tok or token()}")
    return httpx.post(f"{base}/v1/triggers/spin-wheel", headers=headers, timeout=10, **kwargs)


def test_a_reward_end_to_end_over_http(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN, CHECKIN, MOBILE_ONLY)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            first = spin(proxy.base_url)
            assert first.status_code == 200, first.text
            reward = first.json()["data"]["wallet_reward"]
            assert 5 <= reward["coins"] <= 50  # the configured coin_range applied upstream
            second = spin(proxy.base_url)
            assert (
                second.json()["data"]["wallet_reward"]["balance"]
                == reward["coins"] + (second.json()["data"]["wallet_reward"]["coins"])
            )
            (call, _) = nector.stand_in.calls
            assert call.headers["x-source"] == "web"
            assert call.body["customer_id"] == "customer-0001"


def test_refusals_never_reach_the_upstream_over_http(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            base = proxy.base_url
            tok = token()
            refusals = [
                spin(base, headers={"authorization": "Bearer forged"}),
                spin(base, json={"trace": {"via_api_for_wallet": {}}}),
                spin(base, headers={"authorization": f"Bearer {token()}", "x-source": "tv"}),
                spin(base, headers={"authorization": f"Bearer {token()}", "origin": "https://evil.example"}),
                spin(base, content=b"x" * 20000, headers={"authorization": f"Bearer {token()}",
                                                         "content-type": "application/json"}),
                httpx.post(base + "/v1/triggers/nope", headers={"authorization": "Bearer " + tok}),
            ]  # fmt: skip
            assert [r.status_code for r in refusals] == [401, 400, 400, 403, 413, 403]
            assert nector.stand_in.calls == []


def test_nector_refusal_passes_through_over_http(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            response = spin(proxy.base_url, token(None, lead_id=LEAD))
            assert response.status_code == 422
            assert response.json()["data"]["message"] == "Lead does not exists"


def test_wrong_credentials_upstream_are_502_rejected(tmp_path: Path) -> None:
    stand_in = stand_in_for(SPIN)
    stand_in.api_key = "a-different-key-than-the-proxy-has-configured"
    with StandInServer(stand_in) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            response = spin(proxy.base_url)
            assert response.status_code == 502
            assert response.json()["error"]["code"] == "upstream_rejected"


def test_an_unreachable_upstream_is_502(tmp_path: Path) -> None:
    from tests.redis_util import free_port

    url = f"http://127.0.0.1:{free_port()}/api/v2/merchant/activities"
    with ProxyProcess(tmp_path, proxy_config(url)) as proxy:
        response = spin(proxy.base_url)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_error"


def test_no_log_line_holds_a_secret_or_a_raw_customer(tmp_path: Path) -> None:
    """A run with every kind of refusal: the process's whole output is checked."""
    tok = token("customer-secret-id-42")
    with StandInServer(stand_in_for(SPIN, CHECKIN)) as nector:
        proxy = ProxyProcess(tmp_path, proxy_config(nector.url))
        with proxy:
            base = proxy.base_url
            auth = {"authorization": f"Bearer {tok}"}
            spin(base, tok)
            spin(base, tok, headers={**auth, "idempotency-key": "k"})
            spin(base, tok, headers={**auth, "idempotency-key": "k"})
            spin(base, headers={"authorization": "Bearer " + tok[:-3] + "abc"})
            httpx.post(f"{base}/v1/triggers/spin-wheel")
            spin(base, json={"trace": {}}, headers=auth)
            spin(base, headers={**auth, "x-source": "nope"})
            spin(base, headers={**auth, "origin": "https://evil.example"})
            httpx.post(f"{base}/api/v2/merchant/activities", headers=auth,
                       json={"trigger_id": SPIN, "customer_id": "someone-else-99"})  # fmt: skip
            httpx.post(f"{base}/v1/sessions", headers={"authorization": "Bearer guess"}, json={})
            httpx.get(f"{base}/nowhere")
            for _ in range(4):
                spin(base, tok)
    lines = proxy.log_lines()
    text = "\n".join(lines)
    access = [json.loads(line) for line in lines if '"trigger_proxy.access"' in line]
    assert len(access) >= 14
    codes = {line.get("code") for line in access}
    assert {"invalid_session", "missing_session", "forbidden_field", "invalid_source",
            "origin_not_allowed", "identity_mismatch", "rate_limited"} <= codes  # fmt: skip
    audit = [json.loads(line) for line in lines if '"trigger_proxy.audit"' in line]
    assert {a["event"] for a in audit} >= {
        "forbidden_field",
        "identity_mismatch",
        "invalid_session",
    }
    for secret in (*ALL_SECRETS, tok, "customer-secret-id-42", "someone-else-99"):
        assert secret not in text


def test_sigterm_lets_an_in_flight_reward_finish(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN, delay_seconds=1.5)) as nector:
        proxy = ProxyProcess(
            tmp_path, proxy_config(nector.url, server={"shutdown_grace_seconds": 10})
        )
        proxy.start()
        result: dict[str, httpx.Response] = {}
        worker = threading.Thread(target=lambda: result.update(r=spin(proxy.base_url)))
        worker.start()
        deadline = time.monotonic() + 5
        while not nector.stand_in.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert nector.stand_in.calls, "the reward never reached the stand-in"
        proxy.terminate()  # while the upstream call is in flight
        time.sleep(0.3)
        with pytest.raises(httpx.ConnectError):  # no new connections during the grace
            httpx.get(f"{proxy.base_url}/healthz", timeout=1)
        worker.join(15)
        assert result["r"].status_code == 200
        # uvicorn finishes its graceful shutdown, then re-raises the signal it captured.
        assert proxy.stop() in (0, -signal.SIGTERM)
        assert "Traceback" not in "\n".join(proxy.log_lines())
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{proxy.base_url}/healthz", timeout=1)


# --- replicas sharing Redis ------------------------------------------------------------------


def redis_config(nector_url: str, storage: str, **limits: Any) -> dict[str, Any]:
    return proxy_config(
        nector_url,
        limits={
            "storage_url": storage,
            "per_customer": "100/minute",
            "upstream": "1000/minute",
            **limits,
        },
        triggers=[{"id": SPIN, "name": "spin-wheel", "per_customer": "3/minute"}],
    )


def test_two_replicas_share_limits_and_idempotency(tmp_path: Path) -> None:
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    # A database of its own on the shared server keeps this run's keys apart from others'.
    storage = "redis://127.0.0.1:6379/7"
    import redis

    redis.Redis.from_url(storage).flushdb()
    customer = f"customer-{uuid.uuid4().hex[:8]}"
    with StandInServer(stand_in_for(SPIN)) as nector:
        config = redis_config(nector.url, storage)
        with (
            ProxyProcess(tmp_path, config, name="a") as a,
            ProxyProcess(tmp_path, config, name="b") as b,
        ):
            codes = [spin(p.base_url, token(customer)).status_code for p in (a, b) * 4]
            assert codes.count(200) == 3
            assert codes.count(429) == 5
            other = f"customer-{uuid.uuid4().hex[:8]}"
            key = {"authorization": f"Bearer {token(other)}", "idempotency-key": "once"}
            first = spin(a.base_url, headers=key)
            again = spin(b.base_url, headers=key)
            assert first.status_code == again.status_code == 200
            assert again.headers["idempotent-replayed"] == "true"
            assert again.content == first.content
            assert len(nector.stand_in.calls) == 3 + 1


def test_redis_down_fails_closed_and_recovers_by_itself(tmp_path: Path) -> None:
    need(PrivateRedis.installed(), "redis-server is not installed")
    private = PrivateRedis(tmp_path)
    private.start()
    try:
        with StandInServer(stand_in_for(SPIN)) as nector:
            with ProxyProcess(tmp_path, redis_config(nector.url, private.url)) as proxy:
                assert spin(proxy.base_url).status_code == 200
                private.stop()  # Redis dies mid-run
                down = [spin(proxy.base_url, token(f"customer-{i:04}")) for i in range(5)]
                assert {r.status_code for r in down} == {503}
                assert {r.json()["error"]["code"] for r in down} == {"storage_unavailable"}
                ready = httpx.get(f"{proxy.base_url}/readyz", timeout=5)
                assert ready.status_code == 503
                assert ready.json()["error"]["code"] == "storage_unavailable"
                assert len(nector.stand_in.calls) == 1  # nothing passed unlimited
                private.start()  # same port; the proxy is not restarted
                deadline = time.monotonic() + 10
                while httpx.get(f"{proxy.base_url}/readyz", timeout=5).status_code != 200:
                    assert time.monotonic() < deadline, "the proxy did not recover"
                    time.sleep(0.1)
                assert spin(proxy.base_url, token("customer-back-1")).status_code == 200
            text = "\n".join(proxy.log_lines())
            assert "Traceback" not in text
    finally:
        private.stop()


def test_cors_through_the_real_server(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            response = httpx.options(
                f"{proxy.base_url}/v1/triggers/spin-wheel",
                headers={"origin": SHOP, "access-control-request-method": "POST"},
            )
            assert response.status_code == 204
            assert response.headers["access-control-allow-origin"] == SHOP


def test_serve_says_where_it_listens_and_when_it_stopped(tmp_path: Path) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        proxy = ProxyProcess(tmp_path, proxy_config(nector.url))
        with proxy:
            port = proxy.port
    messages = [json.loads(line).get("msg") for line in proxy.log_lines()]
    assert f"listening on http://127.0.0.1:{port} (1 worker, storage memory://)" in messages
    assert messages[-1] == "stopped"


def test_an_unreachable_upstream_and_store_are_named_in_the_log(tmp_path: Path) -> None:
    dead_redis, dead_nector = free_port(), free_port()
    config = proxy_config(
        f"http://127.0.0.1:{dead_nector}/api/v2/merchant/activities",
        limits={"storage_url": f"redis://127.0.0.1:{dead_redis}/0"},
    )
    with ProxyProcess(tmp_path, config) as proxy:
        refused = httpx.post(
            f"{proxy.base_url}/v1/triggers/spin-wheel",
            headers={"authorization": f"Bearer {token()}"},
        )
    assert (refused.status_code, error_code(refused)) == (503, "storage_unavailable")
    lines = [json.loads(line) for line in proxy.log_lines()]
    [start] = [line for line in lines if "does not answer" in line["msg"]]
    assert f"redis://127.0.0.1:{dead_redis}/0" in start["msg"]
    assert "(refused)" in start["msg"]
    [access] = [line for line in lines if line.get("route") == "/v1/triggers/{trigger}"]
    assert access["cause"] == "refused"
    # With the store back (memory), the upstream's refusal is named the same way.
    memory = proxy_config(f"http://127.0.0.1:{dead_nector}/api/v2/merchant/activities")
    with ProxyProcess(tmp_path, memory, name="memory") as proxy:
        response = httpx.post(
            f"{proxy.base_url}/v1/triggers/spin-wheel",
            headers={"authorization": f"Bearer {token()}"},
        )
    assert (response.status_code, error_code(response)) == (502, "upstream_error")
    lines = [json.loads(line) for line in proxy.log_lines()]
    [access] = [line for line in lines if line.get("route") == "/v1/triggers/{trigger}"]
    assert (access["upstream_fault"], access["cause"]) == ("upstream_error", "refused")
