"""``facecast bench``: the benchmark suite. Prints tables; ``--json`` / ``--markdown`` save them.

One run measures, side by side, the embedded defaults (Whisper speech-to-text, the local Qwen language model,
the hibari voice, the phonetic face) against the light providers, in table groups (:data:`GROUPS`) that
``--only`` picks from:

* ``stt``: word error rate on real human speech per category, real-time factor and peak RSS, Whisper vs
  PocketSphinx (:mod:`.stt_bench`), and the end-of-input-to-final latency;
* ``tts``: hibari vs piper vs espeak on the same sentences (:mod:`.tts_bench`);
* ``providers``: time to first audio / final transcript per provider path, local ones in-process, cloud ones
  through the local protocol servers, and each cloud adapter's own cost per message (:mod:`.provider_bench`);
* ``realtime``: speech-to-speech models (OpenAI Realtime, Gemini Live) through local protocol servers:
  latency, face timing and barge-in truncation (:mod:`.realtime_bench`);
* ``llm``: the embedded local models as a game character (:mod:`.llm_bench`);
* ``v2v``: voice-to-voice latency through the real server with real human speech as the player, on the real
  defaults and with the echo LLM in their place, then the light set with spoken questions (:mod:`.turns_bench`);
* ``endpoint``: end-of-turn detection, the silence endpoint vs smart turn, on an evaluation set of complete
  and incomplete turns from real recordings and neural voices (:mod:`.endpoint_bench`, :mod:`.turnset`);
* ``resources``: each default component's real-time factor and memory, first start, disk (:mod:`.resources_bench`);
* ``pipeline``, ``face``, ``livelink``, ``compare``, ``scale``, ``remote``: the light set's tables;
* ``peers`` (only when named, ``--peers`` or ``--only peers``; needs the ``bench`` extra): Facecast side by side
  with a Pipecat pipeline built from the same components (:mod:`.peers_bench`);
* ``soak`` (only when named, ``--soak`` or ``--only soak``: it takes ``--minutes``, 10 by default): honest
  conversations and hostile clients against one server process, for minutes (:mod:`.soak_bench`);
* ``pools`` (only when named, ``--scale`` or ``--only pools``; needs the ``scale`` extra): TTS model pools on a
  real local two-node Ray cluster: the pool hop's added latency, conversations held in real time versus
  replicas, recovery after a replica kill (:func:`.scale_bench.pools_scale`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from .progress import QUICK_SKIPS, Steps
from .report import Table, machine_description

__all__ = ["GROUPS", "ON_REQUEST", "DEFAULTS_LABEL", "main", "run_all", "markdown_report", "parse_only"]

GROUPS = (
    "stt",
    "tts",
    "providers",
    "realtime",
    "llm",
    "v2v",
    "endpoint",
    "resources",
    "pipeline",
    "face",
    "livelink",
    "compare",
    "scale",
    "remote",
)
"""The table groups of ``facecast bench``, in the order they run and print."""

ON_REQUEST = ("soak", "peers", "pools")
"""Groups that run only when named (they take minutes), after :data:`GROUPS`."""

DEFAULTS_LABEL = "whisper + local LLM + hibari + phonetic face (the embedded defaults)"
"""The services named in the title of the real-defaults voice-to-voice table."""


def parse_only(text: str | None) -> tuple[str, ...]:
    """The groups named by ``--only`` (comma-separated; empty or None: every group of :data:`GROUPS`), in
    :data:`GROUPS` then :data:`ON_REQUEST` order. Raises ``ValueError`` naming an unknown group."""
    if not text:
        return GROUPS
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    known = GROUPS + ON_REQUEST
    unknown = sorted(names - set(known))
    if unknown:
        raise ValueError(f"unknown benchmark group(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return tuple(g for g in known if g in names)


async def _defaults_v2v(quick: bool, tables: list[Table], raw: dict[str, object]) -> None:
    """The voice-to-voice tables on the embedded defaults (real; without speculation; echo as the LLM;
    ``quick``: the first only, 2 turns), real speech. Each gets freshly built services (the server closes its
    services when it stops), warmed up before measuring."""
    from ..config import Settings
    from ..llm import DEFAULT_PERSONA
    from ..services import build_services, transcript_lead_ms, warm_up
    from .turns_bench import real_questions, voice_to_voice

    questions = real_questions()
    turns = 2 if quick else len(questions)
    configs = [
        ("voice_to_voice_defaults", DEFAULTS_LABEL, Settings()),
        (
            "voice_to_voice_defaults_smart",
            "the embedded defaults with --turn-detector smart (the semantic end-of-turn model)",
            replace(Settings(), turn_detector="smart"),
        ),
        (
            "voice_to_voice_defaults_no_speculation",
            "the embedded defaults with --no-speculate (the LLM waits for the endpoint)",
            replace(Settings(), speculate=False),
        ),
        (
            "voice_to_voice_defaults_echo_llm",
            "whisper + ECHO LLM + hibari + phonetic face (what the LLM costs)",
            replace(Settings(), llm="echo"),
        ),
    ]
    for key, label, settings in configs[:1] if quick else configs:  # --quick: the real defaults only
        services = build_services(settings)
        warm_s = await warm_up(services, settings.persona or DEFAULT_PERSONA)
        table, data = await voice_to_voice(
            services,
            turns,
            settings.endpoint_ms,
            label=label,
            questions=questions,
            settings=settings,
            speech="real human speech: read and conversational clips 1.5-5 s",
        )
        table.note += (
            f" The player is real recorded speech streamed as a live microphone; transcript lead "
            f"{transcript_lead_ms(settings)} ms (automatic). Models loaded before measuring "
            f"({warm_s:.1f} s)."
        )
        if quick:
            table.note += " --quick: 2 turns; the echo-LLM and light-set voice-to-voice tables are left out."
        tables.append(table)
        raw[key] = {**data, "warm_up_s": warm_s}
        if key == "voice_to_voice_defaults":  # the same warm services: players who pause mid-sentence
            from .turns_bench import paused_players
            from .turnset import real_turns

            paused = [(i.name, i.audio, i.speech_end) for i in real_turns() if i.kind == "incomplete"]
            paused = paused[: 2 if quick else None]
            table, raw["paused_players_defaults"] = await paused_players(
                partial(build_services, settings), paused, settings, label=label
            )
            table.note += " --quick: 2 recordings." if quick else ""
            tables.append(table)


async def run_all(
    quick: bool,
    only: Collection[str] = GROUPS,
    soak_minutes: float = 10.0,
    conversations: tuple[int, ...] | None = None,
) -> tuple[list[Table], dict[str, object]]:
    """Run the groups in ``only`` (see :data:`GROUPS` and :data:`ON_REQUEST`; ``quick``: fewer clips,
    sentences, lines, turns and runs, and, when ``only`` is every group, not the groups of
    :data:`~.progress.QUICK_SKIPS`; the soak runs ``soak_minutes``; ``peers`` runs at ``conversations``
    simultaneous conversations, default 1, 2 and 4), printing a progress line per group on
    stderr, and return their tables in print order and the raw numbers (``machine``, ``quick``, ``only``,
    ``skipped_by_quick`` and one entry per table)."""
    from ..llm import EchoLLM
    from ..services import Services, make_face, make_stt, make_tts

    tables: list[Table] = []
    raw: dict[str, object] = {"machine": machine_description(), "quick": quick, "only": list(only)}
    runs = 3 if quick else 30
    light: Services | None = None
    skips = QUICK_SKIPS if quick and set(GROUPS) <= set(only) else {}  # a group named by --only runs
    steps = Steps([g for g in only if g in GROUPS], skips)  # a progress line per group on stderr

    def light_services() -> Services:
        nonlocal light
        if light is None:
            light = Services(
                make_stt("pocketsphinx"),
                EchoLLM(),
                make_tts("espeak"),
                make_face("phonetic"),
                audio_face=make_face("learned"),
            )
        return light

    if steps.run("stt"):
        from .stt_bench import stt_accuracy, stt_latency

        table, raw["stt_accuracy"] = await stt_accuracy(quick, per_category=1 if quick else None, peak_rss=not quick)
        tables.append(table)
        table, raw["stt_latency"] = await stt_latency(quick)
        tables.append(table)
    if steps.run("tts"):
        from .tts_bench import SENTENCES, VOICES, tts_table

        table, raw["tts"] = await tts_table(("hibari", "espeak") if quick else VOICES, 2 if quick else len(SENTENCES))
        table.note += " --quick: piper left out." if quick else ""
        tables.append(table)
    if steps.run("providers"):
        from .provider_bench import provider_tables

        provider, raw["providers"] = await provider_tables(quick)
        tables += provider
    if steps.run("realtime"):
        from .realtime_bench import realtime_table

        table, raw["realtime"] = await realtime_table(quick)
        tables.append(table)
    if steps.run("llm"):
        from .llm_bench import PLAYER_LINES, llm_table

        table, raw["llm"] = await llm_table(8 if quick else len(PLAYER_LINES))
        tables.append(table)
    if steps.run("v2v"):
        from ..config import Settings
        from .turns_bench import voice_to_voice

        await _defaults_v2v(quick, tables, raw)
        light_settings = replace(Settings(), stt="pocketsphinx", llm="echo", tts="espeak", face="phonetic")
        light_runs = [  # the silence endpoint (300 ms, and a faster setting) and smart turn, side by side
            (f"voice_to_voice_{ms}ms", replace(light_settings, turn_detector="silence", endpoint_ms=ms))
            for ms in (300, 250)
        ] + [("voice_to_voice_smart", replace(light_settings, turn_detector="smart"))]
        for key, run_settings in () if quick else light_runs:
            table, data = await voice_to_voice(light_services(), 20, run_settings.endpoint_ms, settings=run_settings)
            tables.append(table)
            raw[key] = data
    if steps.run("endpoint"):
        from .endpoint_bench import endpoint_tables

        endpoint, raw["endpoint"] = await endpoint_tables(quick)
        tables += endpoint
    if steps.run("resources"):
        from .resources_bench import resources_table

        table, raw["resources"] = await resources_table(quick)
        tables.append(table)
    if steps.run("pipeline"):
        from .pipeline_bench import first_output_latency, speed

        tts, face = make_tts("espeak"), make_face("phonetic")
        table, raw["first_output"] = await first_output_latency(tts, face, runs, (1, 3) if quick else (1, 3, 10))
        tables.append(table)
        table, raw["speed"] = await speed(tts, face, 2 if quick else 10)
        tables.append(table)
    if steps.run("face"):
        from .face_bench import face_speed

        table, raw["face_speed"] = face_speed(quick)
        tables.append(table)
        from .face_real_bench import real_speech_bench

        table, raw["face_real_speech"] = real_speech_bench(quick)
        tables.append(table)
    if steps.run("livelink"):
        from .livelink_bench import jitter, sync_error

        counts = (1, 10) if quick else (1, 10, 100)
        table, raw["livelink_jitter"] = await jitter(1.0 if quick else 10.0, counts)
        tables.append(table)
        table, raw["sync"] = await sync_error(light_services(), 2 if quick else 10, (10,) if quick else (1, 10, 100))
        tables.append(table)
        from .page_sync_bench import page_sync  # the browser page: WebSocket beside WebRTC

        table, raw["page_sync"] = await page_sync(2 if quick else 10)
        tables.append(table)
    if steps.run("compare"):
        from .compare_bench import streaming_vs_neurosync

        table, raw["streaming_vs_neurosync"] = await streaming_vs_neurosync(
            light_services(), 1 if quick else 10, (3,) if quick else (1, 3, 10)
        )
        tables.append(table)
    if steps.run("scale"):
        from .scale_bench import scale

        table, raw["scale"] = await scale(light_services(), (4,) if quick else (1, 2, 4, 8, 16), 1 if quick else 3)
        tables.append(table)
    if steps.run("remote"):
        from .remote_bench import remote_overhead

        table, raw["remote"] = await remote_overhead(20 if quick else 200, 2 if quick else 20)
        tables.append(table)
    steps.close()
    raw["skipped_by_quick"] = steps.skipped
    if "peers" in only:  # Facecast side by side with Pipecat on the same components (the bench extra)
        from .peers_bench import QUICK, PeersConfig, peers_tables

        cfg = QUICK if quick else PeersConfig()
        if conversations:
            cfg = replace(cfg, conversations=conversations)
        peers, raw["peers"] = await peers_tables(cfg)
        tables += peers
    if "pools" in only:  # model pools on a local Ray cluster (the scale extra)
        from .scale_bench import QUICK_POOLS, PoolsConfig, pools_scale

        pools, raw["pools"] = await pools_scale(QUICK_POOLS if quick else PoolsConfig())
        tables += pools
    if "soak" in only:
        from .soak_bench import SoakConfig, soak

        soak_tables, raw["soak"] = await soak(SoakConfig(minutes=soak_minutes))
        tables += soak_tables
    return tables, raw


def main(
    quick: bool = False,
    json_path: str | None = None,
    markdown_path: str | None = None,
    only: Collection[str] = GROUPS,
    soak_minutes: float = 10.0,
    plots_dir: str | None = None,
    conversations: tuple[int, ...] | None = None,
) -> int:
    """Run :func:`run_all`, print every table, and write the raw numbers (``json_path``), the Markdown report
    (``markdown_path``, see :func:`markdown_report`) and the PNG plots (``plots_dir``, see :mod:`.plots`;
    matplotlib is checked before anything runs). Returns the exit status (0)."""
    if plots_dir:
        from .plots import require_matplotlib

        require_matplotlib()
    started = time.perf_counter()
    tables, raw = asyncio.run(run_all(quick, only, soak_minutes, conversations))
    raw["wall_s"] = time.perf_counter() - started
    print(f"Machine: {raw['machine']}\n")
    for table in tables:
        print(table.text() + "\n")
    if raw.get("skipped_by_quick"):
        left_out = ", ".join(raw["skipped_by_quick"])  # type: ignore[arg-type]  # a list of group names
        print(f"--quick left out: {left_out} (too slow for a quick run; name them: --quick --only NAME,...)\n")
    if plots_dir:
        from .plots import spoken_take, write_plots

        written, missing = write_plots(raw, plots_dir, asyncio.run(spoken_take()))
        print("Plots: " + ", ".join(str(p) for p in written) + "".join(f"\n  not drawn: {m}" for m in missing))
    if json_path:
        Path(json_path).write_text(json.dumps(raw, indent=1, default=float))
    if markdown_path:
        Path(markdown_path).write_text(markdown_report(tables, raw, quick))
    return 0


def markdown_report(tables: list[Table], raw: dict[str, Any], quick: bool) -> str:
    """The whole of docs/benchmarks.md: how it was produced, on what, and every table."""
    command = "facecast bench --quick" if quick else "facecast bench"
    only = raw.get("only")
    if only and tuple(only) == ("soak",):
        command += " --soak"
    elif only and tuple(only) == ("peers",):
        command += " --peers"
        counts = raw.get("peers", {}).get("config", {}).get("conversations")
        if counts and tuple(counts) != (1, 2, 4):
            command += " --conversations " + ",".join(str(c) for c in counts)
    elif only and tuple(only) == ("pools",):
        command += " --scale"
    elif only and tuple(only) != GROUPS:
        command += f" --only {','.join(only)}"
    if only and "soak" in only:
        command += f" --minutes {raw['soak']['config']['minutes']:g}"
    body = "\n\n".join(t.markdown() for t in tables)
    return (
        "# Benchmarks\n\n"
        f"Produced by `{command} --markdown docs/benchmarks.md` (raw numbers: `--json FILE`) on "
        f"{time.strftime('%Y-%m-%d')}, in {raw['wall_s']:.0f} s.\n\n"
        f"Machine: {raw['machine']}. These machines are shared and noisy: read percentiles and ratios measured "
        "side by side in the same run, not single timings.\n\n"
        "Everything runs on loopback through the real components: the real server (uvicorn), the reference "
        "engine client `engine-sim` in its own process, real UDP sockets. The embedded defaults (Whisper base "
        "int8 speech-to-text, the local Qwen2.5-Coder-0.5B-Instruct Q4_K_M language model, the hibari voice, the "
        "phonetic face) are measured against the light providers (pocketsphinx, the echo LLM, libespeak-ng) and "
        "piper; the player's speech in the default voice-to-voice tables is real recorded human speech.\n\n"
        f"{body}\n"
    )
