"""The streaming turn pipeline: tokens -> sentences -> speech chunks -> face frames, all concurrently.

:func:`speak` turns a text stream into one utterance's event stream. The sentence splitter hands each
speakable piece to TTS the moment it is complete, each audio chunk is yielded and fed to the face
animator as soon as it exists, and face frames are yielded as soon as the animator's lookahead allows,
so the first sentence is heard and animated while the LLM is still writing the rest.

Closing the returned iterator (``aclose()``, or cancelling the task that iterates it) cancels every stage
of the utterance and waits for them to stop: nothing keeps running.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Any, Protocol

from .actions import Action, ActionCall, ActionExtractor, split_markers
from .aio import aclose, closing
from .events import (
    ActionOut,
    AudioOut,
    EmotionOut,
    FaceOut,
    SentenceOut,
    UtteranceEnded,
    UtteranceEvent,
    UtteranceStarted,
)
from .llm.history import ChatHistory
from .llm.reasoning import without_reasoning
from .roles import FaceAnimator, LanguageModel, SpeechToText, TextToSpeech
from .services import Services
from .text import SplitterConfig, parse_emotion_tags, split_sentences
from .types import AudioChunk, ChatMessage, Phoneme, SpeechChunk, Word, frames_for_samples

__all__ = [
    "Pace",
    "run_stages",
    "speak",
    "say_text",
    "takes_tools",
    "open_reply",
    "reply_tokens",
    "extract_actions",
    "run_turn",
    "transcribe_all",
]


class Pace(Protocol):
    """How a reply's production follows the listener's playback of it."""

    def __call__(self, produced: int) -> Awaitable[None]:
        """Awaited by :func:`speak` with the samples produced so far; returns when production may go on."""
        ...

    def ahead(self, produced: int) -> float:
        """Seconds of the ``produced`` samples the listener has not heard yet (``inf`` before playback
        starts): :func:`speak` speaks the words it holds rather than let this run out."""
        ...


_DONE = object()


def _shift(chunk: SpeechChunk, base: int) -> SpeechChunk:
    if base == 0:
        return chunk
    audio = chunk.audio
    return SpeechChunk(
        AudioChunk(audio.pcm, audio.rate, audio.offset + base),
        tuple(Phoneme(p.symbol, p.start + base, p.end + base, p.alphabet) for p in chunk.phonemes),
        tuple(Word(w.text, w.start + base, w.end + base) for w in chunk.words),
    )


async def run_stages(
    utterance: int,
    rate: int,
    produce: Callable[[], Awaitable[None]],
    face: FaceAnimator,
    speech: asyncio.Queue[SpeechChunk | None],
    out: asyncio.Queue[Any],
) -> AsyncIterator[UtteranceEvent]:
    """``UtteranceStarted``, then the events of an utterance's two stages, run concurrently, until both end.

    ``produce`` puts its events on ``out`` and the speech chunks to animate on ``speech``, and must put ``None``
    on ``speech`` when it ends (also on failure); ``face`` animates those chunks into ``FaceOut`` events. An
    exception in either stage is raised from this iterator; closing it cancels both and waits for them. The
    caller yields ``UtteranceEnded`` after it.
    """

    async def chunks() -> AsyncIterator[SpeechChunk]:
        while (chunk := await speech.get()) is not None:
            yield chunk

    async def animate() -> None:
        frames = face.animate(chunks())
        try:
            async for block in frames:
                out.put_nowait(FaceOut(utterance, block))
        finally:
            await aclose(frames)

    async def run(stage: Callable[[], Awaitable[None]]) -> None:
        try:
            await stage()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
            out.put_nowait(exc)
        finally:
            out.put_nowait(_DONE)

    tasks = [asyncio.create_task(run(produce)), asyncio.create_task(run(animate))]
    try:
        yield UtteranceStarted(utterance, rate)
        running = len(tasks)
        while running:
            item = await out.get()
            if item is _DONE:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


async def speak(
    utterance: int,
    text: AsyncIterable[str],
    tts: TextToSpeech,
    face: FaceAnimator,
    splitter: SplitterConfig | None = None,
    pace: Pace | None = None,
    found: Sequence[ActionCall | str] | None = None,
) -> AsyncIterator[UtteranceEvent]:
    """Speak and animate a text stream as utterance ``utterance``.

    With ``found`` (an :class:`~facecast.actions.ActionExtractor`'s, filled as ``text`` streams), the
    action markers in the text become ``ActionOut`` events: before a sentence's audio when the marker
    opens it, after it otherwise.

    Yields ``UtteranceStarted`` first and ``UtteranceEnded`` last; in between, ``SentenceOut`` /
    ``EmotionOut`` before the audio they introduce, ``AudioOut`` chunks with contiguous offsets, and
    ``FaceOut`` blocks with contiguous frame numbers, each face frame after the audio it belongs to.
    An exception in any stage (e.g. :class:`facecast.errors.ServiceError` from the LLM) is raised
    from this iterator after the other stages are stopped. ``pace``, if given, is awaited with the samples
    produced so far after each speech chunk: it holds production back (e.g. to the listener's playback).
    """
    rate = tts.sample_rate
    out: asyncio.Queue[Any] = asyncio.Queue()
    speech: asyncio.Queue[SpeechChunk | None] = asyncio.Queue()
    spoken: list[str] = []
    end = 0

    async def produce() -> None:
        nonlocal end
        try:
            runway = None if pace is None else lambda: pace.ahead(end)
            async for piece in split_sentences(text, splitter, runway):
                clean, emotions = parse_emotion_tags(piece)
                before: list[int] = []
                after: list[int] = []
                if found is not None:
                    words = ""
                    for part in split_markers(clean):
                        if isinstance(part, int):
                            (after if words.strip() else before).append(part)
                        else:
                            words += part
                    clean = " ".join(words.split())
                clean = clean.strip()
                for _, emotion in emotions:
                    out.put_nowait(EmotionOut(utterance, emotion.value, end))
                for index in before:
                    out.put_nowait(_action(utterance, found, index, end))
                if clean:
                    out.put_nowait(SentenceOut(utterance, clean, end))
                    spoken.append(clean)
                    base = end
                    # closed here, not left to the garbage collector's finaliser: a reply cancelled while it
                    # waits for the pace (barge-in) stops the synthesis before this task ends
                    async with closing(tts.synthesize(clean)) as stream:
                        async for chunk in stream:
                            shifted = _shift(chunk, base)
                            end = max(end, shifted.audio.end)
                            out.put_nowait(AudioOut(utterance, shifted.audio))
                            speech.put_nowait(shifted)
                            if pace is not None:
                                await pace(end)
                for index in after:
                    out.put_nowait(_action(utterance, found, index, end))
        finally:
            speech.put_nowait(None)

    async with closing(run_stages(utterance, rate, produce, face, speech, out)) as events:
        async for event in events:
            yield event
    yield UtteranceEnded(utterance, end, frames_for_samples(end, rate), " ".join(spoken))


def _action(utterance: int, found: Sequence[ActionCall | str] | None, index: int, start: int) -> ActionOut:
    item = found[index] if found is not None and 0 <= index < len(found) else "an unknown action marker"
    if isinstance(item, ActionCall):
        return ActionOut(utterance, item, start)
    return ActionOut(utterance, None, start, item)


async def extract_actions(text: AsyncIterable[str], extractor: ActionExtractor) -> AsyncIterator[str]:
    """``text`` with its action calls replaced by markers (see :class:`~facecast.actions.ActionExtractor`)."""
    async for piece in text:
        if passed := extractor.feed(piece):
            yield passed
    if tail := extractor.flush():
        yield tail


def say_text(
    utterance: int, text: str, tts: TextToSpeech, face: FaceAnimator, pace: Pace | None = None
) -> AsyncIterator[UtteranceEvent]:
    """:func:`speak` for a text known in full (no LLM): the ``say`` workflow and ``facecast say``."""
    return speak(utterance, _once(text), tts, face, pace=pace)


async def _once(text: str) -> AsyncIterator[str]:
    yield text


def takes_tools(llm: LanguageModel) -> bool:
    """Whether ``llm.stream`` takes ``tools`` (actions offered natively; others read them in the prompt)."""
    return "tools" in inspect.signature(llm.stream).parameters


def open_reply(
    llm: LanguageModel, messages: Sequence[ChatMessage], actions: Sequence[Action] = ()
) -> AsyncIterator[str]:
    """``llm.stream(messages)``, with ``tools=actions`` for a model whose ``stream`` takes tools (OpenAI tool
    calling, the local model's chat template); the others find them described in the system prompt."""
    if actions and takes_tools(llm):
        return llm.stream(messages, tools=actions)  # type: ignore[call-arg]
    return llm.stream(messages)


async def reply_tokens(
    llm: LanguageModel,
    messages: Sequence[ChatMessage],
    on_first_token: Callable[[], None] | None = None,
    stream: AsyncIterator[str] | None = None,
    actions: Sequence[Action] = (),
) -> AsyncIterator[str]:
    """Stream the LLM's reply to ``messages``; ``on_first_token`` is called when the first piece arrives.
    ``stream``: a reply to ``messages`` already under way (a speculation), used instead of a new one.
    ``actions`` are offered as tools to a model that takes them (see :func:`open_reply`)."""
    source = stream if stream is not None else open_reply(llm, messages, actions)
    visible = without_reasoning(source)  # <think>...</think> is never spoken, animated or remembered
    first = True
    try:
        async for token in visible:
            if first and on_first_token is not None:
                on_first_token()
            first = False
            yield token
    finally:
        await aclose(visible)
        await aclose(source)  # closing the model's stream stops its generation


async def run_turn(
    utterance: int,
    user_text: str,
    services: Services,
    history: ChatHistory,
    splitter: SplitterConfig | None = None,
    *,
    record_reply: bool = True,
    on_first_token: Callable[[], None] | None = None,
    pace: Pace | None = None,
    tokens: AsyncIterator[str] | None = None,
    actions: Sequence[Action] = (),
) -> AsyncIterator[UtteranceEvent]:
    """One conversational turn from the user's text: LLM reply, spoken and animated, streamed.

    ``tokens``: the LLM's reply to exactly ``history.messages(user_text)``, already started (a speculation
    adopted at the endpoint); None asks the LLM now. ``actions``: what the character may do; the calls in the
    reply become ``ActionOut`` events in order with its sentences, and are never spoken.

    The user's text enters the history at once. With ``record_reply`` the sentences sent (all of them,
    or those sent before the turn was cancelled) are recorded as the reply when the turn ends; the engine
    link passes ``False`` and records what the player actually heard from the playback position instead.
    """
    messages = history.messages(user_text)
    history.add_user(user_text)
    spoken: list[str] = []
    pieces = reply_tokens(services.llm, messages, on_first_token, tokens, actions)
    found: list[ActionCall | str] | None = None
    if actions:
        extractor = ActionExtractor(actions)
        found = extractor.found
        pieces = extract_actions(pieces, extractor)
    events = speak(utterance, pieces, services.tts, services.face, splitter, pace, found)
    try:
        async for event in events:
            if isinstance(event, SentenceOut):
                spoken.append(event.text)
            yield event
    finally:
        await aclose(events)
        if record_reply:
            history.add_assistant(" ".join(spoken))


async def transcribe_all(stt: SpeechToText, audio: AsyncIterable[AudioChunk]) -> str:
    """Run ``stt`` over a whole audio stream and return its final transcript."""
    final = ""
    stream = stt.transcribe(audio)
    try:
        async for result in stream:
            if result.final:
                final = result.text
    finally:
        await aclose(stream)
    return final
