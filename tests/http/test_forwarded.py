"""Forwarded addresses behind the documented load balancer: compose trusts nginx's network,
so one bad client is limited alone; an untrusted peer's X-Forwarded-For is a WARNING, once."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.app import create_app
from proxy.limits.memory_store import MemoryStore
from tests.helpers import ENVIRON, Upstream, make_settings, token

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "compose.yaml").read_text())
NGINX = "172.28.0.9"  # an address compose's network may give the load balancer


def client_behind(app: object, peer: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://proxy")


def test_compose_trusts_the_network_it_gives_the_load_balancer() -> None:
    trusted = COMPOSE["services"]["proxy"]["environment"]["TRIGGER_PROXY_FORWARDED_ALLOW_IPS"]
    [subnet] = [c["subnet"] for c in COMPOSE["networks"]["default"]["ipam"]["config"]]
    assert ipaddress.ip_network(subnet).subnet_of(ipaddress.ip_network(trusted))  # type: ignore[arg-type]
    assert ipaddress.ip_address(NGINX) in ipaddress.ip_network(subnet)


async def test_behind_composes_nginx_one_bad_client_locks_out_only_itself() -> None:
    environ = dict(ENVIRON)
    environ["TRIGGER_PROXY_FORWARDED_ALLOW_IPS"] = COMPOSE["services"]["proxy"]["environment"][
        "TRIGGER_PROXY_FORWARDED_ALLOW_IPS"
    ]
    upstream = Upstream()
    app = create_app(make_settings(environ), transport=upstream.transport(), store=MemoryStore())
    async with app.lifespan(), client_behind(app, NGINX) as client:
        bad = {"authorization": "Bearer forged", "x-forwarded-for": "198.51.100.1"}
        refusals = [await client.post("/v1/triggers/spin-wheel", headers=bad) for _ in range(61)]
        assert refusals[-1].status_code == 429  # the bad client is past its failure limit
        good = {"authorization": f"Bearer {token()}", "x-forwarded-for": "198.51.100.2"}
        answer = await client.post("/v1/triggers/spin-wheel", headers=good)
    assert answer.status_code == 200, answer.text
    assert len(upstream.requests) == 1


async def test_forwarded_headers_from_an_untrusted_peer_are_a_warning_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(make_settings(), transport=Upstream().transport(), store=MemoryStore())
    headers = {"authorization": f"Bearer {token()}", "x-forwarded-for": "198.51.100.1"}
    with caplog.at_level(logging.WARNING, logger="trigger_proxy"):
        async with app.lifespan(), client_behind(app, "10.0.0.5") as client:
            await client.get("/healthz")
            for _ in range(3):
                await client.post("/v1/triggers/spin-wheel", headers=headers)
    lines = [r.getMessage() for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("X-Forwarded-For from 10.0.0.5, which server.forwarded_allow_ips")


async def test_forwarded_headers_from_a_trusted_peer_are_no_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(server={"forwarded_allow_ips": ["10.0.0.0/8"]})
    app = create_app(settings, transport=Upstream().transport(), store=MemoryStore())
    with caplog.at_level(logging.WARNING, logger="trigger_proxy"):
        async with app.lifespan(), client_behind(app, "10.0.0.5") as client:
            await client.get("/healthz", headers={"x-forwarded-for": "198.51.100.1"})
    assert not [r for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
