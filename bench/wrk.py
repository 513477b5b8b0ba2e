"""The wrk driver: one scenario against one server, read back as a sample."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.lab import WRK_SCRIPT, Server, pinned


@dataclass
class Scenario:
    name: str
    server: str
    connections: int
    path: str = "/v1/triggers/spin-wheel"
    method: str = "POST"
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
    env = {
        **os.environ,
        "BENCH_PATH": s.path,
        "BENCH_OFFSET": str(s.sent),
        "BENCH_METHOD": s.method,
    }
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
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    latency = re.search(r"LATENCY p50=(\d+) p99=(\d+)", out)
    status = re.search(r"STATUS (.*)", out)
    assert found is not None, out
    assert latency is not None, out
    assert status is not None, out
    rps = float(found.group(1))
    statuses = dict(part.split("=", 1) for part in status.group(1).split())
    return Sample(
        rps=rps,
        p50_us=float(latency.group(1)),
        p99_us=float(latency.group(2)),
        cpu_us=cpu / max(requests, 1) * 1e6,
        statuses={k: int(v) for k, v in statuses.items()},
    )
