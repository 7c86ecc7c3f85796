"""What the two realtime-model protocol servers share (tests/servers/openai_realtime_server.py and
tests/servers/gemini_live_server.py): a WebSocket server on its own thread and event loop, an "ear" that
really hears the player (an energy VAD on 10 ms frames, then PocketSphinx 5 decoding each turn as it
arrives, its en-us model from the wheel) and a "voice" that really speaks (Facecast's espeak-ng TTS,
resampled to 24 kHz PCM16). Parts of test servers, not of any service.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve

from facecast.audio import Resampler, float_to_pcm16, pcm16_to_float, resample

__all__ = ["ThreadedServer", "Ear", "Heard", "speak", "FRAME_MS"]

FRAME_MS = 10
_SPEECH_RMS = 0.01  # a 10 ms frame louder than this (about -40 dBFS) is speech
_FILLERS = {"<s>", "</s>", "<sil>", "[noise]", "<unk>"}


class ThreadedServer:
    """A ``websockets`` server on 127.0.0.1 in a thread of its own (a test's loop holds none of its tasks)."""

    name = "realtime-test-server"

    def __init__(self) -> None:
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    async def handle(self, ws: ServerConnection) -> None:
        raise NotImplementedError

    def process_request(self, ws: ServerConnection, request: Any) -> Any:
        return None

    async def start(self, port: int = 0) -> Any:
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._serve(port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        if failed:
            raise failed[0]
        return self

    async def _serve(self, port: int) -> Server:
        return await serve(
            self.handle,
            "127.0.0.1",
            port,
            process_request=self.process_request,
            ping_interval=None,
            max_size=2**24,
            compression=None,
        )

    async def stop(self) -> None:
        """Stop serving: open connections are dropped, the port refuses."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return

        async def shut() -> None:
            server.close(close_connections=False)
            for ws in list(server.connections):
                ws.transport.abort()
            await server.wait_closed()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(shut(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 10)
        self._server = self._loop = self._thread = None

    async def __aenter__(self) -> Any:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


@dataclass(frozen=True, slots=True)
class Heard:
    """One event of the ear: ``kind`` is ``started`` (speech began at ``ms``), ``stopped`` (the turn ended at
    ``ms``; ``text`` is what PocketSphinx heard)."""

    kind: str
    ms: int
    text: str = ""


class Ear:
    """Voice activity + streaming recognition of PCM16 arriving at ``rate``. :meth:`feed` returns the events
    the new audio completes. The decoder works on a thread (the server's loop stays responsive)."""

    def __init__(self, rate: int, silence_ms: int = 500, preroll_ms: int = 300) -> None:
        self.rate = rate
        self.silence_ms = silence_ms
        self.preroll_ms = preroll_ms
        self._to16k = Resampler(rate, 16000)
        self._decoder: Any = None
        self._pending = np.zeros(0, np.float32)  # 16 kHz samples not yet framed
        self._frames = 0  # 10 ms frames seen
        self._recent: list[np.ndarray] = []
        self._voiced_run = 0
        self._silent_run = 0
        self.in_speech = False

    async def _ensure(self) -> Any:
        if self._decoder is None:
            import pocketsphinx

            self._decoder = await asyncio.to_thread(pocketsphinx.Decoder, loglevel="FATAL", fwdflat=False)
        return self._decoder

    async def feed(self, pcm16: bytes) -> list[Heard]:
        decoder = await self._ensure()
        pcm = self._to16k.process(pcm16_to_float(pcm16))
        self._pending = np.concatenate([self._pending, pcm])
        events: list[Heard] = []
        speech: list[np.ndarray] = []
        while len(self._pending) >= 160:
            frame, self._pending = self._pending[:160], self._pending[160:]
            self._frames += 1
            loud = float(np.sqrt(np.mean(frame**2))) > _SPEECH_RMS
            if not self.in_speech:
                self._recent = [*self._recent, frame][-(self.preroll_ms // FRAME_MS) :]
                self._voiced_run = self._voiced_run + 1 if loud else 0
                if self._voiced_run >= 3:
                    self.in_speech = True
                    self._silent_run = 0
                    start = (self._frames - len(self._recent)) * FRAME_MS
                    events.append(Heard("started", max(0, start)))
                    await asyncio.to_thread(decoder.start_utt)
                    speech, self._recent = list(self._recent), []
                continue
            speech.append(frame)
            self._silent_run = 0 if loud else self._silent_run + 1
            if self._silent_run * FRAME_MS >= self.silence_ms:
                self.in_speech = False
                self._voiced_run = 0
                text = await asyncio.to_thread(_finish, decoder, speech)
                speech = []
                events.append(Heard("stopped", self._frames * FRAME_MS, text))
        if speech:
            await asyncio.to_thread(_process, decoder, speech)
        return events


def _process(decoder: Any, frames: list[np.ndarray]) -> None:
    decoder.process_raw(float_to_pcm16(np.concatenate(frames)), False, False)


def _finish(decoder: Any, frames: list[np.ndarray]) -> str:
    if frames:
        _process(decoder, frames)
    decoder.end_utt()
    words = [seg.word for seg in decoder.seg() if seg.word not in _FILLERS]
    return " ".join(w.split("(")[0] for w in words)


async def speak(text: str, rate: int = 24000, chunk_ms: int = 100) -> AsyncIterator[tuple[str, bytes]]:
    """``text`` spoken by espeak-ng, as (words, PCM16 at ``rate``) pieces of about ``chunk_ms``: each piece
    carries the words whose audio starts in it (the transcript delta sent with it)."""
    from facecast.tts.espeak import EspeakTTS

    tts = EspeakTTS()
    pieces: list[np.ndarray] = []
    words: list[tuple[int, str]] = []
    src_rate = tts.sample_rate
    async for chunk in tts.synthesize(text):
        pieces.append(chunk.audio.pcm)
        words.extend((w.start, w.text) for w in chunk.words)
    audio = resample(np.concatenate(pieces), src_rate, rate) if pieces else np.zeros(0, np.float32)
    step = rate * chunk_ms // 1000
    said = 0
    tokens = text.split()  # the text's own words, punctuation kept (espeak's words have none)
    if len(words) == len(tokens):
        positions = [(round(start * rate / src_rate), token) for (start, _), token in zip(words, tokens, strict=True)]
    else:
        positions = [(len(audio) * i // max(1, len(tokens)), token) for i, token in enumerate(tokens)]
    for at in range(0, max(len(audio), 1), step):
        now = [w for p, w in positions[said:] if p < at + step]
        said += len(now)
        yield (" " + " ".join(now)) if now else "", float_to_pcm16(audio[at : at + step])
    if said < len(positions):
        yield " " + " ".join(w for _, w in positions[said:]), b""


Sender = Callable[[dict[str, Any]], Awaitable[None]]
