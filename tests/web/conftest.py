"""The browser kit of the page tests: real headless Chromium (Debian's, driven by Playwright) against a real
server, with Chromium's fake microphone playing an espeak-generated WAV file (Chromium loops the file).

Skipped when ``/usr/bin/chromium`` or the ``playwright`` package is missing, unless
``FACECAST_REQUIRE_BROWSER=1`` (CI), which turns a missing browser into a failure. Never run
``playwright install``: the tests use the system's Chromium.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.audio import write_wav
from facecast.config import Settings
from facecast.face.phonetic import PhoneticAnimator
from facecast.llm.echo import EchoLLM
from facecast.server import BackgroundServer
from facecast.services import Services, make_stt
from facecast.tts.espeak import EspeakTTS

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
QUESTION = "What is your name?"
LEAD_SILENCE_S = 0.6
TAIL_SILENCE_S = 8.0
LONG_TEXT = (
    "Tell me a long story about a lighthouse keeper who walks along the cliffs every evening, counting the "
    "ships that pass, and writing their names in a little blue book before the sun goes down."
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
]


def require_browser() -> None:
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[test]')"
    if problem is not None:
        if os.environ.get("FACECAST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests required (FACECAST_REQUIRE_BROWSER=1) but {problem}")
        pytest.skip(f"browser tests need Chromium and Playwright: {problem}")


@dataclass
class Question:
    """A WAV file for Chromium's fake microphone (its capture starts the file when the page opens the mic)."""

    path: Path
    speech_s: float
    """Seconds of the first speech, after ``lead_s`` of silence."""
    lead_s: float = LEAD_SILENCE_S
    spans: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) seconds of each spoken part in the file."""


def mic_file(path: Path, parts: Sequence[float | str]) -> Question:
    """A microphone WAV of ``parts``: a number is that many seconds of silence, a string is spoken (espeak)."""

    async def synthesize(text: str) -> tuple[np.ndarray, int]:
        tts = EspeakTTS(end_pause=False)
        chunks = [chunk.audio.pcm async for chunk in tts.synthesize(text)]
        return np.concatenate(chunks), tts.sample_rate

    rate = EspeakTTS(end_pause=False).sample_rate
    pieces: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for part in parts:
        if isinstance(part, str):
            speech, rate = asyncio.run(synthesize(part))
            pieces.append(0.8 * speech / np.abs(speech).max())
            spans.append((at / rate, (at + len(speech)) / rate))
        else:
            pieces.append(np.zeros(int(part * rate), np.float32))
        at += len(pieces[-1])
    write_wav(path, np.concatenate(pieces), rate)
    (start, end), *_ = spans
    return Question(path, end - start, start, spans)


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> Question:
    """The player asks QUESTION after LEAD_SILENCE_S, then stays silent for TAIL_SILENCE_S."""
    require_browser()
    return mic_file(tmp_path_factory.mktemp("mic") / "question.wav", [LEAD_SILENCE_S, QUESTION, TAIL_SILENCE_S])


def light_services() -> Services:
    return Services(make_stt("pocketsphinx"), EchoLLM(), EspeakTTS(), PhoneticAnimator())


def light_settings(**changes: Any) -> Settings:
    return replace(Settings(**LIGHT), livelink=("off",), **changes)


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    async with BackgroundServer(light_settings(), light_services()) as running:
        yield running


@asynccontextmanager
async def chromium(question: Question, *, grant_microphone: bool = True) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={question.path}"]
    if grant_microphone:
        args.append("--use-fake-ui-for-media-stream")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class PageUnderTest:
    page: Page
    console: list[str] = field(default_factory=list)

    async def state(self, expression: str) -> Any:
        return await self.page.evaluate(f"(() => {{ {expression} }})()")

    async def wait(self, condition: str, timeout_s: float = 20.0) -> None:
        await self.page.wait_for_function(condition, timeout=timeout_s * 1000)

    def errors(self, allowed: Callable[[str], bool] = lambda _: False) -> list[str]:
        return [m for m in self.console if not allowed(m)]


async def open_page(browser: Browser, url: str, viewport: tuple[int, int] = (1200, 760)) -> PageUnderTest:
    """A fresh page (its own context: nothing stored by an earlier page) with the client loaded."""
    page = await browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
    out = PageUnderTest(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            out.console.append(f"{message.type}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: out.console.append(f"pageerror: {exc}"))
    await page.goto(url)
    await out.wait("window.facecast && window.facecast.ready")
    return out


async def start_sampling(p: PageUnderTest) -> None:
    """Record (time, mouth openness, face source, speaking) every 20 ms inside the page."""
    await p.page.evaluate("""() => {
        window.__samples = [];
        setInterval(() => window.__samples.push({
            t: performance.now(), mouth: facecast.mouthOpen, source: facecast.faceSource,
            playing: facecast.acks.length > 0 && facecast.acks.at(-1).type === "playback_started" }), 20);
    }""")


def save_artifact(name: str, data: bytes | str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def check_utterance_played(u: dict[str, Any]) -> None:
    """The page's audio clock ran over all of the utterance's audio, and it reported the position reached."""
    assert u["started"] and not u["interrupted"]
    assert u["samples"] == u["expectedSamples"] > 0
    assert u["position"] == u["samples"]
    duration = u["samples"] / u["rate"]
    assert u["endTime"] - u["startTime"] >= duration - 0.005, (u, duration)


def check_acks_before_face(log: list[dict[str, Any]], utterance: int) -> int:
    """playback_started for `utterance` was sent before its first face frame arrived; returns the frame count."""
    ack = next(
        i
        for i, e in enumerate(log)
        if e["dir"] == "out" and e["type"] == "playback_started" and e["utterance"] == utterance
    )
    first_audio = next(i for i, e in enumerate(log) if e["type"] == "audio" and e["utterance"] == utterance)
    faces = [i for i, e in enumerate(log) if e["type"] == "face" and e["utterance"] == utterance]
    assert faces, "no face frames arrived"
    assert first_audio < ack < faces[0]
    return sum(log[i]["count"] for i in faces)
