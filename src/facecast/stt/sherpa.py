"""sherpa-onnx speech-to-text with a model folder (``--stt sherpa:PATH``), or Moonshine base-en embedded.

sherpa-onnx (k2-fsa, Apache-2.0) runs many ASR model families on onnxruntime. The folder's files say which
(the names of sherpa-onnx's own model releases):

* streaming transducer (Zipformer, LSTM, Conformer): ``encoder*.onnx``, ``decoder*.onnx``, ``joiner*.onnx``
  and ``tokens.txt``: decoded as the audio arrives, with partial transcripts (``int8`` files preferred);
* Moonshine v2: ``encoder_model.ort|onnx``, ``decoder_model_merged.ort|onnx``, ``tokens.txt``;
* Moonshine v1: ``preprocess.onnx``, ``encode*.onnx``, ``uncached_decode*.onnx``, ``cached_decode*.onnx``,
  ``tokens.txt``;
* Whisper: ``*encoder*.onnx``, ``*decoder*.onnx``, ``*tokens.txt``.

The non-streaming families collect the utterance and decode it once when the input ends (final only).

``--stt sherpa`` without a path runs Moonshine base-en (MIT) from the ``moonshine-cpp`` package, the one
English ASR model for sherpa-onnx found inside a package: its ONNX Runtime files are used where they are
installed, and sherpa-onnx's ``tokens.txt`` (each token's bytes in base64) is written once into the Facecast
cache from the package's ``tokenizer.bin``. No streaming (transducer) weights ship in any package, so the
streaming path was run here only with a stand-in recogniser in the tests, never with a real model.

Needs the ``sherpa`` extra (``pip install 'facecast[sherpa]'``: sherpa-onnx and moonshine-cpp).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from ..aio import aclose
from ..errors import ConfigError, InputError, ServiceError
from ..modelcache import Part, cache_root, package_file
from ..types import AudioChunk, Float32Array, Transcript
from .input16k import RATE, To16k

__all__ = ["SherpaOptions", "SherpaSTT", "ModelLayout", "detect_layout", "moonshine_base_en", "read_tokenizer_bin"]

INSTALL = "pip install 'facecast[sherpa]'"
MAX_SECONDS = 60.0
"""The longest utterance a non-streaming model accepts (its audio is held until the input ends)."""

_SILENCE = 1e-4  # peak below which a non-streaming utterance is digital silence (Moonshine invents words there)
_TAIL = RATE * 3 // 10  # silence fed to a streaming model at the end, so its last word can finish
T = TypeVar("T")
Kind = Literal["transducer", "moonshine2", "moonshine", "whisper"]


@dataclass(frozen=True, slots=True)
class SherpaOptions:
    """Options of :class:`SherpaSTT` (``[stt.sherpa]``, ``FACECAST_STT_SHERPA_*``).

    ``model``: a sherpa-onnx model folder (``--stt sherpa:PATH`` sets it); empty: Moonshine base-en from
    ``moonshine-cpp``. ``language``: for Whisper models (``en``; empty detects). ``threads``: onnxruntime
    threads per decode. ``workers``: utterances decoded at the same time.
    """

    model: str = ""
    language: str = "en"
    threads: int = 2
    workers: int = 1

    def __post_init__(self) -> None:
        if self.threads < 1 or self.workers < 1:
            raise ConfigError("sherpa threads and workers must be at least 1")


@dataclass(frozen=True, slots=True)
class ModelLayout:
    """A recognised model folder: its family and the files sherpa-onnx is given."""

    kind: Kind
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def streaming(self) -> bool:
        return self.kind == "transducer"


def _pick(folder: Path, pattern: str) -> Path | None:
    found = sorted(p for p in folder.glob(pattern) if p.is_file())
    int8 = [p for p in found if "int8" in p.name]
    best = int8 or found
    return best[0] if best else None


def detect_layout(folder: str | Path) -> ModelLayout:
    """Which model family ``folder`` holds (see the module docstring); raises :class:`ConfigError` for a
    missing folder or one whose files match none."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"sherpa-onnx model folder not found: {folder}")
    tokens = path / "tokens.txt"
    if tokens.is_file():
        parts = {n: _pick(path, f"{n}*.onnx") for n in ("encoder", "decoder", "joiner")}
        if all(parts.values()):
            return ModelLayout("transducer", {**{k: v for k, v in parts.items() if v}, "tokens": tokens})
        enc = _pick(path, "encoder_model.ort") or _pick(path, "encoder_model*.onnx")
        dec = _pick(path, "decoder_model_merged.ort") or _pick(path, "decoder_model_merged*.onnx")
        if enc and dec:
            return ModelLayout("moonshine2", {"encoder": enc, "decoder": dec, "tokens": tokens})
        v1 = {
            "preprocessor": _pick(path, "preprocess*.onnx"),
            "encoder": _pick(path, "encode*.onnx"),
            "uncached_decoder": _pick(path, "uncached_decode*.onnx"),
            "cached_decoder": _pick(path, "cached_decode*.onnx"),
        }
        if all(v1.values()):
            return ModelLayout("moonshine", {**{k: v for k, v in v1.items() if v}, "tokens": tokens})
    wtokens = _pick(path, "*tokens.txt")
    wenc, wdec = _pick(path, "*encoder*.onnx"), _pick(path, "*decoder*.onnx")
    if wtokens and wenc and wdec:
        return ModelLayout("whisper", {"encoder": wenc, "decoder": wdec, "tokens": wtokens})
    raise ConfigError(
        f"{folder} holds no model sherpa-onnx can run here: expected a streaming transducer (encoder/decoder/"
        "joiner *.onnx + tokens.txt), Moonshine (encoder_model + decoder_model_merged + tokens.txt) or Whisper "
        "(*encoder*.onnx + *decoder*.onnx + *tokens.txt)"
    )


# -- the embedded Moonshine base-en ---------------------------------------------------------------------------
_MOONSHINE = "moonshine-cpp"
_MOONSHINE_INSTALL = "pip install moonshine-cpp (or: pip install 'facecast[sherpa]')"


def read_tokenizer_bin(data: bytes) -> list[bytes]:
    """Moonshine's ``tokenizer.bin``: each token's bytes after its length (one byte, or two when the first
    has its high bit set: low 7 bits + 128 x the second). Raises :class:`ConfigError` when truncated."""
    tokens: list[bytes] = []
    i = 0
    while i < len(data):
        size = data[i]
        i += 1
        if size >= 128:
            if i >= len(data):
                raise ConfigError("moonshine tokenizer.bin is truncated")
            size = (size & 0x7F) + (data[i] << 7)
            i += 1
        if i + size > len(data):
            raise ConfigError("moonshine tokenizer.bin is truncated")
        tokens.append(data[i : i + size])
        i += size
    return tokens


def moonshine_base_en() -> ModelLayout:
    """The Moonshine base-en layout from the installed ``moonshine-cpp`` (its ``tokens.txt`` written once
    into the cache). Raises :class:`ConfigError` naming the package when it is missing."""
    encoder = package_file(Part(_MOONSHINE, "moonshine_cpp/models/base-en/encoder_model.ort"), _MOONSHINE_INSTALL)
    decoder = package_file(
        Part(_MOONSHINE, "moonshine_cpp/models/base-en/decoder_model_merged.ort"), _MOONSHINE_INSTALL
    )
    tokenizer = package_file(Part(_MOONSHINE, "moonshine_cpp/models/base-en/tokenizer.bin"), _MOONSHINE_INSTALL)
    tokens = cache_root() / "moonshine-base-en-sherpa" / "tokens.txt"
    if not tokens.is_file() or tokens.stat().st_mtime < tokenizer.stat().st_mtime:
        lines = [
            f"{base64.b64encode(tok).decode('ascii')} {i}\n"
            for i, tok in enumerate(read_tokenizer_bin(tokenizer.read_bytes()))
        ]
        tokens.parent.mkdir(parents=True, exist_ok=True)
        partial = tokens.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text("".join(lines), encoding="ascii")
        os.replace(partial, tokens)  # atomic: a concurrent reader sees the old file or the whole new one
    return ModelLayout("moonshine2", {"encoder": encoder, "decoder": decoder, "tokens": tokens})


def _build(layout: ModelLayout, options: SherpaOptions) -> Any:
    """Worker thread: the sherpa-onnx recogniser for ``layout``."""
    import sherpa_onnx

    f = {k: str(v) for k, v in layout.files.items()}
    n = options.threads
    if layout.kind == "transducer":
        return sherpa_onnx.OnlineRecognizer.from_transducer(
            tokens=f["tokens"], encoder=f["encoder"], decoder=f["decoder"], joiner=f["joiner"], num_threads=n
        )
    if layout.kind == "moonshine2":
        return sherpa_onnx.OfflineRecognizer.from_moonshine_v2(
            encoder=f["encoder"], decoder=f["decoder"], tokens=f["tokens"], num_threads=n
        )
    if layout.kind == "moonshine":
        return sherpa_onnx.OfflineRecognizer.from_moonshine(
            preprocessor=f["preprocessor"],
            encoder=f["encoder"],
            uncached_decoder=f["uncached_decoder"],
            cached_decoder=f["cached_decoder"],
            tokens=f["tokens"],
            num_threads=n,
        )
    return sherpa_onnx.OfflineRecognizer.from_whisper(
        encoder=f["encoder"], decoder=f["decoder"], tokens=f["tokens"], language=options.language, num_threads=n
    )


class SherpaSTT:
    """sherpa-onnx speech-to-text; implements :class:`facecast.roles.SpeechToText`.

    Construction checks that sherpa-onnx is installed and finds the model's files (:class:`ConfigError`
    naming the extra, the package or the folder) but loads nothing; the first utterance, or :meth:`load` /
    :meth:`warm_up`, loads the model. Streaming models yield partials; the others one final per utterance.
    """

    def __init__(self, options: SherpaOptions | None = None) -> None:
        self._options = opts = options or SherpaOptions()
        try:
            import sherpa_onnx  # noqa: F401 - checked here so that a missing extra is a startup error
        except ImportError as exc:
            raise ConfigError(f"--stt sherpa needs sherpa-onnx: {INSTALL}") from exc
        self.layout = detect_layout(opts.model) if opts.model else moonshine_base_en()
        self._lock = threading.Lock()
        self._recognizer: Any = None
        self._executor = concurrent.futures.ThreadPoolExecutor(opts.workers, thread_name_prefix="facecast-sherpa")
        weakref.finalize(self, self._executor.shutdown, wait=False, cancel_futures=True)

    @property
    def options(self) -> SherpaOptions:
        return self._options

    def __repr__(self) -> str:
        where = self._options.model or "moonshine-cpp base-en"
        return f"SherpaSTT({self.layout.kind}, {where}, loaded={self._recognizer is not None})"

    def load(self) -> Any:
        """Load the model now (blocking) and return the recogniser. Raises :class:`ConfigError` when
        sherpa-onnx cannot load the files."""
        with self._lock:
            if self._recognizer is None:
                try:
                    self._recognizer = _build(self.layout, self._options)
                except (RuntimeError, ValueError, OSError) as exc:
                    raise ConfigError(f"sherpa-onnx cannot load the {self.layout.kind} model: {exc}") from exc
            return self._recognizer

    async def warm_up(self) -> None:
        """:meth:`load` off the event loop."""
        await self._run(self.load)

    def close(self) -> None:
        """Stop the worker threads once the decodes in flight finish."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._executor, fn, *args)
        except RuntimeError as exc:
            raise ServiceError("this SherpaSTT has been closed") from exc
        return await future

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Decode ``audio``: a streaming model yields partials as they change, then exactly one final; the
        others yield the final once the input has ended.

        Chunks may have any rate from 1 kHz to 384 kHz (one rate per stream), mono or frames x channels.
        Raises :class:`InputError` for audio it cannot use (or, for a non-streaming model, longer than
        :data:`MAX_SECONDS`), :class:`ConfigError` for a model that does not load, and :class:`ServiceError`
        if sherpa-onnx fails while decoding. Closing the iterator closes ``audio``.
        """
        source = aiter(audio)
        try:
            if self.layout.streaming:
                async for result in self._stream(source):
                    yield result
            else:
                pcm = await self._collect(source)
                text = await self._run(self._decode_whole, pcm) if len(pcm) else ""
                yield Transcript(text, True)
        finally:
            await aclose(source)

    async def _collect(self, source: AsyncIterator[AudioChunk]) -> Float32Array:
        convert = To16k()
        parts: list[Float32Array] = []
        async for chunk in source:
            parts.append(convert.process(chunk))
            if convert.samples > MAX_SECONDS * RATE:
                raise InputError(f"utterance longer than the {MAX_SECONDS:g} s this sherpa-onnx model accepts")
        if not convert.rate:
            return np.zeros(0, np.float32)
        parts.append(convert.flush())
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _decode_whole(self, pcm: Float32Array) -> str:
        """Worker thread: one non-streaming decode of 16 kHz ``pcm``."""
        recognizer = self.load()
        if float(np.max(np.abs(pcm))) < _SILENCE:
            return ""
        try:
            stream = recognizer.create_stream()
            stream.accept_waveform(RATE, pcm)
            recognizer.decode_stream(stream)
            return str(stream.result.text).strip()
        except Exception as exc:  # onnxruntime failures: the service failed, not the caller
            raise ServiceError(f"sherpa-onnx failed while decoding: {exc!r}") from exc

    async def _stream(self, source: AsyncIterator[AudioChunk]) -> AsyncIterator[Transcript]:
        convert = To16k()
        state: _Online | None = None
        said = ""
        async for chunk in source:
            pcm = convert.process(chunk)
            if not len(pcm):
                continue
            if state is None:
                state = await self._run(lambda: _Online(self.load()))
            text = await self._run(state.feed, pcm)
            if text and text != said:
                said = text
                yield Transcript(text, False)
        final = ""
        if state is not None:
            final = await self._run(state.finish, convert.flush())
        yield Transcript(final, True)


class _Online:
    """One utterance on a streaming recogniser (used on worker threads, one call at a time)."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.stream = recognizer.create_stream()

    def _decode(self) -> str:
        try:
            while self.recognizer.is_ready(self.stream):
                self.recognizer.decode_stream(self.stream)
            result = self.recognizer.get_result(self.stream)
        except Exception as exc:
            raise ServiceError(f"sherpa-onnx failed while decoding: {exc!r}") from exc
        return str(getattr(result, "text", result)).strip()

    def feed(self, pcm: Float32Array) -> str:
        self.stream.accept_waveform(RATE, pcm)
        return self._decode()

    def finish(self, tail: Float32Array) -> str:
        self.stream.accept_waveform(RATE, np.concatenate([tail, np.zeros(_TAIL, np.float32)]))
        self.stream.input_finished()
        return self._decode()
