"""Turn detection: the state machine on a virtual sample clock, and the real webrtcvad on espeak speech."""

from __future__ import annotations

import numpy as np
import pytest

from facecast.audio import resample
from facecast.face.phonetic import PhoneticAnimator
from facecast.offline import say
from facecast.tts.espeak import EspeakTTS
from facecast.vad import (
    FRAME,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnConfig,
    TurnDetector,
    WebRtcVad,
)


class Scripted:
    """A VAD that answers from a script of frame decisions (one bool per 20 ms frame)."""

    def __init__(self, script: list[bool]) -> None:
        self.script = iter(script)

    def is_speech(self, frame: np.ndarray) -> bool:
        return next(self.script)


def run(script: list[bool], config: TurnConfig | None = None, chunk: int = 1000) -> list[object]:
    detector = TurnDetector(Scripted(script), config or TurnConfig())
    audio = np.zeros(len(script) * FRAME, np.float32)
    events: list[object] = []
    for start in range(0, len(audio), chunk):  # odd chunk sizes: the detector frames them itself
        events += detector.push(audio[start : start + chunk])
    return events


def frames(ms: int) -> int:
    return ms // 20


def test_turn_starts_after_the_window_and_ends_after_the_endpoint_silence() -> None:
    script = [False] * 10 + [True] * 30 + [False] * 20
    events = run(script, TurnConfig(start_ms=200, end_ms=300, barge_in_ms=400, transcript_lead_ms=0))
    assert events == [
        SpeechStarted(at=10 * FRAME),
        SpeechSustained(at=30 * FRAME),
        SpeechEnded(at=40 * FRAME, detected=55 * FRAME),
    ]


def test_the_pause_comes_transcript_lead_before_the_endpoint() -> None:
    script = [True] * 20 + [False] * frames(400)
    events = run(script, TurnConfig(end_ms=300, transcript_lead_ms=100))
    assert [e for e in events if isinstance(e, SpeechPaused | SpeechEnded)] == [
        SpeechPaused(at=20 * FRAME),  # reported at 200 ms of silence, 100 ms before the endpoint
        SpeechEnded(at=20 * FRAME, detected=35 * FRAME),
    ]
    paused = events.index(SpeechPaused(at=20 * FRAME))
    assert events[paused + 1] == SpeechEnded(at=20 * FRAME, detected=35 * FRAME)


def test_speech_after_the_pause_resumes_the_same_turn() -> None:
    script = [True] * 20 + [False] * frames(240) + [True] * 10 + [False] * frames(400)
    events = [e for e in run(script, TurnConfig(end_ms=300)) if not isinstance(e, SpeechSustained)]
    assert events == [
        SpeechStarted(0),
        SpeechPaused(at=20 * FRAME),
        SpeechResumed(at=32 * FRAME),
        SpeechPaused(at=42 * FRAME),
        SpeechEnded(at=42 * FRAME, detected=57 * FRAME),
    ]


@pytest.mark.parametrize("lead", [0, 250])
def test_no_pause_events_when_the_lead_is_off_or_leaves_under_100_ms(lead: int) -> None:
    script = [True] * 20 + [False] * frames(240) + [True] * 10 + [False] * frames(400)
    events = run(script, TurnConfig(end_ms=300, transcript_lead_ms=lead))
    assert not [e for e in events if isinstance(e, SpeechPaused | SpeechResumed)]


def test_a_pause_shorter_than_the_endpoint_does_not_end_the_turn() -> None:
    script = [True] * 20 + [False] * frames(200) + [True] * 20 + [False] * frames(400)
    events = [e for e in run(script, TurnConfig(end_ms=300)) if isinstance(e, SpeechStarted | SpeechEnded)]
    assert events == [SpeechStarted(0), SpeechEnded(at=50 * FRAME, detected=65 * FRAME)]


def test_a_click_does_not_start_a_turn_and_a_cough_does_not_barge_in() -> None:
    click = [False] * 10 + [True] * 2 + [False] * 30
    assert run(click) == []
    cough = [False] * 10 + [True] * frames(300) + [False] * 30  # a turn, but never "sustained"
    kinds = [type(e) for e in run(cough, TurnConfig(barge_in_ms=400))]
    assert kinds == [SpeechStarted, SpeechPaused, SpeechEnded]


def test_force_end_closes_an_open_turn() -> None:
    detector = TurnDetector(Scripted([True] * 20), TurnConfig())
    detector.push(np.zeros(20 * FRAME, np.float32))
    assert detector.speaking
    ended = detector.force_end()
    assert ended is not None and not detector.speaking
    assert detector.force_end() is None


@pytest.mark.parametrize(
    ("field", "value"), [("start_ms", 5), ("end_ms", 5), ("barge_in_ms", 5), ("transcript_lead_ms", -1)]
)
def test_config_rejects_nonsense(field: str, value: int) -> None:
    from facecast.errors import ConfigError

    with pytest.raises(ConfigError):
        TurnConfig(**{field: value})  # type: ignore[arg-type]


async def test_webrtcvad_finds_the_speech_in_espeak_audio_with_silence_around_it() -> None:
    utt = await say("Hello there, how are you today?", EspeakTTS(), PhoneticAnimator())
    speech = resample(utt.audio, utt.rate, 16000)
    silence = np.zeros(16000, np.float32)
    rng = np.random.default_rng(0)
    noise = (0.003 * rng.standard_normal(16000)).astype(np.float32)  # a quiet room
    audio = np.concatenate([silence + noise, speech, silence + noise])
    detector = TurnDetector(WebRtcVad(2), TurnConfig(end_ms=300))
    events = detector.push(audio)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    ends = [e for e in events if isinstance(e, SpeechEnded)]
    assert len(starts) == 1 and len(ends) == 1
    voiced = np.flatnonzero(np.abs(speech) > 0.02)
    true_start, true_end = 16000 + voiced[0], 16000 + voiced[-1]
    assert abs(starts[0].at - true_start) < 0.25 * 16000
    # espeak's quiet tail after the last loud sample varies from one request to the next
    assert -0.1 * 16000 < ends[0].at - true_end < 0.5 * 16000


def test_steady_noise_is_not_speech_but_speech_over_it_is() -> None:
    rng = np.random.default_rng(1)
    vad = WebRtcVad(2)
    noise = (0.01 * rng.standard_normal(16000 * 2)).astype(np.float32)  # a loud fan, -40 dBFS
    decisions = [vad.is_speech(noise[i : i + FRAME]) for i in range(0, len(noise) - FRAME + 1, FRAME)]
    assert sum(decisions[25:]) <= 2  # after half a second the gate knows the floor
    t = np.arange(16000) / 16000
    vowel = (0.2 * np.sin(2 * np.pi * 150 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2).astype(np.float32)
    loud = vowel + noise[:16000]
    voiced = [vad.is_speech(loud[i : i + FRAME]) for i in range(0, 16000 - FRAME + 1, FRAME)]
    assert sum(voiced) >= 20
