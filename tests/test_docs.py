"""Every command and code example in README.md and docs/ runs as written.

Each fenced block is either run here or named in NOT_RUN with the reason, so an example added
later without a test fails ``test_every_example_is_run_or_excused``. The one liberty taken:
the try-it block's fixed ports (9000, 8000) are swapped for free ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from proxy.identity.sessions import SessionVerifier
from tests.helpers import MINT_KEY, SESSION_SECRET, SPIN
from tests.redis_util import free_port
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")}

# (file, the block's first line) -> why no test runs it here.
NOT_RUN = {
    (
        "README.md",
        "# 1. install and run the demo: open the URL it prints, sign in, spin the wheel",
    ): (
        "the install commands: .ci/run runs the second exactly, test_deploy installs the "
        "package in a fresh venv, and test_demo runs `trigger-proxy demo`"
    ),
    ("README.md", "[reads]"): (
        "a config fragment: test_reads enables these routes and test_settings reads the example "
        "config, which lists every [reads] key"
    ),
    (
        "widget.md",
        '<script type="module" src="https://rewards.shop.example.com/client/trigger-proxy-wheel.js">'
        "</script>",
    ): (
        "the widget's embed: test_widget serves exactly this page shape (the tag, the element "
        "and a token) from another origin against `trigger-proxy serve` in Chromium"
    ),
    ("campaigns.md", "[[triggers]]"): (
        "a config fragment: test_campaign_settings loads exactly this block, and the example "
        "config lists every key"
    ),
    ("shopify.md", "[shopify]"): (
        "a config fragment: test_shopify_settings loads these keys, and the example config "
        "lists every one"
    ),
}


def examples() -> list[tuple[str, str, str]]:
    """(file name, language, text) of every fenced block."""
    found = []
    for path in DOCS:
        for match in FENCE.finditer(path.read_text()):
            found.append((path.name, match.group(1), match.group(2)))
    return found


def block(name: str, needle: str) -> str:
    [text] = [text for file, _, text in examples() if file == name and needle in text]
    return text


def run_shell(text: str, env: dict[str, str], timeout: float = 90) -> str:
    """Run ``text`` with bash in the repository, as a reader pastes it; stop anything it left
    running in the background. Output goes to a file: the background servers keep a pipe open."""
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", text],
            cwd=ROOT,
            env={**BASE_ENV, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            process.wait(timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        out.seek(0)
        output = out.read()
    assert process.returncode == 0, output
    return output


RUN_HERE = {
    ("README.md", "proxy.demo.nector"),
    ("README.md", "from proxy import mint_token"),
    ("api.md", 'Mount("/rewards", app=rewards)'),
    ("api.md", 'app.mount("/rewards", rewards)'),
    ("api.md", "server_options(settings)"),
    ("README.md", "X-Source: mobile"),
    ("README.md", 'name="trigger-session"'),
    ("sessions.md", "from proxy import mint_token"),
    ("sessions.md", "trigger-proxy mint"),
    ("sessions.md", "/v1/sessions"),
    *(
        CONFIG_FRAGMENTS := {
            ("api.md", "[redemption]\nenabled = true"),
            ("nector-widget.md", "public_routes = ["),
        }
    ),
}


def test_every_example_is_run_or_excused() -> None:
    for name, _, text in examples():
        first = text.splitlines()[0]
        excused = (name, first) in NOT_RUN
        run = [needle for file, needle in RUN_HERE if file == name and needle in text]
        assert excused or len(run) == 1, f"{name}: no test runs the example starting {first!r}"


@pytest.mark.parametrize(("name", "needle"), sorted(CONFIG_FRAGMENTS))
def test_a_config_fragment_loads_as_written(name: str, needle: str) -> None:
    import tomllib

    from proxy.config.schema import parse_rates
    from proxy.config.settings import Settings
    from tests.helpers import ENVIRON, config

    fragment = tomllib.loads(block(name, needle))
    settings = Settings.from_mapping(config(**fragment), ENVIRON)
    for section, keys in fragment.items():
        for key, value in keys.items():
            held = getattr(getattr(settings, section), key)
            if isinstance(value, list):
                value = tuple(value)
            elif key == "per_customer":
                value = parse_rates(value)
            assert held == value, (section, key)


def test_the_readme_try_it_block_rewards_a_customer() -> None:
    text = block("README.md", "proxy.demo.nector")
    nector, proxy = free_port(), free_port()
    text = text.replace("9000", str(nector)).replace("8000", str(proxy))
    output = run_shell(text, {})
    # The servers' own lines share the output, and curl ends its answer with no newline, so a
    # server line may follow it on the same line: decode the one JSON value the line starts with.
    decode = json.JSONDecoder().raw_decode
    [answer] = [decode(line)[0] for line in output.splitlines() if line.startswith('{"meta"')]
    assert answer["meta"] == {"status": "success"}
    assert 5 <= answer["data"]["wallet_reward"]["coins"] <= 50


@pytest.mark.parametrize("name", ["README.md", "sessions.md"])
def test_the_python_minting_examples_sign_a_token_the_proxy_verifies(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIGGER_PROXY_SESSION_SECRETS", SESSION_SECRET)
    text = block(name, "from proxy import mint_token")
    namespace: dict[str, object] = {}
    exec(compile(text, name, "exec"), namespace)  # noqa: S102 - our own documentation
    secrets = namespace["secrets"]
    assert isinstance(secrets, list)
    session = SessionVerifier(secrets, 3600).verify(str(namespace["token"]))
    assert session.subject == "shopify-7001234"


def test_the_cli_and_http_examples_run(tmp_path: Path) -> None:
    secrets = {"TRIGGER_PROXY_SESSION_SECRETS": SESSION_SECRET}
    verifier = SessionVerifier([SESSION_SECRET], 3600)
    token = run_shell(block("sessions.md", "trigger-proxy mint"), secrets).strip()
    assert verifier.verify(token).subject == "shopify-7001234"
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, proxy_config(nector.url)) as proxy:
            env = {"PROXY": proxy.base_url, "TRIGGER_PROXY_MINT_KEY": MINT_KEY}
            minted = json.loads(run_shell(block("sessions.md", "/v1/sessions"), env))
            assert verifier.verify(minted["token"]).subject == "shopify-7001234"
            env = {"PROXY": proxy.base_url, "SESSION_TOKEN": minted["token"]}
            answer = json.loads(run_shell(block("README.md", "X-Source: mobile"), env))
    assert answer["meta"] == {"status": "success"}
    assert nector.stand_in.calls[0].headers["x-source"] == "mobile"


@pytest.mark.parametrize("needles", [["Mount("], ["Mount(", "app.mount("]])
async def test_the_mounting_examples_reward_the_customer_their_backend_signed_in(
    needles: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx
    from starlette.applications import Starlette

    from tests.helpers import ENVIRON

    with StandInServer(stand_in_for(SPIN)) as nector:
        for name, value in {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_URL": nector.url}.items():
            monkeypatch.setenv(name, value)
        namespace: dict[str, object] = {}
        for needle in needles:  # the FastAPI example goes on from the Starlette one
            exec(compile(block("api.md", needle), "api.md", "exec"), namespace)  # noqa: S102
        app = namespace["app"]
        assert isinstance(app, Starlette)  # FastAPI's app is one too
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://shop") as client,
        ):
            token = (await client.post("/login")).json()["token"]
            bearer = {"authorization": f"Bearer {token}"}
            reward = await client.post("/rewards/v1/triggers/spin-wheel", headers=bearer)
            assert (await client.get("/rewards/healthz")).json() == {"status": "ok"}
            outside = await client.post("/v1/triggers/spin-wheel", headers=bearer)
            assert outside.status_code == 404
    assert reward.status_code == 200
    assert reward.json()["meta"] == {"status": "success"}
    assert nector.stand_in.calls[0].body["customer_id"] == "shopify-7001234"


def test_the_mounted_apps_server_gets_the_proxys_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    from proxy.http.server_protocol import LimitedHttpToolsProtocol
    from tests.helpers import ENVIRON

    for name, value in ENVIRON.items():
        monkeypatch.setenv(name, value)
    ran: list[tuple[object, dict[str, object]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: ran.append((app, options)))
    namespace: dict[str, object] = {}
    for needle in ("Mount(", "server_options(settings)"):
        exec(compile(block("api.md", needle), "api.md", "exec"), namespace)  # noqa: S102
    [(app, options)] = ran
    assert app is namespace["app"]
    http = options["http"]
    assert isinstance(http, type)
    assert issubclass(http, LimitedHttpToolsProtocol)
    assert options["limit_concurrency"] == 1000


def test_the_refusal_table_gives_both_messages_as_the_code_does() -> None:
    from proxy import errors
    from proxy.http.shopper import SHOPPER

    developer: dict[str, str] = {}
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.ProxyError):
            developer.setdefault(cls.code, cls.__dict__.get("message", cls.message))
    text = (ROOT / "docs" / "api.md").read_text()
    header = "| code | `error.message` (for the developer) | `data.message` (for the shopper) |"
    table = text[text.index(header) :].split("\n\n", 1)[0].splitlines()[2:]
    rows = {}
    for row in table:
        code, dev, shopper = (cell.strip() for cell in row.strip("|").split("|"))
        if re.fullmatch(r"`\w+`", code):
            rows[code.strip("`")] = (dev, shopper)
    assert rows.keys() == SHOPPER.keys()
    for code, (dev, shopper) in rows.items():
        assert (dev, shopper) == (developer[code], SHOPPER[code]), code
