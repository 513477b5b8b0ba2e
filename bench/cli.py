"""trigger-proxy's benchmark: every figure is a ratio measured side by side in one run.

    python -m bench                  # the full run (about 10 minutes)
    python -m bench --quick          # one short round, to see it work
    python -m bench --only forward   # one group: refuse, forward, storage, keyed, memory,
                                     # flash, storefront
    python -m bench --controls       # with a schedule and coin budgets on the triggers

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
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.lab import RESULTS
from bench.scenarios import run_groups


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
        "--only",
        help="comma-separated groups: refuse, forward, storage, keyed, memory, flash, storefront",
    )
    parser.add_argument(
        "--customers", type=int, default=1000, help="the storefront's shoppers (default 1000)"
    )
    parser.add_argument(
        "--minute-seconds",
        type=int,
        default=20,
        help="how long the storefront's simulated minute lasts (default 20)",
    )
    parser.add_argument("--redis", action="store_true", help="start a private redis-server")
    parser.add_argument(
        "--controls",
        action="store_true",
        help="configure the campaign controls (a schedule, coin budgets) on the benchmark's "
        "triggers, as docs/campaigns.md describes them",
    )
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
        else {"refuse", "forward", "storage", "keyed", "memory", "flash", "storefront"}
    )
    if groups & {"refuse", "forward", "storage", "keyed", "storefront"}:
        report.update(run_groups(args))
    extra: dict[str, Any] = {}
    if "memory" in groups:
        from bench.load import memory_run, store_bytes

        extra["memory"] = asyncio.run(memory_run()) | asyncio.run(store_bytes())
    if "flash" in groups:
        from bench.load import flash_crowd

        extra["flash crowd"] = asyncio.run(flash_crowd())
    if "storefront" in groups:
        from bench.storefront import storefront_run

        extra["storefront"] = asyncio.run(
            storefront_run(args.customers, minute_seconds=args.minute_seconds)
        )
    if extra:
        report["extra"] = extra
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print_report(report)


if __name__ == "__main__":
    main()
