"""Live Link's UDP side: where packets go (targets), whose they are (subjects), the subject's
:class:`~facecast.engine.pacer.FrameEncoder` (:class:`LiveLinkEncoder`), and the fire-and-forget datagram
sender (a :class:`~facecast.engine.pacer.PacketSink`). WHEN each packet leaves is the shared pacer's job
(:mod:`facecast.engine.pacer`); :mod:`facecast.engine.livelink` puts the two together and exports everything here.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from ..errors import ConfigError
from ..protocol.livelink import CURVE_COUNT, DEFAULT_PORT, encode_frame, packet_size
from ..types import FACE_WIDTH, FPS, Float32Array

__all__ = ["LiveLinkTarget", "parse_targets", "LiveLinkSubject", "LiveLinkEncoder", "LiveLinkSender"]


# ----------------------------------------------------------------------------------------------- targets


@dataclass(frozen=True, slots=True)
class LiveLinkTarget:
    """Where Live Link datagrams go: a host name or IP address and a UDP port."""

    host: str
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("Live Link target host must not be empty")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"Live Link target port must be 1-65535, got {self.port}")

    @classmethod
    def parse(cls, text: str) -> LiveLinkTarget:
        """Parse ``HOST:PORT``, ``[IPV6]:PORT``, or a bare ``HOST`` / IPv6 address (port 11111).

        Raises ValueError for an empty host, a port that is not a number in 1-65535, or unbalanced brackets.
        """
        spec = text.strip()
        if spec.startswith("["):
            host, sep, rest = spec[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(f"bad Live Link target {text!r}: expected [IPV6]:PORT")
            port_text = rest[1:] if rest else None
        elif spec.count(":") == 1:
            host, _, port_text = spec.partition(":")
        else:  # a bare host name, IPv4 address, or unbracketed IPv6 address
            host, port_text = spec, None
        if port_text is None:
            return cls(host)
        if not port_text.isdecimal():
            raise ValueError(f"bad Live Link target {text!r}: port {port_text!r} is not a number")
        return cls(host, int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_targets(specs: Iterable[str]) -> tuple[LiveLinkTarget, ...]:
    """Parse repeated ``--livelink`` values; any ``off`` (case-insensitive) means no Live Link output at all.

    Duplicates are removed, keeping the first. Raises ValueError as :meth:`LiveLinkTarget.parse` does.
    """
    items = [spec.strip() for spec in specs]
    if any(item.lower() == "off" for item in items):
        return ()
    return tuple(dict.fromkeys(LiveLinkTarget.parse(item) for item in items))


@dataclass(frozen=True, slots=True)
class LiveLinkSubject:
    """A Live Link subject as Unreal lists it: ``name``, from the device ``device_id``.

    Unreal keeps ONE subject per device id (a new subject name for a device replaces the old one), so each
    subject needs its own device id; the default is ``"facecast:" + name``. Raises ValueError for names the
    Live Link codec refuses (empty, NUL, too long).
    """

    name: str
    device_id: str = ""

    def __post_init__(self) -> None:
        if not self.device_id:
            object.__setattr__(self, "device_id", f"facecast:{self.name}")
        packet_size(self.device_id, self.name)  # validates both names


class LiveLinkEncoder:
    """The Live Link :class:`~facecast.engine.pacer.FrameEncoder` of one subject:
    :func:`~facecast.protocol.livelink.encode_frame` at 60/1 fps, byte for byte, made cheap for the pacer's
    frames: the header is built once, and a 61- or 68-value float32 frame whose curves are finite needs no
    further checks. Anything else goes through ``encode_frame`` itself."""

    _TAIL = struct.Struct(">ifiiB")
    _LARGEST_SUB_FRAME = float(np.nextafter(np.float32(1.0), np.float32(0.0)))
    _BIG_ENDIAN = np.dtype(">f4")

    def __init__(self, subject: LiveLinkSubject) -> None:
        self.subject = subject
        sample = encode_frame(subject.device_id, subject.name, 0, np.zeros(CURVE_COUNT, np.float32))
        self._header = sample[: len(sample) - self._TAIL.size - 4 * CURVE_COUNT]

    def encode(self, number: int, sub_frame: float, values: Float32Array) -> bytes:
        """``number`` in [0, 2**31), ``sub_frame`` in [0, 1)."""
        if values.dtype == np.float32 and values.shape in ((CURVE_COUNT,), (FACE_WIDTH,)):
            curves = values[:CURVE_COUNT]
            if math.isfinite(sum(curves.tolist())):  # a NaN or an infinity makes the sum one (float32 cannot)
                sub = min(sub_frame, self._LARGEST_SUB_FRAME)
                tail = self._TAIL.pack(number, sub, FPS, 1, CURVE_COUNT)
                return self._header + tail + curves.astype(self._BIG_ENDIAN).tobytes()
        subject = self.subject
        return encode_frame(subject.device_id, subject.name, number, values, sub_frame=sub_frame)


# -------------------------------------------------------------------------------------------------- sender


class _SenderProtocol(asyncio.DatagramProtocol):
    def __init__(self, sender: LiveLinkSender) -> None:
        self._sender = sender

    def error_received(self, exc: Exception) -> None:
        self._sender._errors += 1


class LiveLinkSender:
    """Sends every packet, as one datagram, to each of its targets over UDP (a pacer's
    :class:`~facecast.engine.pacer.PacketSink`).

    Use ``async with LiveLinkSender(targets) as sender`` (or :meth:`open` then :meth:`close`). Host names are
    resolved once, on open, preferring IPv4 when a name has both (Unreal's Live Link source listens on IPv4).
    A send error (e.g. nothing listening, network down) is counted in :attr:`errors`, never raised: Live Link
    is fire-and-forget. :meth:`open` raises :class:`~facecast.errors.ConfigError` for a host that does not
    resolve.
    """

    def __init__(self, targets: Sequence[LiveLinkTarget]) -> None:
        self.targets = tuple(targets)
        self._routes: list[tuple[asyncio.DatagramTransport, tuple[object, ...]]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._sent = 0
        self._errors = 0

    @property
    def sent(self) -> int:
        """Datagrams handed to the operating system so far (one per packet per target)."""
        return self._sent

    @property
    def errors(self) -> int:
        """Send errors reported by the operating system so far."""
        return self._errors

    async def open(self) -> None:
        if self._transports:
            return
        loop = asyncio.get_running_loop()
        resolved: list[tuple[socket.AddressFamily, tuple[object, ...]]] = []
        for target in self.targets:
            try:
                infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise ConfigError(f"Live Link target {target} does not resolve: {exc}") from exc
            if not infos:
                raise ConfigError(f"Live Link target {target} does not resolve")
            ipv4 = [info for info in infos if info[0] == socket.AF_INET]
            chosen = (ipv4 or infos)[0]
            resolved.append((chosen[0], tuple(chosen[4])))
        by_family: dict[socket.AddressFamily, asyncio.DatagramTransport] = {}
        try:
            for family, address in resolved:
                if family not in by_family:
                    transport, _ = await loop.create_datagram_endpoint(lambda: _SenderProtocol(self), family=family)
                    by_family[family] = transport
                    self._transports.append(transport)
                self._routes.append((by_family[family], address))
        except BaseException:
            self.close()
            raise

    def send(self, packet: bytes) -> None:
        """Send ``packet`` to every target; a no-op before :meth:`open` or after :meth:`close`."""
        for transport, address in self._routes:
            transport.sendto(packet, address)
            self._sent += 1

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self._routes.clear()

    async def __aenter__(self) -> LiveLinkSender:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
