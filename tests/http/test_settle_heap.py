"""``facecast run`` hides its startup heap from the garbage collector before it serves (:func:`settle_heap`).
Found by the soak (``facecast bench --soak``): a full collection walked ~100k startup objects (~65 ms) with
the event loop waiting, and the only late audio of a 10-minute run came in bursts across sessions at once."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json, sys
import uvicorn
from facecast.config import Settings
from facecast import server

def run(self, sockets=None):  # instead of serving: what the collector still walks
    print(json.dumps({"frozen": gc.get_freeze_count(), "walked": len(gc.get_objects())}))
    sys.exit(0)

uvicorn.Server.run = run
settings = Settings(stt="pocketsphinx", llm="echo", tts="espeak", face="phonetic", livelink=("off",), port=0)
server._serve_on(settings, [])
"""


def test_the_server_freezes_what_startup_built_before_it_serves() -> None:
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["frozen"] > 50_000  # modules, models and the app
    assert seen["walked"] < seen["frozen"] / 10  # a full collection walks a small fraction of it
