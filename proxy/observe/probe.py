"""``check-config --probe``: can this machine reach what ``serve`` will need?

The limit store is asked for a PING. Nector's host is resolved, connected to and, for https,
shaken hands with (certificate checked), and nothing more: no HTTP request is sent, so no
reward is called and none of the workspace's 60 calls a minute is spent.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from proxy.config.settings import display_url
from proxy.errors import StorageUnavailable, failure_cause

TIMEOUT_SECONDS = 5.0


class ProbeResult(NamedTuple):
    ok: bool
    line: str  # what answered, or what failed and why, for the operator


def probe_store(storage_url: str) -> ProbeResult:
    shown = display_url(storage_url)
    if storage_url.startswith("memory:"):
        return ProbeResult(True, f"probe: limit store {shown}: in this process, nothing to reach")
    from proxy.limits.redis_store import RedisStore

    async def ping() -> float:
        store = RedisStore(storage_url, timeout_seconds=TIMEOUT_SECONDS)
        try:
            started = time.perf_counter()
            await store.ping()
            return time.perf_counter() - started
        finally:
            await store.aclose()

    try:
        elapsed = asyncio.run(ping())
    except StorageUnavailable as exc:
        return ProbeResult(False, f"probe: limit store {shown}: FAILED ({exc.cause})")
    return ProbeResult(
        True, f"probe: limit store {shown}: PING answered in {elapsed * 1000:.1f} ms"
    )


def probe_upstream(url: str) -> ProbeResult:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    where = f"upstream {host}:{port}"
    steps = []
    try:
        address = str(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0])
        steps.append(f"DNS {address}")
        with socket.create_connection((address, port), timeout=TIMEOUT_SECONDS) as sock:
            steps.append("TCP connected")
            if parts.scheme == "https":
                context = ssl.create_default_context()
                with context.wrap_socket(sock, server_hostname=host) as tls:
                    steps.append(f"TLS {tls.version()}, certificate valid")
    except OSError as exc:
        done = ", ".join(steps) + ", " if steps else ""
        return ProbeResult(False, f"probe: {where}: {done}FAILED ({failure_cause(exc)})")
    return ProbeResult(True, f"probe: {where}: {', '.join(steps)} (no request sent)")
