"""The command line: ``serve``, ``mint``, ``check-config`` and ``demo``.

Thin by design: it reads the environment here, at the edge, builds ``Settings`` once and hands
them on. A configuration mistake prints one line naming the key and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .metrics import Metrics, multiprocess_registry
from .sessions import ClaimError, mint_token
from .settings import SOURCES, ConfigError, Settings

CONFIG_PATH_VARIABLE = "TRIGGER_PROXY_CONFIG"
# The cyclic garbage collector's thresholds while serving (see tune_gc).
GC_THRESHOLDS = (10_000, 10, 10)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        result: int = args.run(args, env)
    except ConfigError as exc:
        print(f"trigger-proxy: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trigger-proxy",
        description="A safe gateway to Nector's open triggers for storefronts, apps and games.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", required=True, metavar="PATH")
    serve.add_argument("--host", help="overrides server.host")
    serve.add_argument("--port", type=int, help="overrides server.port")
    serve.add_argument("--workers", type=int, help="overrides server.workers")
    serve.set_defaults(run=_serve)

    mint = commands.add_parser("mint", help="print a session token for one customer")
    mint.add_argument("--config", required=True, metavar="PATH")
    who = mint.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer-id")
    who.add_argument("--lead-id")
    mint.add_argument(
        "--ttl", type=int, metavar="SECONDS", help="default: sessions.max_age_seconds"
    )
    mint.add_argument("--name")
    mint.add_argument("--referral-code")
    mint.add_argument("--source", choices=SOURCES)
    mint.set_defaults(run=_mint)

    check = commands.add_parser("check-config", help="validate the config and the environment")
    check.add_argument("--config", required=True, metavar="PATH")
    check.set_defaults(run=_check_config)

    demo = commands.add_parser(
        "demo", help="run the proxy, a stand-in for Nector and a demo storefront on 127.0.0.1"
    )
    demo.add_argument("--port", type=int, default=8080)
    demo.set_defaults(run=_demo)
    return parser


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    import uvicorn

    from .app import create_app
    from .logs import configure

    settings = Settings.load(args.config, env)
    server = settings.server
    workers = args.workers or server.workers
    if workers > 1 and settings.limits.storage_url.startswith("memory:"):
        raise ConfigError(
            "--workers", "memory:// is per process; with several workers use redis://"
        )
    configure(settings.logging.level, settings.logging.format)
    options: dict[str, Any] = {
        "host": args.host or server.host,
        "port": server.port if args.port is None else args.port,
        "proxy_headers": False,  # the app applies server.forwarded_allow_ips itself
        "server_header": False,
        "timeout_graceful_shutdown": server.shutdown_grace_seconds,
        "log_config": None,
        "access_log": False,
        "lifespan": "on",
    }
    if workers > 1:
        # Each worker process builds its own app from the same file and environment, and
        # writes its metrics where any of them (and the admin port) can sum them.
        os.environ[CONFIG_PATH_VARIABLE] = os.path.abspath(args.config)
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="trigger-proxy-"))
        _serve_admin_metrics(settings, None)
        uvicorn.run("proxy.cli:app_from_environment", factory=True, workers=workers, **options)
    else:
        app = create_app(settings)
        _serve_admin_metrics(settings, app.metrics)
        tune_gc()
        uvicorn.run(app, **options)
    return 0


def _serve_admin_metrics(settings: Settings, metrics: Metrics | None) -> None:
    """With ``server.metrics_port`` set, /metrics is served there (in a thread of this
    process) and not on the main port."""
    server = settings.server
    if not server.metrics_port:
        return
    from prometheus_client import start_http_server

    registry = multiprocess_registry() if metrics is None else metrics.registry
    start_http_server(server.metrics_port, addr=server.metrics_host, registry=registry)


def app_from_environment() -> object:
    """The app factory uvicorn calls in each worker process."""
    from .app import create_app
    from .logs import configure

    settings = Settings.load(os.environ[CONFIG_PATH_VARIABLE], os.environ)
    configure(settings.logging.level, settings.logging.format)
    app = create_app(settings)
    tune_gc()
    return app


def tune_gc() -> None:
    """Set the garbage collector up for serving, once the app is built.

    The youngest generation is collected whenever the tracked objects allocated outnumber those
    freed by the first threshold, 700 by default. The objects of a few dozen requests in flight
    at once (aiohttp's, uvicorn's, ours) cross that again and again: on the bench's forwarding
    run, 160 collections a second that found next to no garbage, whose survivors (the requests
    still in flight) were promoted and then set off collections of the whole heap. They cost
    43 µs of CPU per forwarded request, a tenth of it; at 10,000, next to none. Garbage cycles
    are rare here, so the larger young generation holds little.

    What exists by now (modules, settings, the app) lives as long as the process: frozen
    (gc.freeze moves it to a generation no collection walks), full collections skip it.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _mint(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = Settings.load(args.config, env, purpose="mint")
    max_age = settings.sessions.max_age_seconds
    ttl = max_age if args.ttl is None else args.ttl
    if not 1 <= ttl <= max_age:
        raise ConfigError("--ttl", f"must be from 1 to sessions.max_age_seconds ({max_age})")
    claims = {
        "customer_id": args.customer_id,
        "lead_id": args.lead_id,
        "name": args.name,
        "referral_code": args.referral_code,
        "source": args.source,
    }
    secrets = [s.reveal() for s in settings.secrets.session_secrets]
    try:
        token = mint_token(
            secrets, {k: v for k, v in claims.items() if v is not None}, ttl_seconds=ttl
        )
    except ClaimError as exc:
        print(f"trigger-proxy: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _check_config(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = Settings.load(args.config, env)
    print(summary(settings))
    return 0


def summary(settings: Settings) -> str:
    """A readable account of the settings with every secret left out."""
    s = settings
    lines = [
        "configuration OK",
        f"upstream: {s.upstream.url} (timeout {s.upstream.timeout_seconds:g}s)",
        f"server: {s.server.host}:{s.server.port}, {s.server.workers} worker(s), "
        f"body cap {s.server.max_body_bytes} bytes",
        f"sessions: max age {s.sessions.max_age_seconds}s, cookie {s.sessions.cookie_name!r}, "
        f"{len(s.secrets.session_secrets)} signing secret(s)",
        f"cors: {', '.join(s.cors.allow_origins) or '(no browser origins)'}"
        f"{' with credentials' if s.cors.allow_credentials else ''}",
        f"limits: storage {_without_password(s.limits.storage_url)}, per customer "
        f"{_rates(s.limits.per_customer)}, workspace budget {_rates((s.limits.upstream,))}",
        f"minting over HTTP: {'on' if s.secrets.mint_key else 'off'}",
        f"triggers ({len(s.triggers)}):",
    ]
    for t in s.triggers:
        override = "wallet override" if t.wallet else "offer override" if t.offer else "no override"
        lines.append(
            f"  {t.name or '-'} {t.id} sources={','.join(sorted(t.sources))} "
            f"per_customer={_rates(t.per_customer or s.limits.per_customer)} {override}"
        )
    return "\n".join(lines)


def _rates(rates: Sequence[object]) -> str:
    return ";".join(str(r) for r in rates)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from .demo.run import run_demo

    return run_demo(port=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
