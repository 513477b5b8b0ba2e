"""The proxy's refusals: one tree, one JSON shape.

    ProxyError                      status, code, message (+ headers)
    ├── InvalidJSON                 400 invalid_json
    ├── InvalidBody                 400 invalid_body
    ├── ForbiddenField              400 forbidden_field
    ├── InvalidSource               400 invalid_source
    ├── InvalidQuery                400 invalid_query
    ├── MalformedRequest            400 malformed_request   (by the server protocol)
    ├── MissingSession              401 missing_session
    ├── InvalidSession              401 invalid_session
    ├── ExpiredSession              401 expired_session   (subclass of InvalidSession)
    ├── NotFromAppProxy             401 invalid_session   (subclass: a bad App Proxy signature)
    ├── InvalidMintKey              401 invalid_mint_key
    ├── TriggerNotAllowed           403 trigger_not_allowed
    ├── SourceNotAllowed            403 source_not_allowed
    ├── OriginNotAllowed            403 origin_not_allowed
    ├── IdentityMismatch            403 identity_mismatch
    ├── LeadSessionRequired         403 lead_session_required
    ├── ReadNotAllowed              403 read_not_allowed
    ├── ShopNotAllowed              403 shop_not_allowed
    ├── TriggerNotActive            403 trigger_not_active   (outside its schedule; opens_at)
    ├── ChallengeFailed             403 challenge_failed     (a bad, missing or reused token)
    ├── RedemptionOff               403 redemption_off      (offerredeems, [redemption] off)
    ├── OfferNotAllowed             403 offer_not_allowed   (an offer [redemption] does not list)
    ├── NotFound                    404 not_found
    ├── MethodNotAllowed            405 method_not_allowed
    ├── IdempotencyInFlight         409 idempotency_in_flight   (Retry-After)
    ├── BodyTooLarge                413 body_too_large
    ├── HeadersTooLarge             431 headers_too_large     (by the server protocol)
    ├── UnsupportedMediaType        415 unsupported_media_type
    ├── IdempotencyKeyReused        422 idempotency_key_reused
    ├── RateLimited                 429 rate_limited            (Retry-After)
    ├── CoinBudgetSpent             429 coin_budget_spent       (Retry-After)
    ├── UpstreamFailure             502/503/504, the upstream's faults
    │   ├── UpstreamError           502 upstream_error
    │   │   └── UpstreamUnreachable 502 upstream_error    (nothing was sent: no quota spent)
    │   ├── UpstreamRejected        502 upstream_rejected
    │   ├── UpstreamBusy            503 upstream_busy           (Retry-After)
    │   └── UpstreamTimeout         504 upstream_timeout
    ├── StorageUnavailable          503 storage_unavailable
    ├── ChallengeUnavailable        503 challenge_unavailable (Retry-After; fail closed)
    └── ServerBusy                  503 server_busy           (by the server protocol; Retry-After)

On Nector's paths a refusal is also in Nector's envelope; its data.message: http/shopper.py.

Library errors (itsdangerous, httpx, redis) are translated into these where they are caught,
with ``raise ... from exc``. Messages are fixed text written here, never an exception's text:
nothing upstream-internal or secret can reach a client through them. A fault of the upstream
or the store also carries ``cause``, a short word for the operator's log ("refused", "dns",
"timeout", "nector_401", ...), never shown to the client.
"""

from __future__ import annotations

import json
import math
import socket
import ssl

Headers = list[tuple[bytes, bytes]]

# The start of each refusal's body, up to its request id, for refusals that carry their class's
# own message (nearly all of them): built once per class, not per request.
_PREFIXES: dict[type[ProxyError], bytes] = {}


class ProxyError(Exception):
    status = 500
    code = "internal_error"
    message = "internal error"
    cause: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: Headers | None = None,
        cause: str | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        if cause is not None:
            self.cause = cause
        self.headers: Headers = headers or []
        self.details = details  # more fields of the error object, such as "opens_at"
        super().__init__(self.message)

    def body(self, request_id: str) -> bytes:
        # The code is fixed, the request id checked (asgi.Request): only the message is escaped.
        cls = type(self)
        prefix = _PREFIXES.get(cls) if self.message is cls.message else None
        if prefix is None:
            prefix = (
                f'{{"error":{{"code":"{self.code}","message":{json.dumps(self.message)},'
                '"request_id":"'
            ).encode()
            if self.message is cls.message:
                _PREFIXES[cls] = prefix
        more = json.dumps(self.details, separators=(",", ":"))[1:] if self.details else "}"
        return (
            prefix + request_id.encode() + b'"' + b"," * bool(self.details) + more.encode() + b"}"
        )


class _RetryLater(ProxyError):
    """A refusal that carries Retry-After: whole seconds, rounded up, never early."""

    def __init__(
        self,
        retry_after: float,
        message: str | None = None,
        *,
        headers: Headers | None = None,
        cause: str | None = None,
    ) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        retry = (b"retry-after", b"%d" % self.retry_after)
        super().__init__(message, headers=[*headers, retry] if headers else [retry], cause=cause)


class InvalidJSON(ProxyError):
    status, code, message = 400, "invalid_json", "the body is not valid JSON"


class InvalidBody(ProxyError):
    status, code, message = 400, "invalid_body", "the body must be a JSON object"


class ForbiddenField(ProxyError):
    status, code, message = 400, "forbidden_field", "the body holds a field the client may not set"


class InvalidSource(ProxyError):
    status, code, message = 400, "invalid_source", "X-Source must be one of web, mobile, unix"


class InvalidQuery(ProxyError):
    status, code, message = 400, "invalid_query", "a query parameter this read does not take"


class MalformedRequest(ProxyError):
    status, code, message = 400, "malformed_request", "the request is not well-formed HTTP/1.1"


class MissingSession(ProxyError):
    status, code, message = 401, "missing_session", "no session token was sent"


class InvalidSession(ProxyError):
    status, code, message = 401, "invalid_session", "the session token is not valid"


class ExpiredSession(InvalidSession):
    status, code, message = 401, "expired_session", "the session token has expired"


class NotFromAppProxy(InvalidSession):
    """A bad App Proxy signature: its own class, so its body is cached (a forgery's path)."""

    message = "the request did not come through the shop's Shopify App Proxy"


class InvalidMintKey(ProxyError):
    status, code, message = 401, "invalid_mint_key", "the mint key is missing or wrong"


class TriggerNotAllowed(ProxyError):
    status, code, message = 403, "trigger_not_allowed", "this trigger is not allow-listed"


class SourceNotAllowed(ProxyError):
    status, code, message = 403, "source_not_allowed", "this source may not call this trigger"


class OriginNotAllowed(ProxyError):
    status, code, message = 403, "origin_not_allowed", "this origin is not allowed"


class IdentityMismatch(ProxyError):
    status, code, message = 403, "identity_mismatch", "the body names another customer"


class LeadSessionRequired(ProxyError):
    status, code = 403, "lead_session_required"
    message = "this proxy's Nector key serves lead_id sessions only"


class ReadNotAllowed(ProxyError):
    status, code, message = 403, "read_not_allowed", "this read is not allowed"


class ShopNotAllowed(ProxyError):
    status, code, message = 403, "shop_not_allowed", "this proxy serves another Shopify shop"


class TriggerNotActive(ProxyError):
    status, code, message = 403, "trigger_not_active", "this campaign is not open now"


class ChallengeFailed(ProxyError):
    status, code, message = 403, "challenge_failed", "the human check did not pass; try again"


class RedemptionOff(ProxyError):
    status, code, message = 403, "redemption_off", "redemption is not enabled on this proxy"


class OfferNotAllowed(ProxyError):
    status, code, message = 403, "offer_not_allowed", "the offer is not in redemption.offers"


class NotFound(ProxyError):
    status, code, message = 404, "not_found", "no such route"


class MethodNotAllowed(ProxyError):
    status, code, message = 405, "method_not_allowed", "method not allowed on this route"


class IdempotencyInFlight(_RetryLater):
    status, code = 409, "idempotency_in_flight"
    message = "a request with this Idempotency-Key is still being processed"


class BodyTooLarge(ProxyError):
    status, code, message = 413, "body_too_large", "the body is too large"


class HeadersTooLarge(ProxyError):
    status, code, message = 431, "headers_too_large", "the request line and headers are too large"


class UnsupportedMediaType(ProxyError):
    status, code, message = 415, "unsupported_media_type", "the body must be application/json"


class IdempotencyKeyReused(ProxyError):
    status, code = 422, "idempotency_key_reused"
    message = "this Idempotency-Key was used for a different request"


class RateLimited(_RetryLater):
    status, code, message = 429, "rate_limited", "too many requests for this customer; retry later"


class CoinBudgetSpent(_RetryLater):
    status, code, message = 429, "coin_budget_spent", "this campaign's coins are spent for now"


class UpstreamFailure(ProxyError):
    """A fault on the way to or from Nector."""


class UpstreamError(UpstreamFailure):
    status, code, message = 502, "upstream_error", "the reward service failed to answer"


class UpstreamUnreachable(UpstreamError):
    """The connection to Nector failed (refused, name not resolved, TLS handshake): no byte of
    the request was sent, so the call provably never reached Nector. ``cause`` says which."""


class UpstreamRejected(UpstreamFailure):
    status, code = 502, "upstream_rejected"
    message = "the reward service refused the proxy's credentials"


class UpstreamBusy(_RetryLater, UpstreamFailure):
    status, code, message = 503, "upstream_busy", "the reward service is busy; retry later"


class UpstreamTimeout(UpstreamFailure):
    status, code, message = 504, "upstream_timeout", "the reward service did not answer in time"


class StorageUnavailable(ProxyError):
    status, code, message = 503, "storage_unavailable", "the limit store is unavailable"


class ChallengeUnavailable(_RetryLater):
    status, code, message = 503, "challenge_unavailable", "the human check is unavailable"


class ServerBusy(_RetryLater):
    status, code, message = 503, "server_busy", "the server has too many connections; retry later"


def failure_cause(exc: BaseException) -> str:
    """Why a connection or a call failed, in a word for the operator's log: "dns", "tls",
    "refused", "reset", "timeout", or else the innermost error's class name (never its text,
    which may hold data). Read off the exception chain, where httpx, aiohttp and redis-py all
    keep the socket's own error."""
    seen: BaseException | None = exc
    innermost = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return "dns"
        if isinstance(seen, ssl.SSLError):
            return "tls"
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        if isinstance(seen, ConnectionResetError):
            return "reset"
        if isinstance(seen, TimeoutError):
            return "timeout"
        innermost = seen
        seen = seen.__cause__ or seen.__context__
    return type(innermost).__name__
