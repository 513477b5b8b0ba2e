"""The application as a Starlette app: its type, mounting under a prefix, its lifespan."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from proxy.app import create_app
from proxy.http.asgi import Message
from proxy.limits.memory_store import MemoryStore
from tests.helpers import Upstream, make_settings, nector_success, token


def test_create_app_returns_a_starlette_application() -> None:
    assert isinstance(create_app(make_settings()), Starlette)


async def test_mounted_under_a_prefix_every_route_answers_there_and_nowhere_else() -> None:
    upstream = Upstream()
    rewards = create_app(make_settings(), transport=upstream.transport(), store=MemoryStore())
    parent = Starlette(routes=[Mount("/rewards", app=rewards)])
    transport = httpx.ASGITransport(app=parent)
    bearer = {"authorization": f"Bearer {token()}"}
    async with (
        rewards.router.lifespan_context(parent),
        httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
    ):
        assert (await client.get("/rewards/healthz")).json() == {"status": "ok"}
        assert (await client.get("/rewards/openapi.json")).status_code == 200
        reward = await client.post("/rewards/v1/triggers/spin-wheel", headers=bearer)
        refused = await client.post("/rewards/v1/triggers/not-listed", headers=bearer)
        outside = await client.post("/v1/triggers/spin-wheel", headers=bearer)
        unknown = await client.get("/rewards/nothing")
    assert reward.status_code == 200
    assert reward.json() == nector_success()
    assert upstream.bodies[0]["customer_id"] == "customer-0001"
    assert refused.json()["error"]["code"] == "trigger_not_allowed"
    assert outside.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    assert len(upstream.requests) == 1


async def test_a_shutdown_failure_is_reported_as_one() -> None:
    class FailingStore(MemoryStore):
        async def aclose(self) -> None:
            raise OSError("the store would not close")

    app = create_app(make_settings(), store=FailingStore(), transport=Upstream().transport())
    sent: list[Message] = []
    messages: Iterator[Message] = iter(
        [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    )

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    with contextlib.suppress(OSError):  # Starlette raises it again for the server, after reporting
        await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.failed"]


async def test_a_websocket_is_closed_without_an_error() -> None:
    app = create_app(make_settings())
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "websocket", "path": "/healthz", "headers": []}, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_starlette_routes_get_the_request_id_and_cors_headers() -> None:
    upstream = Upstream(answer=lambda request: httpx.Response(200, json=nector_success()))
    app = create_app(make_settings(), transport=upstream.transport(), store=MemoryStore())
    transport = httpx.ASGITransport(app=app)
    origin = {"origin": "https://shop.example.com"}
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://proxy") as client,
    ):
        health = await client.get("/healthz", headers=origin)
        script = await client.get("/client/trigger-proxy.js")
        wrong = await client.post("/healthz")
    assert len(health.headers["x-request-id"]) == 32
    assert health.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert script.headers["vary"] == "Origin"  # also without an Origin: a cache must know
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")
    assert wrong.headers["allow"] == "GET"


async def test_every_browser_script_is_served_alike_and_imports_only_served_scripts() -> None:
    """The widgets import the client and their shared module by relative URL: each must be
    served beside them, cached and varied by Origin as the client is."""
    import re
    from importlib import resources

    app = create_app(make_settings(), transport=Upstream().transport(), store=MemoryStore())
    transport = httpx.ASGITransport(app=app)
    names = ["trigger-proxy.js", "trigger-proxy-widget.js", "trigger-proxy-wheel.js"]
    names.append("trigger-proxy-scratch.js")
    static = resources.files("proxy").joinpath("static")
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://proxy") as client,
    ):
        for name in names:
            script = await client.get(f"/client/{name}")
            assert script.status_code == 200, name
            assert script.headers["content-type"] == "text/javascript; charset=utf-8"
            assert script.headers["cache-control"] == "public, max-age=300"
            assert script.headers["vary"] == "Origin"
            assert script.content == static.joinpath(name).read_bytes()
            for imported in re.findall(r'from "\./([\w.-]+)"', script.text):
                assert imported in names, (name, imported)


async def test_mounted_in_an_app_without_logging_the_lines_still_reach_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from proxy.observe import logs

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # the parent configured nothing
    monkeypatch.setattr(logs.LOG, "handlers", [])
    monkeypatch.setattr(logs.LOG, "propagate", True)
    level = logs.LOG.level
    logs.LOG.setLevel(logging.NOTSET)
    try:
        rewards = create_app(make_settings(), transport=Upstream().transport(), store=MemoryStore())
        parent = Starlette(routes=[Mount("/rewards", app=rewards)])
        async with (
            rewards.router.lifespan_context(parent),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=parent), base_url="http://s") as c,
        ):
            await c.get("/rewards/healthz")
    finally:
        logs.LOG.setLevel(level)  # setLevel, so that loggers' cached levels are dropped too
    [line] = [json.loads(x) for x in capsys.readouterr().err.splitlines() if '"request"' in x]
    assert (line["logger"], line["route"], line["status"]) == (
        "trigger_proxy.access",
        "/healthz",
        200,
    )


async def test_mounted_in_an_app_with_logging_the_parent_decides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxy.observe import logs

    monkeypatch.setattr(logs.LOG, "handlers", [])
    create_app(make_settings(), store=MemoryStore())
    assert logs.LOG.handlers == []  # pytest's own handler is on the root: a configured parent


async def test_the_trigger_listing_is_built_from_the_sections_it_uses() -> None:
    from proxy.rewards.policy import trigger_listing

    settings = make_settings()
    listing = trigger_listing(settings.triggers, settings.limits.per_customer, site_key="")
    app = create_app(settings, transport=Upstream().transport(), store=MemoryStore())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        served = await client.get("/v1/triggers")
    assert served.content == listing
    assert [t["id"] for t in json.loads(listing)["triggers"]] == [t.id for t in settings.triggers]
