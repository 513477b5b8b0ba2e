"""``trigger-proxy demo`` as a subprocess, the way a user starts it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

# A "real" key in the environment: the demo must ignore it.
REAL_LOOKING_KEY = "real-production-key-that-must-never-be-used-0001"


class DemoProcess:
    def __init__(self, log: Path) -> None:
        self.log = log
        self.url = ""
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> DemoProcess:
        script = shutil.which("trigger-proxy", path=os.path.dirname(sys.executable))
        command = [script] if script else [sys.executable, "-m", "proxy.cli"]
        env = {
            **os.environ,
            "TRIGGER_PROXY_API_KEY": REAL_LOOKING_KEY,
            "TRIGGER_PROXY_UPSTREAM_URL": "http://127.0.0.1:9/nowhere",
            "TRIGGER_PROXY_STORAGE_URL": "redis://127.0.0.1:1/0",
        }
        self._out = open(self.log, "wb")
        self.process = subprocess.Popen(
            [*command, "demo", "--port", "0"], env=env, stdout=self._out, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while not self.url:
            match = re.search(r"open (http://127\.0\.0\.1:\d+/)", self.log.read_text())
            if match:
                self.url = match.group(1)
            elif self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the demo did not start:\n{self.log.read_text()}")
            else:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._out.close()
