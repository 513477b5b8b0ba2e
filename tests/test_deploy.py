"""The Dockerfile and compose.yaml. No Docker engine runs on these machines, so the image's
install and start steps are reproduced in a fresh venv, and the files are checked for what
matters: multi-stage, slim base, non-root, a health check, no secret baked in."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from proxy.config.schema import ENV_PREFIX
from proxy.config.variables import SECRET_VARIABLES
from tests.helpers import ALL_SECRETS, ENVIRON
from tests.redis_util import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_the_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    steps = instructions()
    bases = [rest for word, rest in steps if word == "FROM"]
    assert len(bases) >= 2
    assert all("slim" in base for base in bases)
    users = [rest for word, rest in steps if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert [rest for word, rest in steps if word == "ENTRYPOINT"] == ['["trigger-proxy"]']
    (check,) = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert "/opt/healthcheck.py" in check
    assert "/healthz" in (ROOT / "deploy" / "healthcheck.py").read_text()


def test_no_secret_and_no_config_is_baked_into_the_image() -> None:
    for word, rest in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            for name in SECRET_VARIABLES:
                assert ENV_PREFIX + name not in rest
    copied = " ".join(rest for word, rest in instructions() if word == "COPY")
    assert ".env" not in copied
    # An example that passes check-config would serve if the operator forgot to mount theirs.
    assert "config/" not in copied
    assert "proxy.toml" not in copied
    for secret in ALL_SECRETS:
        assert secret not in DOCKERFILE


def image_env() -> dict[str, str]:
    """The final stage's ENV, as the container's environment starts."""
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def container(
    tmp_path: Path, config: Path | None, **environ: str
) -> tuple[list[str], dict[str, str]]:
    """The image's ENTRYPOINT + CMD and environment, with this checkout's trigger-proxy, the
    config "mounted" from ``config`` (or nothing mounted) and ``environ`` as ``docker run -e``."""
    steps = instructions()
    entrypoint = json.loads(next(rest for word, rest in steps if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in steps if word == "CMD"))
    argv = [str(Path(sys.executable).parent / entrypoint[0]), *entrypoint[1:], *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")}
    image = image_env()
    image.pop("PATH")
    mounted = tmp_path / "etc" / "proxy.toml"
    image["TRIGGER_PROXY_CONFIG"] = str(mounted)
    if config is not None:
        mounted.parent.mkdir(exist_ok=True)
        shutil.copy(config, mounted)
    env.update(image, **ENVIRON, **environ)
    return argv, env


def healthcheck(env: dict[str, str]) -> int:
    check = next(rest for word, rest in instructions() if word == "HEALTHCHECK")
    probe = json.loads(check[check.index("CMD") + 3 :].strip())
    probe = [
        a.replace("/opt/healthcheck.py", str(ROOT / "deploy" / "healthcheck.py")) for a in probe
    ]
    probe[0] = sys.executable
    return subprocess.run(probe, env=env, timeout=30, check=False).returncode


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_the_image_serves_on_the_port_its_environment_names_and_checks_that_port(
    tmp_path: Path,
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "proxy.toml"
    example = (ROOT / "config" / "proxy.example.toml").read_text()
    config.write_text(example.replace("metrics_port = 0 ", f"metrics_port = {admin} ", 1))
    argv, env = container(tmp_path, config, TRIGGER_PROXY_PORT=str(port))
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, process)
        assert healthcheck(env) == 0  # on TRIGGER_PROXY_PORT, not a fixed 8080
        # The admin port listens beyond the container's loopback (TRIGGER_PROXY_METRICS_HOST).
        assert image_env()["TRIGGER_PROXY_METRICS_HOST"] == "0.0.0.0"
        metrics = httpx.get(f"http://127.0.0.1:{admin}/metrics", timeout=5)
        assert "trigger_proxy_build_info" in metrics.text
    finally:
        process.terminate()
        process.wait(15)
    assert healthcheck(env) == 1  # and it notices when nothing answers


def test_the_image_without_a_mounted_config_stops_in_one_line(tmp_path: Path) -> None:
    argv, env = container(tmp_path, None)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    # The path came from the image's TRIGGER_PROXY_CONFIG, not from --config.
    prefix = "trigger-proxy: configuration error: TRIGGER_PROXY_CONFIG: cannot read "
    assert line.startswith(prefix)
    assert "No such file or directory" in line


def test_compose_runs_two_replicas_with_redis_behind_a_load_balancer() -> None:
    services = COMPOSE["services"]
    assert set(services) >= {"proxy", "redis", "redis-replica", "lb"}
    proxy = services["proxy"]
    assert proxy["deploy"]["replicas"] == 2
    # Redis behind three Sentinels, which the proxies ask where the primary is.
    sentinels = [name for name in services if name.startswith("sentinel-")]
    assert len(sentinels) == 3
    url = proxy["environment"]["TRIGGER_PROXY_STORAGE_URL"]
    from proxy.limits.redis_client import parse_sentinel_url

    target = parse_sentinel_url(url)
    assert sorted(host for host, _ in target.sentinels) == sorted(sentinels)
    assert target.service == "rewards"
    for name in sentinels:
        assert "sentinel monitor rewards redis 6379 2" in " ".join(services[name]["command"])
    for name in (
        "TRIGGER_PROXY_API_KEY",
        "TRIGGER_PROXY_WORKSPACE_ID",
        "TRIGGER_PROXY_SESSION_SECRETS",
    ):
        # Taken from the operator's environment, required, never written down.
        assert re.fullmatch(r"\$\{" + name + r":\?.*\}", proxy["environment"][name])
    assert "nginx" in services["lb"]["image"]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy:8080" in nginx
    assert "X-Forwarded-For $remote_addr" in nginx  # replaced, never appended to a client's


def test_the_image_install_and_start_steps_work_in_a_fresh_venv(tmp_path: Path) -> None:
    steps = instructions()
    src = tmp_path / "src"
    src.mkdir()
    # The build stage: its COPY lines, then its RUN line, with /opt/venv moved into tmp.
    build_end = [i for i, (word, _) in enumerate(steps) if word == "FROM"][1]
    for word, rest in steps[:build_end]:
        if word == "COPY":
            *sources, _ = shlex.split(rest)
            for source in sources:
                path = ROOT / source
                target = src / Path(source).name
                if path.is_dir():
                    shutil.copytree(path, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(path, target)
    venv = tmp_path / "venv"
    (run,) = [rest for word, rest in steps[:build_end] if word == "RUN"]
    command = run.replace("/opt/venv", str(venv)).replace("python ", f"{sys.executable} ", 1)
    subprocess.run(command, shell=True, cwd=src, check=True, capture_output=True, timeout=600)  # noqa: S602

    # The final stage: ENTRYPOINT + CMD with its environment, the config mounted, on a free
    # loopback port (docker run -e TRIGGER_PROXY_HOST=... -e TRIGGER_PROXY_PORT=...).
    port = free_port()
    argv, env = container(
        tmp_path, ROOT / "config" / "proxy.example.toml",
        TRIGGER_PROXY_HOST="127.0.0.1", TRIGGER_PROXY_PORT=str(port),
    )  # fmt: skip
    argv[0] = str(venv / "bin" / Path(argv[0]).name)
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(port, process)
        assert healthcheck(env) == 0
    finally:
        process.terminate()
        process.wait(15)
