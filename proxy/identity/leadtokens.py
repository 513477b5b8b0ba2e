"""Lead tokens for a STOREFRONT-purpose Nector key.

Nector asks a storefront read-only key to prove, on customer-scoped calls, which lead the call
is for: an ``x-leadtoken`` header holding an HS256 JWT ``{"lead_id": ..., "exp": ...}`` signed
with the key's signing secret, valid at most one hour (nector.readme.io, "Authentication",
Path A). The proxy holds that secret, so it mints the token itself for
the session's lead; the browser never sees the secret or the token.

A lead's token is reused while it has more than ``renew_before`` seconds left, so a customer's
run of calls signs once; the map is bounded like the proxy's other caches.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import jwt

from proxy.config.settings import Secret
from proxy.limits.bounded import ExpiringMap

LIFETIME_SECONDS = 3600  # Nector's limit for a lead token
RENEW_BEFORE_SECONDS = 600  # never send one that could expire while a slow call is under way


class LeadTokens:
    """Mints (and briefly reuses) the ``x-leadtoken`` value for a lead id."""

    def __init__(
        self,
        secret: Secret,
        *,
        lifetime_seconds: int = LIFETIME_SECONDS,
        renew_before_seconds: int = RENEW_BEFORE_SECONDS,
        size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= renew_before_seconds < lifetime_seconds <= LIFETIME_SECONDS:
            raise ValueError("a lead token lives at most an hour and is renewed before it ends")
        self._secret = secret
        self._lifetime = lifetime_seconds
        self._renew_before = renew_before_seconds
        self._tokens: ExpiringMap[str, bytes] = ExpiringMap(size, clock)

    def for_lead(self, lead_id: str) -> bytes:
        """The header value for ``lead_id``: a token with at least ``renew_before`` seconds
        left."""
        token = self._tokens.get(lead_id)
        if token is None:
            now = int(self._tokens.clock())
            expires_at = now + self._lifetime
            claims = {"lead_id": lead_id, "exp": expires_at}
            with warnings.catch_warnings():
                # Nector chooses its signing secrets' length; a warning per lead would only
                # put plain-text lines into the JSON log stream.
                warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
                token = jwt.encode(claims, self._secret.reveal(), algorithm="HS256").encode()
            self._tokens.put(lead_id, expires_at - self._renew_before, token)
        return token
