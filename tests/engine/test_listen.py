"""The listener's speech-to-text segments: real webrtcvad on espeak speech with real pauses, fed in 20 ms
microphone chunks; a recording speech-to-text stands in for the decoder, so the order of events is exact."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np

from facecast.engine.listen import HeardUtterance, Listener, ListenerCallbacks
from facecast.errors import FacecastError
from facecast.face.phonetic import PhoneticAnimator
from facecast.offline import say
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, Transcript
from facecast.vad import VAD_RATE, TurnConfig

CHUNK = VAD_RATE // 50  # 20 ms


class RecordingSTT:
    """Each stream is one segment: keeps what it was fed and answers ``segment N`` when its input ends."""

    def __init__(self, log: list[tuple[str, int]]) -> None:
        self.log = log
        self.segments: list[np.ndarray] = []

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        index = len(self.segments)
        self.segments.append(np.zeros(0, np.float32))
        async for chunk in audio:
            self.segments[index] = np.concatenate([self.segments[index], chunk.pcm])
        self.log.append(("final", index))
        yield Transcript(f"segment {index}", True)


async def speech(*parts: str | float) -> np.ndarray:
    """Spoken parts and silences (seconds), at 16 kHz."""
    tts = EspeakTTS(end_pause=False)
    pieces = []
    for part in parts:
        if isinstance(part, str):
            utt = await say(part, tts, PhoneticAnimator())
            pieces.append(
                np.interp(
                    np.arange(0, len(utt.audio), utt.rate / VAD_RATE), np.arange(len(utt.audio)), utt.audio
                ).astype(np.float32)
            )
        else:
            pieces.append(np.zeros(int(part * VAD_RATE), np.float32))
    return np.concatenate(pieces)


async def listen(
    audio: np.ndarray, turns: TurnConfig, guesses: list[str | None] | None = None
) -> tuple[RecordingSTT, list[tuple[str, int]], list[HeardUtterance], list[Transcript]]:
    """Feed ``audio`` chunk by chunk, letting the loop run between chunks; log ("fed", samples) as it goes.
    With ``guesses``, the listener's guesses are kept there (and logged as ("guess", n))."""
    log: list[tuple[str, int]] = []
    stt = RecordingSTT(log)
    heard: list[HeardUtterance] = []
    transcripts: list[Transcript] = []

    async def on_transcript(t: Transcript) -> None:
        transcripts.append(t)

    async def on_heard(h: HeardUtterance) -> None:
        log.append(("heard", 0))
        heard.append(h)

    async def nothing() -> None:
        return None

    async def on_error(exc: FacecastError) -> None:
        raise AssertionError(exc)

    async def on_guess(text: str | None) -> None:
        assert guesses is not None
        log.append(("guess", len(guesses)))
        guesses.append(text)

    callbacks = ListenerCallbacks(on_transcript, on_heard, nothing, on_error, on_guess if guesses is not None else None)
    listener = Listener(stt, VAD_RATE, callbacks, turns)
    try:
        for start in range(0, len(audio), CHUNK):
            listener.feed(audio[start : start + CHUNK])
            log.append(("fed", start + CHUNK))
            for _ in range(5):
                await asyncio.sleep(0)
    finally:
        await listener.close()
    return stt, log, heard, transcripts


def _fed_before(log: list[tuple[str, int]], event: tuple[str, int]) -> int:
    """Samples fed when ``event`` happened."""
    fed = [n for kind, n in log[: log.index(event)] if kind == "fed"]
    return fed[-1] if fed else 0


async def test_the_final_transcript_is_ready_before_the_endpoint() -> None:
    audio = await speech(0.4, "Tell me about the weather.", 1.0)
    speech_end = int(np.flatnonzero(np.abs(audio) > 0.01)[-1])
    stt, log, heard, transcripts = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=100))
    assert len(stt.segments) == 1 and [t.text for t in transcripts if t.final] == ["segment 0"]
    assert [h.text for h in heard] == ["segment 0"]
    final_at, heard_at = _fed_before(log, ("final", 0)), _fed_before(log, ("heard", 0))
    # the segment closed at the 200 ms pause, so its transcript existed before the 300 ms endpoint was fed
    assert speech_end + 0.18 * VAD_RATE <= final_at < speech_end + 0.3 * VAD_RATE <= heard_at
    assert final_at < heard_at


async def test_a_pause_the_player_talks_through_restarts_the_segment_on_the_whole_turn() -> None:
    audio = await speech(0.4, "Tell me about", 0.25, "the weather.", 1.0)
    stt, log, heard, transcripts = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=100))
    first, second = stt.segments  # closed at the 200 ms pause, then reopened when speech came back
    assert len(second) > len(first) + 0.3 * VAD_RATE
    np.testing.assert_array_equal(second[: len(first)], first)  # the second replays the first, then goes on
    assert [t.text for t in transcripts if t.final] == ["segment 1"]  # one turn: the whole-turn decode
    assert [h.text for h in heard] == ["segment 1"]


async def test_without_a_lead_the_segment_closes_at_the_endpoint() -> None:
    audio = await speech(0.4, "Tell me about", 0.25, "the weather.", 1.0)
    stt, log, heard, _ = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=0))
    assert len(stt.segments) == 1 and [h.text for h in heard] == ["segment 0"]
    assert log.index(("final", 0)) < log.index(("heard", 0))
    speech_end = int(np.flatnonzero(np.abs(audio) > 0.01)[-1])
    assert _fed_before(log, ("final", 0)) >= speech_end + 0.28 * VAD_RATE


async def test_a_pause_offers_its_transcript_as_a_guess_before_the_endpoint() -> None:
    audio = await speech(0.4, "Tell me about the weather.", 1.0)
    guesses: list[str | None] = []
    _, log, heard, _ = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=100), guesses)
    assert guesses == ["segment 0"] and [h.text for h in heard] == ["segment 0"]
    assert log.index(("final", 0)) < log.index(("guess", 0)) < log.index(("heard", 0))  # before the endpoint


async def test_a_guess_is_withdrawn_when_the_player_goes_on() -> None:
    audio = await speech(0.4, "Tell me about", 0.25, "the weather.", 1.0)
    guesses: list[str | None] = []
    _, log, heard, _ = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=100), guesses)
    # the first pause's guess, void once speech came back, then the whole turn's guess at the last pause
    assert guesses == ["segment 0", None, "segment 1"]
    assert [h.text for h in heard] == ["segment 1"]
    assert log.index(("guess", 2)) < log.index(("heard", 0))


async def test_no_guess_without_a_lead() -> None:
    audio = await speech(0.4, "Tell me about the weather.", 1.0)
    guesses: list[str | None] = []
    _, _, heard, _ = await listen(audio, TurnConfig(end_ms=300, transcript_lead_ms=0), guesses)
    assert guesses == [] and [h.text for h in heard] == ["segment 0"]
