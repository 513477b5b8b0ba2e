"""Which browser origins may call the proxy, and what each answer tells the browser."""

from __future__ import annotations

from proxy.config.settings import CorsSettings
from proxy.http.cors import CorsPolicy

SHOP = "https://shop.example.com"


def headers(pairs: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in pairs}


def test_only_listed_origins_are_allowed_exactly() -> None:
    policy = CorsPolicy(CorsSettings(allow_origins=(SHOP + "/",), allow_credentials=True))
    assert policy.allows(SHOP)
    for other in ("https://shop.example.com.evil.test", "http://shop.example.com", "null", ""):
        assert not policy.allows(other)


def test_an_allowed_origin_is_echoed_with_vary_and_the_exposed_headers() -> None:
    policy = CorsPolicy(CorsSettings(allow_origins=(SHOP,), allow_credentials=True))
    sent = headers(policy.response_headers(SHOP))
    assert sent["access-control-allow-origin"] == SHOP
    assert sent["vary"] == "Origin"
    assert sent["access-control-allow-credentials"] == "true"
    exposed = {h.strip() for h in sent["access-control-expose-headers"].split(",")}
    assert {"retry-after", "ratelimit", "ratelimit-policy", "x-request-id"} <= exposed


def test_credentials_are_announced_only_when_configured() -> None:
    policy = CorsPolicy(CorsSettings(allow_origins=(SHOP,), allow_credentials=False))
    assert "access-control-allow-credentials" not in headers(policy.response_headers(SHOP))


def test_nectors_paths_allow_the_headers_its_widget_sends() -> None:
    policy = CorsPolicy(CorsSettings(allow_origins=(SHOP,)))
    ours = headers(policy.preflight_headers("POST, OPTIONS"))["access-control-allow-headers"]
    nectors = headers(policy.preflight_headers("POST, OPTIONS", nector=True))
    allowed = {h.strip() for h in nectors["access-control-allow-headers"].split(",")}
    assert {"x-apikey", "x-apikey-algo", "x-workspaceid", "accept"} <= allowed
    assert "x-apikey" not in ours
    assert nectors["access-control-allow-methods"] == "POST, OPTIONS"
