"""One stop and one answer to SIGHUP, with one worker or many: on SIGTERM new connections are
refused at once, the requests in flight finish, and the exit is 0; SIGHUP is refused with a
line saying to restart, and serving goes on."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.helpers import SPIN, need, token
from tests.redis_util import SHARED_REDIS, redis_available
from tests.servers import ProxyProcess, StandInServer, proxy_config, stand_in_for

pytestmark = pytest.mark.slow


def config_for(nector_url: str, workers: int) -> dict[str, object]:
    if workers == 1:
        return proxy_config(nector_url)
    need(redis_available(SHARED_REDIS), f"no Redis at {SHARED_REDIS}")
    return proxy_config(
        nector_url, server={"workers": workers}, limits={"storage_url": SHARED_REDIS}
    )


def refused_within(port: int, seconds: float) -> float | None:
    """How long until a new connection is refused, or None if it never was in ``seconds``."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                pass
        except ConnectionRefusedError:
            return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_refuses_new_connections_finishes_in_flight_and_exits_0(
    tmp_path: Path, workers: int
) -> None:
    stand_in = stand_in_for(SPIN)
    stand_in.delay_seconds = 1.5  # the reward is in flight when the stop comes
    with StandInServer(stand_in) as nector:
        proxy = ProxyProcess(tmp_path, config_for(nector.url, workers)).start()
        answers: list[httpx.Response] = []
        auth = {"authorization": f"Bearer {token(f'customer-{uuid.uuid4().hex}')}"}
        url = f"{proxy.base_url}/v1/triggers/spin-wheel"
        flight = threading.Thread(target=lambda: answers.append(httpx.post(url, headers=auth)))
        flight.start()
        deadline = time.monotonic() + 5
        while not stand_in.calls:  # the request reached Nector: it is in flight
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proxy.terminate()
        refused = refused_within(proxy.port, 1.0)
        flight.join(10)
        code = proxy.stop()
    assert refused is not None, "new connections were still accepted"
    [answer] = answers
    assert answer.status_code == 200, answer.text
    assert code == 0
    assert "Traceback" not in proxy.log_path.read_text()


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_is_refused_with_one_line_and_serving_goes_on(tmp_path: Path, workers: int) -> None:
    with StandInServer(stand_in_for(SPIN)) as nector:
        with ProxyProcess(tmp_path, config_for(nector.url, workers)) as proxy:
            assert proxy.process is not None
            proxy.process.send_signal(signal.SIGHUP)
            time.sleep(1.0)  # the supervisor looks at its signals every half second
            assert proxy.process.poll() is None
            assert httpx.get(f"{proxy.base_url}/healthz").status_code == 200
            lines = [json.loads(line) for line in proxy.log_lines() if line.startswith("{")]
            [refusal] = [line for line in lines if "SIGHUP" in line["msg"]]
            assert refusal["level"] == "warning"
            assert "restart" in refusal["msg"]
