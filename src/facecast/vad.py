"""Voice activity and end-of-turn detection on the microphone stream.

:class:`WebRtcVad` classifies 20 ms frames of 16 kHz audio (webrtcvad). :class:`TurnDetector` is a pure
state machine on the audio's own sample clock (no wall clock, so it is tested deterministically): it turns
per-frame decisions into turn events.

- A turn STARTS when most of the last ``start_ms`` of audio is voiced (a click or a single loud frame does
  not start one). ``SpeechStarted.at`` points at the start of that window, and the caller keeps
  ``preroll_ms`` of audio before it so the first syllable reaches speech-to-text.
- ``SpeechSustained`` follows once the turn has ``barge_in_ms`` of voiced audio: long enough to be speech
  rather than a cough, a knock or a laugh; the controller interrupts the character only then.
- A turn ENDS after ``end_ms`` of continuous silence (endpointing). A pause shorter than that does not end
  it. ``SpeechEnded.at`` is where the silence began, i.e. where the player stopped speaking.
- ``SpeechPaused`` comes ``transcript_lead_ms`` before that (a 200 ms pause with the defaults) and
  ``SpeechResumed`` when the player goes on before the endpoint: the caller closes its speech-to-text
  segment at the pause, so the final transcript is ready by the time the endpoint is reached, and opens
  another if the turn goes on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .audio import float_to_pcm16
from .errors import ConfigError

__all__ = [
    "VAD_RATE",
    "FRAME",
    "VoiceActivity",
    "WebRtcVad",
    "TurnConfig",
    "SpeechStarted",
    "SpeechSustained",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechEnded",
    "TurnEvent",
    "TurnDetector",
]

VAD_RATE = 16000
FRAME = 320
"""Samples per VAD frame (20 ms at 16 kHz)."""


class VoiceActivity(Protocol):
    def is_speech(self, frame: np.ndarray) -> bool:
        """Whether one 20 ms frame (320 float32 samples at 16 kHz) holds speech."""
        ...


class WebRtcVad:
    """webrtcvad (``webrtcvad-wheels``), ``aggressiveness`` 0 (lenient) to 3 (strict), behind a noise gate.

    webrtcvad alone calls steady broadband noise (a fan, a hum, a noisy mic preamp) speech. The gate tracks
    the noise floor (it follows quiet frames down quickly and creeps up by ``rise_db_per_s`` through loud
    ones) and lets a frame count as speech only when it is ``snr_db`` above that floor and above an absolute
    floor of -54 dBFS.
    """

    def __init__(self, aggressiveness: int = 2, snr_db: float = 9.0, rise_db_per_s: float = 3.0) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ConfigError(f"VAD aggressiveness must be 0-3, got {aggressiveness}")
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)
        self._ratio = 10 ** (snr_db / 20)
        self._rise = 10 ** (rise_db_per_s / 20 / 50)  # per 20 ms frame
        self._floor = 0.003  # -50 dBFS until the stream shows its own floor

    @property
    def noise_floor(self) -> float:
        return self._floor

    def is_speech(self, frame: np.ndarray) -> bool:
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) + 1e-9
        floor = self._floor
        floor = floor * 0.8 + rms * 0.2 if rms < floor else floor * self._rise
        self._floor = floor
        if rms < max(0.002, floor * self._ratio):
            return False
        return bool(self._vad.is_speech(float_to_pcm16(frame), VAD_RATE))


@dataclass(frozen=True, slots=True)
class TurnConfig:
    start_ms: int = 200
    """Window that must be mostly voiced (``start_ratio``) before a turn starts."""
    start_ratio: float = 0.7
    end_ms: int = 300
    """Silence that ends a turn (endpointing)."""
    barge_in_ms: int = 400
    """Voiced audio a turn needs before it may interrupt the character."""
    preroll_ms: int = 300
    """Audio kept from before the detected start, so speech-to-text hears the first syllable."""
    aggressiveness: int = 2
    transcript_lead_ms: int = 100
    """At a pause of ``end_ms - transcript_lead_ms`` the speech-to-text segment is closed (and reopened if
    the player goes on), so the transcript is ready when the endpoint ends the turn. 0, or a pause shorter
    than 100 ms, turns this off: the segment then closes at the endpoint."""
    detector: str = "silence"
    """How a turn ends: ``silence`` (after ``end_ms`` of silence, :class:`TurnDetector`) or ``smart`` (a
    semantic end-of-turn model decides after ``smart_end_ms``; :mod:`facecast.turns`), opt-in. The
    ``smart`` defaults here are the first design (120 ms, complete at 0.5, no middle zone); the server's
    :class:`~facecast.config.Settings` carry the three-zone values tuned on the endpoint benchmark."""
    smart_end_ms: int = 120
    """``smart``: silence after which the end-of-turn model is asked whether the turn is complete, and the
    earliest end of a turn it calls complete."""
    smart_ask_ms: int = 0
    """``smart``: silence after which the model is asked, when sooner than ``smart_end_ms`` (0, or a value not
    below ``smart_end_ms``: at ``smart_end_ms``). Its answer is kept for the end at ``smart_end_ms``: the
    model's own time passes while the silence goes on, and a pause shorter than ``smart_end_ms`` never ends a
    turn."""
    ask_threshold: float = 0.95
    """``smart`` with ``smart_ask_ms``: the probability of "complete" at or above which the early answer ends the
    turn at ``smart_end_ms``; any other early answer decides nothing (the model is asked again at
    ``smart_end_ms``). ``threshold`` when that is higher: with less silence heard the model must be surer."""
    max_wait_ms: int = 2500
    """``smart``: silence that ends a turn the model called incomplete."""
    threshold: float = 0.5
    """``smart``: the model's probability of "complete" at or above which the turn ends at once."""
    wait_threshold: float = 0.5
    """``smart``: the probability at or below which the turn is "unfinished" and waits (up to
    ``max_wait_ms``); between it and ``threshold`` ("unsure") the turn ends at the silence endpoint
    ``end_ms``. Equal to ``threshold``: no middle zone (every answer is complete or wait)."""
    recheck_ms: int = 0
    """``smart``: while an unfinished turn waits, the model is asked again after every ``recheck_ms`` of further
    silence (0: never; it then ends at ``max_wait_ms``)."""
    text_cues: bool = False
    """``smart``: also judge the pause's transcript (:mod:`facecast.turncues`), handed in by the caller
    (:meth:`facecast.turns.SmartTurnDetector.transcript`): an unfinished sentence waits, a finished one ends
    an unsure pause."""
    text_wait_ms: int = 600
    """``smart`` with ``text_cues``: silence an unsure pause waits for its transcript before it ends anyway
    (at least ``end_ms``)."""

    def __post_init__(self) -> None:
        for name in ("start_ms", "end_ms", "barge_in_ms", "smart_end_ms"):
            if getattr(self, name) < 20:
                raise ConfigError(f"turn detection {name} must be at least 20 ms")
        if self.detector not in ("smart", "silence"):
            raise ConfigError(f"turn detector must be 'smart' or 'silence', got {self.detector!r}")
        if self.smart_ask_ms != 0 and self.smart_ask_ms < 20:
            raise ConfigError("turn detection smart_ask_ms must be 0 (at smart_end_ms) or at least 20 ms")
        if self.max_wait_ms <= self.smart_end_ms:
            raise ConfigError("turn detection max_wait_ms must be longer than smart_end_ms")
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError("turn detection threshold must be between 0 and 1 (exclusive)")
        if not 0.0 < self.ask_threshold < 1.0:
            raise ConfigError("turn detection ask_threshold must be between 0 and 1 (exclusive)")
        if not 0.0 <= self.wait_threshold <= self.threshold:
            raise ConfigError("turn detection wait_threshold must be from 0 up to threshold")
        if self.recheck_ms != 0 and self.recheck_ms < 20:
            raise ConfigError("turn detection recheck_ms must be 0 (off) or at least 20 ms")
        if self.text_wait_ms < 0:
            raise ConfigError("turn detection text_wait_ms must not be negative")
        if self.transcript_lead_ms < 0:
            raise ConfigError("turn detection transcript_lead_ms must not be negative")
        if not 0.0 < self.start_ratio <= 1.0:
            raise ConfigError("turn detection start_ratio must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at: int
    """Sample (16 kHz, from the start of the stream) where the turn's speech began."""


@dataclass(frozen=True, slots=True)
class SpeechSustained:
    at: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    at: int
    """Sample where the player stopped speaking (the start of the final silence)."""
    detected: int
    """Sample at which the end was detected (``at`` + the endpointing silence)."""


@dataclass(frozen=True, slots=True)
class SpeechPaused:
    """The player has been silent for ``end_ms - transcript_lead_ms`` inside a turn (the turn goes on)."""

    at: int
    """Sample where the silence began."""


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back after a :class:`SpeechPaused`, before the endpoint: the same turn goes on."""

    at: int


TurnEvent = SpeechStarted | SpeechSustained | SpeechPaused | SpeechResumed | SpeechEnded


class TurnDetector:
    """Feed 16 kHz float32 audio of any chunk size; get :data:`TurnEvent` s in order."""

    def __init__(self, vad: VoiceActivity, config: TurnConfig | None = None) -> None:
        self.config = cfg = config or TurnConfig()
        self._vad = vad
        self._pending = np.zeros(0, np.float32)
        self._samples = 0  # samples classified so far
        self._window: deque[bool] = deque(maxlen=max(1, cfg.start_ms // 20))
        self._speaking = False
        self._voiced = 0  # voiced frames in the current turn
        self._sustained = False
        self._silence = 0  # consecutive unvoiced frames in the current turn
        self._paused = False  # SpeechPaused was reported for the current silence
        pause_ms = cfg.end_ms - cfg.transcript_lead_ms
        self._pause_frames = pause_ms // 20 if cfg.transcript_lead_ms and pause_ms >= 100 else 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    @property
    def position(self) -> int:
        """Samples classified so far (the detector's clock)."""
        return self._samples

    def push(self, pcm: np.ndarray) -> list[TurnEvent]:
        data = np.concatenate([self._pending, np.asarray(pcm, np.float32)])
        events: list[TurnEvent] = []
        usable = len(data) - len(data) % FRAME
        for start in range(0, usable, FRAME):
            voiced = self._vad.is_speech(data[start : start + FRAME])
            self._samples += FRAME
            event = self._step(voiced)
            if event is not None:
                events.append(event)
                if isinstance(event, SpeechStarted) and self._voiced * 20 >= self.config.barge_in_ms:
                    self._sustained = True
                    events.append(SpeechSustained(self._samples))
        self._pending = data[usable:]
        return events

    def _step(self, voiced: bool) -> TurnEvent | None:
        cfg = self.config
        self._window.append(voiced)
        if not self._speaking:
            full = len(self._window) == self._window.maxlen
            if full and sum(self._window) >= cfg.start_ratio * len(self._window):
                self._speaking, self._sustained, self._silence = True, False, 0
                self._voiced = sum(self._window)
                first = list(self._window).index(True)  # the turn starts at its first voiced frame
                return SpeechStarted(self._samples - (len(self._window) - first) * FRAME)
            return None
        if voiced:
            self._voiced += 1
            self._silence = 0
            if self._paused:  # (a barge-in due on this frame follows on the next voiced one)
                self._paused = False
                return SpeechResumed(self._samples - FRAME)
            if not self._sustained and self._voiced * 20 >= cfg.barge_in_ms:
                self._sustained = True
                return SpeechSustained(self._samples)
            return None
        self._silence += 1
        if self._silence * 20 >= cfg.end_ms:
            self._speaking = self._paused = False
            self._window.clear()
            return SpeechEnded(self._samples - self._silence * FRAME, self._samples)
        if self._silence == self._pause_frames:
            self._paused = True
            return SpeechPaused(self._samples - self._silence * FRAME)
        return None

    def force_end(self) -> SpeechEnded | None:
        """End the current turn now (the client said ``end_of_speech``); None when no turn is open."""
        if not self._speaking:
            return None
        self._speaking = self._paused = False
        self._window.clear()
        return SpeechEnded(self._samples - self._silence * FRAME, self._samples)
