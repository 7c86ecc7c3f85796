"""Whole-file workflows behind ``facecast say``, ``chat`` and ``transcribe``: the same streaming pipeline,
collected into a session folder instead of being sent to an engine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .aio import closing
from .audio import iter_chunks, read_audio
from .errors import InputError
from .events import AudioOut, FaceOut, SentenceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from .llm.history import ChatHistory
from .pipeline import run_turn, say_text, transcribe_all
from .roles import FaceAnimator, SpeechToText, TextToSpeech
from .services import Services
from .takefolder import write_session
from .types import FACE_WIDTH, Float32Array

__all__ = [
    "Utterance",
    "collect",
    "say",
    "chat",
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


@dataclass(slots=True, eq=False)
class Utterance:
    """A whole utterance gathered from its event stream."""

    rate: int = 0
    audio: Float32Array = field(default_factory=lambda: np.zeros(0, np.float32))
    face: Float32Array = field(default_factory=lambda: np.zeros((0, FACE_WIDTH), np.float32))
    text: str = ""
    sentences: list[str] = field(default_factory=list)

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
            elif isinstance(event, UtteranceEnded):
                result.text = event.text
    if audio:
        result.audio = np.concatenate(audio).astype(np.float32, copy=False)
    if face:
        result.face = np.concatenate(face).astype(np.float32, copy=False)
    return result


async def say(text: str, tts: TextToSpeech, face: FaceAnimator) -> Utterance:
    """Speak and animate ``text`` (no LLM). Raises :class:`InputError` for empty text."""
    if not text.strip():
        raise InputError("nothing to say: the text is empty")
    if len(text) > MAX_SAY_CHARS:
        raise InputError(f"the text has {len(text):,} characters; the limit is {MAX_SAY_CHARS:,}")
    return await collect(say_text(1, text, tts, face))


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
) -> tuple[str, Utterance]:
    """One full turn: (speech -> transcript) -> LLM -> speech -> face. Returns (user text, reply).

    The LLM's system prompt is ``history``'s when given, else ``persona``, else the built-in persona.
    """
    if (text is None) == (audio is None):
        raise InputError("give exactly one of text or audio")
    user = text if text is not None else await transcribe_file(audio, services.stt)  # type: ignore[arg-type]
    if not user.strip():
        raise InputError(f"no speech found in {audio}" if audio is not None else "the text is empty")
    if history is None:
        history = ChatHistory(persona) if persona.strip() else ChatHistory()
    reply = await collect(run_turn(1, user, services, history))
    return user, reply


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
    - ``take.csv``: the ``say`` take of the same words, in the Live Link Face app's CSV layout, as
      ``facecast convert`` writes it (for ``convert`` and ``play``).

    Made locally with espeak-ng and the phonetic face (no download, no model). Returns the paths written.
    """
    from .face.phonetic import PhoneticAnimator
    from .tts.espeak import EspeakTTS

    question = await say(SAMPLE_QUESTION, EspeakTTS("en-gb"), PhoneticAnimator())
    speech = await say(SAMPLE_SPEECH, EspeakTTS("en-us"), PhoneticAnimator())
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
