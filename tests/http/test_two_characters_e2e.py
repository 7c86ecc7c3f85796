"""Two characters in one real server at once, each driven by its own engine-sim process, reconnecting, with a
real Live Link receiver: each keeps its subject, and nothing else appears on the wire."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from facecast.bench.udp_receiver import subject_of

ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Receiver:
    """Live Link packets on a UDP port, counted by subject, in a thread."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.subjects: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self.sock.recv(65536)
            except TimeoutError:
                continue
            name = subject_of(packet)
            if name is not None:
                self.subjects[name] = self.subjects.get(name, 0) + 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _sim(port: int, character: str, text: str) -> subprocess.Popen[str]:
    url = f"ws://127.0.0.1:{port}/ws/engine"
    return subprocess.Popen(
        [sys.executable, "-m", "facecast.cli", "engine-sim", "--url", url, "--character", character, "--text", text],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_two_characters_talk_at_once_and_keep_their_subjects_across_reconnects(tmp_path: Path) -> None:
    receiver = _Receiver()
    port = _free_port()
    config = tmp_path / "facecast.toml"
    config.write_text(
        'stt = "pocketsphinx"\nllm = "echo"\ntts = "espeak"\nface = "phonetic"\n'
        f'livelink = ["127.0.0.1:{receiver.port}"]\nsubject_linger_s = 2\n'
        '[characters.mora]\npersona = "You are Mora."\nvoice = "en-gb"\nsubject = "Mora"\n'
        '[characters.bo]\npersona = "You are Bo."\nvoice = "en-us+m3"\nsubject = "Bo"\n'
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "facecast.cli", "run", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "FACECAST_LOG_LEVEL": "warning"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "the server did not start"
                time.sleep(0.3)
        for round_ in range(2):  # both at once; then both again: a reconnect
            sims = {name: _sim(port, name, f"Hello there, round {round_}.") for name in ("mora", "bo")}
            for name, sim in sims.items():
                out, err = sim.communicate(timeout=120)
                assert sim.returncode == 0, err
                assert f"live link subject: {name.capitalize()}\n" in out, out
                assert "character: You said: Hello there" in out and "server error" not in err
        time.sleep(0.3)
    finally:
        server.terminate()
        server.wait(timeout=30)
        receiver.close()
    assert set(receiver.subjects) == {"Mora", "Bo"}, receiver.subjects  # never Mora-2, never a default subject
    assert min(receiver.subjects.values()) > 60  # faces streamed to both, at 60 fps, for seconds
