"""The Starlette side of the app: exception handlers that render the contract's errors for
its routes, the ``send`` that adds the request id and CORS headers to their answers, and the
deployment's own OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import Response

from proxy.config.settings import SessionSettings
from proxy.errors import MethodNotAllowed, NotFound, ProxyError
from proxy.http.asgi import Message, Request, Send
from proxy.http.responses import Answer, render_error
from proxy.observe.logs import LOG, AccessRecord

STATE = "trigger_proxy"  # the scope key under which a request's view and record travel


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


def answered(answer: Answer) -> Response:
    """A route's ``Answer`` (a JSON body and its headers) as Starlette's response."""
    response = json_response(answer.body)
    response.raw_headers += answer.headers
    return response


_VARY = (b"vary", b"Origin")


def with_headers(send: Send, record: AccessRecord, extra: list[tuple[bytes, bytes]]) -> Send:
    """``send`` that adds X-Request-ID and the CORS headers to the answer's head, and notes
    its status for the access line. An answer that says ``Vary: Origin`` itself (a script)
    does not say it twice."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = message["status"]
            own = message.get("headers") or []
            added = [h for h in extra if h != _VARY] if _VARY in own else extra
            headers = [(b"x-request-id", record.request_id.encode()), *own, *added]
            message = {**message, "headers": headers}
        await send(message)

    return sending


def _refusal(request: StarletteRequest, error: ProxyError) -> Response:
    view, record = request.scope[STATE]
    record.code = error.code
    if error.cause is not None:
        record.cause = error.cause
    response = json_response(render_error(error, view.path, view.request_id))
    response.status_code = error.status
    response.raw_headers += error.headers
    return response


async def on_refusal(request: StarletteRequest, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return _refusal(request, exc)


async def on_http_exception(request: StarletteRequest, exc: Exception) -> Response:
    """Starlette's own refusals (its router's 404 and 405) in the contract's shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = (exc.headers or {}).get("Allow", "")
        return _refusal(request, MethodNotAllowed(headers=[(b"allow", allow.encode())]))
    return _refusal(request, NotFound())


async def on_crash(request: StarletteRequest, exc: Exception) -> Response:
    view, _ = request.scope[STATE]
    LOG.exception("unhandled error", extra={"fields": {"request_id": view.request_id}})
    return _refusal(request, ProxyError())


def internal_error(record: AccessRecord, request: Request) -> Answer:
    failure = ProxyError()
    record.code = failure.code
    return Answer(500, render_error(failure, request.path, request.request_id))


def openapi_document(text: str, sessions: SessionSettings) -> bytes:
    """The OpenAPI document with this deployment's own values filled in."""
    spec = json.loads(text)
    mint = spec["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
    mint["schema"]["properties"]["ttl_seconds"]["maximum"] = sessions.max_age_seconds
    spec["components"]["securitySchemes"]["sessionCookie"]["name"] = sessions.cookie_name
    return json.dumps(spec).encode()


_JS_TYPE = b"text/javascript; charset=utf-8"
# The script's CORS headers depend on the Origin, so every copy of it says so.
_JS_HEADERS = [(b"cache-control", b"public, max-age=300"), (b"vary", b"Origin")]


def script_endpoint(source: bytes) -> Callable[[StarletteRequest], Awaitable[Response]]:
    """The handler of one of the browser scripts (the client, the widget)."""

    async def script(request: StarletteRequest) -> Response:
        response = Response(source, media_type=_JS_TYPE.decode())
        response.raw_headers += _JS_HEADERS
        return response

    return script


def public_json_endpoint(body: bytes) -> Callable[[StarletteRequest], Awaitable[Response]]:
    """The handler of a fixed JSON document that needs no session (the trigger listing):
    cacheable by anyone, and, since its CORS headers depend on Origin, ``Vary: Origin``."""

    async def document(request: StarletteRequest) -> Response:
        response = json_response(body)
        response.raw_headers += [(b"cache-control", b"public, max-age=300"), (b"vary", b"Origin")]
        return response

    return document
