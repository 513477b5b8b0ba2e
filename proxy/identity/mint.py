"""Minting a session over HTTP: ``POST /v1/sessions``, server to server, with the mint key;
``POST /v1/sessions/shopify``, from a Shopify theme's digest.

The first is for a merchant backend that cannot sign itsdangerous tokens itself: off unless
TRIGGER_PROXY_MINT_KEY is set; the key is compared in constant time, and wrong keys are limited
per client address like failed sessions (past the limit nothing is compared). The second is for
a shop with no backend at all (docs/shopify.md): off unless TRIGGER_PROXY_SHOPIFY_DIGEST_SECRETS
is set; every refused attempt counts toward the same per-address limit.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Sequence

from proxy.config.settings import Rate, Secret
from proxy.errors import (
    ForbiddenField,
    InvalidBody,
    InvalidMintKey,
    NotFound,
    ProxyError,
    RateLimited,
)
from proxy.http.asgi import Request
from proxy.http.body import parse_object
from proxy.http.responses import Answer
from proxy.identity.auth import FailureLimit
from proxy.identity.claims import ClaimError
from proxy.identity.sessions import mint_token
from proxy.identity.shopify import DigestVerifier


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


_DIGEST_FIELDS = frozenset(["shop", "customer_id", "ts", "digest"])


class DigestMinter:
    """``POST /v1/sessions/shopify``: a theme's digest traded for an ordinary session of the
    customer it names, valid for ``max_age_seconds`` (sessions.max_age_seconds). A failed
    trade counts in ``failures``, the session checks' own limit: a wrong digest is a forged
    session like a forged token."""

    def __init__(
        self,
        verifier: DigestVerifier | None,
        session_secrets: Sequence[Secret],
        *,
        max_age_seconds: int,
        max_body_bytes: int,
        failures: FailureLimit,
    ) -> None:
        self._verifier = verifier
        self._secrets = [s.reveal() for s in session_secrets]
        self._max_age = max_age_seconds
        self._max_body = max_body_bytes
        self._failures = failures

    async def mint(self, request: Request) -> Answer:
        if self._verifier is None:
            raise NotFound()
        raw = await request.json_body(self._max_body)
        wait = self._failures.wait(request.client_ip)
        if wait > 0:
            raise RateLimited(wait, "too many failed digest checks")
        try:
            shop, customer, ts, digest = _digest_fields(parse_object(raw))
            session = self._verifier.verify(shop, customer, ts, digest)
        except ProxyError:
            self._failures.hit(request.client_ip)
            raise
        now = int(time.time())
        claims = {"customer_id": session.subject}
        token = mint_token(self._secrets, claims, ttl_seconds=self._max_age, clock=lambda: now)
        data = {"token": token, "expires_at": now + self._max_age}
        return Answer(200, json.dumps(data).encode(), [(b"cache-control", b"no-store")])


def _digest_fields(body: dict[str, object]) -> tuple[str, str, int, str]:
    """The body's shop, numeric customer id, ts and digest, or 400 invalid_body."""
    if set(body) != _DIGEST_FIELDS:
        raise InvalidBody('the body must hold exactly "shop", "customer_id", "ts" and "digest"')
    shop, customer, ts, digest = body["shop"], body["customer_id"], body["ts"], body["digest"]
    if isinstance(customer, int) and not isinstance(customer, bool) and customer > 0:
        customer = str(customer)  # as Liquid renders {{ customer.id }}
    if not (isinstance(customer, str) and 0 < len(customer) <= 20 and customer.isascii()):
        raise InvalidBody("customer_id must be Shopify's numeric customer id")
    if not customer.isdigit():
        raise InvalidBody("customer_id must be Shopify's numeric customer id")
    if isinstance(ts, str) and ts.isascii() and ts.isdigit() and len(ts) <= 12:
        ts = int(ts)  # as a data- attribute carries it
    if isinstance(ts, bool) or not isinstance(ts, int) or not 0 <= ts < 10**12:
        raise InvalidBody("ts must be unix seconds")
    if not isinstance(shop, str) or not isinstance(digest, str) or len(digest) > 128:
        raise InvalidBody("shop and digest must be strings")
    return shop, customer, ts, digest
