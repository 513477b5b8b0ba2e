"""Redis behind Sentinel: the primary fails over while rewards run (issues 19 and 28).

A primary and a replica (Debian's redis-server) and three Sentinels (the same binary with
--sentinel), all on free loopback ports of their own, never the shared Redis. The replica
replicates through a link that delays the primary's stream by a second, as a loaded network
does. The primary is killed right after twenty idempotent rewards were answered: rewards fail
closed during the switch (503), resume on the promoted replica by themselves, every 200
answered before the failover is replayed after it, nothing is paid twice, and the workspace
budget written before the failover holds after it. With no replica left to acknowledge, a
reward with an Idempotency-Key is refused (503) rather than promised.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from proxy.app import create_app
from tests.helpers import ENVIRON, Upstream, make_settings, need, token
from tests.redis_util import LaggingLink, PrivateRedis, free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis]
SERVICE = "rewards"
# A Sentinel that tried a failover and failed (a split vote, a replica's INFO too old to pick
# it, a TILT on a starved machine) tries again only after twice this. It is also how long a
# Sentinel lets a replica replicate from an address other than its primary's before it
# "fixes" it, which would undo the lagging relay: the test checks the relay still holds.
FAILOVER_TIMEOUT_MS = 15_000


class Sentinels:
    """Three Sentinels watching one primary, on ports of their own."""

    def __init__(self, workdir: Path, primary_port: int) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(3)]
        self.processes: list[subprocess.Popen[bytes]] = []
        for port in self.ports:
            conf = workdir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"logfile {self._log(port)}\n"
            )
            self.processes.append(
                subprocess.Popen(
                    ["redis-server", str(conf), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def primary_port(self) -> int | None:
        try:
            client = redis.Redis(port=self.ports[0], socket_timeout=0.5)
            address = client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE
            )
            client.close()
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def see_the_replica(self) -> bool:
        try:
            for port in self.ports:
                client = redis.Redis(port=port, socket_timeout=0.5)
                replicas = client.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "REPLICAS", SERVICE
                )
                client.close()
                if not replicas:
                    return False
        except redis.RedisError:
            return False
        return True

    def _log(self, port: int) -> Path:
        return self.workdir / f"sentinel-{port}.log"

    def events(self) -> str:
        """What each Sentinel logged, for a failure's message."""
        return "\n".join(
            f"sentinel {port}:\n{self._log(port).read_text()}"
            for port in self.ports
            if self._log(port).exists()
        )

    def stop(self) -> None:
        for process in self.processes:
            process.kill()
            process.wait(10)


def wait_for(check: object, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


LAG_SECONDS = 1.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[PrivateRedis, PrivateRedis, Sentinels]]:
    need(PrivateRedis.installed(), "redis-server is not installed (apt-get install redis-server)")
    primary = PrivateRedis(tmp_path)
    primary.start()
    replica = PrivateRedis(tmp_path)
    replica.start()
    link = LaggingLink(primary.port, LAG_SECONDS)
    redis.Redis(port=replica.port).replicaof("127.0.0.1", link.port)
    sentinels = Sentinels(tmp_path, primary.port)
    try:
        wait_for(sentinels.see_the_replica, 20, "the Sentinels to see the replica")
        yield primary, replica, sentinels
    finally:
        sentinels.stop()
        link.stop()
        replica.stop()
        primary.stop()


async def test_rewards_survive_a_failover_and_nothing_is_paid_twice(
    cluster: tuple[PrivateRedis, PrivateRedis, Sentinels],
) -> None:
    primary, replica, sentinels = cluster
    upstream = Upstream()
    environ = {**ENVIRON, "TRIGGER_PROXY_WORKSPACE_ID": f"shopify-{uuid.uuid4().hex[:8]}"}
    budget = 30
    settings = make_settings(
        environ,
        limits={
            "storage_url": sentinels.url,
            "per_customer": "1000/minute",
            "upstream": f"{budget}/minute",
            "replica_wait_seconds": 3 * LAG_SECONDS,  # replica_acks: 1 behind Sentinel
        },
        triggers=[{"id": "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10", "name": "spin-wheel"}],
    )
    app = create_app(settings, transport=upstream.transport())
    transport = httpx.ASGITransport(app=app)
    bearer = {"authorization": f"Bearer {token()}"}
    answers: list[tuple[str | None, int, bool]] = []

    async def spin(key: str | None) -> httpx.Response:
        headers = bearer if key is None else {**bearer, "idempotency-key": key}
        response = await client.post("/v1/triggers/spin-wheel", headers=headers)
        answers.append((key, response.status_code, "idempotent-replayed" in response.headers))
        return response

    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://p") as client,
    ):
        keys = [f"before-{i}" for i in range(20)]
        before = await asyncio.gather(*(spin(key) for key in keys))
        assert [r.status_code for r in before] == [200] * 20
        with redis.Redis(port=replica.port) as on_replica:
            link = on_replica.info("replication")
        assert link["master_port"] != primary.port, "a Sentinel undid the lagging relay"
        primary.stop()  # the primary dies at once, its last second not yet replicated
        statuses: list[int] = []
        deadline = time.monotonic() + 2 * FAILOVER_TIMEOUT_MS / 1000 + 20
        while time.monotonic() < deadline:
            statuses.append((await spin(None)).status_code)
            if statuses[-1] == 200:
                break
            await asyncio.sleep(0.1)
        # The replica was promoted.
        assert sentinels.primary_port() == replica.port, sentinels.events()
        assert 503 in statuses  # refused (fail closed) while there was no primary
        assert statuses[-1] == 200  # and resumed by itself
        # Every 200 answered before the failover is the same answer after it, never a new call.
        again = await asyncio.gather(*(spin(key) for key in keys))
        assert [(r.status_code, "idempotent-replayed" in r.headers) for r in again] == [
            (200, True)
        ] * 20
        assert [r.content for r in again] == [r.content for r in before]
        # No replica is left to hold a new key's record: refused, not promised.
        alone = await spin("after-the-failover")
        assert alone.status_code == 503
        after = [(await spin(None)).status_code for _ in range(budget)]

    paid = [key for key, status, replayed in answers if status == 200 and not replayed]
    assert len(upstream.requests) == len(paid)  # every 200 reached Nector once, none twice
    assert sorted(k for k in paid if k is not None) == sorted(keys)
    # The budget survived: 30 a minute in all, 20 spent before, 1 during: 9 left after.
    assert after.count(200) == budget - 20 - 1
    assert set(after[budget - 21 :]) == {503}
