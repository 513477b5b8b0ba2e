"""The request view and its capped body reader, over bare ASGI messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from proxy.errors import BodyTooLarge, InvalidBody, UnsupportedMediaType
from proxy.http.asgi import Request, TrustedPeers


def scope(**given: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": "/v1/triggers/spin-wheel",
        "headers": [],
        "client": ("198.51.100.7", 40000),
    }
    return {**base, **given}


def receiving(*chunks: bytes, disconnect: bool = False) -> Any:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def request(headers: Sequence[tuple[bytes, bytes]] = (), *chunks: bytes, **given: Any) -> Request:
    return Request(scope(headers=list(headers), **given), receiving(*chunks or (b"",)), None)


def test_under_a_prefix_the_path_is_the_routes() -> None:
    mounted = request(path="/rewards/healthz", root_path="/rewards")
    assert mounted.path == "/healthz"
    assert request(path="/healthz", root_path="").path == "/healthz"


def test_the_first_of_a_repeated_header_wins() -> None:
    seen = request([(b"x-source", b"web"), (b"x-source", b"mobile")])
    assert seen.header(b"x-source") == "web"


def test_the_cookie_is_read_by_its_name_only() -> None:
    jar = request([(b"cookie", b'other=1; trigger_session="tok.en"; x=2')])
    assert jar.cookie("trigger_session") == "tok.en"
    assert jar.cookie("missing") is None


def test_forwarded_headers_count_only_from_a_trusted_peer() -> None:
    trusted = TrustedPeers(["10.0.0.0/8"])
    headers = [(b"x-forwarded-for", b"203.0.113.9, 10.0.0.2"), (b"x-request-id", b"lb-42")]
    via_balancer = Request(scope(headers=headers, client=("10.0.0.1", 1)), receiving(b""), trusted)
    assert (via_balancer.client_ip, via_balancer.request_id) == ("203.0.113.9", "lb-42")
    direct = Request(scope(headers=headers), receiving(b""), trusted)
    assert direct.client_ip == "198.51.100.7"
    assert direct.request_id != "lb-42"


async def test_a_chunked_body_is_cut_off_past_the_cap() -> None:
    assert await request((), b"{", b"}").body(10) == b"{}"
    with pytest.raises(BodyTooLarge):
        await request((), b"x" * 6, b"x" * 6).body(10)


async def test_a_declared_length_is_checked_before_and_after_reading() -> None:
    with pytest.raises(BodyTooLarge):
        request([(b"content-length", b"11")]).declared_length(10)
    with pytest.raises(InvalidBody):
        request([(b"content-length", b"-1")]).declared_length(10)
    short = request([(b"content-length", b"5"), (b"content-type", b"application/json")], b"{}")
    declared = short.declared_json_length(10)
    assert declared == 5
    with pytest.raises(InvalidBody):
        await short.read_declared(10, declared)


def test_a_body_must_be_json_with_any_parameters() -> None:
    request([(b"content-type", b"application/json; charset=utf-8")]).check_json()
    with pytest.raises(UnsupportedMediaType):
        request([(b"content-type", b"text/plain")]).check_json()
