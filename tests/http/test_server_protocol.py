"""The server protocol's limits, over a fake transport: what counts as the head, and when a
connection is late (the same limits on a real `serve`: tests/test_hardening.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from bench.instructions import FakeTransport
from proxy.http.server_protocol import LimitedHttpToolsProtocol

HEAD = b"POST /v1/triggers/spin-wheel HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n"


class Transport(FakeTransport):
    """The benchmark's fake transport, keeping what was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written += data
        self.writes.append(data)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def serving(application: Any) -> tuple[LimitedHttpToolsProtocol, Transport]:
    config = Config(application, log_config=None, access_log=False, lifespan="off")
    config.load()
    proto = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    proto.connection_made(transport)  # type: ignore[arg-type]
    return proto, transport


async def answered(proto: LimitedHttpToolsProtocol, request: bytes) -> None:
    proto.data_received(request)
    for task in list(proto.tasks):
        await task


@pytest.fixture
async def protocol() -> AsyncIterator[tuple[LimitedHttpToolsProtocol, Transport]]:
    config = Config(app, log_config=None, access_log=False, lifespan="off")
    config.load()
    saved = LimitedHttpToolsProtocol.max_head_bytes
    LimitedHttpToolsProtocol.max_head_bytes = len(HEAD) + 10
    try:
        proto = LimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
        transport = Transport()
        proto.connection_made(transport)  # type: ignore[arg-type]
        yield proto, transport
    finally:
        LimitedHttpToolsProtocol.max_head_bytes = saved


async def test_a_body_sharing_the_heads_chunk_does_not_count_as_head(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    # The limit is the head and 10 bytes: counted with its body, this head would be refused.
    proto.data_received(HEAD.replace(b"length: 2", b"length: 40") + b"x" * 40)
    assert b" 431 " not in transport.written
    assert proto.cycle is not None  # the request went on to the app


async def test_a_head_split_across_chunks_counts_whole_and_no_more(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    head = HEAD.replace(b"length: 2", b"length: 40")
    cut = len(head) - 2  # the blank line that ends the head is split between the chunks
    proto.data_received(head[:cut])
    # Were the seam missed, the 40-byte body would count as head and pass the limit.
    proto.data_received(head[cut:] + b"x" * 40)
    assert b" 431 " not in transport.written
    assert proto.cycle is not None


async def test_a_head_past_the_limit_is_431_and_closed(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    proto.data_received(b"GET / HTTP/1.1\r\nx-pad: " + b"a" * 20)
    proto.data_received(b"a" * 100)
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"headers_too_large"' in transport.written
    assert transport.closed


async def test_a_late_head_is_closed_at_the_sweep_after_its_deadline(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    proto.data_received(b"GET / HTTP/1.1\r\n")
    assert proto._due is not None
    proto._past_due(proto._due - 0.1)
    assert not transport.closed
    proto._past_due(proto._due + 0.1)
    assert transport.closed


async def test_empty_lines_before_a_request_line_leave_the_head_counted(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    # HTTP/1.1 allows them; a search for the blank line that ends a head would stop here.
    proto.data_received(b"\r\n\r\nGET / HTTP/1.1\r\nx-pad: " + b"a" * 20)
    proto.data_received(b"a" * 100)
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert transport.closed


async def test_a_head_that_ends_past_the_limit_in_one_chunk_is_431(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    proto.data_received(b"GET / HTTP/1.1\r\nx-pad: " + b"a" * 200 + b"\r\n\r\n")
    assert proto.cycle is not None  # answered by the refusal in place of the app
    for task in list(proto.tasks):
        await task
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b'"code":"headers_too_large"' in transport.written
    assert transport.closed


# --- the keep-alive timeout, kept by the sweep -----------------------------------------------


async def test_an_idle_connection_closes_at_the_sweep_after_the_keep_alive_timeout(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    await answered(proto, HEAD + b"{}")
    assert proto.timeout_keep_alive_task is None  # no timer of uvicorn's per answer
    due = proto._due
    assert due is not None
    assert due == proto._sweep.now + proto.timeout_keep_alive  # type: ignore[union-attr]
    proto._past_due(due - 0.1)
    assert not transport.closed
    proto._past_due(due + 0.1)
    assert transport.closed


async def test_a_head_after_an_idle_wait_has_the_whole_head_timeout(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    await answered(proto, HEAD + b"{}")
    proto._sweep.now += proto.timeout_keep_alive - 1  # type: ignore[union-attr]  # a second before
    proto.data_received(HEAD[:20])
    now = proto._sweep.now  # type: ignore[union-attr]
    assert proto._due == now + proto.head_timeout
    proto._past_due(now + 2)  # past the keep-alive's deadline: a head is under way
    assert not transport.closed
    await answered(proto, HEAD[20:] + b"{}")
    assert transport.written.count(b"HTTP/1.1 204 ") == 2


async def test_a_body_still_arriving_after_an_early_answer_keeps_its_deadline(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    await answered(proto, HEAD + b"{")  # the app answers without reading the body
    assert transport.written.startswith(b"HTTP/1.1 204 ")
    now = proto._sweep.now  # type: ignore[union-attr]
    assert proto._due == now + proto.body_timeout
    proto.data_received(b"}")
    assert proto._due == now + proto.head_timeout


async def test_pipelined_requests_are_answered_in_turn_and_then_kept_alive(
    protocol: tuple[LimitedHttpToolsProtocol, Transport],
) -> None:
    proto, transport = protocol
    proto.data_received((HEAD + b"{}") * 2)  # the second waits for the first's answer
    for _ in range(2):
        for task in list(proto.tasks):
            await task
    assert transport.written.count(b"HTTP/1.1 204 ") == 2
    assert proto.timeout_keep_alive_task is None
    assert proto._due == proto._sweep.now + proto.timeout_keep_alive  # type: ignore[union-attr]


# --- one write an answer (_OneWrite) -------------------------------------------------------


async def hello(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    headers = [(b"content-length", b"5"), (b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


async def test_a_whole_answer_is_one_write_with_its_head() -> None:
    proto, transport = serving(hello)
    for _ in range(2):  # and again on the same connection
        transport.writes.clear()
        await answered(proto, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        [answer] = transport.writes
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
        assert answer.endswith(b"\r\n\r\nhello")
    assert not transport.closed


async def test_a_head_with_no_body_to_follow_leaves_when_the_answer_completes() -> None:
    proto, transport = serving(hello)
    await answered(proto, b"HEAD / HTTP/1.1\r\nhost: x\r\n\r\n")
    [answer] = transport.writes
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert answer.endswith(b"\r\n\r\n")
    assert b"content-length: 5" in answer


async def test_100_continue_leaves_at_once_and_the_answer_after_it() -> None:
    proto, transport = serving(hello)
    proto.data_received(
        b"POST / HTTP/1.1\r\nhost: x\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"
    )
    for _ in range(5):  # the app waits for the body, which the client sends only after the 100
        await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    await answered(proto, b"{}")
    assert transport.written.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert transport.written.endswith(b"\r\n\r\nhello")


async def test_a_streamed_answer_sends_its_head_with_the_first_part() -> None:
    async def streamed(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    proto, transport = serving(streamed)
    await answered(proto, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    first, rest = transport.writes
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"\r\n\r\n3\r\none\r\n")
    assert rest == b"3\r\ntwo\r\n0\r\n\r\n"


async def test_a_head_is_written_before_a_crashed_answer_closes() -> None:
    async def crashes(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("after the head")

    proto, transport = serving(crashes)
    await answered(proto, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
    assert transport.written.startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.closed
