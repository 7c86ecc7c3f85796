"""Run tests/servers/openai_audio.py (a local implementation of the OpenAI audio API, not OpenAI) as a real
subprocess for a test module, and switch how it behaves."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

SERVER = Path(__file__).with_name("openai_audio.py")
KEY = "sk-test-0123456789abcdef"
"""The key the test server is started with (tests check it never appears in an error)."""


class AudioServer:
    """The server process: ``url`` is its API root (``http://127.0.0.1:PORT/v1``)."""

    def __init__(self, key: str = KEY) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--key", key],
            stdout=subprocess.PIPE,
            stderr=None,
            env=env,
            cwd=Path(__file__).parents[2],
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 120
        line = b""
        while time.monotonic() < deadline and self.process.poll() is None:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                line = self.process.stdout.readline()
                break
        if not line.startswith(b"PORT "):
            self.stop()
            raise RuntimeError(f"the OpenAI audio test server did not start (said {line!r})")
        self.port = int(line.split()[1])
        self.root = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.root}/v1"

    def control(self, mode: str = "ok", **settings: Any) -> None:
        """Make the next ``count`` requests (all, without it) behave as ``mode`` (see the server's docstring);
        forgets the requests seen so far."""
        httpx.post(f"{self.root}/control", json={"mode": mode, **settings}, timeout=10).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        """Every API request the server has seen since :meth:`control`: path, fields (form or JSON), and whether
        it carried a key."""
        seen: list[dict[str, Any]] = httpx.get(f"{self.root}/control", timeout=10).json()["requests"]
        return seen

    def kill(self) -> None:
        """Kill the process at once (SIGKILL): connections drop, the port refuses."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
