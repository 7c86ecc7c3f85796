"""``facecast bench --peers``: Facecast side by side with Pipecat on the same real components.

Both stacks get the same real human questions (:func:`facecast.bench.turns_bench.real_questions`: read and
conversational clips, several speakers, each followed by 1.5 s of silence), streamed as a live microphone in
real time, and the same components: Whisper base int8 (the weights of Facecast's model cache), the embedded
Qwen2.5-Coder-0.5B-Instruct Q4_K_M behind ONE OpenAI-compatible server both stacks talk to
(llama-cpp-python's ``llama_cpp.server``, started here; Facecast uses it as ``--llm http://...``), and the
hibari voice. What differs is the stack:

* Facecast: the real server (:class:`facecast.server.BackgroundServer`) on its defaults with that LLM,
  engine-sim in its own process as the engine (like :mod:`.turns_bench`), with ``--turn-detector silence``
  (300 ms, the default) and ``smart`` (the semantic end-of-turn model, like Pipecat's default). Measured: end
  of speech -> the first reply audio sample arriving at the engine (client clock), -> engine playback start,
  -> first face frame, the server's per-stage times and the unaccounted remainder (playback start minus the
  VAD end and the server's engine-ack time).
* Pipecat: ``benchmarks/peers/pipecat_pipeline.py`` (its docstring has every setting) in a child process,
  at Pipecat's documented turn defaults and at 300 ms of silence. Measured: end of speech -> the first reply
  sample leaving the pipeline's output transport, per-stage event times and the remainder.

The four set-ups run interleaved in rounds (each round asks its share of the questions through every
set-up, the order reversed every other round), at 1, 2 and 4 simultaneous conversations. Pipecat has no
face output: its face column says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import pickle
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..audio import resample
from ..config import Settings
from ..engine.sim import SimConfig, TurnReport
from ..errors import ConfigError
from .engines import Script, Turn, run_engines
from .report import Table, percentiles
from .turns_bench import CHAIN, VAD_END, Question, real_questions

__all__ = [
    "PeersConfig",
    "SETUPS",
    "PIPELINE",
    "peers_tables",
    "llama_server",
    "pipecat_version",
    "facecast_turns",
    "pipecat_turns",
]

PIPELINE = Path(__file__).resolve().parents[3] / "benchmarks" / "peers" / "pipecat_pipeline.py"
"""The Pipecat pipeline (in the source checkout; it is not part of the installed package)."""

SETUPS = (
    ("facecast", "smart", "Facecast, --turn-detector smart (smart turn v3.2 + text cues)"),
    ("pipecat", "default", "Pipecat, defaults (Silero VAD stop 0.2 s + smart-turn v3)"),
    ("facecast", "silence", "Facecast, --turn-detector silence (300 ms, the default)"),
    ("pipecat", "silence", "Pipecat, 300 ms silence (VAD stop_secs 0.3, speech timeout 0)"),
)
"""(stack, turn setting, row label) of every set-up, in the order a round runs them."""

PIPECAT_STAGES = (
    ("VAD stop (silence)", None, "vad_stop"),
    ("STT final", "vad_stop", "transcript"),
    ("turn end", "transcript", "turn_end"),
    ("LLM first token", "turn_end", "llm_first_token"),
    ("TTS first audio", "llm_first_token", "tts_first_audio"),
)
"""Pipecat's sequential stages: (row, event it starts at (None: end of speech), event it ends at)."""

_MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct-q4_k_m"
_LLM_INSTALL = "pip install -e '.[llamacpp,bench]'"


@dataclass(frozen=True, slots=True)
class PeersConfig:
    """``questions``: how many real questions (None: every clip :func:`real_questions` picks); ``conversations``:
    the simultaneous-conversation counts; ``rounds``: interleaving rounds (the questions are split between
    them); ``setups``: indexes into :data:`SETUPS`; ``max_tokens`` and ``temperature``: the LLM's, the same for
    both stacks; ``llm_threads``: the server's threads; ``parallel``: the set-ups of a round run at the same time
    instead of one after the other (the smoke test's shortcut: their timings then disturb each other)."""

    questions: int | None = 6
    conversations: tuple[int, ...] = (1, 2, 4)
    rounds: int = 2
    setups: tuple[int, ...] = (0, 1, 2, 3)
    max_tokens: int = 24
    temperature: float = 0.7
    llm_threads: int = 2
    turn_timeout_s: float = 90.0
    parallel: bool = False

    def __post_init__(self) -> None:
        if self.questions is not None and self.questions < 1:
            raise ConfigError("peers: questions must be at least 1")
        if not self.conversations or min(self.conversations) < 1:
            raise ConfigError("peers: conversation counts must be at least 1")
        if self.rounds < 1:
            raise ConfigError("peers: rounds must be at least 1")
        if not self.setups or not set(self.setups) <= set(range(len(SETUPS))):
            raise ConfigError(f"peers: setups are indexes 0-{len(SETUPS) - 1} into SETUPS")


QUICK = PeersConfig(questions=1, conversations=(1,), rounds=1, setups=(2, 3), max_tokens=8, parallel=True)
"""The smoke version (``make test``): one question, the 300 ms silence set-ups at the same time, one
conversation."""


def pipecat_version() -> str:
    """The installed ``pipecat-ai`` version; ConfigError naming the extra when it is missing."""
    from importlib import metadata

    try:
        return metadata.version("pipecat-ai")
    except metadata.PackageNotFoundError as exc:
        raise ConfigError(f"facecast bench --peers needs Pipecat: {_LLM_INSTALL}") from exc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def llama_server(gguf: Path, threads: int = 2, n_ctx: int = 4096, warm_prompt: str = "") -> AsyncIterator[str]:
    """A ``python -m llama_cpp.server`` on ``gguf`` (a free loopback port, ``threads`` threads, one request
    at a time: the others wait, none is cut short), stopped on exit; yields its API root
    (``http://127.0.0.1:PORT/v1``) once it answers and, with ``warm_prompt``, has answered one chat request
    with it as the system prompt (the weights paged in, the prompt evaluated), so neither stack's first turn
    pays for that. ConfigError when llama-cpp-python's server is missing or the
    server does not answer within 120 s."""
    import httpx

    try:
        import llama_cpp.server  # noqa: F401  # only checks that it is installed
    except ImportError as exc:
        raise ConfigError(f"facecast bench --peers needs llama-cpp-python's server: {_LLM_INSTALL}") from exc
    port = _free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", _MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        # requests queue: by default a request arriving while another streams cuts that one short (a bare
        # "[DONE]"), which left turns of both stacks without a reply at 2 and 4 conversations
        "--interrupt_requests", "False",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        async with httpx.AsyncClient() as client:
            while True:
                if process.returncode is not None:
                    raise ConfigError(f"llama_cpp.server exited with {process.returncode} on {gguf}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/models", timeout=2)).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise ConfigError("llama_cpp.server did not answer within 120 s")
                await asyncio.sleep(0.2)
            if warm_prompt:
                messages = [{"role": "system", "content": warm_prompt}, {"role": "user", "content": "Hello."}]
                body = {"model": _MODEL_ALIAS, "messages": messages, "max_tokens": 1}
                (await client.post(f"{url}/chat/completions", json=body, timeout=120)).raise_for_status()
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 15)
            except TimeoutError:
                process.kill()
                await process.wait()


def _settings(llm_url: str, turn: str, cfg: PeersConfig) -> Settings:
    """Facecast's defaults with the shared LLM server (same sampling as Pipecat's) and ``turn`` detection."""
    base = Settings()
    return replace(
        base,
        llm=llm_url,
        llm_model=_MODEL_ALIAS,
        livelink=("off",),
        turn_detector=turn,
        endpoint_ms=300,
        providers={
            **base.providers,
            "llm.openai": {"max_tokens": cfg.max_tokens, "temperature": cfg.temperature},
        },
    )


def _conversations(questions: Sequence[Question], count: int) -> list[list[Question]]:
    """``count`` conversations over the same questions, conversation k starting at question k."""
    n = len(questions)
    return [[questions[(k + i) % n] for i in range(n)] for k in range(count)]


async def facecast_turns(
    llm_url: str, turn: str, conversations: Sequence[Sequence[Question]], cfg: PeersConfig
) -> list[dict[str, Any]]:
    """Every conversation through one real Facecast server at the same time (engine-sim in a child
    process); one dict per turn (see :func:`_facecast_turn`)."""
    from ..llm.history import persona_prompt
    from ..services import build_services, warm_up

    settings = _settings(llm_url, turn, cfg)
    services = build_services(settings)
    await warm_up(services, persona_prompt(settings.persona, settings.speaking_rules))
    from ..server import BackgroundServer

    async with BackgroundServer(settings, services) as server:
        scripts = [
            Script(SimConfig(url=server.ws_url), tuple(Turn(pcm=p, rate=r) for p, r in conv), cfg.turn_timeout_s)
            for conv in conversations
        ]
        reports = await run_engines(scripts)
    return [_facecast_turn(report) for conv in reports for report in conv]


def _facecast_turn(report: TurnReport) -> dict[str, Any]:
    """One Facecast turn: ``answered``, ``total_ms`` (first reply sample at the engine), ``playback_ms``,
    ``first_face_ms``, ``stages_ms``, ``unaccounted_ms``, ``late`` (audio chunks after their play time),
    ``face_late_ms`` (per face frame: arrival minus its audio's play time), ``transcript``, ``errors``."""
    timing = report.timing
    out: dict[str, Any] = {"answered": False, "transcript": report.transcript, "errors": report.errors}
    if not report.utterances or not report.utterances[0].samples or "engine_ack" not in timing:
        return out
    first = report.utterances[0]
    playback = report.response_latency * 1000
    out.update(
        answered=True,
        total_ms=(first.first_audio - report.speech_end) * 1000,
        playback_ms=playback,
        first_face_ms=timing.get("first_face", float("nan")),
        stages_ms={
            VAD_END: report.vad_end_ms,
            **{name: timing[end] - (timing[start] if start else 0.0) for name, start, end in CHAIN},
        },
        unaccounted_ms=playback - _zero_nan(report.vad_end_ms) - timing["engine_ack"],
        late=sum(u.underruns for u in report.utterances),
        face_late_ms=[v * 1000 for u in report.utterances for v in u.face_late],
    )
    return out


def _zero_nan(value: float) -> float:
    return 0.0 if math.isnan(value) else value


async def pipecat_turns(
    whisper_dir: Path,
    llm_url: str,
    system_prompt: str,
    turn: str,
    conversations: Sequence[Sequence[Question]],
    cfg: PeersConfig,
) -> list[dict[str, Any]]:
    """Every conversation through its own Pipecat pipeline, at the same time, in a child process running
    :data:`PIPELINE`; one dict per turn (see :func:`_pipecat_turn`). RuntimeError when the child fails."""
    if not PIPELINE.is_file():
        raise ConfigError(f"the Pipecat pipeline is not at {PIPELINE} (run from a Facecast source checkout)")
    job = {
        "whisper_dir": str(whisper_dir),
        "llm_url": llm_url,
        "llm_model": _MODEL_ALIAS,
        "system_prompt": system_prompt,
        "conversations": [[resample(p, r, 16_000) for p, r in conv] for conv in conversations],
        "turn": turn,
        "temperature": cfg.temperature,
        "max_tokens": cfg.max_tokens,
        "turn_timeout_s": cfg.turn_timeout_s,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(PIPELINE), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    try:
        out, _ = await process.communicate(pickle.dumps(job))
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        status, value = pickle.loads(out)
    except Exception as exc:  # noqa: BLE001 - a child that died leaves no (or half a) report
        raise RuntimeError(f"the Pipecat process died without a report (exit {process.returncode})") from exc
    if status != "ok":
        raise RuntimeError(f"the Pipecat process failed:\n{value}")
    return [_pipecat_turn(t) for conv in value for t in conv]


def _pipecat_turn(record: dict[str, Any]) -> dict[str, Any]:
    """One Pipecat turn, in :func:`_facecast_turn`'s shape (no playback, face or server stages)."""
    end, first = record["speech_end"], record["first_audio"]
    out: dict[str, Any] = {"answered": False, "transcript": record["transcript"], "errors": [record["error"]]}
    if not end or not first:
        return out
    at = {name: (t - end) * 1000 for name, t in record["events"].items()}
    total = (first - end) * 1000
    nan = float("nan")
    out.update(
        answered=True,
        total_ms=total,
        stages_ms={
            name: at.get(stop, nan) - (at.get(start, nan) if start else 0.0) for name, start, stop in PIPECAT_STAGES
        },
        unaccounted_ms=total - at.get("tts_first_audio", nan),
        late=record["late_chunks"],
        errors=[e for e in [record["error"]] if e],
    )
    return out


async def peers_tables(cfg: PeersConfig = PeersConfig()) -> tuple[list[Table], dict[str, Any]]:
    """Run the comparison (module docstring) and return its tables (side by side; each stack's stages at
    one conversation; the face column) and the raw turns per set-up and conversation count. ConfigError when
    Pipecat, llama-cpp-python's server or a model is missing."""
    from ..llm.history import persona_prompt
    from ..llm.local import resolve_model
    from ..modelcache import ModelSpec, assemble
    from ..stt.whisper import WHISPER_BASE

    version = pipecat_version()
    questions = real_questions(cfg.questions)
    if not questions:
        raise ConfigError("peers: no real questions (facecast.speechdata found no clips)")
    whisper_dir = assemble(WHISPER_BASE)
    spec = resolve_model("qwen")
    gguf = assemble(spec) / "model.gguf" if isinstance(spec, ModelSpec) else Path(spec)
    prompt = persona_prompt("", Settings().speaking_rules)
    raw: dict[str, Any] = {"pipecat": version, "config": asdict(cfg), "questions": len(questions), "runs": {}}
    turns: dict[tuple[int, int], list[dict[str, Any]]] = {}
    share = [questions[r :: cfg.rounds] for r in range(cfg.rounds)]
    started = time.monotonic()
    async with llama_server(gguf, cfg.llm_threads, warm_prompt=prompt) as url:
        for count in cfg.conversations:
            for r, part in enumerate(share):
                if not part:
                    continue
                order = list(cfg.setups) if r % 2 == 0 else list(reversed(cfg.setups))

                async def run(index: int, part: list[Question] = part, count: int = count) -> None:
                    stack, turn, _ = SETUPS[index]
                    convs = _conversations(part, count)
                    if stack == "facecast":
                        got = await facecast_turns(url, turn, convs, cfg)
                    else:
                        got = await pipecat_turns(whisper_dir, url, prompt, turn, convs, cfg)
                    turns.setdefault((index, count), []).extend(got)

                if cfg.parallel:
                    await asyncio.gather(*(run(index) for index in order))
                else:
                    for index in order:
                        await run(index)
    raw["wall_s"] = time.monotonic() - started
    raw["runs"] = {f"{SETUPS[i][0]}-{SETUPS[i][1]}-x{c}": v for (i, c), v in turns.items()}
    raw["load"] = os.getloadavg()
    tables = [_side_by_side(turns, cfg, version, len(questions))]
    tables += _stage_tables(turns, cfg)
    tables.append(_face_table(turns, cfg))
    return tables, raw


def _p(turns: list[dict[str, Any]], key: str) -> list[float]:
    """``key`` of the answered turns, NaN left out."""
    return [float(t[key]) for t in turns if t["answered"] and key in t and t[key] == t[key]]


def _side_by_side(turns: dict[tuple[int, int], list[dict[str, Any]]], cfg: PeersConfig, version: str, n: int) -> Table:
    table = Table(
        f"Facecast vs Pipecat {version}, same components: end of speech -> first reply audio sample leaving "
        f"the stack ({n} real questions per conversation)",
        ["set-up", "conv.", "answered", "p50 ms", "p95 ms", "p99 ms", "late audio chunks", "unaccounted p50 ms"],
        note="Same Whisper base int8 weights, one llama-cpp-python server with Qwen2.5-Coder-0.5B-Instruct Q4_K_M "
        f"for both (temperature {cfg.temperature:g}, max_tokens {cfg.max_tokens}), the hibari voice; real human "
        "questions streamed as a live microphone. Facecast: first sample arriving at engine-sim over its "
        "WebSocket (another process); Pipecat: first sample written by its output transport (same process). "
        "Late audio chunks: reply audio that arrived after the moment it was due to play (50 ms start buffer).",
    )
    for count in cfg.conversations:
        for index in cfg.setups:
            got = turns.get((index, count), [])
            p50, p95, p99 = percentiles(_p(got, "total_ms"))
            table.add(
                SETUPS[index][2],
                count,
                f"{sum(t['answered'] for t in got)}/{len(got)}",
                p50,
                p95,
                p99,
                int(sum(t.get("late", 0) for t in got)),
                percentiles(_p(got, "unaccounted_ms"), (50,))[0],
            )
        pairs = ((2, 3, "300 ms silence, like for like"), (2, 1, "each stack's defaults"), (0, 1, "both on smart turn"))
        for fc, pc, what in pairs:
            if fc in cfg.setups and pc in cfg.setups:
                f50 = percentiles(_p(turns.get((fc, count), []), "total_ms"), (50,))[0]
                q50 = percentiles(_p(turns.get((pc, count), []), "total_ms"), (50,))[0]
                ratio = f"{f50 / q50:.2f}" if q50 == q50 and f50 == f50 and q50 > 0 else "-"
                table.add(f"  ratio Facecast / Pipecat p50 ({what})", count, "", ratio, "", "", "", "")
    return table


def _stage_tables(turns: dict[tuple[int, int], list[dict[str, Any]]], cfg: PeersConfig) -> list[Table]:
    count = min(cfg.conversations)
    tables = []
    for index in cfg.setups:
        got = [t for t in turns.get((index, count), []) if t["answered"]]
        stack, _, label = SETUPS[index]
        table = Table(
            f"Stages, {label}, {count} conversation(s): ms from the previous stage ({len(got)} turns)",
            ["stage", "p50 ms", "p95 ms", "p99 ms"],
        )
        table.add("TOTAL (first reply sample)", *percentiles(_p(got, "total_ms")))
        names = [VAD_END, *(n for n, _, _ in CHAIN)] if stack == "facecast" else [n for n, _, _ in PIPECAT_STAGES]
        for name in names:
            seen = [t["stages_ms"][name] for t in got if t["stages_ms"][name] == t["stages_ms"][name]]
            table.add(f"  {name}", *percentiles(seen))  # a stage whose frame came before the end of speech: left out
        if stack == "facecast":
            table.add("  unaccounted (transport)", *percentiles(_p(got, "unaccounted_ms")))
            table.add("engine playback start", *percentiles(_p(got, "playback_ms")))
            table.note = (
                "Server-reported stages (ms from the server's VAD end of speech, differenced), after the VAD's end "
                "minus the client's (last sample above 0.01). Unaccounted: engine playback start minus both. The "
                "first sample reaches the engine before the engine ack; playback start adds engine-sim's 50 ms "
                "start buffer."
            )
        else:
            table.add("  unaccounted (TTS first audio -> output transport)", *percentiles(_p(got, "unaccounted_ms")))
            table.note = (
                "Pipecat frames observed in its pipeline (first push of each after the end of speech). The turn "
                "ends when the transcript is in and the turn strategy says so; TTS waits for a whole sentence."
            )
        tables.append(table)
    return tables


def _face_table(turns: dict[tuple[int, int], list[dict[str, Any]]], cfg: PeersConfig) -> Table:
    table = Table(
        "Face: what Facecast adds (Pipecat has no blendshape output)",
        ["set-up", "conv.", "first face frame p50 ms", "p95 ms", "face frames late", "face vs audio p99 ms"],
        note="First face frame: ms from the end of speech (server clock). Face vs audio: each socket face frame's "
        "arrival minus the moment its audio sample plays (negative = ahead of the audio, as it should be); "
        "late = after it. Pipecat makes speech only: an avatar needs a separate lip-sync service.",
    )
    for count in cfg.conversations:
        for index in cfg.setups:
            stack, _, label = SETUPS[index]
            got = [t for t in turns.get((index, count), []) if t["answered"]]
            if stack == "pipecat":
                table.add(label, count, "none (no face output)", "-", "-", "-")
                continue
            late = [v for t in got for v in t["face_late_ms"]]
            p50, p95 = percentiles(_p(got, "first_face_ms"), (50, 95))
            share = f"{sum(v > 0 for v in late)}/{len(late)}"
            table.add(label, count, p50, p95, share, percentiles(late, (99,))[0])
    return table
