"""Property-based tests over bodies, headers and tokens.

For every generated request: no 500; the answer is one of the contract's statuses and codes;
and Nector is called only for a fully valid request, exactly once, with the session's customer
and the config's override, never anything the client sent.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from proxy import errors
from proxy.identity.claims import Session
from proxy.identity.sessions import SALT
from proxy.limits.decisions import Decision, Outcome, WindowState
from proxy.limits.keys import Window
from proxy.rewards.memo import OverQuota
from proxy.rewards.policy import TriggerPolicy, upstream_body
from tests.helpers import (
    CUSTOMER,
    SESSION_SECRET,
    SHOP,
    SPIN,
    Upstream,
    make_settings,
    open_harness,
    token,
    tried,
)

CODES = {
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.ProxyError) and cls is not errors.ProxyError
}
STATUSES = {200, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 502, 503, 504}
SPIN_TRACE = {
    "via_api_for_wallet": {
        "title": "Spin the wheel",
        "operation": "cr",
        "coin_range": {"min": 5, "max": 50},
    }
}
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Headers must be latin-1 and free of CR/LF to be sent at all.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=300,
)


class Client:
    """The app over ASGI, driven synchronously from one long-lived event loop."""

    def __init__(
        self, runner: asyncio.Runner, client: httpx.AsyncClient, upstream: Upstream
    ) -> None:
        self.runner = runner
        self.client = client
        self.upstream = upstream

    def check(
        self, method: str, path: str, *, suite: str, valid: bool = False, **kwargs: Any
    ) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        kwargs["headers"] = {k: v.encode("latin-1") for k, v in headers.items()}
        before = len(self.upstream.requests)
        response = self.runner.run(self.client.request(method, path, **kwargs))
        calls = self.upstream.requests[before:]
        tried(suite, f"{response.status_code}")
        assert response.status_code != 500, response.text
        assert response.status_code in STATUSES, response.status_code
        if response.status_code != 200 and method != "HEAD":
            body = response.json()
            assert body["error"]["code"] in CODES
        assert len(calls) <= 1
        if calls:
            assert response.status_code == 200
            sent = json.loads(calls[0].content)
            assert sent["customer_id"] == CUSTOMER
            assert sent.get("trace") in (None, SPIN_TRACE)
            assert set(sent) <= {"trigger_id", "customer_id", "trace"}
        if valid:
            assert calls, (response.status_code, response.text)
        return response


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    upstream = Upstream()
    settings_ = make_settings(
        limits={"per_customer": "1000000/minute", "upstream": "1000000/minute",
                "per_ip_invalid_session": "1000000/minute"},
        triggers=[{"id": SPIN, "name": "spin-wheel",
                   "override": {"wallet": SPIN_TRACE["via_api_for_wallet"]}}],
    )  # fmt: skip
    with asyncio.Runner() as runner:
        harness = open_harness(settings_, upstream=upstream)
        h = runner.run(harness.__aenter__())
        try:
            yield Client(runner, h.client, upstream)
        finally:
            runner.run(harness.__aexit__(None, None, None))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@EXAMPLES
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.dictionaries(
            st.sampled_from(
                ["trace", "customer_id", "lead_id", "trigger_id", "name", "metadetail", "x"]
            ),
            json_values,
            max_size=3,
        ).map(lambda v: json.dumps(v).encode()),
        st.integers(min_value=1, max_value=6000).map(lambda n: b"[" * n + b"]" * n),
        st.integers(min_value=1, max_value=5000).map(lambda n: b'{"n": ' + b"9" * n + b"}"),
        st.just(b'{"trace": 1, "trace": 2}'),
        st.just(b'{"a": NaN}'),
        st.binary(min_size=16385, max_size=17000),
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
            "application/json-patch+json",
        ]
    ),
    route=st.sampled_from(["/v1/triggers/spin-wheel", "/api/v2/merchant/activities"]),
)
def test_any_body(client: Client, body: bytes, content_type: str, route: str) -> None:
    headers = {"authorization": f"Bearer {token()}"}
    if content_type:
        headers["content-type"] = content_type
    client.check("POST", route, suite="properties: bodies", content=body, headers=headers)


@EXAMPLES
@given(
    source=st.none() | header_text | st.sampled_from(["web", "mobile", "unix", "WEB", " web"]),
    key=st.none() | header_text,
    origin=st.none() | st.sampled_from([SHOP, "https://evil.example", "null", "", SHOP + "/"]),
    extra=st.dictionaries(
        st.sampled_from(["x-apikey", "x-workspaceid", "x-forwarded-for", "x-request-id", "cookie"]),
        header_text,
        max_size=3,
    ),
)
def test_any_headers(
    client: Client, source: str | None, key: str | None, origin: str | None, extra: dict[str, str]
) -> None:
    headers = {"authorization": f"Bearer {token()}", **extra}
    for name, value in (("x-source", source), ("idempotency-key", key), ("origin", origin)):
        if value is not None:
            headers[name] = value
    client.check("POST", "/v1/triggers/spin-wheel", suite="properties: headers", headers=headers)


def resigned(payload: Any, *, secret: str = SESSION_SECRET, salt: str = SALT) -> str:
    return URLSafeTimedSerializer(secret, salt=salt).dumps(payload)


@EXAMPLES
@given(
    tok=st.one_of(
        header_text,
        st.integers(min_value=0, max_value=80).map(lambda n: token()[:n]),
        st.integers(min_value=0, max_value=80).map(lambda n: token()[n:]),
        st.sampled_from(["itsdangerous", "trigger-proxy", "trigger-proxy.session.", ""]).map(
            lambda salt: resigned({"customer_id": CUSTOMER}, salt=salt)
        ),
        st.just(
            resigned({"customer_id": CUSTOMER}, secret="another-secret-of-32-characters-xxxxx")
        ),
        json_values.map(resigned),
        st.dictionaries(
            st.sampled_from(
                ["customer_id", "lead_id", "source", "exp", "name", "role", "metadetail"]
            ),
            json_values,
        ).map(resigned),
        st.tuples(st.integers(min_value=0, max_value=60), st.characters(codec="ascii")).map(
            lambda t: (lambda v: v[: t[0]] + t[1] + v[t[0] + 1 :])(token())
        ),
    ),
    scheme=st.sampled_from(["Bearer", "bearer", "Basic", "Token", ""]),
)
def test_any_token(client: Client, tok: str, scheme: str) -> None:
    headers = {"authorization": f"{scheme} {tok}".strip()}
    response = client.check(
        "POST", "/v1/triggers/spin-wheel", suite="properties: tokens", headers=headers
    )
    if response.status_code == 200:
        # Only a genuine session gets through: signed by our secret, under our salt.
        assert tok.strip()
        assert scheme.lower() == "bearer"


@EXAMPLES
@given(
    trigger=st.one_of(
        header_text.filter(lambda t: "/" not in t and "?" not in t and "#" not in t),
        st.just("spin-wheel"),
        st.just(SPIN),
        st.just(SPIN.upper()),
    ),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]),
    prefix=st.sampled_from(["/v1/triggers/", "/", "/healthz/", "/api/v2/merchant/"]),
)
def test_any_route_and_method(client: Client, trigger: str, method: str, prefix: str) -> None:
    headers = {"authorization": f"Bearer {token()}"}
    path = prefix + httpx.URL("http://x/").copy_with(path="/" + trigger).raw_path.decode()[1:]
    response = client.check(method, path, suite="properties: routes", headers=headers)
    if (
        prefix == "/v1/triggers/"
        and method == "POST"
        and trigger in ("spin-wheel", SPIN, SPIN.upper())
    ):
        assert response.status_code == 200


def test_a_fully_valid_request_is_forwarded(client: Client) -> None:
    headers = {"authorization": f"Bearer {token()}", "origin": SHOP, "x-source": "mobile"}
    client.check(
        "POST", "/v1/triggers/spin-wheel", suite="properties: valid", valid=True, headers=headers
    )


UPSTREAM_TRIGGERS = make_settings(
    triggers=[
        {
            "id": SPIN,
            "override": {
                "wallet": {
                    "title": 'Spin \u00e9 "wheel"',
                    "operation": "cr",
                    "coin_range": {"min": 5, "max": 50},
                }
            },
        },
        {"id": "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f", "name": "plain"},
    ]
).triggers


@EXAMPLES
@given(
    subject=st.text(min_size=1, max_size=40),
    field=st.sampled_from(["customer_id", "lead_id"]),
    name=st.none() | st.text(max_size=10),
    metadetail=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
    trigger_index=st.sampled_from([0, 1]),
)
def test_the_upstream_body_is_the_compact_json_of_the_trigger_and_the_session(
    subject: str,
    field: str,
    name: str | None,
    metadetail: dict[str, str] | None,
    trigger_index: int,
) -> None:
    """Sessions with their subject only take a fast path (the trigger's parts encoded once):
    its bytes are json.dumps's, as an Idempotency-Key's fingerprint needs them to stay."""
    policy = TriggerPolicy(UPSTREAM_TRIGGERS, ())
    trigger = policy.by_id(UPSTREAM_TRIGGERS[trigger_index].id)
    session = Session(field, subject, name, None, metadetail, None, None, 0, f"{field}:{subject}")
    expected: dict[str, Any] = {"trigger_id": trigger.id, field: subject}
    if name is not None:
        expected["name"] = name
    if metadetail is not None:
        expected["metadetail"] = metadetail
    if trigger.trace is not None:
        expected["trace"] = trigger.trace
    assert upstream_body(trigger, session) == json.dumps(expected, separators=(",", ":")).encode()


@given(
    retry_after=st.floats(0.001, 200),
    reset=st.floats(0.001, 200),
    steps=st.lists(st.floats(0, 3), min_size=1, max_size=60),
)
def test_a_remembered_refusal_shows_the_seconds_it_would_be_given_now(
    retry_after: float, reset: float, steps: list[float]
) -> None:
    """OverQuota rebuilds its headers only when a second turns: at every moment they must be
    what the store's decision would give then (never early)."""
    start = 1_800_000_000.0
    window = Window("c:60:x", 3, 60)
    decision = Decision(Outcome.RATE_LIMITED, retry_after, (WindowState(0, reset),))
    over = OverQuota(start, decision, [window], b'"1m";q=3;w=60')
    now = start
    for step in steps:
        now += step
        shown = dict(over.headers(now))
        assert shown[b"retry-after"] == b"%d" % max(1, math.ceil(start + retry_after - now))
        assert shown[b"ratelimit-reset"] == b"%d" % max(0, math.ceil(start + reset - now))
