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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.config.schema import ServerSettings
from proxy.errors import HeadersTooLarge
from proxy.http.asgi import new_request_id

# How often one sweep per server closes the connections past their deadline. A deadline is a
# float on the connection, counted on the sweep's own clock, not a timer of its own: a timer,
# or even a clock read, per request cost the refusals several percent (docs/performance.md).
SWEEP_SECONDS = 0.5


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 16384
    head_timeout = 10.0
    body_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every instance has these from the start, as it has the base class's own.
        self._head_bytes = 0
        self._tail = b""
        self._in_head = True
        self._sweep: _Sweep | None = None
        self._due: float | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sweep = sweep = _Sweep.of(self)
        self._due = sweep.now + self.head_timeout

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
                if self._head_bytes > self.max_head_bytes:
                    self._refuse_head()
                    return
            else:
                if self._head_bytes + max(end, 0) > self.max_head_bytes:
                    self._refuse_head()
                    return
                self._in_head = False  # the head ends here: the body's deadline begins
                self._due = self._sweep.now + self.body_timeout  # type: ignore[union-attr]
        HttpToolsProtocol.data_received(self, data)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        self._in_head = True  # whatever comes next on this connection is a new head
        self._head_bytes = 0
        self._tail = b""
        self._due = self._sweep.now + self.head_timeout  # type: ignore[union-attr]

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


class _Sweep:
    """One server's sweep of its connections, and the clock their deadlines count on. Kept on
    uvicorn's server state, which all of that server's connections share."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self._loop = protocol.loop
        self._connections = protocol.server_state.connections
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
    return LimitedHttpToolsProtocol
