"""WebRTC signalling: ``POST /webrtc/offer`` opens an engine session over a peer connection (aiortc).

The page sends its SDP offer (with its microphone track and a data channel, ICE candidates gathered) and the
fields of its ``hello``; the answer is the server's SDP. The session is the one the WebSocket drives
(:class:`~facecast.engine.session.EngineSession`); :mod:`facecast.http.rtc_peer` carries it over the peer.
docs/protocol.md, "WebRTC", is the contract.

The route sits behind the same :class:`~facecast.http.security.AccessMiddleware` as ``/ws/engine``: a
``Host`` or ``Origin`` the server does not accept is refused (HTTP 421 / 403), a missing or wrong token
(when one is set) with 401. Then, here:

- a body that is not a JSON object ``{"sdp": str, "type": "offer", "hello": {...}}`` of at most 64 KiB, an
  SDP that aiortc cannot parse, or an offer without an audio track and a data channel: HTTP 400
  ``bad_offer``; a ``hello`` the protocol refuses (or that the session refuses: an unknown character, a
  taken Live Link subject): HTTP 400 with that error's code. Nothing is kept: no session, no peer;
- past ``max_sessions`` (WebSocket and WebRTC sessions together): HTTP 503 ``busy``;
- without aiortc installed: HTTP 501 ``webrtc_unavailable`` (``pip install 'facecast[webrtc]'``).

The hello's ``audio`` and ``mic`` formats are the transport's (48 kHz reply audio for the Opus track, 16 kHz
microphone from the resampled track) whatever the page asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..config import Settings
from ..engine.session import EngineSession
from ..errors import ConfigError
from ..metrics import Metrics
from ..protocol import engine as proto

if TYPE_CHECKING:
    from .rtc_peer import ChannelTransport, RtcPeer

__all__ = ["Offer", "OfferError", "parse_offer", "RtcHost", "RtcPeers", "webrtc_router", "MAX_OFFER"]

log = logging.getLogger(__name__)

MAX_OFFER = 64 << 10
"""Largest offer body, bytes (a browser's offer with its candidates is 3-6 KiB)."""


class OfferError(ValueError):
    """An offer was refused: HTTP ``status`` with ``code`` and ``message`` (nothing was kept)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Offer:
    """A parsed offer: the SDP and the ``hello`` text the session receives first."""

    sdp: str
    hello: str


def parse_offer(body: bytes) -> Offer:
    """The request body as an :class:`Offer`; raises :class:`OfferError` (400) for anything else. The
    ``hello`` is checked by the protocol's own decoder, with the transport's audio formats set."""
    if len(body) > MAX_OFFER:
        raise OfferError(400, "bad_offer", f"the offer is {len(body)} bytes; at most {MAX_OFFER} are accepted")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise OfferError(400, "bad_offer", "the offer must be a JSON object {sdp, type, hello}") from None
    if not isinstance(data, dict):
        raise OfferError(400, "bad_offer", "the offer must be a JSON object {sdp, type, hello}")
    sdp, kind, hello = data.get("sdp"), data.get("type", "offer"), data.get("hello", {})
    if kind != "offer":
        raise OfferError(400, "bad_offer", f"'type' must be 'offer', got {kind!r}")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise OfferError(400, "bad_offer", "'sdp' must be the session description of the offer (starting 'v=0')")
    if "\nm=audio " not in sdp or "\nm=application " not in sdp:
        raise OfferError(
            400, "bad_offer", "the offer needs an audio track (the microphone) and a data channel (m=application)"
        )
    if not isinstance(hello, dict):
        raise OfferError(400, "bad_message", "'hello' must be a JSON object with the fields of the hello message")
    fields = {
        **hello,
        "type": "hello",
        "audio": {"rate": 48000, "channels": 1},
        "mic": {"rate": 16000, "channels": 1},
    }
    text = json.dumps(fields)
    try:
        message = proto.decode_client_text(text)
    except proto.ProtocolError as exc:
        raise OfferError(400, exc.code, exc.message) from None
    if not isinstance(message, proto.Hello):  # pragma: no cover - the type is forced above
        raise OfferError(400, "bad_message", "'hello' is not a hello")
    return Offer(sdp, text)


@dataclass(slots=True)
class RtcHost:
    """What the peers need from the server: its settings, the live sessions (shared with the WebSocket, for
    ``max_sessions`` and ``/health``), its metrics, and how a session is made for a transport."""

    settings: Settings
    sessions: set[EngineSession]
    metrics: Metrics
    make_session: Callable[[ChannelTransport], EngineSession]
    ice_servers: tuple[str, ...] = field(default_factory=tuple)


class RtcPeers:
    """The server's WebRTC peers: :meth:`answer` opens one, :meth:`aclose` ends them all (at shutdown)."""

    def __init__(self, host: RtcHost) -> None:
        """Raises :class:`~facecast.errors.ConfigError` for an ICE server that is not a ``stun:`` URL."""
        for url in host.ice_servers:
            if not url.startswith(("stun:", "stuns:")) or len(url) < 6:
                raise ConfigError(f"webrtc_ice_servers: {url!r} is not a STUN URL (stun:HOST:PORT)")
        self.host = host
        self.peers: set[RtcPeer] = set()
        self._runs: set[asyncio.Task[None]] = set()

    async def answer(self, offer: Offer) -> dict[str, Any]:
        """Open a peer and its session for ``offer``; returns ``{"type": "answer", "sdp"}``. Raises
        :class:`OfferError` (and keeps nothing) when the offer or its hello is refused."""
        try:
            from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

            from .rtc_peer import RtcPeer
        except ImportError:
            raise OfferError(
                501, "webrtc_unavailable", "this server has no WebRTC support: pip install 'facecast[webrtc]'"
            ) from None
        _quiet_ice_logs()
        host = self.host
        limit = host.settings.max_sessions
        if 0 < limit <= len(host.sessions):
            host.metrics.errors.labels("busy").inc()
            raise OfferError(503, "busy", f"this server already serves {limit} sessions (max_sessions); try later")
        pc = RTCPeerConnection(RTCConfiguration([RTCIceServer(urls=url) for url in host.ice_servers]))
        peer = RtcPeer(pc, host.make_session, host.settings.max_messages_per_s)
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            except Exception as exc:  # aiortc raises ValueError and others for an SDP it cannot take
                raise OfferError(400, "bad_offer", f"the offer's SDP was refused: {exc}") from None
            await peer.session.handle_text(offer.hello)
            if peer.session.hello is None:
                refusal = next(
                    (m for m in peer.transport.pending_messages() if m.get("type") == "error"),
                    {"code": "bad_message", "message": "the hello was refused"},
                )
                raise OfferError(400, str(refusal["code"]), str(refusal["message"]))
            sdp = await peer.negotiate()
        except BaseException:
            await peer.session.close()
            peer.close()
            with suppress(Exception):
                await peer.done.wait()
            raise
        self._start(peer)
        return {"type": "answer", "sdp": sdp}

    def _start(self, peer: RtcPeer) -> None:
        host = self.host
        host.sessions.add(peer.session)
        host.metrics.active_sessions.inc()
        self.peers.add(peer)

        async def run() -> None:
            try:
                await peer.run()
            finally:
                self.peers.discard(peer)
                host.sessions.discard(peer.session)
                host.metrics.active_sessions.dec()

        task = asyncio.create_task(run())
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    async def aclose(self) -> None:
        """Close every peer and wait for their sessions to end."""
        for peer in list(self.peers):
            peer.close()
        await asyncio.gather(*self._runs, return_exceptions=True)


def _quiet_ice_logs() -> None:
    """aioice and aiortc log every ICE check at INFO: keep them to warnings unless configured otherwise."""
    for name in ("aioice", "aiortc"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def webrtc_router(peers: RtcPeers) -> APIRouter:
    """``POST /webrtc/offer`` (see the module docstring)."""
    router = APIRouter()

    @router.post("/webrtc/offer")
    async def offer(request: Request) -> JSONResponse:
        """Answer a WebRTC offer with the server's SDP; the session's messages then run on the data channel."""
        declared = request.headers.get("content-length")
        try:
            if declared is not None and (not declared.isdigit() or int(declared) > MAX_OFFER):
                raise OfferError(400, "bad_offer", f"the offer must be at most {MAX_OFFER} bytes")
            answer = await peers.answer(parse_offer(await request.body()))
        except OfferError as exc:
            log.info("WebRTC offer refused (%s): %s", exc.code, exc.message)
            return JSONResponse({"status": "error", "code": exc.code, "message": exc.message}, exc.status)
        return JSONResponse(answer)

    return router
