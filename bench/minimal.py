"""The references trigger-proxy is measured against, on the same server stack (uvicorn).

- ``floor``: a minimal Starlette app that answers a fixed JSON 429: the framework's floor for a
  refusal.
- ``forwarder``: a minimal Starlette proxy that forwards the body to the upstream with one
  aiohttp ClientSession: the floor for a forwarded request.
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
