"""uvicorn's two HTTP parsers on the refusal floor, side by side.

httptools (the default, and what ``serve`` runs with its own head and time limits) against
h11, whose ``h11_max_incomplete_event_size`` limits a request head's size out of the box:
the minimal Starlette app answering a fixed 429 (bench.minimal:floor) on each, one worker
pinned to core 0, wrk on core 1, alternating round by round; the ratio per round, then its
median, is what to read.

    .venv/bin/python -m bench.parsers
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from bench.lab import Lab
from bench.wrk import Scenario, run_wrk


def main(rounds: int = 6, seconds: float = 3.0) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(Path(tmp), with_redis=False)
        lab.uvicorn("httptools", "bench.minimal:floor", http="httptools")
        lab.uvicorn("h11", "bench.minimal:floor", http="h11")
        lab.start()
        try:
            ratios = []
            for _ in range(rounds):
                fast = run_wrk(
                    lab.servers["httptools"],
                    Scenario("floor", "httptools", 32, expect=429),
                    seconds,
                    {},
                )
                slow = run_wrk(
                    lab.servers["h11"], Scenario("floor", "h11", 32, expect=429), seconds, {}
                )
                ratios.append(slow.rps / fast.rps)
                print(f"httptools {fast.rps:.0f} req/s, h11 {slow.rps:.0f} req/s")
        finally:
            lab.stop()
    print(f"h11 / httptools on the refusal floor: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
