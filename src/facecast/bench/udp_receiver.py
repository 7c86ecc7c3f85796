"""A UDP receiver for ``facecast bench``, run as its own process: ``python -m facecast.bench.udp_receiver``.

The Live Link jitter bench receives in a separate process, as Unreal would: a receiving thread in the
pacer's own process would fight it for the GIL and move the arrival times it measures. Standard library only,
so it starts fast.

Protocol on stdin/stdout: the receiver binds ``127.0.0.1`` on a free port and prints the port number on a
line; it then timestamps every datagram until one that is exactly ``b"stop"``, and prints one JSON object:
``{"subjects": {NAME: [[monotonic...], [kernel...]]}, "other": N}``. ``kernel`` is the kernel's receive
timestamp (``SO_TIMESTAMPNS``, wall-clock seconds: only differences are meaningful), the arrival time the
bench uses, or NaN where the platform has none; ``monotonic`` is ``time.monotonic()`` when the receiver read
the datagram, in batches every few milliseconds (it drains the socket, then naps, so that it does not take
a core from the pacer), a fallback only. Datagrams that do not parse as Live Link Face packets are counted in
``other``.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import sys
import time

__all__ = ["main", "receive", "subject_of"]

# Python adds the constant in 3.13; 35 on Linux (asm-generic; the few architectures that differ are not ours).
_TIMESTAMPNS: int | None = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else None)
_TIMESPEC = struct.Struct("@qq")


def subject_of(packet: bytes) -> str | None:
    """The subject name of a Live Link Face packet (version byte, then two length-prefixed names), or None."""
    if len(packet) < 9 or packet[0] != 6:
        return None
    (device,) = struct.unpack_from(">i", packet, 1)
    offset = 5 + device
    if device < 0 or offset + 4 > len(packet):
        return None
    (length,) = struct.unpack_from(">i", packet, offset)
    name = packet[offset + 4 : offset + 4 + length]
    if length < 0 or len(name) != length:
        return None
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, value in ancillary:
        if level == socket.SOL_SOCKET and kind == _TIMESTAMPNS and len(value) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            return float(seconds + nanoseconds * 1e-9)
    return math.nan


def receive(size: int) -> list[tuple[bytes, float, float]]:
    """Bind a UDP socket on 127.0.0.1, print its port on a line, and take datagrams (up to ``size`` bytes)
    until one that is exactly ``b"stop"`` (or none for 600 s): ``(datagram, monotonic, kernel stamp)`` each.

    The kernel's ``SO_TIMESTAMPNS`` stamp where the platform has it, else NaN; ``time.monotonic()`` when read.
    Shared by this receiver and :mod:`facecast.bench.vmc_receiver`.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    if _TIMESTAMPNS is not None:
        sock.setsockopt(socket.SOL_SOCKET, _TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(600.0)  # a parent that died without saying stop
    print(sock.getsockname()[1], flush=True)
    received: list[tuple[bytes, float, float]] = []
    space = socket.CMSG_SPACE(_TIMESPEC.size)
    stopped = False
    while not stopped:
        try:
            first = sock.recvmsg(size, space)
        except TimeoutError:
            break
        # Drain what is queued, then nap: waking once per datagram (6,000 a second for 100 subjects) would
        # take a core from the pacer on a small machine. The kernel's timestamps keep each arrival exact.
        batch = [first]
        sock.setblocking(False)
        while True:
            try:
                batch.append(sock.recvmsg(size, space))
            except BlockingIOError:
                break
        sock.settimeout(600.0)
        now = time.monotonic()
        for data, ancillary, _, _ in batch:
            if data == b"stop":
                stopped = True
                break
            received.append((data, now, _stamp(ancillary)))
        time.sleep(0.004)
    sock.close()
    return received


def main() -> None:
    received = receive(4096)
    subjects: dict[str, list[list[float]]] = {}
    other = 0
    for data, mono, stamp in received:
        name = subject_of(data)
        if name is None:
            other += 1
            continue
        times = subjects.setdefault(name, [[], []])
        times[0].append(mono)
        times[1].append(stamp)
    json.dump({"subjects": subjects, "other": other}, sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
