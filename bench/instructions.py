"""Instructions a request costs, counted by valgrind's callgrind: the same on a busy machine.

wrk's figures move by up to a third between runs on a shared machine; an instruction count does
not. Each scenario runs the server as ``serve`` builds it (uvicorn's httptools protocol, the
proxy's subclass, uvloop) in one process over a fake transport: requests fed to the protocol on
one keep-alive connection, each answered before the next. It runs twice under callgrind, with
``--small`` and ``--large`` requests after the same warm-up, and the difference of the two
totals over the difference of the counts is one request's instructions, the start-up cancelled.
The floor (bench.minimal:floor, on uvicorn's own protocol) is sent the same bytes as each
scenario. The socket's and the kernel's work, which every server pays alike, is not counted,
and an instruction is no fixed time: read the ratios beside wrk's, not in their place. Needs
valgrind (``apt-get install -y valgrind``).

    .venv/bin/python -m bench.instructions            # every scenario, about 5 minutes
    .venv/bin/python -m bench.instructions --only app-proxy,401
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.lab import ENV, SHOPIFY, SHOPIFY_ENV, customer_tokens, forged_tokens, proxy_config
from bench.scenarios import APP_PROXY_PATH

# name -> (path, what the request carries, the proxy's answer): the refuse group's scenarios.
SCENARIOS = {
    "404": ("/nope", "none", b"404"),
    "401": ("/v1/triggers/spin-wheel", "forged", b"401"),
    "403": ("/v1/triggers/not-listed", "session", b"403"),
    "429": ("/v1/triggers/quota", "session", b"429"),
    "replay": ("/v1/triggers/spin-wheel", "replay", b"200"),
    "app-proxy": (APP_PROXY_PATH, "none", b"401"),
}
WARM = 300  # requests before counting: caches filled, the 429's quota spent


class FakeTransport:
    """What the protocol writes to, kept as the last status line written."""

    def __init__(self) -> None:
        self.status = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        if data.startswith(b"HTTP/1.1 "):
            self.status = data[9:12]

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def requests(path: str, carries: str) -> list[bytes]:
    """The bytes wrk would send (bench/wrk/requests.lua), cycling through distinct tokens."""
    if carries == "forged":
        tokens = forged_tokens(1000)
    elif carries in ("session", "replay"):
        tokens = customer_tokens("bench", 100)
    else:
        tokens = [""]
    out = []
    for token in tokens:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
        if token:
            head += f"Authorization: Bearer {token}\r\n"
        if carries == "replay":
            head += "Idempotency-Key: bench-fixed-key\r\n"
        out.append((head + "Content-Length: 2\r\n\r\n{}").encode())
    return out


async def serve_in_process(scenario: str, floor: bool, count: int) -> bytes:
    """Answer the warm-up and then ``count`` requests of ``scenario``; the last status."""
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from bench.fast_upstream import BODY
    from proxy.app import create_app
    from proxy.config.settings import Settings
    from proxy.http.server_protocol import limited_protocol
    from proxy.observe.logs import configure
    from proxy.serve import server_options, tune_gc

    path, carries, _ = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "proxy.toml"
        url = "http://127.0.0.1:9/api/v2/merchant/activities"
        config_path.write_text(proxy_config(url, "memory://", extra=SHOPIFY))
        settings = Settings.load(str(config_path), {**ENV, **SHOPIFY_ENV})
    configure(settings.logging.level, settings.logging.format)  # JSON lines, to stderr
    lifespan = None
    if floor:
        from bench.minimal import floor as app

        protocol: Any = HttpToolsProtocol
    else:
        import httpx

        def upstream(request: httpx.Request) -> httpx.Response:  # the bench's nginx, as it answers
            return httpx.Response(200, content=BODY, headers={"content-type": "application/json"})

        app = create_app(settings, transport=httpx.MockTransport(upstream))
        protocol = limited_protocol(settings.server)
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
    options = {k: v for k, v in server_options(settings).items() if k != "http"}
    config = Config(app, log_config=None, access_log=False, lifespan="off", **options)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Sun, 06 Dec 2026 12:00:00 GMT")]
    tune_gc()
    connection = protocol(config=config, server_state=state, app_state={})
    transport = FakeTransport()
    connection.connection_made(transport)
    sent = requests(path, carries)
    for i in range(WARM + count):
        connection.data_received(sent[i % len(sent)])
        for task in list(connection.tasks):
            await task
    if lifespan is not None:
        await lifespan.__aexit__(None, None, None)
    return transport.status


def counted(scenario: str, floor: bool, count: int) -> int:
    """Instructions callgrind counts for a whole child process answering ``count`` requests."""
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        scenario,
        *(["--floor"] if floor else []),
        str(count),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr[-2000:]
    return int(found.group(1))


def per_request(scenario: str, floor: bool, small: int, large: int) -> float:
    return (counted(scenario, floor, large) - counted(scenario, floor, small)) / (large - small)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--only", help="comma-separated: " + ", ".join(SCENARIOS))
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=1200)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("count", nargs="?", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the access lines go nowhere
        status = asyncio.run(serve_in_process(args.child, args.floor, args.count))
        expected = b"429" if args.floor else SCENARIOS[args.child][2]
        if status != expected:
            raise SystemExit(f"{args.child}: answered {status!r}, not {expected!r}")
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    jobs = [(name, floor) for name in names for floor in (True, False)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        counts = list(pool.map(lambda j: per_request(j[0], j[1], args.small, args.large), jobs))
    print(f"{'scenario':<12} {'floor':>10} {'proxy':>10}  floor / proxy")
    for i, name in enumerate(names):
        base, proxy = counts[2 * i], counts[2 * i + 1]
        print(f"{name:<12} {base:>10.0f} {proxy:>10.0f}  {base / proxy:.2f}")


if __name__ == "__main__":
    main()
