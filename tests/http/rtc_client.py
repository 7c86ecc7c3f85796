"""A WebRTC engine client in Python (aiortc), for the transport's tests: the page's protocol without a browser.

It sends a microphone track (a recording at real time, then silence), receives the reply track, and
acknowledges playback the way the page does: ``playback_started`` when it hears the utterance's first voiced
sample (the one ``audio_onset`` names) in the audio it received.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from facecast.audio import resample
from facecast.http.rtc_audio import FRAME, ONSET_LEVEL, RATE, mic_pcm
from facecast.protocol import engine as proto


class MicTrack(MediaStreamTrack):  # type: ignore[misc]
    """``pcm`` (float32 mono at ``rate``) at real time after ``lead_s`` of silence, then silence."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray | None = None, rate: int = 16000, lead_s: float = 0.3) -> None:
        super().__init__()
        audio = np.zeros(0, np.float32) if pcm is None else resample(pcm, rate, RATE)
        self._pcm = np.concatenate([np.zeros(int(lead_s * RATE), np.float32), audio])
        self._pts = 0
        self._start: float | None = None

    def play(self, pcm: np.ndarray, rate: int = 16000) -> None:
        """Play ``pcm`` (float32 mono at ``rate``) from the next frame on."""
        audio = resample(pcm, rate, RATE)
        self._pcm = np.concatenate([np.zeros(self._pts, np.float32), audio])

    async def recv(self) -> Any:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk = self._pcm[self._pts : self._pts + FRAME]
        chunk = np.pad(chunk, (0, FRAME - len(chunk)))
        data = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


@dataclass
class Heard:
    """One utterance as the client heard it."""

    utterance: int
    onset: int | None = None
    onset_heard_at: float | None = None
    voiced_samples: int = 0
    face_frames: int = 0
    faces_before_onset: int = 0
    """Face packets that arrived before the client heard the onset (and so before its acknowledgement)."""
    face_late_ms: list[float] = field(default_factory=list)
    """Per face packet: arrival time minus the time its first frame's audio played (positive: late)."""


class RtcClient:
    def __init__(
        self,
        base_url: str,
        *,
        mic: np.ndarray | None = None,
        hello: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        ack: bool = True,
    ) -> None:
        self.base_url = base_url
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("facecast")
        self.mic = MicTrack(mic)
        self.hello = hello or {}
        self.headers = headers or {}
        self.ack = ack
        self.messages: list[dict[str, Any]] = []
        self.heard: dict[int, Heard] = {}
        self.received_samples = 0
        self._armed: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self.opened = asyncio.Event()
        self.pc.addTrack(self.mic)
        self.channel.on("open", self.opened.set)
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def offer(self) -> httpx.Response:
        """Send the offer; returns the server's response (the answer is applied when it is one)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body = {"sdp": self.pc.localDescription.sdp, "type": "offer", "hello": self.hello}
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{self.base_url}/webrtc/offer", json=body, headers=self.headers)
        if response.status_code == 200:
            answer = response.json()
            await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        return response

    async def connect(self, timeout: float = 10.0) -> None:
        response = await self.offer()
        assert response.status_code == 200, response.text
        await self.wait(lambda: any(m["type"] == "welcome" for m in self.messages), timeout)

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send(json.dumps(message))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    async def wait(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout} s; messages: {self.messages[-8:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))
            except TimeoutError:
                pass

    def _on_message(self, data: str | bytes) -> None:
        now = time.monotonic()
        if isinstance(data, str):
            message = json.loads(data)
            self.messages.append(message)
            if message["type"] == "utterance_start":
                self.heard[message["utterance"]] = Heard(message["utterance"])
                self._armed = message["utterance"]
            elif message["type"] == "audio_onset":
                heard = self.heard.setdefault(message["utterance"], Heard(message["utterance"]))
                heard.onset = message["onset"]
                if heard.onset is None and self.ack:  # nothing voiced to hear: acknowledge at once
                    self.send({"type": "playback_started", "utterance": heard.utterance})
        else:
            packet = proto.decode_binary(data)
            if isinstance(packet, proto.FacePacket):
                heard = self.heard.setdefault(packet.utterance, Heard(packet.utterance))
                heard.face_frames += len(packet.values)
                if heard.onset_heard_at is None:
                    heard.faces_before_onset += 1
                if heard.onset_heard_at is not None and heard.onset is not None:
                    due = heard.onset_heard_at + (packet.start / 60 - heard.onset / RATE)
                    heard.face_late_ms.append((now - due) * 1000)
        self._changed.set()

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._listen(track)))

    async def _listen(self, track: Any) -> None:
        try:
            while True:
                frame = await track.recv()
                pcm = mic_pcm(frame)
                now = time.monotonic()
                self.received_samples += len(pcm)
                voiced = np.flatnonzero(np.abs(pcm) >= ONSET_LEVEL)
                heard = self.heard.get(self._armed) if self._armed is not None else None
                if heard is not None and len(voiced):
                    heard.voiced_samples += len(voiced)
                    if heard.onset_heard_at is None:
                        heard.onset_heard_at = now - (len(pcm) - voiced[0]) / RATE
                        if self.ack:
                            self.send({"type": "playback_started", "utterance": heard.utterance})
                        self._changed.set()
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
