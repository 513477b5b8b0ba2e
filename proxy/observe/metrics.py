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
import importlib.metadata
import os
import platform
import resource
import time
from collections import defaultdict
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
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
        # A defaultdict: ``tally[key] += 1`` is no call on the request path, where .get is one.
        self._tally: defaultdict[_TallyKey, int] = defaultdict(int)
        self._latencies: list[float] = []  # seconds to Nector's answer, since the last flush
        self._durations: list[tuple[str, float]] = []  # (route, ms) since the last flush
        self.in_flight = 0  # requests begun and not yet answered (the app counts them)
        self._process_at = 0.0
        r = self.registry
        multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        if not multiprocess:  # the standard process_* of this process (in multiprocess
            ProcessCollector(registry=r)  # mode, the per-worker gauges below stand in)
        self.request_seconds = Histogram(
            "trigger_proxy_request_seconds",
            "Time from a request's arrival to its answer, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self._request_seconds: dict[str, Histogram] = {}  # children by route, made once
        self.in_flight_gauge = Gauge(
            "trigger_proxy_requests_in_flight",
            "Requests begun and not yet answered (summed over the workers).",
            multiprocess_mode="livesum",
            registry=r,
        )
        build = Gauge(
            "trigger_proxy_build_info",
            "The running build: always 1, its version and Python's as labels.",
            ["version", "python"],
            multiprocess_mode="max",
            registry=r,
        )
        build.labels(_version(), platform.python_version()).set(1)

        def worker(name: str, what: str) -> Gauge:  # one sample per worker's pid
            return Gauge(name, what, multiprocess_mode="liveall", registry=r)

        self.worker_memory = worker(
            "trigger_proxy_worker_resident_memory_bytes", "A worker's resident memory."
        )
        self.worker_cpu = worker("trigger_proxy_worker_cpu_seconds", "A worker's CPU time.")
        self.worker_fds = worker("trigger_proxy_worker_open_fds", "A worker's open files.")
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
        self._tally[key] += 1
        self._durations.append((record.route, record.duration_ms))
        if record.upstream_ms is not None:
            self._latencies.append(record.upstream_ms / 1000)

    def flush(self) -> None:
        """Add the requests counted since the last flush to the collectors."""
        tally, self._tally = self._tally, defaultdict(int)
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
        durations, self._durations = self._durations, []
        children = self._request_seconds
        for route, ms in durations:
            child = children.get(route)
            if child is None:
                child = children[route] = self.request_seconds.labels(route)
            child.observe(ms / 1000)
        self.in_flight_gauge.set(self.in_flight)
        now = time.monotonic()
        if now - self._process_at >= 1.0:
            self._process_at = now
            self._sample_process()

    def _sample_process(self) -> None:
        """This worker's memory, CPU and files, for multiprocess mode's per-worker gauges."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.worker_cpu.set(usage.ru_utime + usage.ru_stime)
        try:
            with open("/proc/self/statm") as statm:
                self.worker_memory.set(int(statm.read().split()[1]) * resource.getpagesize())
            self.worker_fds.set(len(os.listdir("/proc/self/fd")))
        except OSError:  # not Linux: the CPU time alone
            pass

    def render(self) -> bytes:
        """The text exposition: this process's registry, or every worker's in multiprocess
        mode."""
        self.flush()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return generate_latest(multiprocess_registry())
        return generate_latest(self.registry)


def _version() -> str:
    try:
        return importlib.metadata.version("trigger-proxy")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


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
