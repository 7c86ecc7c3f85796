"""Real service subprocesses for the remote tests; every one is killed in teardown."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent


class Service:
    """A server subprocess; ``url`` once it printed its ready line."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("FACECAST_TOKEN", None)
        # The light providers unless a test names others (flags win over the environment): these tests are
        # about the service protocol and failover, and the light set starts in a fraction of a second.
        env.update({"FACECAST_STT": "pocketsphinx", "FACECAST_LLM": "echo", "FACECAST_TTS": "espeak"})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.url = ""
        self.output: list[str] = []
        self._new_line = threading.Condition()
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                with self._new_line:
                    self.output.append(line)
                    self._new_line.notify_all()
                match = re.search(r"listening on (ws://\S+)", line)
                if match and not self.url:
                    self.url = match.group(1)
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(60) or not self.url:
            self.kill()
            raise RuntimeError(f"service did not start: {args}: {''.join(self.output)}")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def wait_for(self, text: str, timeout: float = 60.0) -> None:
        """Block until the service printed a line containing ``text`` (a thread: ``asyncio.to_thread``)."""
        with self._new_line:
            if not self._new_line.wait_for(lambda: any(text in line for line in self.output), timeout):
                raise TimeoutError(f"no {text!r} in the output of {self.proc.args}: {''.join(self.output)}")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)


def free_port() -> int:
    """A loopback TCP port nothing listens on (for "connection refused", and to start a service there later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def facecast_serve(role: str, *extra: str) -> Service:
    return Service([sys.executable, "-m", "facecast.cli", "serve", role, "--port", "0", *extra])


def fault_serve(mode: str, role: str, *extra: str) -> Service:
    return Service([sys.executable, str(HERE / "fault_server.py"), mode, role, *extra])


@pytest.fixture
def services() -> Iterator[list[Service]]:
    """A list to append started services to; all are killed after the test."""
    started: list[Service] = []
    yield started
    for service in started:
        service.kill()
