"""`python -m bench` keeps working between full runs: every scenario answers what it claims to
measure (the benchmark stops otherwise), every ratio is computed, and the flash crowd lets
exactly the budget through. Nothing here is timed: speed is the benchmark's own business
(bench/README.md), and `tests/test_hot_path.py` guards the refusal paths by call counts."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import need, tried

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_the_benchmark_runs_and_measures_what_it_claims(tmp_path: Path) -> None:
    """One short run of every wrk group with a campaign's controls on the triggers (the
    refusals must answer as they claim with them too; without them only the config differs,
    checked below), and the flash crowd."""
    need(shutil.which("wrk") is not None, "wrk is not installed (apt-get install wrk)")
    need(shutil.which("redis-server") is not None, "redis-server is not installed")
    output = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "refuse,forward,keyed,flash",
            "--controls",
            "--rounds",
            "1",
            "--seconds",
            "1",
            "--upstream",
            "stand-in",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    scenarios = report["scenarios"]
    for name in (
        "minimal 429 app (floor)",
        "404 unknown path (memory)",
        "401 forged token (memory)",
        "403 unknown trigger (memory)",
        "403 unknown trigger, new sessions (memory)",
        "429 over quota (memory)",
        "idempotent replay (memory)",
        "cached read (memory)",
        "401 bad App Proxy signature (memory)",
        "forward c1 (memory)",
        "forward c32 (memory)",
        "forward c1 coin-budgeted (memory)",
        "forward c1 (redis + replica)",
        "keyed forward c1 (redis + replica)",
    ):
        assert scenarios[name]["rps"] > 0, name
        assert scenarios[name]["cpu_us_per_request"] > 0, name
    refusal_ratios = {k: v for k, v in report["ratios"].items() if "/ floor" in k}
    assert len(refusal_ratios) == 8  # six refusals, a cached read, a forged App Proxy query
    assert all(math.isfinite(v) and v > 0 for v in refusal_ratios.values())
    ratios = report["ratios"]
    keyed = ratios["keyed reward at c1 on Redis with a replica (WAIT): added p50 µs"]
    assert isinstance(keyed, int)  # reported; its size is the benchmark's business
    assert math.isfinite(ratios["coin-budgeted reward: added p50 at c1, memory (µs)"])
    assert math.isfinite(
        ratios["forward c32 / minimal aiohttp proxy c32 (throughput, target >= 0.6)"]
    )
    flash = report["extra"]["flash crowd"]
    assert flash["reached the upstream (must equal the budget)"] == 50
    assert flash["answers"] == {"503": 9950, "200": 50}
    assert flash["refusals"] == {"upstream_busy (Retry-After set)": 9950}
    tried("bench", f"refusal ratios {refusal_ratios}; flash crowd {flash['seconds']} s")


@pytest.mark.parametrize("controls", [False, True])
def test_the_benchmarks_config_loads_with_and_without_the_controls(controls: bool) -> None:
    import tomllib

    from bench.lab import ENV, proxy_config
    from proxy.config.settings import Settings

    text = proxy_config(
        "http://127.0.0.1:9/api/v2/merchant/activities", "memory://", controls=controls
    )
    settings = Settings.from_mapping(tomllib.loads(text), ENV)
    spin, quota, budgeted = settings.triggers
    assert budgeted.coin_budget is not None
    assert (spin.schedule is not None, spin.coin_budget is not None) == (controls, controls)
    assert (quota.schedule is not None) == controls


def test_the_added_p50_of_a_coin_budgeted_reward_is_reported() -> None:
    from bench.scenarios import ratios

    row = {"rps": 1000, "p50_us": 900, "p99_us": 2000, "cpu_us_per_request": 400}
    table = {
        "forward c1 (memory)": row,
        "forward c1 coin-budgeted (memory)": {**row, "rps": 950, "p50_us": 960},
    }
    found = ratios(table)
    assert found["coin-budgeted reward: added p50 at c1, memory (µs)"] == 60
    assert found["forward c1 coin-budgeted (memory) / forward c1 (memory) (throughput)"] == 0.95


def test_the_storefront_group_runs_and_reports_its_figures(tmp_path: Path) -> None:
    need(shutil.which("wrk") is not None, "wrk is not installed (apt-get install wrk)")
    output = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--only",
            "storefront",
            "--rounds",
            "1",
            "--seconds",
            "1",
            "--upstream",
            "stand-in",
            "--customers",
            "40",
            "--minute-seconds",
            "6",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    assert report["scenarios"]["kept read (memory)"]["rps"] > 0
    ratio = report["ratios"]["kept read / floor (throughput, target >= 0.8)"]
    assert math.isfinite(ratio)
    assert ratio > 0
    store = report["extra"]["storefront"]
    assert store["page views"] == 40 * 5 * 2
    assert store["every read answered 200 (fresh or stale)"], store["read answers"]
    assert store["within the slice"], store
    # Kept answers: far fewer calls than a call for each of a page's own reads.
    assert store["upstream read calls a minute"] < store["without kept answers (calls a minute)"]
    assert store["spins"] == {"200": 80}
    tried("bench", f"storefront {store}")


async def test_the_memory_groups_store_figures_count_what_the_store_holds() -> None:
    from bench.fast_upstream import BODY
    from bench.load import store_bytes

    rewarded, read = (await store_bytes(customers=2_000)).values()
    longer, read_again = (await store_bytes(customers=2_000, body=BODY + b" " * 1000)).values()
    # Each customer's stored answer is counted, once: a body 1,000 bytes longer costs them
    # 1,000 bytes more; a read window holds no answer and costs the same.
    assert abs(longer - rewarded - 1000) <= 1
    assert abs(read - read_again) <= 1
    assert 0 < read < rewarded - len(BODY)


@pytest.mark.parametrize("scenario", ["404", "401", "403", "429", "replay", "app-proxy"])
def test_each_instruction_count_scenario_answers_what_it_claims(scenario: str) -> None:
    # bench.instructions counts under valgrind; its child, run plainly, checks its answers.
    for side in ([], ["--floor"]):
        argv = [sys.executable, "-m", "bench.instructions", "--child", scenario, *side, "20"]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
