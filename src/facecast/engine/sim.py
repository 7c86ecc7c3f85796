"""``facecast engine-sim``: the reference engine client, used by tests and benchmarks.

It behaves like an Unreal client: it says ``hello``, streams a WAV as the microphone in real time (or types
text), receives the reply's audio and "plays" it on a real-time clock (with a small start buffer), sends
``playback_started`` / ``playback_finished``, collects the face frames of the socket and the Live Link
packets of its subject, and reports timing: time to first audio, audio underruns, and the audio/face sync
error (how far each Live Link frame's arrival is from the moment its audio sample plays).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from ..audio import float_to_pcm16, pcm16_to_float, resample
from ..protocol import engine as proto
from ..protocol.livelink import decode_frame
from ..types import FPS, Float32Array

__all__ = ["SimConfig", "UtteranceReport", "TurnReport", "EngineSim", "summarize"]


@dataclass(frozen=True, slots=True)
class SimConfig:
    url: str = "ws://127.0.0.1:8765/ws/engine"
    rate: int = 24000
    """Reply audio rate asked for in ``hello``."""
    mic_rate: int = 16000
    subject: str = ""
    character: str = ""
    """A character of the server's config to be (``hello.character``); empty: the server's default."""
    start_buffer: float = 0.05
    """Seconds of audio buffered before playback starts (a real engine's jitter buffer)."""
    livelink_port: int = 0
    """UDP port to collect Live Link packets on (0: do not listen)."""
    token: str = ""
    acks: bool = True
    chunk_ms: float = 20.0
    turns: str = "server"
    """``server``: the server detects the end of speech; ``client``: engine-sim sends ``end_of_speech``."""
    hold_mic: bool = False
    """With server turns: after the audio, keep streaming silence in real time (as a live microphone does)
    until the reply has been received, so audio that stops right at its last word still reaches the
    server's endpoint."""
    play_out: bool = True
    """Wait until the reply has played before returning (False: return at ``utterance_end``, for benchmarks
    that only time the start of replies)."""


@dataclass(slots=True)
class UtteranceReport:
    utterance: int
    text: str = ""
    first_audio: float = 0.0
    """Monotonic time the first audio frame arrived."""
    playback_start: float = 0.0
    """Monotonic time playback started (``playback_started`` was sent)."""
    acked_at: float = 0.0
    samples: int = 0
    underruns: int = 0
    """Audio frames that arrived after the moment they were due to play."""
    discontinuities: int = 0
    """Audio frames whose offset did not continue the previous one (a gap or a repeat; must be 0)."""
    face_frames: int = 0
    face_before_ack: int = 0
    """Socket face frames that arrived before ``playback_started`` was sent (must be 0)."""
    face_late: list[float] = field(default_factory=list)
    """For each socket face frame: arrival minus the time its audio sample plays (negative = early)."""
    livelink_error: list[float] = field(default_factory=list)
    """For each Live Link packet of the utterance: arrival minus the time its audio sample plays."""
    audio: list[Float32Array] = field(default_factory=list)
    face: list[Float32Array] = field(default_factory=list)
    ended: bool = False
    cleared: bool = False
    after_clear: int = 0
    """Audio or face frames of this utterance that arrived after its ``clear_buffer`` (must be 0)."""


@dataclass(slots=True)
class TurnReport:
    speech_end: float = 0.0
    """Monotonic time the player's speech (or typed text) ended."""
    transcript: str = ""
    utterances: list[UtteranceReport] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    """``error`` messages, as their JSON objects (``code``, ``message``)."""
    messages: list[dict[str, Any]] = field(default_factory=list)
    """Every JSON message received, as its object (typed decoding: :func:`facecast.protocol.engine.decode_server`)."""
    timing: dict[str, float] = field(default_factory=dict)
    """The server's per-stage times of the reply (ms from the end of speech)."""
    speech_end_sample: int | None = None
    """The microphone sample just after the player's last voiced one (above 0.01), for spoken turns."""
    server_speech_end_sample: int | None = None
    """The microphone sample at which the server's VAD judged the speech ended (``timing``), when it says."""
    mic_rate: int = 0
    """The microphone's rate (Hz) of those samples."""

    @property
    def vad_end_ms(self) -> float:
        """How much later than the last voiced sample the server's VAD put the end of speech (negative: earlier),
        ms of microphone audio; NaN when either is unknown. The server's stage times count from its end."""
        if self.speech_end_sample is None or self.server_speech_end_sample is None or not self.mic_rate:
            return float("nan")
        return (self.server_speech_end_sample - self.speech_end_sample) * 1000 / self.mic_rate

    @property
    def response_latency(self) -> float:
        """Seconds from the end of the player's speech to playback start of the reply; NaN when no reply
        audio was played (no utterance, or one that failed before its first audio)."""
        if not self.utterances or not self.utterances[0].samples:
            return float("nan")
        return self.utterances[0].playback_start - self.speech_end


class _LiveLinkListener(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[tuple[float, bytes]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.packets.append((time.monotonic(), data))


class EngineSim:
    """A connected simulated engine. Use ``async with EngineSim(config) as sim: await sim.say_text(...)``."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.welcome: dict[str, Any] = {}
        """The server's ``welcome`` as its JSON object (:attr:`accepted` is the typed message)."""
        self.accepted: proto.Welcome | None = None
        self._ws: ClientConnection | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._listener = _LiveLinkListener()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mic_offset = 0
        self.last_voice_end = 0.0
        self.last_voice_sample = 0

    async def __aenter__(self) -> EngineSim:
        cfg = self.config
        if cfg.livelink_port:
            loop = asyncio.get_running_loop()
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: self._listener, local_addr=("127.0.0.1", cfg.livelink_port), family=socket.AF_INET
            )
        headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else None
        self._ws = await connect(cfg.url, additional_headers=headers, max_size=2**21)
        hello = proto.Hello(
            audio=proto.AudioFormat(cfg.rate, 1),
            mic=proto.AudioFormat(cfg.mic_rate, 1),
            face=True,
            subject=cfg.subject,
            acks=cfg.acks,
            turns=cfg.turns,
            character=cfg.character,
        )
        await self._ws.send(proto.encode_message(hello))
        raw = await self._ws.recv()
        welcome = proto.decode_server(raw)
        if not isinstance(welcome, proto.Welcome):
            raise ConnectionError(f"server refused the session: {raw!r}")
        self.accepted, self.welcome = welcome, proto.decode_server_text(raw)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._udp is not None:
            self._udp.close()

    @property
    def ws(self) -> ClientConnection:
        assert self._ws is not None, "use EngineSim as an async context manager"
        return self._ws

    async def say_text(self, text: str, timeout: float = 30.0) -> TurnReport:
        """Type ``text`` and receive the whole reply."""
        report = TurnReport(speech_end=time.monotonic())
        await self.ws.send(proto.encode_message(proto.UserText(text)))
        return await self.receive_reply(report, timeout)

    async def say_audio(self, pcm: Float32Array, rate: int, timeout: float = 30.0, realtime: bool = True) -> TurnReport:
        """Stream ``pcm`` as the microphone (in real time unless ``realtime`` is false) and receive the reply.

        Like an engine, it keeps sending the microphone while the reply arrives. With server-side turns the
        server must detect the end of speech itself (stream enough trailing silence); with client-side turns
        ``end_of_speech`` is sent after the audio.
        """
        report = TurnReport()
        if self.config.turns == "client":
            await self.stream_mic(pcm, rate, realtime)
            report.speech_end = time.monotonic()
            await self.ws.send(proto.encode_message(proto.EndOfSpeech()))
            return await self.receive_reply(report, timeout)
        replied = asyncio.Event()

        async def microphone() -> None:
            await self.stream_mic(pcm, rate, realtime)
            if self.config.hold_mic:
                await self._stream_silence(replied)

        sending = asyncio.create_task(microphone())
        try:
            report = await self.receive_reply(report, timeout)
            replied.set()
            await sending
        finally:
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
        report.speech_end = self.last_voice_end
        report.speech_end_sample, report.mic_rate = self.last_voice_sample, self.config.mic_rate
        return report

    async def stream_mic(self, pcm: Float32Array, rate: int, realtime: bool = True) -> None:
        """Send ``pcm`` as microphone audio, paced like a live microphone: each chunk once its last sample has
        been captured (in real time unless ``realtime`` is false). Sets :attr:`last_voice_end`, the monotonic
        time at which the last non-silent sample (above 0.01) was captured (the end of the player's speech; its
        chunk leaves up to ``chunk_ms`` later, as from a real microphone), and :attr:`last_voice_sample`, the
        microphone sample just after it."""
        mic = resample(pcm, rate, self.config.mic_rate)
        voiced = np.flatnonzero(np.abs(mic) > 0.01)
        last_voiced = int(voiced[-1]) + 1 if len(voiced) else 0
        step = int(self.config.mic_rate * self.config.chunk_ms / 1000)
        start = time.monotonic()
        for offset in range(0, len(mic), step):
            chunk = mic[offset : offset + step]
            if realtime:
                delay = start + (offset + len(chunk)) / self.config.mic_rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self.ws.send(proto.encode_mic(self._mic_offset + offset, float_to_pcm16(chunk)))
            if offset < last_voiced <= offset + len(chunk):
                captured = start + last_voiced / self.config.mic_rate
                self.last_voice_end = captured if realtime else time.monotonic()
                self.last_voice_sample = self._mic_offset + last_voiced
        self._mic_offset += len(mic)

    async def _stream_silence(self, stop: asyncio.Event) -> None:
        """Send silent microphone chunks, paced in real time, until ``stop`` is set."""
        step = int(self.config.mic_rate * self.config.chunk_ms / 1000)
        silence = float_to_pcm16(np.zeros(step, np.float32))
        start = time.monotonic()
        sent = 0
        while not stop.is_set():
            delay = start + (sent + step) / self.config.mic_rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self.ws.send(proto.encode_mic(self._mic_offset, silence))
            self._mic_offset += step
            sent += step

    async def receive_reply(self, report: TurnReport, timeout: float) -> TurnReport:
        """Receive until the reply's last utterance has been sent AND played out (or an error ends the turn).

        Like an engine, it keeps receiving while the audio plays, so a ``clear_buffer`` during playback
        (barge-in) is seen; it then waits for the next utterance (the reply to the interruption).
        """
        deadline = time.monotonic() + timeout
        current: UtteranceReport | None = None
        playing_out: UtteranceReport | None = None
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise TimeoutError("no complete reply within the timeout")
            wait = deadline - now
            if playing_out is not None:
                left = playing_out.playback_start + playing_out.samples / self.config.rate - now
                if left <= 0:
                    await self._played(playing_out, interrupted=False)
                    return report
                wait = min(wait, left)
            try:
                message = await asyncio.wait_for(self.ws.recv(), wait)
            except TimeoutError:
                continue
            now = time.monotonic()
            if isinstance(message, bytes):
                packet = proto.decode_binary(message)
                owner = next((u for u in report.utterances if u.utterance == getattr(packet, "utterance", None)), None)
                if owner is not None and owner.cleared:
                    owner.after_clear += 1
                    continue
                if current is None or owner is not current:
                    continue
                if isinstance(packet, proto.AudioPacket):
                    await self._on_audio(current, packet, now)
                elif isinstance(packet, proto.FacePacket):
                    self._on_face(current, packet, now)
                continue
            report.messages.append(proto.decode_server_text(message))
            event = proto.decode_server(message)
            if isinstance(event, proto.TranscriptUpdate) and event.final:
                report.transcript = event.text
            elif isinstance(event, proto.UtteranceStart):
                current = UtteranceReport(event.utterance)
                report.utterances.append(current)
                playing_out = None
            elif isinstance(event, proto.UtteranceEnd) and current is not None:
                current.ended, current.text = True, event.text
                if not self.config.play_out:
                    return report
                playing_out = current
            elif isinstance(event, proto.ClearBuffer):
                cleared = next((u for u in report.utterances if u.utterance == event.utterance), None)
                if cleared is not None and not cleared.cleared:
                    cleared.cleared = True
                    await self._played(cleared, interrupted=True)
                    if cleared is playing_out:
                        playing_out = None
            elif isinstance(event, proto.Timing):
                report.timing = dict(event.stages)
                report.server_speech_end_sample = event.speech_end_sample
            elif isinstance(event, proto.ErrorMessage):
                report.errors.append({"type": "error", "code": event.code, "message": event.message})
                if event.code in ("ack_timeout", "service_unavailable", "no_speech", "bad_input"):
                    return report

    async def _on_audio(self, utt: UtteranceReport, packet: proto.AudioPacket, now: float) -> None:
        rate = self.config.rate
        if not utt.samples:
            utt.first_audio = now
            utt.playback_start = now + self.config.start_buffer
            if self.config.acks:
                task = asyncio.create_task(self._ack(utt))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if packet.offset != utt.samples:
            utt.discontinuities += 1
        due = utt.playback_start + packet.offset / rate
        if now > due:
            utt.underruns += 1
        pcm = pcm16_to_float(packet.pcm)
        utt.audio.append(pcm)
        utt.samples += len(pcm)

    async def _ack(self, utt: UtteranceReport) -> None:
        delay = utt.playback_start - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        utt.playback_start = utt.acked_at = time.monotonic()
        await self.ws.send(proto.encode_message(proto.PlaybackStarted(utt.utterance, utt.playback_start)))

    def _on_face(self, utt: UtteranceReport, packet: proto.FacePacket, now: float) -> None:
        if self.config.acks and not utt.acked_at:
            utt.face_before_ack += len(packet.values)
        for k in range(len(packet.values)):
            utt.face_late.append(now - (utt.playback_start + (packet.start + k) / FPS))
        utt.face_frames += len(packet.values)
        utt.face.append(packet.values)

    async def _played(self, utt: UtteranceReport, interrupted: bool) -> None:
        """Report the end of playback, with the samples actually played, like an engine does."""
        played = utt.samples
        if interrupted:
            elapsed = time.monotonic() - utt.playback_start if utt.acked_at else 0.0
            played = min(utt.samples, max(0, int(elapsed * self.config.rate)))
        await self.ws.send(proto.encode_message(proto.PlaybackFinished(utt.utterance, played, interrupted)))
        self._collect_livelink(utt)

    def _collect_livelink(self, utt: UtteranceReport) -> None:
        info = self.accepted.livelink if self.accepted is not None else None
        if info is None or info.epoch is None or not self._listener.packets:
            return
        epoch = info.epoch
        end = utt.playback_start + utt.samples / self.config.rate
        for arrival, data in self._listener.packets:
            frame = decode_frame(data)
            if frame.subject != info.subject:
                continue
            due = epoch + frame.time  # when the server meant this packet to be shown
            if not utt.playback_start - 0.5 / FPS <= due <= end:
                continue
            index = round((due - utt.playback_start) * FPS)  # the utterance frame it carries
            utt.livelink_error.append(arrival - (utt.playback_start + index / FPS))
        self._listener.packets.clear()


def summarize(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.abs(np.asarray(values)) * 1000
    return {
        "p50_ms": float(np.percentile(arr, 50)),
        "p99_ms": float(np.percentile(arr, 99)),
        "max_ms": float(arr.max()),
        "count": float(len(arr)),
    }
