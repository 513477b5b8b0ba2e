"""The servers of a benchmark run: the proxy as ``serve`` runs it, the reference apps, the
upstream (nginx or bench/fast_upstream.py), a private Redis, each pinned to its core."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRK_SCRIPT = ROOT / "bench" / "wrk" / "requests.lua"
RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")
SPIN = "6b1f7c1e-1d2f-4c8e-9a55-0c3b1f1d2a10"
QUOTA = "0f6d3a52-7b8e-4c1d-9e2f-5a4b3c2d1e0f"
BUDGETED = "5d2c8a14-3f6e-4b7a-9c1d-2e8f7a6b5c4d"
# What --controls sets on the benchmark's triggers (docs/campaigns.md): a campaign open for
# the whole run, with coin budgets far from spent. No human check: it would time a provider.
CONTROLS = """starts_at = "2000-01-01T00:00:00Z"
ends_at = "2100-01-01T00:00:00Z"
coin_budget = "1000000000/day"
customer_coins = "100000000/day"
"""
ENV = {
    "TRIGGER_PROXY_API_KEY": "bench-api-key-" + "k" * 32,
    "TRIGGER_PROXY_WORKSPACE_ID": "bench-workspace-" + "w" * 32,
    "TRIGGER_PROXY_SESSION_SECRETS": "bench-session-secret-" + "s" * 32,
}


_TAKEN: set[int] = set()  # ports given out in this run, whose servers may not listen yet


def free_port() -> int:
    """A port no server listens on, and none given out before in this run: the kernel may
    offer the same free port twice before the first server binds it."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _TAKEN:
            _TAKEN.add(port)
            return port


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
                    pass
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} did not start") from None
                time.sleep(0.05)
                continue
            if self.process.poll() is not None:  # another process answered on its port
                raise RuntimeError(f"{self.name} did not start")
            return self

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


# The App Proxy's secret and shop of the "proxy-shopify" server (docs/shopify.md), and its
# config's section.
SHOP = "bench-shop.myshopify.com"
SHOPIFY_ENV = {"TRIGGER_PROXY_SHOPIFY_APP_SECRETS": "shpss_bench" + "a" * 24}
SHOPIFY = f'[shopify]\nshop = "{SHOP}"\napp_proxy = true\n'
READS = """
routes = ["aggreegateddetails", "triggers", "leads", "wallettransactions", "coupons"]
budget = "500000/minute"         # reads that reach the upstream: fills and customers' first reads
cache_seconds = 3600
customer_cache_seconds = 3600    # a kept read stays kept for the whole run
per_customer = "100000/minute"
"""
# Under a small workspace budget (the flash crowd's): the cache's one fill.
FEW_READS = """
routes = ["aggreegateddetails", "triggers"]
budget = "1/minute"
cache_seconds = 3600
per_customer = "100000/minute"
"""


def proxy_config(
    upstream_url: str,
    storage: str,
    budget: str = "1000000/second",
    extra: str = "",
    reads: str = READS,
    *,
    controls: bool = False,
) -> str:
    """The proxy's config for a run; ``controls``: the campaign controls on its triggers (the
    quota trigger's take only the schedule: a budget needs a wallet override)."""
    campaign = CONTROLS if controls else ""
    schedule = "\n".join(CONTROLS.splitlines()[:2]) + "\n" if controls else ""
    return f"""
[upstream]
url = "{upstream_url}"
timeout_seconds = 10.0
max_connections = 100

[server]
max_connections_per_address = 0  # every load generator's connection comes from 127.0.0.1

[limits]
storage_url = "{storage}"
per_customer = "100000/minute"
upstream = "{budget}"
per_ip_invalid_session = "10000000/second"
{extra}
[reads]
{reads}

[logging]
level = "info"
format = "json"

[[triggers]]
id = "{SPIN}"
name = "spin-wheel"
per_customer = "100000/minute"
{campaign}
[triggers.override.wallet]
title = "Spin the wheel"
operation = "cr"
coin_range = {{ min = 5, max = 50 }}

[[triggers]]
id = "{QUOTA}"
name = "quota"
per_customer = "1/day"
{schedule}
[[triggers]]                     # the spin wheel with a coin budget: what one costs
id = "{BUDGETED}"
name = "budgeted"
per_customer = "100000/minute"
coin_budget = "1000000000/day"

[triggers.override.wallet]
title = "Spin the wheel"
operation = "cr"
coin_range = {{ min = 5, max = 50 }}
"""


def customer_tokens(prefix: str, n: int) -> list[str]:
    """``n`` real sessions of distinct customers, signed with the benchmark's secret."""
    from proxy.identity.sessions import mint_token

    secret = [ENV["TRIGGER_PROXY_SESSION_SECRETS"]]
    return [mint_token(secret, {"customer_id": f"{prefix}-{i:06}"}) for i in range(n)]


def forged_tokens(n: int) -> list[str]:
    """``n`` distinct tokens shaped like sessions, signed by no one."""
    return [secrets.token_urlsafe(40) + "." + secrets.token_urlsafe(6) for _ in range(n)]


def make_tokens(directory: Path) -> dict[str, Path]:
    files = {}

    def write(name: str, lines: Sequence[str]) -> None:
        path = directory / f"{name}.txt"
        path.write_text("\n".join(lines) + "\n")
        files[name] = path

    # Many customers for forwarding; few for the quota and replay scenarios, so that the
    # warm-up spends every one's first call.
    write("customers", customer_tokens("bench", 10000))
    write("quota", customer_tokens("quota", 500))
    write("replay", customer_tokens("replay", 500))
    write("forged", forged_tokens(10000))
    return files


class Lab:
    """The servers of one run; started once, loaded one at a time."""

    def __init__(
        self,
        workdir: Path,
        with_redis: bool,
        *,
        nginx: bool = False,
        with_replica: bool = False,
        controls: bool = False,
    ) -> None:
        self.workdir = workdir
        self.controls = controls
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
        self.replicated_url: str | None = None  # a primary with one replica, of its own
        self.redises: list[Server] = []
        self.replicas: list[Server] = []
        if with_redis and shutil.which("redis-server"):
            self.redis_url = f"redis://127.0.0.1:{self._redis('redis').port}/0"
        if with_replica and shutil.which("redis-server"):
            primary = self._redis("redis-primary")
            self.replicated_url = f"redis://127.0.0.1:{primary.port}/0"
            self.replicas.append(
                self._redis("redis-replica", "--replicaof", "127.0.0.1", str(primary.port))
            )

    def _redis(self, name: str, *options: str) -> Server:
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        # A replica's first sync writes a snapshot even with --save "": into the run's folder.
        folder = self.workdir / name
        folder.mkdir()
        argv += ["--save", "", "--appendonly", "no", "--dir", str(folder), *options]
        server = Server(name, pinned(1, argv), port)
        self.redises.append(server)
        return server

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

    def uvicorn(
        self,
        name: str,
        app: str,
        env: dict[str, str] | None = None,
        *,
        factory: bool = False,
        http: str = "httptools",
    ) -> Server:
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            *(["--factory"] if factory else []),
            "--http",
            http,
            app,
            "--port",
            "{port}",
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        return self._add(name, pinned(0, argv), env)

    def proxy(
        self,
        name: str,
        storage: str,
        budget: str = "1000000/second",
        *,
        extra: str = "",
        env: dict[str, str] | None = None,
        reads: str = READS,
    ) -> Server:
        """The proxy as ``serve`` runs it; ``extra`` goes into the config after ``[limits]``'s
        keys (so it may add more of them, then other sections); ``reads``, its ``[reads]``."""
        config = self._config(name, storage, budget, extra, reads)
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
        return self._add(name, pinned(0, argv), {**ENV, **(env or {})})

    def httpx_pool_proxy(self, name: str) -> Server:
        """The proxy over httpx's own connection pool instead of its aiohttp transport: the
        comparison behind that default (bench.minimal:httpx_pool_proxy)."""
        env = {**ENV, "BENCH_PROXY_CONFIG": str(self._config(name, "memory://", "1000000/second"))}
        return self.uvicorn(name, "bench.minimal:httpx_pool_proxy", env, factory=True)

    def _config(
        self, name: str, storage: str, budget: str, extra: str = "", reads: str = READS
    ) -> Path:
        config = self.workdir / f"{name}.toml"
        url = self.upstream.url + "/api/v2/merchant/activities"
        config.write_text(proxy_config(url, storage, budget, extra, reads, controls=self.controls))
        return config

    def start(self) -> None:
        for redis in self.redises:
            redis.start()
        for replica in self.replicas:
            self._await_replica(replica)
        for server in self.servers.values():
            server.start()

    def _await_replica(self, replica: Server) -> None:
        """Wait until the replica has synced, so that the first WAIT is answered."""
        import redis

        client = redis.Redis(port=replica.port)
        deadline = time.monotonic() + 20
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis replica did not connect")
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        for redis in reversed(self.redises):
            redis.stop()
