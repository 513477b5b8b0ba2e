"""The references trigger-proxy is measured against, on the same server stack (uvicorn).

- ``floor``: a minimal Starlette app that answers a fixed JSON 429: the framework's floor for a
  refusal.
- ``forwarder``: a minimal Starlette proxy that forwards the body to the upstream with one
  aiohttp ClientSession: the floor for a forwarded request.
- ``httpx_pool_proxy``: the proxy over httpx's own pool, the alternative to its transport.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

REFUSAL = {"error": {"code": "rate_limited", "message": "slow down", "request_id": "x"}}


async def _refuse(request: Request) -> Response:
    return JSONResponse(REFUSAL, status_code=429, headers={"retry-after": "60"})


floor = Starlette(routes=[Route("/{path:path}", _refuse, methods=["POST", "GET"])])

_session: dict[str, aiohttp.ClientSession] = {}


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    _session["s"] = aiohttp.ClientSession()
    yield
    await _session["s"].close()


async def _forward(request: Request) -> Response:
    body = await request.body()
    async with _session["s"].post(
        os.environ["BENCH_UPSTREAM_URL"],
        data=body or b"{}",
        headers={"content-type": "application/json", "x-apikey": "k", "x-source": "web"},
    ) as upstream:
        content = await upstream.read()
        return Response(content, upstream.status, media_type="application/json")


forwarder = Starlette(
    routes=[Route("/{path:path}", _forward, methods=["POST"])], lifespan=_lifespan
)


def httpx_pool_proxy() -> Starlette:
    """The proxy itself over httpx's own connection pool instead of its aiohttp transport:
    the comparison behind that default. Built as ``serve`` builds it, from the config file in
    BENCH_PROXY_CONFIG (uvicorn --factory)."""
    import httpx

    from proxy.app import create_app
    from proxy.config.settings import Settings
    from proxy.observe.logs import configure
    from proxy.serve import tune_gc
    from proxy.upstream.client import KEEPALIVE_SECONDS

    settings = Settings.load(os.environ["BENCH_PROXY_CONFIG"], os.environ)
    configure(settings.logging.level, settings.logging.format)
    size = settings.upstream.max_connections
    limits = httpx.Limits(
        max_connections=size, max_keepalive_connections=size, keepalive_expiry=KEEPALIVE_SECONDS
    )
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False, retries=0)
    app = create_app(settings, transport=transport)
    tune_gc()
    return app
