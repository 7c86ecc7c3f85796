"""Semantic end-of-turn detection: the VAD hears silence, a model hears whether the sentence is finished.

:class:`SmartTurnDetector` has the interface and the events of :class:`~facecast.vad.TurnDetector` and runs
on the same sample clock (no wall clock: a virtual clock in tests is just the audio fed in). Turns start,
and become sustained (barge-in), exactly as with the silence detector. They end differently:

- After ``smart_ask_ms`` of silence (the server's default 100 ms; 0: ``smart_end_ms``) the end-of-turn model is
  asked about the audio of the turn so far (its last 8 s), and its probability of "complete" falls in one of
  three zones:

  * ``>= threshold`` (sure it is complete; ``>= ask_threshold``, default 0.95, when asked before
    ``smart_end_ms``): the turn ends at ``smart_end_ms`` of silence (the server's default 200 ms), at once
    if that has passed. ``SpeechEnded.at`` is where the silence began, ``.detected`` is
    now. Asking before the end hides the model's own time (tens of milliseconds) inside the silence the
    turn waits for anyway: live, the audio that arrives while the model thinks is queued and classified
    after it, and the turn ends as soon as both the answer and ``smart_end_ms`` of silence are there. A
    pause that is over before ``smart_end_ms`` never ends a turn. Any other answer before ``smart_end_ms``
    decides nothing: the model is asked again at ``smart_end_ms`` (it is surer with more silence), and that
    answer falls in the zones below as well.
  * ``<= wait_threshold`` (sure it is unfinished: "I'd like to buy... hmm..."): the turn stays open; the
    model is asked again every ``recheck_ms`` of further silence (it hears the same words and more silence,
    and may change its mind), and the turn ends anyway after ``max_wait_ms`` of silence (default 2500 ms).
  * in between (unsure): the turn ends at the plain silence endpoint ``end_ms``, as the silence detector
    would.

  Every later question uses the same zones (an "unsure" after ``end_ms`` ends the turn then). With
  ``wait_threshold == threshold`` there is no middle zone: the first question decides complete or wait.
  Speech before the end is the same turn going on (``SpeechResumed``), and its next pause is asked about
  afresh.
- ``SpeechPaused`` comes at ``smart_end_ms - transcript_lead_ms`` of silence (never before 100 ms; off when
  ``transcript_lead_ms`` is 0), like the silence detector's, so speech-to-text has closed its segment by
  the time the model answers.
- If the model fails (raises), that pause falls back to the silence endpoint ``end_ms`` (like "unsure").
- With ``text_cues`` on, the pause's transcript is a second opinion. The caller hands it in when it is
  decoded (:meth:`SmartTurnDetector.transcript`, a :class:`~facecast.turncues.TextTurnCue` judges it), on
  the same sample clock, so it arrives a decode's time into the pause. A sure "complete" from the model
  still ends the turn at once, without waiting for the text. Otherwise the text decides: "incomplete" (it
  stops on "the", "and", "um", a comma...) keeps the turn open up to ``max_wait_ms``; "complete" ends an
  "unsure" pause at once (not an "unfinished" one: Whisper puts a full stop after fragments too); "unsure"
  (no words, no punctuation) leaves the model's zone as it was. An "unsure" answer waits for the text up to
  ``text_wait_ms`` of silence (then ends anyway), and so does a model that failed. Without pause events
  (``transcript_lead_ms`` 0) no transcript can come, and the cues are off.

The server's defaults (:class:`~facecast.config.Settings`: 200 ms, 0.85, 0.2, no recheck) were tuned on the
neural-voice split of the endpoint benchmark (:mod:`facecast.bench.endpoint_bench`) and reported on its
real-speech split (docs/benchmarks.md); :class:`~facecast.vad.TurnConfig`'s own defaults are the first design
(120 ms, 0.5, no middle zone).

The model is injected (anything with ``probability(audio) -> float``), so tests script it; the server
shares one :class:`~facecast.smartturn.SmartTurnModel` among all sessions (:func:`make_turn_detector`).

Blocking. One decision costs tens of milliseconds of CPU, so :meth:`SmartTurnDetector.push` must not run on
the event loop: the :class:`~facecast.engine.listen.Listener` runs a smart detector's ``push`` in a worker
thread, one call at a time per session and in order (it batches the chunks that arrived meanwhile), and
handles the events back on the loop. The detector itself is synchronous and single-threaded; it is simply
never called by two threads at once.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace
from typing import Protocol

import numpy as np

from .turncues import Cue, TextTurnCue
from .vad import (
    FRAME,
    VAD_RATE,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEvent,
    VoiceActivity,
    WebRtcVad,
)

__all__ = ["EndOfTurnModel", "TranscriptCue", "SmartTurnDetector", "make_turn_detector"]

log = logging.getLogger(__name__)

_HEARD = 8 * VAD_RATE // FRAME
"""Frames of the turn's audio the model hears (its last 8 s)."""


class EndOfTurnModel(Protocol):
    def probability(self, audio: np.ndarray) -> float:
        """P(the turn is complete) given the turn so far (16 kHz float32 mono)."""
        ...


class TranscriptCue(Protocol):
    def judge(self, text: str) -> Cue:
        """Whether ``text`` (the turn so far, as decoded) reads as finished."""
        ...


class _Tap:
    """The VAD, remembering its last decision (so the wrapped silence detector and this one agree)."""

    def __init__(self, vad: VoiceActivity) -> None:
        self.vad = vad
        self.voiced = False

    def is_speech(self, frame: np.ndarray) -> bool:
        self.voiced = self.vad.is_speech(frame)
        return self.voiced


class SmartTurnDetector:
    """Feed 16 kHz float32 audio of any chunk size; get :data:`~facecast.vad.TurnEvent` s in order.

    Starts, barge-ins and the ``max_wait_ms`` fallback come from a :class:`~facecast.vad.TurnDetector`
    whose endpoint is ``max_wait_ms`` (composition: the start logic exists once); this class adds the
    pauses and the model's early ends. ``last_probability`` is the model's latest answer (None before
    the first), for logs and benchmarks.
    """

    def __init__(
        self,
        vad: VoiceActivity,
        model: EndOfTurnModel,
        config: TurnConfig | None = None,
        cue: TranscriptCue | None = None,
    ) -> None:
        self.config = cfg = config or TurnConfig(detector="smart")
        self._cue = cue or TextTurnCue()
        self._tap = _Tap(vad)
        self._inner = TurnDetector(self._tap, replace(cfg, end_ms=cfg.max_wait_ms, transcript_lead_ms=0))
        self._model = model
        self._pending = np.zeros(0, np.float32)
        self._frames: deque[np.ndarray] = deque(maxlen=_HEARD)
        self._start = 0  # sample where the open turn began
        self._silence = 0  # consecutive unvoiced frames in the open turn
        self._paused = False
        self._next_ask = 0  # silence (frames) at which the model is asked next; 0: not in this pause
        self._deadline = 0  # silence (frames) that ends this pause; 0: only max_wait_ms (the inner detector)
        self._zone: str | None = None  # the model's answer in this pause: complete, unsure, wait (None: not asked)
        self._text: Cue | None = None  # the cue of this pause's transcript (None: not arrived)
        self._smart_frames = max(1, cfg.smart_end_ms // 20)
        self._ask_frames = min(self._smart_frames, max(1, cfg.smart_ask_ms // 20) if cfg.smart_ask_ms else 10**9)
        self._ask_threshold = max(cfg.threshold, cfg.ask_threshold)
        self._end_frames = max(1, cfg.end_ms // 20)
        self._text_wait_frames = max(self._end_frames, cfg.text_wait_ms // 20)
        self._recheck_frames = cfg.recheck_ms // 20
        pause_ms = max(100, cfg.smart_end_ms - cfg.transcript_lead_ms)
        self._pause_frames = pause_ms // 20 if cfg.transcript_lead_ms else 0
        self.last_probability: float | None = None
        self.last_cue: Cue | None = None
        """The cue of the latest transcript handed in (None before the first), for logs and benchmarks."""

    @property
    def speaking(self) -> bool:
        return self._inner.speaking

    @property
    def position(self) -> int:
        """Samples classified so far (the detector's clock)."""
        return self._inner.position

    @property
    def silence_ms(self) -> int:
        """Silence since the open turn's last voiced frame (0 while voiced or with no turn open)."""
        return self._silence * 20

    def push(self, pcm: np.ndarray) -> list[TurnEvent]:
        data = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        usable = len(data) - len(data) % FRAME
        events: list[TurnEvent] = []
        for start in range(0, usable, FRAME):
            frame = data[start : start + FRAME]
            self._frames.append(frame)
            events += self._step(frame)
        self._pending = data[usable:]
        return events

    def force_end(self) -> SpeechEnded | None:
        """End the current turn now (the client said ``end_of_speech``); None when no turn is open."""
        self._reset()
        return self._inner.force_end()

    def transcript(self, text: str, pause_at: int) -> list[TurnEvent]:
        """The transcript of the turn up to the pause whose silence began at sample ``pause_at``
        (:attr:`SpeechPaused.at <facecast.vad.SpeechPaused.at>`), decoded while the audio went on: judged at
        the current position (module docstring). Ignored (``[]``) without ``text_cues``, or when that pause is
        over (the player went on, or the turn ended). Returns ``[SpeechEnded]`` when it ends the turn now."""
        silence_at = self.position - self._silence * FRAME
        if not self.config.text_cues or not self._inner.speaking or not self._silence or pause_at != silence_at:
            return []
        self._text = self.last_cue = self._cue.judge(text)
        self._settle()
        if self._deadline and self._silence >= self._deadline:
            return [self._end(silence_at)]
        return []

    # -- internals -------------------------------------------------------------------------------
    def _step(self, frame: np.ndarray) -> list[TurnEvent]:
        was_speaking = self._inner.speaking
        events: list[TurnEvent] = list(self._inner.push(frame))
        if not self._inner.speaking:  # no turn, or the max_wait endpoint just ended it
            if was_speaking:
                self._reset()
            return events
        if not was_speaking:  # this frame started a turn
            self._start = next(e.at for e in events if isinstance(e, SpeechStarted))
            self._reset()
            return events
        if self._tap.voiced:
            if self._paused:
                events.insert(0, SpeechResumed(self.position - FRAME))
            self._reset()
            return events
        self._silence += 1
        silence_at = self.position - self._silence * FRAME
        if self._silence == self._pause_frames:
            self._paused = True
            events.append(SpeechPaused(silence_at))
        if self._silence == 1:
            self._next_ask = self._ask_frames
        if self._silence == self._next_ask:
            p = self._ask()
            if self._silence < self._smart_frames and (p is None or p < self._ask_threshold):
                self._next_ask = self._smart_frames  # not sure yet: asked again at smart_end_ms, which decides
            else:
                self._next_ask = self._decide(p)
                self._settle()
        if self._deadline and self._silence >= self._deadline:
            return events + [self._end(silence_at)]
        return events

    def _decide(self, p: float | None) -> int:
        """Set this pause's deadline from the model's answer ``p`` (None: it failed); the next question's
        silence in frames (0: none)."""
        cfg = self.config
        if p is not None and p >= cfg.threshold:  # complete: end now
            self._zone = "complete"
            return 0
        if p is not None and p <= cfg.wait_threshold:  # unfinished: wait, and ask again later
            self._zone = "wait"
            return self._silence + self._recheck_frames if self._recheck_frames else 0
        self._zone = "unsure"  # unsure, or no answer: the silence endpoint (or the transcript)
        return 0

    def _settle(self) -> None:
        """This pause's deadline from the model's zone and the transcript's cue (module docstring)."""
        zone, text = self._zone, self._text if self.config.text_cues and self._pause_frames else "off"
        if zone == "complete":
            self._deadline = max(self._silence, self._smart_frames)
        elif zone == "wait":  # a full stop is weak evidence (Whisper puts one after a fragment too)
            self._deadline = 0
        elif zone == "unsure":
            if text == "complete":
                self._deadline = max(self._silence, self._smart_frames)
            elif text == "incomplete":
                self._deadline = 0
            else:  # no cues, an unsure text, or still decoding (then wait for it, up to text_wait_ms)
                self._deadline = self._text_wait_frames if text is None else self._end_frames

    def _ask(self) -> float | None:
        """The model's probability that the turn so far is complete; None when it failed."""
        heard = min(len(self._frames), -(-(self.position - self._start) // FRAME))
        audio = np.concatenate(list(self._frames)[-heard:])
        self.last_probability = None
        try:
            p = float(self._model.probability(audio))
        except Exception:  # a broken model must not keep turns from ending: this pause ends at end_ms
            log.exception("the end-of-turn model failed; this pause ends on silence")
            return None
        self.last_probability = p
        return p

    def _end(self, at: int) -> SpeechEnded:
        self._inner.force_end()
        self._reset()
        return SpeechEnded(at, self.position)

    def _reset(self) -> None:
        self._silence = self._next_ask = self._deadline = 0
        self._paused = False
        self._zone = self._text = None


def make_turn_detector(
    config: TurnConfig,
    model: EndOfTurnModel | None = None,
    *,
    vad: VoiceActivity | None = None,
    cue: TranscriptCue | None = None,
) -> TurnDetector | SmartTurnDetector:
    """The detector ``config.detector`` names, on ``vad`` (default: :class:`~facecast.vad.WebRtcVad` at
    ``config.aggressiveness``).

    ``"smart"`` uses ``model``, else the server-wide :func:`~facecast.smartturn.shared_model`; when that
    cannot be had (no network on first use), the silence detector is returned (the warning is logged once,
    by ``shared_model``). ``"silence"`` is :class:`~facecast.vad.TurnDetector`, exactly as before.
    """
    vad = vad if vad is not None else WebRtcVad(config.aggressiveness)
    if config.detector == "smart":
        if model is None:
            from .smartturn import shared_model

            model = shared_model()
        if model is not None:
            return SmartTurnDetector(vad, model, config, cue)
    return TurnDetector(vad, config)
