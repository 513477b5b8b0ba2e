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
    assert "/healthz" in check


def test_no_secret_is_baked_into_the_image() -> None:
    for word, rest in instructions():
        if word in ("ENV", "ARG", "LABEL"):
            assert "TRIGGER_PROXY_" not in rest
    copied = " ".join(rest for word, rest in instructions() if word == "COPY")
    assert ".env" not in copied
    assert "config/proxy.example.toml" in copied  # the example holds no secret
    for secret in ALL_SECRETS:
        assert secret not in DOCKERFILE


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

    # The final stage: the config it copies, then ENTRYPOINT + CMD, on a free loopback port.
    config = tmp_path / "proxy.toml"
    shutil.copy(ROOT / "config" / "proxy.example.toml", config)
    port = str(free_port())
    entrypoint = json.loads(next(rest for word, rest in steps if word == "ENTRYPOINT"))
    cmd = json.loads(next(rest for word, rest in steps if word == "CMD"))
    argv = [
        a.replace("/etc/trigger-proxy/proxy.toml", str(config)).replace("0.0.0.0", "127.0.0.1")
        .replace("8080", port)
        for a in entrypoint + cmd
    ]  # fmt: skip
    argv[0] = str(venv / "bin" / argv[0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGER_PROXY_")}
    env.update(ENVIRON, PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.1)
        check = next(rest for word, rest in steps if word == "HEALTHCHECK")
        probe = json.loads(check[check.index("CMD") + 3 :].strip())
        probe = [a.replace("8080", port) for a in probe]
        probe[0] = str(venv / "bin" / probe[0])
        assert subprocess.run(probe, env=env, timeout=30, check=False).returncode == 0
    finally:
        process.terminate()
        process.wait(15)
