"""Audio/face sync measured inside the browser page, over the WebSocket and over WebRTC.

Headless Chromium (the system's ``/usr/bin/chromium``, driven by Playwright; never ``playwright install``)
opens the page against the real server on loopback (light services: echo LLM, espeak, phonetic face) with
``?transport=websocket`` and ``?transport=webrtc``, and types the same sentences. The page measures, for every
face packet, its arrival against the playout of the audio sample its first frame belongs to, on the page's
own audio clock (``facecast.sync``; the WebSocket player's schedule, or for WebRTC the moment its tap heard
the utterance's onset): a packet arriving after that moment is shown late by the difference, the sync error.
For WebRTC the server also measures the playout delay: from the track handing the onset sample to the
encoder to the page's ``playback_started`` (Opus, loopback network, Chromium's jitter buffer, Web Audio).

Needs Chromium, ``playwright`` (the test extra) and ``aiortc`` (the ``webrtc`` extra); without them the
table says what is missing.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import write_wav
from ..config import Settings
from ..face.phonetic import PhoneticAnimator
from ..llm.echo import EchoLLM
from ..server import BackgroundServer
from ..services import Services, make_stt
from ..tts.espeak import EspeakTTS
from .report import Table, percentiles

__all__ = ["page_sync", "CHROMIUM"]

CHROMIUM = Path("/usr/bin/chromium")
_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
SENTENCES = (
    "The lighthouse keeper counts the ships every evening.",
    "Maybe we should buy a map before we go.",
    "I left the blue book on the kitchen table.",
)


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing"
    try:
        import aiortc  # noqa: F401
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (extras: test, webrtc)"
    return None


def _services() -> Services:
    return Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())


async def _run(transport: str, turns: int, mic: Path) -> dict[str, Any]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # checked by _missing() first
        raise RuntimeError("the page sync benchmark needs playwright (the test extra)") from exc

    settings = replace(Settings(stt="pocketsphinx", llm="echo", tts="espeak"), livelink=("off",))
    delays: list[float] = []
    async with BackgroundServer(settings, _services()) as server, async_playwright() as pw:
        args = [*_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            page = await browser.new_page()
            await page.goto(f"{server.http_url}/?transport={transport}")
            await page.wait_for_function("window.facecast && facecast.status === 'connected'", timeout=20000)
            for k in range(turns):
                await page.fill("#text", SENTENCES[k % len(SENTENCES)])
                await page.press("#text", "Enter")
                await page.wait_for_function(
                    f"facecast.utterances.filter(u => u.endTime).length >= {k + 1}", timeout=30000
                )
                if server.state.webrtc is not None:
                    for peer in server.state.webrtc.peers:
                        delays += [
                            (p.acked_at - p.onset_played_at) * 1000
                            for p in peer.track.playouts.values()
                            if p.acked_at is not None and p.onset_played_at is not None
                        ]
                        peer.track.playouts.clear()
            state: dict[str, Any] = await page.evaluate(
                "({sync: facecast.sync.map(s => s.lateMs), utterances: facecast.utterances,"
                " timing: facecast.log.filter(e => e.type === 'timing').map(e => e.stages)})"
            )
        finally:
            await browser.close()
    state["playout_delay_ms"] = delays
    return state


async def page_sync(turns: int) -> tuple[Table, dict[str, Any]]:
    """The table (one row per transport) and its raw data."""
    table = Table(
        f"Audio/face sync measured in the browser page ({turns} typed turns per row, echo LLM, loopback)",
        [
            "transport",
            "face packets",
            "late p50 ms",
            "late p99 ms",
            "late max ms",
            "packets late",
            "ack after first audio p50 ms",
            "playout delay p50 ms",
        ],
        note="Late: a face packet's arrival minus the playout of its first frame's audio sample, on the page's "
        "audio clock (0 when it came in time; the first packet of a reply waits for the playback_started round "
        "trip). Ack after first audio: the server's engine_ack - tts_first_chunk. Playout delay (WebRTC): "
        "from the reply track handing the onset sample to the encoder to the page's playback_started.",
    )
    missing = _missing()
    if missing is not None:
        table.note = f"skipped: {missing}"
        return table, {"skipped": missing}
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        mic = Path(tmp) / "silence.wav"
        write_wav(mic, np.zeros(16000 * 5, np.float32), 16000)
        for transport in ("websocket", "webrtc"):
            data = await _run(transport, turns, mic)
            late = [max(0.0, float(x)) for x in data["sync"]]
            acks = [t["engine_ack"] - t["tts_first_chunk"] for t in data["timing"] if "engine_ack" in t]
            delays = data["playout_delay_ms"]
            table.add(
                transport,
                len(late),
                *percentiles(late, (50, 99, 100)),
                f"{sum(1 for x in late if x > 0)}/{len(late)}",
                percentiles(acks, (50,))[0],
                percentiles(delays, (50,))[0] if delays else "-",
            )
            raw[transport] = data
    return table, raw
