"""uvicorn's httptools protocol with the limits a public server needs and httptools lacks.

httptools buffers a header until it ends, with no limit on its size, and uvicorn gives a
request no time limit for its head or its body: one client could hold a worker's memory with a
huge header, or its file descriptors with connections that never finish (SECURITY.md, findings
1 and 5, and 14 of the third round). Here the bytes of a request's head are counted as they
arrive, from the parser's own word on where a head begins and ends (past ``max_head_bytes``:
431 and the connection closed), and the head and then the body each have a deadline (the
connection closed; the app then sees a disconnect and never acts on a part of a body). One
untrusted address may hold at most ``max_per_address`` connections, so that it cannot fill
uvicorn's global cap (``limit_concurrency``) for everyone. Every answer the server gives by
itself (431, its 400 for what cannot be parsed, its 503s) is the contract's JSON. uvicorn's
h11 protocol limits the head's size, but is the slower parser (docs/design.md). And an
answer's head leaves with its body, in one write to the socket rather than uvicorn's two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from proxy.config.schema import ServerSettings
from proxy.errors import HeadersTooLarge, MalformedRequest, ProxyError, ServerBusy
from proxy.http.asgi import TrustedPeers, new_request_id

# How often one sweep per server closes the connections past their deadline. A deadline is a
# float on the connection, counted on the sweep's own clock, not a timer of its own: a timer,
# or even a clock read, per request cost the refusals several percent (docs/performance.md).
SWEEP_SECONDS = 0.5


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 16384
    head_timeout = 10.0
    body_timeout = 10.0
    max_per_address = 0  # open connections from one untrusted address; 0: no cap
    trusted = TrustedPeers(())  # load balancers: every client shares their address

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every instance has these from the start, as it has the base class's own.
        self._head_bytes = 0  # of the head under way, in the chunks it filled whole
        self._chunk = 0  # the chunk being parsed
        self._turned = False  # a head ended, or a message did, in the chunk being parsed
        self._in_head = True  # from a message's end (or the connection's start) to its head's
        self._sweep: _Sweep | None = None
        self._due: float | None = None
        self._address: str | None = None
        self._idle = False  # between an answer and the next head: the keep-alive deadline
        # uvicorn's connection cap, checked here so that its 503 is the contract's JSON.
        self._cap = self.limit_concurrency
        self.limit_concurrency = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sweep = sweep = _Sweep.of(self)
        self._due = sweep.now + self.head_timeout
        if self.max_per_address and self.client is not None:
            address = self.client[0]
            if address not in self.trusted:
                if not sweep.open(address, self.max_per_address):
                    _answer(transport, _BUSY)
                    return
                self._address = address

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget_address()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._forget_address()  # the connection is the WebSocket protocol's from here on
        super().handle_websocket_upgrade()

    def _forget_address(self) -> None:
        if self._address is not None:
            self._sweep.close(self._address)  # type: ignore[union-attr]
            self._address = None

    # The base class's methods are called by name, not through super(): these run on every
    # request, and the refusals they serve are short.
    def data_received(self, data: bytes) -> None:
        # Where a head begins and ends is the parser's to say (its callbacks below), never a
        # search of the bytes: HTTP/1.1 allows empty lines before a request line, and a head
        # may end in any chunk. A chunk is counted only once it left the head unfinished, so
        # what httptools holds of a head is at most the limit and one chunk.
        self._chunk = len(data)
        if not self._in_head:
            HttpToolsProtocol.data_received(self, data)
            return
        if self._idle:  # a new head: its own deadline, not what was left of the keep-alive
            self._idle = False
            self._due = self._sweep.now + self.head_timeout  # type: ignore[union-attr]
        self._turned = False
        HttpToolsProtocol.data_received(self, data)
        if self._in_head and not self._turned:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
                _answer(self.transport, _TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._turned = True
        self._due = self._sweep.now + self.body_timeout  # type: ignore[union-attr]
        refusal = None
        # The chunk that ends a head may hold a body too: only when it could have taken the
        # head past the limit is the head measured, from what the parser made of it.
        if self._head_bytes + self._chunk > self.max_head_bytes and (
            len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.max_head_bytes
        ):
            refusal = _too_large
        elif self._cap is not None and (
            len(self.connections) >= self._cap or len(self.tasks) >= self._cap
        ):
            self.logger.warning("Exceeded concurrency limit.")
            refusal = _busy
        before = self.cycle
        if refusal is None:
            HttpToolsProtocol.on_headers_complete(self)
        else:
            # uvicorn's own way to answer without the app (as its 503 does): the request's
            # cycle runs this refusal instead, and its body, if any, goes nowhere.
            app, self.app = self.app, refusal
            try:
                HttpToolsProtocol.on_headers_complete(self)
            finally:
                self.app = app
        # A new request's cycle (none for an upgrade) whose first write is its head: not a
        # HEAD request's, whose head is all it writes, nor one whose 100 Continue comes first.
        cycle = self.cycle
        if cycle is not before and not self.expect_100_continue and self.scope["method"] != "HEAD":
            _OneWrite(self.transport, cycle)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._in_head = True  # whatever comes next on this connection is a new head
        self._turned = True
        self._head_bytes = 0
        self._due = self._sweep.now + self.head_timeout  # type: ignore[union-attr]

    def on_response_complete(self) -> None:
        """uvicorn's, but for the keep-alive timeout: uvicorn arms a timer for it after each
        answer, and the sweep keeps it as a deadline instead, as it keeps the head's (within
        ``SWEEP_SECONDS`` of it). A pipelined request, or a closing connection, is uvicorn's."""
        if self.pipeline or self.transport.is_closing():
            HttpToolsProtocol.on_response_complete(self)
            return
        self.server_state.total_requests += 1
        self.flow.resume_reading()
        if self._in_head:  # else an early answer's body is still arriving, on its deadline
            self._idle = True
            self._due = self._sweep.now + self.timeout_keep_alive  # type: ignore[union-attr]

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what httptools cannot parse, in the contract's JSON."""
        if not self.transport.is_closing():
            _answer(self.transport, _MALFORMED)

    def _past_due(self, now: float) -> None:
        """Close the connection if its head or body is late (a response under way waits)."""
        if self._due is None or now < self._due:
            return
        if self._in_head and self.cycle is not None and not self.cycle.response_complete:
            self._due = now + self.head_timeout  # the next head's clock starts after it
            return
        self._due = None
        if not self.transport.is_closing():
            self.transport.close()


class _OneWrite:
    """A request cycle's view of its connection that holds the response's head (the cycle's
    first write) until the body's first write, and sends both in one: one system call and one
    packet for a whole answer instead of two (docs/performance.md). From then on the cycle
    writes to the connection itself. Closing sends a head still held (an app that crashed
    after it)."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        cycle.transport = self  # type: ignore[assignment]

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None:
            self._head = data
        else:
            self._cycle.transport = self._transport
            self._transport.write(head + data)

    def close(self) -> None:
        if self._head is not None:
            self._cycle.transport = self._transport
            self._transport.write(self._head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else a cycle may ask of a transport
        return getattr(self._transport, name)


_TOO_LARGE = HeadersTooLarge()
_MALFORMED = MalformedRequest()
_BUSY = ServerBusy(1)


def _answer(transport: asyncio.Transport, error: ProxyError) -> None:
    """Write ``error`` as a whole response straight to the connection (no request cycle), and
    close it."""
    body = error.body(new_request_id())
    head = [STATUS_LINE[error.status], b"content-type: application/json\r\n"]
    head += [b"%s: %s\r\n" % pair for pair in error.headers]
    head.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
    transport.write(b"".join(head) + body)
    transport.close()


def _refusing(error: ProxyError) -> Callable[..., Awaitable[None]]:
    """An ASGI app that answers ``error`` and closes the connection."""
    headers = [(b"content-type", b"application/json"), (b"connection", b"close"), *error.headers]

    async def refuse(scope: Any, receive: Any, send: Any) -> None:
        body = error.body(new_request_id())
        start = [*headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": error.status, "headers": start})
        await send({"type": "http.response.body", "body": body})

    return refuse


_too_large = _refusing(_TOO_LARGE)
_busy = _refusing(_BUSY)


class _Sweep:
    """One server's sweep of its connections, and the clock their deadlines count on. Kept on
    uvicorn's server state, which all of that server's connections share."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self._loop = protocol.loop
        self._connections = protocol.server_state.connections
        self._per_address: dict[str, int] = {}
        self.now = self._loop.time()
        self._loop.call_later(SWEEP_SECONDS, self._run)

    @classmethod
    def of(cls, protocol: LimitedHttpToolsProtocol) -> _Sweep:
        state = protocol.server_state
        sweep: _Sweep | None = getattr(state, "trigger_proxy_sweep", None)
        if sweep is None or sweep._loop is not protocol.loop:
            sweep = cls(protocol)
            state.trigger_proxy_sweep = sweep  # type: ignore[attr-defined]
        return sweep

    def open(self, address: str, cap: int) -> bool:
        """Count a connection from ``address``, unless it has ``cap`` open already."""
        count = self._per_address.get(address, 0)
        if count >= cap:
            return False
        self._per_address[address] = count + 1
        return True

    def close(self, address: str) -> None:
        count = self._per_address.pop(address, 1) - 1
        if count > 0:
            self._per_address[address] = count

    def _run(self) -> None:
        self.now = now = self._loop.time()
        for connection in list(self._connections):
            if isinstance(connection, LimitedHttpToolsProtocol):
                connection._past_due(now)
        self._loop.call_later(SWEEP_SECONDS, self._run)


def limited_protocol(settings: ServerSettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` option, given this deployment's limits.

    They are set on the class itself, once per process before it serves: uvicorn makes a
    protocol per connection from the class alone, and hands the class to its worker processes
    by name (each worker calls this again from the same settings, serve.app_from_environment).
    """
    LimitedHttpToolsProtocol.max_head_bytes = settings.max_head_bytes
    LimitedHttpToolsProtocol.head_timeout = settings.head_timeout_seconds
    LimitedHttpToolsProtocol.body_timeout = settings.body_timeout_seconds
    LimitedHttpToolsProtocol.max_per_address = settings.max_connections_per_address
    LimitedHttpToolsProtocol.trusted = TrustedPeers(settings.forwarded_allow_ips)
    return LimitedHttpToolsProtocol
