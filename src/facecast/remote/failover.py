"""Failover wrappers: one per role, each itself an implementation of that role over several members.

A member is any implementation of the role: a client of a standalone service (``ws://...``) or a local
provider (``--tts hibari,ws://gpu1:8768,espeak``). Members are tried in the configured order. When one fails
(:class:`facecast.errors.ServiceError`: refused, closed, "connects then closes", dead or hung by heartbeat,
past a deadline, garbage) the request moves to the next one at once, a :class:`FailoverEvent` is reported
(log, ``facecast_failovers_total``, callback), and the failed member is probed in the background with
jittered exponential backoff (from ``backoff_initial``, tens of ms) until it answers (a service: its endpoint
answers a probe twice; a local provider with a ``probe()`` coroutine: that succeeds; any other local
provider: after the backoff); new requests then prefer it again. When every member is down a request still
tries them all, ``rounds`` times, sleeping a jittered backoff between rounds.

What each role guarantees across a failover:

- STT: the user's audio is kept from the first chunk until the final transcript, so the backup gets it whole;
- LLM: before the first token the request is retried as is; after it, the backup is asked to continue from
  the partial reply (an ``assistant`` message) and any restart of the already emitted text is dropped, so
  nothing is repeated;
- TTS: the sentence is synthesised again and the samples already yielded are skipped, so audio is neither
  repeated nor dropped (exact for the same voice on every member; a different backup voice finishes the
  sentence in its own voice). The wrapper's rate is the highest of its members'; a member with another rate
  is resampled (its timing scaled). A member that delivers no audio chunk within its deadline
  (:class:`AudioDeadline`) is abandoned for the next one, soon enough for the backup's audio to reach the
  listener before the audio already buffered there runs out;
- face: the utterance's speech so far is replayed to the backup and only frames not yet yielded are kept.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..aio import closing
from ..errors import InputError, ServiceError
from ..metrics import Metrics
from ..protocol.service import Role
from ..roles import FaceAnimator, LanguageModel, SpeechToText, TextToSpeech
from ..tts.resampled import speech_at
from ..types import AudioChunk, ChatMessage, FaceFrames, SpeechChunk, Transcript
from .client import ClientOptions, Endpoint, RemoteFace, RemoteLLM, RemoteSTT, RemoteTTS
from .puller import Puller

__all__ = [
    "AudioDeadline",
    "FailoverEvent",
    "FailoverOptions",
    "FailoverSTT",
    "FailoverLLM",
    "FailoverTTS",
    "FailoverFace",
    "make_failover",
    "wrap_failover",
    "member_name",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FailoverEvent:
    """A request moved from one endpoint to another (``kind="failover"``) or an endpoint is back (``"restored"``)."""

    role: str
    kind: str
    from_url: str
    to_url: str
    reason: str
    progress: str
    """What the failed attempt had already delivered, e.g. ``"12000 samples"``."""
    at: float


@dataclass(frozen=True, slots=True)
class AudioDeadline:
    """How long a TTS member may take to deliver its next audio chunk before the sentence moves to the next
    member (which synthesises it again and continues after the samples already delivered).

    The listener has about ``budget`` seconds of audio buffered whenever the wrapper is asked for more (the
    engine session produces the reply ``lead`` seconds ahead of playback,
    :attr:`facecast.engine.context.SessionConfig.lead`, 1 s), so a member is abandoned at the latest
    ``budget - margin - b`` seconds into a wait, ``b`` being the slowest recent first chunk of the member it
    would move to: the backup's audio then arrives before the buffer runs dry (no underrun). Sooner when the
    member is known to be fast: its deadline is ``factor`` x its slowest recent wait of the same kind (first
    chunk of a sentence, or between chunks), but never under ``floor``. A member with no history yet gets the
    latest deadline. So a hung member is replaced in ``floor`` (0.4 s) to 0.9 s, and a slow but steady one
    (a neural voice that renders a sentence before its first chunk) is not abandoned for being slow.

    Waits are counted from the moment the wrapper's caller asks for the next chunk; time the caller spends
    holding a chunk (pacing production to playback) is not counted. Deadlines apply only while another
    member is up: a lone member, or one whose backups are all down, is waited for (its client's own
    heartbeat and stall timeouts still apply).
    """

    budget: float = 1.0
    """Seconds of audio the listener holds when more is asked for: keep it equal to the session's lead."""
    margin: float = 0.1
    """Seconds kept for the switch itself (scheduling, the hop to a remote backup)."""
    floor: float = 0.4
    """The shortest deadline (event-loop delays on a busy machine must not look like a hang)."""
    factor: float = 2.0
    history: int = 16
    """Waits remembered per member and kind."""

    def deadline(self, waits: Sequence[float], backup_firsts: Sequence[float]) -> float:
        """The deadline for a member whose recent waits of this kind are ``waits``, its backup's recent first
        chunks ``backup_firsts`` (pure: no clock)."""
        latest = max(self.floor, self.budget - self.margin - max(backup_firsts, default=0.0))
        if not waits:
            return latest
        return min(latest, max(self.floor, self.factor * max(waits)))


@dataclass(frozen=True, slots=True)
class FailoverOptions:
    client: ClientOptions = ClientOptions()
    backoff_initial: float = 0.02
    backoff_max: float = 2.0
    rounds: int = 3
    """Passes over all endpoints before a request gives up when none answers."""
    on_event: Callable[[FailoverEvent], None] | None = None
    metrics: Metrics | None = None
    tts_deadline: AudioDeadline | None = AudioDeadline()
    """When a TTS member that delivers no audio is abandoned (None: only on its client's own timeouts)."""


def _jitter(base: float) -> float:
    return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not cryptography


def member_name(member: object) -> str:
    """How a member appears in events and logs: a service's URL, else its provider's ``repr``."""
    endpoint = getattr(member, "endpoint", None)
    if isinstance(endpoint, Endpoint):
        return endpoint.url
    return getattr(member, "failover_name", None) or type(member).__name__


class _Group(Generic[T]):
    """The members of one role: their order, which are down, and the background probes."""

    def __init__(
        self, role: Role, clients: Sequence[T], options: FailoverOptions, names: Sequence[str] | None = None
    ) -> None:
        if not clients:
            raise ValueError("a failover group needs at least one member")
        self.role = role
        self.clients = list(clients)
        self.names = list(names) if names is not None else [member_name(c) for c in clients]
        if len(self.names) != len(self.clients):
            raise ValueError("one name per failover member")
        self.options = options
        self.down: set[int] = set()
        self._probes: dict[int, asyncio.Task[None]] = {}

    async def _probe_once(self, index: int) -> None:
        """Raise :class:`ServiceError` while member ``index`` does not answer."""
        member = self.clients[index]
        endpoint = getattr(member, "endpoint", None)
        if isinstance(endpoint, Endpoint):
            await endpoint.probe()
            await asyncio.sleep(self.options.client.quick_close)
            await endpoint.probe()  # still there: it did not just connect and close
            return
        probe = getattr(member, "probe", None)
        if probe is not None:
            await probe()

    async def attempts(self) -> AsyncIterator[tuple[int, T]]:
        """Endpoints to try for one request: up ones in order, then down ones; backoff between rounds."""
        delay = self.options.backoff_initial
        for round_ in range(self.options.rounds):
            if round_:
                await asyncio.sleep(_jitter(delay))
                delay = min(self.options.backoff_max, delay * 2)
            order = [i for i in range(len(self.clients)) if i not in self.down]
            order += [i for i in range(len(self.clients)) if i in self.down]
            for index in order:
                yield index, self.clients[index]

    def failed(self, index: int, error: ServiceError, progress: str, next_index: int | None) -> None:
        """Record a failure of endpoint ``index`` and report the move to ``next_index``."""
        url = self.names[index]
        if index not in self.down:
            self.down.add(index)
            if index not in self._probes or self._probes[index].done():
                self._probes[index] = asyncio.create_task(self._probe(index))
        to = self.names[next_index] if next_index is not None else ""
        reason = getattr(error, "reason", str(error))
        if getattr(error, "quick_close", False):
            reason += " (connects then closes)"
        self._report(FailoverEvent(self.role, "failover", url, to, reason, progress, time.time()))

    def _report(self, event: FailoverEvent) -> None:
        log.warning(
            "%s %s: %s -> %s (%s; already delivered: %s)",
            event.role,
            event.kind,
            event.from_url,
            event.to_url or "nothing left",
            event.reason,
            event.progress or "nothing",
        )
        opts = self.options
        if opts.metrics is not None and event.kind == "failover":
            opts.metrics.failovers.labels(self.role).inc()
        if opts.on_event is not None:
            opts.on_event(event)

    async def _probe(self, index: int) -> None:
        name = self.names[index]
        delay = self.options.backoff_initial
        while index in self.down:
            await asyncio.sleep(_jitter(delay))
            delay = min(self.options.backoff_max, delay * 2)
            try:
                await self._probe_once(index)
            except ServiceError:
                continue
            self.down.discard(index)
            self._report(FailoverEvent(self.role, "restored", name, name, "answering again", "", time.time()))

    def succeeded(self, index: int) -> None:
        if index in self.down:
            self.down.discard(index)

    async def aclose(self) -> None:
        probes = list(self._probes.values())
        for task in probes:
            task.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        self._probes.clear()
        for member in self.clients:
            close = getattr(member, "aclose", None)
            if close is not None:
                await close()


def _next(group: _Group[Any], index: int) -> int | None:
    count = len(group.clients)
    for step in range(1, count):
        if (index + step) % count not in group.down:
            return (index + step) % count
    return (index + 1) % count if count > 1 else None


class _Replay(Generic[T]):
    """Keeps every item of a source stream so each attempt can replay it from the start, then follow it live.

    A pump task owns the source, so an attempt that fails mid-stream cannot end or lose the source.
    """

    def __init__(self, source: AsyncIterable[T]) -> None:
        self.items: list[T] = []
        self.ended = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterable[T]) -> None:
        try:
            async for item in source:
                self.items.append(item)
                self._changed.set()
        except Exception as exc:  # noqa: BLE001 - re-raised to the attempt reading the replay
            self.error = exc
        finally:
            self.ended = True
            self._changed.set()

    async def replay(self) -> AsyncIterator[T]:
        i = 0
        while True:
            if i < len(self.items):
                i += 1
                yield self.items[i - 1]
                continue
            if self.ended:
                if self.error is not None:
                    raise self.error
                return
            self._changed.clear()
            await self._changed.wait()

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class _Base(Generic[T]):
    role: Role

    def __init__(
        self, clients: Sequence[T], options: FailoverOptions | None = None, names: Sequence[str] | None = None
    ) -> None:
        self.group = _Group(self.role, clients, options or FailoverOptions(), names)

    def _fail(self, index: int, error: ServiceError, progress: str) -> None:
        self.group.failed(index, error, progress, _next(self.group, index))

    def _give_up(self, last: ServiceError | None) -> ServiceError:
        return ServiceError(f"every {self.role} service failed; last: {last}")

    async def aclose(self) -> None:
        """Stop the background probes and close every pooled connection."""
        await self.group.aclose()

    async def warm_up(self) -> None:
        """Warm every member that can be warmed (load local models, learn services' rates); a member that
        fails here is left to the failover logic."""
        for member, name in zip(self.group.clients, self.group.names, strict=True):
            warm = getattr(member, "warm_up", None)
            if warm is None:
                continue
            try:
                await warm()
            except ServiceError as exc:
                log.warning("%s member %s could not be warmed up: %s", self.role, name, exc)


class FailoverSTT(_Base[SpeechToText]):
    role: Role = "stt"

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        replay = _Replay(audio)
        last: ServiceError | None = None
        try:
            async for index, client in self.group.attempts():
                try:
                    async with closing(client.transcribe(replay.replay())) as transcripts:
                        async for text in transcripts:
                            yield text
                    self.group.succeeded(index)
                    return
                except InputError:
                    raise
                except ServiceError as exc:
                    last = exc
                    self._fail(index, exc, f"{sum(len(c.pcm) for c in replay.items)} samples of input kept")
            raise self._give_up(last)
        finally:
            await replay.aclose()


class FailoverLLM(_Base[LanguageModel]):
    role: Role = "llm"

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        said = ""
        last: ServiceError | None = None
        async for index, client in self.group.attempts():
            history = list(messages) if not said else [*messages, ChatMessage("assistant", said)]
            held, skipping = "", bool(said)
            try:
                async with closing(client.stream(history)) as tokens:
                    async for token in tokens:
                        if skipping:
                            held += token
                            if said.startswith(held):
                                continue  # the backup restarted the reply: drop what was already said
                            token = held[len(said) :] if held.startswith(said) else held
                            skipping = False
                        if token:
                            said += token
                            yield token
                self.group.succeeded(index)
                return
            except InputError:
                raise
            except ServiceError as exc:
                last = exc
                self._fail(index, exc, f"{len(said)} characters of reply")
        raise self._give_up(last)


def _trim_speech(chunk: SpeechChunk, sent: int) -> SpeechChunk | None:
    audio = chunk.audio
    if audio.end <= sent:
        return None
    if audio.offset >= sent:
        return chunk
    cut = sent - audio.offset
    return SpeechChunk(
        AudioChunk(audio.pcm[cut:], audio.rate, sent),
        tuple(p for p in chunk.phonemes if p.start >= sent),
        tuple(w for w in chunk.words if w.start >= sent),
    )


class _Stalled(ServiceError):
    """A TTS member delivered no audio chunk within its deadline (:class:`AudioDeadline`)."""

    def __init__(self, name: str, deadline: float, first: bool) -> None:
        self.reason = f"no {'first ' if first else ''}audio within {deadline:.2f} s (stalled)"
        super().__init__(f"{name}: {self.reason}")


class FailoverTTS(_Base[TextToSpeech]):
    role: Role = "tts"

    def __init__(
        self,
        clients: Sequence[TextToSpeech],
        options: FailoverOptions | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(clients, options, names)
        history = self.group.options.tts_deadline.history if self.group.options.tts_deadline else 1
        self._firsts = [deque[float](maxlen=history) for _ in self.group.clients]
        self._gaps = [deque[float](maxlen=history) for _ in self.group.clients]
        self._abandoned: set[asyncio.Task[None]] = set()

    @property
    def sample_rate(self) -> int:
        """The highest rate of the members (the others are resampled to it)."""
        return max(client.sample_rate for client in self.group.clients)

    def deadline(self, index: int, first: bool) -> float | None:
        """Seconds member ``index`` may now take to its next chunk (its first of a sentence when ``first``), or
        None when it is not held to one (no deadline configured, or no other member up to move to)."""
        rule = self.group.options.tts_deadline
        if rule is None or all(i == index or i in self.group.down for i in range(len(self.group.clients))):
            return None
        backup = _next(self.group, index)
        return rule.deadline(
            (self._firsts if first else self._gaps)[index], self._firsts[backup] if backup is not None else ()
        )

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        sent = 0
        rate = self.sample_rate
        last: ServiceError | None = None
        async for index, client in self.group.attempts():
            puller = Puller(speech_at(client, text, rate))
            first = True
            try:
                while True:
                    deadline = self.deadline(index, first)
                    asked = time.monotonic()
                    try:
                        chunk = await puller.next(deadline)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise _Stalled(self.group.names[index], deadline or 0.0, first) from None
                    (self._firsts if first else self._gaps)[index].append(time.monotonic() - asked)
                    first = False
                    trimmed = _trim_speech(chunk, sent)
                    if trimmed is not None and len(trimmed.audio.pcm):
                        sent = trimmed.audio.end
                        yield trimmed
            except InputError:
                raise
            except _Stalled as exc:  # close the stalled member in the background: the backup starts now
                puller.task.cancel()
                self._abandoned.add(puller.task)
                puller.task.add_done_callback(self._abandoned.discard)
                last = exc
                self._fail(index, exc, f"{sent} samples")
                continue
            except ServiceError as exc:
                last = exc
                self._fail(index, exc, f"{sent} samples")
                continue
            finally:
                if puller.task not in self._abandoned:
                    await puller.aclose()
            self.group.succeeded(index)
            return
        raise self._give_up(last)

    async def aclose(self) -> None:
        """Wait for abandoned members' streams to close (a few seconds at most, then they are cancelled again),
        stop the background probes and close every pooled connection."""
        if self._abandoned:
            _, late = await asyncio.wait(set(self._abandoned), timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await super().aclose()


class FailoverFace(_Base[FaceAnimator]):
    role: Role = "face"

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        replay = _Replay(speech)
        done = 0
        last: ServiceError | None = None
        try:
            async for index, client in self.group.attempts():
                try:
                    async with closing(client.animate(replay.replay())) as blocks:
                        async for block in blocks:
                            if block.end <= done:
                                continue
                            if block.start < done:
                                block = FaceFrames(done, block.values[done - block.start :])
                            done = block.end
                            yield block
                    self.group.succeeded(index)
                    return
                except InputError:
                    raise
                except ServiceError as exc:
                    last = exc
                    self._fail(index, exc, f"{done} face frames")
            raise self._give_up(last)
        finally:
            await replay.aclose()


def make_failover(
    role: Role, urls: Sequence[str], options: FailoverOptions | None = None, tts_rate: int = 22050
) -> FailoverSTT | FailoverLLM | FailoverTTS | FailoverFace:
    """The failover wrapper of ``role`` over the services at ``urls`` (tried in this order)."""
    opts = options or FailoverOptions()
    if role == "stt":
        return FailoverSTT([RemoteSTT(u, opts.client) for u in urls], opts)
    if role == "llm":
        return FailoverLLM([RemoteLLM(u, opts.client) for u in urls], opts)
    if role == "tts":
        return FailoverTTS([RemoteTTS(u, opts.client, tts_rate) for u in urls], opts)
    return FailoverFace([RemoteFace(u, opts.client) for u in urls], opts)


def wrap_failover(
    role: Role, members: Sequence[Any], names: Sequence[str], options: FailoverOptions | None = None
) -> FailoverSTT | FailoverLLM | FailoverTTS | FailoverFace:
    """The failover wrapper of ``role`` over ``members`` (any implementations of the role, local or remote),
    tried in this order; ``names`` label them in events and logs."""
    kinds = {"stt": FailoverSTT, "llm": FailoverLLM, "tts": FailoverTTS, "face": FailoverFace}
    wrapper: FailoverSTT | FailoverLLM | FailoverTTS | FailoverFace = kinds[role](members, options, names)
    return wrapper
