"""Live Link timing: frame-interval jitter on a real UDP socket, and audio/face sync through engine-sim."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import Settings
from ..engine.livelink import (
    LiveLinkPacer,
    LiveLinkSender,
    LiveLinkSubject,
    LiveLinkTarget,
    MonotonicClock,
    TickReport,
)
from ..engine.sim import SimConfig
from ..face.layers import AnimationLayer
from ..server import BackgroundServer
from ..services import Services
from .engines import Script, Turn, run_engines
from .report import Table, percentiles

__all__ = ["jitter", "sync_error"]

SENTENCES = [
    "Hello there, it is good to see you again.",
    "Maybe we can borrow my brother's boat tomorrow morning.",
    "The weather has been lovely all week.",
    "Bring a warm coat, because the wind is cold on the water.",
]


class _Receiver:
    """The UDP receiver as a separate process (:mod:`facecast.bench.udp_receiver`), as a real engine is: a
    thread in the pacer's process would contend with it for the GIL and distort the arrival times."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self._process = process
        self.port = port

    @classmethod
    async def start(cls, module: str = "facecast.bench.udp_receiver") -> _Receiver:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30.0)
        if not line.strip().isdigit():
            process.kill()
            await process.wait()
            raise RuntimeError(f"the UDP receiver did not start (it said {line!r})")
        return cls(process, int(line))

    async def stop(self) -> dict[str, list[list[float]]]:
        """Stop receiving; the arrival times per subject: [time.monotonic() ...], [kernel timestamps ...]."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"stop", ("127.0.0.1", self.port))
        output, _ = await asyncio.wait_for(self._process.communicate(), 60.0)
        subjects: dict[str, list[list[float]]] = json.loads(output)["subjects"]
        return subjects


def _interval_jitter_ms(times: list[float]) -> list[float]:
    return list(np.abs(np.diff(np.asarray(times)) - 1 / 60) * 1000)


async def _jitter_once(subjects: int, seconds: float) -> dict[str, list[float]]:
    receiver = await _Receiver.start()
    ticks: list[TickReport] = []
    try:
        async with LiveLinkSender((LiveLinkTarget("127.0.0.1", receiver.port),)) as sender:
            pacer = LiveLinkPacer(sender, clock=MonotonicClock(), on_tick=ticks.append)
            for k in range(subjects):
                pacer.add_subject(LiveLinkSubject(f"Bench{k}"), AnimationLayer(seed=k))
            await pacer.run(until=pacer.clock.now() + seconds)
        await asyncio.sleep(0.1)
    finally:
        arrivals = await receiver.stop()
    intervals: list[float] = []
    kernel_intervals: list[float] = []
    for received, stamped in arrivals.values():
        intervals += _interval_jitter_ms(received)
        kernel_intervals += _interval_jitter_ms(stamped)
    if any(np.isnan(kernel_intervals)):  # no kernel timestamps on this platform: the receiver's own clock
        kernel_intervals = intervals
    return {
        "interval_jitter_ms": kernel_intervals,
        "read_interval_jitter_ms": intervals,
        "wake_lateness_ms": [(t.woke - t.due) * 1000 for t in ticks],
        "send_ms": [(t.done - t.woke) * 1000 for t in ticks],
        "computed_at_due": [float(sum(t.computed for t in ticks))],
        "load_average": [os.getloadavg()[0]],
        "packets": [float(sum(len(received) for received, _ in arrivals.values()))],
    }


async def _vmc_jitter_once(seconds: float) -> dict[str, list[float]]:
    """The VMC/OSC stream of one avatar on the same pacer (one bundle per frame), received by its own process
    (:mod:`facecast.bench.vmc_receiver`), which counts only whole frames (52 values, then one Apply)."""
    from ..engine.pacer import FramePacer
    from ..engine.vmc import VmcEncoder

    receiver = await _Receiver.start("facecast.bench.vmc_receiver")
    ticks: list[TickReport] = []
    try:
        async with LiveLinkSender((LiveLinkTarget("127.0.0.1", receiver.port),)) as sender:
            pacer = FramePacer(sender, clock=MonotonicClock(), on_tick=ticks.append)
            pacer.add("vmc", VmcEncoder(), AnimationLayer(seed=0))
            await pacer.run(until=pacer.clock.now() + seconds)
        await asyncio.sleep(0.1)
    finally:
        arrivals = await receiver.stop()
    received, stamped = arrivals["VMC"]
    kernel = _interval_jitter_ms(stamped)
    return {
        "interval_jitter_ms": _interval_jitter_ms(received) if any(np.isnan(kernel)) else kernel,
        "wake_lateness_ms": [(t.woke - t.due) * 1000 for t in ticks],
        "send_ms": [(t.done - t.woke) * 1000 for t in ticks],
        "load_average": [os.getloadavg()[0]],
        "packets": [float(len(received))],
        "sent": [float(len(ticks))],
    }


async def jitter(seconds: float, counts: tuple[int, ...] = (1, 10, 100)) -> tuple[Table, dict[str, object]]:
    table = Table(
        f"Live Link frame-interval jitter ({seconds:g} s per row, real UDP on loopback)",
        [
            "subjects",
            "packets",
            "|interval - 16.67 ms| p50",
            "p99",
            "pacer wake-up late p50 ms",
            "p99",
            "sending p99 ms",
            "load avg",
        ],
        note="Jitter is measured per subject from the packets' arrival times at the receiving socket "
        "(the kernel's SO_TIMESTAMPNS stamps; the receiver is a separate process that drains the "
        "socket every few ms, as an engine's network thread does). Sending: from the pacer's "
        "wake-up to its last packet (packets are computed ahead, so a wake-up only sends them). "
        "Load avg: the machine's "
        "1-minute load average after the row; near the core count, other processes delay the "
        "pacer's wake-ups and these numbers measure the machine, not the pacer. The row '1 VMC' is one "
        "avatar's VMC/OSC stream (``--vmc``: one bundle of 58 OSC messages per frame) on the same pacer, "
        "received by its own process; it counts whole frames only.",
    )
    raw: dict[str, object] = {}
    for count in counts:
        data = await _jitter_once(count, seconds)
        table.add(
            count,
            int(data["packets"][0]),
            *percentiles(data["interval_jitter_ms"], (50, 99)),
            *percentiles(data["wake_lateness_ms"], (50, 99)),
            *percentiles(data["send_ms"], (99,)),
            data["load_average"][0],
        )
        raw[f"subjects_{count}"] = {k: v for k, v in data.items()}
    vmc = await _vmc_jitter_once(seconds)
    table.add(
        "1 VMC",
        int(vmc["packets"][0]),
        *percentiles(vmc["interval_jitter_ms"], (50, 99)),
        *percentiles(vmc["wake_lateness_ms"], (50, 99)),
        *percentiles(vmc["send_ms"], (99,)),
        vmc["load_average"][0],
    )
    raw["vmc"] = vmc
    return table, raw


async def _sync_once(services: Services, turns: int, subjects: int) -> dict[str, Any]:
    """One engine-sim conversation whose Live Link subject shares the pacer with ``subjects - 1`` others."""
    receiver_port = _free_udp_port()
    settings = replace(Settings(), livelink=(f"127.0.0.1:{receiver_port}",))
    errors: list[float] = []
    latency: list[float] = []
    face_before_ack = underruns = 0
    async with BackgroundServer(settings, services) as server:
        output = server.state.livelink
        assert output is not None
        for k in range(subjects - 1):  # the other characters, streaming their idle faces
            output.subject(f"Other{k}", seed=k)
        config = SimConfig(url=server.ws_url, livelink_port=receiver_port)
        script = tuple(Turn(SENTENCES[k % len(SENTENCES)]) for k in range(turns))
        [reports] = await run_engines([Script(config, script)])
    for report in reports:
        for utt in report.utterances:
            errors += [abs(e) * 1000 for e in utt.livelink_error]
            face_before_ack += utt.face_before_ack
            underruns += utt.underruns
        latency.append(report.response_latency * 1000)
    return {
        "sync_error_ms": errors,
        "text_latency_ms": latency,
        "face_before_ack": face_before_ack,
        "underruns": underruns,
    }


async def sync_error(
    services: Services, turns: int, counts: tuple[int, ...] = (1, 10, 100)
) -> tuple[Table, dict[str, object]]:
    """Audio/face sync measured by engine-sim against the real server, with 1, 10 and 100 Live Link subjects."""
    table = Table(
        f"Audio/face sync measured by engine-sim ({turns} typed turns per row, echo LLM, Live Link UDP)",
        [
            "Live Link subjects",
            "sync error p50 ms",
            "p99 ms",
            "frames",
            "text -> playback p50 ms",
            "face before ack",
            "late audio",
        ],
        note="Sync error: |Live Link packet arrival - the moment its audio sample plays| for the talking "
        "subject, while the pacer also streams the other subjects' idle faces; engine-sim runs in its "
        "own process, like an engine. Text -> playback includes engine-sim's 50 ms playback start "
        "buffer.",
    )
    raw: dict[str, object] = {}
    for count in counts:
        data = await _sync_once(services, turns, count)
        table.add(
            count,
            *percentiles(data["sync_error_ms"], (50, 99)),
            len(data["sync_error_ms"]),
            percentiles(data["text_latency_ms"], (50,))[0],
            data["face_before_ack"],
            data["underruns"],
        )
        raw[f"subjects_{count}"] = data
    return table, raw


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
