"""The outputs beside the engine WebSocket: Live Link Face and the session recorder.

Each is an :class:`~facecast.engine.sinks.Output` (server-wide, :meth:`run` for its lifetime) that makes one
:class:`~facecast.engine.sinks.UtteranceSink` per session (:meth:`attach`). Sinks get the session's FINAL
face frames (its face timeline already applied), only after the engine confirmed playback, so what Live Link
shows, what the recorder keeps and what the WebSocket sends are the same values.

- Live Link: the session's subject plays each utterance from the engine's playback start (frame *i* at
  ``start + i / 60``) on the 60 fps pacer, and the session's idle face (from the same timeline) in between.
  A subject keeps its name across reconnects, and lingers on its idle face for a while after its session.
  Its sink is the generic :class:`PacedSink`: a paced output is an encoder, an Output class and this sink.
- Recorder: every utterance as a session folder (``audio.wav`` + ``shapes.csv``); the files are written on a
  worker thread (``asyncio.to_thread``), never on the event loop.

The server's outputs come from the settings in one place, :func:`outputs_from_settings`, and run for its
lifetime inside :func:`run_outputs`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..events import AudioOut, FaceOut, UtteranceEnded, UtteranceEvent, UtteranceStarted
from ..face.layers import AnimationLayer
from ..protocol.engine import ProtocolError
from ..takefolder import SessionWriter, new_session_folder
from .livelink import (
    LiveLinkPacer,
    LiveLinkSender,
    LiveLinkSubject,
    LiveLinkTarget,
    MonotonicClock,
    SubjectChannel,
    parse_targets,
)
from .pacer import FrameChannel, UtterancePlayback
from .sinks import Output, OutputRefused, SessionInfo
from .timeline import FaceTimeline

__all__ = [
    "PacedSink",
    "LiveLinkOutput",
    "SubjectTaken",
    "RecorderOutput",
    "RecorderSink",
    "outputs_from_settings",
    "run_outputs",
    "OUTPUT_SCHEMES",
]

log = logging.getLogger(__name__)


class PacedSink:
    """Plays one session's utterances on its channel of a pacer, from the engine's playback start: the sink
    of every paced output (Live Link now, VMC/OSC next), whatever its encoder.

    The channel's composer is the session's face timeline (its idle face between utterances); frames given to
    the sink are final and pushed as they arrive. ``info`` is what :meth:`describe` reports (called each time:
    it may read live values); ``release`` is called once on :meth:`close` (e.g. to remove the channel).
    """

    def __init__(
        self,
        channel: FrameChannel[Any],
        info: Callable[[], dict[str, object]] | None = None,
        release: Callable[[], None] | None = None,
    ) -> None:
        self.channel = channel
        self._info = info
        self._release = release
        self._utterance = -1
        self._playback: UtterancePlayback | None = None

    def describe(self) -> dict[str, object]:
        """For the client's ``welcome`` (see the output that made the sink)."""
        return self._info() if self._info is not None else {"channel": self.channel.name}

    def on_event(self, event: UtteranceEvent) -> None:
        if isinstance(event, UtteranceStarted):
            self._utterance, self._playback = event.utterance, None
        elif event.utterance != self._utterance or self._playback is None:
            return
        elif isinstance(event, FaceOut):
            self._playback.push(event.frames)
        elif isinstance(event, UtteranceEnded):
            self._playback.finish()

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        if utterance == self._utterance and self._playback is None:
            self._playback = self.channel.play(monotonic_time)

    def on_clear(self, utterance: int) -> None:
        if utterance == self._utterance:
            self.channel.clear()
            self._playback = None

    def close(self) -> None:
        """The session ended: its channel stops streaming."""
        release, self._release = self._release, None
        if release is not None:
            release()


class SubjectTaken(OutputRefused):
    """A hello asked for a Live Link subject that another live session drives (error ``subject_taken``); the
    message names the owner. Nothing was changed. (Tried again for a moment, in case that session is a
    reconnecting client's previous one that is still closing: :func:`~facecast.engine.sinks.attach_outputs`.)"""

    code = "subject_taken"


@dataclass(slots=True, eq=False)
class _Subject:
    """A subject on the pacer: driven by ``owner`` (a description, for the clash error), or lingering
    (``owner`` empty) on its last session's idle face until ``expiry`` removes it."""

    channel: SubjectChannel
    timeline: FaceTimeline
    owner: str
    since: float
    expiry: asyncio.TimerHandle | None = None


class LiveLinkOutput:
    """The server's Live Link Face output: one UDP sender and one 60 fps pacer for every subject.

    Each session gets a subject that streams the session's idle face from the moment it is attached, so the
    character never freezes between utterances, and plays its utterances through a :class:`PacedSink`:

    - a hello's ``subject`` is that exact subject; while another live session drives it, :meth:`attach`
      raises :class:`SubjectTaken` naming that session (nothing changes; the other session is unaffected);
    - otherwise the session's character's subject, else ``subject``; when a live session drives that name,
      the first free one of ``NAME-2``, ``NAME-3``...;
    - a name is free again as soon as its session ends, so a character that reconnects gets its subject
      back. Until then, and for ``linger`` seconds after, the subject keeps streaming the ended session's
      idle face (a MetaHuman never snaps to its bind pose between two sessions); a session that takes the
      name over within that time continues the same stream, else the subject stops (0: at once).

    Run it with :meth:`run` (or use it as an async context manager) for the server's lifetime; :meth:`attach`
    a session while it runs. Call from the event loop only.
    """

    def __init__(
        self, sender: LiveLinkSender, device_id: str = "Facecast", subject: str = "Facecast", *, linger: float = 30.0
    ) -> None:
        self._sender = sender
        self._device_id = device_id
        self._default_subject = subject
        self._linger = linger
        self.pacer = LiveLinkPacer(sender, clock=MonotonicClock())
        self._task: asyncio.Task[None] | None = None
        self._subjects: dict[str, _Subject] = {}

    async def run(self) -> None:
        """Open the sender and send every subject's frames until cancelled; then close the sender. Raises
        :class:`~facecast.errors.ConfigError` for a target that does not resolve."""
        await self._sender.open()
        try:
            await self.pacer.run()
        finally:
            self._cancel_expiries()
            self._sender.close()

    async def __aenter__(self) -> LiveLinkOutput:
        await self._sender.open()
        self._task = asyncio.create_task(self.run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
        self._cancel_expiries()
        self._sender.close()

    def describe(self) -> dict[str, object]:
        return {
            "output": "livelink",
            "targets": [str(t) for t in self._sender.targets],
            "subjects": [c.name for c in self.pacer.subjects],
        }

    @property
    def linger(self) -> float:
        """Seconds a subject streams its idle face after its session ended."""
        return self._linger

    @property
    def owners(self) -> dict[str, str]:
        """The subjects a live session (or :meth:`subject`) drives, by name: who drives it. Lingering subjects
        stream but are not listed."""
        return {name: held.owner for name, held in self._subjects.items() if held.owner}

    def attach(self, session: SessionInfo) -> PacedSink:
        """The session's subject (see the class), showing the session's face timeline. Raises
        :class:`SubjectTaken` when ``hello.subject`` is driven by another live session, and
        :class:`~facecast.protocol.engine.ProtocolError` (``bad_message``) for a name Live Link cannot carry;
        nothing changes then."""
        character = session.character
        explicit = session.hello.subject
        wanted = explicit or (character.subject if character is not None else "") or self._default_subject
        name = explicit or self._free_name(wanted)
        owner = f"a session of character {character.name!r}" if character is not None else "another session"
        channel = self._claim(name, session.timeline, owner)
        subject = channel.encoder.subject

        def info() -> dict[str, object]:  # the time.monotonic() time of frame number 0, for tools on this host
            return {"subject": subject.name, "device_id": subject.device_id, "epoch": self.pacer.epoch}

        return PacedSink(channel, info, partial(self._release, name, channel))

    def subject(
        self, wanted: str, seed: int = 0, *, composer: FaceTimeline | None = None
    ) -> tuple[SubjectChannel, AnimationLayer]:
        """A subject of the server's own named ``wanted`` (or ``wanted-2``, ... while a session or another
        such subject drives that name) showing ``composer``'s idle face (default: a new timeline seeded
        ``seed``, e.g. for a character streaming only its idle face); returns it and that timeline's layer.
        It streams until :meth:`release`\\ d (then lingers like a session's)."""
        timeline = composer if composer is not None else FaceTimeline(seed)
        channel = self._claim(self._free_name(wanted), timeline, "this server (a standing subject)")
        return channel, timeline.layer

    def release(self, name: str) -> None:
        """The subject called ``name`` is free again: it lingers on its idle face, then stops (see the class).
        Does nothing for a name that is not driven."""
        held = self._subjects.get(name)
        if held is not None:
            self._release(name, held.channel)

    def _free_name(self, wanted: str) -> str:
        """``wanted``, or ``wanted-2``, ``wanted-3``... : the first name no live session drives."""
        name, count = wanted, 1
        while (held := self._subjects.get(name)) is not None and held.owner:
            count += 1
            name = f"{wanted}-{count}"
        return name

    def _claim(self, name: str, timeline: FaceTimeline, owner: str) -> SubjectChannel:
        now = time.monotonic()
        held = self._subjects.get(name)
        if held is not None and held.owner:
            raise SubjectTaken(
                f"Live Link subject {name!r} is driven by {held.owner}, connected {now - held.since:.0f} s ago; "
                "ask for another subject, or end that session first"
            )
        if held is not None:  # lingering: this session takes the stream over, without a gap
            if held.expiry is not None:
                held.expiry.cancel()
            held.channel.composer = timeline
            held.timeline, held.owner, held.since, held.expiry = timeline, owner, now, None
            return held.channel
        try:
            subject = LiveLinkSubject(name, f"{self._device_id}:{name}")
            channel = self.pacer.add_subject(subject, timeline)
        except ValueError as exc:
            raise ProtocolError("bad_message", f"Live Link subject {name!r} cannot be used: {exc}") from None
        self._subjects[name] = _Subject(channel, timeline, owner, now)
        return channel

    def _release(self, name: str, channel: SubjectChannel) -> None:
        held = self._subjects.get(name)
        if held is None or held.channel is not channel or not held.owner:
            return
        held.owner = ""
        channel.clear()  # an utterance still playing stops; the idle face follows
        held.timeline.rewind(self.pacer.clock.now())
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if self._linger <= 0 or loop is None:
            self._remove(name, held)
        else:
            held.expiry = loop.call_later(self._linger, self._remove, name, held)

    def _remove(self, name: str, held: _Subject) -> None:
        """Stop the lingering subject ``held`` (unless a session took it over meanwhile)."""
        if self._subjects.get(name) is held and not held.owner:
            del self._subjects[name]
            self.pacer.remove_subject(name)

    def _cancel_expiries(self) -> None:
        for held in self._subjects.values():
            if held.expiry is not None:
                held.expiry.cancel()


class RecorderOutput:
    """``--record ROOT``: every session's utterances kept under ``ROOT`` (see :class:`RecorderSink`)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    async def run(self) -> None:
        """Nothing to hold open: waits until cancelled."""
        await asyncio.Event().wait()

    def attach(self, session: SessionInfo) -> RecorderSink:
        return RecorderSink(self.root)

    def describe(self) -> dict[str, object]:
        return {"output": "recorder", "folder": str(self.root)}


_Job = Callable[[], None]


class RecorderSink:
    """Keeps every utterance of a session as ``ROOT/<uuid>/audio.wav`` + ``shapes.csv`` (``--record``).

    Face frames are recorded as given (in a session: the final frames, as the character looked). An
    utterance that is interrupted is kept up to where it was cut, audio and face reconciled to match.

    Writing happens off the event loop: inside a running loop every file operation is queued, in order, to a
    worker that runs them with ``asyncio.to_thread``; :meth:`close` returns that worker so a caller can
    await the last writes (:attr:`folders` is complete then). Without a running loop (offline tools) the
    writes happen inline.

    Recording is best-effort: when the folder cannot be written (missing permission, full disk) the error
    is logged once, the recorder switches itself off (``disabled``) and raises nothing, so the session's
    replies go on unrecorded.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._writer: SessionWriter | None = None
        self._utterance = -1
        self._rate = 0
        self._jobs: deque[_Job] = deque()
        self._worker: asyncio.Task[None] | None = None
        self.folders: list[Path] = []
        self.disabled = False
        """Set after a write failed: nothing more is recorded in this session."""

    # -- the sink (event loop side: only queues work) ---------------------------------------------
    def on_event(self, event: UtteranceEvent) -> None:
        if self.disabled:
            return
        if isinstance(event, UtteranceStarted):
            self._utterance, self._rate = event.utterance, event.rate
            self._submit(lambda: self._open(event.rate))
        elif event.utterance != self._utterance:
            return
        elif isinstance(event, AudioOut):
            pcm = event.chunk.pcm
            self._submit(lambda: self._write(lambda w: w.append_audio(pcm)))
        elif isinstance(event, FaceOut):
            values = event.frames.values
            self._submit(lambda: self._write(lambda w: w.append_frames(values)))
        elif isinstance(event, UtteranceEnded):
            self._submit(self._finish)

    def on_playback_started(self, utterance: int, monotonic_time: float) -> None:
        return None

    def on_clear(self, utterance: int) -> None:
        if utterance == self._utterance and not self.disabled:
            self._submit(self._finish)

    def close(self) -> asyncio.Task[None] | None:
        """Finish the utterance in progress. Returns the pending writes' worker (await it to be sure they
        are done), or None when everything is written already."""
        self._submit(self._finish)
        return self._worker if self._worker is not None and not self._worker.done() else None

    async def aclose(self) -> None:
        """:meth:`close`, then wait for every write."""
        worker = self.close()
        if worker is not None:
            await worker

    def _submit(self, job: _Job) -> None:
        self._jobs.append(job)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no event loop: nothing to keep responsive, write now
            self._run_jobs()
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        while self._jobs:
            await asyncio.to_thread(self._run_jobs)

    # -- the worker (a thread, or inline without a loop) -----------------------------------------
    def _run_jobs(self) -> None:
        while self._jobs:
            job = self._jobs.popleft()
            if self.disabled:
                continue
            try:
                job()
            except (OSError, ValueError) as exc:  # ValueError: soundfile's "could not open" on some systems
                self._disable(exc)

    def _open(self, rate: int) -> None:
        self._finish()
        self._writer = SessionWriter(new_session_folder(self.root), rate)

    def _write(self, action: Callable[[SessionWriter], None]) -> None:
        if self._writer is not None:
            action(self._writer)

    def _disable(self, exc: Exception) -> None:
        self.disabled = True
        self._jobs.clear()
        writer, self._writer = self._writer, None
        log.error("recording to %s failed (%s); recording is off for this session, replies go on", self.root, exc)
        if writer is not None:
            with suppress(Exception):
                writer.close()

    def _finish(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        start = time.perf_counter()
        try:
            folder = writer.close()
        except (OSError, ValueError) as exc:
            log.error("could not finish recording of an utterance in %s: %s", self.root, exc)
            return
        self.folders.append(folder)
        log.debug("recorded %s in %.1f ms", folder, (time.perf_counter() - start) * 1000)


# ------------------------------------------------------------------------------------ from the settings

OUTPUT_SCHEMES = ("livelink", "record")
"""The URL schemes of ``Settings.outputs``."""


def outputs_from_settings(settings: Settings) -> list[Output]:
    """The server's outputs: ONE :class:`LiveLinkOutput` (one pacer) for every Live Link target of
    ``settings.livelink`` (``off`` switches those off) and of ``livelink://HOST:PORT`` entries of
    ``settings.outputs``, then one :class:`RecorderOutput` per folder of ``settings.record`` and of
    ``record:///DIR`` entries (``record://DIR`` is a relative folder), then ONE VMC output for every target of
    ``settings.vmc`` (``off`` switches it off), and a VTube Studio output for ``settings.vts``
    (:mod:`facecast.engine.vmc`, :mod:`facecast.engine.vts`). Duplicates are dropped.

    Builds objects only (nothing is opened). Raises :class:`~facecast.errors.ConfigError` for an unknown
    scheme or a malformed URL.
    """
    targets: dict[LiveLinkTarget, None] = dict.fromkeys(_livelink_targets(settings.livelink, "livelink"))
    folders: dict[str, None] = dict.fromkeys([settings.record] if settings.record else [])
    for url in settings.outputs:
        scheme, sep, rest = url.strip().partition("://")
        if not sep or scheme.lower() not in OUTPUT_SCHEMES:
            raise ConfigError(
                f"output {url!r}: expected one of "
                + ", ".join(f"{s}://..." for s in OUTPUT_SCHEMES)
                + " (livelink://HOST:PORT, record:///DIR)"
            )
        if scheme.lower() == "livelink":
            targets.update(dict.fromkeys(_livelink_targets([rest], f"output {url!r}")))
        elif rest:
            folders[rest] = None
        else:
            raise ConfigError(f"output {url!r}: name a folder, e.g. record:///var/facecast/takes")
    outputs: list[Output] = []
    if targets:
        sender = LiveLinkSender(tuple(targets))
        outputs.append(LiveLinkOutput(sender, settings.device_id, settings.subject, linger=settings.subject_linger_s))
    outputs.extend(RecorderOutput(folder) for folder in folders)
    if settings.vmc or settings.vts:  # the VTuber outputs (issue 21): imported here, they build on this module
        from .vmc import VmcOutput, parse_vmc_targets
        from .vts import VtsOutput

        vmc_targets = parse_vmc_targets(settings.vmc)
        if vmc_targets:
            outputs.append(VmcOutput(vmc_targets, linger=settings.subject_linger_s))
        if settings.vts:
            outputs.append(
                VtsOutput(settings.vts, token_file=settings.vts_token_file, linger=settings.subject_linger_s)
            )
    return outputs


def _livelink_targets(specs: Iterable[str], origin: str) -> tuple[LiveLinkTarget, ...]:
    try:
        return parse_targets(specs)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


@asynccontextmanager
async def run_outputs(outputs: Sequence[Output]) -> AsyncIterator[None]:
    """Run every output for the block's duration; on exit each is cancelled and awaited.

    An output that is also an async context manager is entered instead (so it can refuse to start: the
    :class:`LiveLinkOutput` raises :class:`~facecast.errors.ConfigError` for a target that does not resolve,
    and the server does not start); the others' :meth:`~facecast.engine.sinks.Output.run` runs as a task,
    and one that fails later is logged, the rest going on.
    """
    async with AsyncExitStack() as stack:
        tasks: list[asyncio.Task[None]] = []
        for output in outputs:
            if isinstance(output, AbstractAsyncContextManager):
                await stack.enter_async_context(output)
            else:
                task = asyncio.create_task(output.run())
                task.add_done_callback(partial(_report_end, output))
                tasks.append(task)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _report_end(output: Output, task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("output %s stopped: %s", output.describe(), task.exception())
