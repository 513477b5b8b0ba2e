"""Redis for tests: the machine's shared server for ordinary tests (each under its own key
prefix), and private servers on free ports for tests that stop or restart Redis."""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

from proxy.limits.redis_store import RedisStore

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def redis_available(url: str = SHARED_REDIS) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def shared_redis_store(timeout_seconds: float = 1.0) -> RedisStore:
    """A store on the machine's shared Redis, under a key prefix of its own."""
    from tests.helpers import need

    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    return RedisStore(
        SHARED_REDIS, prefix=f"test:{uuid.uuid4().hex}:", timeout_seconds=timeout_seconds
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


NO_PERSISTENCE = ("--save", "", "--appendonly", "no")


class PrivateRedis:
    """A redis-server of our own on a free loopback port, never the shared one."""

    def __init__(
        self, workdir: Path, port: int | None = None, options: tuple[str, ...] = NO_PERSISTENCE
    ) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def installed() -> bool:
        return shutil.which("redis-server") is not None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", *self.options, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not redis_available(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


class LaggingLink:
    """A TCP relay on a free loopback port to ``target``, delaying what ``target`` sends by
    ``lag`` seconds: a replica that replicates through it lags its primary by that much. What
    is still delayed when ``target`` goes away is lost with it, as a dead primary's unsent
    writes are."""

    def __init__(self, target_port: int, lag: float) -> None:
        self.port = free_port()
        self._target = target_port
        self._lag = lag
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._sockets: list[socket.socket] = [self._listener]
        self._stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                return
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self._lag), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, lag: float) -> None:
        due: queue.Queue[tuple[float, bytes]] = queue.Queue()
        gone = threading.Event()

        def deliver() -> None:
            while True:
                at, chunk = due.get()
                if not chunk:
                    break
                time.sleep(max(0.0, at - time.monotonic()))
                if gone.is_set():
                    break
                try:
                    sink.sendall(chunk)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

        threading.Thread(target=deliver, daemon=True).start()
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                gone.set()
                due.put((0.0, b""))
                return
            due.put((time.monotonic() + lag, chunk))

    def stop(self) -> None:
        self._stopped.set()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
