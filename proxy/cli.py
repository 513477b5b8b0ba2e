"""The command line: ``serve``, ``mint``, ``check-config`` and ``demo``.

Thin by design: it reads the environment here, at the edge, builds ``Settings`` once and hands
them on. A configuration mistake prints one line naming the key and exits 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from proxy.config.campaign import describe_campaign
from proxy.config.schema import rates_text
from proxy.config.settings import SOURCES, ConfigError, Settings, display_url, warnings
from proxy.identity.claims import ClaimError
from proxy.identity.sessions import mint_token
from proxy.limits.stores import describe_storage
from proxy.reads.capacity import describe_reads, describe_visitors
from proxy.serve import CONFIG_PATH_VARIABLE, SERVE_ONLY


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    parser = _parser(env)
    args = parser.parse_args(argv)
    if args.run is None:  # no command: the help, as uvicorn and pip do
        parser.print_help()
        return 0
    try:
        result: int = args.run(args, env)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"trigger-proxy: configuration error: {problem}", file=sys.stderr)
        return 2
    return result


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage errors are one line (and exit 2), like the config's."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number within the bounds the config file has for the key."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, not {value}")
        return value

    return parse


# As the config file has it: 0 asks the system for a free port (the start line names it).
_port = _number(0, 65535)


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trigger-proxy",
        description="A safe gateway to Nector's open triggers for storefronts, apps and games: "
        "the API key stays on the server, the customer comes from a signed session.",
        epilog="Secrets come only from the environment (TRIGGER_PROXY_API_KEY, ..._WORKSPACE_ID, "
        "..._SESSION_SECRETS; see the README). 'trigger-proxy COMMAND --help' describes each.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.set_defaults(run=None)
    commands = parser.add_subparsers(metavar="COMMAND", parser_class=_Parser)
    config_path = env.get(CONFIG_PATH_VARIABLE) or None

    def command(name: str, summary: str, description: str, example: str) -> _Parser:
        sub: _Parser = commands.add_parser(
            name,
            help=summary,
            description=description,
            epilog=f"example: {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return sub

    def config_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--config",
            metavar="PATH",
            required=config_path is None,
            default=config_path,
            help=f"the TOML configuration file (env {CONFIG_PATH_VARIABLE}; required)",
        )

    serve = command(
        "serve",
        "run the proxy",
        "Run the proxy on uvicorn until SIGTERM or Ctrl-C, then let requests in flight finish\n"
        "(server.shutdown_grace_seconds). Logs 'listening on http://HOST:PORT' once it accepts\n"
        "connections and 'stopped' when it has stopped.",
        ".venv/bin/trigger-proxy serve --config proxy.toml --port 8000",
    )
    config_option(serve)
    serve.add_argument(
        "--host", help="the address to listen on (default: server.host, 127.0.0.1; env "
        "TRIGGER_PROXY_HOST)"
    )  # fmt: skip
    serve.add_argument(
        "--port", type=_port, help="the port, 0-65535, 0 for any free one (default: "
        "server.port, 8080; env TRIGGER_PROXY_PORT)"
    )  # fmt: skip
    serve.add_argument(
        "--workers", type=_number(1), help="uvicorn worker processes; more than one needs "
        "redis:// storage (default: server.workers, 1; env TRIGGER_PROXY_WORKERS)"
    )  # fmt: skip
    serve.set_defaults(run=_serve)

    mint = command(
        "mint",
        "print a session token for one customer",
        "Sign a session for one customer with the last of TRIGGER_PROXY_SESSION_SECRETS, as\n"
        "the merchant's backend does after its own login, and print it on stdout.",
        ".venv/bin/trigger-proxy mint --config proxy.toml --customer-id shopify-7001234",
    )
    config_option(mint)
    who = mint.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer-id", help="the customer, 8-128 characters (or --lead-id)")
    who.add_argument("--lead-id", help="Nector's lead id, a UUID (or --customer-id)")
    mint.add_argument(
        "--ttl", type=_number(1), metavar="SECONDS",
        help="lifetime in seconds (default: sessions.max_age_seconds, 3600)",
    )  # fmt: skip
    mint.add_argument("--name", help="the customer's name, sent to Nector (default: none)")
    mint.add_argument("--referral-code", help="sent to Nector (default: none)")
    mint.add_argument(
        "--source", choices=SOURCES, help="binds the session to this X-Source (default: none)"
    )
    mint.set_defaults(run=_mint)

    check = command(
        "check-config",
        "validate the config and the environment",
        "Check exactly what serve would (the file and the secrets in the environment), name\n"
        "every mistake, and print a summary without secrets. With --probe, also connect to\n"
        "the limit store (PING) and to Nector's host (DNS, TCP, TLS; no reward is called).",
        ".venv/bin/trigger-proxy check-config --config proxy.toml --probe",
    )
    config_option(check)
    check.add_argument(
        "--probe",
        action="store_true",
        help="also reach the limit store and the upstream host (default: off)",
    )
    check.set_defaults(run=_check_config)

    demo = command(
        "demo",
        "run the proxy, a stand-in for Nector and a demo storefront on 127.0.0.1",
        "Run the gateway with an embedded stand-in for Nector and a demo storefront page.\n"
        "Needs no account, config or environment (TRIGGER_PROXY_* variables are ignored).",
        ".venv/bin/trigger-proxy demo --port 8080",
    )
    demo.add_argument(
        "--port",
        type=_port,
        default=8080,
        help="the page's port, 0 for any free one (default: 8080)",
    )
    demo.set_defaults(run=_demo)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("trigger-proxy")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "unknown"


def _serve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from proxy.serve import serve

    settings = Settings.load(args.config, env)
    return serve(settings, args.config, host=args.host, port=args.port, workers=args.workers)


STOREFRONT_NEEDS_LEAD = (
    'trigger-proxy: upstream.key_purpose = "storefront" serves lead_id sessions only: '
    "mint with --lead-id (a customer_id token would be refused with lead_session_required)"
)


def _mint(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    settings = Settings.load(args.config, env, purpose="mint")
    if args.customer_id is not None and settings.upstream.key_purpose == "storefront":
        # The proxy would refuse it on every call (403 lead_session_required): say so now.
        print(STOREFRONT_NEEDS_LEAD, file=sys.stderr)
        return 2
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
    for warning in warnings(settings):
        print(f"warning: {warning}")
    if not args.probe:
        return 0
    from proxy.observe.probe import probe_store, probe_upstream

    results = [probe_store(settings.limits.storage_url), probe_upstream(settings.upstream.url)]
    for result in results:
        print(result.line)
    return 0 if all(r.ok for r in results) else 1


def summary(settings: Settings) -> str:
    """A readable account of the settings with every secret left out."""
    s = settings
    lines = [
        "configuration OK",
        f"upstream: {display_url(s.upstream.url)} (timeout {s.upstream.timeout_seconds:g}s, "
        f"{s.upstream.key_purpose}-purpose key)",
        f"server: {s.server.host}:{s.server.port}, {s.server.workers} worker(s), "
        f"body cap {s.server.max_body_bytes} bytes",
        "  applied by serve only (mounted in another app, pass proxy.serve.server_options to "
        "uvicorn): server." + ", ".join(SERVE_ONLY),
        "trusted peers (X-Forwarded-For, X-Request-ID): "
        + (", ".join(s.server.forwarded_allow_ips) or "none, the headers are ignored"),
        f"sessions: max age {s.sessions.max_age_seconds}s, cookie {s.sessions.cookie_name!r}, "
        f"{len(s.secrets.session_secrets)} signing secret(s)",
        f"cors: {', '.join(s.cors.allow_origins) or '(no browser origins)'}"
        f"{' with credentials' if s.cors.allow_credentials else ''}",
        f"limits: storage {describe_storage(s.limits)}, per customer "
        f"{rates_text(s.limits.per_customer)}, workspace budget {rates_text((s.limits.upstream,))}",
        describe_reads(s.reads, s.limits.upstream),
        describe_visitors(s.reads, s.limits.per_ip_invalid_session),
        s.redemption.describe(),
        f"minting over HTTP: {'on' if s.secrets.mint_key else 'off'}",
        _shopify_line(s),
        f"triggers ({len(s.triggers)}):",
    ]
    for t in s.triggers:
        override = "wallet override" if t.wallet else "offer override" if t.offer else "no override"
        lines.append(
            f"  {t.name or '-'} {t.id} sources={','.join(sorted(t.sources))} "
            f"per_customer={rates_text(t.per_customer or s.limits.per_customer)} {override}"
            + describe_campaign(t)
        )
    return "\n".join(lines)


def _shopify_line(s: Settings) -> str:
    shopify, secrets = s.shopify, s.secrets
    if not shopify.shop:
        return "shopify: off (no shopify.shop)"
    app = len(secrets.shopify_app_secrets)
    digest = len(secrets.shopify_digest_secrets)
    proxy = f"on, {app} app secret(s)" if shopify.app_proxy else "off"
    digests = f"on, {digest} secret(s), at most {shopify.digest_max_age_seconds}s old"
    return (
        f"shopify: {shopify.shop} as customer_id {shopify.customer_id!r}; App Proxy under "
        f"/shopify/ {proxy}; theme digests {digests if digest else 'off'}"
    )


def _demo(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from proxy.demo.run import run_demo

    return run_demo(port=args.port)


if __name__ == "__main__":
    raise SystemExit(main())
