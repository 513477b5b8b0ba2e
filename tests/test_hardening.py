"""What an attack on a running proxy found (issue 19), each finding held to its fix."""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import uuid
from typing import Any

import httpx
import pytest
from itsdangerous import TimestampSigner

from proxy.app import create_app
from proxy.http.asgi import Message, Request, TrustedPeers
from proxy.identity.sessions import SALT
from proxy.observe import logs
from tests.helpers import (
    ENVIRON,
    MINT_KEY,
    SESSION_SECRET,
    Upstream,
    error_code,
    make_settings,
    nector_success,
    need,
    open_harness,
    token,
)
from tests.redis_util import SHARED_REDIS, redis_available

EVIL = "https://evil.example"


@pytest.mark.parametrize("origin", [EVIL, "null"])
async def test_a_cookie_counts_only_from_an_origin_listed_by_name(origin: str) -> None:
    # "*" without credentials is a public API for bearer tokens; a site's plain form POST
    # (no CORS at all) must not be able to spend a visitor's cookie through it.
    settings = make_settings(cors={"allow_origins": ["*"], "allow_credentials": False})
    async with open_harness(settings) as h:
        response = await h.client.post(
            "/v1/triggers/spin-wheel",
            headers={"origin": origin, "cookie": f"trigger_session={token()}"},
        )
    assert (response.status_code, error_code(response)) == (403, "origin_not_allowed")
    assert h.upstream.requests == []


async def test_a_compressed_answer_is_refused_unread() -> None:
    body = gzip.compress(json.dumps(nector_success()).encode())
    upstream = Upstream(
        answer=lambda r: httpx.Response(200, content=body, headers={"content-encoding": "gzip"})
    )
    async with open_harness(upstream=upstream) as h:
        response = await h.spin()
    assert (response.status_code, error_code(response)) == (502, "upstream_error")
    assert upstream.requests[0].headers["accept-encoding"] == "identity"


def test_a_forwarded_address_counts_only_when_it_is_one() -> None:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    trusted = TrustedPeers(["10.0.0.0/8"])
    for forwarded, seen in [(b"203.0.113.9", "203.0.113.9"), (b"x\x1b[31m; evil", "10.0.0.1")]:
        scope: dict[str, Any] = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "headers": [(b"x-forwarded-for", forwarded)],
            "client": ("10.0.0.1", 1),
        }
        assert Request(scope, receive, trusted).client_ip == seen


async def test_a_claim_no_utf8_can_hold_is_400_not_500() -> None:
    async with open_harness() as h:
        response = await h.client.post(
            "/v1/sessions",
            headers={"authorization": f"Bearer {MINT_KEY}", "content-type": "application/json"},
            content=b'{"customer_id": "customer-0001", "name": "\\ud800"}',
        )
    assert (response.status_code, error_code(response)) == (400, "invalid_body")


async def test_past_the_failure_limit_a_valid_token_gets_the_same_429() -> None:
    settings = make_settings(limits={"per_ip_invalid_session": "3/minute"})
    async with open_harness(settings) as h:
        forged = [(await h.spin(token() + "x")).status_code for _ in range(4)]
        valid = await h.spin()
    assert forged == [401, 401, 401, 429]
    assert (valid.status_code, error_code(valid)) == (429, "rate_limited")
    assert h.upstream.requests == []  # no oracle: the valid token was never looked at


async def test_mint_key_guesses_are_limited_per_address() -> None:
    settings = make_settings(limits={"per_ip_invalid_session": "3/minute"})
    body = {"customer_id": "customer-0001"}
    async with open_harness(settings) as h:
        statuses = []
        for key in ["wrong-1", "wrong-2", "wrong-3", "wrong-4", MINT_KEY]:
            answer = await h.client.post(
                "/v1/sessions", json=body, headers={"authorization": f"Bearer {key}"}
            )
            statuses.append(answer.status_code)
    assert statuses == [401, 401, 401, 429, 429]


def signed(payload: bytes) -> str:
    """A token whose claims are these exact bytes, signed with the real secret."""
    encoded = base64.urlsafe_b64encode(payload).rstrip(b"=")
    signer = TimestampSigner(SESSION_SECRET, salt=SALT, key_derivation="django-concat")
    return signer.sign(encoded).decode()


async def test_a_claim_written_twice_makes_the_token_invalid() -> None:
    twice = signed(b'{"customer_id":"customer-0001","customer_id":"customer-0002"}')
    async with open_harness() as h:
        response = await h.spin(twice)
        once = await h.spin(signed(b'{"customer_id":"customer-0003"}'))
    assert (response.status_code, error_code(response)) == (401, "invalid_session")
    assert once.status_code == 200  # the same path with one of each key verifies
    assert [b["customer_id"] for b in h.upstream.bodies] == ["customer-0003"]


async def test_two_workspaces_on_one_redis_never_share_a_budget() -> None:
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    answers = []
    for _ in range(2):
        environ = {**ENVIRON, "TRIGGER_PROXY_WORKSPACE_ID": f"shopify-{uuid.uuid4().hex[:10]}"}
        settings = make_settings(
            environ, limits={"storage_url": SHARED_REDIS, "upstream": "1/minute"}
        )
        app = create_app(settings, transport=Upstream().transport())
        transport = httpx.ASGITransport(app=app)
        async with app.lifespan(), httpx.AsyncClient(transport=transport, base_url="http://p") as c:
            bearer = {"authorization": f"Bearer {token()}"}
            answers.append((await c.post("/v1/triggers/spin-wheel", headers=bearer)).status_code)
    assert answers == [200, 200]


def test_the_servers_own_lines_are_in_the_configured_format() -> None:
    loggers = (logs.LOG, logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error"))
    saved = [(lg, lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        logs.configure("info", "json")
        out = io.StringIO()
        handler = logs.LOG.handlers[0]
        assert isinstance(handler, logs.BatchingStreamHandler)
        handler.setStream(out)
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
        logs.flush()
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    [line] = [json.loads(text) for text in out.getvalue().splitlines()]
    assert (line["logger"], line["level"]) == ("uvicorn.error", "warning")


# --- the server's own limits (findings 1 and 5), on a real `serve` --------------------------


def raw_exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` and read until the server closes the connection (or ``wait`` passes)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except TimeoutError:
            chunks.append(b"<still open>")
        except ConnectionResetError:
            chunks.append(b"<reset>")
    return b"".join(chunks)


@pytest.mark.slow
def test_the_server_limits_the_head_and_the_time_a_request_takes(tmp_path: Any) -> None:
    from tests.helpers import SPIN
    from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

    limits = {"max_head_bytes": 4096, "head_timeout_seconds": 1.0, "body_timeout_seconds": 1.0}
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url, server=limits)) as proxy:
            huge = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 200_000 + b"\r\n\r\n"
            answer = raw_exchange(proxy.port, huge)
            assert answer.startswith(b"HTTP/1.1 431 ")
            assert (
                b'"code": "headers_too_large"' in answer or b'"code":"headers_too_large"' in answer
            )
            # A head that never ends, and a body that never ends, are cut off.
            assert raw_exchange(proxy.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n") == b""
            head = (
                b"POST /v1/triggers/spin-wheel HTTP/1.1\r\nhost: x\r\n"
                b"authorization: Bearer " + token().encode() + b"\r\n"
                b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{"
            )
            assert b"<still open>" not in raw_exchange(proxy.port, head)
            assert httpx.get(f"{proxy.base_url}/healthz").status_code == 200
    assert nector.stand_in.calls == []  # the cut-off reward was never forwarded


# --- Redis behind Sentinel: the URL (the failover itself: tests/limits/test_sentinel.py) ---


def test_a_sentinel_url_names_the_sentinels_the_service_and_the_primarys_password() -> None:
    from proxy.limits.redis_client import parse_sentinel_url

    target = parse_sentinel_url(
        "rediss+sentinel://:p%40ss@10.0.0.1:26379,sentinel-b/rewards/2?sentinel_password=s3"
    )
    assert target.sentinels == [("10.0.0.1", 26379), ("sentinel-b", 26379)]
    assert (target.service, target.db, target.password, target.tls) == ("rewards", 2, "p@ss", True)
    assert target.sentinel_password == "s3"
    for bad, reason in [
        ("redis+sentinel://h:1", "names no service"),
        ("redis+sentinel://h:port/svc", "host:port"),
        ("redis+sentinel://h/s/x", "database number"),
    ]:
        with pytest.raises(ValueError, match=reason):
            parse_sentinel_url(bad)


def test_the_config_takes_a_sentinel_url_and_hides_its_password() -> None:
    from proxy.config.settings import ConfigError, display_url

    url = "redis+sentinel://:hunter2@s1:26379,s2:26379/rewards/0"
    assert make_settings(limits={"storage_url": url}).limits.storage_url == url
    assert "hunter2" not in display_url(url)
    with pytest.raises(ConfigError, match="names no service"):
        make_settings(limits={"storage_url": "redis+sentinel://s1:26379"})
