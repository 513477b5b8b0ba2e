"""What real clients and real keys send: Nector-issued credentials as they are, Nector's own
widget on the drop-in route, storefront-purpose keys, and calls that never left the machine."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest

from proxy.config.settings import Secret, Settings
from proxy.errors import UpstreamUnreachable
from proxy.identity.leadtokens import LeadTokens
from proxy.limits.decisions import LimitStore
from proxy.limits.memory_store import MemoryStore
from tests.helpers import (
    API_KEY,
    ENVIRON,
    SHOP,
    SPIN,
    UNKNOWN,
    WORKSPACE_ID,
    Harness,
    Upstream,
    error_code,
    make_settings,
    nector_success,
    open_harness,
    token,
)
from tests.redis_util import free_port, shared_redis_store
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

LEAD = "5f0c6b7e-2a1d-4e3f-9b8c-7d6e5f4a3b2c"
LEAD_SECRET = "nector-signing-secret"
WIDGET_HEADERS = {"x-apikey": "null", "x-apikey-algo": "sha256", "x-source": "web"}


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> LimitStore:
    return MemoryStore() if request.param == "memory" else shared_redis_store()


# --- credentials as Nector issues them -------------------------------------------------------


async def test_a_short_workspace_id_and_an_ak_key_are_forwarded_exactly_as_given() -> None:
    api_key, workspace = "ak_" + "9f8e7d6c5b4a3210" * 4, "shopify-tinyshop"
    environ = {**ENVIRON, "TRIGGER_PROXY_API_KEY": api_key, "TRIGGER_PROXY_WORKSPACE_ID": workspace}
    async with open_harness(make_settings(environ)) as h:
        assert (await h.spin()).status_code == 200
    sent = h.upstream.requests[0].headers
    assert sent.get_list("x-apikey") == [api_key]
    assert sent.get_list("x-workspaceid") == [workspace]


# --- Nector's own widget on the drop-in route ------------------------------------------------


async def test_the_widgets_preflight_is_allowed_on_nectors_path(harness: Harness) -> None:
    asked = "accept, authorization, content-type, x-apikey, x-apikey-algo, x-source, x-workspaceid"
    response = await harness.client.options(
        "/api/v2/merchant/activities",
        headers={
            "origin": SHOP,
            "access-control-request-method": "POST",
            "access-control-request-headers": asked,
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SHOP
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    wanted = {h.strip() for h in asked.split(",")} | {"idempotency-key"}
    assert wanted <= allowed
    assert harness.upstream.requests == []


async def test_the_v1_routes_keep_their_own_preflight(harness: Harness) -> None:
    response = await harness.client.options(
        "/v1/triggers/spin-wheel",
        headers={"origin": SHOP, "access-control-request-method": "POST"},
    )
    assert response.status_code == 204
    assert "x-apikey" not in response.headers["access-control-allow-headers"]


async def test_the_widgets_call_is_rewarded_and_its_credentials_never_forwarded(
    harness: Harness,
) -> None:
    response = await harness.post(
        "/api/v2/merchant/activities",
        tok=token(),
        body={"trigger_id": SPIN},
        headers={**WIDGET_HEADERS, "origin": SHOP, "x-workspaceid": "somebody-else"},
    )
    assert response.status_code == 200
    assert response.json() == nector_success()
    (sent,) = harness.upstream.requests
    assert sent.headers.get_list("x-apikey") == [API_KEY]
    assert sent.headers.get_list("x-workspaceid") == [WORKSPACE_ID]
    assert "x-apikey-algo" not in sent.headers


@pytest.mark.parametrize(
    ("tok", "body", "status", "code"),
    [
        (None, {"trigger_id": SPIN}, 401, "missing_session"),
        ("forged", {"trigger_id": SPIN}, 401, "invalid_session"),
        ("valid", {"trigger_id": UNKNOWN}, 403, "trigger_not_allowed"),
        ("valid", {"trigger_id": SPIN, "customer_id": "customer-9999"}, 403, "identity_mismatch"),
        ("valid", {"trigger_id": SPIN, "trace": {}}, 400, "forbidden_field"),
        ("valid", {}, 400, "invalid_body"),
    ],
)
async def test_dropin_refusals_carry_nectors_envelope(
    harness: Harness, tok: str | None, body: dict[str, object], status: int, code: str
) -> None:
    given = {"valid": token(), "forged": token() + "x", None: None}[tok]
    response = await harness.post(
        "/api/v2/merchant/activities", tok=given, body=body, headers=WIDGET_HEADERS
    )
    assert response.status_code == status
    assert error_code(response) == code  # checks meta.status, meta.code and data.message
    assert response.json()["meta"] == {"status": "error", "code": status}
    assert harness.upstream.requests == []


async def test_nectors_paths_answer_unknown_routes_and_methods_in_its_envelope(
    harness: Harness,
) -> None:
    for response, status in [
        (await harness.client.get("/api/v2/merchant/nothing-here"), 404),
        (await harness.client.delete("/api/v2/merchant/activities"), 405),
    ]:
        assert response.status_code == status
        assert response.json()["meta"] == {"status": "error", "code": status}
        assert response.json()["data"]["message"]


async def test_an_upstream_failure_on_the_dropin_route_is_in_nectors_envelope() -> None:
    upstream = Upstream(answer=lambda request: httpx.Response(500, text="oops"))
    async with open_harness(upstream=upstream) as h:
        response = await h.post(
            "/api/v2/merchant/activities", tok=token(), body={"trigger_id": SPIN}
        )
        v1 = await h.spin(token("customer-0002"))
    assert response.status_code == 502
    assert error_code(response) == "upstream_error"
    assert set(v1.json()) == {"error"}  # the /v1 routes keep their shape


# --- storefront-purpose keys -----------------------------------------------------------------


def storefront_settings() -> Settings:
    environ = {**ENVIRON, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": LEAD_SECRET}
    return make_settings(environ, upstream={"key_purpose": "storefront"})


async def test_a_storefront_key_sends_a_lead_token_for_the_sessions_lead() -> None:
    async with open_harness(storefront_settings()) as h:
        before = int(time.time())
        assert (await h.spin(token(None, lead_id=LEAD))).status_code == 200
        dropin = await h.post(
            "/api/v2/merchant/activities",
            tok=token(None, lead_id=LEAD),
            body={"trigger_id": SPIN, "lead_id": LEAD},
        )
        assert dropin.status_code == 200
    for sent in h.upstream.requests:
        claims = jwt.decode(sent.headers["x-leadtoken"], LEAD_SECRET, algorithms=["HS256"])
        assert claims["lead_id"] == LEAD
        assert before < claims["exp"] <= int(time.time()) + 3600
        assert LEAD_SECRET not in sent.content.decode()


async def test_a_lead_token_nector_echoes_never_reaches_the_client() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        lead_token = request.headers["x-leadtoken"]
        signature = lead_token.rpartition(".")[2]
        hidden = f"\\u{ord(lead_token[0]):04x}{lead_token[1:]}"  # one character JSON-escaped
        data = f'{{"echo": "{lead_token}", "signature": "{signature}", "escaped": "{hidden}"}}'
        body = '{"meta": {"status": "success"}, "data": ' + data + "}"
        return httpx.Response(200, content=body.encode())

    async with open_harness(storefront_settings(), upstream=Upstream(answer=echo)) as h:
        response = await h.spin(token(None, lead_id=LEAD))
    assert response.status_code == 200
    sent = h.upstream.requests[0].headers["x-leadtoken"]
    assert sent.rpartition(".")[2] not in response.text
    assert response.json()["data"] == {
        "echo": "[redacted]",
        "signature": "[redacted]",
        "escaped": "[redacted]",
    }


async def test_a_storefront_key_refuses_a_customer_id_session_before_the_upstream() -> None:
    async with open_harness(storefront_settings()) as h:
        response = await h.spin(token("customer-0001"))
        dropin = await h.post(
            "/api/v2/merchant/activities", tok=token("customer-0001"), body={"trigger_id": SPIN}
        )
    assert (response.status_code, error_code(response)) == (403, "lead_session_required")
    assert (dropin.status_code, error_code(dropin)) == (403, "lead_session_required")
    assert h.upstream.requests == []


async def test_a_server_key_sends_no_lead_token(harness: Harness) -> None:
    assert (await harness.spin(token(None, lead_id=LEAD))).status_code == 200
    assert "x-leadtoken" not in harness.upstream.requests[0].headers


def test_lead_tokens_are_reused_only_well_inside_their_hour() -> None:
    now = [1_000_000.0]
    tokens = LeadTokens(Secret(LEAD_SECRET), clock=lambda: now[0])
    first = tokens.for_lead(LEAD)
    assert tokens.for_lead(LEAD) == first
    now[0] += 3000 - 1
    assert tokens.for_lead(LEAD) == first
    now[0] += 1  # ten minutes before it expires: a new one
    renewed = tokens.for_lead(LEAD)
    assert renewed != first
    claims = jwt.decode(renewed, LEAD_SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert claims == {"lead_id": LEAD, "exp": int(now[0]) + 3600}


# --- calls that never reached Nector ---------------------------------------------------------


class Unreachable:
    """Refuses the connection until ``up`` is set, then answers as Nector does."""

    def __init__(self) -> None:
        self.up = False
        self.answered = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("connection refused", request=request)
        self.answered += 1
        return httpx.Response(200, json=nector_success())


async def test_a_refused_connection_spends_no_quota_and_frees_its_key(store: LimitStore) -> None:
    nector = Unreachable()
    async with open_harness(store=store, transport=httpx.MockTransport(nector)) as h:
        statuses = []
        for _ in range(5):  # the trigger allows 3 a minute
            response = await h.spin(headers={"idempotency-key": "spin-1"})
            statuses.append((response.status_code, error_code(response)))
        assert statuses == [(502, "upstream_error")] * 5
        nector.up = True
        retry = await h.spin(headers={"idempotency-key": "spin-1"})
        assert retry.status_code == 200
        assert "idempotent-replayed" not in retry.headers
        assert retry.headers["ratelimit-remaining"] == "2"
        assert nector.answered == 1


async def test_a_call_that_may_have_reached_nector_stays_spent_and_stored(
    store: LimitStore,
) -> None:
    def lost_answer(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset", request=request)

    async with open_harness(store=store, transport=httpx.MockTransport(lost_answer)) as h:
        first = await h.spin(headers={"idempotency-key": "spin-1"})
        retry = await h.spin(headers={"idempotency-key": "spin-1"})
        others = [(await h.spin()).status_code for _ in range(3)]
    assert (first.status_code, error_code(first)) == (502, "upstream_error")
    assert retry.status_code == 502
    assert retry.headers["idempotent-replayed"] == "true"
    assert others == [502, 502, 429]  # the first call's quota stays spent


async def test_a_closed_port_over_the_real_transport_is_502_every_time(store: LimitStore) -> None:
    settings = make_settings(upstream={"url": f"http://127.0.0.1:{free_port()}/x"})
    async with open_harness(settings, store=store, real_transport=True) as h:
        statuses = [(await h.spin()).status_code for _ in range(5)]
    assert statuses == [502] * 5


async def test_the_unreachable_upstreams_cause_is_named() -> None:
    refused = httpx.ConnectError("refused")
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    settings = make_settings()

    def fail(request: httpx.Request) -> httpx.Response:
        raise refused

    from proxy.upstream.client import UpstreamClient

    assert settings.secrets.api_key is not None
    assert settings.secrets.workspace_id is not None
    client = UpstreamClient(
        settings.upstream,
        api_key=settings.secrets.api_key,
        workspace_id=settings.secrets.workspace_id,
        transport=httpx.MockTransport(fail),
    )
    with pytest.raises(UpstreamUnreachable) as info:
        await client.send(b"{}", source="web", request_id="r1")
    await client.aclose()
    assert info.value.cause == "refused"
    assert (info.value.status, info.value.code) == (502, "upstream_error")


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with open_harness() as h:
        yield h


@pytest.mark.slow
def test_serve_with_a_storefront_key_is_accepted_by_nector(tmp_path: Path) -> None:
    stand_in = stand_in_for(SPIN, lead_token_secret=LEAD_SECRET)
    stand_in.add_lead(lead_id=LEAD)
    lead_session = {"authorization": f"Bearer {token(None, lead_id=LEAD)}"}
    customer_session = {"authorization": f"Bearer {token('customer-0001')}"}
    with StandInServer(stand_in) as nector:
        config = proxy_config(nector.url, upstream={"key_purpose": "storefront"})
        answers = {}
        for secret in (LEAD_SECRET, "not-the-signing-secret"):
            environ = {**ENVIRON, "TRIGGER_PROXY_LEAD_TOKEN_SECRET": secret}
            with ProxyProcess(tmp_path, config, environ=environ) as proxy:
                url = f"{proxy.base_url}/v1/triggers/spin-wheel"
                answers[secret] = httpx.post(url, headers=lead_session)
                refused = httpx.post(url, headers=customer_session)
                assert (refused.status_code, error_code(refused)) == (403, "lead_session_required")
    assert answers[LEAD_SECRET].status_code == 200
    wrong = answers["not-the-signing-secret"]
    assert (wrong.status_code, error_code(wrong)) == (502, "upstream_rejected")
    assert len(stand_in.calls) == 2  # the customer_id sessions never reached Nector
