"""Operating it (docs/operations.md): what serve and check-config refuse in one line, and what
they warn about at start."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import ENVIRON, config
from tests.servers import to_toml
from tests.test_cli import EXAMPLE, run

pytestmark = pytest.mark.slow


def test_a_misspelt_variable_stops_serve_in_one_line() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_UPSTREAM_ULR": "https://elsewhere.example/api"}
    result = run("serve", "--config", EXAMPLE, env=environ)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "trigger-proxy: configuration error: TRIGGER_PROXY_UPSTREAM_ULR: unknown variable "
        "(did you mean TRIGGER_PROXY_UPSTREAM_URL?)"
    ]


def test_workers_from_the_environment_are_blamed_on_the_variable() -> None:
    result = run("check-config", "--config", EXAMPLE, env={**ENVIRON, "TRIGGER_PROXY_WORKERS": "0"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "trigger-proxy: configuration error: TRIGGER_PROXY_WORKERS: must be at least 1"
    ]


def test_a_busy_metrics_port_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "proxy.toml"
        path.write_text(to_toml(config(server={"port": 0, "metrics_port": port})))
        result = run("serve", "--config", str(path), env=ENVIRON)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert line.endswith(f"server.metrics_port: cannot listen: port {port} on 127.0.0.1 is in use")


def test_serving_on_the_metrics_port_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(to_toml(config(server={"metrics_port": 9109})))
    result = run("serve", "--config", str(path), "--port", "9109", env=ENVIRON)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "trigger-proxy: configuration error: --port: is server.metrics_port (9109): the admin "
        "port must differ"
    ]


def test_check_config_shows_the_warning_of_a_budget_over_nectors_cap(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(to_toml(config(limits={"upstream": "70/minute"})))
    result = run("check-config", "--config", str(path), env=ENVIRON)
    assert result.returncode == 0
    [warning] = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert "limits.upstream" in warning


def test_check_config_shows_the_trusted_peers() -> None:
    environ = {**ENVIRON, "TRIGGER_PROXY_FORWARDED_ALLOW_IPS": "172.28.0.0/24, 10.0.0.1"}
    shown = run("check-config", "--config", EXAMPLE, env=environ).stdout.splitlines()
    assert "trusted peers (X-Forwarded-For, X-Request-ID): 172.28.0.0/24, 10.0.0.1" in shown
    alone = run("check-config", "--config", EXAMPLE, env=ENVIRON).stdout.splitlines()
    assert "trusted peers (X-Forwarded-For, X-Request-ID): none, the headers are ignored" in alone


def test_check_config_says_which_server_settings_only_serve_applies() -> None:
    shown = run("check-config", "--config", EXAMPLE, env=ENVIRON).stdout.splitlines()
    [line] = [line for line in shown if "applied by serve only" in line]
    assert "server.host, port, workers" in line
    assert "max_concurrency" in line
    assert "max_body_bytes" not in line  # the app applies it, mounted or not
