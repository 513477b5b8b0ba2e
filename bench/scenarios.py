"""The scenarios of each group, run round by round, and the ratios they are reported as."""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.lab import SHOP, SHOPIFY, SHOPIFY_ENV, Lab, make_tokens
from bench.wrk import Sample, Scenario, run_wrk

FLOOR = "minimal 429 app (floor)"
REFERENCES = {"floor", "forwarder"}  # the servers of bench/minimal.py
# A Shopify App Proxy request whose signature is wrong (docs/shopify.md): the query is parsed
# and its HMAC computed before the refusal, the App Proxy's flood path.
APP_PROXY_PATH = (
    f"/shopify/v1/triggers/spin-wheel?shop={SHOP}&logged_in_customer_id=7001234"
    "&path_prefix=%2Fapps%2Frewards&timestamp=1800000000&signature=" + "0" * 64
)
APP_PROXY = "401 bad App Proxy signature"
KEYED = "keyed forward c1 (redis + replica)"
UNKEYED = "forward c1 (redis + replica)"


def refusal_scenarios(store: str) -> list[Scenario]:
    server = f"proxy-{store}"
    scenarios = [
        Scenario(f"401 forged token ({store})", server, 32, tokens="forged", expect=401),
        Scenario(
            f"403 unknown trigger ({store})",
            server,
            32,
            path="/v1/triggers/not-listed",
            tokens="quota",
            expect=403,
        ),
        Scenario(
            f"403 unknown trigger, new sessions ({store})",
            server,
            32,
            path="/v1/triggers/not-listed",
            tokens="customers",
            expect=403,
        ),
        Scenario(
            f"429 over quota ({store})",
            server,
            32,
            path="/v1/triggers/quota",
            tokens="quota",
            expect=429,
        ),
        # A workspace-wide read a widget makes on every page view, answered from the cache.
        Scenario(
            f"cached read ({store})",
            server,
            32,
            path="/api/v2/merchant/aggreegateddetails",
            method="GET",
            tokens="quota",
            expect=200,
        ),
        Scenario(
            f"idempotent replay ({store})",
            server,
            32,
            tokens="replay",
            idempotency="fixed",
            expect=200,
        ),
    ]
    for scenario in scenarios:
        scenario.baseline = FLOOR
    return scenarios


def kept_read_scenario() -> Scenario:
    """A signed-in page view's own read, answered from the customer's kept answer: every
    customer's first read is made in the warm-up."""
    return Scenario(
        "kept read (memory)",
        "proxy-memory",
        32,
        path="/api/v2/merchant/leads/me",
        method="GET",
        tokens="quota",
        expect=200,
        baseline=FLOOR,
    )


def forward_scenarios(store: str) -> list[Scenario]:
    plain = [
        Scenario(f"forward c{c} ({store})", f"proxy-{store}", c, tokens="customers")
        for c in (1, 32)
    ]
    # A reward with a coin budget: its reservation, and its settlement to the coins paid.
    budgeted = Scenario(
        f"forward c1 coin-budgeted ({store})",
        f"proxy-{store}",
        1,
        path="/v1/triggers/budgeted",
        tokens="customers",
        baseline=f"forward c1 ({store})",
    )
    return [*plain, budgeted]


def median(samples: list[Sample], attr: str) -> float:
    return float(statistics.median(float(getattr(s, attr)) for s in samples))


def run_groups(args: argparse.Namespace) -> dict[str, Any]:
    everything = {"refuse", "forward", "storage", "keyed", "storefront"}
    groups = set(args.only.split(",")) if args.only else everything
    want_redis = bool(groups & {"storage"}) or args.redis
    scenarios: list[Scenario] = []
    with tempfile.TemporaryDirectory() as tmp:
        nginx = args.upstream == "nginx" or (
            args.upstream == "auto" and bool(shutil.which("nginx"))
        )
        lab = Lab(
            Path(tmp),
            want_redis,
            nginx=nginx,
            with_replica="keyed" in groups,
            controls=bool(getattr(args, "controls", False)),
        )
        upstream_kind = "nginx" if nginx else "bench/fast_upstream.py"
        print(f"upstream: {upstream_kind}", file=sys.stderr)
        tokens = make_tokens(Path(tmp))
        if groups & {"refuse", "storefront"}:
            lab.uvicorn("floor", "bench.minimal:floor")
            scenarios.append(Scenario(FLOOR, "floor", 32, expect=429))
        if "storefront" in groups:
            scenarios.append(kept_read_scenario())
        if "refuse" in groups:
            # The proxy's own plumbing (parse, route, error, access line, metrics), no session.
            scenarios.append(
                Scenario(
                    "404 unknown path (memory)",
                    "proxy-memory",
                    32,
                    path="/nope",
                    expect=404,
                    baseline=FLOOR,
                )
            )
            scenarios += refusal_scenarios("memory")
            lab.proxy("proxy-shopify", "memory://", extra=SHOPIFY, env=SHOPIFY_ENV)
            scenarios.append(
                Scenario(
                    f"{APP_PROXY} (memory)",
                    "proxy-shopify",
                    32,
                    path=APP_PROXY_PATH,
                    expect=401,
                    baseline=FLOOR,
                )
            )
        if "keyed" in groups:
            if lab.replicated_url is None:
                raise SystemExit("the keyed group needs redis-server")
            # An idempotency record waits for the replica before Nector is called (WAIT).
            waits = "replica_acks = 1\nreplica_wait_seconds = 1.0\n"
            lab.proxy("proxy-replicated", lab.replicated_url, extra=waits)
            scenarios.append(Scenario(UNKEYED, "proxy-replicated", 1, tokens="customers"))
            scenarios.append(
                Scenario(
                    KEYED,
                    "proxy-replicated",
                    1,
                    tokens="customers",
                    idempotency="unique",
                    baseline=UNKEYED,
                )
            )
        if "forward" in groups:
            lab.uvicorn(
                "forwarder",
                "bench.minimal:forwarder",
                {"BENCH_UPSTREAM_URL": lab.upstream.url + "/api/v2/merchant/activities"},
            )
            # The same requests as the proxy's (a bearer token each), which these ignore.
            scenarios += [
                Scenario(f"direct to upstream c{c}", "upstream", c, tokens="customers")
                for c in (1, 32)
            ]
            scenarios += [
                Scenario(f"minimal aiohttp proxy c{c}", "forwarder", c, tokens="customers")
                for c in (1, 32)
            ]
            scenarios += forward_scenarios("memory")
            for scenario in scenarios:
                if scenario.name == "forward c32 (memory)":
                    scenario.baseline = "minimal aiohttp proxy c32"
            lab.httpx_pool_proxy("proxy-httpx")
            scenarios += [
                Scenario(f"forward c{c} (memory, httpx pool)", "proxy-httpx", c, tokens="customers")
                for c in (1, 32)
            ]
        if "storage" in groups:
            if lab.redis_url is None:
                raise SystemExit("the storage group needs redis-server")
            lab.proxy("proxy-redis", lab.redis_url)
            scenarios += [
                s for s in refusal_scenarios("redis") if "429" in s.name or "401" in s.name
            ]
            scenarios += forward_scenarios("redis")
            if "forward" not in groups:
                scenarios += forward_scenarios("memory")
            if "refuse" not in groups:
                scenarios += [
                    s for s in refusal_scenarios("memory") if "429" in s.name or "401" in s.name
                ]
            for s in scenarios:  # Redis is compared with memory, scenario by scenario
                if s.name.endswith("(redis)") and "coin-budgeted" not in s.name:
                    s.baseline = s.name.replace("(redis)", "(memory)")
        present = {s.name for s in scenarios}
        for s in scenarios:
            if s.baseline not in present:
                s.baseline = None
        if any(s.server == "proxy-memory" for s in scenarios):
            lab.proxy("proxy-memory", "memory://")
        lab.start()
        by_name = {s.name: s for s in scenarios}
        try:
            samples: dict[str, list[Sample]] = {s.name: [] for s in scenarios}
            paired: dict[str, list[float]] = {s.name: [] for s in scenarios if s.baseline}

            def measure(s: Scenario) -> Sample:
                sample = run_wrk(lab.servers[s.server], s, args.seconds, tokens)
                samples[s.name].append(sample)
                wrong = {k: v for k, v in sample.statuses.items() if k != str(s.expect)}
                if sum(wrong.values()) > 0.01 * sum(sample.statuses.values()):
                    raise SystemExit(f"{s.name}: expected {s.expect}, got {sample.statuses}")
                return sample

            for s in scenarios:  # warm up: connections, caches, and each customer's first call
                run_wrk(lab.servers[s.server], s, 1, tokens)
            for round_number in range(args.rounds):
                for s in scenarios:
                    if s.baseline is None:
                        if not any(o.baseline == s.name for o in scenarios):
                            measure(s)  # a baseline is measured beside each of its scenarios
                        continue
                    base_scenario = by_name[s.baseline]
                    if base_scenario.server in REFERENCES:
                        # A reference app answers whatever it is sent: it is sent the same
                        # requests as the scenario (path, token, Idempotency-Key), so that both
                        # servers parse the same bytes.
                        base_scenario = replace(
                            base_scenario,
                            path=s.path,
                            tokens=s.tokens,
                            idempotency=s.idempotency,
                            method=s.method,
                        )
                    base = measure(base_scenario)
                    paired[s.name].append(measure(s).rps / base.rps)
                print(f"round {round_number + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            lab.stop()
    table = {
        name: {
            "rps": round(median(v, "rps")),
            "p50_us": round(median(v, "p50_us")),
            "p99_us": round(median(v, "p99_us")),
            "cpu_us_per_request": round(median(v, "cpu_us")),
            "server": next(s.server for s in scenarios if s.name == name),
        }
        for name, v in samples.items()
    }
    pairs = {
        name: (by_name[name].baseline, statistics.median(v)) for name, v in paired.items() if v
    }
    return {
        "upstream": upstream_kind,
        "scenarios": table,
        "ratios": ratios(table, pairs),
    }


def ratios(
    t: dict[str, dict[str, Any]], pairs: dict[str, tuple[str | None, float]] | None = None
) -> dict[str, float]:
    """The report's ratios. A throughput ratio of a scenario measured beside its baseline is
    the median of the per-round ratios (``pairs``: scenario -> (baseline, median ratio));
    the others are ratios of the medians."""
    out: dict[str, float] = {}
    pairs = pairs or {}

    def ratio(name: str, a: str, b: str, key: str = "rps") -> None:
        if key == "rps" and a in pairs and pairs[a][0] == b:
            out[name] = round(pairs[a][1], 2)
        elif a in t and b in t and t[b][key]:
            out[name] = round(t[a][key] / t[b][key], 2)

    for kind in (
        "404 unknown path",
        "401 forged token",
        "403 unknown trigger",
        "403 unknown trigger, new sessions",
        "429 over quota",
        "idempotent replay",
        "cached read",
        "kept read",
    ):
        target = {
            "cached read": "target >= 0.7",
            "403 unknown trigger, new sessions": "the worst case: reported",
        }.get(kind, "target >= 0.8")
        ratio(
            f"{kind} / floor (throughput, {target})",
            f"{kind} (memory)",
            "minimal 429 app (floor)",
        )
    for c in (1, 32):
        ratio(
            f"forward c{c}: aiohttp transport / httpx's pool (throughput)",
            f"forward c{c} (memory)",
            f"forward c{c} (memory, httpx pool)",
        )
    ratio(
        "forward c32 / minimal aiohttp proxy c32 (throughput, target >= 0.6)",
        "forward c32 (memory)",
        "minimal aiohttp proxy c32",
    )
    if {"forward c1 (memory)", "minimal aiohttp proxy c1", "direct to upstream c1"} <= set(t):
        direct = t["direct to upstream c1"]["p50_us"]
        added_proxy = t["forward c1 (memory)"]["p50_us"] - direct
        added_min = t["minimal aiohttp proxy c1"]["p50_us"] - direct
        if added_min > 0:
            out["added p50 at c1: proxy / minimal aiohttp proxy (target <= 1.5)"] = round(
                added_proxy / added_min, 2
            )
    for store in ("memory", "redis"):
        budgeted, plain = f"forward c1 coin-budgeted ({store})", f"forward c1 ({store})"
        ratio(f"{budgeted} / {plain} (throughput)", budgeted, plain)
        if {budgeted, plain} <= set(t):
            added = t[budgeted]["p50_us"] - t[plain]["p50_us"]
            out[f"coin-budgeted reward: added p50 at c1, {store} (µs)"] = float(added)
    for c in (1, 32):
        ratio(
            f"forward c{c}: redis / memory (throughput, target >= 0.7)",
            f"forward c{c} (redis)",
            f"forward c{c} (memory)",
        )
    for kind in ("401 forged token", "429 over quota"):
        ratio(
            f"{kind}: redis / memory (throughput, target >= 0.5)",
            f"{kind} (redis)",
            f"{kind} (memory)",
        )
    ratio(
        f"{APP_PROXY} / floor (throughput, target >= 0.7)",
        f"{APP_PROXY} (memory)",
        "minimal 429 app (floor)",
    )
    if {KEYED, UNKEYED} <= set(t):
        out["keyed reward at c1 on Redis with a replica (WAIT): added p50 µs"] = round(
            t[KEYED]["p50_us"] - t[UNKEYED]["p50_us"]
        )
        ratio(f"{KEYED} / unkeyed (throughput)", KEYED, UNKEYED)
    return out
