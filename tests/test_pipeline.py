from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing

import numpy as np
import pytest
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.errors import ServiceError
from facecast.events import AudioOut, EmotionOut, FaceOut, SentenceOut, UtteranceEnded, UtteranceStarted
from facecast.llm.history import ChatHistory
from facecast.offline import collect
from facecast.pipeline import run_turn, speak
from facecast.services import Services
from facecast.types import SpeechChunk, frames_for_samples


async def tokens(*parts: str, delay: float = 0.0):  # type: ignore[no-untyped-def]
    for part in parts:
        if delay:
            await asyncio.sleep(delay)
        yield part


async def test_speak_streams_contiguous_audio_and_face_in_order() -> None:
    events = [e async for e in speak(5, tokens("Hello there. ", "How are ", "you?"), FakeTTS(), FakeFace())]
    assert isinstance(events[0], UtteranceStarted) and events[0].utterance == 5
    assert isinstance(events[-1], UtteranceEnded)
    audio = [e.chunk for e in events if isinstance(e, AudioOut)]
    face = [e.frames for e in events if isinstance(e, FaceOut)]
    offsets = [c.offset for c in audio]
    assert offsets == sorted(offsets) and all(a.end == b.offset for a, b in zip(audio, audio[1:], strict=False))
    assert all(a.end == b.start for a, b in zip(face, face[1:], strict=False))
    end = events[-1]
    assert end.samples == audio[-1].end
    assert face[-1].end == end.frames == frames_for_samples(end.samples, 16000)
    assert [e.text for e in events if isinstance(e, SentenceOut)] == ["Hello there.", "How are you?"]
    assert end.text == "Hello there. How are you?"


async def test_second_sentence_starts_where_the_first_ended() -> None:
    events = [e async for e in speak(1, tokens("Hi. ", "Yo."), FakeTTS(), FakeFace())]
    sentences = [e for e in events if isinstance(e, SentenceOut)]
    assert sentences[0].start == 0
    assert sentences[1].start == 3 * 16000 // 20  # "Hi." is three characters of 50 ms


async def test_first_audio_arrives_before_the_llm_finishes() -> None:
    """Streaming: the first sentence is spoken while later tokens are still being produced."""
    produced: list[str] = []

    async def slow_tokens():  # type: ignore[no-untyped-def]
        for part in ["First one. ", "Second ", "part ", "comes ", "later."]:
            produced.append(part)
            yield part
            await asyncio.sleep(0.01)

    async with aclosing(speak(1, slow_tokens(), FakeTTS(), FakeFace())) as events:
        async for event in events:
            if isinstance(event, AudioOut):
                assert len(produced) < 5
                break


async def test_emotion_tags_become_events_and_are_not_spoken() -> None:
    tts = FakeTTS()
    events = [e async for e in speak(1, tokens("[happy] Great news! ", "[sad] Bye."), tts, FakeFace())]
    assert [e.emotion for e in events if isinstance(e, EmotionOut)] == ["happy", "sad"]
    assert tts.calls == ["Great news!", "Bye."]


async def test_cancelling_an_utterance_stops_every_stage() -> None:
    llm_alive = asyncio.Event()

    async def endless():  # type: ignore[no-untyped-def]
        while True:
            llm_alive.set()
            yield "more words. "
            await asyncio.sleep(0.001)

    events = speak(1, endless(), FakeTTS(delay=0.001), FakeFace())
    async for event in events:
        if isinstance(event, FaceOut):
            break
    await events.aclose()
    # the autouse fixture fails the test if any stage task is still running


async def test_consumer_task_cancelled_mid_stream_leaves_nothing() -> None:
    async def consume() -> None:
        async with aclosing(speak(1, tokens(*["word. "] * 200, delay=0.001), FakeTTS(), FakeFace())) as ev:
            async for _ in ev:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_reply_stopped_while_it_waits_for_the_pace_closes_the_speech_stream_at_once() -> None:
    """Barge-in while production is held back by the pace (the listener's playback): the voice's stream is
    closed by the time the stopped reply's task has ended (the pipeline closes it itself; the garbage
    collector's finaliser happens to be in time here too, but a stream kept alive anywhere would not be)."""
    closed: list[str] = []
    held = asyncio.Event()

    class Recording(FakeTTS):
        async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
            try:
                async for chunk in super().synthesize(text):
                    yield chunk
            finally:
                closed.append(text)

    async def pace(_samples: int) -> None:
        held.set()
        await asyncio.Event().wait()  # playback never catches up

    async def consume() -> None:
        async with aclosing(speak(1, tokens("A long sentence to say. "), Recording(), FakeFace(), pace=pace)) as ev:
            async for _ in ev:
                pass

    task = asyncio.create_task(consume())
    await held.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed == ["A long sentence to say."]  # before any other task ran


async def test_llm_failure_surfaces_as_service_error() -> None:
    async def failing():  # type: ignore[no-untyped-def]
        yield "Partial answer. "
        raise ServiceError("cannot reach the LLM")

    with pytest.raises(ServiceError, match="cannot reach"):
        await collect(speak(1, failing(), FakeTTS(), FakeFace()))


async def test_run_turn_records_history_and_streams_reply() -> None:
    llm = FakeLLM("Hello player. Good day!")
    history = ChatHistory("be nice")
    services = Services(FakeSTT(), llm, FakeTTS(), FakeFace())
    reply = await collect(run_turn(1, "hi", services, history))
    assert reply.text == "Hello player. Good day!"
    assert [m.role for m in llm.seen[0]] == ["system", "user"]
    assert [(m.role, m.content) for m in history.turns] == [("user", "hi"), ("assistant", "Hello player. Good day!")]
    assert len(reply.face) == frames_for_samples(len(reply.audio), reply.rate)
    assert np.abs(reply.audio).max() > 0.1


async def test_interrupted_turn_keeps_only_sentences_already_spoken() -> None:
    history = ChatHistory("")
    services = Services(FakeSTT(), FakeLLM("One. Two. Three. Four.", delay=0.02), FakeTTS(), FakeFace())
    async with aclosing(run_turn(1, "count", services, history)) as events:
        async for event in events:
            if isinstance(event, SentenceOut) and event.text == "Two.":
                break
    assert [(m.role, m.content) for m in history.turns] == [("user", "count"), ("assistant", "One. Two.")]


class _StarvedPlayback:
    """A :class:`~facecast.pipeline.Pace` whose listener has heard everything produced (a slow model)."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def __call__(self, produced: int) -> None:
        return None

    def ahead(self, produced: int) -> float:
        self.asked.append(produced)
        return 0.0 if produced else float("inf")  # playback runs once the first audio exists


async def test_a_slow_model_behind_a_starved_listener_is_spoken_as_it_writes() -> None:
    playback = _StarvedPlayback()
    words = tokens("Hello there. ", "I was at the ", "old mill ", "all day.", delay=0.05)
    events = [e async for e in speak(1, words, FakeTTS(), FakeFace(), pace=playback)]
    said = [e.text for e in events if isinstance(e, SentenceOut)]
    assert said[0] == "Hello there."
    assert len(said) > 2 and " ".join(said) == "Hello there. I was at the old mill all day."  # nothing lost
    assert playback.asked and max(playback.asked) > 0  # asked how much audio the listener has left
