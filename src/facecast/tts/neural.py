"""What the neural voices share: timing from a model's duration output, rendered sentences, one worker thread.

- :func:`expose_output` makes an intermediate tensor of an ONNX model (a duration predictor's output) a graph
  output by editing the serialised model in memory (no ``onnx`` package), so that audio and timing come from
  one inference; :func:`session` loads the patched model in onnxruntime.
- :func:`tile` turns per-symbol durations into :class:`~facecast.types.Phoneme` spans that tile the audio.
- :class:`Rendered` is one synthesised sentence (audio + timing), cut into chunks by :meth:`Rendered.chunks`.
- :class:`Worker` runs a voice's sentences on its own thread, in order, one sentence ahead of the consumer,
  and cancels the rest when the consumer closes the stream.
- The misaki voices (hibari, Kokoro) share :func:`misaki_pieces` (G2P tokens to model inputs),
  :func:`timed` (a model's audio and durations to a :class:`Rendered`), :func:`joined` (a sentence's clause
  pieces as one) and :func:`check_options`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
from collections import deque
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError, ServiceError
from ..types import AudioChunk, Float32Array, Phoneme, SpeechChunk, Word

__all__ = [
    "expose_output",
    "session",
    "Item",
    "tile",
    "Rendered",
    "Worker",
    "clean_text",
    "require",
    "check_options",
    "misaki_pieces",
    "timed",
    "joined",
]

# ------------------------------------------------------------------------------------------- ONNX patch


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("truncated protobuf varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def expose_output(model: bytes, tensor: str) -> bytes:
    """``model`` (a serialized ONNX ``ModelProto``) with the intermediate ``tensor`` added as a graph output.

    Pure byte surgery, no ``onnx`` package: the output (a ``ValueInfoProto`` with only a name, which
    onnxruntime types itself) is appended to the graph message (``ModelProto`` field 7, ``GraphProto.output``
    is field 12) and the graph's length prefix rewritten. Raises ``ValueError`` when ``model`` is not a
    single-graph model or does not name ``tensor``.
    """
    out = bytearray()
    position = 0
    graphs = 0
    name = tensor.encode()
    while position < len(model):
        start = position
        key, position = _read_varint(model, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _read_varint(model, position)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, body_start = _read_varint(model, position)
            position = body_start + length
            if number == 7:
                body = model[body_start:position]
                if name not in body:
                    raise ValueError(f"the model has no tensor {tensor!r}")
                out += _field(7, body + _field(12, _field(1, name)))
                graphs += 1
                continue
        else:
            raise ValueError(f"not an ONNX model (protobuf wire type {wire})")
        if position > len(model):
            raise ValueError("truncated ONNX model")
        out += model[start:position]
    if graphs != 1:
        raise ValueError(f"expected one graph in the model, found {graphs}")
    return bytes(out)


def session(model: Path, tensor: str, threads: int) -> Any:
    """An onnxruntime session of ``model`` whose extra last output is ``tensor``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        patched = expose_output(model.read_bytes(), tensor)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the voice model {model} ({exc}); reinstall its package") from exc
    session = ort.InferenceSession(patched, options, providers=["CPUExecutionProvider"])
    if session.get_outputs()[-1].name != tensor:
        raise ConfigError(f"the voice model {model} does not expose its durations ({tensor})")
    return session


# ------------------------------------------------------------------------------ timing (shared with piper)

Item = tuple[str, str, int | None]
"""A model input symbol for :func:`tile`: (kind, symbol, word index). Kinds: ``phone``; ``stress`` (its
time goes to the next phone); ``mark`` (to the previous one); ``space`` (half to each neighbour, all to a
neighbouring pause); ``pause``."""


def tile(
    items: Sequence[Item], samples: Sequence[int], alphabet: str, words: Sequence[str]
) -> tuple[list[Phoneme], list[Word]]:
    """Phonemes tiling ``sum(samples)`` samples from 0, and the words spanning them (see the module docstring).

    ``samples[i]`` is the length of ``items[i]``; ``words`` are the texts the word indices point to. Pauses
    are ``_`` unless a punctuation symbol is among them. Zero-length phonemes are dropped (a word left without
    phonemes too); a text of only marks and spaces becomes one pause.
    """
    segments: list[list[Any]] = []  # [symbol, samples, word, is_pause]
    carry = 0  # time waiting for the next segment
    space = 0
    for (kind, symbol, word), length in zip(items, samples, strict=True):
        if kind == "stress":
            carry += length
            continue
        if kind == "mark":
            if segments:
                segments[-1][1] += length
            else:
                carry += length
            continue
        if kind == "space":
            space += length
            continue
        pause = kind == "pause"
        previous = segments[-1] if segments else None
        if space:
            if previous is None or pause:
                carry += space
            elif previous[3]:
                previous[1] += space
            else:
                half = space // 2
                previous[1] += half
                carry += space - half
            space = 0
        if pause and previous is not None and previous[3]:
            previous[1] += length + carry
            if previous[0] == "_":
                previous[0] = symbol
        else:
            segments.append([symbol, length + carry, None if pause else word, pause])
        carry = 0
    if carry or space:
        if segments:
            segments[-1][1] += carry + space
        else:
            segments.append(["_", carry + space, None, True])
    phonemes: list[Phoneme] = []
    spans: dict[int, list[int]] = {}
    position = 0
    for symbol, length, word, _ in segments:
        if length <= 0:
            continue
        phonemes.append(Phoneme(symbol, position, position + length, alphabet))
        if word is not None:
            span = spans.setdefault(word, [position, position + length])
            span[1] = position + length
        position += length
    found = [Word(words[index], lo, hi) for index, (lo, hi) in sorted(spans.items()) if words[index]]
    return phonemes, found


@dataclass(frozen=True, slots=True, eq=False)
class Rendered:
    """One synthesised sentence: its audio and the timing that tiles it (positions from the sentence's start)."""

    pcm: Float32Array
    phonemes: Sequence[Phoneme]
    words: Sequence[Word]

    def chunks(self, offset: int, size: int, rate: int) -> Iterator[SpeechChunk]:
        """The sentence as chunks of about ``size`` samples placed at ``offset`` of the stream."""
        phonemes = deque(Phoneme(p.symbol, p.start + offset, p.end + offset, p.alphabet) for p in self.phonemes)
        words = deque(Word(w.text, w.start + offset, w.end + offset) for w in self.words)
        total = len(self.pcm)
        cuts = list(range(0, total, size))
        if len(cuts) > 1 and total - cuts[-1] < size // 2:
            cuts.pop()  # no crumb at the end: the last chunk takes up to 1.5 sizes
        for index, lo in enumerate(cuts):
            hi = cuts[index + 1] if index + 1 < len(cuts) else total
            end = offset + hi
            last = index + 1 == len(cuts)
            inside = []
            while phonemes and (last or phonemes[0].start < end):
                inside.append(phonemes.popleft())
            spoken = []
            while words and (last or words[0].start < end):
                spoken.append(words.popleft())
            pcm = np.ascontiguousarray(self.pcm[lo:hi], dtype=np.float32)
            yield SpeechChunk(AudioChunk(pcm, rate, offset + lo), tuple(inside), tuple(spoken))


@dataclass(slots=True)
class Worker:
    """One thread that runs a provider's model; :meth:`speak` streams a list of sentence jobs through it."""

    name: str
    executor: concurrent.futures.ThreadPoolExecutor = field(init=False)
    jobs_run: int = 0  # sentence jobs that started (for diagnostics and tests)

    def __post_init__(self) -> None:
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"facecast-{self.name}")

    def _run(self, job: Callable[[], Rendered]) -> Rendered:
        self.jobs_run += 1
        try:
            return job()
        except (ConfigError, InputError, ServiceError):
            raise
        except Exception as exc:  # noqa: BLE001 - any model/runtime failure is the service's
            raise ServiceError(f"{self.name} failed to synthesise: {exc}") from exc

    async def speak(
        self, jobs: Sequence[Callable[[], Rendered]], rate: int, chunk: int
    ) -> AsyncGenerator[SpeechChunk, None]:
        """Run ``jobs`` in order (one ahead of the consumer), yielding their chunks with offsets from 0.

        On close or cancellation the jobs not started are dropped and a running one is awaited, so when the
        generator has closed no work of it is left on the thread.
        """
        pending = iter(jobs)
        futures: deque[concurrent.futures.Future[Rendered]] = deque()

        def submit() -> None:
            job = next(pending, None)
            if job is not None:
                futures.append(self.executor.submit(self._run, job))

        offset = 0
        try:
            submit()
            while futures:
                rendered = await asyncio.wrap_future(futures[0])
                futures.popleft()
                submit()
                for piece in rendered.chunks(offset, chunk, rate):
                    yield piece
                offset += len(rendered.pcm)
        finally:
            running = [f for f in futures if not f.cancel() and not f.done()]
            if running:
                await asyncio.wait([asyncio.wrap_future(f) for f in running])


def clean_text(text: object, limit: int) -> str:
    """``text`` with control characters turned into spaces; :class:`InputError` if empty or over ``limit``."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, not {type(text).__name__}")
    if len(text) > limit:
        raise InputError(f"text is {len(text)} characters long; the limit is {limit} per call (split it)")
    cleaned = "".join(c if c.isprintable() else " " for c in text)
    if not cleaned.strip():
        raise InputError("text is empty: there is nothing to speak")
    return cleaned


def require(module: str, install: str) -> None:
    """:class:`ConfigError` naming ``install`` unless ``module`` can be imported."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"the {module!r} module is not installed: {install}")


def check_options(speed: float, threads: int, lead_in_ms: int, chunk_ms: int) -> None:
    """:class:`InputError` unless the options every neural voice takes are in range."""
    if not 0.5 <= speed <= 2.0:
        raise InputError(f"speed must be from 0.5 to 2.0, got {speed!r}")
    if not 1 <= threads <= 16:
        raise InputError(f"threads must be from 1 to 16, got {threads!r}")
    if not 0 <= lead_in_ms <= 1000:
        raise InputError(f"lead_in_ms must be from 0 to 1000, got {lead_in_ms!r}")
    if not 20 <= chunk_ms <= 2000:
        raise InputError(f"chunk_ms must be from 20 to 2000, got {chunk_ms!r}")


# ------------------------------------------------------------------------- misaki voices (hibari, Kokoro)

_STRESS_MARKS = frozenset("ˈˌ↓→↗↘")
_BACK_MARKS = frozenset("ːʰʲ̃")
_PUNCTUATION = frozenset(';:,.!?—…"()“”')
_CLAUSE_MARKS = frozenset(",;:—")


def _kind(char: str) -> str:
    if char in _STRESS_MARKS:
        return "stress"
    if char in _BACK_MARKS:
        return "mark"
    if char == " ":
        return "space"
    if char in _PUNCTUATION:
        return "pause"
    return "phone"


def misaki_pieces(tokens: Sequence[Any], vocab: Mapping[str, int], limit: int) -> list[tuple[list[Item], list[str]]]:
    """The model inputs of one sentence's misaki G2P ``tokens``: (items, word texts) pieces of at most ``limit``.

    Symbols outside ``vocab`` are dropped; a token with a spoken symbol is a word; spaces at the ends go; a
    sentence too long is cut after the last clause mark before ``limit`` (or at ``limit``).
    """
    items: list[Item] = []
    words: list[str] = []
    for token in tokens:
        phonemes = token.phonemes or ""
        word: int | None = None
        if any(c in vocab and c not in _PUNCTUATION and not c.isspace() for c in phonemes):
            words.append(token.text)
            word = len(words) - 1
        items += [(_kind(c), c, word) for c in phonemes if c in vocab]
        if token.whitespace:
            items.append(("space", " ", None))
    while items and items[-1][0] == "space":
        items.pop()
    while items and items[0][0] == "space":
        items.pop(0)
    out: list[tuple[list[Item], list[str]]] = []
    while len(items) > limit:
        cut = max((i for i in range(1, limit) if items[i - 1][1] in _CLAUSE_MARKS), default=limit)
        out.append((items[:cut], words))
        items = items[cut:]
        while items and items[0][0] == "space":
            items.pop(0)
    if items:
        out.append((items, words))
    return out


def timed(
    name: str, pcm: Float32Array, durations: Any, unit: int, items: Sequence[Item], words: Sequence[str], keep: int
) -> Rendered:
    """A padded piece's audio timed by the model's per-symbol ``durations`` (in ``unit`` samples).

    ``items`` are the piece's symbols without the start and end padding (which become ``_`` pauses); at most
    ``keep`` samples of the silence before the first symbol stay. :class:`ServiceError` when the durations do
    not match the symbols or the audio (``name`` is the voice's, for the message).
    """
    units = np.rint(np.asarray(durations, np.float64).reshape(-1)).astype(np.int64)
    if len(units) != len(items) + 2 or int(units.sum()) * unit != len(pcm) or units.min() < 0:
        raise ServiceError(f"{name}'s durations ({int(units.sum())} units) do not match its audio ({len(pcm)} samples)")
    samples = [int(u) * unit for u in units]
    if samples[0] > keep:
        pcm = pcm[samples[0] - keep :]
        samples[0] = keep
    padded: list[Item] = [("pause", "_", None), *items, ("pause", "_", None)]
    phonemes, spoken = tile(padded, samples, "misaki", words)
    return Rendered(pcm, phonemes, spoken)


def joined(parts: Sequence[Rendered]) -> Rendered:
    """The pieces of one sentence, one after the other, as one :class:`Rendered` (empty when there are none)."""
    if not parts:
        return Rendered(np.zeros(0, np.float32), (), ())
    if len(parts) == 1:
        return parts[0]
    phonemes: list[Phoneme] = []
    spoken: list[Word] = []
    offset = 0
    for part in parts:
        phonemes += [Phoneme(p.symbol, p.start + offset, p.end + offset, p.alphabet) for p in part.phonemes]
        spoken += [Word(w.text, w.start + offset, w.end + offset) for w in part.words]
        offset += len(part.pcm)
    return Rendered(np.concatenate([p.pcm for p in parts]), phonemes, spoken)
