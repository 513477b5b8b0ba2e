"""The decision memo: exact repeats of a refused or replayed request, answered from memory."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from proxy.errors import Headers, RateLimited
from proxy.http.responses import Answer, most_restrictive, window_headers
from proxy.limits.bounded import ExpiringMap
from proxy.limits.decisions import REFUSAL_MARGIN_SECONDS, Decision, Outcome, StoredAnswer
from proxy.limits.keys import Window
from proxy.observe.logs import AccessRecord

# A remembered replay is kept this long at most: its stored answer expires in the store, which
# the memo does not see.
REPLAY_MEMO_SECONDS = 1.0
REPLAYED = (b"idempotent-replayed", b"true")
_OVER_QUOTA = RateLimited(1)  # the status, code and body of a remembered refusal


class OverQuota:
    """The rate-limit headers, Retry-After included, of a customer over quota from now until
    the full window frees. The window shown (the most restrictive) stays the same meanwhile,
    so only the seconds change: the headers are rebuilt when they do, not on every request."""

    __slots__ = (
        "_headers",
        "_policy",
        "_remaining",
        "_reset_at",
        "_retry_at",
        "_until",
        "_window",
    )

    def __init__(
        self, now: float, decision: Decision, windows: Sequence[Window], policy: bytes
    ) -> None:
        i = most_restrictive(decision.windows)
        self._window = windows[i]
        self._remaining = decision.windows[i].remaining
        self._reset_at = now + decision.windows[i].reset
        self._retry_at = now + decision.retry_after
        self._policy = policy
        self._until = -math.inf  # the headers below hold until then
        self._headers: Headers = []

    def headers(self, now: float) -> Headers:
        """The headers as the store's decision would give them at ``now`` (never early). The
        list is shared by the requests of one second: it is copied, never changed."""
        if now < self._until:
            return self._headers
        # ceil(at - now) stays n while now < at - n + 1; Retry-After stays 1 once it is
        # 1, the reset 0 once it is 0.
        retry = math.ceil(self._retry_at - now)
        reset = math.ceil(self._reset_at - now)
        self._until = min(
            self._retry_at - retry + 1 if retry > 1 else math.inf,
            self._reset_at - reset + 1 if reset > 0 else math.inf,
        )
        retry, reset = max(1, retry), max(0, reset)
        self._headers = [
            *window_headers(self._window, self._remaining, reset, self._policy),
            (b"retry-after", b"%d" % retry),
        ]
        return self._headers


class Repeat(NamedTuple):
    """A remembered decision (``DecisionMemo``) with what it is answered with: a stored
    answer to replay, or a customer over quota."""

    trigger: str  # the trigger's label, for the access line
    source: str
    answer: StoredAnswer | None  # a replay's stored answer
    over_quota: OverQuota | None  # a refusal's headers


class DecisionMemo(ExpiringMap[object, Repeat]):
    """The last few thousand repeatable decisions of exact repeats of a request.

    Customers spinning past their quota and widgets retrying a paid spin send the same request
    again and again, and its decision cannot change meanwhile. A customer over quota stays over
    it until the full window frees: no request of theirs on that trigger is admitted before
    then (by any replica), and counted requests leave a window only by age; the rate-limit
    fields shown are those of that window, which are the same whenever they are computed. A
    stored answer is never replaced, only expired (so a replay is kept REPLAY_MEMO_SECONDS at
    most). Remembering the decision skips the trigger lookup, the windows and the store (a
    Redis round trip); the answer is rebuilt with its seconds counted from now. The session is
    checked on every request before the memo is asked.

    ``clock`` must be the one the store's relative times run on (the memory store's own
    clock; any steady clock for Redis).
    """

    def __init__(self, clock: Callable[[], float], *, size: int = 4096) -> None:
        super().__init__(size, clock)

    def remember(
        self,
        key: object,
        decision: Decision,
        trigger: str,
        source: str,
        windows: tuple[Window, ...],
        policy: bytes,
    ) -> None:
        """Keep a repeatable decision (a replay, or a refusal naming every window) for as
        long as it holds; ``trigger`` is its label."""
        now = self.clock()
        if decision.outcome is Outcome.REPLAY:
            until = now + REPLAY_MEMO_SECONDS
            entry = Repeat(trigger, source, decision.answer, None)
        elif len(decision.windows) == len(windows):
            until = now + decision.retry_after - REFUSAL_MARGIN_SECONDS
            entry = Repeat(trigger, source, None, OverQuota(now, decision, windows, policy))
        else:
            return
        self.put(key, until, entry)

    def answer(self, repeat: Repeat, record: AccessRecord) -> Answer:
        """The answer to a repeat of a remembered decision, as the store would give it now.
        A refusal is returned, not raised: this is the flood's path."""
        record.trigger = repeat.trigger
        record.source = repeat.source
        if repeat.answer is not None:
            record.decision = Outcome.REPLAY
            record.replayed = True
            return Answer(repeat.answer.status, repeat.answer.body, [REPLAYED])
        assert repeat.over_quota is not None
        record.decision = Outcome.RATE_LIMITED
        record.code = _OVER_QUOTA.code
        headers = repeat.over_quota.headers(self.clock())
        return Answer(_OVER_QUOTA.status, _OVER_QUOTA.body(record.request_id), headers)
