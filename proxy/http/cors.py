"""Which browser origins may call the proxy, and the CORS headers they get.

Unlike a permissive CORS layer that only withholds headers, a request whose Origin is not
allowed is refused outright (403 origin_not_allowed): the browser's same-origin rule is not the
only line, since a cookie-carried session must never be usable from another site.
"""

from __future__ import annotations

from proxy.config.settings import CorsSettings
from proxy.errors import Headers

ALLOW_HEADERS = b"authorization, content-type, x-source, idempotency-key, x-challenge-token"
# Nector's own widget sends these on every call (x-apikey is "null" without a key); the proxy
# ignores them and never forwards them, but a preflight that refused them would stop the call.
NECTOR_ALLOW_HEADERS = ALLOW_HEADERS + b", accept, x-apikey, x-apikey-algo, x-workspaceid"
EXPOSE_HEADERS = (
    b"retry-after, ratelimit, ratelimit-policy, ratelimit-limit, ratelimit-remaining, "
    b"ratelimit-reset, x-request-id, idempotent-replayed, x-cache, age"
)


class CorsPolicy:
    def __init__(self, settings: CorsSettings) -> None:
        self._any = "*" in settings.allow_origins
        self._origins = frozenset(o.rstrip("/") for o in settings.allow_origins if o != "*")
        self.allow_credentials = settings.allow_credentials

    def allows(self, origin: str) -> bool:
        return self._any or origin in self._origins

    def allows_cookie(self, origin: str) -> bool:
        """A cookie session counts only from an origin listed by name, with credentials on:
        "*" would let any site spend a visitor's session (a plain form POST needs no CORS)."""
        return self.allow_credentials and origin in self._origins

    def response_headers(self, origin: str, varies: bool = False) -> Headers:
        """``varies``: the answer says ``Vary: Origin`` itself (a cacheable one), not twice."""
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-expose-headers", EXPOSE_HEADERS),
        ]
        if not varies:
            headers.append((b"vary", b"Origin"))
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers

    def preflight_headers(self, methods: str, nector: bool = False) -> Headers:
        """``nector``: a preflight on Nector's own paths, which allows its widget's headers."""
        return [
            (b"access-control-allow-methods", methods.encode()),
            (b"access-control-allow-headers", NECTOR_ALLOW_HEADERS if nector else ALLOW_HEADERS),
            (b"access-control-max-age", b"600"),
        ]
