"""The command line: one-line errors without tracebacks, mint, check-config without secrets."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from proxy import serve
from proxy.cli import main
from proxy.identity.sessions import SessionVerifier
from proxy.observe import logs
from proxy.serve import GC_THRESHOLDS
from tests.helpers import ALL_SECRETS, ENVIRON, SESSION_SECRET
from tests.redis_util import free_port

pytestmark = pytest.mark.slow

EXAMPLE = str(Path(__file__).parent.parent / "config" / "proxy.example.toml")


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess, with exactly ``env`` as TRIGGER_PROXY_*."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")}
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_accepts_the_example_and_prints_no_secret() -> None:
    result = run("check-config", "--config", EXAMPLE, env=ENVIRON)
    assert result.returncode == 0, result.stderr
    assert "configuration OK" in result.stdout
    assert "spin-wheel" in result.stdout
    assert "reads: leads, wallettransactions, coupons, activities, triggers" in result.stdout
    for secret in ALL_SECRETS:
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2-pass@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://hunter2-pass@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379/0?password=hunter2-pass", "redis://127.0.0.1:6379/0?password=***"),
        (
            "redis+sentinel://s1:26379,s2:26379/rewards/0?sentinel_password=hunter2-pass",
            "redis+sentinel://s1:26379,s2:26379/rewards/0?sentinel_password=***",
        ),
        (
            "redis+sentinel://u:hunter2-pass@s1:26379/rewards/0?sentinel%5Fpassword=hunter2-pass",
            "redis+sentinel://***@s1:26379/rewards/0?sentinel_password=***",
        ),
        (
            "rediss://127.0.0.1:6379/0?ssl_cert_reqs=none&ssl_password=hunter2-pass",
            "rediss://127.0.0.1:6379/0?ssl_cert_reqs=none&ssl_password=***",
        ),
    ],
)
def test_check_config_hides_a_redis_password(tmp_path: Path, url: str, shown: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(Path(EXAMPLE).read_text().replace('"memory://"', f'"{url}"'))
    result = run("check-config", "--config", str(path), env=ENVIRON)
    assert result.returncode == 0, result.stderr
    assert "hunter2-pass" not in result.stdout
    assert shown in result.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        (
            {k: v for k, v in ENVIRON.items() if k != "TRIGGER_PROXY_API_KEY"},
            "TRIGGER_PROXY_API_KEY",
        ),
        (
            {**ENVIRON, "TRIGGER_PROXY_SESSION_SECRETS": "too-short"},
            "TRIGGER_PROXY_SESSION_SECRETS",
        ),
    ],
)
def test_config_errors_are_one_line_without_traceback(env: dict[str, str], needle: str) -> None:
    for command in ("check-config", "serve"):
        result = run(command, "--config", EXAMPLE, env=env)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1, result.stderr
        assert needle in result.stderr
        assert "Traceback" not in result.stderr
        assert "too-short" not in result.stderr


def test_a_bad_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\nper_customer = "often"\n')
    result = run("check-config", "--config", str(bad), env=ENVIRON)
    assert result.returncode == 2
    assert result.stderr.startswith("trigger-proxy: configuration error: limits.per_customer:")
    missing = run("check-config", "--config", str(tmp_path / "none.toml"), env=ENVIRON)
    assert missing.returncode == 2
    assert "--config" in missing.stderr


def test_mint_prints_a_token_the_proxy_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    environ = {"TRIGGER_PROXY_SESSION_SECRETS": ENVIRON["TRIGGER_PROXY_SESSION_SECRETS"]}
    code = main(["mint", "--config", EXAMPLE, "--customer-id", "customer-77", "--ttl", "60",
                 "--source", "mobile"], environ)  # fmt: skip
    assert code == 0
    tok = capsys.readouterr().out.strip()
    session = SessionVerifier([SESSION_SECRET], 3600).verify(tok)
    assert (session.subject, session.source) == ("customer-77", "mobile")
    assert session.expires_at is not None


def test_mint_refuses_a_ttl_beyond_max_age(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["mint", "--config", EXAMPLE, "--customer-id", "customer-77", "--ttl", "99999"], ENVIRON
    )
    assert code == 2
    assert "--ttl" in capsys.readouterr().err


def test_mint_refuses_a_bad_customer(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["mint", "--config", EXAMPLE, "--customer-id", "short"], ENVIRON)
    assert code == 2
    assert "customer_id" in capsys.readouterr().err


def test_serve_refuses_several_workers_on_memory_storage() -> None:
    result = run("serve", "--config", EXAMPLE, "--workers", "2", env=ENVIRON)
    assert result.returncode == 2
    assert result.stderr.startswith("trigger-proxy: configuration error: --workers:")
    assert "redis://" in result.stderr


def test_serve_sets_the_collector_up_before_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[tuple[int, int, int], int]] = []

    def run_one(config: object, sock: object, listening: str) -> bool:
        seen.append((gc.get_threshold(), gc.get_freeze_count()))
        return True

    monkeypatch.setattr(serve, "_run_one", run_one)
    saved = (gc.get_threshold(), logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate)
    try:
        assert main(["serve", "--config", EXAMPLE, "--port", str(free_port())], ENVIRON) == 0
    finally:
        thresholds, logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate = saved
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    [(serving, frozen)] = seen
    assert serving == GC_THRESHOLDS
    assert frozen > 1000  # the modules and the app, out of the full collections' way


def test_the_start_line_hides_a_sentinel_password_and_names_the_replicas_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines: list[str] = []

    def run_one(config: object, sock: object, listening: str) -> bool:
        lines.append(listening)
        return True

    monkeypatch.setattr(serve, "_run_one", run_one)
    url = "redis+sentinel://u:hunter2-pass@s1:26379/rewards/0?sentinel_password=hunter2-pass"
    environ = {**ENVIRON, "TRIGGER_PROXY_STORAGE_URL": url}
    saved = (gc.get_threshold(), logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate)
    try:
        assert main(["serve", "--config", EXAMPLE, "--port", str(free_port())], environ) == 0
    finally:
        thresholds, logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate = saved
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    [line] = lines
    assert "hunter2" not in line
    assert "storage redis+sentinel://***@s1:26379/rewards/0?sentinel_password=***" in line
    assert "idempotency records wait for 1 replica" in line


# --- options are validated as the config file validates them ---------------------------------


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["serve", "--config", EXAMPLE, "--port", "70000"], "--port"),
        (["serve", "--config", EXAMPLE, "--port", "-1"], "--port"),
        (["serve", "--config", EXAMPLE, "--port", "eighty"], "--port"),
        (["serve", "--config", EXAMPLE, "--workers", "0"], "--workers"),
        (["demo", "--port", "70000"], "--port"),
        (["mint", "--config", EXAMPLE, "--customer-id", "customer-0001", "--ttl", "0"], "--ttl"),
    ],
)
def test_a_bad_option_is_one_line_naming_it_and_exit_2(args: list[str], option: str) -> None:
    result = run(*args, env=ENVIRON)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert option in line
    assert "Traceback" not in result.stderr


def test_a_busy_port_is_one_line_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("serve", "--config", EXAMPLE, "--port", str(port), env=ENVIRON)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert "--port" in line


def test_version_and_help_read_like_uvicorns() -> None:
    version = run("--version", env={})
    assert version.returncode == 0
    assert version.stdout.startswith("trigger-proxy 0.")
    bare = run(env={})
    assert bare.returncode == 0
    assert "usage: trigger-proxy" in bare.stdout
    assert all(c in bare.stdout for c in ("serve", "mint", "check-config", "demo"))
    serve = run("serve", "--help", env={}).stdout
    for words in ("TRIGGER_PROXY_PORT", "server.port, 8080", "TRIGGER_PROXY_CONFIG"):
        assert words in " ".join(serve.split()), words
    assert "example: .venv/bin/trigger-proxy serve" in serve
    for command in ("mint", "check-config", "demo"):
        text = run(command, "--help", env={}).stdout
        assert "example:" in text
        assert "default" in text


def test_check_config_names_every_missing_variable_in_one_run() -> None:
    result = run("check-config", "--config", EXAMPLE, env={})
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    for name in ("API_KEY", "WORKSPACE_ID", "SESSION_SECRETS"):
        assert any(f"TRIGGER_PROXY_{name}: is required" in line for line in lines), name
    assert all(line.startswith("trigger-proxy: configuration error: ") for line in lines)


def test_check_config_names_every_mistake_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    text = Path(EXAMPLE).read_text()
    text = text.replace("\ntimeout_seconds = 10.0", '\ntimeout_seconds = "ten"')
    text = text.replace('per_customer = "1/day"', 'per_customer = "daily"')
    path.write_text(text.replace('cookie_name = "trigger_session"', 'cookie_name = "a b"'))
    lines = run("check-config", "--config", str(path), env=ENVIRON).stderr.splitlines()
    keys = [line.split(": ")[2] for line in lines]
    assert keys == ["upstream.timeout_seconds", "sessions.cookie_name", "triggers[1].per_customer"]


def test_check_config_probe_says_what_answered_and_what_did_not(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        up = listener.getsockname()[1]
        down = free_port()
        path = tmp_path / "p.toml"
        path.write_text(
            Path(EXAMPLE).read_text().replace('"memory://"', f'"redis://127.0.0.1:{down}/0"')
        )
        env = {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_URL": f"http://127.0.0.1:{up}/api/v2/x"}
        result = run("check-config", "--config", str(path), "--probe", env=env)
    assert result.returncode == 1
    assert f"limit store redis://127.0.0.1:{down}/0: FAILED (refused)" in result.stdout
    assert f"upstream 127.0.0.1:{up}: DNS 127.0.0.1, TCP connected" in result.stdout


def test_check_config_probe_pings_a_live_redis(tmp_path: Path) -> None:
    from tests.helpers import need
    from tests.redis_util import SHARED_REDIS, redis_available

    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    path = tmp_path / "p.toml"
    path.write_text(Path(EXAMPLE).read_text().replace('"memory://"', f'"{SHARED_REDIS}"'))
    closed = {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_URL": f"http://127.0.0.1:{free_port()}/x"}
    result = run("check-config", "--config", str(path), "--probe", env=closed)
    assert result.returncode == 1
    assert f"limit store {SHARED_REDIS}: PING answered" in result.stdout
    assert "TCP" not in result.stdout
    assert "FAILED (refused)" in result.stdout


def test_check_config_names_redemption_and_visitors_and_hides_an_upstream_token() -> None:
    from proxy.cli import summary
    from proxy.config.settings import Settings
    from tests.helpers import OFFER, config

    url = "https://platform.nector.io/api/v2/merchant/activities?token=hunter2-pass"
    on = Settings.from_mapping(
        config(
            upstream={"url": url},
            reads={"routes": ["triggers", "leads"], "public_routes": ["triggers"],
                   "per_address": "7/minute"},
            redemption={"enabled": True, "offers": ["all"], "per_customer": "2/day"},
            limits={"per_ip_invalid_session": "9/minute"},
        ),
        ENVIRON,
    )  # fmt: skip
    shown = summary(on)
    assert "hunter2-pass" not in shown
    assert "activities?token=*** (timeout" in shown
    assert "redemption: on for every offer, per customer 2/86400s" in shown
    assert "visitors: triggers from the cache, misses 7/60s per address" in shown
    assert "invalid sessions 9/60s per address (limits.per_ip_invalid_session)" in shown
    off = summary(Settings.from_mapping(config(redemption={"offers": [OFFER]}), ENVIRON))
    assert "redemption: off" in off
    assert "visitors: no reads (no reads.public_routes)" in off
    listed = config(redemption={"enabled": True, "offers": [OFFER]})
    assert "redemption: on for 1 offer(s)" in summary(Settings.from_mapping(listed, ENVIRON))
