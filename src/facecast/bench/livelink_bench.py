"""Live Link timing: frame-interval jitter on a real UDP socket, and audio/face sync through engine-sim."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import numpy as np

from ..config import Settings
from ..engine.livelink import LiveLinkPacer, LiveLinkSender, LiveLinkSubject, LiveLinkTarget, MonotonicClock
from ..engine.sim import EngineSim, SimConfig
from ..face.layers import AnimationLayer
from ..pipeline import Services
from ..protocol.livelink import decode_frame
from ..server import BackgroundServer
from .report import Table, percentiles

__all__ = ["jitter", "sync_error"]

SENTENCES = [
    "Hello there, it is good to see you again.",
    "Maybe we can borrow my brother's boat tomorrow morning.",
    "The weather has been lovely all week.",
    "Bring a warm coat, because the wind is cold on the water.",
]


class _Receiver(threading.Thread):
    """Blocking UDP receiver on its own thread, so receiving does not disturb the pacer's loop."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.arrivals: list[tuple[float, bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(2048)
            except TimeoutError:
                continue
            self.arrivals.append((time.monotonic(), data))
        self.sock.close()


async def _jitter_once(subjects: int, seconds: float) -> dict[str, list[float]]:
    receiver = _Receiver()
    receiver.start()
    lateness: list[float] = []
    try:
        async with LiveLinkSender((LiveLinkTarget("127.0.0.1", receiver.port),)) as sender:
            pacer = LiveLinkPacer(sender, clock=MonotonicClock(),
                                  on_tick=lambda r: lateness.append(r.woke - r.due))
            for k in range(subjects):
                pacer.add_subject(LiveLinkSubject(f"Bench{k}"), AnimationLayer(seed=k))
            await pacer.run(until=pacer.clock.now() + seconds)
        await asyncio.sleep(0.1)
    finally:
        receiver.stop.set()
        receiver.join()
    per_subject: dict[str, list[float]] = defaultdict(list)
    for arrival, data in receiver.arrivals:
        per_subject[decode_frame(data).subject].append(arrival)
    intervals: list[float] = []
    for times in per_subject.values():
        intervals += list(np.abs(np.diff(times) - 1 / 60) * 1000)
    return {"interval_jitter_ms": intervals, "wake_lateness_ms": [x * 1000 for x in lateness],
            "packets": [float(len(receiver.arrivals))]}


async def jitter(seconds: float, counts: tuple[int, ...] = (1, 10, 100)) -> tuple[Table, dict[str, object]]:
    table = Table(f"Live Link frame-interval jitter ({seconds:g} s per row, real UDP on loopback)",
                  ["subjects", "packets", "|interval - 16.67 ms| p50", "p99", "pacer wake-up late p50 ms", "p99"],
                  note="Jitter is measured at the receiver, per subject, from packet arrival times.")
    raw: dict[str, object] = {}
    for count in counts:
        data = await _jitter_once(count, seconds)
        table.add(count, int(data["packets"][0]), *percentiles(data["interval_jitter_ms"], (50, 99)),
                  *percentiles(data["wake_lateness_ms"], (50, 99)))
        raw[f"subjects_{count}"] = {k: v for k, v in data.items()}
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
        async with EngineSim(config) as sim:
            for k in range(turns):
                report = await sim.say_text(SENTENCES[k % len(SENTENCES)])
                for utt in report.utterances:
                    errors += [abs(e) * 1000 for e in utt.livelink_error]
                    face_before_ack += utt.face_before_ack
                    underruns += utt.underruns
                latency.append(report.response_latency * 1000)
    return {"sync_error_ms": errors, "text_latency_ms": latency, "face_before_ack": face_before_ack,
            "underruns": underruns}


async def sync_error(services: Services, turns: int, counts: tuple[int, ...] = (1, 10, 100)
                     ) -> tuple[Table, dict[str, object]]:
    """Audio/face sync measured by engine-sim against the real server, with 1, 10 and 100 Live Link subjects."""
    table = Table(f"Audio/face sync measured by engine-sim ({turns} typed turns per row, echo LLM, Live Link UDP)",
                  ["Live Link subjects", "sync error p50 ms", "p99 ms", "frames", "text -> playback p50 ms",
                   "face before ack", "late audio"],
                  note="Sync error: |Live Link packet arrival - the moment its audio sample plays| for the talking "
                       "subject, while the pacer also streams the other subjects' idle faces. Text -> playback "
                       "includes engine-sim's 50 ms playback start buffer.")
    raw: dict[str, object] = {}
    for count in counts:
        data = await _sync_once(services, turns, count)
        table.add(count, *percentiles(data["sync_error_ms"], (50, 99)), len(data["sync_error_ms"]),
                  percentiles(data["text_latency_ms"], (50,))[0], data["face_before_ack"], data["underruns"])
        raw[f"subjects_{count}"] = data
    return table, raw


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
