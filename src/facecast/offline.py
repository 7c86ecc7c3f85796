"""Whole-file workflows behind ``facecast say``, ``chat``, ``animate`` and ``transcribe``: the same streaming
pipeline, collected into a session folder instead of being sent to an engine.

A take holds the animator's speech frames only (mouth and jaw; eyes, brows and head still) unless an
:class:`IdleLayer` is given: then the frames get the animation layer a live session shows (blinks, gaze, head
motion, breathing, the reply's emotions, the speech blended in; :mod:`facecast.face.layers`), laid over the take
exactly as :class:`~facecast.engine.timeline.FaceTimeline` lays it over an utterance starting at face time 0, so
a take made here plays like one recorded live. ``facecast say``/``chat``/``animate`` add it by default (their
takes are meant for playback); the NeuroSync endpoints do not (NeuroSync answers with its model's frames).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .aio import closing
from .audio import iter_chunks, read_audio
from .errors import InputError
from .events import AudioOut, EmotionOut, FaceOut, SentenceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from .face.layers import LayerConfig
from .llm.history import ChatHistory, persona_prompt
from .pipeline import run_turn, say_text, transcribe_all
from .roles import FaceAnimator, SpeechToText, TextToSpeech
from .services import Services
from .takefolder import write_session
from .text import Emotion
from .tts.resampled import speech_at
from .types import FACE_WIDTH, Float32Array, SpeechChunk

__all__ = [
    "Utterance",
    "IdleLayer",
    "collect",
    "add_idle",
    "say",
    "chat",
    "animate",
    "transcribe_file",
    "transcribe_pcm",
    "write_samples",
    "MAX_SAY_CHARS",
    "SAMPLE_QUESTION",
    "SAMPLE_SPEECH",
]

TRAILING_SILENCE = 0.2
"""Seconds of silence appended to an audio file before speech-to-text, so its last word is decoded."""

MAX_SAY_CHARS = 20_000
"""Longest text ``say`` accepts (about 25 minutes of speech)."""


@dataclass(frozen=True, slots=True)
class IdleLayer:
    """The live animation layer for a take meant for playback (see the module docstring).

    ``seed`` fixes everything random in it (the same seed and the same take give identical frames); ``None``
    draws a fresh one (:func:`facecast.engine.timeline.session_seed`). ``config``: how the face moves (a
    character's ``IdleStyle.layer_config()``); ``None`` is the default style.
    """

    seed: int | None = None
    config: LayerConfig | None = None


@dataclass(slots=True, eq=False)
class Utterance:
    """A whole utterance gathered from its event stream. ``emotions`` are the reply's emotion tags as
    ``(sample, emotion)``; ``seed`` is the animation layer's seed when one was added (:func:`add_idle`)."""

    rate: int = 0
    audio: Float32Array = field(default_factory=lambda: np.zeros(0, np.float32))
    face: Float32Array = field(default_factory=lambda: np.zeros((0, FACE_WIDTH), np.float32))
    text: str = ""
    sentences: list[str] = field(default_factory=list)
    emotions: list[tuple[int, str]] = field(default_factory=list)
    seed: int | None = None

    def save(self, folder: str | Path) -> Path:
        """Write ``audio.wav`` + ``shapes.csv`` into ``folder`` (created if needed)."""
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        write_session(path, self.audio, self.rate, self.face)
        return path


async def collect(events: AsyncIterator[UtteranceEvent]) -> Utterance:
    """Consume an utterance stream, checking that audio and face arrive contiguous and in order."""
    result = Utterance()
    audio: list[Float32Array] = []
    face: list[Float32Array] = []
    samples = frames = 0
    async with closing(events):
        async for event in events:
            if isinstance(event, UtteranceStarted):
                result.rate = event.rate
            elif isinstance(event, AudioOut):
                if event.chunk.offset != samples:
                    raise RuntimeError(f"audio gap: chunk at {event.chunk.offset}, expected {samples}")
                audio.append(event.chunk.pcm)
                samples = event.chunk.end
            elif isinstance(event, FaceOut):
                if event.frames.start != frames:
                    raise RuntimeError(f"face gap: block at {event.frames.start}, expected {frames}")
                face.append(event.frames.values)
                frames = event.frames.end
            elif isinstance(event, SentenceOut):
                result.sentences.append(event.text)
            elif isinstance(event, EmotionOut):
                result.emotions.append((event.start, event.emotion))
            elif isinstance(event, UtteranceEnded):
                result.text = event.text
    if audio:
        result.audio = np.concatenate(audio).astype(np.float32, copy=False)
    if face:
        result.face = np.concatenate(face).astype(np.float32, copy=False)
    return result


def add_idle(utterance: Utterance, idle: IdleLayer) -> Utterance:
    """``utterance`` with the live animation layer over its face (a new :class:`Utterance`; the input is kept).

    The layer starts at face time 0 with the take's first frame, eases toward each of ``utterance.emotions`` from
    its sample on, and blends the speech frames in as a live session does; the number of frames is unchanged.
    """
    from .engine.timeline import FaceTimeline, session_seed

    seed = session_seed() if idle.seed is None else idle.seed
    timeline = FaceTimeline(seed, idle.config)
    for start, emotion in utterance.emotions:
        timeline.schedule_emotion(Emotion(emotion), start / utterance.rate if utterance.rate else 0.0)
    return Utterance(
        utterance.rate,
        utterance.audio,
        timeline.shown(0.0, utterance.face),
        utterance.text,
        list(utterance.sentences),
        list(utterance.emotions),
        seed,
    )


class _AtRate:
    """A TTS resampled to ``rate`` (phoneme and word times scaled), for answers at a fixed rate."""

    def __init__(self, tts: TextToSpeech, rate: int) -> None:
        self._tts = tts
        self._rate = rate

    @property
    def sample_rate(self) -> int:
        return self._rate

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        return speech_at(self._tts, text, self._rate)


async def say(
    text: str, tts: TextToSpeech, face: FaceAnimator, *, idle: IdleLayer | None = None, rate: int | None = None
) -> Utterance:
    """Speak and animate ``text`` (no LLM). Raises :class:`InputError` for empty text.

    ``idle``: lay the live animation layer over the face (:func:`add_idle`); ``None`` keeps the animator's
    frames. ``rate``: the audio at this sample rate (the TTS's output is resampled and the face animated from
    it); ``None`` keeps the TTS's own rate.
    """
    if not text.strip():
        raise InputError("nothing to say: the text is empty")
    if len(text) > MAX_SAY_CHARS:
        raise InputError(f"the text has {len(text):,} characters; the limit is {MAX_SAY_CHARS:,}")
    speaker = tts if rate is None or rate == tts.sample_rate else _AtRate(tts, rate)
    utterance = await collect(say_text(1, text, speaker, face))
    return utterance if idle is None else add_idle(utterance, idle)


async def animate(pcm: Float32Array, rate: int, face: FaceAnimator, *, idle: IdleLayer | None = None) -> Utterance:
    """Animate recorded speech (float32 mono at ``rate``) with an audio-driven ``face``: exactly
    ``frames_for_samples(len(pcm), rate)`` frames (frames the animator does not deliver hold its last one).
    ``idle`` as for :func:`say`. Raises :class:`InputError` for no audio."""
    from .audio import split_chunks
    from .types import frames_for_samples

    if not len(pcm):
        raise InputError("nothing to animate: the audio holds no samples")

    async def speech() -> AsyncIterator[SpeechChunk]:
        for chunk in split_chunks(pcm, rate, 100.0):
            yield SpeechChunk(chunk)

    want = frames_for_samples(len(pcm), rate)
    values = np.zeros((want, FACE_WIDTH), np.float32)
    filled = 0
    async with closing(face.animate(speech())) as blocks:
        async for block in blocks:
            part = block.values[: max(0, want - block.start)]
            values[block.start : block.start + len(part)] = part
            filled = max(filled, block.start + len(part))
    if 0 < filled < want:
        values[filled:] = values[filled - 1]
    utterance = Utterance(rate, np.ascontiguousarray(pcm, dtype=np.float32), values)
    return utterance if idle is None else add_idle(utterance, idle)


async def transcribe_file(source: str | Path | bytes, stt: SpeechToText) -> str:
    """The final transcript of an audio file (any rate; stereo is mixed down)."""
    pcm, rate = read_audio(source)
    return await transcribe_pcm(pcm, rate, stt)


async def transcribe_pcm(pcm: np.ndarray, rate: int, stt: SpeechToText) -> str:
    """The final transcript of a whole recording (float32 mono at ``rate``)."""
    tail = np.zeros(int(rate * TRAILING_SILENCE), np.float32)  # a recording may stop right at its last word
    return await transcribe_all(stt, iter_chunks(np.concatenate([pcm, tail]), rate, chunk_ms=100))


async def chat(
    services: Services,
    *,
    text: str | None = None,
    audio: str | Path | None = None,
    history: ChatHistory | None = None,
    persona: str = "",
    rules: str = "on",
    idle: IdleLayer | None = None,
) -> tuple[str, Utterance]:
    """One full turn: (speech -> transcript) -> LLM -> speech -> face. Returns (user text, reply); ``idle`` as
    for :func:`say` (the reply's emotion tags steer it).

    The LLM's system prompt is ``history``'s when given, else ``persona`` (empty: the built-in persona) with
    the speaking ``rules`` (:func:`facecast.llm.history.persona_prompt`).
    """
    if (text is None) == (audio is None):
        raise InputError("give exactly one of text or audio")
    user = text if text is not None else await transcribe_file(audio, services.stt)  # type: ignore[arg-type]
    if not user.strip():
        raise InputError(f"no speech found in {audio}" if audio is not None else "the text is empty")
    if history is None:
        history = ChatHistory(persona_prompt(persona, rules))
    reply = await collect(run_turn(1, user, services, history))
    return user, reply if idle is None else add_idle(reply, idle)


SAMPLE_QUESTION = "What is your name, please?"
"""What ``question.wav`` of :func:`write_samples` says (in espeak-ng's ``en-gb`` voice: plainly a player,
not the character)."""
SAMPLE_SPEECH = "Hello there, nice to meet you. The harbour is quiet tonight."
"""What ``speech.wav`` and ``take.csv`` of :func:`write_samples` say (espeak-ng ``en-us``)."""


async def write_samples(folder: str | Path) -> list[Path]:
    """Write the sample inputs the README's examples use into ``folder`` (created if needed; replaced if there):

    - ``question.wav``: a player asking :data:`SAMPLE_QUESTION` (for ``transcribe``, ``chat --audio``,
      ``engine-sim --wav``);
    - ``speech.wav``: :data:`SAMPLE_SPEECH` (for ``animate``);
    - ``take.csv``: the ``say`` take of the same words (with the idle layer, seed 1), in the Live Link Face
      app's CSV layout, as ``facecast convert`` writes it (for ``convert`` and ``play``).

    Made locally with espeak-ng and the phonetic face (no download, no model). Returns the paths written.
    """
    from .face.phonetic import PhoneticAnimator
    from .tts.espeak import EspeakTTS

    question = await say(SAMPLE_QUESTION, EspeakTTS("en-gb"), PhoneticAnimator())
    speech = await say(SAMPLE_SPEECH, EspeakTTS("en-us"), PhoneticAnimator(), idle=IdleLayer(seed=1))
    return await asyncio.to_thread(_save_samples, Path(folder), question, speech)


def _save_samples(out: Path, question: Utterance, speech: Utterance) -> list[Path]:
    import tempfile

    from .convert import convert_take

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="facecast-samples-") as tmp:
        question.save(tmp)
        (Path(tmp) / "audio.wav").replace(out / "question.wav")
        speech.save(tmp)
        (Path(tmp) / "audio.wav").replace(out / "speech.wav")
        convert_take(tmp, out / "take.csv", "livelink-app")
    return [out / "question.wav", out / "speech.wav", out / "take.csv"]
