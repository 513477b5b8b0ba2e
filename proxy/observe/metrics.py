"""Prometheus metrics, recorded once per request from its access record.

Every label value comes from a closed set: routes are the app's own, a trigger is an
allow-listed alias (or id) or "unknown", codes are the contract's. Nothing taken from a request
as it is becomes a label, so a flood of made-up paths or triggers cannot grow the registry, and no
customer id or secret is ever a label. Signing keys appear by position, never by value.

With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (``trigger-proxy serve`` does it
for you): each worker writes its samples there and any of them serves the sum.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from proxy.observe.logs import AccessRecord
from proxy.observe.logs import flush as flush_logs

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
UNKNOWN = "unknown"


# What a request's labels are made of: route, trigger, code, replayed, status, session
# refusal, key index, limit decision, and the upstream's status class or fault.
_TallyKey = tuple[
    str, str | None, str | None, bool, int, str | None, int | None, str | None, str | None
]


def _status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


class Metrics:
    """The proxy's collectors, in a registry of their own (one per app)."""

    def __init__(self, triggers: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._triggers = frozenset(triggers)
        # Requests counted since the last flush, by what their labels are made of.
        self._tally: dict[_TallyKey, int] = {}
        self._latencies: list[float] = []  # seconds to Nector's answer, since the last flush
        r = self.registry
        self.requests = Counter(
            "trigger_proxy_requests",
            "Requests by route, trigger and outcome (the contract's code, or ok/replayed).",
            ["route", "trigger", "outcome"],
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "trigger_proxy_upstream_seconds",
            "Time to Nector's answer for calls that got one.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.upstream_responses = Counter(
            "trigger_proxy_upstream_responses",
            "Calls to Nector by answer: a status class, or the fault (upstream_error, ...).",
            ["result"],
            registry=r,
        )
        self.decisions = Counter(
            "trigger_proxy_limit_decisions",
            "Rate-limit and idempotency decisions of the limit store.",
            ["decision"],
            registry=r,
        )
        self.session_refusals = Counter(
            "trigger_proxy_session_refusals",
            "Requests refused at the session check, by reason.",
            ["reason"],
            registry=r,
        )
        self.session_keys = Counter(
            "trigger_proxy_session_key_verified",
            "Sessions verified, by the position of the verifying secret in "
            "TRIGGER_PROXY_SESSION_SECRETS (0 = oldest).",
            ["key_index"],
            registry=r,
        )

    def observe(self, record: AccessRecord) -> None:
        """Count one request. On the request path this is one dict update (and, for a call
        to Nector, a list append); the collectors are brought up to date by ``flush()`` (the
        app calls it every 0.2 s and before each scrape), since a labelled Counter costs a
        lock and a lookup per increment."""
        upstream = record.upstream_status
        key = (
            record.route,
            record.trigger,
            record.code,
            record.replayed,
            record.status,
            record.session_refusal,
            record.key_index,
            record.decision,
            record.upstream_fault if upstream is None else _status_class(upstream),
        )
        tally = self._tally
        tally[key] = tally.get(key, 0) + 1
        if record.upstream_ms is not None:
            self._latencies.append(record.upstream_ms / 1000)

    def flush(self) -> None:
        """Add the requests counted since the last flush to the collectors."""
        tally, self._tally = self._tally, {}
        latencies, self._latencies = self._latencies, []
        for key, n in tally.items():
            route, trigger, code, replayed, status, refusal, key_index, decision, upstream = key
            if replayed:
                outcome = "replayed"
            elif code is not None:
                outcome = code
            else:
                outcome = "ok" if status < 400 else f"upstream_{status}"
            trigger = trigger if trigger in self._triggers else UNKNOWN
            self.requests.labels(route, trigger, outcome).inc(n)
            if refusal is not None:
                self.session_refusals.labels(refusal).inc(n)
            if key_index is not None:
                self.session_keys.labels(str(key_index)).inc(n)
            if decision is not None:
                self.decisions.labels(decision).inc(n)
            if upstream is not None:
                self.upstream_responses.labels(upstream).inc(n)
        for seconds in latencies:
            self.upstream_seconds.observe(seconds)

    def render(self) -> bytes:
        """The text exposition: this process's registry, or every worker's in multiprocess
        mode."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(multiprocess_registry())
        return generate_latest(self.registry)


def multiprocess_registry() -> CollectorRegistry:
    """A registry that sums every worker's samples from ``PROMETHEUS_MULTIPROC_DIR``."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped upstream
    return registry


async def flush_periodically(metrics: Metrics, interval: float = 0.2) -> None:
    """Batched log lines and counted requests go out at least this often, even when no request
    comes (other workers' scrapes read the counts from disk in multiprocess mode)."""
    while True:
        await asyncio.sleep(interval)
        flush_logs()
        metrics.flush()
