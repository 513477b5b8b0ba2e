"""An httpx transport over one aiohttp ClientSession: httpx's API, aiohttp's speed.

httpx's own connection pool rescans every connection on each request (encode/httpx#3215);
aiohttp's does not (the benchmark compares the two side by side). The proxy keeps httpx as its
client API (``httpx.Request`` in, ``httpx.Response`` out) and sends through aiohttp here, with
none of a general adapter's work (a URL turned back into a string, headers walked through
httpx's mappings, a timeout object and a generator per response).

What it keeps of aiohttp's defaults and what it changes:
- no cookie jar (``DummyCookieJar``): aiohttp's default jar would send a cookie Nector set on
  one customer's call along with every later customer's;
- no environment proxies (``trust_env=False``), no redirects, no decompression (the proxy asks
  for an uncompressed answer; httpx decodes one if it comes anyway);
- aiohttp's errors become httpx's: a failed connection is ``httpx.ConnectError``, anything else
  on the way ``httpx.ReadError``, each carrying only the aiohttp error's class name.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
import httpx


class _Body(httpx.AsyncByteStream):
    """The answer's body as aiohttp reads it, chunk by chunk."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    def __aiter__(self) -> _Body:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._response.content.readany()
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(type(exc).__name__) from exc
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        # The connection goes back to the pool if the body was read to its end, else it is
        # closed.
        self._response.release()
        await self._response.wait_for_close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests with a ClientSession made by ``session`` on the first request
    (inside the running event loop, as aiohttp requires)."""

    def __init__(self, session: Callable[[], aiohttp.ClientSession]) -> None:
        self._make_session = session
        self._session: aiohttp.ClientSession | None = None
        # httpx's timeout extension in aiohttp's terms, converted once per distinct value (the
        # proxy sets none: its own deadline covers the whole call, proxy/upstream/deadlines.py).
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None:
            session = self._session = self._make_session()
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=[
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw
                ],
                # None, not b"": aiohttp gives an empty body content-type
                # application/octet-stream and content-length 0, which a GET must not carry.
                data=request.content or None,
                allow_redirects=False,
                auto_decompress=False,
                timeout=self._timeout(request),
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise httpx.ReadError(type(exc).__name__) from exc
        return httpx.Response(
            response.status, headers=response.raw_headers, stream=_Body(response), request=request
        )

    def _timeout(self, request: httpx.Request) -> aiohttp.ClientTimeout:
        """httpx's timeout extension in aiohttp's terms (pool -> connect)."""
        given = request.extensions.get("timeout", {})
        key = (given.get("connect"), given.get("read"), given.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            connect, read, pool = key
            timeout = aiohttp.ClientTimeout(
                total=None, connect=pool, sock_connect=connect, sock_read=read
            )
            if len(self._timeouts) < 16:
                self._timeouts[key] = timeout
        return timeout

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
