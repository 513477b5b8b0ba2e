"""Running the proxy on uvicorn: the listening socket, the start and stop lines, the worker
processes, the admin port for metrics, and the garbage collector's settings for serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

from proxy.config.settings import ENV_PREFIX, ConfigError, Settings, warnings
from proxy.config.variables import CONFIG_VARIABLE
from proxy.limits.stores import describe_storage
from proxy.observe.logs import LOG, configure
from proxy.observe.logs import flush as flush_logs
from proxy.observe.metrics import Metrics, multiprocess_registry

# Where each worker process finds the config file (and a default for --config).
CONFIG_PATH_VARIABLE = ENV_PREFIX + CONFIG_VARIABLE
# What the server, not the app, applies: mounted in another app these are that app's server's.
SERVE_ONLY = (
    "host",
    "port",
    "workers",
    "shutdown_grace_seconds",
    "metrics_port",
    "metrics_host",
    "max_head_bytes",
    "head_timeout_seconds",
    "body_timeout_seconds",
    "max_concurrency",
)
# The cyclic garbage collector's thresholds while serving (see tune_gc).
GC_THRESHOLDS = (10_000, 10, 10)


def serve(
    settings: Settings,
    config_path: str,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
) -> int:
    """Serve until SIGTERM or Ctrl-C; ``host``, ``port`` and ``workers`` override the settings.
    Returns the exit code: 0 once stopped, 3 if the server did not start."""
    import uvicorn

    skip_httpx_cli()
    from proxy.app import create_app

    server = settings.server
    workers = workers or server.workers
    if workers > 1 and settings.limits.storage_url.startswith("memory:"):
        raise ConfigError(
            "--workers", "memory:// is per process; with several workers use redis://"
        )
    host = host or server.host
    port = server.port if port is None else port
    if server.metrics_port and server.metrics_port == port:
        raise ConfigError("--port", f"is server.metrics_port ({port}): the admin port must differ")
    sock = _listen(host, port)
    configure(settings.logging.level, settings.logging.format)
    for warning in warnings(settings):
        LOG.warning(warning)
    port = sock.getsockname()[1]
    listening = (
        f"listening on http://{host}:{port} ({workers} worker{'s' * (workers > 1)}, "
        f"storage {describe_storage(settings.limits)})"
    )
    app = None if workers > 1 else create_app(settings)
    config = uvicorn.Config(
        app or "proxy.serve:app_from_environment",
        factory=app is None,
        workers=workers,
        log_config=None,
        access_log=False,
        lifespan="on",
        **server_options(settings),
    )
    if app is None:
        # Each worker process builds its own app from the same file and environment, and
        # writes its metrics where any of them (and the admin port) can sum them.
        os.environ[CONFIG_PATH_VARIABLE] = os.path.abspath(config_path)
        made = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
                prefix="trigger-proxy-"
            )
        try:
            _serve_admin_metrics(settings, None)
            sock.listen(config.backlog)  # the workers accept on it; the kernel queues meanwhile
            LOG.info(listening)
            flush_logs()
            _supervisor(config, sock).run()
        finally:  # the workers' metric files are this run's alone
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)
        started = True
    else:
        _serve_admin_metrics(settings, app.metrics)
        tune_gc()
        started = _run_one(config, sock, listening)
    if not started:
        LOG.error("stopped: the proxy did not start (see above)")
    elif app is None:
        LOG.info("stopped")
    flush_logs()
    return 0 if started else 3


def server_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn settings that carry ``server.*``'s limits, as ``serve`` passes them: for an
    app that mounts the proxy and runs on uvicorn itself (docs/api.md),
    ``uvicorn.run(parent, host=..., port=..., **server_options(settings))``."""
    from proxy.http.server_protocol import limited_protocol

    server = settings.server
    return {
        "http": limited_protocol(server),  # limits on the request head and the time it takes
        "limit_concurrency": server.max_concurrency,
        "proxy_headers": False,  # the app applies server.forwarded_allow_ips itself
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(server.shutdown_grace_seconds),
    }


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a busy port is one clear line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                "--port", f"port {port} on {host} is in use: choose another with --port"
            ) from exc
        raise ConfigError("--host", f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)  # for the worker processes
    return sock


# One answer to SIGHUP with one worker or many: the configuration is read once, at start.
RELOAD_REFUSED = (
    "SIGHUP ignored: the proxy does not reload its configuration; restart it to apply a new "
    "one (SIGTERM finishes the requests in flight, then start it again)"
)


def _refuse_reload() -> None:
    LOG.warning(RELOAD_REFUSED)
    flush_logs()


def _run_one(config: Any, sock: socket.socket, listening: str) -> bool:
    """Serve on ``sock`` in this process until told to stop; True if the server started.
    uvicorn raises a stop signal again once it has stopped (exit 143 for SIGTERM); here a stop
    asked for is a clean exit, 0, as with several workers."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _refuse_reload)
            await super().startup(sockets)
            if self.started:
                LOG.info(listening)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await super().shutdown(sockets)
            LOG.info("stopped")
            flush_logs()

    server = Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
    return server.started


def _supervisor(config: Any, sock: socket.socket) -> Any:
    """uvicorn's supervisor of worker processes, stopping as one worker does: on SIGTERM or
    SIGINT its copy of the listening socket closes at once (else the kernel would go on
    accepting connections no worker serves, and reset them at exit) and the workers are told
    to finish what is in flight; SIGHUP is refused, not a restart of every worker."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._stop)

        def _stop(self, sig: int, frame: object) -> None:
            for listening in self.sockets:
                listening.close()
            self.should_exit.set()  # the run loop wakes now and terminates the workers

        def handle_hup(self) -> None:
            _refuse_reload()

    return Supervisor(config, sockets=[sock])


def _serve_admin_metrics(settings: Settings, metrics: Metrics | None) -> None:
    """With ``server.metrics_port`` set, /metrics is served there (in a thread of this
    process) and not on the main port."""
    server = settings.server
    if not server.metrics_port:
        return
    from prometheus_client import start_http_server

    registry = multiprocess_registry() if metrics is None else metrics.registry
    host, port = server.metrics_host, server.metrics_port
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:  # a busy port is one line, as the main port's is
        busy = exc.errno == errno.EADDRINUSE
        reason = f"port {port} on {host} is in use" if busy else exc.strerror
        raise ConfigError("server.metrics_port", f"cannot listen: {reason}") from exc


def skip_httpx_cli() -> None:
    """Keep httpx's command line out of a serving process. httpx imports it (with rich
    and pygments) whenever those are installed, as in a development environment; a
    worker never runs it (docs/design.md, "What a worker loads"). Called before the app is
    first imported; without effect once httpx is."""
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]


def app_from_environment() -> object:
    """The app factory uvicorn calls in each worker process."""
    skip_httpx_cli()
    from proxy.app import create_app
    from proxy.http.server_protocol import limited_protocol
    from proxy.observe.logs import configure

    # SIGHUP is the supervisor's to answer (it refuses it); sent to the whole process group
    # it would otherwise end this worker.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = Settings.load(os.environ[CONFIG_PATH_VARIABLE], os.environ)
    configure(settings.logging.level, settings.logging.format)
    limited_protocol(settings.server)  # this worker's connections get the deployment's limits
    app = create_app(settings)
    tune_gc()
    return app


def tune_gc() -> None:
    """Set the garbage collector up for serving, once the app is built.

    The youngest generation is collected whenever the tracked objects allocated outnumber those
    freed by the first threshold, 700 by default. The objects of a few dozen requests in flight
    at once (aiohttp's, uvicorn's, ours) cross that again and again: collections that find
    next to no garbage, whose survivors (the requests still in flight) are promoted and then set
    off collections of the whole heap (docs/design.md). Garbage cycles are rare here, so the
    larger young generation holds little.

    What exists by now (modules, settings, the app) lives as long as the process: frozen
    (gc.freeze moves it to a generation no collection walks), full collections skip it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
