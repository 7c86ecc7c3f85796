"""One WebRTC peer: the second transport of the engine session (the first is the WebSocket).

The session (:class:`~facecast.engine.session.EngineSession`) is driven exactly as over the WebSocket, the
same JSON messages and binary frames (docs/protocol.md), split over the peer's three paths:

- **data channel** (``facecast``, ordered and reliable): every JSON message both ways, the face frames
  (binary, kind 3) to the page, and optionally binary microphone frames (kind 1) from it;
- **reply track**: the reply audio (binary kind 2 from the session) goes into the
  :class:`~facecast.http.rtc_audio.ReplyTrack` instead of the channel, and plays as Opus in real time;
  ``clear_buffer`` drops what the track still holds (barge-in stops the audio at the server);
- **microphone track**: the browser's echo-cancelled microphone (Opus), decoded, mixed to mono, resampled to
  16 kHz and fed to the session as binary microphone frames, as a WebSocket client sends them.

One more server message exists on this transport only: ``audio_onset {utterance, onset}``, the utterance
sample (48 kHz) of the first voiced sample of the utterance's audio (``onset`` null for an utterance that has
none), sent as soon as that sample is queued on the track. The page anchors its face clock and its
``playback_started`` on the moment it hears that sample (docs/protocol.md, "WebRTC").

Inbound frames from the channel and the microphone go through one queue and one task, in order, like the
WebSocket's receive loop, at most ``max_messages_per_s`` channel messages a second (token bucket).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

import numpy as np

from ..audio import Resampler, float_to_pcm16
from ..engine.session import EngineSession
from ..limits import TokenBucket
from ..protocol import engine as proto
from .rtc_audio import RATE, ReplyTrack, mic_pcm

__all__ = ["ChannelTransport", "RtcPeer", "MIC_RATE", "MAX_BUFFERED"]

log = logging.getLogger(__name__)

MIC_RATE = 16000
"""Rate of the microphone stream the session gets (the hello's ``mic``)."""
MAX_BUFFERED = 8 << 20
"""Bytes the data channel may hold unsent; past it the page stopped reading and the peer is closed."""
_INBOX = 1024
OPEN_TIMEOUT_S = 20.0
"""A peer whose data channel has not opened this long after the answer (ICE or DTLS failed) is closed."""
"""Inbound frames waiting for the session; microphone frames past it are dropped (the session is stuck)."""


class ChannelTransport:
    """The session's :class:`~facecast.engine.context.Transport` over a peer: text and face frames on the data
    channel (held until it opens), reply audio to ``track``. Raises ConnectionError once the peer is gone."""

    def __init__(self, track: ReplyTrack, on_stall: Callable[[], None]) -> None:
        self.track = track
        self._channel: Any = None
        self._pending: list[str | bytes] = []
        self._on_stall = on_stall
        self.closed = False

    def attach(self, channel: Any) -> None:
        """The page's data channel is open: send what waited for it."""
        self._channel = channel
        pending, self._pending = self._pending, []
        for item in pending:
            channel.send(item)

    @property
    def attached(self) -> bool:
        """Whether the data channel was attached (it opened)."""
        return self._channel is not None

    def pending_messages(self) -> list[dict[str, Any]]:
        """The JSON messages held for the channel (the hello's answer, before the channel opens)."""
        return [json.loads(item) for item in self._pending if isinstance(item, str)]

    def _send(self, data: str | bytes) -> None:
        if self.closed:
            raise ConnectionError("the WebRTC peer is closed")
        channel = self._channel
        if channel is None:
            self._pending.append(data)
            return
        if channel.readyState != "open":
            raise ConnectionError("the WebRTC data channel is closed")
        if channel.bufferedAmount > MAX_BUFFERED:
            self._on_stall()
            raise ConnectionError("the page stopped reading the data channel")
        channel.send(data)

    async def send_text(self, text: str) -> None:
        if '"clear_buffer"' in text or '"utterance_end"' in text:
            message = json.loads(text)
            if message.get("type") == "clear_buffer":
                self.track.clear(int(message["utterance"]))
            elif message.get("type") == "utterance_end":
                playout = self.track.playouts.get(int(message["utterance"]))
                if playout is None or playout.onset is None:  # nothing voiced: the page acks without a sound
                    self.onset(int(message["utterance"]), None)
        self._send(text)

    async def send_bytes(self, data: bytes) -> None:
        if data[:1] == bytes([proto.KIND_AUDIO]):
            packet = proto.decode_binary(data)
            assert isinstance(packet, proto.AudioPacket)
            if self.closed:
                raise ConnectionError("the WebRTC peer is closed")
            self.track.push(packet.utterance, packet.offset, np.frombuffer(packet.pcm, dtype="<i2"))
            return
        self._send(data)

    def onset(self, utterance: int, sample: int | None) -> None:
        """Tell the page where the utterance's first voiced sample is (see the module docstring)."""
        with suppress(ConnectionError):
            self._send(proto.encode_server("audio_onset", utterance=utterance, onset=sample))


class RtcPeer:
    """A session behind one ``RTCPeerConnection``; :meth:`run` serves it until the peer goes away."""

    def __init__(
        self,
        pc: Any,
        make_session: Callable[[ChannelTransport], EngineSession],
        max_messages_per_s: float,
    ) -> None:
        self.pc = pc
        self.track = ReplyTrack(on_onset=self._onset)
        self.transport = ChannelTransport(self.track, self._stalled)
        self.session = make_session(self.transport)
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue(_INBOX)
        self._rate = max_messages_per_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._dc: Any = None
        self.done = asyncio.Event()
        """Set once the peer is closed and all of its work has ended."""

        @pc.on("datachannel")  # type: ignore[untyped-decorator]  # aiortc is untyped
        def on_datachannel(channel: Any) -> None:
            self._channel(channel)

        @pc.on("track")  # type: ignore[untyped-decorator]
        def on_track(track: Any) -> None:
            if track.kind == "audio":
                self._spawn(self._mic(track))

        @pc.on("connectionstatechange")  # type: ignore[untyped-decorator]
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                log.info("WebRTC peer %s", pc.connectionState)
                self.close()

    async def negotiate(self) -> str:
        """After the remote offer was set: add the reply track (on the offer's audio transceiver, which also
        receives the microphone) and return the answer's SDP, ICE candidates gathered."""
        self.pc.addTrack(self.track)
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return str(self.pc.localDescription.sdp)

    def _acked(self, text: str) -> None:
        with suppress(ValueError, KeyError, TypeError):
            playout = self.track.playouts.get(int(json.loads(text)["utterance"]))
            if playout is not None and playout.acked_at is None:
                playout.acked_at = time.monotonic()
                if playout.onset_played_at is not None:
                    log.debug("WebRTC playout delay %.1f ms", (playout.acked_at - playout.onset_played_at) * 1000)

    def _onset(self, utterance: int, sample: int) -> None:
        self.transport.onset(utterance, sample)

    def _stalled(self) -> None:
        log.warning("WebRTC page took no data for %d bytes (it stopped reading): peer closed", MAX_BUFFERED)
        self.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _channel(self, channel: Any) -> None:
        if self._dc is not None:  # one channel per peer: a second one is closed
            channel.close()
            return
        self._dc = channel

        def opened() -> None:
            self.transport.attach(channel)

        @channel.on("message")  # type: ignore[untyped-decorator]
        def on_message(message: str | bytes) -> None:
            with suppress(asyncio.QueueFull):
                self._inbox.put_nowait(message)

        @channel.on("close")  # type: ignore[untyped-decorator]
        def on_close() -> None:
            self.close()

        if channel.readyState == "open":
            opened()
        else:
            channel.on("open", opened)

    async def _mic(self, track: Any) -> None:
        """The microphone track, as binary microphone frames at 16 kHz into the inbox."""
        resampler: Resampler | None = None
        offset = 0
        try:
            while True:
                frame = await track.recv()
                if resampler is None:
                    resampler = Resampler(int(frame.sample_rate or RATE), MIC_RATE)
                pcm = resampler.process(mic_pcm(frame))
                if not len(pcm):
                    continue
                data = proto.encode_mic(offset, float_to_pcm16(pcm))
                offset += len(pcm)
                with suppress(asyncio.QueueFull):
                    self._inbox.put_nowait(data)
        except Exception as exc:  # aiortc's MediaStreamError: the track ended with the peer
            log.debug("WebRTC microphone ended: %r", exc)

    async def run(self) -> None:
        """Feed the inbox to the session until the peer closes; then end the session."""
        bucket = TokenBucket(self._rate) if self._rate > 0 else None
        self._spawn(self._expect_channel())
        try:
            while not self.session.closed.is_set():
                item = await self._inbox.get()
                if item is None or self._closing is not None:
                    break
                if isinstance(item, str):
                    if bucket is not None and not bucket.take():
                        dropped = bucket.report()
                        if dropped:
                            await self.session.send_error(
                                "rate_limited",
                                f"more than {self._rate:g} messages a second: {dropped} dropped (max_messages_per_s)",
                            )
                        continue
                    if '"playback_started"' in item:
                        self._acked(item)
                    await self.session.handle_text(item)
                else:
                    await self.session.handle_bytes(item)
        except ConnectionError:
            pass
        finally:
            await self.session.close()
            self.close()
            assert self._closing is not None
            await asyncio.shield(self._closing)

    async def _expect_channel(self) -> None:
        await asyncio.sleep(OPEN_TIMEOUT_S)
        if not self.transport.attached:
            log.info("WebRTC peer closed: its data channel did not open within %g s", OPEN_TIMEOUT_S)
            self.close()

    def close(self) -> None:
        """End the peer (from any callback): the run loop stops and the connection is closed."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._shutdown())
        with suppress(asyncio.QueueFull):
            self._inbox.put_nowait(None)

    async def _shutdown(self) -> None:
        self.transport.closed = True
        self.track.clear()
        try:
            await self.pc.close()
        finally:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.done.set()
