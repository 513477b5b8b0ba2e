"""The command line: one-line errors without tracebacks, mint, check-config without secrets."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
import uvicorn

from proxy import logs
from proxy.cli import GC_THRESHOLDS, main
from proxy.sessions import SessionVerifier
from tests.conftest import ALL_SECRETS, ENVIRON, SESSION_SECRET

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
    for secret in ALL_SECRETS:
        assert secret not in result.stdout + result.stderr


def test_check_config_hides_a_redis_password(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        Path(EXAMPLE).read_text().replace('"memory://"', '"redis://:hunter2-pass@127.0.0.1:6379/0"')
    )
    result = run("check-config", "--config", str(path), env=ENVIRON)
    assert result.returncode == 0, result.stderr
    assert "hunter2-pass" not in result.stdout
    assert "redis://:***@127.0.0.1:6379/0" in result.stdout


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
    monkeypatch.setattr(
        uvicorn,
        "run",
        lambda app, **options: seen.append((gc.get_threshold(), gc.get_freeze_count())),
    )
    saved = (gc.get_threshold(), logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate)
    saved_direct = logs._direct
    try:
        assert main(["serve", "--config", EXAMPLE], ENVIRON) == 0
    finally:
        thresholds, logs.LOG.handlers[:], logs.LOG.level, logs.LOG.propagate = saved
        logs._direct = saved_direct
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    [(serving, frozen)] = seen
    assert serving == GC_THRESHOLDS
    assert frozen > 1000  # the modules and the app, out of the full collections' way
