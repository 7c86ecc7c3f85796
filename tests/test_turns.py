"""The smart turn detector on a virtual sample clock (a scripted VAD and a scripted end-of-turn model), its
settings, its factory, and the Listener running it off the event loop."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from facecast import smartturn
from facecast.audio import resample
from facecast.config import load_settings
from facecast.engine import listen
from facecast.engine.listen import HeardUtterance, Listener, ListenerCallbacks
from facecast.errors import ConfigError, FacecastError
from facecast.face.phonetic import PhoneticAnimator
from facecast.offline import say
from facecast.tts.espeak import EspeakTTS
from facecast.turns import SmartTurnDetector, make_turn_detector
from facecast.types import AudioChunk, Transcript
from facecast.vad import (
    FRAME,
    VAD_RATE,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    SpeechSustained,
    TurnConfig,
    TurnDetector,
)


class Scripted:
    """A VAD that answers from a script of frame decisions (one bool per 20 ms frame)."""

    def __init__(self, script: list[bool]) -> None:
        self.script = iter(script)

    def is_speech(self, frame: np.ndarray) -> bool:
        return next(self.script)


class Model:
    """An end-of-turn model that answers from a list of probabilities and keeps what it was asked about."""

    def __init__(self, *answers: float) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[int, np.ndarray]] = []  # (detector position, audio)
        self.detector: SmartTurnDetector | None = None

    def probability(self, audio: np.ndarray) -> float:
        self.asked.append((self.detector.position if self.detector else -1, audio))
        return self.answers.pop(0)


class Broken:
    def probability(self, audio: np.ndarray) -> float:
        raise RuntimeError("model crashed")


SMART = TurnConfig(
    detector="smart", start_ms=200, barge_in_ms=400, smart_end_ms=120, max_wait_ms=2000, transcript_lead_ms=0
)


def ms(n: int) -> int:
    return n // 20


def run(script: list[bool], model: Model | Broken, config: TurnConfig = SMART, chunk: int = 1000) -> list[object]:
    """The events of ``script``, fed as odd-sized chunks of audio whose samples count the frames (frame i
    holds the value i), so a test can tell which audio the model heard."""
    detector = SmartTurnDetector(Scripted(script), model, config)
    if isinstance(model, Model):
        model.detector = detector
    audio = np.repeat(np.arange(len(script), dtype=np.float32), FRAME)
    events: list[object] = []
    for start in range(0, len(audio), chunk):
        events += detector.push(audio[start : start + chunk])
    return events


def test_complete_ends_the_turn_after_smart_end_ms() -> None:
    script = [False] * 10 + [True] * 30 + [False] * 50
    model = Model(0.9)
    events = run(script, model)
    assert events == [
        SpeechStarted(at=10 * FRAME),
        SpeechSustained(at=30 * FRAME),
        SpeechEnded(at=40 * FRAME, detected=(40 + ms(120)) * FRAME),
    ]
    ((asked_at, audio),) = model.asked
    assert asked_at == (40 + ms(120)) * FRAME
    # it heard the turn from its first voiced frame to now: frames 10..45
    np.testing.assert_array_equal(np.unique(audio), np.arange(10, 46, dtype=np.float32))


def test_asked_before_the_end_a_complete_turn_ends_at_smart_end_ms() -> None:
    config = replace(SMART, smart_end_ms=200, smart_ask_ms=100, threshold=0.85, wait_threshold=0.2, end_ms=300)
    script = [False] * 10 + [True] * 30 + [False] * 50
    model = Model(0.97)
    events = run(script, model, config)
    assert events[-1] == SpeechEnded(at=40 * FRAME, detected=(40 + ms(200)) * FRAME)  # not at the question
    ((asked_at, _),) = model.asked
    assert asked_at == (40 + ms(100)) * FRAME
    # a pause that is over before smart_end_ms never ends the turn, though the model called it finished
    script = [True] * 30 + [False] * ms(160) + [True] * 30 + [False] * 50
    model = Model(0.97, 0.97)
    events = run(script, model, config)
    assert [e for e in events if isinstance(e, SpeechEnded)] == [SpeechEnded(68 * FRAME, (68 + ms(200)) * FRAME)]
    assert len(model.asked) == 2  # once in each pause
    # an early answer under ask_threshold (0.95) decides nothing: the answer at smart_end_ms does, in its zones
    pause = [True] * 30 + [False] * ms(3000)
    model = Model(0.9, 0.1)
    assert run(pause, model, config)[-1] == SpeechEnded(30 * FRAME, 130 * FRAME)  # unfinished: max_wait_ms
    assert [at for at, _ in model.asked] == [(30 + ms(100)) * FRAME, (30 + ms(200)) * FRAME]
    assert run(pause, Model(0.1, 0.9), config)[-1] == SpeechEnded(30 * FRAME, 40 * FRAME)  # surer later: ends
    assert run(pause, Model(0.5, 0.5), config)[-1] == SpeechEnded(30 * FRAME, 45 * FRAME)  # the silence endpoint
    # the early bar is the higher of the two thresholds
    stricter = replace(config, threshold=0.98)
    assert run(pause, Model(0.97, 0.5), stricter)[-1] == SpeechEnded(30 * FRAME, 45 * FRAME)


def test_smart_ask_ms_is_checked() -> None:
    assert TurnConfig(smart_end_ms=200, smart_ask_ms=0).smart_ask_ms == 0
    with pytest.raises(ConfigError, match="smart_ask_ms"):
        TurnConfig(smart_end_ms=200, smart_ask_ms=10)
    # asking later than the end is asking at the end: lowering --smart-end-ms alone stays valid
    late = replace(SMART, smart_end_ms=80, smart_ask_ms=100, threshold=0.85, wait_threshold=0.2)
    model = Model(0.9)
    assert run([True] * 30 + [False] * 50, model, late)[-1] == SpeechEnded(30 * FRAME, 34 * FRAME)
    assert [at for at, _ in model.asked] == [34 * FRAME]
    for bad_p in (0.0, 1.0):
        with pytest.raises(ConfigError, match="ask_threshold"):
            TurnConfig(ask_threshold=bad_p)


def test_incomplete_waits_for_max_wait_ms() -> None:
    script = [True] * 30 + [False] * ms(3000)
    model = Model(0.2)
    events = run(script, model)
    assert events[-1] == SpeechEnded(at=30 * FRAME, detected=(30 + ms(2000)) * FRAME)
    assert len(model.asked) == 1  # asked once per pause
    assert sum(isinstance(e, SpeechEnded) for e in events) == 1


def test_threshold_decides() -> None:
    script = [True] * 30 + [False] * ms(3000)
    config = TurnConfig(
        detector="smart", smart_end_ms=120, max_wait_ms=2000, threshold=0.8, wait_threshold=0.8, transcript_lead_ms=0
    )
    assert run(script, Model(0.79), config)[-1] == SpeechEnded(30 * FRAME, (30 + ms(2000)) * FRAME)
    assert run(script, Model(0.8), config)[-1] == SpeechEnded(30 * FRAME, (30 + ms(120)) * FRAME)


ZONES = TurnConfig(
    detector="smart",
    end_ms=300,
    smart_end_ms=120,
    max_wait_ms=2000,
    threshold=0.9,
    wait_threshold=0.2,
    transcript_lead_ms=0,
)
PAUSE = [True] * 30 + [False] * ms(3000)


def ended(events: list[object]) -> list[int]:
    """The silence (ms) at which each turn ended."""
    return [(e.detected - e.at) * 20 // FRAME for e in events if isinstance(e, SpeechEnded)]


@pytest.mark.parametrize(("p", "end"), [(0.95, 120), (0.9, 120), (0.5, 300), (0.21, 300), (0.2, 2000), (0.05, 2000)])
def test_three_zones_sure_complete_ends_now_unsure_at_the_silence_endpoint_unfinished_waits(p: float, end: int) -> None:
    model = Model(p)
    assert ended(run(PAUSE, model, ZONES)) == [end]
    assert len(model.asked) == 1  # no recheck_ms: asked once


def test_an_unfinished_turn_is_asked_again_every_recheck_ms() -> None:
    config = replace(ZONES, recheck_ms=200)
    model = Model(0.1, 0.1, 0.95)  # unfinished, unfinished, then sure it is complete
    assert ended(run(PAUSE, model, config)) == [520]
    assert [at for at, _ in model.asked] == [(30 + ms(t)) * FRAME for t in (120, 320, 520)]
    # the later question hears the same words and the longer silence
    assert len(model.asked[2][1]) == len(model.asked[0][1]) + ms(400) * FRAME
    # unsure on a later question: past end_ms, so it ends then
    assert ended(run(PAUSE, Model(0.1, 0.5), config)) == [320]
    # unfinished every time: max_wait_ms, asked at 120, 320, ... 1920
    model = Model(*[0.1] * 20)
    assert ended(run(PAUSE, model, config)) == [2000]
    assert len(model.asked) == 10


def test_a_resumed_pause_starts_the_zones_afresh() -> None:
    config = replace(ZONES, recheck_ms=200)
    script = [True] * 40 + [False] * ms(700) + [True] * 30 + [False] * ms(600)
    model = Model(0.1, 0.1, 0.1, 0.5)  # the hesitation waits (asked at 120, 320, 520); the end is unsure
    events = run(script, model, config)
    assert ended(events) == [300]
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert len(model.asked) == 4


def test_resume_after_an_incomplete_pause_keeps_one_turn_and_asks_again() -> None:
    config = TurnConfig(detector="smart", smart_end_ms=120, max_wait_ms=2000, transcript_lead_ms=20)
    # "I'd like to buy..." 800 ms of thought, "the red one." then silence
    script = [True] * 40 + [False] * ms(800) + [True] * 30 + [False] * 20
    model = Model(0.1, 0.95)
    events = run(script, model, config)
    resumed = 40 + ms(800)
    assert events == [
        SpeechStarted(at=0),
        SpeechSustained(at=20 * FRAME),
        SpeechPaused(at=40 * FRAME),  # at 100 ms: never earlier
        SpeechResumed(at=resumed * FRAME),
        SpeechPaused(at=(resumed + 30) * FRAME),
        SpeechEnded(at=(resumed + 30) * FRAME, detected=(resumed + 30 + ms(120)) * FRAME),
    ]
    assert [at for at, _ in model.asked] == [(40 + ms(120)) * FRAME, (resumed + 30 + ms(120)) * FRAME]
    # the second question heard the whole turn, the thinking pause included
    assert np.unique(model.asked[1][1])[0] == 0


def test_the_pause_comes_transcript_lead_before_the_question() -> None:
    config = TurnConfig(detector="smart", smart_end_ms=300, max_wait_ms=2000, transcript_lead_ms=100)
    events = run([True] * 30 + [False] * 40, Model(0.9), config)
    assert events[-2:] == [SpeechPaused(30 * FRAME), SpeechEnded(30 * FRAME, (30 + ms(300)) * FRAME)]
    # no lead: no pause event, the segment closes at the end
    events = run([True] * 30 + [False] * 40, Model(0.9), TurnConfig(detector="smart", transcript_lead_ms=0))
    assert not any(isinstance(e, SpeechPaused) for e in events)


def test_a_pause_shorter_than_smart_end_asks_nothing() -> None:
    script = [True] * 30 + [False] * ms(100) + [True] * 30 + [False] * ms(200)
    model = Model(0.9)
    events = run(script, model)
    assert len(model.asked) == 1
    assert [type(e) for e in events] == [SpeechStarted, SpeechSustained, SpeechEnded]


def test_force_end_ends_the_open_turn() -> None:
    detector = SmartTurnDetector(Scripted([True] * 30 + [False] * 3 + [True] * 30), Model(), SMART)
    detector.push(np.zeros(30 * FRAME + 3 * FRAME, np.float32))
    assert detector.speaking
    assert detector.force_end() == SpeechEnded(at=30 * FRAME, detected=33 * FRAME)
    assert not detector.speaking and detector.force_end() is None
    # a new turn needs a new start window (the same as the silence detector)
    assert [type(e) for e in detector.push(np.zeros(30 * FRAME, np.float32))] == [SpeechStarted, SpeechSustained]


def test_a_failing_model_falls_back_to_the_silence_endpoint(caplog: pytest.LogCaptureFixture) -> None:
    config = TurnConfig(detector="smart", end_ms=300, smart_end_ms=120, max_wait_ms=2000, transcript_lead_ms=0)
    with caplog.at_level(logging.ERROR, "facecast.turns"):
        events = run([True] * 30 + [False] * 40, Broken(), config)
    assert events[-1] == SpeechEnded(30 * FRAME, (30 + ms(300)) * FRAME)
    assert "model failed" in caplog.text


def test_same_events_as_the_silence_detector_when_the_model_always_says_complete() -> None:
    """With "complete" every time and smart_end_ms = end_ms, the smart detector IS the silence detector."""
    rng = np.random.default_rng(7)
    script: list[bool] = []
    while len(script) < 3000:  # talk (long enough to be sustained before a pause), then pauses of any length
        script += [True] * int(rng.integers(20, 80)) + [False] * int(rng.integers(1, 40))
    config = TurnConfig(end_ms=300, transcript_lead_ms=100, smart_end_ms=300, max_wait_ms=2000)
    silence = TurnDetector(Scripted(script), config)
    smart = SmartTurnDetector(Scripted(script), Model(*[1.0] * 3000), config)
    audio = np.zeros(len(script) * FRAME, np.float32)
    a = [e for i in range(0, len(audio), 777) for e in silence.push(audio[i : i + 777])]
    b = [e for i in range(0, len(audio), 777) for e in smart.push(audio[i : i + 777])]
    assert len(a) > 20 and a == b


# -- the transcript as a second opinion ---------------------------------------------------------------------
TEXT = replace(ZONES, text_cues=True, text_wait_ms=600, transcript_lead_ms=20)
"""Paused at 100 ms, asked at 120 ms: >= 0.9 ends, <= 0.2 waits up to 2 s, in between the transcript decides
(600 ms at most)."""


def run_with_text(
    script: list[bool], model: Model, texts: list[tuple[int, str]], config: TurnConfig = TEXT
) -> tuple[list[object], SmartTurnDetector]:
    """``script`` fed frame by frame; ``texts``: for the pauses in order, the silence (ms) at which that pause's
    transcript is handed in (a decode that took that long) and its text; a pause shorter than that gets none."""
    detector = SmartTurnDetector(Scripted(script), model, config)
    model.detector = detector
    pending = list(texts)
    answered = -1  # the pause (its first silent sample) that got the last text
    events: list[object] = []
    for _ in range(len(script)):
        events += detector.push(np.zeros(FRAME, np.float32))
        pause_at = detector.position - detector.silence_ms * VAD_RATE // 1000
        if detector.speaking and pending and detector.silence_ms == pending[0][0] and pause_at != answered:
            answered = pause_at
            events += detector.transcript(pending.pop(0)[1], pause_at)
    return events, detector


def test_an_unfinished_sentence_keeps_the_turn_open_through_a_long_pause() -> None:
    # "I'd like to buy the" ... 1.2 s of thought ... "red one." then silence: unsure both times, by the model
    script = [True] * 40 + [False] * ms(1200) + [True] * 30 + [False] * ms(1000)
    texts = [(240, "I'd like to buy the"), (260, "I'd like to buy the red one.")]
    events, _ = run_with_text(script, Model(0.5, 0.5), texts)
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == 1 and ended(events) == [260]  # one turn, ended after the player finished
    [end] = [e for e in events if isinstance(e, SpeechEnded)]
    assert end.at == (40 + ms(1200) + 30) * FRAME
    # without the transcript the same answers end it inside the pause (at the silence endpoint), cutting off
    events = run(script, Model(0.5, 0.5), replace(TEXT, text_cues=False))
    assert ended(events)[0] == 300 and sum(isinstance(e, SpeechStarted) for e in events) == 2


def test_a_confident_complete_ends_at_smart_end_ms_without_waiting_for_the_text() -> None:
    events, detector = run_with_text(PAUSE, Model(0.95), [(240, "The red one.")])
    assert ended(events) == [120]
    assert detector.last_cue is None  # the text came after the end: nobody looked at it


def test_an_unsure_pause_follows_its_transcript() -> None:
    # complete: ends when the text arrives (sooner than the 300 ms silence endpoint)
    assert ended(run_with_text(PAUSE, Model(0.5), [(200, "The red one.")])[0]) == [200]
    # later than the endpoint: still ends when it arrives (the pause waited for it, up to text_wait_ms)
    assert ended(run_with_text(PAUSE, Model(0.5), [(440, "The red one.")])[0]) == [440]
    # incomplete: waits up to max_wait_ms
    assert ended(run_with_text(PAUSE, Model(0.5), [(200, "I need bread, milk and")])[0]) == [2000]
    # unsure text (no words, or no punctuation to go on): the silence endpoint, as without text
    assert ended(run_with_text(PAUSE, Model(0.5), [(200, "")])[0]) == [300]
    assert ended(run_with_text(PAUSE, Model(0.5), [(400, "what is your name")])[0]) == [400]
    # no text at all: text_wait_ms, then the turn ends anyway
    assert ended(run_with_text(PAUSE, Model(0.5), [])[0]) == [600]


def test_a_full_stop_does_not_end_a_pause_the_model_called_unfinished() -> None:
    # Whisper puts a full stop after fragments too ("If you give me the key."): not enough against the model
    assert ended(run_with_text(PAUSE, Model(0.1), [(200, "If you give me the key.")])[0]) == [2000]


def test_a_transcript_before_the_question_is_weighed_with_the_answer() -> None:
    config = replace(TEXT, smart_end_ms=200)
    assert ended(run_with_text(PAUSE, Model(0.5), [(140, "I'd like the")], config)[0]) == [2000]
    assert ended(run_with_text(PAUSE, Model(0.5), [(140, "I'd like the red one.")], config)[0]) == [200]
    assert ended(run_with_text(PAUSE, Model(0.95), [(140, "I'd like the")], config)[0]) == [200]


def test_a_stale_or_unwanted_transcript_changes_nothing() -> None:
    detector = SmartTurnDetector(Scripted(PAUSE), Model(0.5), TEXT)
    detector.push(np.zeros(FRAME * (30 + ms(200)), np.float32))
    assert detector.speaking and detector.silence_ms == 200
    assert detector.transcript("The red one.", 29 * FRAME) == []  # another pause's text: ignored
    assert detector.speaking and detector.last_cue is None
    assert detector.transcript("The red one.", 30 * FRAME) == [SpeechEnded(30 * FRAME, (30 + ms(200)) * FRAME)]
    assert detector.transcript("The red one.", 30 * FRAME) == []  # no turn open
    # text cues off: the transcript is not even judged
    off = SmartTurnDetector(Scripted(PAUSE), Model(0.5), replace(TEXT, text_cues=False))
    off.push(np.zeros(FRAME * (30 + ms(200)), np.float32))
    assert off.transcript("The red one.", 30 * FRAME) == [] and off.last_cue is None and off.speaking


def test_without_pause_events_no_transcript_can_come_and_an_unsure_pause_ends_on_silence() -> None:
    config = replace(TEXT, transcript_lead_ms=0)  # no SpeechPaused: the listener decodes nothing at pauses
    events, _ = run_with_text(PAUSE, Model(0.5), [], config)
    assert ended(events) == [300] and not any(isinstance(e, SpeechPaused) for e in events)
    assert ended(run_with_text(PAUSE, Model(0.5), [])[0]) == [600]  # with pauses it waits for the text


def test_a_failed_model_waits_for_the_text(caplog: pytest.LogCaptureFixture) -> None:
    detector = SmartTurnDetector(Scripted(PAUSE), Broken(), TEXT)
    with caplog.at_level(logging.ERROR, "facecast.turns"):
        detector.push(np.zeros(FRAME * (30 + ms(260)), np.float32))
    assert detector.speaking
    assert detector.transcript("Over there.", 30 * FRAME) == [SpeechEnded(30 * FRAME, (30 + ms(260)) * FRAME)]


class Judge:
    """A cue that records what it was asked."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def judge(self, text: str) -> str:
        self.heard.append(text)
        return "incomplete"


def test_the_factory_passes_the_cue_on() -> None:
    cue = Judge()
    detector = make_turn_detector(TEXT, Model(0.5), vad=Scripted(PAUSE), cue=cue)
    assert isinstance(detector, SmartTurnDetector)
    detector.push(np.zeros(FRAME * (30 + ms(200)), np.float32))
    detector.transcript("anything", 30 * FRAME)
    assert cue.heard == ["anything"]


# -- settings and factory ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "bad",
    [
        {"detector": "magic"},
        {"smart_end_ms": 10},
        {"smart_end_ms": 500, "max_wait_ms": 500},
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"threshold": 0.8, "wait_threshold": 0.9},
        {"wait_threshold": -0.1},
        {"recheck_ms": 10},
        {"recheck_ms": -20},
    ],
)
def test_bad_settings_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TurnConfig(**bad)  # type: ignore[arg-type]


def test_factory_picks_by_config() -> None:
    model = Model()
    assert isinstance(make_turn_detector(TurnConfig(detector="smart"), model), SmartTurnDetector)
    assert type(make_turn_detector(TurnConfig(detector="silence"), model)) is TurnDetector


def test_without_the_model_smart_falls_back_to_silence_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    """No cached model and no way to fetch one (pip cannot reach an index): one warning, the silence
    detector, and never a crash."""
    monkeypatch.setenv("FACECAST_CACHE", str(tmp_path))
    monkeypatch.setattr(smartturn, "_installed_copy", lambda: None)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # a closed port: no network
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setattr(smartturn, "_SHARED", {})
    with caplog.at_level(logging.WARNING, "facecast.smartturn"):
        first = make_turn_detector(TurnConfig(detector="smart"))
        second = make_turn_detector(TurnConfig(detector="smart"))
    assert type(first) is TurnDetector and type(second) is TurnDetector
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "silence" in warnings[0].getMessage()


# -- the Listener ------------------------------------------------------------------------------------------
class OneSegmentSTT:
    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript("hello", True)


async def espeak(text: str) -> np.ndarray:
    utt = await say(text, EspeakTTS(end_pause=False), PhoneticAnimator())
    return resample(utt.audio, utt.rate, VAD_RATE)


class SlowModel:
    """Blocks like a real model; records the thread it ran on."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.threads: list[int] = []

    def probability(self, audio: np.ndarray) -> float:
        self.threads.append(threading.get_ident())
        self.event.wait(5)
        return 0.9


async def test_listener_runs_the_smart_detector_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    model = SlowModel(release)
    monkeypatch.setattr(smartturn, "_SHARED", {"model": model})  # what the server loaded at start-up
    heard: list[HeardUtterance] = []

    async def on_heard(h: HeardUtterance) -> None:
        heard.append(h)

    async def nothing(*_: object) -> None:
        return None

    async def on_error(exc: FacecastError) -> None:
        raise AssertionError(exc)

    callbacks = ListenerCallbacks(nothing, on_heard, nothing, on_error)
    listener = Listener(OneSegmentSTT(), VAD_RATE, callbacks, TurnConfig(detector="smart", transcript_lead_ms=0))
    assert isinstance(listener._detector, SmartTurnDetector)  # built by the factory with the shared model
    voice = await espeak("Tell me about the weather.")
    try:
        audio = np.concatenate([np.zeros(3200, np.float32), voice, np.zeros(VAD_RATE, np.float32)])
        for chunk in np.array_split(audio, len(audio) // 320):
            listener.feed(chunk)
            await asyncio.sleep(0)
        for _ in range(200):  # the model is now blocked in its worker thread; the loop is not
            if model.threads:
                break
            await asyncio.sleep(0.01)
        assert model.threads and model.threads[0] != threading.get_ident()
        assert not heard
        released = time.monotonic()
        release.set()
        for _ in range(300):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert [h.text for h in heard] == ["hello"]
        # the turn was decided when the model answered: its time is part of the endpoint stage
        assert heard[0].endpoint >= released
        assert heard[0].endpoint - heard[0].speech_end >= 0.12 - 0.021
    finally:
        release.set()
        await listener.close()


def test_listener_keeps_the_silence_detector_for_silence() -> None:
    async def nothing(*_: object) -> None:
        return None

    callbacks = ListenerCallbacks(nothing, nothing, nothing, nothing)
    listener = Listener(OneSegmentSTT(), VAD_RATE, callbacks, TurnConfig(detector="silence"))
    assert type(listener._detector) is TurnDetector


def test_settings_reach_the_turn_config_from_every_layer(tmp_path: Path) -> None:
    s = load_settings(environ={})
    assert s.turn_config(200) == TurnConfig(
        end_ms=300,
        transcript_lead_ms=200,
        detector="silence",
        smart_end_ms=200,
        smart_ask_ms=100,
        ask_threshold=0.95,
        max_wait_ms=2500,
        threshold=0.85,
        wait_threshold=0.2,
        recheck_ms=0,
        text_cues=True,
        text_wait_ms=600,
    )
    toml = tmp_path / "f.toml"
    toml.write_text("turn_detector = 'silence'\nmax_wait_ms = 3000\n", encoding="utf-8")
    s = load_settings(
        str(toml),
        environ={"FACECAST_SMART_END_MS": "150", "FACECAST_TURN_RECHECK_MS": "250"},
        overrides={"turn_threshold": 0.7, "turn_wait_threshold": 0.1, "endpoint_ms": None},
    )
    config = s.turn_config()
    assert (config.detector, config.max_wait_ms, config.smart_end_ms, config.threshold) == ("silence", 3000, 150, 0.7)
    assert (config.wait_threshold, config.recheck_ms) == (0.1, 250)
    with pytest.raises(ConfigError, match="'smart' or 'silence'"):
        load_settings(environ={"FACECAST_TURN_DETECTOR": "psychic"})
    with pytest.raises(ConfigError, match="max_wait_ms"):
        load_settings(environ={}, overrides={"max_wait_ms": 100})
    with pytest.raises(ConfigError, match="wait_threshold"):
        load_settings(environ={}, overrides={"turn_wait_threshold": 0.9})
    with pytest.raises(ConfigError, match="recheck_ms"):
        load_settings(environ={"FACECAST_TURN_RECHECK_MS": "5"})


def test_run_flags() -> None:
    from facecast.cli import _settings, build_parser

    args = build_parser().parse_args(
        ["run", "--turn-detector", "silence", "--smart-end-ms", "160", "--turn-wait-threshold", "0.3"]
    )
    s = _settings(args)
    assert (s.turn_detector, s.smart_end_ms, s.turn_wait_threshold) == ("silence", 160, 0.3)
    assert type(make_turn_detector(s.turn_config(), Model())) is TurnDetector  # the old path, exactly
    s = _settings(build_parser().parse_args(["run", "--turn-recheck-ms", "300"]))
    assert s.turn_config().recheck_ms == 300
    assert _settings(build_parser().parse_args(["run"])).turn_config().smart_ask_ms == 100
    assert _settings(build_parser().parse_args(["run", "--smart-ask-ms", "0"])).turn_config().smart_ask_ms == 0
    s = _settings(build_parser().parse_args(["run", "--turn-ask-threshold", "0.9"]))
    assert s.turn_config().ask_threshold == 0.9
    s = _settings(build_parser().parse_args(["run", "--no-turn-text-cues", "--turn-text-wait-ms", "400"]))
    assert (s.turn_config().text_cues, s.turn_config().text_wait_ms) == (False, 400)
    assert _settings(build_parser().parse_args(["run"])).turn_config().text_cues is True
    with pytest.raises(ConfigError, match="text_wait_ms"):
        load_settings(environ={"FACECAST_TURN_TEXT_WAIT_MS": "-1"})


async def test_a_smart_turn_ends_when_the_microphone_stream_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model said "unfinished" and the client then sent nothing more (no audio, so no silence to count on
    the sample clock): after max_wait_ms of wall-clock time the turn ends all the same."""
    model = Model(0.1)
    monkeypatch.setattr(smartturn, "_SHARED", {"model": model})
    heard: list[HeardUtterance] = []

    async def on_heard(h: HeardUtterance) -> None:
        heard.append(h)

    async def nothing(*_: object) -> None:
        return None

    callbacks = ListenerCallbacks(nothing, on_heard, nothing, nothing)
    config = TurnConfig(detector="smart", max_wait_ms=600, transcript_lead_ms=0)
    listener = Listener(OneSegmentSTT(), VAD_RATE, callbacks, config)
    voice = await espeak("I would like to buy")
    audio = np.concatenate([np.zeros(3200, np.float32), voice, np.zeros(4800, np.float32)])
    try:
        for chunk in np.array_split(audio, len(audio) // 320):
            listener.feed(chunk)
            await asyncio.sleep(0)
        for _ in range(100):
            if model.asked:
                break
            await asyncio.sleep(0.01)
        assert len(model.asked) == 1 and listener.hearing  # "unfinished": the turn waits
        stopped = asyncio.get_running_loop().time()
        for _ in range(300):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert [h.text for h in heard] == ["hello"]
        # 300 ms of the 600 ms wait were streamed silence: the rest passed on the wall clock
        assert 0.25 <= asyncio.get_running_loop().time() - stopped
        assert not listener.hearing
    finally:
        await listener.close()


async def test_a_late_batch_reports_when_the_speech_ended_and_when_the_turn_was_decided(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load the worker thread gets seconds of audio at once: the speech ended when its last voiced
    audio arrived (not ``silence`` before the batch's last chunk), and the turn was decided when the detector
    answered (the model's and the queue's time belong to the endpoint stage)."""
    model = Model(0.95)
    monkeypatch.setattr(smartturn, "_SHARED", {"model": model})
    clock = [100.0]
    monkeypatch.setattr(listen, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    heard: list[HeardUtterance] = []

    async def on_heard(h: HeardUtterance) -> None:
        heard.append(h)

    async def nothing(*_: object) -> None:
        return None

    callbacks = ListenerCallbacks(nothing, on_heard, nothing, nothing)
    listener = Listener(OneSegmentSTT(), VAD_RATE, callbacks, TurnConfig(detector="smart", transcript_lead_ms=0))
    voice = await espeak("Tell me about the weather.")
    audio = np.concatenate([np.zeros(3200, np.float32), voice, np.zeros(VAD_RATE, np.float32)])
    try:
        for start in range(0, len(audio), 320):  # real time, but the loop is busy: one batch
            clock[0] += 0.02
            listener.feed(audio[start : start + 320])
        voice_end = 100.0 + (3200 + len(voice)) / VAD_RATE
        clock[0] += 5.0  # the worker gets to it 5 s later
        decided = clock[0]
        for _ in range(300):
            if heard:
                break
            await asyncio.sleep(0.01)
        assert len(model.asked) == 1 and [h.text for h in heard] == ["hello"]
        assert heard[0].endpoint == decided
        assert heard[0].speech_end == pytest.approx(voice_end, abs=0.1)
    finally:
        await listener.close()


class Loud:
    """A VAD for marked audio: a frame is speech when it is not all zeros."""

    def is_speech(self, frame: np.ndarray) -> bool:
        return bool(np.any(frame))


class MarkedSTT:
    """Speech-to-text for marked audio: samples of 1.0 are "I would like to buy the", of 2.0 "red one"."""

    async def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        marks: set[float] = set()
        async for chunk in audio:
            marks |= set(np.unique(chunk.pcm).tolist())
        words = (["I would like to buy the"] if 1.0 in marks else []) + (["red one"] if 2.0 in marks else [])
        yield Transcript(" ".join(words) + ("." if 2.0 in marks else ""), True)


@pytest.mark.parametrize("cues", [True, False])
async def test_listener_hands_the_pause_transcript_to_the_detector(monkeypatch: pytest.MonkeyPatch, cues: bool) -> None:
    """ "I would like to buy the" ... 1.2 s ... "red one.": the model is unsure at both pauses; the pause's text
    keeps the turn open (one utterance, the whole sentence); without text cues the silence endpoint cuts it."""
    model = Model(*[0.5] * 10)
    monkeypatch.setattr(smartturn, "_SHARED", {"model": model})
    monkeypatch.setattr(listen, "make_turn_detector", lambda config: make_turn_detector(config, vad=Loud()))
    heard: list[str] = []

    async def on_heard(h: HeardUtterance) -> None:
        heard.append(h.text)

    async def nothing(*_: object) -> None:
        return None

    callbacks = ListenerCallbacks(nothing, on_heard, nothing, nothing)
    config = TurnConfig(
        detector="smart", smart_end_ms=200, threshold=0.85, wait_threshold=0.2, transcript_lead_ms=200, text_cues=cues
    )
    listener = Listener(MarkedSTT(), VAD_RATE, callbacks, config)
    detector = listener._detector
    assert isinstance(detector, SmartTurnDetector)

    def part(seconds: float, mark: float) -> np.ndarray:
        return np.full(int(seconds * VAD_RATE), mark, np.float32)

    async def feed(audio: np.ndarray) -> None:
        for chunk in np.array_split(audio, max(1, len(audio) // 320)):
            listener.feed(chunk)
            await asyncio.sleep(0)
        for _ in range(300):  # let the worker thread catch up
            idle = listener._pump is None or listener._pump.done()
            if listener._inbox is not None and listener._inbox.empty() and idle:
                break
            await asyncio.sleep(0.01)

    try:
        await feed(np.concatenate([part(0.2, 0.0), part(1.0, 1.0), part(0.2, 0.0)]))  # 200 ms into the pause
        for _ in range(300):  # the pause's transcript reaches the detector (with cues) before more audio
            if detector.last_cue is not None or not cues:
                break
            await asyncio.sleep(0.01)
        assert detector.last_cue == ("incomplete" if cues else None)
        await feed(part(1.0, 0.0))  # the rest of the 1.2 s pause
        await feed(np.concatenate([part(0.6, 2.0), part(0.2, 0.0)]))
        for _ in range(300):
            if not listener.hearing and len(heard) >= (1 if cues else 2):
                break
            await asyncio.sleep(0.01)
        await feed(part(1.0, 0.0))
        if cues:
            assert heard == ["I would like to buy the red one."]  # one turn, the whole sentence
            assert detector.last_cue == "complete"  # the second pause's text ended it, before text_wait_ms
        else:
            assert heard == ["I would like to buy the", "red one."]  # cut off at the pause
    finally:
        await listener.close()
