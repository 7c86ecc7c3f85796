"""Providers side by side: time to first audio per text-to-speech path, time to the final transcript per
speech-to-text path, and the cost each cloud adapter adds per message.

Local providers (espeak, piper, hibari, kokoro, whisper, pocketsphinx) are measured in-process. The cloud
and OpenAI-compatible paths cannot reach their services from here: they are measured against the local
servers in the repository's ``tests/servers`` that implement each documented protocol (labelled "protocol
server" in the tables). Those servers synthesise with the local Piper voice and recognise with
pocketsphinx or Whisper, so their rows measure the adapter, the socket and the local engine behind it,
never the service's own latency.

The adapter's own cost ("per-hop"): for each message a cloud client receives, the time from the parsed
frame (:func:`facecast.tts.cloudws.receive_json` returning) to the :class:`~facecast.types.SpeechChunk` (or
transcript) it yields, including base64 decoding, alignment, word hold-back and grapheme-to-phoneme
timing. That is what Facecast adds over a raw client that only receives and parses the frames.

The protocol servers live in the source checkout (``tests/servers``); an installed package without it
reports those rows as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..roles import SpeechToText, TextToSpeech
from ..types import AudioChunk
from .report import Table, percentiles

__all__ = ["provider_tables", "SENTENCE"]

SENTENCE = "Hello there, traveller. The harbour is just past the market."
KEY = "bench-key"
REPO = Path(__file__).resolve().parents[3]


def _servers_available() -> bool:
    """True when the repository's protocol servers can be imported (a source checkout)."""
    if not (REPO / "tests" / "servers" / "elevenlabs_server.py").is_file():
        return False
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return True


async def _first_audio(tts: TextToSpeech, text: str) -> float:
    """Milliseconds from the call to the first audio sample of ``text`` (the rest is drained)."""
    start = time.perf_counter()
    first = 0.0
    async for chunk in tts.synthesize(text):
        if not first and len(chunk.audio.pcm):
            first = (time.perf_counter() - start) * 1e3
    return first


async def _tts_row(table: Table, label: str, where: str, tts: TextToSpeech, runs: int, raw: dict[str, Any]) -> None:
    await _first_audio(tts, "Warm up.")  # models loaded, caches warm, sockets known
    times = [await _first_audio(tts, SENTENCE) for _ in range(runs)]
    table.add(label, where, *percentiles(times), runs)
    raw[label] = {"where": where, "first_audio_ms": times}


async def _final_after_end(stt: SpeechToText, pcm: np.ndarray, rate: int) -> float:
    """Milliseconds from the end of the input (streamed in 20 ms chunks in real time, as a microphone) to the
    final transcript."""
    step = rate // 50
    ended = 0.0

    async def feed() -> AsyncIterator[AudioChunk]:
        nonlocal ended
        start = time.perf_counter()
        for offset in range(0, len(pcm), step):
            yield AudioChunk(pcm[offset : offset + step], rate, offset)
            await asyncio.sleep(max(0.0, start + (offset + step) / rate - time.perf_counter()))
        ended = time.perf_counter()

    final = 0.0
    async for transcript in stt.transcribe(feed()):
        if transcript.final:
            final = time.perf_counter()
    return (final - ended) * 1e3


async def _stt_row(
    table: Table, label: str, where: str, stt: SpeechToText, clip: np.ndarray, runs: int, raw: dict[str, Any]
) -> None:
    await _final_after_end(stt, clip, 16000)
    times = [await _final_after_end(stt, clip, 16000) for _ in range(runs)]
    table.add(label, where, *percentiles(times), runs)
    raw[label] = {"where": where, "final_after_end_ms": times}


@contextlib.contextmanager
def _frame_clock(module: Any) -> Any:
    """Patch ``module.receive_json`` so that each parsed frame's time is recorded; yields the list of times."""
    marks: list[float] = []
    original = module.receive_json

    async def timed(*args: Any, **kwargs: Any) -> Any:
        frame = await original(*args, **kwargs)
        marks.append(time.perf_counter())
        return frame

    module.receive_json = timed
    try:
        yield marks
    finally:
        module.receive_json = original


async def _per_hop(module: Any, make: Callable[[], TextToSpeech], runs: int) -> list[float]:
    """For every chunk yielded by the TTS ``make()`` builds (a client of ``module``), the milliseconds since
    the latest frame it had received: the adapter's own work on that frame."""
    hops: list[float] = []
    with _frame_clock(module) as marks:
        for _ in range(runs):
            tts = make()
            marks.clear()
            async for _chunk in tts.synthesize(SENTENCE):
                now = time.perf_counter()
                if marks:
                    hops.append((now - marks[-1]) * 1e3)
    return hops


def _clip() -> np.ndarray:
    """A short real recording (16 kHz) for the speech-to-text rows."""
    from ..audio import read_audio, resample
    from ..speechdata import clips

    for clip in clips("read"):
        pcm, rate = read_audio(clip.path)
        if 2.0 <= len(pcm) / rate <= 6.0:
            return resample(pcm, rate, 16000)
    raise RuntimeError("no read-speech clip of 2-6 s in facecast.speechdata")


async def provider_tables(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """Measure every provider path that runs here (see the module docstring); ``quick``: 3 runs each."""
    runs = 3 if quick else 10
    raw: dict[str, Any] = {"tts": {}, "stt": {}, "per_hop": {}}
    tts_table = Table(
        "Time to first audio per text-to-speech provider (one sentence, ms)",
        ["provider", "where", "p50", "p95", "p99", "runs"],
        note="Protocol-server rows run the provider's real client against a local implementation of the "
        "service's documented protocol (tests/servers), which synthesises the whole sentence with the local "
        "Piper voice before sending: they measure the client path, not the service.",
    )
    from ..services import make_tts

    for name in ("espeak", "piper", "hibari"):
        await _tts_row(tts_table, name, "in-process", make_tts(name), runs, raw["tts"])
    with contextlib.suppress(Exception):  # the kokoro extra may be missing
        kokoro = make_tts("kokoro")
        await _tts_row(tts_table, "kokoro", "in-process", kokoro, max(2, runs // 3), raw["tts"])

    stt_table = Table(
        "Final transcript after the end of the input per speech-to-text provider (real speech, ms)",
        ["provider", "where", "p50", "p95", "p99", "runs"],
        note="The clip (real read speech, 2-6 s) is fed in 20 ms chunks in real time; the time is from the "
        "last chunk to the final transcript. Protocol-server rows as above (the Deepgram server recognises with "
        "pocketsphinx; the OpenAI-compatible one with Whisper base).",
    )
    from ..services import make_stt

    clip = _clip()
    for name in ("pocketsphinx", "whisper"):
        await _stt_row(stt_table, name, "in-process", make_stt(name), clip, runs, raw["stt"])

    hop_table = Table(
        "What each cloud adapter adds per message (frame parsed -> chunk yielded, ms)",
        ["adapter", "p50", "p99", "max", "messages"],
        note="Includes base64 decoding, alignment parsing, holding audio until its words are known and the "
        "grapheme-to-phoneme timing of the words (espeak-ng, cached per word). Target: < 1 ms p99.",
    )
    if not _servers_available():
        tts_table.note += " Protocol-server rows skipped: run from a source checkout (tests/servers)."
        return [tts_table, stt_table, hop_table], raw
    await _protocol_rows(tts_table, stt_table, hop_table, clip, runs, raw)
    return [tts_table, stt_table, hop_table], raw


async def _protocol_rows(
    tts_table: Table, stt_table: Table, hop_table: Table, clip: np.ndarray, runs: int, raw: dict[str, Any]
) -> None:
    from tests.servers.cartesia_server import CartesiaServer
    from tests.servers.deepgram_server import DeepgramServer, DeepgramServerConfig
    from tests.servers.elevenlabs_server import ElevenLabsServer
    from tests.servers.process import AudioServer

    from ..stt.deepgram import DeepgramOptions, DeepgramSTT
    from ..stt.openai_stt import OpenAISTT, OpenAISTTOptions
    from ..tts import cartesia, elevenlabs
    from ..tts.aligned import EspeakG2P, WordTimedTTS
    from ..tts.openai_tts import OpenAITTS, OpenAITTSOptions

    g2p = EspeakG2P()
    async with ElevenLabsServer(key=KEY) as server:

        def make_el() -> TextToSpeech:
            opts = elevenlabs.ElevenLabsOptions(api_key=KEY, base_url=server.url)
            return WordTimedTTS(elevenlabs.ElevenLabsTTS(opts), g2p)

        await _tts_row(tts_table, "elevenlabs", "protocol server", make_el(), runs, raw["tts"])
        hops = await _per_hop(elevenlabs, make_el, runs)
    _hop_row(hop_table, "elevenlabs (character alignment)", hops, raw)
    async with CartesiaServer(key=KEY) as ca_server:

        def make_ca() -> TextToSpeech:
            opts = cartesia.CartesiaOptions(api_key=KEY, base_url=ca_server.url)
            return WordTimedTTS(cartesia.CartesiaTTS(opts), g2p)

        await _tts_row(tts_table, "cartesia", "protocol server", make_ca(), runs, raw["tts"])
        hops = await _per_hop(cartesia, make_ca, runs)
    _hop_row(hop_table, "cartesia (word timestamps)", hops, raw)

    audio = await asyncio.to_thread(AudioServer, KEY)
    try:
        tts = OpenAITTS(OpenAITTSOptions(base_url=audio.url, api_key=KEY))
        await _tts_row(tts_table, "openai (OpenAI-compatible)", "test server (hibari)", tts, runs, raw["tts"])
        stt = OpenAISTT(OpenAISTTOptions(base_url=audio.url, api_key=KEY))
        await _stt_row(stt_table, "openai (OpenAI-compatible)", "test server (whisper)", stt, clip, runs, raw["stt"])
    finally:
        await asyncio.to_thread(audio.stop)

    deepgram = DeepgramServer(DeepgramServerConfig(api_key=KEY))
    await deepgram.start()
    try:
        dg = DeepgramSTT(DeepgramOptions(api_key=KEY, base_url=deepgram.url))
        await _stt_row(stt_table, "deepgram", "protocol server (pocketsphinx)", dg, clip, runs, raw["stt"])
    finally:
        await deepgram.stop()


def _hop_row(table: Table, label: str, hops: Sequence[float], raw: dict[str, Any]) -> None:
    p50, p99 = percentiles(hops, (50, 99))
    table.add(label, p50, p99, max(hops) if hops else float("nan"), len(hops))
    raw["per_hop"][label] = list(hops)
