"""What the HTTP layer sends: an answer, the rate-limit headers of a decision, and refusals
in the contract's shape (inside Nector's envelope on Nector's paths)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from proxy.config.settings import Rate
from proxy.errors import Headers, ProxyError
from proxy.http.shopper import nector_body
from proxy.limits.decisions import WindowState
from proxy.limits.keys import Window

# Nector's own paths: clients written against Nector read its envelope (http.shopper).
NECTOR_PREFIX = "/api/v2/merchant/"
_CLAIMS = frozenset([NECTOR_PREFIX + "activities", NECTOR_PREFIX + "offerredeems"])


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: Headers = field(default_factory=list)  # beside x-request-id and content-type
    content_type: bytes = b"application/json"


def render_error(error: ProxyError, path: str, request_id: str) -> bytes:
    """A refusal's body: the contract's error object, inside Nector's envelope on its paths
    (with a message for the shopper, ``shopper.py``)."""
    if path.startswith(NECTOR_PREFIX):
        return nector_body(error, request_id, claim=path in _CLAIMS)
    return error.body(request_id)


@functools.lru_cache(maxsize=64)
def window_name(seconds: int) -> bytes:
    """A window's name in the RateLimit fields: "1m", "1d", "90s"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}".encode()
    return f"{seconds}s".encode()


def rate_policy(rates: Sequence[Rate]) -> bytes:
    """The RateLimit-Policy field of a set of windows; computed once per trigger."""
    return b", ".join(
        b'"%b";q=%d;w=%d' % (window_name(r.seconds), r.limit, r.seconds) for r in rates
    )


def most_restrictive(states: Sequence[WindowState]) -> int:
    """The position of the window whose rate-limit fields are shown: fewest requests left,
    and of those the one that frees last."""
    if len(states) == 1:
        return 0
    return min(range(len(states)), key=lambda i: (states[i].remaining, -states[i].reset))


def window_headers(window: Window, remaining: int, reset: int, policy: bytes) -> Headers:
    """One window's rate-limit headers: the legacy RateLimit-Limit, -Remaining and -Reset, and
    the IETF draft's RateLimit-Policy (``policy``: ``rate_policy`` of the trigger's windows)
    and RateLimit fields."""
    return [
        (b"ratelimit-limit", b"%d" % window.limit),
        (b"ratelimit-remaining", b"%d" % remaining),
        (b"ratelimit-reset", b"%d" % reset),
        (b"ratelimit-policy", policy),
        (b"ratelimit", b'"%b";r=%d;t=%d' % (window_name(window.seconds), remaining, reset)),
    ]


def quota_headers(
    windows: Sequence[Window], states: Sequence[WindowState], policy: bytes
) -> Headers:
    """Rate-limit headers for the most restrictive window (``window_headers``)."""
    if not windows or len(windows) != len(states):
        return []
    i = most_restrictive(states)
    state = states[i]
    return window_headers(windows[i], state.remaining, max(0, math.ceil(state.reset)), policy)
