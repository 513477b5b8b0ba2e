"""The fault matrix: the upstream misbehaves in every way we could think of, over a real socket
and the real (aiohttp) transport. For each fault: the contract's code, the next normal request
succeeds, and no connection or task is left behind."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from proxy.limits.memory_store import MemoryStore
from tests import helpers
from tests.helpers import Harness, error_code, make_settings, open_harness, token, tried
from tests.redis_util import free_port

pytestmark = pytest.mark.slow

TIMEOUT = 0.5
OK_BODY = json.dumps(
    {"meta": {"status": "success"}, "data": {"wallet_reward": {"coins": 1}}}
).encode()


def http(status: str, body: bytes, *headers: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class FaultyUpstream:
    """An HTTP/1.1 server whose answer is chosen by ``mode``; it tracks its open connections."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.hung_up = 0  # connections the proxy closed while we stalled
        self.open: set[asyncio.StreamWriter] = set()
        self.heads: list[bytes] = []  # the request heads received
        self.bodies: list[bytes] = []  # and their bodies
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v2/merchant/activities"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                length = next(
                    (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                     if line.startswith(b"content-length:")), 0)  # fmt: skip
                self.bodies.append(await reader.readexactly(length))
                if not await self.answer(reader, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open.discard(writer)
            writer.close()

    async def answer(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> bool:
        """Write the answer for the current mode; False closes the connection."""
        mode = self.mode
        if mode == "ok":
            w.write(http("200 OK", OK_BODY, "content-type: application/json"))
        elif mode == "set-cookie":
            w.write(http("200 OK", OK_BODY, "set-cookie: nector_session=customer-a; Path=/"))
        elif mode in ("hang", "slow"):
            # Stall, watching for the proxy to hang up (EOF): that is what must happen.
            try:
                await asyncio.wait_for(r.read(1), 3600 if mode == "hang" else TIMEOUT + 0.5)
                self.hung_up += 1
                return False
            except TimeoutError:
                w.write(http("200 OK", OK_BODY))
        elif mode == "500":
            w.write(http("500 Internal Server Error", b'{"meta":{"status":"error"}}'))
        elif mode == "429":
            w.write(http("429 Too Many Requests", b"{}", "retry-after: 7"))
        elif mode == "401":
            w.write(http("401 Unauthorized", b'{"meta":{"status":"error"},"data":{}}'))
        elif mode == "garbage":
            w.write(b"SSH-2.0-OpenSSH_9.0\r\n\r\nnot http at all\r\n")
            return False
        elif mode == "html":
            w.write(http("200 OK", b"<html>maintenance</html>", "content-type: text/html"))
        elif mode == "huge":
            w.write(http("200 OK", b'{"a":"' + b"x" * 200_000 + b'"}'))
        elif mode == "huge-chunked":
            w.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            for _ in range(100):
                w.write(b"400\r\n" + b"x" * 1024 + b"\r\n")
                await w.drain()
            w.write(b"0\r\n\r\n")
        elif mode == "close-mid-body":
            w.write(b'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n{"meta":')
            await w.drain()
            return False
        elif mode == "close-before-answer":
            return False
        await w.drain()
        return True


@pytest.fixture
async def rig() -> AsyncIterator[tuple[Harness, FaultyUpstream]]:
    upstream = FaultyUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", upstream.port)
    settings = make_settings(
        upstream={"url": upstream.url, "timeout_seconds": TIMEOUT},
        limits={"per_customer": "1000/minute", "upstream": "1000/minute"},
        triggers=[{"id": "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10", "name": "spin-wheel"}],
    )
    # The real default transport: no MockTransport here.
    async with server, open_harness(settings, store=MemoryStore(), real_transport=True) as h:
        yield h, upstream
        server.close()
        for writer in list(upstream.open):
            writer.close()


FAULTS = [
    ("hang", 504, "upstream_timeout"),
    ("slow", 504, "upstream_timeout"),
    ("500", 502, "upstream_error"),
    ("429", 503, "upstream_busy"),
    ("401", 502, "upstream_rejected"),
    ("garbage", 502, "upstream_error"),
    ("html", 502, "upstream_error"),
    ("huge", 502, "upstream_error"),
    ("huge-chunked", 502, "upstream_error"),
    ("close-mid-body", 502, "upstream_error"),
    ("close-before-answer", 502, "upstream_error"),
]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.02)
    gc.collect()


def proxy_tasks() -> int:
    """Tasks of the proxy and the test, not of the fake upstream's own handlers."""
    return sum(
        1
        for t in asyncio.all_tasks()
        if "FaultyUpstream" not in getattr(t.get_coro(), "__qualname__", "")
    )


@pytest.mark.parametrize(("mode", "status", "code"), FAULTS)
async def test_each_fault_maps_to_the_contract_and_leaves_nothing_behind(
    rig: tuple[Harness, FaultyUpstream], mode: str, status: int, code: str
) -> None:
    h, upstream = rig
    assert (await h.spin(token("customer-warm-1"))).status_code == 200  # a pooled connection
    await settle()
    tasks_before = proxy_tasks()
    upstream.mode = mode
    refused = await h.spin(token("customer-fault-1"))
    assert (refused.status_code, error_code(refused)) == (status, code)
    if mode == "429":
        assert refused.headers["retry-after"] == "7"
    upstream.mode = "ok"
    after = await h.spin(token("customer-after-1"))
    assert after.status_code == 200
    await settle()
    assert proxy_tasks() <= tasks_before
    # At most the pool's one keep-alive connection remains open at the upstream.
    assert len(upstream.open) <= 1
    if mode in ("hang", "slow"):
        assert upstream.hung_up == 1  # the proxy closed the stalled connection at its deadline
    tried("faults", f"{mode} -> {status} {code}")


async def test_a_refused_connection_is_502_and_the_next_request_succeeds(
    rig: tuple[Harness, FaultyUpstream],
) -> None:
    h, _ = rig
    dead = free_port()
    # The upstream URL is fixed at start: a second app points at a port nobody listens on.
    settings = make_settings(
        upstream={"url": f"http://127.0.0.1:{dead}/x", "timeout_seconds": TIMEOUT}
    )
    async with open_harness(settings, real_transport=True) as down:
        refused = await down.spin()
        assert (refused.status_code, error_code(refused)) == (502, "upstream_error")
    assert (await h.spin(token("customer-after-2"))).status_code == 200
    tried("faults", "refused connection -> 502 upstream_error")


async def test_many_faults_in_a_row_leak_no_connections(
    rig: tuple[Harness, FaultyUpstream],
) -> None:
    h, upstream = rig
    for i in range(30):
        upstream.mode = ["close-mid-body", "garbage", "500", "close-before-answer"][i % 4]
        await h.spin(token(f"customer-storm-{i:02}"))
    upstream.mode = "ok"
    assert (await h.spin(token("customer-storm-ok"))).status_code == 200
    await settle()
    assert len(upstream.open) <= 1


async def test_a_cookie_nector_sets_is_never_sent_back() -> None:
    """One customer's call must not carry a cookie Nector set on another's. The host is a name
    (localhost, bound to 127.0.0.1 here), since cookie jars ignore cookies from IP addresses."""
    upstream = FaultyUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", upstream.port)
    settings = make_settings(
        upstream={"url": f"http://localhost:{upstream.port}/api/v2/merchant/activities"},
        limits={"per_customer": "1000/minute", "upstream": "1000/minute"},
    )
    async with server, open_harness(settings, store=MemoryStore(), real_transport=True) as h:
        upstream.mode = "set-cookie"
        assert (await h.spin(token("customer-a1"))).status_code == 200
        upstream.mode = "ok"
        assert (await h.spin(token("customer-b1"))).status_code == 200
        server.close()
        for writer in list(upstream.open):
            writer.close()
    assert len(upstream.heads) == 2
    assert all(b"cookie" not in head.lower() for head in upstream.heads)


def head_fields(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """A request head's request line and its fields, names lowercased, in order."""
    line, *fields = head.rstrip(b"\r\n").split(b"\r\n")
    pairs = [field.split(b":", 1) for field in fields]
    return line, [(name.lower(), value.strip()) for name, value in pairs]


@pytest.mark.parametrize("pool", ["aiohttp", "httpx"])
async def test_a_real_transport_sends_nector_exactly_the_proxys_head(pool: str) -> None:
    """What reaches Nector over the default transport (aiohttp's) and over httpx's own pool,
    field by field: the server's credentials, the source and request id, a JSON body's type
    and length on a POST and no body fields on a GET, one Host, and nothing either would add
    of its own accord."""
    upstream = FaultyUpstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", upstream.port)
    settings = make_settings(
        upstream={"url": upstream.url},
        limits={"per_customer": "1000/minute", "upstream": "1000/minute"},
        reads={"routes": ["aggreegateddetails"], "budget": "10/minute"},
    )
    transport = httpx.AsyncHTTPTransport() if pool == "httpx" else None
    async with (
        server,
        open_harness(
            settings, store=MemoryStore(), transport=transport, real_transport=transport is None
        ) as h,
    ):
        answer = await h.spin(token("customer-h1"), headers={"x-source": "web"})
        assert answer.status_code == 200
        read = await h.client.get(
            "/api/v2/merchant/aggreegateddetails",
            headers={"authorization": f"Bearer {token('customer-h1')}", "x-source": "web"},
        )
        assert read.status_code == 200, read.text
        server.close()
        for writer in list(upstream.open):
            writer.close()
    (post_line, post), (get_line, get) = (head_fields(head) for head in upstream.heads)
    sent, read_body = upstream.bodies
    assert json.loads(sent)["trigger_id"] == helpers.SPIN
    assert read_body == b""
    assert post_line == b"POST /api/v2/merchant/activities HTTP/1.1"
    assert get_line == b"GET /api/v2/merchant/aggreegateddetails HTTP/1.1"
    common = {
        b"host": f"127.0.0.1:{upstream.port}".encode(),
        b"x-apikey": helpers.API_KEY.encode(),
        b"x-workspaceid": helpers.WORKSPACE_ID.encode(),
        b"accept": b"application/json",
        b"accept-encoding": b"identity",
        b"user-agent": b"trigger-proxy",
        b"x-source": b"web",
    }
    assert dict(post) == {
        **common,
        b"x-request-id": answer.headers["x-request-id"].encode(),
        b"content-type": b"application/json",
        b"content-length": str(len(sent)).encode(),
    }
    assert dict(get) == {**common, b"x-request-id": read.headers["x-request-id"].encode()}
    assert len(post) == len(dict(post))  # no field twice
    assert len(get) == len(dict(get))
