"""The light text-to-speech: libespeak-ng (from the ``espeakng-loader`` wheel) through ctypes.

Audio, phoneme and word timing come from one call of ``espeak_Synth`` in synchronous mode: the library
calls back every ~60 ms of generated audio with its PCM (int16, 22050 Hz) and the events that happened
inside that buffer (PHONEME events carry the espeak-ng mnemonic and the exact sample position).

Threading: libespeak-ng has global state and is not thread-safe, so every call into it runs on ONE
module-level worker thread (created on first use, idle between requests). Requests from any number of
tasks, event loops or threads queue there and run one at a time; each request applies its own voice,
rate and pitch inside that serialised section, so instances with different settings never interfere.

Timing contract of :meth:`EspeakTTS.synthesize` (all positions in samples from 0 for each call):

* The phonemes of one call tile its audio: the first starts at 0, each ends where the next starts and
  the last ends at the end of the audio. A phoneme's ``end`` is the next phoneme event's start (the
  last one's is the end of the audio); zero-length events are dropped; if speech starts after sample 0
  a ``"_"`` pause covers the lead-in.
* Symbols are espeak-ng's mnemonics (``p``, ``aI``, ``T``, ``@2``, ``3:``...) with the stress marks
  ``'`` and ``,`` removed; symbols starting with ``_`` (``_``, ``_:``) are pauses.
* A word spans from the start of its first phoneme to the end of its last one (pauses excluded).
  espeak-ng reports the words it expands (``3.5`` -> three point five, ``123``) as several events over
  the same characters: these are merged into one :class:`~facecast.types.Word` whose text is the
  original characters. A word that produces no phoneme is left out.
* Each :class:`~facecast.types.SpeechChunk` carries exactly the phonemes and words that START inside its
  audio, with their final ``end``. To give that, a chunk is held back only until the end of every
  phoneme and word starting in it is known (at most one word of audio; synthesis runs hundreds of
  times faster than real time, so this costs well under a millisecond). Chunks are contiguous.

espeak-ng keeps some synthesis state across requests (pitch flutter phase, gain), so the same text may
come back a few samples longer or shorter, depending on what was spoken before; symbols, words and
sound are the same.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import re
import threading
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError, ServiceError
from ..types import AudioChunk, Phoneme, SpeechChunk, Word

__all__ = ["EspeakTTS", "list_voices", "list_variants", "MAX_TEXT_CHARS", "MIN_RATE", "MAX_RATE"]

MAX_TEXT_CHARS = 20_000
"""Longest text one :meth:`EspeakTTS.synthesize` call accepts (speak long texts sentence by sentence)."""
MIN_RATE = 80
"""Slowest speaking rate, words per minute (espeak-ng's own limit)."""
MAX_RATE = 450
"""Fastest speaking rate, words per minute (espeak-ng's own limit)."""

_BUFFER_MS = 50  # audio per callback (the library makes it ~60 ms): the streaming granularity
# Constants of speak_lib.h. Without DONT_EXIT, a missing data folder makes the library call exit().
_AUDIO_OUTPUT_SYNCHRONOUS, _INIT_PHONEME_EVENTS, _INIT_DONT_EXIT = 2, 0x0001, 0x8000
_POS_CHARACTER, _CHARS_UTF8, _ENDPAUSE, _PARAM_RATE, _PARAM_PITCH = 1, 1, 0x1000, 1, 3
_EV_LIST_TERMINATED, _EV_WORD, _EV_SENTENCE, _EV_END, _EV_PHONEME = 0, 1, 2, 5, 7

_WHITESPACE_CONTROLS = re.compile(r"[\t\n\x0b\x0c\r\x1c-\x1f\x85]")
_OTHER_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h (40 bytes on 64-bit: the pointer fields are 8-aligned)."""

    _fields_ = [
        ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character (code point) index in the text
        ("length", ctypes.c_int),  # word length in characters (WORD events)
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # exact sample position from the start of the espeak_Synth call
        ("user_data", ctypes.c_void_p), ("id", _EventId),
    ]  # fmt: skip


class _Voice(ctypes.Structure):
    """``espeak_VOICE``; ``languages`` is a raw pointer: (priority byte, name, NUL)... then NUL."""

    _fields_ = [
        ("name", ctypes.c_char_p), ("languages", ctypes.c_void_p), ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int), ("spare", ctypes.c_void_p),
    ]  # fmt: skip


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


_I, _U = ctypes.c_int, ctypes.c_uint
_PROTOTYPES: list[tuple[str, list[type], type | None]] = [
    ("espeak_Initialize", [_I, _I, ctypes.c_char_p, _I], _I),
    ("espeak_SetSynthCallback", [_SynthCallback], None),
    ("espeak_SetVoiceByName", [ctypes.c_char_p], _I),
    ("espeak_SetParameter", [_I, _I, _I], _I),
    ("espeak_ListVoices", [ctypes.POINTER(_Voice)], ctypes.POINTER(ctypes.POINTER(_Voice))),
    ("espeak_Synth", [ctypes.c_char_p, ctypes.c_size_t, _U, _I, _U, _U, ctypes.POINTER(_U), ctypes.c_void_p], _I),
]


@dataclass(frozen=True, slots=True)
class _VoiceInfo:
    name: str
    identifier: str  # e.g. "gmw/en-US"
    languages: tuple[tuple[int, str], ...]  # (priority, code), lower priority = preferred


@dataclass(frozen=True, slots=True)
class _Settings:
    voice: str  # what espeak_SetVoiceByName gets, e.g. "gmw/en+f3"
    rate: int
    pitch: int
    end_pause: bool


@dataclass(slots=True, eq=False)
class _WordRec:
    text: str
    lo: int  # character span in the text
    hi: int
    start: int | None = None  # sample span, from its phonemes
    end: int | None = None
    closed: bool = False  # takes no more phonemes


class _Assembler:
    """Turns the library's buffers and events into :class:`SpeechChunk` (see the module docstring).

    Pure Python and single-threaded: fed on the worker thread, in the library's order.
    """

    def __init__(self, text: str, rate: int) -> None:
        self._text = text
        self._rate = rate
        self.total = 0
        self._held: deque[AudioChunk] = deque()
        self._phonemes: deque[Phoneme] = deque()  # complete, not yet released
        self._pending: tuple[str, int, _WordRec | None] | None = None  # last phoneme, end unknown
        self._words: deque[_WordRec] = deque()  # not yet released, in order
        self._open: _WordRec | None = None  # the word that takes the next phonemes

    def audio(self, pcm: np.ndarray) -> None:
        if len(pcm):
            samples = (pcm.astype(np.float32) * np.float32(1.0 / 32768.0)).astype(np.float32, copy=False)
            self._held.append(AudioChunk(samples, self._rate, self.total))
            self.total += len(pcm)

    def word(self, position: int, length: int) -> None:
        lo = max(0, min(position - 1, len(self._text)))
        hi = max(lo, min(lo + max(length, 0), len(self._text)))
        text = self._text[lo:hi].strip()
        current = self._open
        if current is not None and (lo < current.hi or not text):
            return  # another event of a word espeak-ng expanded (numbers, symbols): same word
        self._close_open()
        record = _WordRec(text, lo, hi)
        self._words.append(record)
        self._open = record

    def boundary(self) -> None:
        self._close_open()

    def phoneme(self, symbol: str, sample: int) -> None:
        pending = self._pending
        start = max(sample, pending[1] if pending is not None else 0)
        if pending is None:
            if start > 0:
                self._phonemes.append(Phoneme("_", 0, start))
        elif start > pending[1]:
            self._complete(pending, start)
        else:
            self._drop(pending)
        is_pause = symbol.startswith("_")
        if is_pause:
            self._close_open()
        word = None if is_pause else self._open
        if word is not None and word.start is None:
            word.start = start
        self._pending = (symbol, start, word)

    def _complete(self, pending: tuple[str, int, _WordRec | None], end: int) -> None:
        symbol, start, word = pending
        self._phonemes.append(Phoneme(symbol, start, end))
        if word is not None:
            word.end = end

    @staticmethod
    def _drop(pending: tuple[str, int, _WordRec | None]) -> None:
        """Forget a zero-length phoneme; a word that began with it has no phoneme yet."""
        word = pending[2]
        if word is not None and word.start == pending[1]:
            word.start = None

    def _close_open(self) -> None:
        if self._open is not None:
            self._open.closed = True
            self._open = None

    def _final(self, word: _WordRec) -> bool:
        return word.closed and (self._pending is None or self._pending[2] is not word)

    def release(self, finished: bool = False) -> list[SpeechChunk]:
        """Chunks whose phonemes and words are all complete (all remaining ones when ``finished``)."""
        if finished:
            return self._finish()
        if self._pending is None:
            return []  # no phoneme yet: a first one may still start inside the held audio
        horizon = self._pending[1]
        for word in self._words:
            if word.start is not None and not self._final(word):
                horizon = min(horizon, word.start)
        return self._pop(horizon)

    def _finish(self) -> list[SpeechChunk]:
        total = self.total
        pending = self._pending
        self._pending = None
        if pending is not None and pending[1] < total:
            self._complete(pending, total)
        elif pending is not None:
            self._drop(pending)
        elif total > 0:
            self._phonemes.append(Phoneme("_", 0, total))
        self._close_open()
        # Events never lie past the audio in practice; clamp so that the tiling contract holds anyway.
        self._phonemes = deque(Phoneme(p.symbol, p.start, min(p.end, total)) for p in self._phonemes if p.start < total)
        for word in self._words:
            word.start = None if word.start is None or word.start >= total else word.start
            word.end = None if word.end is None else min(word.end, total)
        return self._pop(total)

    def _pop(self, horizon: int) -> list[SpeechChunk]:
        out: list[SpeechChunk] = []
        while self._held and self._held[0].end <= horizon:
            chunk = self._held.popleft()
            phonemes: list[Phoneme] = []
            while self._phonemes and self._phonemes[0].start < chunk.end:
                phonemes.append(self._phonemes.popleft())
            words: list[Word] = []
            while self._words:
                word = self._words[0]
                if word.closed and (word.start is None or not word.text):
                    self._words.popleft()  # a word without phonemes (or text): not reported
                    continue
                if word.start is None or word.start >= chunk.end or not self._final(word):
                    break
                self._words.popleft()
                words.append(Word(word.text, word.start, word.end if word.end is not None else chunk.end))
            out.append(SpeechChunk(chunk, tuple(phonemes), tuple(words)))
        return out


_END = object()


class _Job:
    """One synthesis request: the worker thread calls :meth:`post`, the consumer awaits :meth:`take`.

    Results the worker produces while the consumer is busy are handed over together, with one wake-up
    of the consumer's loop instead of one per chunk.
    """

    def __init__(self, text: str, settings: _Settings, rate: int, loop: asyncio.AbstractEventLoop) -> None:
        self.text = text
        self.settings = settings
        self.loop = loop
        self.assembler = _Assembler(text, rate)
        self.aborted = False  # set by the consumer; the next library callback then stops synthesis
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._items: list[object] = []  # lists of chunks, then _END or an exception
        self._wake_scheduled = False
        self._waiter: asyncio.Future[None] | None = None

    def post(self, item: object) -> None:
        """Worker thread: hand ``item`` to the consumer."""
        with self._lock:
            self._items.append(item)
            if self._wake_scheduled or self.aborted:
                return
            self._wake_scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.aborted = True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[object]:
        """Consumer's loop: everything posted since the last call, waiting for at least one item."""
        while True:
            with self._lock:
                items, self._items = self._items, []
                self._wake_scheduled = False
            if items:
                return items
            self._waiter = self.loop.create_future()
            await self._waiter


class _Engine:
    """The one libespeak-ng of this process and the one thread allowed to call it."""

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="facecast-espeak")
        self._lib: ctypes.CDLL | None = None
        self._callback = _SynthCallback(self._on_audio)  # kept alive as long as the library uses it
        self._applied: _Settings | None = None
        self.current: _Job | None = None
        self.last_job: _Job | None = None  # for diagnostics and tests
        self.jobs_run = 0  # requests that reached the worker (a request closed while queued never does)
        self.sample_rate = 0
        self.voices: tuple[_VoiceInfo, ...] = ()
        self.variants: tuple[tuple[str, str], ...] = ()  # (name, file name as used after "+")
        self._ready = self._executor.submit(self._initialize)

    def wait_ready(self) -> None:
        self._ready.result()

    def submit(self, job: _Job) -> concurrent.futures.Future[None]:
        return self._executor.submit(self._run, job)

    def _initialize(self) -> None:
        try:
            import espeakng_loader

            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = str(espeakng_loader.get_data_path()).encode()
        except (ImportError, OSError, RuntimeError) as exc:
            raise ConfigError(f"cannot load libespeak-ng from the espeakng-loader wheel: {exc}") from exc
        for function, argtypes, restype in _PROTOTYPES:
            getattr(lib, function).argtypes = argtypes
            getattr(lib, function).restype = restype
        options = _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path, options)
        if rate <= 0:
            raise ConfigError(f"libespeak-ng could not initialise with its data at {data_path.decode()}")
        lib.espeak_SetSynthCallback(self._callback)
        label = ctypes.create_string_buffer(b"variant")
        spec = _Voice()
        spec.languages = ctypes.addressof(label)
        self.variants = tuple((v.name, v.identifier.split("/", 1)[-1]) for v in self._list(lib, ctypes.pointer(spec)))
        self.voices = self._list(lib, None)
        self.sample_rate = int(rate)
        self._lib = lib

    @staticmethod
    def _list(lib: ctypes.CDLL, spec: object) -> tuple[_VoiceInfo, ...]:
        array = lib.espeak_ListVoices(spec)
        out: list[_VoiceInfo] = []
        index = 0
        while array[index]:
            voice = array[index].contents
            languages: list[tuple[int, str]] = []
            address = voice.languages
            while address and (priority := ctypes.c_ubyte.from_address(address).value):
                code = ctypes.string_at(address + 1)
                languages.append((priority, code.decode("utf-8", "replace").lower()))
                address += len(code) + 2
            name, identifier = ((text or b"").decode("utf-8", "replace") for text in (voice.name, voice.identifier))
            out.append(_VoiceInfo(name, identifier, tuple(languages)))
            index += 1
        return tuple(out)

    def _apply(self, lib: ctypes.CDLL, settings: _Settings) -> None:
        applied = self._applied
        self._applied = None  # unknown until every call below succeeded
        if applied is None or applied.voice != settings.voice:
            if lib.espeak_SetVoiceByName(settings.voice.encode()) != 0:
                raise ServiceError(f"libespeak-ng could not load voice {settings.voice!r}")
            applied = None
        if applied is None or applied.rate != settings.rate:
            lib.espeak_SetParameter(_PARAM_RATE, settings.rate, 0)
        if applied is None or applied.pitch != settings.pitch:
            lib.espeak_SetParameter(_PARAM_PITCH, settings.pitch, 0)
        self._applied = settings

    def _run(self, job: _Job) -> None:
        """Synthesise ``job`` on the worker thread; every outcome is posted, nothing is raised."""
        self.last_job = job
        self.jobs_run += 1
        try:
            self.wait_ready()
            lib = self._lib
            assert lib is not None
            if job.aborted:
                return
            self._apply(lib, job.settings)
            data = job.text.encode("utf-8", "replace")
            flags = _CHARS_UTF8 | (_ENDPAUSE if job.settings.end_pause else 0)
            self.current = job
            try:
                status = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
            finally:
                self.current = None
            if job.error is not None:
                raise job.error
            if job.aborted:
                return
            if status != 0:
                raise ServiceError(f"libespeak-ng failed to synthesise the text (status {status})")
            chunks = job.assembler.release(finished=True)
            if chunks:
                job.post(chunks)
            job.post(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, who re-raises it
            job.post(exc)

    def _on_audio(self, wav: ctypes._Pointer[ctypes.c_short], count: int, events: ctypes._Pointer[_Event]) -> int:
        """The library's callback: 0 = go on, 1 = stop (the consumer went away, or a bug here)."""
        job = self.current
        if job is None or job.aborted:
            return 1
        try:
            assembler = job.assembler
            if count > 0 and wav:
                raw = ctypes.string_at(wav, 2 * count)
                assembler.audio(np.frombuffer(raw, dtype=np.int16))
            index = 0
            while True:
                event = events[index]
                kind = event.type
                if kind == _EV_LIST_TERMINATED:
                    break
                if kind == _EV_PHONEME:
                    symbol = event.id.string.decode("utf-8", "replace").lstrip("',")
                    if symbol:
                        assembler.phoneme(symbol, event.sample)
                elif kind == _EV_WORD:
                    assembler.word(event.text_position, event.length)
                elif kind in (_EV_SENTENCE, _EV_END):
                    assembler.boundary()
                index += 1
            chunks = assembler.release()
            if chunks:
                job.post(chunks)
        except BaseException as exc:  # noqa: BLE001 - an exception must not cross the C frames
            job.error = exc
            return 1
        return 1 if job.aborted else 0


_ENGINE: _Engine | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Engine:
    """The process's engine, started on first use; raises :class:`ConfigError` if it cannot start."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Engine()
        engine = _ENGINE
    engine.wait_ready()
    return engine


def list_voices() -> list[str]:
    """The language codes usable as ``voice`` (and ``--voice``), e.g. ``en-us``, ``en-gb``, ``de``.

    Each may be followed by a variant from :func:`list_variants`, as in ``en-gb+f3``. espeak-ng voice
    identifiers (``gmw/en-US``) are accepted too. Starts the library if needed.
    """
    return sorted({code for voice in _engine().voices for _, code in voice.languages})


def list_variants() -> list[str]:
    """The voice variants usable after ``+`` in a voice name (``f3``, ``m1``, ``klatt``, ``whisper``...)."""
    return sorted({file for _, file in _engine().variants}, key=str.lower)


def _resolve_voice(engine: _Engine, spec: str) -> str:
    base, _, variant = spec.strip().partition("+")
    key = base.strip().lower()
    best: tuple[int, int, str] | None = None
    for order, voice in enumerate(engine.voices):
        for priority, code in voice.languages:
            if code == key and (best is None or (priority, order) < best[:2]):
                best = (priority, order, voice.identifier)
    identifier = best[2] if best is not None else None
    if identifier is None:
        for voice in engine.voices:
            ident = voice.identifier.lower()
            if key in (ident, ident.rsplit("/", 1)[-1], voice.name.lower()):
                identifier = voice.identifier
                break
    if not key or identifier is None:
        raise InputError(
            f"unknown espeak-ng voice {spec!r}: use a language code (e.g. 'en-us', 'en-gb'), optionally with a "
            "variant as in 'en-gb+f3'; 'facecast voices --tts espeak' lists both"
        )
    if not variant:
        return identifier
    wanted = variant.strip().lower()
    for name, file in engine.variants:
        if wanted in (file.lower(), name.lower()):
            return f"{identifier}+{file}"
    raise InputError(
        f"unknown espeak-ng voice variant {variant!r} in {spec!r}: "
        "'facecast voices --tts espeak' lists them (e.g. 'f3', 'm1', 'klatt')"
    )


def _clean_text(text: str) -> str:
    if not isinstance(text, str):
        raise InputError(f"text must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(
            f"text is {len(text)} characters long; the limit is {MAX_TEXT_CHARS} per call "
            "(speak it sentence by sentence)"
        )
    cleaned = _OTHER_CONTROLS.sub("", _WHITESPACE_CONTROLS.sub(" ", text))
    if not cleaned.strip():
        raise InputError("text is empty: there is nothing to speak")
    return cleaned


class EspeakTTS:
    """Speech with per-phoneme timing from libespeak-ng; implements :class:`facecast.roles.TextToSpeech`.

    ``voice`` is a language code from :func:`list_voices` with an optional variant (``en-gb+f3``);
    ``rate`` is in words per minute (80-450); ``pitch`` is 0-100 (50 is the voice's normal pitch);
    ``end_pause`` adds espeak-ng's sentence-final pause to the end of each call's audio (a natural gap
    when sentences are spoken one after another). Text is plain text: no SSML or ``[[phoneme]]`` input.

    Raises :class:`InputError` for an unknown voice or variant or an out-of-range rate or pitch, and
    :class:`ConfigError` when libespeak-ng cannot be loaded. Construction may block briefly the first
    time (the library starts once per process). Instances are cheap and safe to share between tasks
    and threads.
    """

    def __init__(self, voice: str = "en-us", rate: int = 175, pitch: int = 50, *, end_pause: bool = True) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
            raise InputError(
                f"rate must be a whole number of words per minute from {MIN_RATE} to {MAX_RATE}, got {rate!r}"
            )
        if isinstance(pitch, bool) or not isinstance(pitch, int) or not 0 <= pitch <= 100:
            raise InputError(f"pitch must be a whole number from 0 to 100 (50 is normal), got {pitch!r}")
        if not isinstance(voice, str):
            raise InputError(f"voice must be a string such as 'en-us' or 'en-gb+f3', got {voice!r}")
        engine = _engine()
        self._voice = voice
        self._settings = _Settings(_resolve_voice(engine, voice), rate, pitch, bool(end_pause))
        self._sample_rate = engine.sample_rate

    @property
    def sample_rate(self) -> int:
        """The rate of every chunk this TTS yields (22050 Hz with the bundled espeak-ng)."""
        return self._sample_rate

    @property
    def voice(self) -> str:
        """The voice as given, e.g. ``en-gb+f3``."""
        return self._voice

    def __repr__(self) -> str:
        return f"EspeakTTS(voice={self._voice!r}, rate={self._settings.rate}, pitch={self._settings.pitch})"

    def voices(self) -> list[str]:
        """The voices this TTS can speak with (:func:`list_voices`; ``facecast voices``)."""
        return list_voices()

    def variants(self) -> list[str]:
        """The variants a voice may take after ``+`` (:func:`list_variants`)."""
        return list_variants()

    async def synthesize(self, text: str) -> AsyncGenerator[SpeechChunk, None]:
        """Speak ``text``, yielding ~60 ms chunks as the library produces them (timing: module docstring).

        Control characters are removed (line breaks and tabs become spaces). Raises :class:`InputError`
        for empty text or text over :data:`MAX_TEXT_CHARS` characters, :class:`ServiceError` if the
        library fails.

        Closing the iterator stops the synthesis: when ``aclose()`` returns, the library has stopped
        working on this text, and a request still queued for the worker is dropped without running.
        Cancelling a task that is waiting for the next chunk closes the iterator. A consumer cancelled
        elsewhere (in its loop body) must close it itself, e.g. ``async with
        contextlib.aclosing(tts.synthesize(text)) as speech``; an iterator abandoned unclosed is only
        closed when garbage-collected, and meanwhile its text is synthesised to the end.
        """
        cleaned = _clean_text(text)
        engine = _engine()
        job = _Job(cleaned, self._settings, self._sample_rate, asyncio.get_running_loop())
        future = engine.submit(job)
        try:
            while True:
                for item in await job.take():
                    if item is _END:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    assert isinstance(item, list)
                    for chunk in item:
                        yield chunk
        finally:
            job.aborted = True
            if not future.cancel() and not future.done():
                await asyncio.wrap_future(future)  # the running synthesis stops at its next buffer
