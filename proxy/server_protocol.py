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


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 16384
    head_timeout = 10.0
    body_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._tail = b""
        self._in_head = True
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            # Only the head counts: a body (or the next request) may share its chunk. The
            # blank line that ends a head may itself be split between two chunks.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else max(0, end - len(self._tail))
            self._tail = seen[-3:]
            if self._head_bytes > self.max_head_bytes:
                self._refuse_head()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if self._expects_body():
            self._arm(self.body_timeout)
        else:
            self._disarm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # whatever comes next on this connection is a new head
        self._head_bytes = 0
        self._tail = b""
        self._arm(self.head_timeout)

    def _expects_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._in_head and self.cycle is not None and not self.cycle.response_complete:
            self._arm(self.head_timeout)  # a response is under way: the next head waits for it
            return
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
