"""What the tests share: settings, tokens, a clock, an app over httpx.MockTransport, the
contract's error shape, and the rule that under CI a missing dependency fails instead of
skipping (as httpx's tests/common.py)."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from proxy.app import App, create_app
from proxy.config.settings import Settings
from proxy.identity.sessions import mint_token
from proxy.limits.decisions import LimitStore
from proxy.limits.memory_store import MemoryStore

API_KEY = "nector-api-key-0123456789-abcdefghij-KEY"
WORKSPACE_ID = "nector-workspace-0123456789-abcdefgh-WS"
SESSION_SECRET = "session-secret-0123456789-abcdefghijklmnop"
OLD_SESSION_SECRET = "old-session-secret-0123456789-abcdefghijk"
MINT_KEY = "mint-key-0123456789-abcdefghijklmnopqrstuv"
ALL_SECRETS = (API_KEY, WORKSPACE_ID, SESSION_SECRET, OLD_SESSION_SECRET, MINT_KEY)

SPIN = "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10"
CHECKIN = "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f"
MOBILE_ONLY = "3c9d8e7f-6a5b-4c3d-8e2f-1a0b9c8d7e6f"
OFFER = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
UNKNOWN = "11111111-2222-4333-8444-555555555555"
SHOP = "https://shop.example.com"
CUSTOMER = "customer-0001"
UPSTREAM_URL = "https://platform.nector.io/api/v2/merchant/activities"

ENVIRON = {
    "TRIGGER_PROXY_API_KEY": API_KEY,
    "TRIGGER_PROXY_WORKSPACE_ID": WORKSPACE_ID,
    "TRIGGER_PROXY_SESSION_SECRETS": f"{OLD_SESSION_SECRET},{SESSION_SECRET}",
    "TRIGGER_PROXY_MINT_KEY": MINT_KEY,
}


def config(**sections: Any) -> dict[str, Any]:
    """A valid config mapping; keyword arguments replace or extend whole sections."""
    base: dict[str, Any] = {
        "upstream": {"url": UPSTREAM_URL, "timeout_seconds": 2.0},
        "cors": {"allow_origins": [SHOP], "allow_credentials": True},
        "limits": {"per_customer": "100/minute", "upstream": "1000/minute"},
        "triggers": [
            {
                "id": SPIN,
                "name": "spin-wheel",
                "sources": ["web", "mobile"],
                "per_customer": "3/minute",
                "override": {
                    "wallet": {
                        "title": "Spin the wheel",
                        "operation": "cr",
                        "coin_range": {"min": 5, "max": 50},
                    }
                },
            },
            {"id": CHECKIN, "name": "daily-checkin", "override": {"offer": {"offer_id": OFFER}}},
            {"id": MOBILE_ONLY, "name": "app-open", "sources": ["mobile"]},
        ],
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(name), dict):
            base[name] = {**base[name], **value}
        else:
            base[name] = value
    return base


class Clock:
    """A clock the test moves by hand: ``clock.now += 60``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_settings(environ: dict[str, str] | None = None, **sections: Any) -> Settings:
    return Settings.from_mapping(config(**sections), environ or ENVIRON)


def token(
    customer_id: str | None = CUSTOMER, *, secret: str = SESSION_SECRET, **claims: Any
) -> str:
    if customer_id is not None and "lead_id" not in claims:
        claims["customer_id"] = customer_id
    return mint_token([secret], claims)


def nector_success(coins: int = 10) -> dict[str, Any]:
    return {
        "meta": {"status": "success"},
        "data": {
            "activity": {"_id": "a1"},
            "wallet_reward": {"coins": coins, "operation": "cr", "balance": coins},
        },
    }


@dataclass
class Upstream:
    """A MockTransport handler that records what reached "Nector" and answers as told."""

    answer: Callable[[httpx.Request], httpx.Response] = field(
        default=lambda request: httpx.Response(200, json=nector_success())
    )
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


@dataclass
class Harness:
    app: App
    client: httpx.AsyncClient
    upstream: Upstream

    async def post(
        self,
        path: str,
        *,
        tok: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if tok is not None:  # an explicit Authorization header wins over the default token
            all_headers.setdefault("authorization", f"Bearer {tok}")
        if body is not None and "content" not in kwargs:
            kwargs["json"] = body
        return await self.client.post(path, headers=all_headers, **kwargs)

    async def spin(self, tok: str | None = None, **kwargs: Any) -> httpx.Response:
        return await self.post("/v1/triggers/spin-wheel", tok=tok or token(), **kwargs)


@contextlib.asynccontextmanager
async def open_harness(
    settings: Settings | None = None,
    *,
    upstream: Upstream | None = None,
    store: LimitStore | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    real_transport: bool = False,
) -> AsyncIterator[Harness]:
    """The app over ASGI; Nector is ``upstream`` (a MockTransport) unless ``transport`` is
    given, or the product's own default transport with ``real_transport``."""
    upstream = upstream or Upstream()
    app = create_app(
        settings or make_settings(),
        transport=None if real_transport else transport or upstream.transport(),
        store=MemoryStore() if store is None else store,
    )
    asgi = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with app.lifespan(), httpx.AsyncClient(transport=asgi, base_url="http://proxy") as client:
        yield Harness(app, client, upstream)


def error_code(response: httpx.Response) -> str:
    """The refusal's code, after checking its shape: the contract's error object, inside
    Nector's envelope on Nector's paths (what clients written for Nector read)."""
    body = response.json()
    path = response.request.url.path.removeprefix("/shopify")  # an App Proxy request's route
    if path.startswith("/api/v2/merchant/"):
        assert set(body) == {"meta", "data", "error"}, body
        assert body["meta"] == {"status": "error", "code": response.status_code}, body
        # data.message is the shopper's sentence (proxy/http/shopper.py), never the developer's.
        assert set(body["data"]) == {"message"}, body
        assert isinstance(body["data"]["message"], str), body
        assert body["data"]["message"], body
        body = {"error": body["error"]}
    assert set(body) == {"error"}, body
    # A campaign not open yet also says when it opens (its only extra field).
    extra = {"opens_at"} if body["error"].get("code") == "trigger_not_active" else set()
    assert set(body["error"]) == {"code", "message", "request_id"} | extra, body
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    code: str = body["error"]["code"]
    return code


def need(available: bool, reason: str) -> None:
    """Skip a test whose dependency is missing, except under CI, where that is a failure:
    a missing install step must never pass as green."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: a missing dependency is a failure, not a skip)")
    pytest.skip(reason)


# --- what the suites tried -----------------------------------------------------------------

TRIED: dict[str, Counter[str]] = defaultdict(Counter)


def tried(suite: str, what: str) -> None:
    """Count one input, fault or answer under ``suite``, for the summary at the end of the run."""
    TRIED[suite][what] += 1
