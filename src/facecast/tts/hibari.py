"""A neural voice with exact phoneme timing: hibari (``hibari-tts``, Apache-2.0), distilled from Kokoro-82M.

The ``heart`` voice (American English, female, 24 kHz) ships inside the wheel; nothing is downloaded. Text
goes through hibari's own misaki G2P (no espeak-ng), one sentence per model call. The model predicts one
duration per input symbol (in units of 600 samples, 25 ms) and renders exactly that many units of audio;
the graph's duration tensor (``/Clip_output_0``) is exposed as an extra output by patching the model's bytes
in memory (:func:`expose_output`), so audio and timing come from ONE inference.

Timing contract of :meth:`HibariTTS.synthesize` (sample positions from 0 for each call):

* Phonemes (alphabet ``misaki``: ``b``, ``ɑ``, ``A``, ``ʤ``...) tile the audio exactly: the durations of the
  model's symbols sum to the audio length, and each symbol's span is given to a phoneme: stress marks
  (``ˈ ˌ``) to the vowel they precede, length marks to the phoneme before, a space between two words half to
  each neighbour, the start and end padding and punctuation to pause phonemes (``_`` for padding, the
  punctuation character otherwise; consecutive pauses merge). The silence the model puts before each
  sentence is trimmed to ``lead_in_ms``.
* Words are the G2P's tokens in their spoken form (``$5`` is ``five dollars``), spanning their phonemes.
* Chunks are about ``chunk_ms`` long and carry the phonemes and words that START inside them; a sentence's
  first chunk is yielded as soon as that sentence is synthesised (the next sentence is synthesised while the
  consumer handles this one).

The model runs on one worker thread per process (requests queue there). Closing the iterator cancels the
sentences not started; the one being synthesised (tens of milliseconds) finishes first.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..aio import closing
from ..errors import InputError
from ..types import SpeechChunk
from .neural import (
    Item,
    Rendered,
    Worker,
    check_options,
    clean_text,
    expose_output,
    joined,
    misaki_pieces,
    require,
    session,
    tile,
    timed,
)

__all__ = ["HibariOptions", "HibariTTS", "SAMPLE_RATE", "MAX_TEXT_CHARS", "VOICES", "expose_output", "tile"]

SAMPLE_RATE = 24000
"""The rate of every chunk (the model's)."""
MAX_TEXT_CHARS = 20_000
"""Longest text one :meth:`HibariTTS.synthesize` call accepts."""
VOICES = ("heart",)
"""The voices inside the ``hibari-tts`` wheel (its other voices download on first use, which Facecast never does)."""

_UNIT = 600  # samples per duration unit
_DURATIONS = "/Clip_output_0"
_INSTALL = "pip install hibari-tts"


# ------------------------------------------------------------------------------------------------ hibari


@dataclass(frozen=True, slots=True)
class HibariOptions:
    """Settings of :class:`HibariTTS`.

    ``voice``: one of :data:`VOICES`. ``speed``: 0.5 (slow) to 2.0 (fast), 1.0 is the teacher voice's pace.
    ``threads``: onnxruntime threads (1 is plenty: the model runs ~50x faster than real time).
    ``lead_in_ms``: at most this much of the model's silence before each sentence is kept (it makes ~375 ms).
    ``chunk_ms``: audio per chunk. ``seed``: fixes the noise component so repeated calls sound identical.
    """

    voice: str = "heart"
    speed: float = 1.0
    threads: int = 1
    lead_in_ms: int = 100
    chunk_ms: int = 150
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.voice not in VOICES:
            raise InputError(
                f"unknown hibari voice {self.voice!r}: only {', '.join(VOICES)} ships inside the hibari-tts "
                "package (its other voices are downloads, which Facecast does not do)"
            )
        check_options(self.speed, self.threads, self.lead_in_ms, self.chunk_ms)


class _Engine:
    """hibari's G2P and the patched model; used only on the worker thread."""

    def __init__(self, threads: int) -> None:
        from hibari import voices
        from hibari.g2p import G2P

        assets = Path(voices.ASSETS)
        self.session = session(Path(voices.voice_path("heart", download_missing=False)), _DURATIONS, threads)
        self.vocab: dict[str, int] = json.loads((assets / "vocab.json").read_text(encoding="utf-8"))
        self.g2p = G2P(british=False)

    def pieces(self, sentence: str) -> list[tuple[list[Item], list[str]]]:
        """The model inputs of one sentence: (items, word texts), split at clauses when it is too long."""
        from hibari.g2p.normalize import normalize
        from hibari.tts import MAX_PHONEMES

        tokens = self.g2p.phonemize_tokens(self.g2p.tokenize(normalize(sentence)))
        return misaki_pieces(tokens, self.vocab, MAX_PHONEMES)

    def render(self, items: list[Item], words: list[str], options: HibariOptions) -> Rendered:
        from hibari import dsp

        ids = [0, *(self.vocab[symbol] for _, symbol, _ in items), 0]
        feeds = {"ids": np.asarray([ids], np.int64), "speed": np.asarray([options.speed], np.float32)}
        outputs = self.session.run(None, feeds)
        pcm = np.asarray(dsp.synth(*(o[0] for o in outputs[:6]), np.random.default_rng(options.seed)), np.float32)
        keep = options.lead_in_ms * SAMPLE_RATE // 1000
        return timed("hibari", pcm, outputs[-1], _UNIT, items, words, keep)


_ENGINES: dict[int, _Engine] = {}
_ENGINES_LOCK = threading.Lock()
_WORKER = Worker("hibari")


def _engine(threads: int) -> _Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get(threads)
        if engine is None:
            engine = _ENGINES[threads] = _Engine(threads)
        return engine


class HibariTTS:
    """hibari's ``heart`` voice with misaki phoneme and word timing; implements :class:`~facecast.roles.TextToSpeech`.

    Raises :class:`ConfigError` when ``hibari-tts`` is not installed and :class:`InputError` for bad options.
    Construction is cheap; the model and G2P load on the worker thread at the first request (about a second;
    call :meth:`warm_up` to do it ahead). Instances are safe to share between tasks.
    """

    def __init__(self, options: HibariOptions | None = None) -> None:
        require("hibari", _INSTALL)
        self._options = options or HibariOptions()

    @property
    def sample_rate(self) -> int:
        """24000 Hz."""
        return SAMPLE_RATE

    @property
    def options(self) -> HibariOptions:
        return self._options

    def __repr__(self) -> str:
        return f"HibariTTS({self._options!r})"

    def voices(self) -> list[str]:
        """The voices this TTS can speak with (:data:`VOICES`; ``facecast voices``)."""
        return list(VOICES)

    async def warm_up(self) -> None:
        """Load the model and the G2P now (on the worker thread), so the first request is not slowed by it."""
        threads = self._options.threads
        await asyncio.wrap_future(_WORKER.executor.submit(_engine, threads))

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` sentence by sentence (timing: module docstring).

        Raises :class:`InputError` for empty text or text over :data:`MAX_TEXT_CHARS` characters,
        :class:`ServiceError` if the model fails. Closing the iterator (or cancelling the task waiting on it)
        stops the synthesis: when ``aclose()`` returns, no work for this text remains on the worker thread.
        """
        cleaned = clean_text(text, MAX_TEXT_CHARS)
        from hibari.tts import Hibari

        options = self._options
        jobs = [functools.partial(_render_sentence, s, options) for s in Hibari.split_sentences(cleaned)]
        chunk = options.chunk_ms * SAMPLE_RATE // 1000
        # Closed explicitly (not left to the garbage collector), so that closing this stream stops the work now.
        async with closing(_WORKER.speak(jobs, SAMPLE_RATE, chunk)) as pieces:
            async for piece in pieces:
                yield piece


def _render_sentence(sentence: str, options: HibariOptions) -> Rendered:
    """One sentence (all its clause pieces) as one :class:`Rendered`, on the worker thread."""
    engine = _engine(options.threads)
    return joined([engine.render(items, words, options) for items, words in engine.pieces(sentence)])
