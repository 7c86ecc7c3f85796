"""One session's face timeline: the animation layer and its emotion schedule, shared by every consumer.

A session has exactly one :class:`FaceTimeline`. It applies the animation layer (blinks, gaze, head, emotion,
blend in/out) to each utterance frame ONCE, at the frame's time on the playback clock (the engine's
``playback_started`` plus ``i / 60``), and every consumer gets those same final values: the WebSocket, Live
Link, the recorder, any future output. Between utterances the paced outputs ask it for the idle face
(:meth:`frame` with ``mouth=None``), from the same layer, so the idle face continues the one seen while
speaking. The layer is seeded per session (:func:`session_seed`), so two characters never blink in lockstep.

The layer is stateful and only moves forward in time; utterance frames are layered when they are released,
which can be up to the reply's production lead ahead of the wall clock. When an utterance is cleared
(barge-in, lost ack), :meth:`rewind` goes back to the layer's state at the last checkpoint before "now", so
the idle face that follows picks up from what was actually shown, not from the future.

All times are on the session's monotonic clock (the pacer's clock for Live Link). Not thread-safe; call it
from the event loop only.
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import deque

import numpy as np

from ..face.layers import AnimationLayer, Emotion, LayerConfig
from ..types import FPS, Float32Array

__all__ = ["FaceTimeline", "session_seed"]

_CHECKPOINTS = 64  # layer snapshots kept for rewind: the last 6 s or more of layered face
_CHECKPOINT_EVERY = 0.1  # seconds of face time between snapshots (a rewind lands at most this far ahead)
_SEEDS = itertools.count(1)
_PROCESS_SALT = int.from_bytes(os.urandom(4), "little")


def session_seed() -> int:
    """A fresh seed for a new session's animation layer: different for every session of this process and
    between processes (``SessionConfig.seed`` set to a number makes a session reproducible instead)."""
    return (_PROCESS_SALT << 20) ^ next(_SEEDS)


class FaceTimeline:
    """The final face of one session, on its playback clock (``layer``: use this layer, not a new one).

    - :meth:`schedule_emotion` puts an emotion on the schedule at a face time.
    - :meth:`shown` layers a block of utterance frames starting at face time ``t0`` and returns the values to
      show; call it for an utterance's blocks in order (the layer never goes back in time).
    - :meth:`frame` is the :class:`~facecast.engine.pacer.FaceComposer` of paced outputs: an utterance frame
      (``mouth``) from :meth:`shown` is already final and passes through unchanged; ``None`` gives the idle
      face at ``t``.
    """

    def __init__(self, seed: int, config: LayerConfig | None = None, *, layer: AnimationLayer | None = None) -> None:
        self.seed = seed
        self._layer = layer if layer is not None else AnimationLayer(seed=seed, config=config)
        self._checkpoints: deque[tuple[float, AnimationLayer]] = deque(maxlen=_CHECKPOINTS)
        self._last = -np.inf  # face time of the last layered frame

    @property
    def layer(self) -> AnimationLayer:
        """The layer itself (its ``emotion``, ``config``); do not call its ``frame`` from outside."""
        return self._layer

    def schedule_emotion(self, emotion: Emotion, at: float) -> None:
        """Ease toward ``emotion`` from face time ``at`` (applies from the first frame at or after it)."""
        self._layer.set_emotion(emotion, at=at)

    def shown(self, t0: float, values: Float32Array) -> Float32Array:
        """The final frames (n x 68 float32) for speech frames ``values`` whose first is due at ``t0``."""
        if len(values):
            if not self._checkpoints or t0 - self._checkpoints[-1][0] >= _CHECKPOINT_EVERY:
                self._checkpoints.append((t0, copy.deepcopy(self._layer)))  # about 0.3 ms
            self._last = max(self._last, t0 + (len(values) - 1) / FPS)
        return self._layer.frames(t0, values)

    def frame(self, t: float, mouth: Float32Array | None) -> Float32Array:
        """FaceComposer: ``mouth`` (a frame from :meth:`shown`) unchanged, or the idle face at ``t``."""
        if mouth is not None:
            return mouth
        return self._layer.frame(t, None)

    def rewind(self, now: float) -> None:
        """An utterance was cleared at ``now``: forget what was layered for times after it, so the idle face
        continues from about ``now`` (at most one block or ``_CHECKPOINT_EVERY`` later)."""
        if self._last <= now:
            return
        while self._checkpoints and self._checkpoints[-1][0] > now:
            start, layer = self._checkpoints.pop()
            self._layer = layer
            self._last = start
