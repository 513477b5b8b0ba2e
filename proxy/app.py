"""The ASGI application: routing, CORS, error rendering and the lifespan that owns the shared
upstream client and limit store. ``create_app`` is the factory that wires everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from importlib import resources

import httpx

from .asgi import (
    Receive,
    Request,
    Scope,
    Send,
    TrustedPeers,
)
from .cors import CorsPolicy
from .errors import (
    MethodNotAllowed,
    NotFound,
    OriginNotAllowed,
    ProxyError,
    StorageUnavailable,
)
from .gateway import Answer, Gateway
from .logs import LOG, AccessRecord, log_access
from .logs import flush as flush_logs
from .memory_store import MemoryStore
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .ratelimit import LimitStore
from .settings import LimitSettings, Settings, display_url
from .upstream import UpstreamClient

TRIGGER_PREFIX = "/v1/triggers/"
# Nector's own paths: clients written against Nector read its envelope (errors.nector_body).
NECTOR_PREFIX = "/api/v2/merchant/"
DROPIN_PATH = NECTOR_PREFIX + "activities"
CLIENT_JS_PATH = "/client/trigger-proxy.js"
_ROUTES = {
    DROPIN_PATH: "POST",
    "/v1/sessions": "POST",
    "/healthz": "GET",
    "/readyz": "GET",
    "/metrics": "GET",
    "/openapi.json": "GET",
    CLIENT_JS_PATH: "GET",
}


async def _flush_periodically(metrics: Metrics, interval: float = 0.2) -> None:
    """Batched log lines and counted requests go out at least this often, even when no request
    comes (other workers' scrapes read the counts from disk in multiprocess mode)."""
    while True:
        await asyncio.sleep(interval)
        flush_logs()
        metrics.flush()


def open_store(settings: LimitSettings) -> LimitStore:
    if settings.storage_url.startswith("memory:"):
        return MemoryStore(max_keys=settings.memory_max_keys)
    from .redis_store import RedisStore

    return RedisStore(settings.storage_url)


class App:
    """trigger-proxy as an ASGI 3 application."""

    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        store: LimitStore | None = None,
    ) -> None:
        self.settings = settings
        self._transport = transport
        self._given_store = store
        self._cors = CorsPolicy(settings.cors)
        trusted = TrustedPeers(settings.server.forwarded_allow_ips)
        self._trusted = trusted if trusted else None
        static = resources.files("proxy").joinpath("static")
        self._client_js = static.joinpath("trigger-proxy.js").read_bytes()
        self._openapi = _openapi(static.joinpath("openapi.json").read_text(), settings)
        self._gateway: Gateway | None = None
        labels = [t.name or t.id for t in settings.triggers]
        self.metrics = Metrics(labels)
        self._metrics_here = settings.server.metrics_port == 0

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Open the limit store and the upstream client; close both on the way out."""
        secrets = self.settings.secrets
        if secrets.api_key is None or secrets.workspace_id is None:
            raise RuntimeError("serving needs the API key and the workspace id")
        store = (
            self._given_store if self._given_store is not None else open_store(self.settings.limits)
        )
        upstream = UpstreamClient(
            self.settings.upstream,
            api_key=secrets.api_key,
            workspace_id=secrets.workspace_id,
            transport=self._transport,
        )
        self._gateway = Gateway(self.settings, store=store, upstream=upstream)
        try:
            await store.ping()
        except StorageUnavailable as exc:
            # Serving goes on (health answers, rewards fail closed); the operator must know why.
            LOG.error(
                "the limit store at %s does not answer (%s): rewards are refused with 503 "
                "storage_unavailable until it does",
                display_url(self.settings.limits.storage_url),
                exc.cause,
            )
        flusher = asyncio.create_task(_flush_periodically(self.metrics))
        try:
            yield
        finally:
            self._gateway = None
            flusher.cancel()
            await upstream.aclose()
            await store.aclose()
            flush_logs()
            self.metrics.flush()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """One HTTP request, start to end, in one frame: the refusals that make up most of the
        traffic are short, so calls and awaits are a real share of their cost."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = time.perf_counter()
        request = Request(scope, receive, self._trusted)
        request_id = request.request_id
        record = AccessRecord(request_id, request.method, _route_label(request.path))
        raw_origin = request.headers.get(b"origin")
        origin = None if raw_origin is None else raw_origin.decode("latin-1")
        origin_ok = origin is not None and self._cors.allows(origin)
        try:
            answer = await self._route(request, record, origin, origin_ok)
        except ProxyError as exc:
            record.code = exc.code
            if exc.cause is not None:
                record.cause = exc.cause
            answer = Answer(exc.status, _render(exc, request), exc.headers)
        except Exception:
            LOG.exception("unhandled error", extra={"fields": {"request_id": request_id}})
            failure = ProxyError()
            record.code = failure.code
            answer = Answer(500, _render(failure, request))
        record.status = status = answer.status
        body = answer.body
        headers = [
            (b"x-request-id", request_id.encode()),
            (b"content-type", answer.content_type),
            (b"content-length", b"%d" % len(body)),
            *answer.headers,
        ]
        if origin_ok and origin:
            headers += self._cors.response_headers(origin)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        record.duration_ms = round((time.perf_counter() - started) * 1000, 3)
        log_access(record)
        self.metrics.observe(record)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        try:
            async with self.lifespan():
                await send({"type": "lifespan.startup.complete"})
                await receive()  # lifespan.shutdown
        except Exception as exc:
            LOG.error("startup failed: %s", type(exc).__name__)
            await send({"type": "lifespan.startup.failed", "message": type(exc).__name__})
            return
        await send({"type": "lifespan.shutdown.complete"})

    async def _route(
        self, request: Request, record: AccessRecord, origin: str | None, origin_ok: bool
    ) -> Answer:
        path, method = request.path, request.method
        trigger = path.startswith(TRIGGER_PREFIX)
        allowed = "POST" if trigger else _ROUTES.get(path)
        if allowed is None:
            raise NotFound()
        if origin is not None and not origin_ok:
            raise OriginNotAllowed()
        preflight = method == "OPTIONS" and b"access-control-request-method" in request.headers
        if preflight and origin is not None:
            return self._preflight(allowed, path.startswith(NECTOR_PREFIX))
        if method == "HEAD" and allowed == "GET":
            method = "GET"  # the server sends the head of the GET answer and no body
        if method != allowed:
            raise MethodNotAllowed(headers=[(b"allow", allowed.encode())])
        gateway = self._gateway
        if trigger:  # the reward route first: nearly every request takes it
            ref = path[len(TRIGGER_PREFIX) :]
            if not ref or "/" in ref:
                raise NotFound()
            if gateway is None:
                raise StorageUnavailable("the proxy is not started")
            return await gateway.trigger(request, ref, record, origin_ok)
        if path == CLIENT_JS_PATH:
            return Answer(200, self._client_js, [_JS_CACHE], _JS_TYPE)
        if path == "/openapi.json":
            return Answer(200, self._openapi)
        if path == "/healthz":
            return Answer(200, b'{"status":"ok"}')
        if path == "/metrics":
            if not self._metrics_here:
                raise NotFound()  # served on the admin port instead
            return Answer(200, self.metrics.render(), content_type=METRICS_CONTENT_TYPE)
        if gateway is None:
            raise StorageUnavailable("the proxy is not started")
        if path == "/readyz":
            await gateway.ping()
            return Answer(200, b'{"status":"ready"}')
        if path == DROPIN_PATH:
            return await gateway.dropin(request, record, origin_ok)
        return await gateway.mint(request)  # /v1/sessions, the last route

    def _preflight(self, allowed: str, nector: bool) -> Answer:
        # The allow-origin and expose headers are added to every answer by __call__.
        return Answer(204, b"", self._cors.preflight_headers(f"{allowed}, OPTIONS", nector))


def _render(error: ProxyError, request: Request) -> bytes:
    """A refusal's body: the contract's error object, inside Nector's envelope on its paths."""
    if request.path.startswith(NECTOR_PREFIX):
        return error.nector_body(request.request_id)
    return error.body(request.request_id)


_JS_TYPE = b"text/javascript; charset=utf-8"
_JS_CACHE = (b"cache-control", b"public, max-age=300")


def _openapi(text: str, settings: Settings) -> bytes:
    """The OpenAPI document with this deployment's own values filled in."""
    spec = json.loads(text)
    mint = spec["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
    mint["schema"]["properties"]["ttl_seconds"]["maximum"] = settings.sessions.max_age_seconds
    spec["components"]["securitySchemes"]["sessionCookie"]["name"] = settings.sessions.cookie_name
    return json.dumps(spec).encode()


def _route_label(path: str) -> str:
    """A bounded label for logs: made-up paths must not become new values."""
    if path.startswith(TRIGGER_PREFIX):
        return TRIGGER_PREFIX + "{trigger}"
    return path if path in _ROUTES else "unknown"


def create_app(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    store: LimitStore | None = None,
) -> App:
    """Build the proxy for ``settings``. ``transport`` replaces the upstream transport (tests
    pass ``httpx.MockTransport``); ``store`` replaces the limit store named in the settings."""
    return App(settings, transport=transport, store=store)
