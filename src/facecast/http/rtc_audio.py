"""The audio of a WebRTC peer (:mod:`facecast.http.webrtc`): the reply as an outgoing track, the microphone in.

- :class:`ReplyTrack` is the aiortc audio track the reply plays on: 20 ms frames of 48 kHz mono PCM16, paced
  on an absolute real-time schedule (``start + pts / 48000``, so no drift accumulates), digital silence when
  nothing is queued. Utterance audio is queued by :meth:`ReplyTrack.push` and dropped by :meth:`clear`
  (barge-in: the server stops the track's audio). aiortc encodes the frames as Opus.
- :func:`onset` finds an utterance's first voiced sample, the point the page anchors its face clock on
  (docs/protocol.md, "WebRTC").
- :func:`mic_pcm` turns a received microphone frame (Opus decoded by aiortc: 48 kHz, PCM16, stereo) into
  float32 mono for the session's 16 kHz resampler.

aiortc and PyAV come with the ``webrtc`` extra (``pip install 'facecast[webrtc]'``).
"""

from __future__ import annotations

import asyncio
import fractions
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..types import Float32Array

try:
    import av
    from aiortc import MediaStreamTrack
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the WebRTC transport needs aiortc: pip install 'facecast[webrtc]'") from exc

__all__ = ["RATE", "FRAME", "ONSET_LEVEL", "ReplyTrack", "onset", "mic_pcm"]

RATE = 48000
"""Sample rate of the reply track (Opus's own rate: nothing is resampled inside aiortc)."""
FRAME = 960
"""Samples per frame: 20 ms, one Opus packet."""
ONSET_LEVEL = 0.02
"""|sample| (full scale 1.0) from which audio counts as voiced, on both sides: the server's :func:`onset` and
the page's detector. About -34 dBFS: above Opus's coding noise around digital silence, below any speech."""
_RESYNC_S = 0.2
"""A consumer this late (the event loop stalled) restarts the schedule instead of sending a burst."""


def onset(pcm: np.ndarray, level: float = ONSET_LEVEL) -> int | None:
    """Index of the first sample of ``pcm`` (PCM16 integers or float in [-1, 1]) whose magnitude reaches
    ``level``; None when there is none."""
    data = np.asarray(pcm)
    scale = 32768.0 if data.dtype.kind == "i" else 1.0
    hits = np.flatnonzero(np.abs(data.astype(np.float32)) >= level * scale)
    return int(hits[0]) if len(hits) else None


def mic_pcm(frame: Any) -> Float32Array:
    """A received audio frame (PyAV ``AudioFrame``, PCM16 or float, packed or planar) as float32 mono."""
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = data.reshape(channels, -1).astype(np.float32).mean(axis=0)
    else:
        mono = data.reshape(-1, channels).astype(np.float32).mean(axis=1)
    if data.dtype.kind == "i":
        mono /= 32768.0
    out: Float32Array = np.ascontiguousarray(mono, dtype=np.float32)
    return out


@dataclass(slots=True)
class _Queued:
    utterance: int
    pcm: np.ndarray  # int16 at RATE
    start: int  # sample offset of pcm[0] in its utterance


@dataclass(slots=True)
class Playout:
    """What the track did with one utterance (for the transport's markers and for measurements)."""

    utterance: int
    onset: int | None = None
    """Utterance sample of the first voiced sample, once found in the queued audio."""
    played: int = 0
    """Utterance samples handed to the encoder so far."""
    onset_played_at: float | None = None
    """``time.monotonic()`` when the onset sample was handed to the encoder."""
    acked_at: float | None = None
    """``time.monotonic()`` when the page's ``playback_started`` arrived: minus :attr:`onset_played_at`, the
    time from the track to the page's ears (encoding, network, jitter buffer, the page's audio path)."""


class ReplyTrack(MediaStreamTrack):
    """The reply's outgoing audio track (see the module docstring).

    ``on_onset(utterance, sample)`` is called (from :meth:`push`) when an utterance's first voiced sample is
    queued. ``clock`` is the real-time clock frames are paced on.
    """

    kind = "audio"

    def __init__(
        self,
        on_onset: Callable[[int, int], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._queue: deque[_Queued] = deque()
        self._queued = 0
        self._on_onset = on_onset
        self._clock = clock
        self._start: float | None = None
        self._pts = 0
        self.playouts: dict[int, Playout] = {}
        """Per utterance: its onset and how much of it was played (the latest few utterances)."""

    @property
    def queued_samples(self) -> int:
        """Samples waiting to be played."""
        return self._queued

    def push(self, utterance: int, offset: int, pcm: np.ndarray) -> None:
        """Queue ``pcm`` (int16 mono at 48 kHz), samples ``offset``... of ``utterance``, behind what is queued."""
        data = np.ascontiguousarray(pcm, dtype=np.int16)
        if not len(data):
            return
        playout = self.playouts.get(utterance)
        if playout is None:
            playout = self.playouts[utterance] = Playout(utterance)
            while len(self.playouts) > 16:
                del self.playouts[next(iter(self.playouts))]
        if playout.onset is None:
            found = onset(data)
            if found is not None:
                playout.onset = offset + found
                if self._on_onset is not None:
                    self._on_onset(utterance, playout.onset)
        self._queue.append(_Queued(utterance, data, offset))
        self._queued += len(data)

    def clear(self, utterance: int | None = None) -> int:
        """Drop the queued audio of ``utterance`` and of every earlier one (None: everything); returns the
        number of samples dropped. The track goes on with silence."""
        kept: deque[_Queued] = deque()
        dropped = 0
        for item in self._queue:
            if utterance is None or item.utterance <= utterance:
                dropped += len(item.pcm)
            else:
                kept.append(item)
        self._queue = kept
        self._queued -= dropped
        return dropped

    def _take(self, count: int) -> np.ndarray:
        out = np.zeros(count, np.int16)
        filled = 0
        while filled < count and self._queue:
            item = self._queue[0]
            n = min(count - filled, len(item.pcm))
            out[filled : filled + n] = item.pcm[:n]
            playout = self.playouts.get(item.utterance)
            if playout is not None:
                if playout.onset is not None and playout.onset_played_at is None:
                    if item.start <= playout.onset < item.start + n:
                        lag = (filled + playout.onset - item.start) / RATE
                        playout.onset_played_at = self._clock() + lag
                playout.played = item.start + n
            filled += n
            if n == len(item.pcm):
                self._queue.popleft()
            else:
                item.pcm = item.pcm[n:]
                item.start += n
        self._queued -= filled
        return out

    async def recv(self) -> Any:
        """The next 20 ms frame, at its due time on the real-time schedule."""
        now = self._clock()
        if self._start is None:
            self._start = now
        due = self._start + self._pts / RATE
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > _RESYNC_S:
            self._start = now - self._pts / RATE
        frame = av.AudioFrame.from_ndarray(self._take(FRAME).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame
