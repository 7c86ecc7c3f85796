"""The ``facecast`` command. Every error meant for the user is printed as one line and exits non-zero."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Settings, load_settings
from .errors import FacecastError

__all__ = ["main", "build_parser"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def _role_help(role: str) -> str:
    from .providers import DEFAULTS
    from .registry import providers

    names = ", ".join(p.name for p in providers(role))  # type: ignore[arg-type]  # role is one of ROLES
    extra = "; or a comma-separated list of ws:// services" if role != "face" else "; or ws:// services"
    return f"{role} provider (default: {DEFAULTS[role]}; one of {names}{extra})"


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("services and settings (also FACECAST_* variables and --config TOML)")
    g.add_argument("--config", help="TOML settings file")
    for role in ("stt", "llm", "tts", "face"):
        g.add_argument(f"--{role}", metavar="NAME[:ARG]", help=_role_help(role))
    g.add_argument("--llm-model", help="model name on the LLM server (default: the server's first)")
    g.add_argument(
        "--voice",
        help="the TTS's voice (espeak-ng: a language code with a variant, e.g. en-gb+f3; 'facecast voices' lists them)",
    )
    g.add_argument("--speech-rate", type=int, help="speaking rate in words per minute (175 = the voice's own)")
    g.add_argument("--pitch", type=int, help="voice pitch 0-100 (espeak-ng; default 50)")
    g.add_argument(
        "--set",
        action="append",
        metavar="ROLE.NAME.OPTION=VALUE",
        help="a provider option, e.g. tts.espeak.voice=en-gb (repeatable; see 'facecast providers')",
    )
    g.add_argument("--persona", help="system prompt for the character")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facecast", description="Real-time conversational character backend.")
    parser.add_argument("--version", action="version", version=f"facecast {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="start the server (HTTP + WebSocket on 127.0.0.1:8765)")
    _common(p)
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--token", help="access token clients must present (required off loopback)")
    p.add_argument("--livelink", action="append", help="Live Link Face UDP target HOST:PORT (repeatable; 'off')")
    p.add_argument(
        "--vmc", action="append", help="VMC/OSC UDP target HOST:PORT for VSeeFace, VNyan, Warudo (repeatable)"
    )
    p.add_argument("--vts", help="VTube Studio plugin API URL, e.g. ws://localhost:8001 (click Allow in VTS once)")
    p.add_argument("--subject", help="Live Link subject name (default Facecast; an engine's hello may name its own)")
    p.add_argument("--device-id", help="Live Link device id sent in every packet (default Facecast)")
    p.add_argument(
        "--ack-timeout",
        type=float,
        help="seconds to wait for an engine's playback_started before dropping the reply (default 2)",
    )
    p.add_argument("--record", help="keep every utterance as a session folder under this directory")
    p.add_argument(
        "--session-store",
        metavar="memory|redis://HOST:PORT/DB",
        help="where resumable sessions are kept: memory (default; this process) or a Redis/Valkey URL shared by "
        "several controllers (pip install 'facecast[scale]')",
    )
    p.add_argument(
        "--realtime",
        metavar="NAME:MODEL",
        help="a speech-to-speech model answering conversations instead of --stt/--llm/--tts (openai:MODEL with "
        "OPENAI_API_KEY, gemini:MODEL with GEMINI_API_KEY); the pipeline takes over if it fails (docs/realtime.md)",
    )
    p.add_argument(
        "--endpoint-ms", type=int, help="silence that ends the player's turn with --turn-detector silence (default 300)"
    )
    p.add_argument(
        "--transcript-lead-ms",
        type=int,
        help="finish the transcript at a pause this long before the endpoint (default 100; 0: off)",
    )
    p.add_argument("--barge-in-ms", type=int, help="speech needed to interrupt the character (default 400)")
    p.add_argument(
        "--turn-detector",
        choices=("smart", "silence"),
        help="how the player's turn ends: silence (after --endpoint-ms of silence; default) or smart (a short "
        "silence, then the end-of-turn model decides; opt-in)",
    )
    p.add_argument(
        "--smart-end-ms", type=int, help="smart turns: silence after which a finished turn ends (default 200)"
    )
    p.add_argument(
        "--smart-ask-ms",
        type=int,
        help="smart turns: silence after which the end-of-turn model is asked, sooner than --smart-end-ms; its time "
        "then passes inside that silence (default 100; 0 or more than --smart-end-ms: at --smart-end-ms)",
    )
    p.add_argument(
        "--turn-ask-threshold",
        type=float,
        help="smart turns: probability of 'finished' an answer asked before --smart-end-ms needs to end the turn "
        "there (default 0.95; less: asked again at --smart-end-ms)",
    )
    p.add_argument(
        "--max-wait-ms",
        type=int,
        help="smart turns: silence that ends a turn the model called unfinished (default 2500)",
    )
    p.add_argument(
        "--turn-threshold",
        type=float,
        help="smart turns: probability of 'finished' that ends the turn at once (default 0.85)",
    )
    p.add_argument(
        "--turn-wait-threshold",
        type=float,
        help="smart turns: probability of 'finished' at or below which the turn waits up to --max-wait-ms; "
        "in between, it ends at --endpoint-ms (default 0.2)",
    )
    p.add_argument(
        "--turn-recheck-ms",
        type=int,
        help="smart turns: while a turn waits, ask the model again after this much more silence (default 0: never)",
    )
    p.add_argument(
        "--turn-text-cues",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="smart turns: also judge the pause's transcript ('I'd like the' waits, a finished sentence ends an unsure "
        "pause; default on)",
    )
    p.add_argument(
        "--turn-text-wait-ms",
        type=int,
        help="smart turns with text cues: silence an unsure pause waits for its transcript (default 600)",
    )
    p.add_argument(
        "--speculate",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="start the LLM on a pause's transcript before the endpoint (default on; --no-speculate saves LLM calls)",
    )
    p.add_argument(
        "--wait-for-player",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a reply never starts while the player speaks (default on; --no-wait-for-player: only barge-in stops it)",
    )
    p.add_argument(
        "--neurosync-ports",
        action="store_true",
        default=None,
        help="also serve the NeuroSync-compatible API on NeuroSync's default ports "
        "(5000, 6969, 8000, 7070; 1234 with image endpoints) on the same host",
    )
    run_parser = p

    p = sub.add_parser("say", help="speak TEXT and animate it into DIR/audio.wav + DIR/shapes.csv")
    _common(p)
    p.add_argument("text")
    p.add_argument("--character", help="speak in the voice of a character of the config ([characters.NAME])")
    p.add_argument("--out", required=True, help="output folder")
    _take_options(p)

    p = sub.add_parser("chat", help="one full turn (speech -> transcript -> LLM -> speech -> face) into --out")
    _common(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="what the player says")
    src.add_argument("--audio", help="an audio file of the player speaking")
    p.add_argument(
        "--character", help="answer as a character of the config ([characters.NAME]): its persona, LLM and voice"
    )
    p.add_argument("--out", required=True, help="output folder for the reply")
    _take_options(p)

    p = sub.add_parser("animate", help="animate an audio file (audio-driven face) into DIR/audio.wav + DIR/shapes.csv")
    p.add_argument("audio", help="audio file (WAV, FLAC, OGG...; any rate, mixed to mono)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--face", help="learned (default), learned:PATH/mouth.json or neurosync:PATH/model.pth")
    _take_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    p = sub.add_parser("transcribe", help="print the transcript of an audio file")
    _common(p)
    p.add_argument("audio")

    p = sub.add_parser("play", help="stream a session folder or take CSV to Live Link in real time")
    p.add_argument("path", help="session folder (audio.wav + shapes.csv) or a take CSV")
    p.add_argument(
        "--livelink", action="append", help="Live Link target HOST:PORT (repeatable; default 127.0.0.1:11111)"
    )
    p.add_argument("--subject", default="Facecast", help="Live Link subject name")
    p.add_argument(
        "--audio",
        action="store_true",
        help="also play the session's audio here, in sync with the face (needs an output device)",
    )
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("convert", help="convert a take between NeuroSync shapes.csv and Live Link Face app CSV")
    p.add_argument("input", help="take CSV (NeuroSync, Live Link Face app or Unreal) or a session folder")
    p.add_argument("output", help="output CSV file (or a folder, which gets shapes.csv)")
    p.add_argument(
        "--to",
        choices=("neurosync", "livelink-app"),
        help="output format (default: shapes.csv or a folder -> neurosync, else the other format from the input's)",
    )
    p.add_argument("--fps", type=int, help="frame rate of livelink-app output (default: the input's, or 60)")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("voices", help="list the voices of the TTS (--tts NAME, or the configured one)")
    _common(p)

    p = sub.add_parser("samples", help="write sample inputs (question.wav, speech.wav, take.csv) into DIR")
    p.add_argument("dir", help="output folder (created if needed)")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("engine-sim", help="the reference engine client: one turn against a running server")
    p.add_argument("--url", default="ws://127.0.0.1:8765/ws/engine")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="type this as the player")
    src.add_argument("--wav", help="stream this audio file as the microphone, in real time")
    p.add_argument(
        "--turns",
        choices=("server", "client"),
        default="server",
        help="server: the server hears the end of speech (the microphone stays open with silence "
        "after the file); client: push-to-talk, 'end_of_speech' is sent after the file",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the whole reply")
    p.add_argument("--rate", type=int, default=24000, help="reply audio rate to ask for")
    p.add_argument("--livelink-port", type=int, default=0, help="collect Live Link packets on this UDP port")
    p.add_argument("--token", default="", help="access token")
    p.add_argument("--character", default="", help="be this character of the server's config (hello.character)")
    p.add_argument("--subject", default="", help="ask for this Live Link subject (hello.subject)")
    p.add_argument("--out", help="write the received reply as a session folder here")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser(
        "serve",
        help="run one service (stt, llm, tts or face) as a standalone WebSocket server, or (--ray) model pools "
        "on a Ray cluster",
    )
    _common(p)
    p.add_argument("role", nargs="?", choices=("stt", "llm", "tts", "face"))
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need --token)")
    p.add_argument("--port", type=int, help="port (default: stt 8766, llm 8767, tts 8768, face 8769; 0 = any)")
    p.add_argument("--token", help="access token clients must present (required off loopback)")
    g = p.add_argument_group("model pools on Ray Serve (--ray; extra: scale; docs/scaling.md)")
    g.add_argument("--ray", action="store_true", help="deploy autoscaled pools on a running Ray cluster, at /ROLE")
    g.add_argument("--roles", default="stt,tts,face,llm", help="pools to deploy (default: stt,tts,face,llm)")
    g.add_argument("--ray-address", default="auto", help="the Ray cluster (default: auto, the local 'ray start')")
    g.add_argument("--http-host", help="address of Serve's HTTP proxy (default: --host or 127.0.0.1)")
    g.add_argument("--http-port", type=int, default=8000, help="port of Serve's HTTP proxy (default 8000)")
    g.add_argument("--proxy-location", choices=("HeadOnly", "EveryNode"), default="HeadOnly")
    g.add_argument("--min-replicas", type=int, help="replicas each pool keeps (default 1)")
    g.add_argument("--max-replicas", type=int, help="replicas each pool may grow to (default 2)")
    g.add_argument("--target-ongoing-requests", type=float, help="open connections per replica to aim at (2)")
    g.add_argument(
        "--pool",
        action="append",
        metavar="ROLE.OPTION=VALUE",
        help="a pool option of one role, e.g. tts.num_gpus=0.5, stt.max_replicas=8, "
        "tts.autoscaling.upscale_delay_s=1 (repeatable)",
    )

    p = sub.add_parser("providers", help="list the providers of every role, their capabilities and options")
    p.add_argument("role", nargs="?", choices=("stt", "llm", "tts", "face"))
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--markdown", action="store_true", help="print the README's provider table (Markdown)")

    p = sub.add_parser(
        "doctor",
        parents=[run_parser],
        add_help=False,
        help="check what 'run' would use (same flags): providers, ports, Live Link, token, model cache, extras",
    )
    p.add_argument("--no-warm", action="store_true", help="build the providers but do not load their models")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds for each network probe (default 3)")

    p = sub.add_parser("bench", help="run the benchmark suite and print its tables")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a short run (a few minutes on 2 cores): fewer clips, sentences, turns; no llm, resources, providers "
        "or realtime groups",
    )
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="run only these table groups: stt, tts, providers, realtime, llm, v2v, endpoint, resources, pipeline, "
        "face, livelink, compare, scale, remote (default: all); soak, peers and pools only when named",
    )
    p.add_argument(
        "--endpoint",
        action="store_true",
        help="end-of-turn detection, silence vs smart turn, on complete and incomplete turns (same as --only endpoint)",
    )
    p.add_argument(
        "--soak",
        action="store_true",
        help="the soak test: 8 honest conversations and 8 hostile clients against one server (same as --only soak)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="Facecast side by side with a Pipecat pipeline on the same real components, at 1, 2 and 4 "
        "conversations (same as --only peers; extra: bench; --quick: one question)",
    )
    p.add_argument(
        "--scale",
        action="store_true",
        help="TTS model pools on a local two-node Ray cluster: pool hop latency, conversations held in real time "
        "at 1, 2, 4 replicas, recovery after a replica kill (same as --only pools; extra: scale)",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="how long the soak runs (default 10)")
    p.add_argument(
        "--conversations",
        type=_counts,
        default=None,
        metavar="N,N",
        help="--peers: the simultaneous-conversation counts to compare at (default 1,2,4)",
    )
    p.add_argument("--json", dest="json_path", help="also write the raw numbers to this JSON file")
    p.add_argument("--markdown", help="also write the tables as Markdown to this file")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="also write PNG plots (stage latency, sync error, jitter, face curves) into DIR (extra: plots)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return parser


_SETTING_FLAGS = (
    "realtime",
    "stt",
    "llm",
    "llm_model",
    "tts",
    "face",
    "voice",
    "speech_rate",
    "pitch",
    "persona",
    "set",
    "host",
    "port",
    "token",
    "livelink",
    "vmc",
    "vts",
    "subject",
    "device_id",
    "ack_timeout",
    "record",
    "session_store",
    "neurosync_ports",
    "endpoint_ms",
    "transcript_lead_ms",
    "barge_in_ms",
    "turn_detector",
    "smart_end_ms",
    "smart_ask_ms",
    "turn_ask_threshold",
    "max_wait_ms",
    "turn_threshold",
    "turn_wait_threshold",
    "turn_recheck_ms",
    "turn_text_cues",
    "turn_text_wait_ms",
    "speculate",
    "wait_for_player",
)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    return load_settings(getattr(args, "config", None), overrides=overrides)


def _take_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--idle",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the live animation layer to the take: blinks, gaze, head motion, emotion (default on; "
        "--no-idle keeps the animator's speech frames only)",
    )
    p.add_argument("--seed", type=int, help="seed of the animation layer, for a reproducible take (default: fresh)")


def _idle(args: argparse.Namespace, s: Settings | None = None) -> Any:
    """The ``IdleLayer`` the take options ask for (a character's idle style when ``--character`` names one)."""
    from .offline import IdleLayer

    if not args.idle:
        return None
    name: str | None = getattr(args, "character", None)
    config = s.characters[name].idle.layer_config() if s is not None and name and name in s.characters else None
    return IdleLayer(args.seed, config)


def _took(folder: object, utterance: Any, extra: str = "") -> str:
    seconds = len(utterance.audio) / utterance.rate
    layer = f", idle layer seed {utterance.seed}" if utterance.seed is not None else ""
    return f"{folder}: {seconds:.2f} s of audio, {len(utterance.face)} face frames{extra}{layer}"


async def _say(args: argparse.Namespace) -> int:
    from .offline import say
    from .services import make_face, make_tts

    s, _, _ = _as_character(_settings(args), args.character)
    utterance = await say(args.text, make_tts(s.tts, s), make_face(s.face, s), idle=_idle(args, s))
    print(_took(utterance.save(args.out), utterance))
    return 0


def _as_character(s: Settings, name: str | None) -> tuple[Settings, str, str]:
    """The settings for character ``name`` of ``s`` (its LLM and voice over the server's), with its persona
    and speaking rules; ``s`` with its own persona and rules when ``name`` is None."""
    from dataclasses import replace

    from .errors import ConfigError

    if name is None:
        return s, s.persona, s.speaking_rules
    if name not in s.characters:
        known = ", ".join(sorted(s.characters)) or "none; define [characters.NAME] tables in the config"
        raise ConfigError(f"unknown character {name!r} (this config has: {known})")
    ch = s.characters[name]
    s = replace(s, llm=ch.llm or s.llm, tts=ch.voice.tts or s.tts, voice=ch.voice.voice or s.voice)
    return s, ch.persona, ch.speaking_rules or s.speaking_rules


async def _chat(args: argparse.Namespace) -> int:
    from .llm import NO_LLM_HINT
    from .offline import chat
    from .services import build_services

    s, persona, rules = _as_character(_settings(args), args.character)
    if s.llm == "echo":
        print(NO_LLM_HINT, file=sys.stderr)
    user, reply = await chat(
        build_services(s), text=args.text, audio=args.audio, persona=persona, rules=rules, idle=_idle(args, s)
    )
    folder = reply.save(args.out)
    print(f"you: {user}")
    print(f"character: {reply.text}")
    print(_took(folder, reply))
    return 0


async def _samples(args: argparse.Namespace) -> int:
    from .offline import SAMPLE_QUESTION, SAMPLE_SPEECH, write_samples

    question, speech, take = await write_samples(args.dir)
    print(f"{question}: a player asking {SAMPLE_QUESTION!r} (espeak-ng en-gb)")
    print(f"{speech}: {SAMPLE_SPEECH!r} (espeak-ng en-us)")
    print(f"{take}: the face of the same words, Live Link Face app CSV")
    return 0


async def _animate(args: argparse.Namespace) -> int:
    from .audio import read_audio
    from .errors import ConfigError
    from .offline import animate
    from .services import make_face, resolve

    spec = args.face or "learned"
    provider, _ = resolve("face", spec)
    if provider.caps.face_input != "audio":
        raise ConfigError(
            f"animate needs an audio-driven face, and --face {provider.name} animates from TTS "
            "phoneme timing: use --face learned or neurosync:PATH/model.pth"
        )
    pcm, rate = read_audio(args.audio)
    utterance = await animate(pcm, rate, make_face(spec), idle=_idle(args))
    print(_took(utterance.save(args.out), utterance, f" ({spec})"))
    return 0


async def _transcribe(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .offline import transcribe_file
    from .services import make_stt

    s = _settings(args)
    text = await transcribe_file(args.audio, make_stt(s.stt, s))
    if not text.strip():
        raise InputError(f"no speech found in {args.audio}")
    print(text)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .server import serve

    return serve(_settings(args))


def _voices(args: argparse.Namespace) -> int:
    import textwrap

    from .errors import ConfigError
    from .services import make_tts

    s = _settings(args)
    tts = make_tts(s.tts, s)
    voices = getattr(tts, "voices", None)
    if voices is None:
        raise ConfigError(
            f"--tts {s.tts} does not list its voices (remote services and failover lists cannot): "
            "run 'facecast voices --tts NAME' for one provider"
        )

    def column(names: list[str]) -> str:
        return textwrap.fill(" ".join(names), 100, initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)

    names: list[str] = voices()
    print(f"{s.tts} voices (--voice NAME):")
    print(column(names))
    variants = getattr(tts, "variants", None)
    if variants is not None:
        extra: list[str] = variants()
        example = "en-gb+f3" if "en-gb" in names and "f3" in extra else f"{names[0]}+{extra[0]}"
        print(f"variants (--voice NAME+VARIANT, e.g. {example}):")
        print(column(extra))
    return 0


def _play(args: argparse.Namespace) -> int:
    from .engine.livelink import parse_targets
    from .engine.play import run_play
    from .play_audio import open_player

    targets = parse_targets(args.livelink or ["127.0.0.1:11111"])
    result = run_play(args.path, targets, args.subject, open_player if args.audio else None)
    print(f"played {result.frames} frames ({result.duration:.2f} s): {result.sent} sent, {result.skipped} skipped")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_take

    print(convert_take(args.input, args.output, args.to, args.fps).summary())
    return 0


async def _engine_sim(args: argparse.Namespace) -> int:
    from .audio import read_audio
    from .engine.sim import EngineSim, SimConfig, summarize

    config = SimConfig(
        url=args.url,
        rate=args.rate,
        livelink_port=args.livelink_port,
        token=args.token,
        turns=args.turns,
        hold_mic=True,
        character=args.character,
        subject=args.subject,
    )
    pcm, rate = read_audio(args.wav) if args.wav else (None, 0)
    try:
        async with EngineSim(config) as sim:
            if pcm is None:
                report = await sim.say_text(args.text, timeout=args.timeout)
            else:
                report = await sim.say_audio(pcm, rate, timeout=args.timeout)
    except TimeoutError:  # an OSError too: before the connection errors
        print(
            f"facecast engine-sim: error: no complete reply from {args.url} within {args.timeout:g} s", file=sys.stderr
        )
        return EXIT_ERROR
    except OSError as exc:
        print(f"facecast engine-sim: error: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for error in report.errors:
        print(f"facecast engine-sim: server error {error.get('code')}: {error.get('message')}", file=sys.stderr)
    livelink = sim.welcome.get("livelink")
    if isinstance(livelink, dict) and livelink.get("subject"):
        print(f"live link subject: {livelink['subject']}")
    print(f"player: {report.transcript}")
    for n, utt in enumerate(report.utterances):
        if not utt.samples:
            continue  # failed before its first audio: the error above says why
        print(f"character: {utt.text}")
        if n == 0:
            print(f"  response latency: {report.response_latency * 1000:.0f} ms (end of speech -> playback start)")
        print(
            f"  audio: {utt.samples / config.rate:.2f} s, underruns: {utt.underruns}; face frames: "
            f"{utt.face_frames} (before ack: {utt.face_before_ack})"
        )
        if utt.livelink_error:
            print(f"  Live Link sync error: {summarize(utt.livelink_error)}")
        if args.out and utt.audio:
            import numpy as np

            from .takefolder import write_session
            from .types import FACE_WIDTH, frames_for_samples

            audio = np.concatenate(utt.audio)
            face = np.concatenate(utt.face) if utt.face else np.zeros((0, FACE_WIDTH), np.float32)
            write_session(args.out, audio, config.rate, face[: frames_for_samples(len(audio), config.rate)])
    return 0 if report.utterances and not report.errors else EXIT_ERROR


def _serve(args: argparse.Namespace) -> int:
    from .remote.server import DEFAULT_PORTS, run_forever

    if args.ray:
        from .scale.cli import serve_ray

        return serve_ray(args, {name: getattr(args, name, None) for name in _SETTING_FLAGS if name != "port"})
    if args.role is None:
        print("facecast serve: error: name a role (stt, llm, tts, face) or use --ray", file=sys.stderr)
        return EXIT_USAGE
    settings = _settings(args)
    port = DEFAULT_PORTS[args.role] if args.port is None else args.port

    def build() -> Any:
        from .limits import limit_role
        from .services import make_role

        return limit_role(args.role, make_role(args.role, getattr(settings, args.role), settings), settings)

    asyncio.run(
        run_forever(
            args.role,
            build,
            settings.host,
            port,
            settings.token,
            allowed_hosts=settings.allowed_hosts,
            allowed_origins=settings.allowed_origins,
        )
    )
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from .doctor import main as doctor_main

    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in _SETTING_FLAGS}
    settings = load_settings(args.config, overrides=overrides, token_rule=False)  # the token is a check
    return doctor_main(settings, warm=not args.no_warm, timeout=args.timeout)


def _providers(args: argparse.Namespace) -> int:
    from .providers import DEFAULTS
    from .registry import ROLES, env_key, option_fields, providers

    if args.markdown:
        from .provider_table import markdown_table

        print(markdown_table(providers(args.role)), end="")
        return 0
    for role in ROLES:
        if args.role and role != args.role:
            continue
        print(f"{role}:")
        for p in providers(role):
            mark = "*" if p.name == DEFAULTS[role] else " "
            state = "installed" if p.installed() else f"not installed: {p.install_hint()}"
            print(f" {mark} {p.name:<13} {p.caps.describe(role):<34} {state}")
            if p.summary:
                print(f"     {p.summary}")
            opts = list(option_fields(p))
            if opts:
                print(
                    f"     options: {', '.join(opts)}  ([{role}.{p.name}], {env_key(role, p.name, opts[0])}, "
                    f"--set {role}.{p.name}.{opts[0]}=...)"
                )
            if p.licence:
                print(f"     licence: {p.licence}")
    if not args.role:
        print("realtime (replaces stt+llm+tts for a session; --realtime NAME:MODEL):")
        for p in providers("realtime"):
            print(f"   {p.name:<13} {p.summary}")
    print("* = default")
    return 0


def _counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4): positive counts (argparse type)."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected counts like 1,2,4, got {text!r}")
    return counts


def _bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main
    from .bench import parse_only

    try:
        named = (
            args.only,
            "soak" if args.soak else None,
            "endpoint" if args.endpoint else None,
            "peers" if args.peers else None,
            "pools" if args.scale else None,
        )
        only = parse_only(",".join(filter(None, named)))
    except ValueError as exc:
        print(f"facecast bench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return bench_main(
        quick=args.quick,
        json_path=args.json_path,
        markdown_path=args.markdown,
        only=only,
        soak_minutes=args.minutes,
        plots_dir=args.plots,
        conversations=args.conversations,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    handlers = {
        "say": _say,
        "chat": _chat,
        "transcribe": _transcribe,
        "animate": _animate,
        "engine-sim": _engine_sim,
        "samples": _samples,
    }
    try:
        if args.command in handlers:
            return asyncio.run(handlers[args.command](args))
        if args.command == "run":
            return _run(args)
        if args.command == "bench":
            return _bench(args)
        if args.command == "providers":
            return _providers(args)
        if args.command == "doctor":
            return _doctor(args)
        if args.command == "serve":
            return _serve(args)
        if args.command == "voices":
            return _voices(args)
        if args.command == "play":
            return _play(args)
        if args.command == "convert":
            return _convert(args)
    except FacecastError as exc:
        print(f"facecast {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
