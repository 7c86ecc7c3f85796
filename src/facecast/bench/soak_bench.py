"""``facecast bench --soak``: honest conversations and hostile clients against one real server, for minutes.

The server is ``facecast run`` in a process of its own on a free loopback port with the light providers
(pocketsphinx, the echo LLM, espeak-ng, the phonetic face; Live Link off). Two more processes talk to it, so
neither side's event loop slows the others:

* the honest one runs ``honest`` engine-sim conversations of :mod:`.honest` (acking and playing every reply
  in real time, like an engine; half type their turns, half speak them as a live microphone);
* the hostile one runs ``hostile`` clients of :mod:`.hostile` (a non-reader, a flooder, an audio-bomb poster,
  a malformed-frame sender, in turn).

The clients first run a warm-up (``warmup_minutes``, the same mix): what the server loads or pools once (the
recognisers the concurrent turns take, the audio-driven face model, the allocator's arenas) is in place
before the run is measured, so the RSS growth is counted from the idle server after the warm-up, not from
the cold one; both numbers are reported, and the warm-up's turns are checked (lost, duplicated) like the
run's. Every few seconds the parent samples the server's resident memory, open file descriptors, threads and CPU
time from ``/proc``. Each honest turn must be answered by exactly one reply utterance: a turn with none is
lost, a second one (or one arriving after the last turn) is a duplicate. Latency is from the typed text / the
end of speech to playback start (engine-sim's 50 ms start buffer included); late audio frames are reply audio
that arrived after it was due to play.
"""

from __future__ import annotations

import asyncio
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from .engines import run_child
from .honest import SessionResult, TurnRecord, run_honest
from .hostile import KINDS, HostileStats, run_hostile
from .report import Table, percentiles

__all__ = ["SoakConfig", "TurnRecord", "SessionResult", "Sample", "soak", "summarize", "LIGHT_FLAGS"]

LIGHT_FLAGS = ("--stt", "pocketsphinx", "--llm", "echo", "--tts", "espeak", "--face", "phonetic", "--livelink", "off")
"""The server's providers: the light set."""

_OVERRUN_S = 180.0
"""How long past the deadline the clients may take to finish (a turn in progress, a bomb being answered)."""
_SETTLE_S = 3.0
"""Seconds the server is left idle after the clients before its last sample."""


@dataclass(frozen=True, slots=True)
class SoakConfig:
    minutes: float = 10.0
    """How long the measured run lasts (after the warm-up)."""
    honest: int = 8
    hostile: int = 8
    sample_every: float = 5.0
    """Seconds between samples of the server's memory."""
    kinds: tuple[str, ...] = KINDS
    """The hostile clients' kinds, assigned in turn (:data:`.hostile.KINDS`)."""
    warmup_minutes: float = 1.0
    """How long the same clients run before the measured run (0: none); the RSS growth counts from the idle
    server after it."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The server process at ``at`` seconds from the start."""

    at: float
    rss_mb: float
    fds: int
    threads: int
    cpu_s: float


def _child() -> None:
    """A child's side: read ``(role, arguments)`` pickled on stdin, write ``("ok", result)`` or ``("error", text)``."""
    role, args = pickle.load(sys.stdin.buffer)
    try:
        if role == "honest":
            result: Any = ("ok", asyncio.run(run_honest(**args)))
        else:
            result = ("ok", asyncio.run(run_hostile(**args)))
    except BaseException:  # noqa: BLE001 - every failure goes back to the parent, as text
        result = ("error", traceback.format_exc())
    sys.stdout.buffer.write(pickle.dumps(result))
    sys.stdout.buffer.flush()


async def _run_child(role: str, args: dict[str, Any], limit: float) -> Any:
    return await run_child("facecast.bench.soak_bench", (role, args), f"{role} clients'", limit)


# --- the server (its own process) and the parent --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _health(port: int) -> bool:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        status = await asyncio.wait_for(reader.readline(), 5)
    except (OSError, TimeoutError):
        return False
    finally:
        writer.transport.abort()
    return status.startswith(b"HTTP/1.1 200")


def _descendants(pid: int) -> list[int]:
    """The processes started by ``pid`` and by them (PocketSphinx's decoders, the bulk processes and their
    helper)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo += parents.get(child, [])
    return found


def _one(pid: int) -> tuple[float, int, int, float] | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            stat = fh.read().rsplit(")", 1)[1].split()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(stat[11]) + int(stat[12]) + int(stat[13]) + int(stat[14])) / ticks  # its and its reaped children's
    return int(fields.get("VmRSS", "0 kB").split()[0]) / 1024, fds, int(fields["Threads"]), cpu


def _sample(pid: int, at: float) -> Sample | None:
    """The server process and the processes it started, summed (memory, files, threads, CPU)."""
    server = _one(pid)
    if server is None:
        return None
    rss, fds, threads, cpu = server
    for child in _descendants(pid):
        more = _one(child)
        if more is not None:
            rss, fds, threads = rss + more[0], fds + more[1], threads + more[2]
            cpu += more[3]
    return Sample(at, rss, fds, threads, cpu)


def _server_errors(log: str) -> dict[str, int]:
    """The server log's error lines and tracebacks (each by its exception line), counted."""
    counts: dict[str, int] = {}
    in_traceback = False
    for line in log.splitlines():
        if line.startswith("Traceback"):
            in_traceback = True
        elif in_traceback and line and not line[0].isspace():
            if not line.startswith("During handling") and not line.startswith("The above exception"):
                in_traceback = False
                counts[f"traceback: {line[:120]}"] = counts.get(f"traceback: {line[:120]}", 0) + 1
        elif line.startswith(("ERROR", "CRITICAL")):
            counts[line[:120]] = counts.get(line[:120], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


async def _start_server(log: Any) -> tuple[asyncio.subprocess.Process, int]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACECAST_")}
    env["PYTHONUNBUFFERED"] = "1"
    server = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "facecast.cli", "run", "--port", str(port), *LIGHT_FLAGS),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    give_up = time.monotonic() + 120
    while not await _health(port):
        if server.returncode is not None or time.monotonic() > give_up:
            await _stop_server(server)
            log.seek(0)
            raise RuntimeError(f"the server did not start:\n{log.read().decode(errors='replace')[-2000:]}")
        await asyncio.sleep(0.2)
    return server, port


async def _stop_server(server: asyncio.subprocess.Process) -> None:
    if server.returncode is None:
        server.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(server.wait(), 15)
        except TimeoutError:
            server.kill()
            await server.wait()


async def _run_clients(
    config: SoakConfig, port: int, pid: int
) -> tuple[list[SessionResult], list[HostileStats], list[Sample]]:
    """Both client processes until the deadline, sampling the server meanwhile; the last sample is taken with
    the server idle again (every client gone, a few seconds later)."""
    started = time.monotonic()
    samples = [s for s in [_sample(pid, 0.0)] if s is not None]
    until = started + config.minutes * 60
    limit = config.minutes * 60 + _OVERRUN_S
    honest = asyncio.create_task(
        _run_child(
            "honest",
            {"url": f"ws://127.0.0.1:{port}/ws/engine", "count": config.honest, "started": started, "until": until},
            limit,
        )
    )
    hostile = asyncio.create_task(
        _run_child(
            "hostile",
            {"host": "127.0.0.1", "port": port, "count": config.hostile, "until": until, "kinds": config.kinds},
            limit,
        )
    )
    clients = {honest, hostile}
    try:
        while not all(task.done() for task in clients):
            await asyncio.wait(clients, timeout=config.sample_every)
            sample = _sample(pid, time.monotonic() - started)
            if sample is not None:
                samples.append(sample)
        sessions: list[SessionResult] = honest.result()
        hostiles: list[HostileStats] = hostile.result()
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    await asyncio.sleep(_SETTLE_S)
    sample = _sample(pid, time.monotonic() - started)
    if sample is not None:
        samples.append(sample)
    return sessions, hostiles, samples


@dataclass(frozen=True, slots=True)
class Warmup:
    """What the warm-up left: the cold server's sample, the warm-up's honest sessions and its samples."""

    cold: Sample | None
    sessions: list[SessionResult]
    samples: list[Sample]


async def soak(config: SoakConfig | None = None) -> tuple[list[Table], dict[str, Any]]:
    """Run the soak (see the module docstring) and return its tables and raw numbers (``summary``, ``warmup``,
    ``turns``, ``sessions``, ``hostile``, ``samples``, ``windows``, ``server_errors``). Raises ``RuntimeError``
    when the server does not start or a client process fails."""
    config = config or SoakConfig()
    with tempfile.TemporaryFile() as log:
        server, port = await _start_server(log)
        try:
            cold = _sample(server.pid, 0.0)
            warm_sessions: list[SessionResult] = []
            warm_samples: list[Sample] = []
            if config.warmup_minutes > 0:
                warm = replace(config, minutes=config.warmup_minutes)
                warm_sessions, _, warm_samples = await _run_clients(warm, port, server.pid)
            sessions, hostiles, samples = await _run_clients(config, port, server.pid)
            alive = server.returncode is None
        finally:
            await _stop_server(server)
        log.seek(0)
        errors = _server_errors(log.read().decode(errors="replace"))
    return _tables(config, sessions, hostiles, samples, errors, alive, Warmup(cold, warm_sessions, warm_samples))


# --- the report -----------------------------------------------------------------------------------------------


def _windows(samples: list[Sample], answered_at: list[float], count: int = 10) -> list[dict[str, float]]:
    """The run cut in ``count`` equal windows (the idle sample at the end is left out): each one's RSS floor
    and peak, most open files and threads, and the honest turns answered by its end."""
    run = [s for s in samples[:-1] if s.at > 0] or samples
    if not run:
        return []
    width = run[-1].at / count
    out = []
    for k in range(count):
        inside = [s for s in run if k * width < s.at <= (k + 1) * width + 1e-9]
        if inside:
            out.append(
                {
                    "end_min": (k + 1) * width / 60,
                    "rss_min_mb": min(s.rss_mb for s in inside),
                    "rss_max_mb": max(s.rss_mb for s in inside),
                    "fds": max(s.fds for s in inside),
                    "threads": max(s.threads for s in inside),
                    "answered": sum(a <= (k + 1) * width for a in answered_at),
                }
            )
    return out


def _floor_slope(windows: list[dict[str, float]]) -> float:
    """MB per minute of the windows' RSS floors over the second half of the run, by least squares (NaN with
    under 3 windows there, or for a run under 2 minutes): growth that is not a passing peak."""
    half = windows[len(windows) // 2 :]
    if len(half) < 3 or windows[-1]["end_min"] < 2:  # shorter runs: tenths of seconds say nothing
        return math.nan
    slope, _ = np.polyfit([w["end_min"] for w in half], [w["rss_min_mb"] for w in half], 1)
    return float(slope)


def _ms(values: list[float]) -> str:
    if not values:
        return "-"
    p50, p99 = percentiles(values, (50, 99))
    return f"{p50:.0f} / {p99:.0f}"


def summarize(sessions: list[SessionResult], samples: list[Sample]) -> dict[str, Any]:
    """The soak's headline numbers from its sessions and memory samples (the first and the last taken with
    the server idle)."""
    turns = [t for s in sessions for t in s.turns]
    outcomes: dict[str, int] = {}
    for t in turns:
        outcomes[t.outcome] = outcomes.get(t.outcome, 0) + 1
    ok = [t for t in turns if t.outcome == "ok"]
    rss = [s.rss_mb for s in samples]
    windows = _windows(samples, sorted(t.at for t in ok))
    return {
        "turns": len(turns),
        "answered": len(ok),
        "answered_typed": sum(t.kind == "typed" for t in ok),
        "answered_spoken": sum(t.kind == "spoken" for t in ok),
        "sessions_with_turns": sum(any(t.outcome == "ok" for t in s.turns) for s in sessions),
        "typed_ms": [t.latency_ms for t in ok if t.kind == "typed"],
        "spoken_ms": [t.latency_ms for t in ok if t.kind == "spoken"],
        "underruns": sum(t.underruns for t in turns),
        "discontinuities": sum(t.discontinuities for t in turns),
        "lost": sum(t.outcome in ("lost", "timeout", "cleared") or t.outcome.startswith("error") for t in turns),
        "no_speech": outcomes.get("no_speech", 0),
        "duplicated": outcomes.get("duplicated", 0) + sum(s.strays for s in sessions),
        "wrong": outcomes.get("wrong", 0),
        "cut": outcomes.get("cut", 0),
        "connection_failures": _merged([x.failures for x in sessions]),
        "outcomes": outcomes,
        "minutes": samples[-1].at / 60 if samples else 0.0,
        "rss_start_mb": rss[0] if rss else math.nan,
        "rss_end_mb": rss[-1] if rss else math.nan,
        "rss_max_mb": max(rss, default=math.nan),
        "rss_growth_mb": rss[-1] - rss[0] if rss else math.nan,
        "rss_floor_slope_mb_per_min": _floor_slope(windows),
        "cpu_percent": (samples[-1].cpu_s - samples[0].cpu_s) / samples[-1].at * 100
        if len(samples) > 1 and samples[-1].at > 0
        else math.nan,
        "windows": windows,
    }


_NOTE = (
    "Honest sessions alternate typed and spoken turns ({speech}, streamed as a live microphone; the server finds "
    "the end of each turn), play every reply in real time and ack it, like an engine. Latency: typed text / end "
    "of speech -> playback start, including engine-sim's 50 ms start buffer and, for speech, the 300 ms "
    "endpoint. Lost: a turn with no reply utterance (timeouts included); duplicated: a second reply utterance "
    "for a turn. RSS start and end: the server idle, after the warm-up (the same clients for {warmup:g} min, "
    "their turns checked the same way) and {settle:.0f} s after the run's last client left; cold: before the "
    "warm-up; floor slope: least squares over the RSS minima of the last five tenths of the run (peaks from large "
    "uploads pass). Server RSS, files, threads and CPU are those of the server process and the processes it "
    "started, together (PocketSphinx's decoders, and the bulk processes that animate uploads at a lower CPU "
    "priority). The server, the honest clients and the hostile clients each run in their own processes on the "
    "same machine."
)


def _merged(counts: list[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for count in counts:
        for key, n in count.items():
            merged[key] = merged.get(key, 0) + n
    return dict(sorted(merged.items(), key=lambda item: -item[1]))


def _main_table(
    config: SoakConfig, s: dict[str, Any], speech: str, errors: dict[str, int], alive: bool, warm: dict[str, Any]
) -> Table:
    yes = {True: "yes", False: "NO"}
    failures = s["connection_failures"]
    real_time = not (s["underruns"] or s["lost"] or s["cut"] or failures) and s["sessions_with_turns"] == config.honest
    table = Table(
        f"Soak: {config.honest} honest conversations with {config.hostile} hostile clients attached, "
        f"{s['minutes']:.1f} min after a {config.warmup_minutes:g}-min warm-up (one server: pocketsphinx + echo LLM + "
        "espeak + phonetic face)",
        ["measure", "result", "target", "met"],
        note=_NOTE.format(speech=speech, settle=_SETTLE_S, warmup=config.warmup_minutes),
    )
    table.add(
        "honest turns answered",
        f"{s['answered']} of {s['turns']} ({s['answered_typed']} typed, {s['answered_spoken']} spoken)",
        "every turn",
        yes[s["answered"] == s["turns"] - s["no_speech"]],
    )
    table.add(
        "sessions that completed turns",
        f"{s['sessions_with_turns']} of {config.honest}",
        f"{config.honest} of {config.honest}",
        yes[s["sessions_with_turns"] == config.honest],
    )
    table.add("typed text -> playback start p50 / p99 ms", _ms(s["typed_ms"]), "-", "")
    table.add("end of speech -> playback start p50 / p99 ms", _ms(s["spoken_ms"]), "-", "")
    for label, key in (
        ("late audio frames (underruns)", "underruns"),
        ("audio gaps or repeats", "discontinuities"),
        ("lost replies (connection up)", "lost"),
        ("turns cut by a dropped connection", "cut"),
        ("duplicated replies", "duplicated"),
        ("replies to the wrong turn", "wrong"),
    ):
        table.add(label, s[key], "0", yes[s[key] == 0])
    table.add(
        "honest connections refused or dropped",
        "; ".join(f"{n} {why}" for why, n in failures.items()) or "0",
        "0",
        yes[not failures],
    )
    if warm:
        bad = warm["lost"] + warm["duplicated"] + warm["wrong"] + warm["cut"]
        table.add(
            "warm-up: turns answered; lost, duplicated, wrong or cut",
            f"{warm['answered']} of {warm['turns']}; {bad}",
            "every turn; 0",
            yes[bad == 0 and warm["answered"] == warm["turns"] - warm["no_speech"]],
        )
    table.add("spoken turns the STT heard nothing in", s["no_speech"], "-", "")
    table.add("honest sessions stay real time", yes[real_time].lower(), "yes", yes[real_time])
    table.add("server RSS cold / after the warm-up MB", f"{s['rss_cold_mb']:.0f} / {s['rss_start_mb']:.0f}", "-", "")
    table.add(
        "server RSS start / end / max MB",
        f"{s['rss_start_mb']:.0f} / {s['rss_end_mb']:.0f} / {s['rss_max_mb']:.0f}",
        "-",
        "",
    )
    table.add(
        "server RSS growth MB (end - start)", s["rss_growth_mb"], "< 50 over 10 min", yes[s["rss_growth_mb"] < 50]
    )
    table.add("server RSS floor slope MB/min (second half)", s["rss_floor_slope_mb_per_min"], "-", "")
    table.add("server CPU, % of one core", s["cpu_percent"], "-", "")
    table.add(
        "server errors logged / still running",
        f"{sum(errors.values())} / {yes[alive].lower()}",
        "0 / yes",
        yes[not errors and alive],
    )
    return table


def _hostile_tables(hostiles: list[HostileStats]) -> tuple[Table, Table]:
    kinds = Table(
        "Soak: the hostile clients",
        ["kind", "clients", "connections", "refused", "frames or requests sent", "MB sent", "slowest answer s"],
        note="non_reader: acks off, asks for a long reply every 2 s, never reads (4 KiB receive buffer). flooder: "
        "WebSocket pings, ping messages and 20-sample microphone frames, 2,000 a second. bomber: audio files "
        "posted to /audio_to_blendshapes one after the other. malformed: one malformed frame or message per "
        "connection.",
    )
    answers = Table(
        "Soak: how the server answered the hostile clients, and the errors it logged",
        ["kind", "sent: answer", "count"],
    )
    for kind in KINDS:
        group = [h for h in hostiles if h.kind == kind]
        if not group:
            continue
        kinds.add(
            kind,
            len(group),
            sum(h.connections for h in group),
            sum(h.refused for h in group),
            sum(h.sent for h in group),
            sum(h.sent_bytes for h in group) / 2**20,
            max(h.slowest_answer_s for h in group),
        )
        for answer, count in sorted(_merged([dict(h.answers) for h in group]).items()):
            answers.add(kind, answer, count)
    return kinds, answers


def _tables(
    config: SoakConfig,
    sessions: list[SessionResult],
    hostiles: list[HostileStats],
    samples: list[Sample],
    errors: dict[str, int],
    alive: bool,
    warmup: Warmup | None = None,
) -> tuple[list[Table], dict[str, Any]]:
    s = summarize(sessions, samples)
    cold = warmup.cold if warmup is not None else None
    s["rss_cold_mb"] = cold.rss_mb if cold is not None else s["rss_start_mb"]
    warm = summarize(warmup.sessions, warmup.samples) if warmup is not None and warmup.sessions else {}
    main = _main_table(config, s, sessions[0].speech if sessions else "", errors, alive, warm)
    kinds, answers = _hostile_tables(hostiles)
    for line, count in errors.items():
        answers.add("(server log)", line, count)
    memory = Table(
        "Soak: the server process over time (tenths of the run)",
        ["until minute", "RSS min MB", "RSS max MB", "open files", "threads", "honest turns answered"],
    )
    for w in s["windows"]:
        memory.add(f"{w['end_min']:.1f}", w["rss_min_mb"], w["rss_max_mb"], w["fds"], w["threads"], w["answered"])
    if samples:
        last = samples[-1]
        memory.add(f"{last.at / 60:.1f} (idle)", last.rss_mb, last.rss_mb, last.fds, last.threads, s["answered"])
    raw: dict[str, Any] = {
        "config": asdict(config),
        "summary": s,
        "warmup": {
            **{k: v for k, v in warm.items() if k not in ("typed_ms", "spoken_ms", "windows")},
            "turns_detail": [asdict(t) for sess in warmup.sessions for t in sess.turns],
            "samples": [asdict(x) for x in warmup.samples],
        }
        if warmup is not None and warm
        else {},
        "turns": [asdict(t) for sess in sessions for t in sess.turns],
        "sessions": [
            {"session": x.session, "kind": x.kind, "connects": x.connects, "strays": x.strays, "failures": x.failures}
            for x in sessions
        ],
        "hostile": [{**asdict(h), "answers": dict(h.answers)} for h in hostiles],
        "samples": [asdict(x) for x in samples],
        "server_errors": errors,
        "server_alive": alive,
    }
    return [main, kinds, answers, memory], raw


if __name__ == "__main__":
    from facecast.bench import soak_bench  # the results must pickle as this module's classes, not __main__'s

    soak_bench._child()
