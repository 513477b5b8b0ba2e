"""trigger-proxy's benchmark: every figure is a ratio measured side by side in one run.

    python -m bench                  # the full run (about 10 minutes)
    python -m bench --quick          # one short round, to see it work
    python -m bench --only forward   # one group: refuse, forward, storage, memory, flash

Servers run on core 0 (one uvicorn worker each, uvloop and httptools), wrk and the fast upstream
on core 1, all on 127.0.0.1. Runs are interleaved round by round and each figure is the median
of its rounds, because these machines are shared and noisy. Results are printed and written to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk" / "requests.lua"
RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")
SPIN = "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10"
QUOTA = "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f"
ENV = {
    "TRIGGER_PROXY_API_KEY": "bench-api-key-" + "k" * 32,
    "TRIGGER_PROXY_WORKSPACE_ID": "bench-workspace-" + "w" * 32,
    "TRIGGER_PROXY_SESSION_SECRETS": "bench-session-secret-" + "s" * 32,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(core: int, argv: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if shutil.which("taskset") else list(argv)


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")}
        self.process = subprocess.Popen(
            self.argv, env={**env, **self.env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0


@dataclass
class Scenario:
    name: str
    server: str
    connections: int
    path: str = "/v1/triggers/spin-wheel"
    tokens: str | None = None
    idempotency: str | None = None
    expect: int = 200
    # The scenario this one is compared with: run right before it in every round, and the
    # ratio taken per pair, so that the machine's drift between rounds cancels out.
    baseline: str | None = None
    sent: int = 0  # requests sent so far: the next run goes on through the tokens from here


@dataclass
class Sample:
    rps: float
    p50_us: float
    p99_us: float
    cpu_us: float
    statuses: dict[str, int]


def run_wrk(server: Server, s: Scenario, seconds: float, tokens: dict[str, Path]) -> Sample:
    env = {**os.environ, "BENCH_PATH": s.path, "BENCH_OFFSET": str(s.sent)}
    if s.tokens:
        env["BENCH_TOKENS"] = str(tokens[s.tokens])
    if s.idempotency:
        env["BENCH_IDEMPOTENCY"] = s.idempotency
    argv = pinned(
        1,
        [
            "wrk",
            "-t1",
            f"-c{s.connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(WRK_SCRIPT),
            server.url + s.path,
        ],
    )
    cpu_before = server.cpu_seconds()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    s.sent += requests
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = re.search(r"LATENCY p50=(\d+) p99=(\d+)", out)
    statuses = dict(part.split("=") for part in re.search(r"STATUS (.*)", out).group(1).split())  # type: ignore[union-attr]
    assert latency is not None
    return Sample(
        rps=rps,
        p50_us=float(latency.group(1)),
        p99_us=float(latency.group(2)),
        cpu_us=cpu / max(requests, 1) * 1e6,
        statuses={k: int(v) for k, v in statuses.items()},
    )


# --- the servers -------------------------------------------------------------------------


def proxy_config(
    upstream_url: str, storage: str, budget: str = "1000000/second", transport: str = "aiohttp"
) -> str:
    return f"""
[upstream]
url = "{upstream_url}"
timeout_seconds = 10.0
max_connections = 100
transport = "{transport}"

[limits]
storage_url = "{storage}"
per_customer = "100000/minute"
upstream = "{budget}"
per_ip_invalid_session = "10000000/second"

[logging]
level = "info"
format = "json"

[[triggers]]
id = "{SPIN}"
name = "spin-wheel"
per_customer = "100000/minute"

[triggers.override.wallet]
title = "Spin the wheel"
operation = "cr"
coin_range = {{ min = 5, max = 50 }}

[[triggers]]
id = "{QUOTA}"
name = "quota"
per_customer = "1/day"
"""


def make_tokens(directory: Path) -> dict[str, Path]:
    from proxy.sessions import mint_token

    secret = [ENV["TRIGGER_PROXY_SESSION_SECRETS"]]
    files = {}

    def write(name: str, lines: Sequence[str]) -> None:
        path = directory / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        files[name] = path

    def customers(prefix: str, n: int) -> list[str]:
        return [mint_token(secret, {"customer_id": f"{prefix}-{i:06}"}) for i in range(n)]

    # Many customers for forwarding; few for the quota and replay scenarios, so that the
    # warm-up spends every one's first call.
    write("customers", customers("bench", 10000))
    write("quota", customers("quota", 500))
    write("replay", customers("replay", 500))
    write(
        "forged", [secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(6) for _ in range(10000)]
    )
    return files


class Lab:
    """The servers of one run; started once, loaded one at a time."""

    def __init__(self, workdir: Path, with_redis: bool, *, nginx: bool = False) -> None:
        self.workdir = workdir
        self.servers: dict[str, Server] = {}
        if nginx:
            port = free_port()
            self.upstream = self._add("upstream", pinned(1, self._nginx_argv(port)), port=port)
        else:
            self.upstream = self._add(
                "upstream",
                pinned(1, [sys.executable, "-m", "bench.fast_upstream", "--port", "{port}"]),
            )
        self.redis_url: str | None = None
        if with_redis and shutil.which("redis-server"):
            port = free_port()
            self.redis = Server(
                "redis",
                pinned(
                    1,
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                ),
                port,
            )
            self.redis_url = f"redis://127.0.0.1:{port}/0"

    def _nginx_argv(self, port: int) -> list[str]:
        """nginx answering fast_upstream's fixed body: one worker, no master, no access log,
        everything it writes kept in the run's directory."""
        from bench.fast_upstream import BODY

        d = self.workdir
        temp = " ".join(
            f"{kind}_temp_path {d}/nginx-{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        config = d / "nginx.conf"
        config.write_text(
            f"daemon off; master_process off; worker_processes 1; pid {d}/nginx.pid;\n"
            f"error_log {d}/nginx-error.log error;\n"
            "events { worker_connections 4096; }\n"
            f"http {{ access_log off; keepalive_requests 10000000; {temp}\n"
            f"  server {{ listen 127.0.0.1:{port};\n"
            f"    location / {{ default_type application/json; return 200 '{BODY.decode()}'; }}\n"
            "  }\n}\n"
        )
        return ["nginx", "-p", str(d), "-c", str(config)]

    def _add(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, port: int = 0
    ) -> Server:
        port = port or free_port()
        server = Server(name, [a.replace("{port}", str(port)) for a in argv], port, env or {})
        self.servers[name] = server
        return server

    def uvicorn(self, name: str, app: str, env: dict[str, str] | None = None) -> Server:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        return self._add(name, pinned(0, argv), env)

    def proxy(
        self, name: str, storage: str, budget: str = "1000000/second", transport: str = "aiohttp"
    ) -> Server:
        config = self.workdir / f"{name}.toml"
        upstream = self.upstream.url + "/api/v2/merchant/activities"
        config.write_text(proxy_config(upstream, storage, budget, transport))
        argv = [
            sys.executable,
            "-m",
            "proxy.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            "{port}",
        ]
        return self._add(name, pinned(0, argv), ENV)

    def start(self) -> None:
        if self.redis_url:
            self.redis.start()
        for server in self.servers.values():
            server.start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self.redis_url:
            self.redis.stop()


# --- groups -------------------------------------------------------------------------------


FLOOR = "minimal 429 app (floor)"
REFERENCES = {"floor", "forwarder"}  # the servers of bench/minimal.py


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


def forward_scenarios(store: str) -> list[Scenario]:
    return [
        Scenario(f"forward c{c} ({store})", f"proxy-{store}", c, tokens="customers")
        for c in (1, 32)
    ]


def median(samples: list[Sample], attr: str) -> float:
    return statistics.median(getattr(s, attr) for s in samples)


def run_groups(args: argparse.Namespace) -> dict[str, Any]:
    groups = set(args.only.split(",")) if args.only else {"refuse", "forward", "storage"}
    want_redis = bool(groups & {"storage"}) or args.redis
    scenarios: list[Scenario] = []
    with tempfile.TemporaryDirectory() as tmp:
        nginx = args.upstream == "nginx" or (
            args.upstream == "auto" and bool(shutil.which("nginx"))
        )
        lab = Lab(Path(tmp), want_redis, nginx=nginx)
        upstream_kind = "nginx" if nginx else "bench/fast_upstream.py"
        print(f"upstream: {upstream_kind}", file=sys.stderr)
        tokens = make_tokens(Path(tmp))
        if "refuse" in groups:
            lab.uvicorn("floor", "bench.minimal:floor")
            scenarios.append(Scenario(FLOOR, "floor", 32, expect=429))
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
            lab.proxy("proxy-httpx", "memory://", transport="httpx")
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
                if s.name.endswith("(redis)"):
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
                            base_scenario, path=s.path, tokens=s.tokens, idempotency=s.idempotency
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
    ):
        ratio(
            f"{kind} / floor (throughput, target >= 0.8)",
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
        "forward c32 / minimal aiohttp proxy c32 (throughput, target >= 0.5)",
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
    return out


def print_report(report: dict[str, Any]) -> None:
    rows = report.get("scenarios", {})
    if rows:
        print(f"upstream: {report['upstream']}")
        print(f"{'scenario':<34} {'req/s':>8} {'p50 µs':>8} {'p99 µs':>8} {'CPU µs/req':>11}")
        for name, r in rows.items():
            cpu = r["cpu_us_per_request"]
            print(f"{name:<34} {r['rps']:>8} {r['p50_us']:>8} {r['p99_us']:>8} {cpu:>11}")
    for name, value in report.get("ratios", {}).items():
        print(f"{value:>6}  {name}")
    for name, value in report.get("extra", {}).items():
        print(f"{name}: {value}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="one round of 2 s per scenario")
    parser.add_argument(
        "--only", help="comma-separated groups: refuse, forward, storage, memory, flash"
    )
    parser.add_argument("--redis", action="store_true", help="start a private redis-server")
    parser.add_argument(
        "--upstream",
        choices=("auto", "nginx", "stand-in"),
        default="auto",
        help="the fast upstream for the wrk groups: nginx when installed (auto), or "
        "bench/fast_upstream.py; the memory and flash groups always use the latter, which "
        "counts what reaches it",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.json",
        help="where the JSON report goes (default: bench/results/latest.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds = 1, 2.0
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    groups = (
        set(args.only.split(","))
        if args.only
        else {"refuse", "forward", "storage", "memory", "flash"}
    )
    if groups & {"refuse", "forward", "storage"}:
        report.update(run_groups(args))
    extra: dict[str, Any] = {}
    if "memory" in groups:
        from bench.load import memory_run

        extra["memory"] = asyncio.run(memory_run())
    if "flash" in groups:
        from bench.load import flash_crowd

        extra["flash crowd"] = asyncio.run(flash_crowd())
    if extra:
        report["extra"] = extra
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print_report(report)


if __name__ == "__main__":
    main()
