"""Real servers on 127.0.0.1 for integration tests: the Nector stand-in on uvicorn in a
thread, and ``trigger-proxy serve`` in subprocesses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import httpx
import uvicorn

from proxy.demo.nector import NectorStandIn, StandInTrigger
from tests.helpers import ENVIRON, SHOP
from tests.redis_util import free_port


def to_toml(config: dict[str, Any]) -> str:
    """Enough TOML for the proxy's config shape (tables, arrays of tables, inline values)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        raise TypeError(v)

    def table(header: str, body: dict[str, Any], lines: list[str]) -> None:
        lines.append(header)
        nested = []
        for k, v in body.items():
            if isinstance(v, dict) and k == "override":
                nested.append((k, v))
            else:
                lines.append(f"{k} = {value(v)}")
        for _, v in nested:
            for kind, fields in v.items():
                lines.append(f"[triggers.override.{kind}]")
                lines.extend(f"{fk} = {value(fv)}" for fk, fv in fields.items())

    lines: list[str] = []
    for name, section in config.items():
        if name == "triggers":
            for trigger in section:
                table("[[triggers]]", trigger, lines)
        else:
            table(f"[{name}]", section, lines)
    return "\n".join(lines) + "\n"


class ThreadedServer:
    """An ASGI app on a real uvicorn on 127.0.0.1, in a background thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)


class StandInServer(ThreadedServer):
    """The package's Nector stand-in on a real uvicorn, in a background thread."""

    def __init__(self, stand_in: NectorStandIn) -> None:
        super().__init__(stand_in.app)
        self.stand_in = stand_in

    @property
    def url(self) -> str:
        return f"{self.origin}/api/v2/merchant/activities"


def stand_in_for(*trigger_ids: str, **kwargs: Any) -> NectorStandIn:
    stand_in = NectorStandIn(
        api_key=ENVIRON["TRIGGER_PROXY_API_KEY"],
        workspace_id=ENVIRON["TRIGGER_PROXY_WORKSPACE_ID"],
        seed=7,
        **kwargs,
    )
    for trigger_id in trigger_ids:
        stand_in.add_trigger(StandInTrigger(trigger_id, allow_override=True))
    return stand_in


class ProxyProcess:
    """``trigger-proxy serve`` in a subprocess, with its stderr kept for inspection."""

    def __init__(
        self,
        tmp: Path,
        config: dict[str, Any],
        *,
        environ: dict[str, str] | None = None,
        name: str = "proxy",
    ) -> None:
        self.port = free_port()
        self.config_path = tmp / f"{name}.toml"
        self.config_path.write_text(to_toml(config))
        self.log_path = tmp / f"{name}.log"
        self.environ = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")},
            **(environ or ENVIRON),
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ProxyProcess:
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy.cli", "serve", "--config", str(self.config_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.environ,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the proxy did not start:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def stop(self) -> int:
        code = -1
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                code = self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                code = self.process.wait(5)
            self.process = None
            self._log.close()
        return code

    def log_lines(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def proxy_config(upstream_url: str, **sections: Any) -> dict[str, Any]:
    from tests.helpers import config

    base = config(
        upstream={"url": upstream_url, "timeout_seconds": 3.0},
        cors={"allow_origins": [SHOP], "allow_credentials": True},
        logging={"level": "info", "format": "json"},
    )
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value} if isinstance(value, dict) else value
    return base


async def gather_posts(
    client: httpx.AsyncClient, urls: list[str], **kwargs: Any
) -> list[httpx.Response]:
    return await asyncio.gather(*(client.post(url, **kwargs) for url in urls))
