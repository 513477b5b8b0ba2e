"""What outlives a Redis restart: compose's Redis (AOF, fsync every second) keeps a keyed
reward's record, so its retry is answered from it and not paid again; a Redis that persists
nothing is a WARNING at start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis
import yaml

from proxy.limits.redis_client import persistence_gap
from tests.helpers import SPIN, need, token
from tests.redis_util import NO_PERSISTENCE, PrivateRedis
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def compose_redis_options() -> tuple[str, ...]:
    """compose.yaml's redis-server options, but its data directory (the test gives its own)."""
    command = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    options = list(command[1:])
    if "--dir" in options:
        at = options.index("--dir")
        del options[at : at + 2]
    return tuple(options)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(PrivateRedis.installed(), "redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis", options=compose_redis_options())
    server.workdir.mkdir()
    yield server
    server.stop()


def spin(base: str, key: str) -> httpx.Response:
    headers = {"authorization": f"Bearer {token()}", "idempotency-key": key}
    return httpx.post(f"{base}/v1/triggers/spin-wheel", headers=headers, timeout=10)


def warnings(proxy: ProxyProcess) -> list[str]:
    lines = [json.loads(line) for line in proxy.log_lines() if line.startswith("{")]
    return [line["msg"] for line in lines if line["level"] == "warning"]


def redis_config(nector_url: str, storage: str) -> dict[str, object]:
    limits = {"storage_url": storage, "per_customer": "100/minute", "upstream": "50/minute"}
    return proxy_config(nector_url, limits=limits)


def test_compose_runs_redis_with_an_append_only_file_on_a_volume() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    for name in ("redis", "redis-replica"):
        service = compose["services"][name]
        command = " ".join(service["command"])
        assert "--appendonly yes --appendfsync everysec --dir /data" in command
        [volume] = service["volumes"]
        assert volume.split(":")[0] in compose["volumes"]


def test_a_keyed_reward_is_not_paid_again_after_redis_restarts(
    tmp_path: Path, private_redis: PrivateRedis
) -> None:
    private_redis.start()
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, redis_config(nector.url, private_redis.url)) as proxy:
            first = spin(proxy.base_url, "spin-after-restart-1")
            assert first.status_code == 200, first.text
            private_redis.stop()  # SIGKILL: no save on the way out
            private_redis.start()  # same port, same directory: it loads its AOF
            # The pooled connections died with Redis: the retry is refused (503, fail closed)
            # until the store has reconnected, as a shopper's retry would be.
            deadline = time.monotonic() + 10
            while (again := spin(proxy.base_url, "spin-after-restart-1")).status_code == 503:
                assert time.monotonic() < deadline, again.text
                time.sleep(0.1)
            assert again.status_code == 200, again.text
            assert again.json() == first.json()
            assert len(nector.stand_in.calls) == 1  # answered from the record, not paid again
        assert warnings(proxy) == []


def test_a_redis_that_persists_nothing_is_a_warning_at_start(tmp_path: Path) -> None:
    need(PrivateRedis.installed(), "redis-server is not installed")
    bare = PrivateRedis(tmp_path, options=NO_PERSISTENCE)
    bare.start()
    try:
        with StandInServer(stand_in_for(SPIN)) as nector:
            with ProxyProcess(tmp_path, redis_config(nector.url, bare.url)) as proxy:
                pass
        [warning] = warnings(proxy)
        assert "keeps nothing across its restart" in warning
        assert 'appendonly no, save ""' in warning
    finally:
        bare.stop()


@pytest.mark.parametrize(
    ("options", "gap"),
    [
        (NO_PERSISTENCE, 'nothing persists (appendonly no, save "")'),
        (("--appendonly", "no", "--save", "900 1"), None),
        (("--appendonly", "yes"), None),
        (
            (*NO_PERSISTENCE, "--rename-command", "CONFIG", ""),
            "AOF is off (INFO persistence; CONFIG is not allowed, so RDB is unknown)",
        ),
        (("--appendonly", "yes", "--rename-command", "CONFIG", ""), None),
    ],
)
async def test_the_start_asks_redis_what_it_persists(
    tmp_path: Path, options: tuple[str, ...], gap: str | None
) -> None:
    need(PrivateRedis.installed(), "redis-server is not installed")
    server = PrivateRedis(tmp_path, options=options)
    server.start()
    client = redis.Redis.from_url(server.url)
    try:
        assert await persistence_gap(client) == gap
    finally:
        await client.aclose()
        server.stop()
