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

__all__ = ["main", "subject_of"]

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


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    if _TIMESTAMPNS is not None:
        sock.setsockopt(socket.SOL_SOCKET, _TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(600.0)  # a parent that died without saying stop
    print(sock.getsockname()[1], flush=True)
    packets: list[bytes] = []
    monotonic: list[float] = []
    kernel: list[float] = []
    space = socket.CMSG_SPACE(_TIMESPEC.size)
    stopped = False
    while not stopped:
        try:
            first = sock.recvmsg(4096, space)
        except TimeoutError:
            break
        # Drain what is queued, then nap: waking once per datagram (6,000 a second for 100 subjects) would
        # take a core from the pacer on a small machine. The kernel's timestamps keep each arrival exact.
        batch = [first]
        sock.setblocking(False)
        while True:
            try:
                batch.append(sock.recvmsg(4096, space))
            except BlockingIOError:
                break
        sock.settimeout(600.0)
        now = time.monotonic()
        for data, ancillary, _, _ in batch:
            if data == b"stop":
                stopped = True
                break
            stamp = math.nan
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == _TIMESTAMPNS and len(value) >= _TIMESPEC.size:
                    seconds, nanoseconds = _TIMESPEC.unpack_from(value)
                    stamp = seconds + nanoseconds * 1e-9
            packets.append(data)
            monotonic.append(now)
            kernel.append(stamp)
        time.sleep(0.004)
    sock.close()
    subjects: dict[str, list[list[float]]] = {}
    other = 0
    for data, mono, stamp in zip(packets, monotonic, kernel, strict=True):
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
