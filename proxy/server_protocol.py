"""uvicorn's httptools protocol with the limits a public server needs and httptools lacks.

httptools buffers a header until it ends, with no limit on its size, and uvicorn gives a
request no time limit for its head or its body: one client could hold a worker's memory with a
huge header, or its file descriptors with connections that never finish (SECURITY.md, findings
1 and 5). Here the bytes of a request's head are counted as they arrive, before httptools sees
them (past ``max_head_bytes``: 431 and the connection closed), and the head and then the body
each have a deadline (the connection closed; the app then sees a disconnect and never acts on
a part of a body). uvicorn's h11 protocol limits the head's size, but is the slower parser
(docs/design.md); the connection cap is uvicorn's own ``limit_concurrency``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .asgi import new_request_id
from .errors import HeadersTooLarge
from .schema import ServerSettings

# How often one sweep per server closes the connections past their deadline: a deadline is a
# float on the connection, not a timer of its own (on uvloop a timer is made, started, stopped
# and closed for every call_later: two a request would cost the refusals, bench/README.md).
SWEEP_SECONDS = 0.5


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 16384
    head_timeout = 10.0
    body_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._tail = b""
        self._in_head = True
        self._due: float | None = self.loop.time() + self.head_timeout
        _sweep_soon(self)

    # The base class's methods are called by name, not through super(): these run on every
    # request, and the refusals they serve are short.
    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Only the head counts: a body (or the next request) may share its chunk, and the
            # blank line that ends a head may be split between two chunks.
            end = data.find(b"\r\n\r\n")
            if end < 0 and not (self._tail and b"\r\n\r\n" in self._tail + data[:3]):
                self._head_bytes += len(data)
                self._tail = data[-3:]
            elif end > 0:
                self._head_bytes += end
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        HttpToolsProtocol.data_received(self, data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        # The body's deadline; a request without a body completes at once, and the next
        # head's deadline replaces it.
        self._due = self.loop.time() + self.body_timeout
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._in_head = True  # whatever comes next on this connection is a new head
        self._head_bytes = 0
        self._tail = b""
        self._due = self.loop.time() + self.head_timeout

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

    def _refuse_head(self) -> None:
        body = HeadersTooLarge().body(new_request_id())
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%b" % (len(body), body)
        )
        self.transport.close()


def _sweep_soon(protocol: LimitedHttpToolsProtocol) -> None:
    """Start the server's sweep of its connections, once (kept on uvicorn's server state, which
    all of one server's connections share)."""
    state = protocol.server_state
    if getattr(state, "trigger_proxy_sweep", None) is not None:
        return
    loop = protocol.loop

    def sweep() -> None:
        now = loop.time()
        for connection in list(state.connections):
            if isinstance(connection, LimitedHttpToolsProtocol):
                connection._past_due(now)
        state.trigger_proxy_sweep = loop.call_later(SWEEP_SECONDS, sweep)  # type: ignore[attr-defined]

    state.trigger_proxy_sweep = loop.call_later(SWEEP_SECONDS, sweep)  # type: ignore[attr-defined]


def limited_protocol(settings: ServerSettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http`` option, given this deployment's limits.

    They are set on the class itself, once per process before it serves: uvicorn makes a
    protocol per connection from the class alone, and hands the class to its worker processes
    by name (each worker calls this again from the same settings, serve.app_from_environment).
    """
    LimitedHttpToolsProtocol.max_head_bytes = settings.max_head_bytes
    LimitedHttpToolsProtocol.head_timeout = settings.head_timeout_seconds
    LimitedHttpToolsProtocol.body_timeout = settings.body_timeout_seconds
    return LimitedHttpToolsProtocol
