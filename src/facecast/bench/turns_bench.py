"""Voice-to-voice latency: end of the player's speech -> the engine starts playing the reply.

engine-sim streams the player's questions as the microphone in real time (hands-free: the server's VAD finds
the end of the turn), against the real server (:class:`facecast.server.BackgroundServer`, which applies the
settings, e.g. the automatic ``transcript_lead_ms``). The questions are espeak-spoken lines
(:func:`spoken_questions`) or REAL human speech (:func:`real_questions`: short read and conversational clips
of :mod:`facecast.speechdata`), each followed by silence long enough for the endpoint. The server reports
each stage's time from the end of speech; the client measures the whole. The sequential chain is
endpointing -> STT final -> LLM first token -> first sentence -> TTS first chunk -> engine ack
(:data:`CHAIN`); the first face frame is made in parallel with the ack. "Unaccounted" is the client's total
minus the server's engine-ack time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from ..audio import read_audio
from ..config import Settings
from ..engine.sim import EngineSim, SimConfig, TurnReport
from ..offline import say
from ..server import BackgroundServer
from ..services import Services
from ..tts.espeak import EspeakTTS
from ..types import Float32Array
from .engines import Script, Turn, run_engines
from .report import Table, percentiles

__all__ = [
    "voice_to_voice",
    "paused_players",
    "spoken_questions",
    "real_questions",
    "endpointing",
    "QUESTIONS",
    "CHAIN",
    "VAD_END",
    "LIGHT_LABEL",
]

QUESTIONS = [
    "What is your name?",
    "Where is the harbour?",
    "Can you tell me about the weather today?",
    "How much does the bread cost?",
    "Do you know my brother?",
]

CHAIN = [
    ("endpointing", None, "endpoint"),
    ("STT final", "endpoint", "stt_final"),
    ("LLM first token", "stt_final", "llm_first_token"),
    ("first sentence", "llm_first_token", "first_sentence"),
    ("TTS first chunk", "first_sentence", "tts_first_chunk"),
    ("engine ack", "tts_first_chunk", "engine_ack"),
]
"""The sequential stages: (row name, server timing key it starts at (None: end of speech), key it ends at)."""

VAD_END = "VAD end of speech (after the last voiced sample)"
"""The stage before endpointing: where the server's VAD put the end of speech, minus the last microphone sample
above 0.01 (the client's end of speech), in ms of audio (negative: the VAD ended it sooner). The server's own
stage times count from its VAD end; this stage makes the client's total add up."""

LIGHT_LABEL = "pocketsphinx + echo LLM + espeak + phonetic face"
"""The label of the light set's table (the historical title)."""

_LEAD_S = 0.2
_TAIL_S = 0.9  # enough for the default endpoint (300 ms), then the reply plays over silence
Question = tuple[Float32Array, int]


async def spoken_questions(voice: str = "en-gb") -> list[Question]:
    """:data:`QUESTIONS` spoken by espeak-ng in ``voice`` (a different voice from the character's), each as
    (PCM with 0.2 s of silence before and 0.9 s after, rate)."""
    from ..face.phonetic import PhoneticAnimator

    tts = EspeakTTS(voice=voice, end_pause=False)
    out = []
    for text in QUESTIONS:
        utt = await say(text, tts, PhoneticAnimator())
        out.append((_pad(utt.audio, utt.rate, _TAIL_S), utt.rate))
    return out


def real_questions(
    count: int | None = None, *, min_s: float = 1.5, max_s: float = 5.0, tail_s: float = 1.5, max_pause_ms: int = 250
) -> list[Question]:
    """REAL human speech as the player's questions: the ``read`` and ``conversational`` clips of
    :mod:`facecast.speechdata` from ``min_s`` to ``max_s`` seconds long without an inner pause over
    ``max_pause_ms`` (20 ms frames 35 dB under the loudest; a longer pause would end the turn early),
    alternating the two categories (shortest first within each), at most ``count`` of them. Each is (PCM with
    0.2 s of silence before and ``tail_s`` after: longer than any endpoint setting, so the server's VAD ends
    the turn; rate). Raises what :func:`facecast.speechdata.clips` raises when the recordings cannot be
    fetched."""
    from ..speechdata import clips

    per_category: list[list[Question]] = []
    for category in ("read", "conversational"):
        chosen: list[Question] = []
        for clip in clips(category):
            pcm, rate = read_audio(clip.path)
            if min_s <= len(pcm) / rate <= max_s and _longest_pause_ms(pcm, rate) <= max_pause_ms:
                chosen.append((pcm, rate))
        chosen.sort(key=lambda q: len(q[0]) / q[1])
        per_category.append(chosen)
    mixed: list[Question] = []
    for k in range(max(map(len, per_category), default=0)):
        mixed += [group[k] for group in per_category if k < len(group)]
    return [(_pad(pcm, rate, tail_s), rate) for pcm, rate in mixed[:count]]


def _longest_pause_ms(pcm: Float32Array, rate: int) -> int:
    """The longest run of quiet 20 ms frames (35 dB under the loudest) between the first and last loud one."""
    size = max(1, rate // 50)
    frames = len(pcm) // size
    if frames == 0:
        return 0
    rms = np.sqrt(np.mean(np.square(np.asarray(pcm[: frames * size], np.float64).reshape(frames, size)), axis=1))
    level = 20 * np.log10(rms + 1e-9)
    loud = np.flatnonzero(level > level.max() - 35)
    longest = run = 0
    for voiced in level[loud[0] : loud[-1] + 1] > level.max() - 35:
        run = 0 if voiced else run + 1
        longest = max(longest, run)
    return longest * 20


def endpointing(settings: Settings) -> str:
    """How ``settings`` end a turn, for a table title: ``300 ms endpointing`` (silence) or ``smart turn (120
    ms + model, threshold 0.5, max wait 2500 ms)``."""
    if settings.turn_detector == "smart":
        return (
            f"smart turn ({settings.smart_end_ms} ms + model, threshold {settings.turn_threshold:g}, "
            f"max wait {settings.max_wait_ms} ms)"
        )
    return f"{settings.endpoint_ms} ms endpointing"


def _pad(pcm: Float32Array, rate: int, tail_s: float) -> Float32Array:
    lead = np.zeros(int(_LEAD_S * rate), np.float32)
    tail = np.zeros(int(tail_s * rate), np.float32)
    return np.concatenate([lead, np.asarray(pcm, np.float32), tail])


async def voice_to_voice(
    services: Services,
    turns: int,
    endpoint_ms: int = 300,
    *,
    label: str = LIGHT_LABEL,
    questions: Sequence[Question] | None = None,
    settings: Settings | None = None,
    speech: str = "espeak-spoken questions",
) -> tuple[Table, dict[str, object]]:
    """One conversation of ``turns`` spoken turns (``questions`` in order, cycled; default
    :func:`spoken_questions`) through the real server on ``services`` with ``settings`` (default: the
    defaults; ``endpoint_ms`` and no Live Link are applied on top). ``label`` names the services in the title,
    ``speech`` the kind of questions. Returns the table (TOTAL, every :data:`CHAIN` stage, the first face frame
    and the unaccounted remainder; p50/p95/p99 ms over the turns that got a reply) and the raw numbers
    (``total_ms``, ``stages_ms``, ``unaccounted_ms``, ``turns``, ``answered``, ``transcripts``, ``errors``).
    The caller loads the models first (:func:`facecast.services.warm_up`) when loading must not count."""
    questions = list(questions) if questions is not None else await spoken_questions("en-gb")
    if not questions:
        raise ValueError("voice_to_voice needs at least one question")
    totals: list[float] = []
    stages: dict[str, list[float]] = {VAD_END: []}
    stages.update({name: [] for name, _, _ in CHAIN})
    stages["first face frame"] = []
    unaccounted: list[float] = []
    settings = replace(settings or Settings(), livelink=("off",), endpoint_ms=endpoint_ms)
    async with BackgroundServer(settings, services) as server:
        script = tuple(Turn(pcm=pcm, rate=rate) for pcm, rate in (questions[k % len(questions)] for k in range(turns)))
        # hold_mic: like an engine, the microphone keeps streaming (silence) until the reply, so a detector that
        # waits (smart turn's max_wait_ms) hears that silence on its sample clock
        config = SimConfig(url=server.ws_url, hold_mic=True)
        [reports] = await run_engines([Script(config, script, timeout=120.0)])
    errors: list[dict[str, object]] = []
    for report in reports:
        errors += report.errors
        timing = report.timing
        if not report.utterances or "engine_ack" not in timing:
            continue
        total = report.response_latency * 1000
        totals.append(total)
        vad_end = report.vad_end_ms
        stages[VAD_END].append(vad_end)
        for name, start, end in CHAIN:
            stages[name].append(timing[end] - (timing[start] if start else 0.0))
        stages["first face frame"].append(timing["first_face"] - timing["tts_first_chunk"])
        unaccounted.append(total - (0.0 if math.isnan(vad_end) else vad_end) - timing["engine_ack"])
    table = Table(
        f"Voice-to-voice with {endpointing(settings)}: end of speech -> engine playback start "
        f"({len(totals)} of {turns} turns, {speech}; {label})",
        ["stage", "p50 ms", "p95 ms", "p99 ms"],
        note="Endpointing is the end-of-turn silence (--endpoint-ms; with smart turn, the silence before the "
        "model is asked on the sample clock: the model's own time falls in the next stage). Engine ack includes "
        "engine-sim's 50 ms playback start buffer; engine-sim runs in its own process, like an engine. "
        "First face frame runs in parallel with the ack. The client's end of speech is the capture of its last "
        "sample above 0.01 (its 20 ms chunk leaves when full, like a live microphone); the VAD's end can fall a "
        "frame after it (trailing breath) or before it (a faint last sound it does not call speech).",
    )
    table.add("TOTAL (client measured)", *percentiles(totals))
    for name, values in stages.items():
        table.add(f"  {name}", *percentiles(values))
    table.add("  unaccounted (transport)", *percentiles(unaccounted))
    return table, {
        "total_ms": totals,
        "stages_ms": stages,
        "unaccounted_ms": unaccounted,
        "turns": turns,
        "answered": len(totals),
        "transcripts": [r.transcript for r in reports],
        "errors": errors,
    }


def _paused_outcome(report: TurnReport, speech_end: int) -> dict[str, object]:
    """What the player heard in one paused turn whose speech ends at sample ``speech_end`` of the stream (the
    forced alignment's end of the last word; engine-sim's own end, the last sample above 0.01, can fall on a
    noise in the room tone after it): whether the character started playing before that sample was captured
    (talked over), the transcripts the server gave (2: the turn was cut at the pause), and when the last reply
    started playing after the player finished (ms; None: no reply played after)."""
    assert report.speech_end_sample is not None and report.mic_rate
    captured = report.speech_end - (report.speech_end_sample - speech_end) / report.mic_rate
    played = [u for u in report.utterances if u.samples and u.playback_start]
    finals = [m["text"] for m in report.messages if m.get("type") == "transcript" and m.get("final")]
    after = [u.playback_start for u in played if u.playback_start >= captured]
    return {
        "talked_over": any(u.playback_start < captured for u in played),
        "finals": finals,
        "replies_played": len(played),
        "answer_ms": (after[-1] - captured) * 1000 if after else None,
        "errors": report.errors,
    }


async def paused_players(
    make_services: Callable[[], Services],
    audio: Sequence[tuple[str, Float32Array, int]],
    settings: Settings,
    *,
    label: str,
) -> tuple[Table, dict[str, object]]:
    """Players who pause mid-sentence, live: each recording of ``audio`` (name, 16 kHz audio, the sample where
    its speech ends; the real split's incomplete turns) streamed by engine-sim as a live microphone (holding
    the microphone open after it) through the real server with ``settings``, once with ``wait_for_player``
    (the floor) and once without, each on fresh services from ``make_services`` (a server closes its
    services), loaded before the first turn. Per row: turns the server cut at the pause (more than one final
    transcript), turns where the character started playing before the player's last word ended (talked
    over: measured by engine-sim on its own clock), turns with no complete reply, and when the answer heard
    after the player finished started (p50/p90 ms)."""
    from ..llm.history import DEFAULT_PERSONA
    from ..services import warm_up
    from .turnset import RATE

    rows: dict[str, list[dict[str, object]]] = {}
    for wait in (True, False):
        run = replace(settings, livelink=("off",), wait_for_player=wait)
        outcomes = []
        services = make_services()
        await warm_up(services, settings.persona or DEFAULT_PERSONA)
        async with BackgroundServer(run, services) as server:
            for name, pcm, end in audio:
                async with EngineSim(SimConfig(url=server.ws_url, hold_mic=True, mic_rate=RATE)) as sim:
                    try:
                        outcome = _paused_outcome(await sim.say_audio(pcm, RATE, timeout=30.0), end)
                    except TimeoutError:  # e.g. a noise in the room tone after the reply began barged in
                        outcome = {"talked_over": None, "finals": [], "replies_played": 0, "answer_ms": None}
                        outcome["errors"] = [{"code": "timeout", "message": "no complete reply within 30 s"}]
                    outcomes.append({"name": name, **outcome})
        rows["on" if wait else "off"] = outcomes
    table = Table(
        f"Players who pause mid-sentence, live: {len(audio)} real recordings with a 300-1500 ms pause ({label})",
        [
            "wait_for_player",
            "turns",
            "cut at the pause",
            "talked over",
            "no reply",
            "answer after the player p50 ms",
            "p90 ms",
        ],
        note="Each recording is an incomplete turn of the endpoint benchmark's real split (a pause of 300-1500 ms "
        "inside a sentence), streamed in real time to the server by engine-sim in its own process, which keeps "
        "the microphone open afterwards, acknowledges playback and plays every reply out. Cut at the pause: the "
        "server's VAD ended the turn inside the pause (two final transcripts). Talked over: engine-sim started "
        "playing a reply before the player's last word ended (the forced alignment's end, as captured). No "
        "reply: engine-sim got no complete reply within 30 s (the reply was interrupted by a barge-in and no "
        "other came: the recording's room tone after the speech holds noises the VAD hears as speech). Answer: "
        "the last reply that started after the player finished, from that moment.",
    )
    for key, outcomes in rows.items():
        answers = [float(o["answer_ms"]) for o in outcomes if o["answer_ms"] is not None]  # type: ignore[arg-type]
        p50, p90 = percentiles(answers, (50, 90))
        cut = sum(len(o["finals"]) > 1 for o in outcomes)  # type: ignore[arg-type]
        over = sum(bool(o["talked_over"]) for o in outcomes)
        lost = sum(o["talked_over"] is None for o in outcomes)
        n = len(outcomes)
        table.add(key, n, f"{cut} of {n}", f"{over} of {n}", f"{lost} of {n}", p50, p90)
    names = [name for name, _, _ in audio]
    return table, {"recordings": names, **{f"wait_for_player_{k}": v for k, v in rows.items()}}
