"""Hostile clients for the soak benchmark (:mod:`.soak_bench`): what a server on a network meets besides engines.

Each kind runs until a deadline against a server at ``host:port``, reconnecting whenever the server drops it,
and counts what it did and how the server answered (:class:`HostileStats`):

* ``non_reader``: a session with ``acks: false`` that asks for a long reply every two seconds and never reads
  its socket (a 4 KiB receive buffer), so the server's sends back up;
* ``flooder``: thousands of small frames a second (WebSocket pings, ``ping`` messages, 20-sample microphone
  frames), reading and dropping what comes back;
* ``bomber``: audio files built to cost the most per byte, posted to ``/audio_to_blendshapes`` one after the
  other: 29 minutes of digital silence as FLAC (263 KB that decode to 319 MB, under the server's limits),
  headers that lie about their length, rate or channels, a truncated file;
* ``malformed``: one malformed thing per connection (frames that break RFC 6455, a 2^62-byte length,
  invalid UTF-8, JSON nested 60,000 deep, unknown messages, bad binary headers...), then reads the answer.

The WebSocket side is written by hand (:class:`RawSocket`, :func:`frame`) because a real client library refuses
to send broken frames, and must not read for the non-reader.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..protocol import engine as proto

__all__ = ["KINDS", "HostileStats", "RawSocket", "frame", "parse_frames", "run_hostile", "bomb_payloads"]

KINDS = ("non_reader", "flooder", "bomber", "malformed")
"""The hostile client kinds, in the order clients are assigned to them (client ``k`` is ``KINDS[k % 4]``)."""

TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
_LONG_LINE = " ".join(f"Tell me story number {n} about the harbour, the boats and the lighthouse." for n in range(12))
_FLOOD_RATE = 2000
"""Frames a second each flooder sends."""


@dataclass(slots=True)
class HostileStats:
    """What one hostile client did (``sent``: frames or requests) and how the server answered (``answers``:
    a count per outcome, e.g. ``"close 1009"``, ``"error bad_json"``, ``"http 413"``, ``"dropped"``)."""

    kind: str
    connections: int = 0
    sent: int = 0
    sent_bytes: int = 0
    refused: int = 0
    """Connections the server refused or did not accept in time."""
    answers: Counter[str] = field(default_factory=Counter)
    slowest_answer_s: float = 0.0


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """One WebSocket frame as a client sends it (masked unless ``masked`` is false), well-formed or not."""
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    mask_bit = 0x80 if masked else 0
    size = len(payload)
    if size < 126:
        head = bytes([first, mask_bit | size])
    elif size < 1 << 16:
        head = bytes([first, mask_bit | 126]) + struct.pack(">H", size)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack(">Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(key, np.uint8), size)
    return head + key + data.tobytes()


def parse_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Take the complete (unmasked, server-sent) frames off the front of ``buffer``: ``(opcode, payload)``."""
    out: list[tuple[int, bytes]] = []
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, start = struct.unpack_from(">H", buffer, 2)[0], 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, start = struct.unpack_from(">Q", buffer, 2)[0], 10
        if len(buffer) < start + size:
            break
        out.append((buffer[0] & 0xF, bytes(buffer[start : start + size])))
        del buffer[: start + size]
    return out


class RawSocket:
    """A WebSocket client connection made by hand: it sends whatever bytes it is given and reads only when asked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/ws/engine", rcvbuf: int = 0) -> RawSocket:
        """Connect and upgrade; raises ``ConnectionError`` (or ``OSError``/``TimeoutError``) when refused."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), 5)
            reader, writer = await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
            writer.transport.abort()
            raise ConnectionError(f"no WebSocket upgrade: {exc!r}") from None
        if not head.startswith(b"HTTP/1.1 101"):
            writer.transport.abort()
            status = head.split(b"\r\n", 1)[0]
            raise ConnectionError(f"upgrade refused: {status!r}")
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self, timeout: float) -> bool:
        """Whether what was sent left the buffer within ``timeout``; raises ``ConnectionError`` when closed."""
        try:
            await asyncio.wait_for(self.writer.drain(), timeout)
        except TimeoutError:
            return False
        return True

    async def receive(self, timeout: float) -> list[tuple[int, bytes]]:
        """The frames that arrive within ``timeout`` (at least one if any arrives); raises ``EOFError`` at the end."""
        give_up = time.monotonic() + timeout
        while True:
            frames = parse_frames(self.buffer)
            left = give_up - time.monotonic()
            if frames or left <= 0:
                return frames
            try:
                data = await asyncio.wait_for(self.reader.read(65536), left)
            except TimeoutError:
                return []
            if not data:
                raise EOFError("the server closed the connection")
            self.buffer += data

    def abort(self) -> None:
        self.writer.transport.abort()


def _text(message: object) -> bytes:
    return frame(TEXT, json.dumps(message).encode())


def _hello(acks: bool = True, face: bool = True) -> bytes:
    return _text({"type": "hello", "version": 1, "acks": acks, "face": face})


def _outcome(frames: list[tuple[int, bytes]]) -> str:
    """How the server answered: its close code, or the first error code, or what else it sent."""
    for opcode, payload in frames:
        if opcode == CLOSE:
            return f"close {struct.unpack('>H', payload[:2])[0]}" if len(payload) >= 2 else "close"
    for opcode, payload in frames:
        if opcode == TEXT:
            try:
                message = json.loads(payload)
            except ValueError:
                return "text garbage"
            if message.get("type") == "error":
                return f"error {message.get('code')}"
    return "no answer" if not frames else "other " + ",".join(sorted({str(op) for op, _ in frames}))


async def _connect(host: str, port: int, stats: HostileStats, rcvbuf: int = 0) -> RawSocket | None:
    try:
        sock = await RawSocket.open(host, port, rcvbuf=rcvbuf)
    except (OSError, TimeoutError) as exc:  # ConnectionError is an OSError
        stats.refused += 1
        stats.answers[f"refused: {exc}"[:90]] += 1
        await asyncio.sleep(0.5)
        return None
    stats.connections += 1
    return sock


async def non_reader(host: str, port: int, until: float, stats: HostileStats) -> None:
    while time.monotonic() < until:
        sock = await _connect(host, port, stats, rcvbuf=4096)
        if sock is None:
            continue
        try:
            sock.send(_hello(acks=False))
            while time.monotonic() < until:
                data = _text({"type": "text", "text": _LONG_LINE})
                sock.send(data)
                stats.sent += 1
                stats.sent_bytes += len(data)
                if not await sock.drain(2.0):
                    stats.answers["server stopped reading"] += 1
                await asyncio.sleep(min(2.0, max(0.0, until - time.monotonic())))
        except (OSError, EOFError):
            stats.answers["dropped by the server"] += 1
            await asyncio.sleep(0.5)
        finally:
            sock.abort()


async def flooder(host: str, port: int, until: float, stats: HostileStats) -> None:
    batch, period = _FLOOD_RATE // 40, 1 / 40
    silence = np.zeros(20, np.int16).tobytes()
    while time.monotonic() < until:
        sock = await _connect(host, port, stats)
        if sock is None:
            continue
        sock.send(_hello(face=False))

        async def drop_answers(sock: RawSocket = sock) -> None:
            with_error = (EOFError, OSError)
            try:
                while True:
                    for opcode, payload in await sock.receive(1.0):
                        if opcode == PONG:
                            stats.answers["pong (WebSocket)"] += 1
                        elif opcode == CLOSE:
                            stats.answers[_outcome([(opcode, payload)])] += 1
                        elif opcode == TEXT and b'"pong"' in payload:
                            stats.answers["pong (message)"] += 1
                        elif opcode == TEXT and b'"error"' in payload:
                            stats.answers[_outcome([(opcode, payload)])] += 1
            except with_error:
                return

        reading = asyncio.create_task(drop_answers())
        offset, n = 0, 0
        try:
            next_batch = time.monotonic()
            while time.monotonic() < until and not reading.done():
                frames = []
                for _ in range(batch):
                    n += 1
                    if n % 3 == 0:
                        frames.append(frame(PING, n.to_bytes(4, "big")))
                    elif n % 3 == 1:
                        frames.append(_text({"type": "ping", "id": n}))
                    else:
                        frames.append(frame(BINARY, proto.encode_mic(offset, silence)))
                        offset += 20
                data = b"".join(frames)
                sock.send(data)
                stats.sent += len(frames)
                stats.sent_bytes += len(data)
                if not await sock.drain(2.0):
                    stats.answers["server stopped reading"] += 1
                next_batch += period
                await asyncio.sleep(max(0.0, next_batch - time.monotonic()))
        except OSError:
            stats.answers["dropped by the server"] += 1
        finally:
            sock.abort()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)
        if reading.done() and time.monotonic() < until:
            await asyncio.sleep(0.5)


def _flac(seconds: int, rate: int = 48000) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", rate, 1, format="FLAC", subtype="PCM_16") as out:
        block = np.zeros(rate, np.float32)
        for _ in range(seconds):
            out.write(block)
    return buf.getvalue()


def _wav_header(rate: int, channels: int, data_bytes: int) -> bytes:
    block = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", min(0xFFFFFFFF, 36 + data_bytes))
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", min(0xFFFFFFFF, data_bytes))
    )


def bomb_payloads() -> dict[str, bytes]:
    """The bomber's audio files, by name: each costs the server far more than its size, or lies about it."""
    silence = _flac(29 * 60)
    return {
        "29 min FLAC silence (263 KB -> 319 MB)": silence,
        "FLAC header cut off mid-stream": silence[: len(silence) // 50],
        "WAV claiming 4 GB of data": _wav_header(48000, 1, 0xFFFFFFF0) + bytes(4096),
        "WAV claiming 64 ch at 384 kHz": _wav_header(384000, 64, 1 << 30) + bytes(4096),
        "WAV claiming 0 Hz": _wav_header(0, 1, 4096) + bytes(4096),
    }


async def _post(host: str, port: int, path: str, body: bytes, timeout: float = 120.0) -> int:
    """POST ``body`` as ``application/octet-stream``; the HTTP status (the answer is read and dropped)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), timeout)
        while await asyncio.wait_for(reader.read(1 << 20), timeout):
            pass
    finally:
        writer.transport.abort()
    parts = status.split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


async def bomber(host: str, port: int, until: float, stats: HostileStats) -> None:
    payloads = await asyncio.to_thread(bomb_payloads)
    while time.monotonic() < until:
        for name, body in payloads.items():
            if time.monotonic() >= until:
                return
            started = time.monotonic()
            stats.sent += 1
            stats.sent_bytes += len(body)
            try:
                status = await _post(host, port, "/audio_to_blendshapes", body)
            except (OSError, TimeoutError, EOFError) as exc:
                stats.answers[f"{type(exc).__name__}: {name}"] += 1
                await asyncio.sleep(0.5)
                continue
            stats.connections += 1
            stats.slowest_answer_s = max(stats.slowest_answer_s, time.monotonic() - started)
            stats.answers[f"http {status}: {name}"] += 1


def _malformed() -> list[tuple[str, bytes, bool]]:
    """(name, bytes, send a valid hello first) for each malformed thing the malformed client sends."""
    hello = json.dumps({"type": "hello", "version": 1}).encode()
    mic = proto.encode_mic(0, bytes(640))
    return [
        ("unmasked frame", frame(TEXT, hello, masked=False), False),
        ("reserved opcode 3", frame(0x3, b"x"), False),
        ("RSV bits set", frame(TEXT, hello, rsv=0b100), False),
        ("fragmented ping", frame(PING, b"x", fin=False), False),
        ("200-byte ping", frame(PING, bytes(200)), False),
        ("continuation first", frame(CONTINUATION, b"abc"), False),
        ("close code 999", frame(CLOSE, struct.pack(">H", 999)), False),
        ("length 2^62", bytes([0x82, 0xFF]) + struct.pack(">Q", 1 << 62) + os.urandom(4), False),
        ("invalid UTF-8 text", frame(TEXT, b"\xff\xfe\xfd"), True),
        ("JSON nested 60000 deep", frame(TEXT, b"[" * 60000), True),
        ("not JSON", frame(TEXT, b"{not json"), True),
        ("unknown type", _text({"type": "explode"}), True),
        ("hello version 99", _text({"type": "hello", "version": 99}), False),
        ("hello rate 7 Hz, 99 ch", _text({"type": "hello", "audio": {"rate": 7, "channels": 99}}), False),
        ("binary header only", frame(BINARY, b"\x02\x00\x00"), True),
        ("mic frame before hello", frame(BINARY, mic), False),
        ("mic frame, odd length", frame(BINARY, mic + b"\x01"), True),
        ("60 KB typed text", _text({"type": "text", "text": "a" * 60000}), True),
        ("half a frame, then nothing", _text({"type": "text", "text": "hello"})[:5], True),
    ]


async def malformed(host: str, port: int, until: float, stats: HostileStats) -> None:
    cases = _malformed()
    while time.monotonic() < until:
        for name, data, hello_first in cases:
            if time.monotonic() >= until:
                return
            sock = await _connect(host, port, stats)
            if sock is None:
                continue
            started = time.monotonic()
            try:
                if hello_first:
                    sock.send(_hello())
                    await sock.receive(2.0)  # the welcome
                sock.send(data)
                stats.sent += 1
                stats.sent_bytes += len(data)
                await sock.drain(2.0)
                stats.answers[f"{name}: {_outcome(await sock.receive(1.0))}"] += 1
            except (OSError, EOFError):
                stats.answers[f"{name}: dropped"] += 1
            finally:
                sock.abort()
            stats.slowest_answer_s = max(stats.slowest_answer_s, time.monotonic() - started)


_RUN: dict[str, Callable[[str, int, float, HostileStats], Awaitable[None]]] = {
    "non_reader": non_reader,
    "flooder": flooder,
    "bomber": bomber,
    "malformed": malformed,
}


async def run_hostile(
    host: str, port: int, count: int, until: float, kinds: Sequence[str] = KINDS
) -> list[HostileStats]:
    """Run ``count`` hostile clients until the monotonic time ``until``; client ``k`` is of kind
    ``kinds[k % len(kinds)]`` (see :data:`KINDS`)."""
    stats = [HostileStats(kinds[k % len(kinds)]) for k in range(count)]
    await asyncio.gather(*(_RUN[s.kind](host, port, until, s) for s in stats))
    return stats
