"""The light, streaming speech-to-text: CMU PocketSphinx 5 with the en-us model bundled in its wheel.

Audio of any rate (mono float32 :class:`~facecast.types.AudioChunk`; frames x channels is mixed down) is
resampled to 16 kHz as it arrives and fed to a decoder incrementally, so when the input ends only the
resampler's tail and a short padding are left to decode and the final transcript follows at once.

Decoders and threads. A decoder takes ~0.15-0.5 s to create (more on a busy machine; the en-us language
model takes ~95 MB of memory, a grammar decoder ~30 MB), so an instance keeps a small pool: an utterance
takes an idle decoder or creates one, uses it alone, and gives it back when it ends (``start_utt`` /
``end_utt`` keep its state clean). Concurrent utterances use separate decoders. Each decoder lives on its
own worker thread, which drives it. The bundled binding holds the GIL while it decodes, so by default
(``processes``) each decoder runs in a process of its own (:mod:`.sphinx_process`), fed through a pipe:
concurrent utterances decode on every core and the event loop only writes their audio. Kept in this process
(``processes=False``), audio is fed in 10 ms steps, one decoding call at a time across all decoders, with
the GIL offered back after each: the event loop waits at most about one step (a few ms), and concurrent
utterances share one CPU core.

What the decoder is fed, and why (measured on espeak-ng speech, see ``tests/stt/test_pocketsphinx.py``):

* A fixed, deterministic noise floor (``noise_floor``, -60 dBFS by default) is added to the 16 kHz audio.
  Digital silence (exact zeros, as TTS or gated audio has) drives the log-energy features to extremes
  and a JSGF grammar then misses words: 25 of 36 grammar sentences decoded exactly without it, 36 of 36
  with it. A real microphone's own noise is above that level, so it changes nothing there.
* ``end_padding_ms`` of that floor is decoded after the input ends, so a word cut off by the end of the
  input can still finish (without it "what time is it" came back as "what time").
* The second ``fwdflat`` search pass is off by default: it re-decodes the whole utterance after the
  input ends (~0.3 s for a 2 s sentence) for no measured accuracy gain on this model.

A decoder's cepstral-mean estimate (its idea of the channel) carries over from one utterance to the
next, as PocketSphinx intends for one audio source, and a new decoder starts from the instance's latest
estimate: recognition improves once one utterance has been heard. A cancelled utterance, or one in
which nothing was recognised, leaves the estimate as it was (silence would skew it).

Accuracy. A JSGF grammar (``PocketSphinxConfig.grammar``) recognises a fixed vocabulary exactly (98-100%
of espeak-ng sentences at wideband rates). Open vocabulary with the bundled model gets about half the
words of synthetic speech, and turns steady noise without speech into a short word: keep a voice
activity detector in front. 8 kHz (telephone) audio lacks the 4-8 kHz band the wideband model was
trained on and is recognised less reliably (82-94% of the same grammar sentences).
"""

from __future__ import annotations

import asyncio
import queue
import re
import threading
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from ..aio import aclose
from ..audio import Resampler, float_to_pcm16, to_mono
from ..errors import ConfigError, FacecastError, InputError, ServiceError
from ..types import AudioChunk, Float32Array, Transcript
from .sphinx_process import ProcessDecoder

__all__ = ["PocketSphinxConfig", "PocketSphinxSTT", "UtteranceStats", "DECODER_RATE"]

DECODER_RATE = 16_000
"""The rate the bundled acoustic model expects; input at any other rate is resampled to it."""

_STEP_SAMPLES = 160  # 10 ms per process_raw call, which holds the GIL: the event loop waits at most that
_ONE_AT_A_TIME = threading.Lock()
"""Held around every PocketSphinx call that decodes. Its binding holds the GIL while it computes, so decoders
on several threads never run in parallel anyway; but with several of them waiting for the GIL, the event loop
competes with all of them and can wait for many of their calls in a row (a soak with 4 speaking and 4 typing
conversations had replies ~1 s late). With this lock, at most one decoder thread wants the GIL at a time and
the loop gets it after at most one call."""
_NOISE_SEED = 20_240_601
_GRAMMAR_SEARCH = "facecast_grammar"
_DecoderOption: TypeAlias = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class UtteranceStats:
    """What decoding one utterance cost; passed to ``PocketSphinxConfig.on_stats`` before the final.

    ``samples_after_input_end`` and ``steps_after_input_end`` count the 16 kHz audio decoded after the
    input ended (backlog + resampler tail + end padding): the work between the last chunk and the final.
    """

    input_seconds: float
    decoded_samples: int
    samples_after_input_end: int
    steps_after_input_end: int
    cpu_seconds: float
    end_latency: float
    partials: int
    new_decoder: bool
    decoder_create_seconds: float

    @property
    def speed(self) -> float:
        """Decoded audio seconds per CPU second of the decoder thread (> 1 is faster than real time)."""
        return self.decoded_samples / DECODER_RATE / self.cpu_seconds if self.cpu_seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class PocketSphinxConfig:
    """Options of :class:`PocketSphinxSTT`; every path defaults to the model bundled in the wheel.

    ``grammar``: a JSGF grammar that restricts recognition to its sentences, either the grammar text (a
    ``str`` starting with ``#JSGF``) or a path to a ``.jsgf`` file; its first public rule is used and its
    words must be in the dictionary (lower case for the bundled one). ``model``: an acoustic model folder;
    ``dictionary``: a pronunciation dictionary; ``language_model``: an n-gram model (``.lm.bin`` /
    ``.lm``), ignored when a grammar is given. ``noise_floor`` (RMS, full scale 1.0) and
    ``end_padding_ms``: see the module docstring; 0 turns them off. ``partial_interval_ms``: the least
    audio between two partial transcripts. ``max_idle_decoders``: how many decoders the pool keeps for
    reuse. ``debug``: let PocketSphinx log to stderr (its log level is process-wide). ``decoder_options``:
    extra ``pocketsphinx.Decoder`` keyword arguments (e.g. ``{"beam": 1e-60}``), applied last.
    ``on_stats``: called on the event loop with each finished utterance's :class:`UtteranceStats`.
    ``processes``: each decoder in a process of its own (:mod:`.sphinx_process`; the binding holds the GIL
    while it decodes, so in-process decoders share one core and the event loop waits behind them); False:
    in this process, one decoding call at a time.
    """

    grammar: str | Path | None = None
    model: str | Path | None = None
    dictionary: str | Path | None = None
    language_model: str | Path | None = None
    noise_floor: float = 1e-3
    end_padding_ms: int = 200
    partial_interval_ms: int = 250
    max_idle_decoders: int = 2
    debug: bool = False
    decoder_options: Mapping[str, _DecoderOption] = field(default_factory=dict)
    on_stats: Callable[[UtteranceStats], None] | None = None
    processes: bool = True


class PocketSphinxSTT:
    """Streaming speech-to-text with PocketSphinx; implements :class:`facecast.roles.SpeechToText`.

    Construction checks the configuration's paths and grammar header (raising :class:`ConfigError` for a
    missing model file or folder, :class:`InputError` for an unusable grammar) but loads nothing; the
    first utterance, or :meth:`warm_up`, creates a decoder. Instances are safe to share between tasks.
    """

    def __init__(self, config: PocketSphinxConfig | None = None) -> None:
        self._config = config if config is not None else PocketSphinxConfig()
        cfg = self._config
        if not cfg.noise_floor >= 0 or cfg.end_padding_ms < 0 or cfg.partial_interval_ms < 0:
            raise ConfigError("noise_floor, end_padding_ms and partial_interval_ms must not be negative")
        if cfg.max_idle_decoders < 0:
            raise ConfigError("max_idle_decoders must not be negative")
        self._grammar = _load_grammar(cfg.grammar)
        kwargs: dict[str, Any] = {"loglevel": "INFO" if cfg.debug else "FATAL", "fwdflat": False}
        for key, path in (("hmm", cfg.model), ("dict", cfg.dictionary), ("lm", cfg.language_model)):
            if path is not None:
                if not Path(path).exists():
                    raise ConfigError(f"pocketsphinx {key} path does not exist: {path}")
                kwargs[key] = str(path)
        if self._grammar is not None:
            kwargs["lm"] = None
        kwargs.update(cfg.decoder_options)
        self._pool = _Pool(_DecoderFactory(kwargs, self._grammar, in_process=not cfg.processes), cfg.max_idle_decoders)
        # Idle workers hold no reference to this instance: when it is collected, stop them for good.
        weakref.finalize(self, self._pool.drain, True)
        self._noise = _noise_table(cfg.noise_floor)
        self._padding = DECODER_RATE * cfg.end_padding_ms // 1000
        self._partial = DECODER_RATE * cfg.partial_interval_ms // 1000

    @property
    def config(self) -> PocketSphinxConfig:
        return self._config

    @property
    def decoders_created(self) -> int:
        """How many decoders this instance has created so far (reuse keeps this low)."""
        return self._pool.created

    @property
    def idle_decoders(self) -> int:
        """How many decoders are waiting in the pool for the next utterance."""
        return self._pool.idle_count

    def __repr__(self) -> str:
        kind = "grammar" if self._grammar is not None else "open vocabulary"
        return f"PocketSphinxSTT({kind}, decoders={self.decoders_created}, idle={self.idle_decoders})"

    async def warm_up(self) -> None:
        """Make sure one decoder is ready, creating it off the event loop (~0.2-0.5 s) if none is idle.

        Raises :class:`ConfigError` when the model cannot be loaded and :class:`InputError` for a grammar
        that does not parse or uses words missing from the dictionary, i.e. what the first utterance
        would raise.
        """
        if self._pool.idle_count:
            return
        job = _Job(asyncio.get_running_loop(), warm_only=True)
        self._pool.acquire().submit(job)
        event = await job.results.get()
        if isinstance(event, _Failed):
            raise event.error

    def close(self) -> None:
        """Free the idle decoders and stop their threads; utterances in flight finish normally.

        The instance stays usable: a later utterance creates a decoder again.
        """
        self._pool.drain()

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        """Decode ``audio`` as it arrives; yield partials, then exactly one ``final=True`` transcript.

        Chunks may have any rate from 1 kHz to 384 kHz (all chunks of one stream the same rate) and be
        mono or frames x channels. Partial transcripts come when the hypothesis changes, at most once per
        ``partial_interval_ms`` of audio, and are handed out as the next chunk arrives; audio still queued
        for the decoder when the input ends gives no partials (the final follows). The final text may be
        empty (no speech recognised, or no audio).

        Raises :class:`InputError` for a rate out of range, a stream that changes rate or a chunk that is
        not audio, plus what :meth:`warm_up` raises, and :class:`ServiceError` if PocketSphinx fails.
        Closing this iterator (or cancelling the task reading it) stops decoding; once ``aclose()``
        returns, the decoder is back in the pool with its utterance ended, and ``audio`` is closed.
        """
        loop = asyncio.get_running_loop()
        source = aiter(audio)
        convert: _Converter | None = None
        job: _Job | None = None
        try:
            async for chunk in source:
                pcm = _chunk_pcm(chunk)
                if convert is None:
                    convert = _Converter(chunk.rate, self._noise)
                elif chunk.rate != convert.rate:
                    raise InputError(f"audio stream changed rate from {convert.rate} to {chunk.rate} Hz")
                data = convert.process(pcm)
                if data:
                    if job is None:
                        job = self._start(loop)
                    job.feed(data)
                    while not job.results.empty():
                        yield Transcript(job.partial(job.results.get_nowait()), False)
            if convert is None:
                yield Transcript("", True)
                return
            if job is None:
                job = self._start(loop)
            job.input_ended = True
            ended_at = time.perf_counter()
            job.feed(convert.flush(self._padding))
            job.feed(None)
            while True:
                event = await job.results.get()
                if isinstance(event, _Final):
                    job.terminal = True
                    if self._config.on_stats is not None:
                        latency = time.perf_counter() - ended_at
                        self._config.on_stats(replace(event.stats, input_seconds=convert.seconds, end_latency=latency))
                    yield Transcript(event.text, True)
                    return
                yield Transcript(job.partial(event), False)
        finally:
            try:
                if job is not None and not job.terminal:
                    await job.abort()
            finally:
                await aclose(source)

    def _start(self, loop: asyncio.AbstractEventLoop) -> _Job:
        job = _Job(loop, partial_samples=self._partial)
        self._pool.acquire().submit(job)
        return job


# -- decoding on the worker threads ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Partial:
    text: str


@dataclass(frozen=True, slots=True)
class _Failed:
    error: FacecastError


@dataclass(frozen=True, slots=True)
class _Final:
    text: str
    stats: UtteranceStats  # input_seconds and end_latency are filled in on the loop side


class _Aborted:
    """The utterance was stopped (or a warm-up finished): the decoder is back in the pool."""


_Event: TypeAlias = _Partial | _Failed | _Final | _Aborted


class _Job:
    """One utterance (or warm-up) handed to a worker: audio in through a thread-safe queue, events out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, partial_samples: int = 0, warm_only: bool = False) -> None:
        self.loop = loop
        self.partial_samples = partial_samples
        self.warm_only = warm_only
        self.audio: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.results: asyncio.Queue[_Event] = asyncio.Queue()
        self.aborted = threading.Event()
        self.input_ended = False  # set by the loop side; read by the worker for the statistics
        self.terminal = False  # loop side: a final, failure or abort event has been received

    def feed(self, data: bytes | None) -> None:
        self.audio.put(data)

    def partial(self, event: _Event) -> str:
        """Loop side: the text of a partial event; a failure is raised (and ends the job)."""
        if isinstance(event, _Failed):
            self.terminal = True
            raise event.error
        assert isinstance(event, _Partial), event  # a final comes only after the input has ended
        return event.text

    def post(self, event: _Event) -> None:
        """Worker side: hand ``event`` to the loop (dropped if that loop has closed: nobody listens)."""
        try:
            self.loop.call_soon_threadsafe(self.results.put_nowait, event)
        except RuntimeError:
            pass

    async def abort(self) -> None:
        """Stop decoding and wait until the worker has ended the utterance and pooled its decoder."""
        self.aborted.set()
        self.audio.put(None)
        while not isinstance(await self.results.get(), _Final | _Failed | _Aborted):
            pass
        self.terminal = True


class _DecoderFactory:
    """Creates configured decoders (on a worker thread); turns PocketSphinx errors into Facecast ones."""

    def __init__(self, kwargs: dict[str, Any], grammar: str | None, in_process: bool = True) -> None:
        self.kwargs = kwargs
        self.grammar = grammar
        self.in_process = in_process

    def __call__(self) -> Any:
        if not self.in_process:
            return ProcessDecoder(self.kwargs, self.grammar)
        import pocketsphinx

        try:
            decoder = pocketsphinx.Decoder(**self.kwargs)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"pocketsphinx could not create a decoder ({exc}); check the model, dictionary, "
                "language model and decoder_options (debug=True shows its log)"
            ) from exc
        if self.grammar is not None:
            try:
                decoder.add_jsgf_string(_GRAMMAR_SEARCH, self.grammar)
                decoder.activate_search(_GRAMMAR_SEARCH)
            except (RuntimeError, ValueError) as exc:
                missing = sorted({w for w in _grammar_words(self.grammar) if decoder.lookup_word(w) is None})
                if missing:
                    raise InputError(
                        "the grammar uses words missing from the pronunciation dictionary: "
                        + ", ".join(missing)
                        + " (the bundled dictionary is lower case)"
                    ) from exc
                raise InputError(f"the JSGF grammar does not parse ({exc}); debug=True shows where") from exc
        return decoder


class _Pool:
    """Idle workers, most recently used first; thread-safe (workers return themselves)."""

    def __init__(self, factory: _DecoderFactory, max_idle: int) -> None:
        self.factory = factory
        self.max_idle = max_idle
        self._lock = threading.RLock()  # drain() may run from a finalizer on a thread holding it
        self._idle: list[_Worker] = []
        self._created = 0
        self._closed = False
        self.cmn: str | None = None  # the latest cepstral mean a decoder learned; new decoders start there

    @property
    def created(self) -> int:
        return self._created

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def acquire(self) -> _Worker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return _Worker(self)

    def create(self) -> Any:
        decoder = self.factory()
        with self._lock:
            self._created += 1
            cmn = self.cmn
        if cmn is not None:
            decoder.set_cmn(cmn)
        return decoder

    def release(self, worker: _Worker) -> bool:
        """Take ``worker`` back; False when the pool is full (the worker then stops)."""
        with self._lock:
            if self._closed or len(self._idle) >= self.max_idle:
                return False
            self._idle.append(worker)
            return True

    def drain(self, final: bool = False) -> None:
        """Stop the idle workers; ``final``: also those still busy, when they finish."""
        with self._lock:
            self._closed = self._closed or final
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.stop()


class _Worker:
    """A decoder and the thread that owns it: serves jobs one at a time, in order."""

    def __init__(self, pool: _Pool) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._decoder: Any = None
        threading.Thread(target=self._run, name="facecast-pocketsphinx", daemon=True).start()

    def submit(self, job: _Job) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                if not self._serve(job):
                    break
        finally:
            decoder, self._decoder = self._decoder, None
            if isinstance(decoder, ProcessDecoder):
                decoder.close()

    def _serve(self, job: _Job) -> bool:
        """Run ``job``; post exactly one terminal event after pooling itself. False: stop the thread."""
        created: float | None = None
        if self._decoder is None:
            start = time.perf_counter()
            try:
                self._decoder = self._pool.create()
            except FacecastError as exc:
                job.post(_Failed(exc))
                return False
            except Exception as exc:  # e.g. a decoder_options value of the wrong type
                job.post(_Failed(ConfigError(f"pocketsphinx could not create a decoder: {exc!r}")))
                return False
            created = time.perf_counter() - start
        if job.warm_only:
            keep = self._pool.release(self)
            job.post(_Aborted())
            return keep
        try:
            event = self._decode(job, created)
        except Exception as exc:  # PocketSphinx failed: report it (the loop side waits) and drop the decoder
            job.post(_Failed(ServiceError(f"pocketsphinx failed while decoding: {exc!r}")))
            return False
        keep = self._pool.release(self)
        job.post(event)
        return keep

    def _decode(self, job: _Job, created: float | None) -> _Final | _Aborted:
        decoder = self._decoder
        remote = isinstance(decoder, ProcessDecoder)
        one_at_a_time: AbstractContextManager[Any] = nullcontext() if remote else _ONE_AT_A_TIME
        decoded = after_end = steps_after_end = partials = since_partial = 0
        cpu = 0.0
        last = ""
        channel = decoder.get_cmn(False)
        decoder.start_utt()
        in_utterance = True
        try:
            while (data := job.audio.get()) is not None:
                for start in range(0, len(data), 2 * _STEP_SAMPLES):
                    if job.aborted.is_set():
                        return _Aborted()
                    late = job.input_ended
                    block = data[start : start + 2 * _STEP_SAMPLES]
                    with one_at_a_time:
                        tick = time.thread_time()
                        decoder.process_raw(block, False, False)
                        cpu += time.thread_time() - tick
                    if not remote:
                        time.sleep(0)  # hand the GIL to a waiting event loop now, not after the switch interval
                    samples = len(block) // 2
                    decoded += samples
                    if late:
                        after_end += samples
                        steps_after_end += 1
                    since_partial += samples
                    if since_partial >= job.partial_samples and not late:
                        since_partial = 0
                        with one_at_a_time:
                            text = _hypothesis(decoder)
                        if text and text != last:
                            last = text
                            partials += 1
                            job.post(_Partial(text))
            if job.aborted.is_set():
                return _Aborted()
            tick = time.thread_time()
            in_utterance = False
            with one_at_a_time:
                decoder.end_utt()
                text = _hypothesis(decoder)
            if remote:  # the decoding was the child's
                cpu = decoder.utterance_cpu
            if text:
                self._pool.cmn = decoder.get_cmn(False)
            else:  # silence or noise: keep the channel estimate learned from speech
                decoder.set_cmn(channel)
            cpu += time.thread_time() - tick
            stats = UtteranceStats(
                0.0, decoded, after_end, steps_after_end, cpu, 0.0, partials, created is not None, created or 0.0
            )
            return _Final(text, stats)
        finally:
            if in_utterance:  # aborted (or failed): end the utterance, forget what it taught
                decoder.end_utt()
                decoder.set_cmn(channel)


# -- helpers --------------------------------------------------------------------------------------

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")
_ALTERNATE = re.compile(r"\(\d+\)$")


def _hypothesis(decoder: Any) -> str:
    """The decoder's current best word sequence, without fillers and pronunciation-variant marks."""
    hyp = decoder.hyp()
    if hyp is None:
        return ""
    words = (_ALTERNATE.sub("", w) for w in str(hyp.hypstr).split())
    return " ".join(w for w in words if w and not _FILLER.match(w))


class _Converter:
    """Input chunks -> 16 kHz PCM16 bytes with the noise floor added, streaming (no seams)."""

    def __init__(self, rate: int, noise: Float32Array | None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
            raise InputError(f"audio chunk rate must be a whole number of Hz, got {rate!r}")
        self.rate = int(rate)
        self._resampler = Resampler(self.rate, DECODER_RATE)
        self._noise = noise
        self._position = 0
        self._input = 0

    @property
    def seconds(self) -> float:
        return self._input / self.rate

    def process(self, pcm: Float32Array) -> bytes:
        self._input += len(pcm)
        return self._quantise(self._resampler.process(pcm))

    def flush(self, padding: int) -> bytes:
        tail = self._resampler.flush()
        return self._quantise(np.concatenate([tail, np.zeros(padding, dtype=np.float32)]))

    def _quantise(self, pcm: Float32Array) -> bytes:
        if not len(pcm):
            return b""
        out = np.nan_to_num(pcm, nan=0.0, posinf=1.0, neginf=-1.0)
        if self._noise is not None:
            index = (self._position + np.arange(len(out))) % len(self._noise)
            out = out + self._noise[index]
        self._position += len(out)
        return float_to_pcm16(out)


def _noise_table(level: float) -> Float32Array | None:
    """One second of Gaussian noise at RMS ``level``, the same every run (results are reproducible)."""
    if level <= 0:
        return None
    noise = np.random.default_rng(_NOISE_SEED).standard_normal(DECODER_RATE) * level
    table: Float32Array = noise.astype(np.float32)
    return table


def _chunk_pcm(chunk: AudioChunk) -> Float32Array:
    pcm = getattr(chunk, "pcm", None)
    if not isinstance(pcm, np.ndarray) or not hasattr(chunk, "rate"):
        raise InputError(f"expected AudioChunk items in the audio stream, got {type(chunk).__name__}")
    if pcm.dtype.kind != "f" and pcm.dtype != np.int16:
        raise InputError(f"audio samples must be float (or int16) numbers, got dtype {pcm.dtype}")
    return to_mono(pcm)


def _load_grammar(spec: str | Path | None) -> str | None:
    """The JSGF text named by ``spec`` (the text itself, or a file); only the header is checked here."""
    if spec is None:
        return None
    if isinstance(spec, str) and spec.lstrip().startswith("#JSGF"):
        return spec
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(
            f"grammar file not found: {path} (grammar text must start with a '#JSGF V1.0;' header)"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read grammar file {path}: {exc}") from exc
    if not text.lstrip().startswith("#JSGF"):
        raise InputError(f"{path} is not a JSGF grammar: it must start with a '#JSGF V1.0;' header")
    return text


_JSGF_NOISE = re.compile(r"//[^\n]*|/\*.*?\*/|<[^>]*>|\{[^}]*\}|/[0-9.eE+-]+/", re.S)


def _grammar_words(grammar: str) -> set[str]:
    """The words (terminals) of a JSGF grammar, approximately: for error messages only."""
    words: set[str] = set()
    for statement in _JSGF_NOISE.sub(" ", grammar).split(";"):
        _, equals, body = statement.partition("=")
        if equals:
            words.update(w.strip('"') for w in re.findall(r'"[^"]*"|[^\s|()\[\]*+"]+', body))
    return {w for w in words if w}
