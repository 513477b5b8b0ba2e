"""The small ASGI toolkit the app runs on: a request view, a capped body reader, responses,
and the trusted-peer rule for forwarded headers.

The proxy's hot path is mostly refusals, so it runs as plain ASGI (no per-request framework
objects); this module is all of that plumbing.
"""

from __future__ import annotations

import ipaddress
import itertools
import secrets
import string
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from proxy.errors import BodyTooLarge, InvalidBody, UnsupportedMediaType
from proxy.observe.logs import LOG

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A trusted peer's X-Request-ID is kept if it is short and of these characters only: safe to
# put in JSON, logs and a header as it is.
_REQUEST_ID_CHARS = frozenset(string.ascii_letters + string.digits + "-_.:")
# Request ids: a random per-process prefix and a counter, 32 hex characters like a UUID's, unique
# across replicas without a random draw (a syscall) per request.
_ID_PREFIX = secrets.token_hex(10)
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFF:012x}"


class TrustedPeers:
    """Peers (load balancers) whose X-Forwarded-For and X-Request-ID are believed.

    Empty by default: then the client address is the TCP peer and every request id is ours.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        self._networks = [ipaddress.ip_network(n, strict=False) for n in networks]

    def __bool__(self) -> bool:
        return bool(self._networks)

    def __contains__(self, host: str | None) -> bool:
        if host is None or not self._networks:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)


class UntrustedForwarded:
    """Says once, at WARNING, that X-Forwarded-For came from a peer not trusted with it:
    behind a balancer left out of ``server.forwarded_allow_ips`` every shopper has its address,
    and one bad client locks them all out of the failure limit. Then it costs nothing."""

    def __init__(self, trusted: TrustedPeers) -> None:
        self.trusted = trusted
        self.pending = True

    def seen(self, client: tuple[str, int] | None) -> None:
        peer = client[0] if client else None
        if peer in self.trusted:
            return
        self.pending = False
        LOG.warning(
            "X-Forwarded-For from %s, which server.forwarded_allow_ips does not trust, is "
            "ignored: every client behind it shares its address and its failure limit; if it "
            "is your load balancer, add its network there (logged once)",
            peer or "an unknown peer",
        )


class Request:
    """What the handlers need of an ASGI HTTP scope, parsed once.

    ``headers`` maps each header's name to its first value, both as the server gave them:
    bytes, names lowercased (the ASGI spec's rule, which uvicorn, hypercorn, daphne and
    httpx's ASGITransport keep). ``header()`` decodes one.
    """

    __slots__ = ("client_ip", "headers", "method", "path", "receive", "request_id", "scope")

    # ``path`` is the route's path: under a prefix (a Mount, or a server's root_path) the
    # prefix is left out, as Starlette's routing does.
    # The decoded query Shopify signed, on an App Proxy request (AppProxyRequest) only.
    signed_query: list[tuple[str, str]] | None = None

    def __init__(self, scope: Scope, receive: Receive, trusted: TrustedPeers | None) -> None:
        self.receive = receive
        self.method: str = scope["method"]
        path: str = scope["path"]
        root = scope.get("root_path")
        if root and path.startswith(root):
            path = path[len(root) :]
        self.path = path
        self.scope = scope
        # Built from the last header back, so that the first occurrence of a repeated header
        # wins.
        headers: dict[bytes, bytes] = dict(reversed(scope["headers"]))
        self.headers = headers
        client = scope.get("client")
        peer = client[0] if client else None
        self.client_ip = peer or "unknown"
        self.request_id = new_request_id()
        if trusted is not None and peer in trusted:
            self.client_ip = _forwarded_client(self.header(b"x-forwarded-for"), trusted) or peer
            given = self.header(b"x-request-id") or ""
            if 0 < len(given) <= 64 and set(given) <= _REQUEST_ID_CHARS:
                self.request_id = given

    @property
    def query(self) -> bytes:
        """The raw query string (only reads take one)."""
        query: bytes = self.scope.get("query_string", b"")
        return query

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")

    def cookie(self, name: str) -> str | None:
        raw = self.header(b"cookie")
        if not raw:
            return None
        for part in raw.split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value.strip().strip('"') or None
        return None

    def declared_length(self, limit: int) -> int | None:
        """The Content-Length, if the request has one, refusing (413) one over ``limit``."""
        length = self.headers.get(b"content-length")
        if length is None:
            return None
        if not length.isdigit():
            raise InvalidBody("Content-Length is not a number")
        declared = int(length)
        if declared > limit:
            raise BodyTooLarge()
        return declared

    async def body(self, limit: int) -> bytes:
        """The whole body, refusing (413) anything over ``limit`` bytes, chunked included,
        before reading more than ``limit`` + one chunk."""
        self.declared_length(limit)
        return await self.read(limit)

    def check_json(self) -> None:
        """A body's media type must be application/json, parameters allowed (415)."""
        media = self.headers.get(b"content-type", b"")
        if media != b"application/json" and (
            media.split(b";", 1)[0].strip().lower() != b"application/json"
        ):
            raise UnsupportedMediaType()

    async def json_body(self, limit: int) -> bytes:
        """The whole body, read now: 413 over ``limit``, 415 if it is not empty and not
        application/json."""
        raw = await self.body(limit)
        if raw:
            self.check_json()
        return raw

    def declared_json_length(self, limit: int) -> int | None:
        """The contract's checks before the session, the body's size (413) then its media type
        (415), when the headers tell them: the Content-Length, if there is one. The body is
        then read only once the session is known (``read_declared``), so the body of a request
        refused at its session (most of a flood) is never read. Without one only reading the
        body tells its size, and it is read first (``json_body``)."""
        declared = self.declared_length(limit)
        if declared:
            self.check_json()
        return declared

    async def read_declared(self, limit: int, declared: int) -> bytes:
        """The body of ``declared_json_length``'s request, which must be as long as it said:
        its media type was checked only if it said the body was not empty."""
        raw = await self.read(limit)
        if len(raw) != declared:
            raise InvalidBody("the body does not match its Content-Length")
        return raw

    async def read(self, limit: int) -> bytes:
        """``body()`` once its Content-Length has been checked (``declared_length``)."""
        message = await self.receive()
        if message["type"] != "http.request":
            # The client left before its body (or its end) arrived: uvicorn then answers the
            # first receive with a disconnect. Never what the client sent: a request is acted
            # on only once it is whole.
            raise InvalidBody("the body did not fully arrive")
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge()
        if not message.get("more_body", False):
            return body  # the whole body in one message: the usual case
        chunks = [body]
        size = len(body)
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                # Never what the client sent: a request is acted on only once it is whole.
                raise InvalidBody("the body did not fully arrive")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


class AppProxyRequest(Request):
    """A request that Shopify forwarded through a shop's App Proxy, as the route under
    ``prefix`` sees it: the prefix left out of its path (and of Starlette's, in ``scope``),
    Shopify's parameters left out of its query, and no credentials of its own (no
    Authorization, no cookie). Its session is the signed query alone (``signed_query``)."""

    __slots__ = ("signed_query",)

    def __init__(
        self, outer: Request, prefix: str, query: bytes, signed: list[tuple[str, str]]
    ) -> None:
        root = outer.scope.get("root_path", "")
        scope = {**outer.scope, "root_path": root + prefix, "query_string": query}
        headers = outer.headers
        if b"authorization" in headers or b"cookie" in headers:  # Shopify forwards neither
            scope["headers"] = [h for h in scope["headers"] if h[0] not in _CREDENTIALS]
            headers = {k: v for k, v in headers.items() if k not in _CREDENTIALS}
        self.scope = scope
        self.receive = outer.receive
        self.method = outer.method
        self.path = outer.path[len(prefix) :]
        self.headers = headers
        self.client_ip = outer.client_ip
        self.request_id = outer.request_id
        self.signed_query = signed


_CREDENTIALS = frozenset([b"authorization", b"cookie"])


def _forwarded_client(header: str | None, trusted: TrustedPeers) -> str | None:
    """The right-most X-Forwarded-For address that is not a trusted proxy."""
    if not header:
        return None
    for hop in reversed([h.strip() for h in header.split(",")]):
        if hop and hop not in trusted:
            try:  # anything else is text a client wrote: the peer's address stands instead
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return None
    return None
