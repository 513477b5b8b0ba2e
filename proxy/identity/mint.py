"""``POST /v1/sessions``: minting a session over HTTP, server to server, with the mint key.

For a merchant backend that cannot sign itsdangerous tokens itself. Off unless
TRIGGER_PROXY_MINT_KEY is set; the key is compared in constant time, and wrong keys are limited
per client address like failed sessions (past the limit nothing is compared).
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Sequence

from proxy.config.settings import Rate, Secret
from proxy.errors import ForbiddenField, InvalidBody, InvalidMintKey, NotFound, RateLimited
from proxy.http.asgi import Request
from proxy.http.body import parse_object
from proxy.http.responses import Answer
from proxy.identity.auth import FailureLimit
from proxy.identity.claims import ClaimError
from proxy.identity.sessions import mint_token


class Minter:
    def __init__(
        self,
        mint_key: Secret | None,
        session_secrets: Sequence[Secret],
        *,
        max_age_seconds: int,
        max_body_bytes: int,
        failures: Rate,
    ) -> None:
        self._mint_key = mint_key.reveal().encode() if mint_key else None
        self._secrets = [s.reveal() for s in session_secrets]
        self._max_age = max_age_seconds
        self._max_body = max_body_bytes
        self._failures = FailureLimit(failures)

    async def mint(self, request: Request) -> Answer:
        """Sign the body's claims for ``ttl_seconds`` (at most ``sessions.max_age_seconds``)."""
        if self._mint_key is None:
            raise NotFound()
        raw = await request.json_body(self._max_body)
        wait = self._failures.wait(request.client_ip)
        if wait > 0:
            raise RateLimited(wait, "too many wrong mint keys")
        scheme, _, given = (request.header(b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("latin-1", "replace"), self._mint_key
        ):
            self._failures.hit(request.client_ip)
            raise InvalidMintKey()
        body = parse_object(raw)
        max_age = self._max_age
        ttl = body.pop("ttl_seconds", max_age)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= max_age:
            raise InvalidBody(f"ttl_seconds must be an integer from 1 to {max_age}")
        if "exp" in body:
            raise ForbiddenField('the client may not set "exp"; use ttl_seconds')
        now = int(time.time())
        try:
            token = mint_token(self._secrets, body, ttl_seconds=ttl, clock=lambda: now)
        except ClaimError as exc:
            raise InvalidBody(str(exc)) from exc
        except UnicodeError as exc:  # a lone surrogate in a claim cannot be UTF-8
            raise InvalidBody("the claims must be valid Unicode text") from exc
        data = {"token": token, "expires_at": now + ttl}
        return Answer(200, json.dumps(data).encode(), [(b"cache-control", b"no-store")])
