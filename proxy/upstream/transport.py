"""How a call reaches Nector: aiohttp's connection pool driven directly, or any httpx transport.

``UpstreamClient`` speaks to a ``Transport``: one method that sends a request and gives back a
``Reply`` (its status, its raw headers, its body read up to a limit), and ``aclose``. Two kinds:

- ``AiohttpTransport``, the default: one aiohttp ClientSession, called with the URL parsed once
  and the headers as aiohttp takes them, and no object of httpx's per call. httpx's own pool
  rescans every connection on each request (encode/httpx#3215), and httpx's request and
  response objects around aiohttp cost a tenth of a forwarded call (docs/design.md).
- ``HttpxTransport``: any ``httpx.AsyncBaseTransport`` behind the same interface: the tests'
  ``httpx.MockTransport``, or httpx's own pool (the benchmark compares the two).

What the aiohttp one keeps of aiohttp's defaults and what it changes:
- no cookie jar (``DummyCookieJar``): aiohttp's default jar would send a cookie Nector set on
  one customer's call along with every later customer's;
- no environment proxies (``trust_env=False``), no redirects, no decompression (the proxy asks
  for an uncompressed answer and refuses a compressed one), and no timeouts of its own: the
  client's one deadline covers the whole call (``deadlines.py``);
- aiohttp's errors become httpx's, as both kinds raise them: a failed connection is
  ``httpx.ConnectError``, anything else on the way ``httpx.ReadError``, each carrying only the
  aiohttp error's class name.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Sequence
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

Headers = Sequence[tuple[str, str]]
RawHeaders = Sequence[tuple[bytes, bytes]]


class Reply(Protocol):
    """An answer whose head has arrived: its body is read with ``read``, and ``close`` always
    follows (the connection goes back to the pool if the body was read to its end)."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> RawHeaders: ...

    async def read(self, limit: int) -> bytes | None:
        """The body, or None as soon as it is past ``limit`` bytes (the rest left unread)."""
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    async def send(self, method: str, url: URL, headers: Headers, body: bytes | None) -> Reply:
        """Send one request; raise ``httpx.ConnectError`` if it could not be sent at all, or
        another ``httpx.TransportError``."""
        ...

    async def aclose(self) -> None: ...


async def _read(chunks: AsyncIterable[bytes], limit: int) -> bytes | None:
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


# No timeouts of aiohttp's own: it arms no timer for the call or its reads.
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=None, sock_read=None)


class _AiohttpReply:
    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.raw_headers

    async def read(self, limit: int) -> bytes | None:
        try:
            return await _read(self._response.content.iter_any(), limit)
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(type(exc).__name__) from exc

    async def close(self) -> None:
        self._response.release()
        await self._response.wait_for_close()


class AiohttpTransport:
    """Sends with a ClientSession made by ``session`` on the first call (inside the running
    event loop, as aiohttp requires)."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._make_session = session
        self._session: aiohttp.ClientSession | None = None

    async def send(self, method: str, url: URL, headers: Headers, body: bytes | None) -> Reply:
        session = self._session
        if session is None:
            session = self._session = self._make_session()
        try:
            response = await session.request(
                method,
                url,
                headers=headers,
                # None, not b"": aiohttp gives an empty body content-type
                # application/octet-stream and content-length 0, which a GET must not carry.
                data=body or None,
                allow_redirects=False,
                auto_decompress=False,
                timeout=_NO_TIMEOUT,
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(type(exc).__name__) from exc
        return _AiohttpReply(response)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class _HttpxReply:
    __slots__ = ("_stream", "headers", "status")

    def __init__(self, response: httpx.Response) -> None:
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # an async transport's answer
        self._stream = stream
        self.status = response.status_code
        self.headers = response.headers.raw

    async def read(self, limit: int) -> bytes | None:
        return await _read(self._stream, limit)

    async def close(self) -> None:
        # The stream itself, not Response.aclose(), which wraps the same call in a
        # generator-based context manager.
        await self._stream.aclose()


class HttpxTransport:
    """Any httpx transport: ``httpx.Request`` in, ``httpx.Response`` out."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self._transport = transport

    async def send(self, method: str, url: URL, headers: Headers, body: bytes | None) -> Reply:
        # As content, not a stream: httpx then adds Host, as aiohttp does.
        request = httpx.Request(method, str(url), headers=headers, content=body)
        return _HttpxReply(await self._transport.handle_async_request(request))

    async def aclose(self) -> None:
        await self._transport.aclose()
