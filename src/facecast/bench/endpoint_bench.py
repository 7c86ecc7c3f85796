"""End-of-turn detection on the evaluation set (:mod:`.turnset`): the silence endpoint against smart turn.

Each detector (:func:`facecast.turns.make_turn_detector` on a :class:`facecast.vad.TurnConfig`) hears every
turn of the set in 20 ms chunks on the virtual sample clock (no wall clock: the same audio gives the same
events on any machine). Per turn kind it reports:

* end-of-turn latency: end of speech -> turn ended (``SpeechEnded.detected``), on the sample clock, for the
  end that comes after the player finished; p50/p90/p99 ms. "+ model" is when a live server would have
  ended it: each 20 ms chunk arrives in real time and the detector handles one chunk after another, taking
  the wall time it took here (the model's calls included), so a chunk that arrives while the model thinks
  waits for it, as the listener's queue does;
* cut off: the share of turns the detector ended before the player was done (an incomplete turn ended
  inside its pause, before the player resumed; any turn ended, then started again);
* talked over: of the cut-off turns, those where the player would hear the character start answering the
  first half: its reply goes out :data:`REPLY_MS` after the premature end (the embedded defaults' time from
  the endpoint to the reply's first audio) unless the player's next turn has started by then (the server
  holds a reply while the player speaks: :mod:`facecast.engine.floor`), on the sample clock; "without the
  floor": unless that turn's barge-in (or, for a turn too short to become one, its end) came first;
* no end: turns still open when the audio ran out (the tail is longer than any wait setting).

The smart-turn model's cost per decision (CPU time of the process and wall time, p50/p99) comes from a
timing wrapper around the model, over every call the smart detector made.

A detector with ``text_cues`` also gets each pause's transcript, as the live listener gives it: at
``SpeechPaused`` the turn so far is decoded (:class:`WhisperTranscriber`, the default speech-to-text) and the
text is handed in when the sample clock has moved on by the decode's measured wall time. The decode runs
alone here; in a live server it shares the CPU with the model and the other sessions.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..vad import FRAME, SpeechEnded, SpeechPaused, SpeechStarted, SpeechSustained, TurnConfig
from .report import Table, percentiles
from .turnset import KINDS, RATE, TurnSample

__all__ = [
    "TimedModel",
    "Transcriber",
    "WhisperTranscriber",
    "TurnResult",
    "run_turn",
    "evaluate",
    "summarise",
    "endpoint_table",
    "endpoint_tables",
    "default_detectors",
    "espeak_turns",
    "BEFORE",
    "TUNED",
    "REPLY_MS",
]

_QS = (50, 90, 99)


class _Model(Protocol):
    def probability(self, audio: np.ndarray) -> float: ...


@dataclass(slots=True)
class TimedModel:
    """A smart-turn model that records each decision's process CPU time and wall time (milliseconds)."""

    model: _Model
    cpu_ms: list[float] = field(default_factory=list)
    wall_ms: list[float] = field(default_factory=list)

    def probability(self, audio: np.ndarray) -> float:
        cpu, wall = time.process_time(), time.perf_counter()
        value = self.model.probability(audio)
        self.wall_ms.append((time.perf_counter() - wall) * 1000)
        self.cpu_ms.append((time.process_time() - cpu) * 1000)
        return value


@dataclass(frozen=True, slots=True)
class TurnResult:
    """How one detector handled one turn: ``latency_ms`` (sample clock; NaN when the turn never ended),
    ``decision_ms`` (how much later a live server would have ended it: the detector's wall time queued behind
    the real-time arrival of the chunks, module docstring; 0 when it kept up), ``cut_off``, ``ends``."""

    name: str
    kind: str
    split: str
    latency_ms: float
    decision_ms: float
    cut_off: bool
    ends: int
    resumed_ms: tuple[float, ...] = ()
    """For each premature end (one the player went on after): ms from its detection to the detection of the
    player's next turn (inf when none started)."""
    stopped_ms: tuple[float, ...] = ()
    """For each premature end: ms from its detection to when its reply is stopped without the floor: the next
    turn's barge-in (``SpeechSustained``), or the end of that turn when it never became one (its own reply
    replaces the first); inf when neither came."""

    def talked_over(self, reply_ms: float, floor: bool = True) -> bool:
        """Whether a reply sent ``reply_ms`` after a premature end would have started playing over the player:
        with the floor, before the player's next turn started (it holds a reply only from then); without, before
        the barge-in (or the next turn's own reply) stopped it."""
        return any(gap > reply_ms for gap in (self.resumed_ms if floor else self.stopped_ms))


class _Detector(Protocol):
    def push(self, pcm: np.ndarray) -> Sequence[object]: ...


class Transcriber(Protocol):
    def __call__(self, audio: np.ndarray) -> tuple[str, float]:
        """The transcript of ``audio`` (16 kHz float32) and the wall time it took (ms)."""
        ...


@dataclass(slots=True)
class _Decode:
    ready: int  # detector position (samples) at which the transcript is handed in
    text: str
    pause_at: int


def run_turn(
    detector: _Detector,
    item: TurnSample,
    transcriber: Transcriber | None = None,
    preroll_ms: int = 300,
    clock: Callable[[], float] = time.perf_counter,
) -> TurnResult:
    """Feed ``item`` to a fresh ``detector`` in 20 ms chunks and judge its end(s) of turn (module docstring).
    ``clock`` (seconds) times the detector's work on each chunk, for the live latency ("+ model").

    With a ``transcriber`` and a detector that takes transcripts (``text_cues``), each ``SpeechPaused``
    decodes the turn so far (from ``preroll_ms`` before its start, as the listener's segment does) and hands
    the text to the detector once the decode's measured wall time has passed on the sample clock.

    The turn counts as cut off when an end is detected before the player resumed after the last of its
    pauses, or when the detector ends a turn and then starts another one inside the player's speech."""
    ends: list[SpeechEnded] = []
    deciding: list[float] = []
    starts: list[tuple[int, int]] = []  # (position detected, where the speech began) of each turn started
    stops: list[int] = []  # positions where a turn became a barge-in, or ended without having become one
    sustained = False
    restarted = False
    listen = getattr(detector, "transcript", None) if transcriber is not None else None
    if listen is not None and not getattr(getattr(detector, "config", None), "text_cues", False):
        listen = None
    turn_start = 0
    decode: _Decode | None = None
    done = 0.0  # ms (sample clock) at which a live detector would have handled the chunks so far
    for start in range(0, len(item.audio), FRAME):
        position = start + FRAME
        began = clock()
        events = list(detector.push(item.audio[start : start + FRAME]))
        if listen is not None and decode is not None and position >= decode.ready:
            events += listen(decode.text, decode.pause_at)
            decode = None
        arrived = position * 1000 / RATE
        done = max(done, arrived) + (clock() - began) * 1000
        for event in events:
            if isinstance(event, SpeechEnded):
                ends.append(event)
                deciding.append(done - arrived)
                decode = None
                if not sustained:
                    stops.append(position)
            elif isinstance(event, SpeechSustained):
                sustained = True
                stops.append(position)
            elif isinstance(event, SpeechStarted):
                turn_start = event.at
                starts.append((position, event.at))
                sustained = False
                if ends and event.at < item.speech_end:
                    restarted = True
            elif isinstance(event, SpeechPaused) and listen is not None and transcriber is not None:
                audio = item.audio[max(0, turn_start - preroll_ms * RATE // 1000) : position]
                text, wall_ms = transcriber(audio)
                decode = _Decode(position + round(wall_ms * RATE / 1000), text, event.at)
    resumed = item.pauses[-1][1] if item.pauses else item.speech_start
    cut_off = restarted or any(e.detected < resumed for e in ends)
    gaps: list[float] = []
    stopped: list[float] = []
    for end in ends:
        after = next(((at, began) for at, began in starts if at >= end.detected), None)
        if end.detected < resumed or (after is not None and after[1] < item.speech_end):
            gaps.append(float("inf") if after is None else (after[0] - end.detected) * 1000 / RATE)
            stop = next((at for at in stops if after is not None and at >= after[0]), None)
            stopped.append(float("inf") if stop is None else (stop - end.detected) * 1000 / RATE)
    if ends and ends[-1].detected >= resumed:  # the end after the player finished (a soft ending may be heard
        latency = (ends[-1].detected - item.speech_end) * 1000 / RATE  # as silence a little early: then < 0)
        decision = deciding[-1]
    else:
        latency, decision = float("nan"), 0.0
    return TurnResult(
        item.name, item.kind, item.split, latency, decision, cut_off, len(ends), tuple(gaps), tuple(stopped)
    )


REPLY_MS = 600.0
"""When the embedded defaults' reply to a turn starts going out, after its endpoint: the voice-to-voice table's
p50 (docs/benchmarks.md, 2026-12-07: 993.5 ms) less the VAD's part (17.7), the endpointing (310.6) and the
engine's acknowledgement (52.2) is 613 ms, rounded down (the lighter sets answer in ~10 ms: every cut-off
turn of theirs is talked over)."""

BEFORE = TurnConfig(detector="smart", smart_end_ms=120, max_wait_ms=2500, threshold=0.5, wait_threshold=0.5)
"""Smart turn as first built (issue #23): asked at 120 ms of silence, >= 0.5 ends the turn, anything else
waits up to 2.5 s (no middle zone)."""

TUNED = TurnConfig(
    detector="smart",
    smart_end_ms=200,
    smart_ask_ms=100,
    ask_threshold=0.95,
    threshold=0.85,
    wait_threshold=0.2,
    recheck_ms=0,
)
"""The three-zone policy tuned on the ``neural`` split (the smart defaults of :class:`facecast.config.Settings`):
asked at 200 ms; >= 0.85 ends at once, <= 0.2 waits up to 2.5 s, in between ends at the 300 ms silence
endpoint. Grid: ``smart_end_ms`` 120-240, ``threshold`` 0.7-0.95, ``wait_threshold`` 0.02-0.5,
``recheck_ms`` 0/200/300/500, also asking again at 300 ms (no change on the neural split, so left out);
chosen for the fewest cut-off turns (complete + incomplete) there, then the lowest complete-turn p50:
0/24 complete and 9/16 incomplete cut off, p50 200 ms (silence: 0/24, 16/16, 290 ms; re-asking while
waiting cut off 3 more incomplete turns). Reported on the ``real`` split. The server's smart settings add the
pause transcript's text cues to it (``text_cues``; :mod:`facecast.turncues`), chosen on the neural split the
same way: no complete turn cut off, then the fewest incomplete cut off (9 of 16 against 11 without), then the
lowest complete-turn p50 (200 ms on the sample clock).

Then the early question, chosen the same way on the neural split with the live latency (the model's time
queued on the sample clock): asked first at 100 ms, an answer >= 0.95 ends the turn at 200 ms and any other
is asked again at 200 ms. Against asking at 200 ms only: no complete turn cut off either way, the same
incomplete turns cut off (11 of 16 audio only, 7 of 16 with text), complete-turn p50 live 200 against 259 ms
(audio only) and 200 against 252 ms (with text). With 0.85 for the early answer as well (one threshold), one
complete turn ("I'd like to buy the red one, and a loaf of bread...", 0.89 at 100 ms of its comma's pause,
0.54 at 200 ms) was cut in two; 0.9 and 0.95 tied, and the more cautious 0.95 was kept."""


def default_detectors() -> list[tuple[str, TurnConfig]]:
    """The detectors compared: the silence endpoint (300 ms), smart turn as first built (:data:`BEFORE`),
    and smart turn with the defaults tuned on the neural split (:data:`TUNED`)."""
    return [
        ("silence 300 ms", TurnConfig(detector="silence", end_ms=300)),
        ("smart as first built", BEFORE),
        ("smart, tuned on neural", TUNED),
    ]


async def espeak_turns(tail_ms: int = 3000) -> list[TurnSample]:
    """The light voice-to-voice benchmark's player: :data:`facecast.bench.turns_bench.QUESTIONS` spoken by
    espeak-ng (complete questions, kind ``long``, split ``espeak``), with ``tail_ms`` of silence after each
    (longer than ``max_wait_ms``, so a turn the model calls unfinished shows its whole wait)."""
    from ..audio import resample
    from .turns_bench import _LEAD_S, _TAIL_S, QUESTIONS, spoken_questions

    out: list[TurnSample] = []
    for text, (pcm, rate) in zip(QUESTIONS, await spoken_questions(), strict=True):
        audio = resample(pcm, rate, RATE).astype(np.float32)
        end = len(audio) - int(_TAIL_S * RATE)
        audio = np.concatenate([audio[:end], np.zeros(tail_ms * RATE // 1000, np.float32)])
        out.append(TurnSample(f"espeak/{text}", "long", "espeak", "espeak-ng", text, audio, int(_LEAD_S * RATE), end))
    return out


class WhisperTranscriber:
    """:data:`Transcriber` on the default speech-to-text (:class:`facecast.stt.whisper.WhisperSTT`, Whisper base,
    English), called through its public streaming interface on a private event loop in a worker thread, so
    it can be used from synchronous code and from inside a running loop alike. The wall time is the whole
    call's: what a listener waits between closing a segment and having its text."""

    def __init__(self) -> None:
        import concurrent.futures

        from ..stt.whisper import WhisperSTT

        self._stt = WhisperSTT()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-whisper")
        self._thread.submit(self._stt.load).result()

    def __call__(self, audio: np.ndarray) -> tuple[str, float]:
        import asyncio

        from ..types import AudioChunk

        async def once() -> str:
            async def chunks() -> AsyncIterator[AudioChunk]:
                yield AudioChunk(np.asarray(audio, np.float32), RATE, 0)

            return "".join([t.text async for t in self._stt.transcribe(chunks()) if t.final])

        started = time.perf_counter()
        text = self._thread.submit(asyncio.run, once()).result()
        return text, (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self._stt.close()
        self._thread.shutdown()


def evaluate(
    items: Sequence[TurnSample],
    detectors: Sequence[tuple[str, TurnConfig]],
    model: _Model | None = None,
    transcriber: Transcriber | None = None,
) -> dict[str, tuple[list[TurnResult], TimedModel | None]]:
    """Every detector over every turn (a fresh detector per turn). ``model``: the smart-turn model (default
    :class:`facecast.smartturn.SmartTurnModel`, loaded once when a smart detector is asked for);
    ``transcriber``: the pauses' speech-to-text for detectors with ``text_cues`` (default
    :class:`WhisperTranscriber`, made once when one is asked for). Returns, per detector name, its results
    and the timing wrapper of its model (None for a silence detector)."""
    from ..turns import make_turn_detector

    out: dict[str, tuple[list[TurnResult], TimedModel | None]] = {}
    for name, config in detectors:
        timer: TimedModel | None = None
        if getattr(config, "detector", "silence") == "smart":
            if model is None:
                from ..smartturn import SmartTurnModel

                model = SmartTurnModel()
            timer = TimedModel(model)
        reader: Transcriber | None = None
        if getattr(config, "text_cues", False):
            if transcriber is None:
                transcriber = WhisperTranscriber()
            reader = transcriber
        results = [run_turn(make_turn_detector(config, timer), item, reader, config.preroll_ms) for item in items]
        out[name] = (results, timer)
    return out


def summarise(results: Sequence[TurnResult], kind: str | None = None) -> dict[str, Any]:
    """Numbers over ``results`` (of one ``kind``; ``complete``: short and long; None: all): turns, latency
    percentiles (sample clock, and with the deciding call's wall time), cut-off count and share, turns that
    never ended."""
    kinds = ("short", "long") if kind == "complete" else (kind,)
    chosen = [r for r in results if kind is None or r.kind in kinds]
    ended = [r for r in chosen if r.latency_ms == r.latency_ms]
    latency = [r.latency_ms for r in ended]
    live = [r.latency_ms + r.decision_ms for r in ended]
    cut = sum(r.cut_off for r in chosen)
    over = sum(r.talked_over(REPLY_MS) for r in chosen)
    over_unheld = sum(r.talked_over(REPLY_MS, floor=False) for r in chosen)
    return {
        "turns": len(chosen),
        "latency_ms": dict(zip(("p50", "p90", "p99"), percentiles(latency, _QS), strict=True)),
        "latency_with_model_ms": dict(zip(("p50", "p90", "p99"), percentiles(live, _QS), strict=True)),
        "cut_off": cut,
        "cut_off_pct": 100.0 * cut / len(chosen) if chosen else float("nan"),
        "talked_over": over,
        "talked_over_pct": 100.0 * over / len(chosen) if chosen else float("nan"),
        "talked_over_without_floor": over_unheld,
        "no_end": len(chosen) - len(ended),
    }


def endpoint_table(
    items: Sequence[TurnSample],
    detectors: Sequence[tuple[str, TurnConfig]] | None = None,
    *,
    title: str = "",
    model: _Model | None = None,
    transcriber: Transcriber | None = None,
) -> tuple[Table, dict[str, Any]]:
    """The table (per detector and turn kind, then the model's cost per decision) and its raw numbers."""
    detectors = list(detectors) if detectors is not None else default_detectors()
    started = time.perf_counter()
    outcome = evaluate(items, detectors, model, transcriber)
    counts = {k: sum(i.kind == k for i in items) for k in KINDS}
    splits = sorted({i.split for i in items})
    table = Table(
        title
        or f"End of turn: {len(items)} turns ({', '.join(f'{counts[k]} {k}' for k in KINDS)}; {'+'.join(splits)})",
        [
            "detector",
            "turns",
            "latency p50 ms",
            "p90 ms",
            "p99 ms",
            "p50 + model ms",
            "cut off",
            "talked over",
            "without the floor",
            "no end",
        ],
        note="Latency: end of speech -> turn ended, on the sample clock (20 ms chunks), for complete turns "
        "(and the final end of incomplete ones); '+ model': when a live server would have ended it, each 20 ms "
        "chunk arriving in real time and waiting for the detector's work on the ones before it (the model's "
        "calls, timed here), so a model asked before the end hides its time inside the silence (a transcript's "
        "decode time is on the sample clock already: the text is handed in when its measured decode would have "
        "finished). Cut off: the turn was ended before the player was done (inside a pause, or "
        f"split in two). Talked over: cut off, and a reply sent {REPLY_MS:.0f} ms after the premature end (the "
        "embedded defaults' endpoint -> first reply audio) would have started playing over the player: before "
        "the player's next turn started (the server holds a reply while the player speaks: the floor); "
        "without the floor: before that turn's barge-in (400 ms of speech) or, for a turn too short to be one, "
        "its end stopped it. Incomplete turns pause 300-1500 ms mid-sentence.",
    )
    raw: dict[str, Any] = {"turns": len(items), "kinds": counts, "splits": splits, "detectors": {}}
    for name, config in detectors:
        results, timer = outcome[name]
        per: dict[str, Any] = {"config": repr(config)}
        for kind in (*KINDS, "complete", None):
            s = summarise(results, kind)
            per[kind or "all"] = s
            if s["turns"] == 0:
                continue
            lat, live = s["latency_ms"], s["latency_with_model_ms"]
            table.add(
                f"{name} · {kind or 'all'}",
                s["turns"],
                lat["p50"],
                lat["p90"],
                lat["p99"],
                live["p50"] if timer else lat["p50"],
                f"{s['cut_off']} ({s['cut_off_pct']:.0f}%)",
                f"{s['talked_over']} ({s['talked_over_pct']:.0f}%)",
                s["talked_over_without_floor"],
                s["no_end"],
            )
        if timer is not None:
            cpu, wall = percentiles(timer.cpu_ms, (50, 99)), percentiles(timer.wall_ms, (50, 99))
            per["model"] = {
                "decisions": len(timer.cpu_ms),
                "per_turn": len(timer.cpu_ms) / max(1, len(items)),
                "cpu_ms": {"p50": cpu[0], "p99": cpu[1]},
                "wall_ms": {"p50": wall[0], "p99": wall[1]},
            }
            table.note += (
                f" {name}: {len(timer.cpu_ms)} model decisions ({len(timer.cpu_ms) / max(1, len(items)):.1f} per "
                f"turn), CPU p50 {cpu[0]:.0f} ms / p99 {cpu[1]:.0f} ms, wall p50 {wall[0]:.0f} ms / p99 "
                f"{wall[1]:.0f} ms per decision."
            )
        per["results"] = [
            {
                "name": r.name,
                "kind": r.kind,
                "latency_ms": r.latency_ms,
                "live_ms": r.latency_ms + r.decision_ms,
                "cut_off": r.cut_off,
                "talked_over": r.talked_over(REPLY_MS),
                "talked_over_without_floor": r.talked_over(REPLY_MS, floor=False),
                "resumed_ms": list(r.resumed_ms),
                "stopped_ms": list(r.stopped_ms),
                "ends": r.ends,
            }
            for r in results
        ]
        raw["detectors"][name] = per
    raw["wall_s"] = time.perf_counter() - started
    return table, raw


async def endpoint_tables(quick: bool = False) -> tuple[list[Table], dict[str, Any]]:
    """The ``endpoint`` group of ``facecast bench``: the silence endpoint (``--endpoint-ms``, 300 ms), smart
    turn as first built (:data:`BEFORE`) and the smart detector with the server's smart settings
    (:class:`facecast.config.Settings`, ``turn_detector="smart"``), on the ``real`` split (the report), on the
    ``neural`` split (where settings are tuned) and on the light voice-to-voice player's espeak questions
    (:func:`espeak_turns`), one table each. ``quick``: every other turn of each split."""
    from dataclasses import replace

    from ..config import Settings
    from .turnset import turn_set

    settings = Settings()
    lead = 200  # the automatic transcript_lead_ms of Whisper, the default speech-to-text: pauses at 100 ms
    smart = replace(settings, turn_detector="smart")
    detectors = [
        (f"silence {settings.endpoint_ms} ms", replace(settings, turn_detector="silence").turn_config(lead)),
        ("smart as first built", replace(BEFORE, end_ms=settings.endpoint_ms)),
        ("smart, audio only", replace(smart, turn_text_cues=False).turn_config(lead)),
        ("smart + text, asked at the end only", replace(smart, smart_ask_ms=0).turn_config(lead)),
        ("smart + text (opt-in)", smart.turn_config(lead)),
    ]
    items = await turn_set()
    transcriber = WhisperTranscriber()
    tables: list[Table] = []
    raw: dict[str, Any] = {}
    for split, what in (
        ("real", "REAL human speech (the report)"),
        ("neural", "neural voices hibari + piper (the tuning split)"),
    ):
        chosen = [i for i in items if i.split == split][:: 2 if quick else 1]
        counts = ", ".join(f"{sum(i.kind == k for i in chosen)} {k}" for k in KINDS)
        table, raw[split] = endpoint_table(
            chosen, detectors, title=f"End of turn on {what}: {len(chosen)} turns ({counts})", transcriber=transcriber
        )
        if split == "neural":
            table.note += (
                " hibari's synthesis is not bit-exact from run to run (samples differ by up to ~0.005), and the"
                " model's answers near the threshold follow: this split moves by a few turns between runs."
            )
        if quick:
            table.note += " --quick: every other turn."
        tables.append(table)
    questions = await espeak_turns()
    table, raw["espeak"] = endpoint_table(
        questions,
        detectors,
        title=f"End of turn on the light voice-to-voice player: {len(questions)} complete espeak-ng questions",
        transcriber=transcriber,
    )
    transcriber.close()
    waited = {
        name: sum(r["latency_ms"] >= config.max_wait_ms - 100 for r in raw["espeak"]["detectors"][name]["results"])
        for name, config in detectors
    }
    table.note += " Questions that waited for max_wait_ms: " + ", ".join(f"{n} {w}" for n, w in waited.items()) + "."
    tables.append(table)
    raw["espeak"]["waited_max"] = waited
    before, tuned = detectors[1][1], detectors[-1][1]
    for table in tables:
        table.note += (
            f" Smart as first built: asked after {before.smart_end_ms} ms of silence, >= {before.threshold} ends,"
            f" else waits up to {before.max_wait_ms} ms. Smart, audio only (the smart settings' defaults, tuned on"
            f" the neural split, without text cues): asked"
            f" after {tuned.smart_ask_ms} ms, >= {tuned.ask_threshold} ends at {tuned.smart_end_ms} ms, else asked"
            f" again at {tuned.smart_end_ms} ms: >= {tuned.threshold} ends at once, <= {tuned.wait_threshold} waits"
            f" up to {tuned.max_wait_ms} ms, in between ends at {tuned.end_ms} ms of silence"
            + (f", re-asked every {tuned.recheck_ms} ms while waiting." if tuned.recheck_ms else ".")
            + " Smart + text (the smart settings' defaults): the same, and the transcript of each pause (Whisper"
            " base, decoded from the 100 ms pause on, its measured time on the sample clock) is judged by the text"
            " cue: incomplete waits, complete ends an unsure pause (which waits for it up to"
            f" {tuned.text_wait_ms} ms). Asked at the end only: the same with smart_ask_ms 0 (the model asked at"
            f" {tuned.smart_end_ms} ms only; the defaults before the early question)."
        )
    return tables, raw
