"""The HTTP contract, row by row, through the app with httpx.MockTransport as Nector."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from itsdangerous import URLSafeTimedSerializer

from proxy.http.asgi import Message
from proxy.identity.sessions import SALT, mint_token
from tests.helpers import (
    ALL_SECRETS,
    API_KEY,
    CHECKIN,
    CUSTOMER,
    OFFER,
    OLD_SESSION_SECRET,
    SESSION_SECRET,
    SHOP,
    SPIN,
    UNKNOWN,
    WORKSPACE_ID,
    Harness,
    error_code,
    make_settings,
    open_harness,
    token,
)

LEAD = "2b7e1516-28ae-4d2a-a6f7-15887e09cf4f"


def raw_token(payload: object, *, salt: str = SALT) -> str:
    """Signed with the real secret but not through mint_token's checks."""
    return URLSafeTimedSerializer(SESSION_SECRET, salt=salt).dumps(payload)


# --- the forwarded request ----------------------------------------------------------------


async def test_forwards_with_server_credentials_and_session_customer(harness: Harness) -> None:
    response = await harness.spin()
    assert response.status_code == 200
    assert response.json()["data"]["wallet_reward"]["coins"] == 10
    (sent,) = harness.upstream.requests
    assert sent.method == "POST"
    assert str(sent.url) == "https://platform.nector.io/api/v2/merchant/activities"
    assert sent.headers["x-apikey"] == API_KEY
    assert sent.headers["x-workspaceid"] == WORKSPACE_ID
    assert sent.headers["x-source"] == "web"
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers["x-request-id"] == response.headers["x-request-id"]
    assert json.loads(sent.content) == {
        "trigger_id": SPIN,
        "customer_id": CUSTOMER,
        "trace": {
            "via_api_for_wallet": {
                "title": "Spin the wheel",
                "operation": "cr",
                "coin_range": {"min": 5, "max": 50},
            }
        },
    }


async def test_trigger_by_id_and_alias_reach_the_same_trigger(harness: Harness) -> None:
    by_id = await harness.post(f"/v1/triggers/{SPIN}", tok=token())
    by_alias = await harness.post("/v1/triggers/spin-wheel", tok=token())
    assert (by_id.status_code, by_alias.status_code) == (200, 200)
    assert [b["trigger_id"] for b in harness.upstream.bodies] == [SPIN, SPIN]


async def test_offer_override_comes_from_config(harness: Harness) -> None:
    response = await harness.post("/v1/triggers/daily-checkin", tok=token())
    assert response.status_code == 200
    assert harness.upstream.bodies[0]["trace"] == {"via_api_for_offer": {"offer_id": OFFER}}


async def test_lead_session_and_its_profile_claims_go_upstream(harness: Harness) -> None:
    tok = token(
        None,
        lead_id=LEAD,
        name="Ada",
        referral_code="FRIEND1",
        metadetail={"mobile": "5551234", "country": "usa", "dob": "1990-01-31"},
    )
    assert (await harness.spin(tok)).status_code == 200
    body = harness.upstream.bodies[0]
    assert body["lead_id"] == LEAD
    assert "customer_id" not in body
    assert body["name"] == "Ada"
    assert body["referral_code"] == "FRIEND1"
    assert body["metadetail"] == {"mobile": "5551234", "country": "usa", "dob": "1990-01-31"}


async def test_client_credential_headers_never_reach_upstream(harness: Harness) -> None:
    tok = token()
    response = await harness.spin(
        tok,
        headers={
            "x-apikey": "attacker-key",
            "x-workspaceid": "attacker-ws",
            "cookie": "trigger_session=abc; other=1",
            "x-forwarded-for": "1.2.3.4",
        },
    )
    assert response.status_code == 200
    sent = harness.upstream.requests[0].headers
    assert sent["x-apikey"] == API_KEY
    assert sent["x-workspaceid"] == WORKSPACE_ID
    assert tok not in str(sent.raw)
    for name in ("authorization", "cookie", "x-forwarded-for", "origin"):
        assert name not in sent


async def test_empty_body_and_empty_object_are_both_accepted(harness: Harness) -> None:
    empty = await harness.post("/v1/triggers/spin-wheel", tok=token(), content=b"")
    obj = await harness.post(
        "/v1/triggers/spin-wheel", tok=token(), content=b"{}",
        headers={"content-type": "application/json; charset=utf-8"},
    )  # fmt: skip
    assert (empty.status_code, obj.status_code) == (200, 200)


async def test_every_response_has_a_request_id(harness: Harness) -> None:
    ok = await harness.spin()
    refused = await harness.post("/nope")
    assert len(ok.headers["x-request-id"]) == 32
    assert refused.headers["x-request-id"] != ok.headers["x-request-id"]


# --- the body -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"trace": {"via_api_for_wallet": {"coin_range": {"min": 1000, "max": 1000}}}},
        {"customer_id": CUSTOMER},
        {"lead_id": LEAD},
        {"trigger_id": SPIN},
        {"name": "x"},
    ],
)
async def test_any_field_on_the_trigger_route_is_forbidden(
    harness: Harness, body: dict[str, Any]
) -> None:
    response = await harness.spin(body=body)
    assert response.status_code == 400
    assert error_code(response) == "forbidden_field"
    assert harness.upstream.requests == []


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"{", "invalid_json"),
        (b'{"a": 1, "a": 2}', "invalid_json"),
        (b"NaN", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
        (b"[]", "invalid_body"),
        (b'"text"', "invalid_body"),
    ],
)
async def test_malformed_bodies(harness: Harness, content: bytes, code: str) -> None:
    response = await harness.spin(content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert error_code(response) == code
    assert harness.upstream.requests == []


async def test_non_json_media_type_is_415(harness: Harness) -> None:
    response = await harness.spin(content=b"a=b", headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


async def test_body_over_the_cap_is_413(harness: Harness) -> None:
    response = await harness.spin(
        content=b" " * 20000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert error_code(response) == "body_too_large"
    assert harness.upstream.requests == []


async def test_chunked_body_over_the_cap_is_413(harness: Harness) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 1000

    response = await harness.spin(content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert error_code(response) == "body_too_large"


# --- sessions -------------------------------------------------------------------------------


async def test_no_session_is_401_missing(harness: Harness) -> None:
    response = await harness.post("/v1/triggers/spin-wheel")
    assert response.status_code == 401
    assert error_code(response) == "missing_session"
    assert harness.upstream.requests == []


@pytest.mark.parametrize(
    "auth",
    [
        "Bearer not-a-token",
        "Bearer "
        + mint_token(["another-secret-0123456789-abcdefghijkl"], {"customer_id": CUSTOMER}),
        "Bearer " + token()[:-2],
        "Bearer " + raw_token({"customer_id": CUSTOMER, "role": "admin"}),
        "Bearer " + raw_token({"customer_id": CUSTOMER}, salt="itsdangerous"),
        "Bearer " + raw_token({"customer_id": CUSTOMER, "lead_id": LEAD}),
        "Bearer " + raw_token(["customer_id", CUSTOMER]),
    ],
)
async def test_bad_tokens_are_401_invalid(harness: Harness, auth: str) -> None:
    response = await harness.post("/v1/triggers/spin-wheel", headers={"authorization": auth})
    assert response.status_code == 401
    assert error_code(response) == "invalid_session"
    assert harness.upstream.requests == []


@pytest.mark.parametrize("auth", ["Basic dXNlcjpwYXNz", "Token abc", "ak_0123"])
async def test_another_authorization_scheme_is_no_session_and_no_forgery(
    harness: Harness, auth: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nector's own SDKs send Basic: the caller needs telling what the proxy wants, and an
    # operator's audit log must not call it a tampered token.
    response = await harness.post("/v1/triggers/spin-wheel", headers={"authorization": auth})
    assert (response.status_code, error_code(response)) == (401, "missing_session")
    assert "Bearer" in response.json()["error"]["message"]
    assert not [r for r in caplog.records if r.name == "trigger_proxy.audit"]
    assert harness.upstream.requests == []


async def test_a_token_signed_with_the_old_secret_still_verifies(harness: Harness) -> None:
    response = await harness.spin(token(secret=OLD_SESSION_SECRET))
    assert response.status_code == 200


async def test_expired_exp_claim_is_401_expired(harness: Harness) -> None:
    tok = mint_token([OLD_SESSION_SECRET], {"customer_id": CUSTOMER, "exp": 1})
    response = await harness.spin(tok)
    assert response.status_code == 401
    assert error_code(response) == "expired_session"


async def test_cookie_session_with_allowed_origin(harness: Harness) -> None:
    harness.client.cookies.set("trigger_session", token())
    response = await harness.post("/v1/triggers/spin-wheel", headers={"origin": SHOP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_cookie_session_without_origin_is_refused(harness: Harness) -> None:
    harness.client.cookies.set("trigger_session", token())
    response = await harness.post("/v1/triggers/spin-wheel")
    assert response.status_code == 403
    assert error_code(response) == "origin_not_allowed"
    assert harness.upstream.requests == []


async def test_bearer_wins_over_cookie(harness: Harness) -> None:
    harness.client.cookies.set("trigger_session", token("customer-cookie"))
    response = await harness.spin(token("customer-bearer"))
    assert response.status_code == 200
    assert harness.upstream.bodies[0]["customer_id"] == "customer-bearer"


# --- origins and CORS -------------------------------------------------------------------------


async def test_disallowed_origin_is_403_even_with_a_bearer(harness: Harness) -> None:
    response = await harness.spin(headers={"origin": "https://evil.example"})
    assert response.status_code == 403
    assert error_code(response) == "origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert harness.upstream.requests == []


async def test_preflight_for_an_allowed_origin(harness: Harness) -> None:
    response = await harness.client.options(
        "/v1/triggers/spin-wheel",
        headers={
            "origin": SHOP,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SHOP
    allowed = response.headers["access-control-allow-headers"]
    for name in ("authorization", "content-type", "x-source", "idempotency-key"):
        assert name in allowed
    exposed = response.headers["access-control-expose-headers"]
    for name in ("retry-after", "ratelimit-remaining", "ratelimit-reset", "ratelimit"):
        assert name in exposed


async def test_preflight_for_a_disallowed_origin_is_403(harness: Harness) -> None:
    response = await harness.client.options(
        "/v1/triggers/spin-wheel",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert response.status_code == 403
    assert error_code(response) == "origin_not_allowed"


# --- triggers and sources ---------------------------------------------------------------------


@pytest.mark.parametrize("ref", [UNKNOWN, "not-listed", "SPIN-WHEEL"])
async def test_unlisted_trigger_is_403(harness: Harness, ref: str) -> None:
    response = await harness.post(f"/v1/triggers/{ref}", tok=token())
    assert response.status_code == 403
    assert error_code(response) == "trigger_not_allowed"
    assert harness.upstream.requests == []


async def test_source_header_is_forwarded(harness: Harness) -> None:
    response = await harness.spin(headers={"x-source": "mobile"})
    assert response.status_code == 200
    assert harness.upstream.requests[0].headers["x-source"] == "mobile"


async def test_invalid_source_is_400(harness: Harness) -> None:
    response = await harness.spin(headers={"x-source": "desktop"})
    assert response.status_code == 400
    assert error_code(response) == "invalid_source"


async def test_source_the_trigger_does_not_allow_is_403(harness: Harness) -> None:
    response = await harness.spin(headers={"x-source": "unix"})
    assert response.status_code == 403
    assert error_code(response) == "source_not_allowed"
    web_default = await harness.post("/v1/triggers/app-open", tok=token())
    assert error_code(web_default) == "source_not_allowed"
    assert harness.upstream.requests == []


async def test_session_source_claim_wins_and_binds_the_header(harness: Harness) -> None:
    mobile = token(source="mobile")
    ok = await harness.post("/v1/triggers/app-open", tok=mobile)
    assert ok.status_code == 200
    assert harness.upstream.requests[0].headers["x-source"] == "mobile"
    differing = await harness.post("/v1/triggers/app-open", tok=mobile, headers={"x-source": "web"})
    assert differing.status_code == 403
    assert error_code(differing) == "source_not_allowed"
    assert len(harness.upstream.requests) == 1


# --- the drop-in route ------------------------------------------------------------------------


async def test_dropin_with_nectors_body_shape(harness: Harness) -> None:
    response = await harness.post(
        "/api/v2/merchant/activities",
        tok=token(),
        body={"trigger_id": SPIN, "customer_id": CUSTOMER},
        headers={"x-apikey": "leaked-read-key", "x-workspaceid": "ws", "x-source": "web"},
    )
    assert response.status_code == 200
    sent = harness.upstream.requests[0]
    assert sent.headers["x-apikey"] == API_KEY
    assert json.loads(sent.content)["customer_id"] == CUSTOMER


async def test_dropin_without_customer_uses_the_session(harness: Harness) -> None:
    response = await harness.post(
        "/api/v2/merchant/activities", tok=token(), body={"trigger_id": CHECKIN}
    )
    assert response.status_code == 200
    assert harness.upstream.bodies[0]["customer_id"] == CUSTOMER


@pytest.mark.parametrize(
    "body", [{"customer_id": "someone-else-1"}, {"lead_id": LEAD}, {"customer_id": 12345678}]
)
async def test_dropin_other_customer_is_identity_mismatch(
    harness: Harness, body: dict[str, Any]
) -> None:
    response = await harness.post(
        "/api/v2/merchant/activities", tok=token(), body={"trigger_id": SPIN, **body}
    )
    assert response.status_code == 403
    assert error_code(response) == "identity_mismatch"
    # A lead_id from a customer_id session is checked against the customer's own lead (one
    # lookup, a GET); no reward was sent.
    assert [r.method for r in harness.upstream.requests] == (["GET"] if "lead_id" in body else [])


async def test_dropin_extra_field_is_forbidden(harness: Harness) -> None:
    response = await harness.post(
        "/api/v2/merchant/activities",
        tok=token(),
        body={"trigger_id": SPIN, "trace": {"via_api_for_offer": {"offer_id": OFFER}}},
    )
    assert response.status_code == 400
    assert error_code(response) == "forbidden_field"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_body"),
        ({"trigger_id": 5}, 400, "invalid_body"),
        ({"trigger_id": UNKNOWN}, 403, "trigger_not_allowed"),
    ],
)
async def test_dropin_trigger_checks(
    harness: Harness, body: dict[str, Any], status: int, code: str
) -> None:
    response = await harness.post("/api/v2/merchant/activities", tok=token(), body=body)
    assert (response.status_code, error_code(response)) == (status, code)


# --- routes -----------------------------------------------------------------------------------


async def test_unknown_path_is_json_404(harness: Harness) -> None:
    response = await harness.client.get("/admin")
    assert response.status_code == 404
    assert error_code(response) == "not_found"


async def test_wrong_method_is_json_405(harness: Harness) -> None:
    response = await harness.client.put("/v1/triggers/spin-wheel")
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert response.headers["allow"] == "GET, POST"


async def test_a_trigger_shows_a_widget_its_reward_and_limits_without_a_session(
    harness: Harness,
) -> None:
    response = await harness.client.get("/v1/triggers/spin-wheel")
    assert response.status_code == 200
    shown = response.json()["trigger"]
    assert shown["reward"]["wallet"]["coin_range"] == {"min": 5, "max": 50}
    assert shown["limits"] == [{"limit": 3, "seconds": 60}]
    assert not any(secret in response.text for secret in ALL_SECRETS)
    assert error_code(await harness.client.get("/v1/triggers/not-listed")) == "trigger_not_allowed"
    assert harness.upstream.requests == []


async def test_nested_trigger_path_is_404(harness: Harness) -> None:
    response = await harness.post("/v1/triggers/spin-wheel/extra", tok=token())
    assert error_code(response) == "not_found"


async def test_health_and_readiness(harness: Harness) -> None:
    assert (await harness.client.get("/healthz")).json() == {"status": "ok"}
    assert (await harness.client.get("/readyz")).json() == {"status": "ready"}


# --- order of checks -------------------------------------------------------------------------


async def test_body_size_is_checked_before_the_session(harness: Harness) -> None:
    response = await harness.post("/v1/triggers/nope", content=b"x" * 20000)
    assert error_code(response) == "body_too_large"


async def test_chunked_body_size_and_media_type_are_checked_before_the_session(
    harness: Harness,
) -> None:
    """Without a Content-Length only reading the body tells its size: it is read first."""

    async def chunks(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 1000):
            yield b" " * 1000

    big = await harness.post("/v1/triggers/nope", content=chunks(20000))
    assert error_code(big) == "body_too_large"
    typed = await harness.post(
        "/v1/triggers/nope", content=chunks(1000), headers={"content-type": "text/plain"}
    )
    assert "content-length" not in typed.request.headers
    assert error_code(typed) == "unsupported_media_type"


@pytest.mark.parametrize("path", ["/v1/triggers/spin-wheel", "/api/v2/merchant/activities"])
async def test_the_body_of_a_request_refused_at_its_session_is_not_read(
    harness: Harness, path: str
) -> None:
    """With a Content-Length, size and media type are read off the headers: a flood of forged
    tokens costs no body read. A valid session's body is read as before."""
    received: list[bytes] = []

    async def call(authorization: bytes) -> int:
        async def receive() -> Message:
            received.append(authorization)
            return {"type": "http.request", "body": b"{}", "more_body": False}

        statuses: list[int] = []

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"2"),
                (b"authorization", authorization),
            ],
            "client": ("203.0.113.9", 5000),
        }
        await harness.app(scope, receive, send)
        return statuses[0]

    assert await call(b"Bearer forged.token.x") == 401
    assert received == []
    assert await call(f"Bearer {token()}".encode()) in (200, 400)  # the drop-in needs a body
    assert len(received) == 1


async def test_a_body_longer_than_its_content_length_is_refused(harness: Harness) -> None:
    """A server that takes Transfer-Encoding over a Content-Length of 0 would pass such a body:
    read after the session, it must be as long as declared (its media type was not checked)."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"trace": {}}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/triggers/spin-wheel",
        "headers": [
            (b"content-type", b"text/plain"),
            (b"content-length", b"0"),
            (b"authorization", f"Bearer {token()}".encode()),
        ],
        "client": ("203.0.113.9", 5000),
    }
    await harness.app(scope, receive, send)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"]["code"] == "invalid_body"
    assert harness.upstream.requests == []


async def test_media_type_is_checked_before_the_session(harness: Harness) -> None:
    response = await harness.post(
        "/v1/triggers/nope", content=b"x", headers={"content-type": "text/plain"}
    )
    assert error_code(response) == "unsupported_media_type"


async def test_session_is_checked_before_the_trigger(harness: Harness) -> None:
    response = await harness.post(f"/v1/triggers/{UNKNOWN}", headers={"authorization": "Bearer x"})
    assert error_code(response) == "invalid_session"


async def test_trigger_is_checked_before_the_source(harness: Harness) -> None:
    response = await harness.post(
        f"/v1/triggers/{UNKNOWN}", tok=token(), headers={"x-source": "bad"}
    )
    assert error_code(response) == "trigger_not_allowed"


async def test_source_is_checked_before_body_fields(harness: Harness) -> None:
    response = await harness.spin(headers={"x-source": "bad"}, body={"trace": {}})
    assert error_code(response) == "invalid_source"


# --- the upstream's answers -------------------------------------------------------------------


def answering(response: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: response


@pytest.mark.parametrize(
    ("upstream", "status", "code"),
    [
        (httpx.Response(500, json={"meta": {"status": "error"}}), 502, "upstream_error"),
        (httpx.Response(503, text="down"), 502, "upstream_error"),
        (httpx.Response(200, text="<html>not json</html>"), 502, "upstream_error"),
        (httpx.Response(200, json=[1, 2]), 502, "upstream_error"),
        (httpx.Response(302, headers={"location": "https://elsewhere"}), 502, "upstream_error"),
        (httpx.Response(200, content=b'{"a":"' + b"x" * 70000 + b'"}'), 502, "upstream_error"),
        (httpx.Response(401, json={"meta": {"status": "error"}}), 502, "upstream_rejected"),
        (
            httpx.Response(403, json={"data": {"message": "need write key"}}),
            502,
            "upstream_rejected",
        ),
    ],
)
async def test_upstream_faults_map_to_the_contract(
    upstream: httpx.Response, status: int, code: str
) -> None:
    async with open_harness() as h:
        h.upstream.answer = answering(upstream)
        response = await h.spin()
        assert response.status_code == status
        assert error_code(response) == code


async def test_upstream_429_is_503_busy_with_retry_after() -> None:
    async with open_harness() as h:
        h.upstream.answer = answering(httpx.Response(429, headers={"retry-after": "17"}))
        response = await h.spin()
        assert response.status_code == 503
        assert error_code(response) == "upstream_busy"
        assert response.headers["retry-after"] == "17"


async def test_unreachable_upstream_is_502() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with open_harness() as h:
        h.upstream.answer = refuse
        response = await h.spin()
        assert (response.status_code, error_code(response)) == (502, "upstream_error")


async def test_slow_upstream_is_504() -> None:
    import asyncio

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    settings = make_settings(upstream={"timeout_seconds": 0.1})
    async with open_harness(settings, transport=httpx.MockTransport(hang)) as h:
        response = await h.spin()
        assert (response.status_code, error_code(response)) == (504, "upstream_timeout")


async def test_nector_4xx_passes_through_with_its_envelope() -> None:
    envelope = {
        "meta": {"status": "error", "code": 422},
        "data": {"message": "Lead does not exists"},
    }
    async with open_harness() as h:
        h.upstream.answer = answering(
            httpx.Response(
                422, json=envelope, headers={"set-cookie": "nector=1", "x-internal": "y"}
            )
        )
        response = await h.spin()
        assert response.status_code == 422
        assert response.json() == envelope
        assert "set-cookie" not in response.headers
        assert "x-internal" not in response.headers


async def test_credentials_are_scrubbed_from_relayed_bodies() -> None:
    leaky = {"meta": {"status": "success"}, "data": {"echo": f"key={API_KEY}", WORKSPACE_ID: 1}}
    async with open_harness() as h:
        h.upstream.answer = answering(httpx.Response(200, json=leaky))
        response = await h.spin()
        assert response.status_code == 200
        assert API_KEY not in response.text
        assert WORKSPACE_ID not in response.text
        assert response.json()["data"]["echo"] == "key=[redacted]"


async def test_escaped_credentials_are_scrubbed_too() -> None:
    escaped = json.dumps({"data": {"k": API_KEY}}).replace("-", "\\u002d").encode()
    async with open_harness() as h:
        h.upstream.answer = answering(httpx.Response(200, content=escaped))
        response = await h.spin()
        assert API_KEY not in response.text


# --- minting over HTTP ------------------------------------------------------------------------


async def test_mint_route_issues_a_token_that_the_proxy_accepts(harness: Harness) -> None:
    from tests.helpers import MINT_KEY

    minted = await harness.post(
        "/v1/sessions", tok=MINT_KEY, body={"customer_id": "customer-minted", "ttl_seconds": 60}
    )
    assert minted.status_code == 200
    assert minted.headers["cache-control"] == "no-store"
    data = minted.json()
    assert set(data) == {"token", "expires_at"}
    response = await harness.spin(data["token"])
    assert response.status_code == 200
    assert harness.upstream.bodies[0]["customer_id"] == "customer-minted"


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "Basic x"])
async def test_mint_route_needs_the_mint_key(harness: Harness, auth: str | None) -> None:
    headers = {"authorization": auth} if auth else {}
    response = await harness.post(
        "/v1/sessions", body={"customer_id": "customer-x1"}, headers=headers
    )
    assert response.status_code == 401
    assert error_code(response) == "invalid_mint_key"


@pytest.mark.parametrize(
    "body",
    [
        {"customer_id": "short"},
        {"customer_id": "customer-a1", "lead_id": LEAD},
        {"customer_id": "customer-a1", "ttl_seconds": 999999},
        {"customer_id": "customer-a1", "admin": True},
    ],
)
async def test_mint_route_validates_claims(harness: Harness, body: dict[str, Any]) -> None:
    from tests.helpers import MINT_KEY

    response = await harness.post("/v1/sessions", tok=MINT_KEY, body=body)
    assert response.status_code == 400
    assert error_code(response) == "invalid_body"


async def test_mint_route_is_404_without_a_mint_key() -> None:
    from tests.helpers import ENVIRON

    environ = {k: v for k, v in ENVIRON.items() if k != "TRIGGER_PROXY_MINT_KEY"}
    async with open_harness(make_settings(environ)) as h:
        response = await h.post("/v1/sessions", tok="anything", body={"customer_id": "customer-x1"})
        assert (response.status_code, error_code(response)) == (404, "not_found")


# --- trusted peers ----------------------------------------------------------------------------


async def forged_session_codes(h: Harness, forwarded_for: list[str]) -> list[int]:
    codes = []
    for address in forwarded_for:
        response = await h.post(
            "/v1/triggers/spin-wheel",
            headers={"authorization": "Bearer forged", "x-forwarded-for": address},
        )
        codes.append(response.status_code)
    return codes


async def test_x_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    """A client cannot dodge the per-address limit by inventing X-Forwarded-For values."""
    settings = make_settings(limits={"per_ip_invalid_session": "3/minute"})
    async with open_harness(settings) as h:
        addresses = ["198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4"]
        assert await forged_session_codes(h, addresses) == [401, 401, 401, 429]


async def test_x_forwarded_for_from_a_trusted_peer_names_the_client() -> None:
    settings = make_settings(
        limits={"per_ip_invalid_session": "3/minute"},
        server={"forwarded_allow_ips": ["203.0.113.0/24"]},  # the harness's peer address
    )
    async with open_harness(settings) as h:
        # The right-most address that is not a trusted proxy is the client.
        many = ["198.51.100.1, 203.0.113.9"] * 4
        assert await forged_session_codes(h, many) == [401, 401, 401, 429]
        assert await forged_session_codes(h, ["198.51.100.2"]) == [401]


async def test_x_request_id_is_taken_only_from_a_trusted_peer() -> None:
    untrusted = make_settings()
    trusted = make_settings(server={"forwarded_allow_ips": ["203.0.113.7"]})
    for settings, expected in ((untrusted, False), (trusted, True)):
        async with open_harness(settings) as h:
            response = await h.spin(headers={"x-request-id": "lb-abc-123"})
            sent = h.upstream.requests[0].headers["x-request-id"]
            assert (response.headers["x-request-id"] == "lb-abc-123") is expected
            assert sent == response.headers["x-request-id"]
    async with open_harness(trusted) as h:
        odd = await h.spin(headers={"x-request-id": "<script>"})
        assert odd.headers["x-request-id"] != "<script>"
