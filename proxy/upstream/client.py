"""Forwarding to Nector, faults mapped to the contract.

The transport is aiohttp's pool, driven directly (``transport.AiohttpTransport``), because
httpx's own connection pool rescans every connection on each request (encode/httpx#3215;
docs/design.md, and the benchmark compares the two side by side). Tests pass an httpx
transport (``httpx.MockTransport``), whose answers and errors take the same path here.

The total deadline is enforced here (``deadlines.Deadlines``: asyncio.timeout's rule, one timer
for all calls), and the transport is given no timeouts of its own, so "timed out" has one
meaning: our deadline passed (504). A failed connection (refused, name not resolved, TLS
handshake) sent nothing, so it is ``UpstreamUnreachable`` (502, and the gateway gives back the
quota it spent); any other transport failure may have reached Nector (502, stored for the
Idempotency-Key).

The deadline covers every phase (pool, connect, write, read); per-phase timeouts in the
transport would only add timers (aiohttp re-arms its read timer on every chunk) that could
never fire first.

Only the status and the JSON body of Nector's answer are relayed, never its headers, and the
API key, the workspace id and the call's lead token are scrubbed from the body.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
import orjson
from yarl import URL

from proxy.config.settings import Secret, UpstreamSettings
from proxy.errors import (
    UpstreamBusy,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnreachable,
    failure_cause,
)
from proxy.upstream.deadlines import Deadlines
from proxy.upstream.transport import AiohttpTransport, HttpxTransport, RawHeaders, Transport

REDACTED = "[redacted]"
DEFAULT_RETRY_AFTER = 60
MAX_RETRY_AFTER = 3600
KEEPALIVE_SECONDS = 30


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    status: int
    body: bytes
    elapsed: float


def default_transport(settings: UpstreamSettings) -> Transport:
    """aiohttp's connection pool, driven directly (``transport.AiohttpTransport``)."""

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=settings.max_connections,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ssl=httpx.create_ssl_context(trust_env=False),
        )
        # No cookie jar: aiohttp's default jar would send a cookie Nector set on one
        # customer's call with the next customer's.
        return aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        )

    return AiohttpTransport(session)


class UpstreamClient:
    """Sends reward calls and reads to Nector with the server's credentials.

    It builds each call itself (URLs the proxy made, fixed headers) and hands it to the
    ``transport.Transport``, never through ``httpx.AsyncClient``: the client's layers (request
    building through Python-level header mappings, auth and redirect wrappers, a cookie jar
    updated from every answer) cost about as much CPU as the whole aiohttp transport, and the
    cookie jar would send a cookie Nector set for one customer's call on every later call, for
    everyone. Nothing of it is needed here: two methods, no redirects, no cookies.
    ``transport``, an httpx transport, replaces aiohttp's pool (tests pass
    ``httpx.MockTransport``).
    """

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        api_key: Secret,
        workspace_id: Secret,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._url = URL(settings.url)
        # Reads live beside the reward call: upstream.url with its last segment replaced.
        self._reads_base = str(self._url).rsplit("/", 1)[0] + "/"
        self.timeout_seconds = settings.timeout_seconds
        self._deadlines = Deadlines(settings.timeout_seconds)
        self._max_bytes = settings.max_response_bytes
        self._secrets = [api_key.reveal(), workspace_id.reveal()]
        self._raw_secrets = [secret.encode() for secret in self._secrets]
        self._transport: Transport = (
            default_transport(settings) if transport is None else HttpxTransport(transport)
        )
        self._headers = [  # and Host, which either kind of transport adds from the URL
            ("x-apikey", api_key.reveal()),
            ("x-workspaceid", workspace_id.reveal()),
            ("accept", "application/json"),
            ("accept-encoding", "identity"),
            ("user-agent", "trigger-proxy"),
        ]

    async def aclose(self) -> None:
        self._deadlines.close()
        await self._transport.aclose()

    async def send(
        self, body: bytes, *, source: str, request_id: str, lead_token: bytes | None = None
    ) -> UpstreamAnswer:
        """POST ``body`` to Nector; return its status and scrubbed JSON body, or raise an
        ``UpstreamFailure``. ``lead_token`` is sent as ``x-leadtoken`` (a storefront key)."""
        return await self._call(self._url, body, source, request_id, lead_token)

    async def post(
        self, target: str, body: bytes, *, source: str, request_id: str, lead_token: bytes | None
    ) -> UpstreamAnswer:
        """POST ``body`` to another of Nector's paths under ``/api/v2/merchant/`` (a redemption's
        ``offerredeems``): ``target`` is the proxy's own, never a client's."""
        url = URL(self._reads_base + target, encoded=True)  # built encoded (reads.routes)
        return await self._call(url, body, source, request_id, lead_token)

    async def get(
        self, target: str, *, source: str, request_id: str, lead_token: bytes | None = None
    ) -> UpstreamAnswer:
        """GET one of Nector's reads: ``target`` is its path and query under
        ``/api/v2/merchant/``, built by the proxy (``reads.routes``), never taken from a client."""
        url = URL(self._reads_base + target, encoded=True)  # built encoded (reads.routes)
        return await self._call(url, None, source, request_id, lead_token)

    async def _call(
        self, url: URL, body: bytes | None, source: str, request_id: str, lead_token: bytes | None
    ) -> UpstreamAnswer:
        """One call, a POST of ``body`` or a GET when it is None, with the faults mapped."""
        headers = [*self._headers, ("x-source", source), ("x-request-id", request_id)]
        if body is not None:
            headers.append(("content-type", "application/json"))
            headers.append(("content-length", str(len(body))))
        if lead_token is not None:
            headers.append(("x-leadtoken", lead_token.decode("latin-1")))
        started = time.perf_counter()
        try:
            status, raw, retry_after = await self._deadlines.run(
                self._exchange("GET" if body is None else "POST", url, headers, body)
            )
        except TimeoutError as exc:
            raise UpstreamTimeout(cause="timeout") from exc
        except httpx.ConnectError as exc:
            raise UpstreamUnreachable(cause=failure_cause(exc)) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(cause=failure_cause(exc)) from exc
        elapsed = time.perf_counter() - started
        if status == 429:
            raise UpstreamBusy(retry_after, cause="nector_429")
        if status in (401, 403):
            raise UpstreamRejected(cause=f"nector_{status}")
        if status >= 500 or status < 200 or 300 <= status < 400:
            raise UpstreamError(cause=f"nector_{status}")
        return UpstreamAnswer(status, self._relayable(raw, lead_token), elapsed)

    async def _exchange(
        self, method: str, url: URL, headers: list[tuple[str, str]], body: bytes | None
    ) -> tuple[int, bytes, float]:
        """Send one request; its status, raw body and Retry-After."""
        reply = await self._transport.send(method, url, headers, body)
        try:
            status = reply.status
            if status in (401, 403, 429) or status >= 500 or 300 <= status < 400:
                return status, b"", _retry_after(_header(reply.headers, b"retry-after"))
            # Nector is asked for an uncompressed answer (accept-encoding: identity); one that
            # comes compressed anyway is refused unread, since a few kilobytes can inflate to
            # gigabytes before any cap on the inflated size is reached.
            if any(
                name.lower() == b"content-encoding" and value.strip().lower() != b"identity"
                for name, value in reply.headers
            ):
                raise UpstreamError(cause="compressed_answer")
            raw = await reply.read(self._max_bytes)
            if raw is None:
                raise UpstreamError(cause="answer_too_large")
            return status, raw, 0.0
        finally:
            await reply.close()

    def _relayable(self, raw: bytes, lead_token: bytes | None) -> bytes:
        """The body as relayed: a JSON object, with the credentials scrubbed: the key, the
        workspace id, and the call's lead token (whole, and its signature alone, the part no
        one could rebuild without the key's secret)."""
        secrets, raw_secrets = self._secrets, self._raw_secrets
        if lead_token is not None:
            signature = lead_token.rpartition(b".")[2]
            raw_secrets = [*raw_secrets, lead_token, signature]
            secrets = [*secrets, lead_token.decode(), signature.decode()]
        try:
            # Parsed to check that it is one JSON object, by orjson for speed; what it refuses
            # (NaN, say) is judged by json.loads.
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = None
        # Fast path: no secret in the bytes and no JSON escape that could hide one.
        if data is not None and b"\\" not in raw and not any(s in raw for s in raw_secrets):
            if not isinstance(data, dict):
                raise UpstreamError(cause="not_a_json_object")
            return raw
        try:
            # Parsed exactly (orjson reads integers past 64 bits as floats), to be written
            # back with the secrets replaced.
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise UpstreamError(cause="not_json") from exc
        if not isinstance(data, dict):
            raise UpstreamError(cause="not_a_json_object")
        return json.dumps(_scrub(data, secrets), separators=(",", ":")).encode()


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


def _header(headers: RawHeaders, name: bytes) -> bytes | None:
    """The first value of the header ``name`` (lowercase) in a raw header list."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def _retry_after(value: bytes | None) -> float:
    if value is None or not value.strip().isdigit():
        return DEFAULT_RETRY_AFTER
    return float(min(max(int(value), 1), MAX_RETRY_AFTER))
