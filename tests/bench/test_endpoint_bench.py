"""The end-of-turn evaluation set (real recordings and neural voices, cut at word boundaries) and the
endpoint benchmark's judging of detectors on it (scripted models for the rules, the real smart-turn model for
what it hears)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from facecast.bench.endpoint_bench import (
    BEFORE,
    TUNED,
    TimedModel,
    WhisperTranscriber,
    endpoint_table,
    endpoint_tables,
    espeak_turns,
    run_turn,
)
from facecast.bench.turnset import KINDS, RATE, TurnSample, neural_turns, real_turns, turn_set
from facecast.cli import build_parser
from facecast.config import Settings
from facecast.errors import InputError
from facecast.turns import make_turn_detector
from facecast.vad import TurnConfig


def _dbfs(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(pcm, dtype=np.float64))) + 1e-9))


class Constant:
    """An end-of-turn model that always answers ``p``."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.calls = 0

    def probability(self, audio: np.ndarray) -> float:
        self.calls += 1
        return self.p


SILENCE = TurnConfig(detector="silence", end_ms=300)


def _smart() -> TurnConfig:
    return TurnConfig(detector="smart", smart_end_ms=120, max_wait_ms=2500, threshold=0.5, wait_threshold=0.5)


@pytest.fixture(scope="module")
def real() -> list[TurnSample]:
    return real_turns()


@pytest.fixture(scope="module")
def neural() -> list[TurnSample]:
    return asyncio.run(neural_turns(voices=("hibari",)))


def _check_turn(item: TurnSample) -> None:
    assert item.kind in KINDS
    assert 0 < item.speech_start < item.speech_end < len(item.audio) - 2 * RATE  # the tail outlasts any endpoint
    speech = _dbfs(item.audio[item.speech_start : item.speech_end])
    assert _dbfs(item.audio[: item.speech_start - RATE // 20]) < speech - 10  # room tone before the speech
    previous = item.speech_start
    for start, end in item.pauses:
        assert previous < start and end - start >= 0.28 * RATE and end < item.speech_end
        assert _dbfs(item.audio[start + 160 : end - 160]) < speech - 10, item.name  # a real pause: quiet
        assert _dbfs(item.audio[end : end + RATE // 10]) > _dbfs(item.audio[start:end]) + 10  # speech resumes
        previous = end
    assert bool(item.pauses) == (item.kind == "incomplete")


def test_real_split_is_real_speech_of_every_kind_and_deterministic(real: list[TurnSample]) -> None:
    assert {i.kind for i in real} == set(KINDS) and {i.split for i in real} == {"real"}
    assert len(real) >= 25
    for item in real:
        _check_turn(item)
    inserted = [i for i in real if i.source == "inserted"]
    assert inserted and all(0.3 * RATE <= b - a <= 1.6 * RATE for i in inserted for a, b in i.pauses)
    again = real_turns()
    assert [i.name for i in again] == [i.name for i in real]
    assert all(np.array_equal(a.audio, b.audio) and a.pauses == b.pauses for a, b in zip(again, real, strict=True))
    assert [i.pauses for i in real_turns(seed=5)] != [i.pauses for i in real]  # the seed picks cuts and pauses


def test_neural_split_pauses_after_the_named_word(neural: list[TurnSample]) -> None:
    assert {i.kind for i in neural} == set(KINDS)
    for item in neural:
        _check_turn(item)
    um = next(i for i in neural if i.text.startswith("I'd like to buy um"))
    [(start, end)] = um.pauses
    # "I'd like to buy um" is most of a second of speech before the pause, "the red one." after it
    assert 0.6 * RATE < start - um.speech_start and 0.4 * RATE < um.speech_end - end


async def test_unknown_split_is_an_input_error() -> None:
    with pytest.raises(InputError, match="split"):
        await turn_set("nope")


def test_silence_endpoint_cuts_a_paused_turn_and_ends_a_complete_one_after_300_ms(real: list[TurnSample]) -> None:
    paused = next(i for i in real if i.source == "inserted")
    result = run_turn(make_turn_detector(SILENCE), paused)
    assert result.cut_off and result.ends >= 2  # ended inside the pause, then the player went on
    complete = next(i for i in real if i.kind == "long")
    result = run_turn(make_turn_detector(SILENCE), complete)
    assert not result.cut_off and result.ends == 1 and 200 <= result.latency_ms <= 360


def test_a_cut_off_turn_is_talked_over_when_the_reply_comes_before_the_player_goes_on(real: list[TurnSample]) -> None:
    paused = next(i for i in real if i.source == "inserted")
    [(start, end)] = paused.pauses
    result = run_turn(make_turn_detector(SILENCE), paused)
    [gap] = result.resumed_ms  # the end inside the pause; the next turn starts once the player goes on
    pause_ms = (end - start) * 1000 / RATE
    assert pause_ms - 300 <= gap <= pause_ms - 300 + 300  # the turn starts within 300 ms of the player's return
    assert result.talked_over(gap - 20) and not result.talked_over(gap + 20)
    [stop] = result.stopped_ms  # without the floor the reply plays on until the next turn is a barge-in
    assert stop >= gap + 100  # 400 ms of speech after the start (which needs most of 200 ms voiced)
    assert result.talked_over(stop - 20, floor=False) and not result.talked_over(stop + 20, floor=False)
    complete = next(i for i in real if i.kind == "long")
    assert run_turn(make_turn_detector(SILENCE), complete).resumed_ms == ()


class Clock:
    """A clock (seconds) that only the model moves: each of its answers "takes" ``ms``."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Slow(Constant):
    """:class:`Constant` whose every answer takes ``ms`` on ``clock``."""

    def __init__(self, p: float, clock: Clock, ms: float) -> None:
        super().__init__(p)
        self.clock, self.ms = clock, ms

    def probability(self, audio: np.ndarray) -> float:
        self.clock.now += self.ms / 1000
        return super().probability(audio)


def test_a_model_that_always_says_complete_or_never_decides_the_outcome(real: list[TurnSample]) -> None:
    paused = next(i for i in real if i.source == "inserted")
    clock = Clock()
    always = Slow(1.0, clock, 50.0)
    timer = TimedModel(always)
    result = run_turn(make_turn_detector(_smart(), timer), paused, clock=clock)
    assert result.cut_off and always.calls >= 2 and len(timer.cpu_ms) == always.calls
    assert 80 <= result.latency_ms <= 160 and result.decision_ms == 50.0  # the final end: 120 ms + the model's call
    never = Slow(0.0, clock, 50.0)
    result = run_turn(make_turn_detector(_smart(), never), paused, clock=clock)
    assert not result.cut_off and result.ends == 1
    assert 2400 <= result.latency_ms <= 2560 and result.decision_ms == 0.0  # max wait ended it, not the model


class Script:
    """A VAD answering from one bool per 20 ms frame."""

    def __init__(self, frames: list[bool]) -> None:
        self.frames = iter(frames)

    def is_speech(self, frame: np.ndarray) -> bool:
        return next(self.frames)


def test_asking_before_the_end_hides_the_model_time_and_keeps_short_pauses() -> None:
    # 400 ms of room, 1 s of speech, a 160 ms pause, 1 s more, 3 s of silence; the model is sure every time
    frames = [False] * 20 + [True] * 50 + [False] * 8 + [True] * 50 + [False] * 150
    audio = np.zeros(len(frames) * 320, np.float32)
    item = TurnSample("scripted", "long", "real", "test", "", audio, 20 * 320, 128 * 320)
    asked_late = replace(_smart(), smart_end_ms=200, threshold=0.85, wait_threshold=0.2)
    asked_early = replace(asked_late, smart_ask_ms=100)
    for ms, hidden in ((60.0, 0.0), (150.0, 50.0)):
        results = []
        for config in (asked_late, asked_early):
            clock = Clock()
            detector = make_turn_detector(config, Slow(0.99, clock, ms), vad=Script(frames))
            results.append(run_turn(detector, item, clock=clock))
        late, early = results
        assert not late.cut_off and not early.cut_off and late.ends == early.ends == 1  # the 160 ms pause kept
        assert late.latency_ms == early.latency_ms == 200.0
        assert late.decision_ms == ms  # asked at 200 ms: the model's whole time comes after it
        assert early.decision_ms == hidden  # asked at 100 ms: only what overruns the next 100 ms shows


class Reader:
    """A transcriber: "and the" (a sentence left hanging) for audio that ends before ``hanging_until``, else
    "I'd like the red one."; each decode "takes" ``ms``."""

    def __init__(self, hanging_until: int, ms: float) -> None:
        self.hanging_until, self.ms = hanging_until, ms
        self.heard: list[int] = []

    def __call__(self, audio: np.ndarray) -> tuple[str, float]:
        self.heard.append(len(audio))
        return ("and the" if len(audio) < self.hanging_until else "I'd like the red one."), self.ms


TEXT = TurnConfig(
    detector="smart", smart_end_ms=200, threshold=0.85, wait_threshold=0.2, transcript_lead_ms=200, text_cues=True
)


def test_a_pause_transcript_is_handed_in_after_its_decode_time(real: list[TurnSample]) -> None:
    paused = next(i for i in real if i.source == "inserted")
    [(_, resumed)] = paused.pauses
    reader = Reader(resumed, 150.0)
    unsure = Constant(0.5)  # the model never decides: the text does
    result = run_turn(make_turn_detector(TEXT, unsure), paused, reader)
    assert not result.cut_off and result.ends == 1  # "and the": the pause waited
    # the final pause: "I'd like the red one." handed in 150 ms after the 100 ms pause event
    assert 200 <= result.latency_ms <= 300, result
    assert len(reader.heard) >= 2
    slow = run_turn(make_turn_detector(TEXT, unsure), paused, Reader(resumed, 400.0))
    assert 460 <= slow.latency_ms <= 560 and not slow.cut_off  # later text, later end
    # the same turn without text cues: the unsure pause ends at the silence endpoint, cutting the player off
    off = replace(TEXT, text_cues=False)
    assert run_turn(make_turn_detector(off, unsure), paused, Reader(resumed, 150.0)).cut_off


def test_whisper_transcriber_reads_a_real_recording(real: list[TurnSample]) -> None:
    item = next(i for i in real if i.kind == "long")
    reader = WhisperTranscriber()
    try:
        text, ms = reader(item.audio[: item.speech_end + RATE // 5])
    finally:
        reader.close()
    assert ms > 0 and len(text.split()) >= 3


def test_table_reports_each_kind_and_the_model_cost(real: list[TurnSample]) -> None:
    items = [next(i for i in real if i.kind == k) for k in KINDS]
    table, raw = endpoint_table(items, [("silence", SILENCE), ("smart", _smart())], model=Constant(1.0))
    assert [r[0] for r in table.rows] == [
        f"{d} · {k}" for d in ("silence", "smart") for k in (*KINDS, "complete", "all")
    ]
    smart = raw["detectors"]["smart"]
    assert smart["model"]["decisions"] >= 3 and smart["model"]["cpu_ms"]["p50"] >= 0
    assert smart["incomplete"]["cut_off"] == 1 and raw["detectors"]["silence"]["incomplete"]["cut_off"] == 1
    assert "talked over" in table.columns and raw["detectors"]["silence"]["incomplete"]["talked_over"] in (0, 1)
    assert "without the floor" in table.columns
    assert smart["short"]["latency_ms"]["p50"] < raw["detectors"]["silence"]["short"]["latency_ms"]["p50"]
    assert "model decisions" in table.note and "| detector |" in table.markdown()


def test_the_real_model_waits_through_um_and_answers_yes_at_once(neural: list[TurnSample]) -> None:
    from facecast.smartturn import SmartTurnModel

    model = SmartTurnModel()
    um = next(i for i in neural if i.text.startswith("I'd like to buy um"))
    result = run_turn(make_turn_detector(_smart(), model), um)
    assert not result.cut_off and result.ends == 1
    yes = next(i for i in neural if i.text == "Yes.")
    smart, silence = (run_turn(make_turn_detector(c, model), yes) for c in (_smart(), SILENCE))
    assert not smart.cut_off and smart.latency_ms <= 200 < silence.latency_ms


async def test_bench_group_runs_on_a_small_set(monkeypatch: pytest.MonkeyPatch, real: list[TurnSample]) -> None:
    import facecast.bench.turnset as turnset

    small = [next(i for i in real if i.kind == k) for k in KINDS]

    async def few(split: str | None = None, seed: int = 23, *, tail_ms: int = 3000) -> list[TurnSample]:
        return small

    monkeypatch.setattr(turnset, "turn_set", few)
    tables, raw = await endpoint_tables(quick=False)
    assert len(tables) == 3 and raw["real"]["turns"] == 3 and raw["neural"]["turns"] == 0
    assert set(raw["real"]["detectors"]) == {
        "silence 300 ms",
        "smart as first built",
        "smart, audio only",
        "smart + text, asked at the end only",
        "smart + text (opt-in)",
    }
    assert raw["espeak"]["turns"] == 5 and raw["espeak"]["waited_max"]["smart + text (opt-in)"] == 0
    assert build_parser().parse_args(["bench", "--endpoint"]).endpoint


async def test_the_defaults_end_every_espeak_question_without_waiting_for_max_wait() -> None:
    """The light voice-to-voice player's questions (espeak-ng): smart turn as first built called some of them
    unfinished and waited 2.5 s; the tuned three-zone smart settings end each within the silence endpoint."""
    from facecast.smartturn import SmartTurnModel

    model = SmartTurnModel()
    questions = await espeak_turns()
    assert len(questions) == 5 and all(q.speech_end < len(q.audio) - 2.6 * RATE for q in questions)
    smart = replace(Settings(), turn_detector="smart", turn_text_cues=False).turn_config()
    assert smart == replace(TUNED, end_ms=smart.end_ms, transcript_lead_ms=smart.transcript_lead_ms)
    with_text = replace(Settings(), turn_detector="smart").turn_config()
    assert with_text == replace(smart, text_cues=True, text_wait_ms=600)
    tuned = [run_turn(make_turn_detector(smart, model), q) for q in questions]
    assert all(not r.cut_off and r.ends == 1 and r.latency_ms <= 400 for r in tuned), tuned
    before = [run_turn(make_turn_detector(BEFORE, model), q) for q in questions]
    assert any(r.latency_ms >= 2400 for r in before)  # what the middle zone fixed
