"""What Starlette's routing would add to a refusal on the reward route, in one process.

The app answers the reward routes before Starlette's router (proxy/app.py). This puts a
Starlette app in front whose only route is ``POST /v1/triggers/{trigger}`` with the proxy as
its ASGI endpoint, so every request pays Starlette's middleware stack and route matching and
then exactly the proxy's own work, and compares the CPU per request with the proxy alone.
Both are driven directly (no server, no socket), alternating in rounds; the ratio is what to
read.

    .venv/bin/python -m bench.routing
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Route

from bench.lab import ENV, SPIN
from proxy.app import create_app
from proxy.config.settings import Settings
from proxy.limits.memory_store import MemoryStore

CONFIG = {
    "limits": {"per_ip_invalid_session": "100000000/second"},
    "triggers": [{"id": SPIN, "name": "spin-wheel"}],
}


async def drive(app: Any, path: str, headers: list[tuple[bytes, bytes]], n: int) -> float:
    """CPU seconds per request for ``n`` requests answered by ``app``."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": headers,
        "client": ("198.51.100.7", 40000),
        "query_string": b"",
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    started = time.process_time()
    for _ in range(n):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / n


def subject() -> tuple[Any, dict[str, tuple[str, bytes]]]:
    """The proxy as ``serve`` logs (to nowhere), and its refusals: name -> (path, token)."""
    import os

    from proxy.identity.sessions import mint_token
    from proxy.observe import logs

    logs.configure("info", "json")
    handler = logs.LOG.handlers[0]
    assert isinstance(handler, logs.BatchingStreamHandler)
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - for the process's life
    proxy = create_app(Settings.from_mapping(CONFIG, ENV), store=MemoryStore())
    session = mint_token(
        [ENV["TRIGGER_PROXY_SESSION_SECRETS"]], {"customer_id": "customer-bench-1"}
    ).encode()
    cases = {
        "401 forged token": ("/v1/triggers/spin-wheel", b"forged.token.signature"),
        "403 unknown trigger": ("/v1/triggers/not-listed", session),
    }
    return proxy, cases


async def main(rounds: int = 7, n: int = 20_000) -> None:
    proxy, cases = subject()
    routed = Starlette(routes=[Route("/v1/triggers/{trigger}", proxy, methods=["POST"])])
    async with proxy.lifespan():
        for name, (path, token) in cases.items():
            headers = [(b"authorization", b"Bearer " + token)]
            ratios, alone = [], []
            for _ in range(rounds):
                direct = await drive(proxy, path, headers, n)
                through = await drive(routed, path, headers, n)
                ratios.append(through / direct)
                alone.append(direct)
            print(
                f"{name}: proxy alone {statistics.median(alone) * 1e6:.1f} µs/request; "
                f"behind Starlette's router {statistics.median(ratios):.2f}x"
            )


if __name__ == "__main__":
    asyncio.run(main())
