"""What the third attack round found in the server itself (issue 28), each on a real `serve`:
the head's size counted from the parser's callbacks, a body that never arrived, the server's
own answers in the contract's JSON, and one address unable to fill the connection cap."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import SPIN, token
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow

LIMITS: dict[str, Any] = {
    "max_head_bytes": 4096,
    "head_timeout_seconds": 5.0,
    "body_timeout_seconds": 5.0,
    "max_concurrency": 10,
    "max_connections_per_address": 4,
}
POST = b"POST /v1/triggers/spin-wheel HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StandInServer, ProxyProcess]]:
    tmp: Path = tmp_path_factory.mktemp("server")
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp, proxy_config(nector.url, server=LIMITS)) as proxy:
            yield nector, proxy


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return sock


def exchange(port: int, data: bytes, *, source: str = "127.0.0.1") -> bytes:
    """Send ``data`` and read until the server closes the connection."""
    with connect(port, source) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    with contextlib.suppress(TimeoutError, ConnectionResetError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def refusal(answer: bytes) -> tuple[int, str, dict[str, str]]:
    """The status, the error code and the headers of a raw answer in the contract's JSON."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json", answer
    error: dict[str, Any] = json.loads(body)["error"]
    assert set(error) == {"code", "message", "request_id"}
    return int(lines[0].split()[1]), error["code"], headers


def bearer() -> bytes:
    return b"authorization: Bearer " + token().encode() + b"\r\n"


def paid(nector: StandInServer) -> int:
    return len(nector.stand_in.calls)


def test_an_empty_line_before_the_request_line_does_not_switch_the_head_limit_off(
    served: tuple[StandInServer, ProxyProcess],
) -> None:
    _, proxy = served
    pad = b"x-pad: " + b"a" * 200_000 + b"\r\n"
    for before in (b"", b"\r\n", b"\r\n\r\n"):  # HTTP/1.1 allows empty lines before a request
        answer = exchange(
            proxy.port, before + b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + pad + b"\r\n"
        )
        assert refusal(answer)[:2] == (431, "headers_too_large"), before
    # A head within the limit, after empty lines, is served.
    answer = exchange(
        proxy.port, b"\r\n\r\nGET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_a_chunked_body_the_client_left_before_sending_is_never_forwarded(
    served: tuple[StandInServer, ProxyProcess],
) -> None:
    nector, proxy = served
    before = paid(nector)
    with connect(proxy.port) as sock:
        sock.sendall(POST + bearer() + b"transfer-encoding: chunked\r\n\r\n")
        time.sleep(0.3)  # the app is waiting for the body when the client leaves
    time.sleep(0.5)
    assert paid(nector) == before
    # The same request with its (empty) chunked body does reach Nector: the path is open.
    answer = exchange(
        proxy.port,
        POST + bearer() + b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert paid(nector) == before + 1


def test_a_transfer_encoding_the_server_refuses_pays_nothing_and_says_so_in_json(
    served: tuple[StandInServer, ProxyProcess],
) -> None:
    nector, proxy = served
    before = paid(nector)
    answer = exchange(proxy.port, POST + bearer() + b"transfer-encoding: xchunked\r\n\r\n{}")
    assert refusal(answer)[:2] == (400, "malformed_request")
    time.sleep(0.5)
    assert paid(nector) == before
    assert refusal(exchange(proxy.port, b"NOT HTTP AT ALL\r\n\r\n"))[:2] == (
        400,
        "malformed_request",
    )


def test_one_address_cannot_fill_the_connection_cap_for_everyone(
    served: tuple[StandInServer, ProxyProcess],
) -> None:
    _, proxy = served
    half = b"GET /healthz HTTP/1.1\r\nhost: x\r\n"  # a head that never ends
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(LIMITS["max_concurrency"] + 2):
            sock = stack.enter_context(connect(proxy.port, "127.0.0.2"))
            sock.sendall(half)
            held.append(sock)
        time.sleep(0.2)
        closed = []
        for sock in held:
            sock.settimeout(0.2)
            with contextlib.suppress(TimeoutError):  # still open: one of the address's own
                closed.append(sock.recv(65536))
        assert len(held) - len(closed) == LIMITS["max_connections_per_address"]
        status, code, headers = refusal(closed[0])
        assert (status, code, headers["retry-after"]) == (503, "server_busy", "1")
        # Everyone else is still served.
        assert httpx.get(f"{proxy.base_url}/healthz").status_code == 200
        # Past the cap of all addresses together, the server's 503 is the contract's JSON too.
        for source in ("127.0.0.3", "127.0.0.4"):
            for _ in range(LIMITS["max_connections_per_address"]):
                stack.enter_context(connect(proxy.port, source)).sendall(half)
        time.sleep(0.2)
        answer = exchange(proxy.port, b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        status, code, _ = refusal(answer)
        assert (status, code) == (503, "server_busy")
