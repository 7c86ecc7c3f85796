"""VTube Studio output: ``--vts ws://HOST:8001`` drives a Live2D model as a VTube Studio plugin.

Written from VTube Studio's public plugin API (github.com/DenchiSoft/VTubeStudio, README "API Details"):
JSON text messages over a WebSocket (default ``ws://localhost:8001``), each with ``apiName``
``"VTubeStudioPublicAPI"``, ``apiVersion`` ``"1.0"``, a ``requestID`` and a ``messageType``; errors come back as
``APIError`` with an ``errorID`` (50: the user denied access; 8: the request needs authentication).

The client, once per connection:

1. ``APIStateRequest``; unless ``currentSessionAuthenticated``:
2. ``AuthenticationRequest`` with the token kept in the config dir (:class:`TokenStore`, one token per VTS
   URL; the file is the user's only, mode 0600, and the token is never logged). When VTube Studio refuses
   it (``authenticated: false``: revoked in VTS, or VTS reinstalled), or there is none yet:
3. ``AuthenticationTokenRequest`` (VTS shows an "allow plugin" pop-up; the answer comes when the user clicks),
   the new token is stored, then step 2 again. A denial (error 50) is logged with what to do, and asked
   again after the backoff.
4. Then ``InjectParameterDataRequest`` (``mode`` "set", ``faceFound`` true) with the face's parameters
   (:func:`vts_parameters`) at most ``rate`` times a second (30 by default; VTS keeps an injected value
   for one second, so the stream of the idle face keeps the model under Facecast's control).

A refused connection or a closed socket is logged once per failure with the next retry's delay, and the
client reconnects with exponential backoff (0.5 s doubling to 30 s, back to 0.5 s after an authenticated
connection); the server and its conversations go on meanwhile: frames produced while VTS is away are dropped.

The face comes from an :class:`~facecast.engine.stream.AvatarStream` (the newest live session drives it,
utterances on the shared pacer's absolute schedule, the idle face in between); its packets are the
request's JSON, and only the newest is sent when the client's rate allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from ..auth import redact_url
from ..errors import ConfigError
from ..face.arkit import INDEX
from ..types import Float32Array
from .sinks import SessionInfo
from .stream import AvatarStream, StreamSink

__all__ = [
    "DEFAULT_URL",
    "PARAMETERS",
    "PLUGIN_NAME",
    "PLUGIN_DEVELOPER",
    "config_dir",
    "parse_vts_url",
    "vts_parameters",
    "VtsEncoder",
    "TokenStore",
    "VtsClient",
    "VtsOutput",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "ws://localhost:8001"
PLUGIN_NAME = "Facecast"
PLUGIN_DEVELOPER = "Facecast"
API = {"apiName": "VTubeStudioPublicAPI", "apiVersion": "1.0"}
BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
"""Seconds before each reconnection attempt (the last repeats), reset after an authenticated connection."""

_DENIED = 50  # TokenRequestDenied
_NEEDS_AUTH = 8  # RequestRequiresAuthetication (sic)

PARAMETERS: tuple[tuple[str, float, float, str], ...] = (
    ("FaceAngleX", -90.0, 90.0, "HeadYaw x 180 (degrees)"),
    ("FaceAngleY", -90.0, 90.0, "HeadPitch x 180 (degrees)"),
    ("FaceAngleZ", -90.0, 90.0, "HeadRoll x 180 (degrees)"),
    ("MouthOpen", 0.0, 1.0, "JawOpen - MouthClose (the lips' gap: jaw open with lips together is closed)"),
    ("MouthSmile", 0.0, 1.0, "0.5 + (mean MouthSmileLeft/Right - mean MouthFrownLeft/Right) / 2 (0.5 neutral)"),
    ("EyeOpenLeft", 0.0, 1.0, "1 - EyeBlinkLeft"),
    ("EyeOpenRight", 0.0, 1.0, "1 - EyeBlinkRight"),
    ("EyeLeftX", -1.0, 1.0, "LeftEyeYaw x 180 / 30 (30 degrees of gaze = 1)"),
    ("EyeLeftY", -1.0, 1.0, "LeftEyePitch x 180 / 30"),
    ("EyeRightX", -1.0, 1.0, "RightEyeYaw x 180 / 30"),
    ("EyeRightY", -1.0, 1.0, "RightEyePitch x 180 / 30"),
    ("BrowLeftY", 0.0, 1.0, "0.5 + (max(BrowInnerUp, BrowOuterUpLeft) - BrowDownLeft) / 2 (0.5 neutral)"),
    ("BrowRightY", 0.0, 1.0, "0.5 + (max(BrowInnerUp, BrowOuterUpRight) - BrowDownRight) / 2"),
)
"""The VTube Studio default input parameters Facecast injects: ``(id, lowest, highest, from the ARKit
curves)``. Values are clipped to that range; VTube Studio maps each input onto the model's Live2D
parameters as set in its model settings."""


def config_dir() -> Path:
    """Where Facecast keeps state such as the VTube Studio token: ``FACECAST_CONFIG_DIR``, else
    ``$XDG_CONFIG_HOME/facecast``, else ``~/.config/facecast``. Not created here."""
    explicit = os.environ.get("FACECAST_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "facecast"


def parse_vts_url(text: str) -> str:
    """``ws://HOST[:PORT]`` or ``wss://...`` (port 8001 when absent; a bare ``HOST[:PORT]`` gets ``ws://``), as
    a normalised URL. Raises :class:`~facecast.errors.ConfigError` for another scheme or no host."""
    spec = text.strip()
    if "://" not in spec:
        spec = "ws://" + spec
    parts = urlsplit(spec)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ConfigError(f"--vts {text!r}: expected ws://HOST:PORT (VTube Studio's API, e.g. {DEFAULT_URL})")
    try:
        port = parts.port or 8001
    except ValueError:
        raise ConfigError(f"--vts {text!r}: the port must be a number in 1-65535") from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}:{port}{parts.path}"


# -------------------------------------------------------------------------------------------------- codec


def _mean(frame: Float32Array, *names: str) -> float:
    return float(np.mean([frame[INDEX[n]] for n in names]))


def vts_parameters(values: Float32Array) -> list[dict[str, float | str]]:
    """A face frame (61 or 68 values) as ``InjectParameterDataRequest`` ``parameterValues``: one
    ``{"id", "value"}`` per :data:`PARAMETERS` entry, in that order, clipped to its range (NaN -> 0)."""
    f = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    raw = {
        "FaceAngleX": f[INDEX["HeadYaw"]] * 180.0,
        "FaceAngleY": f[INDEX["HeadPitch"]] * 180.0,
        "FaceAngleZ": f[INDEX["HeadRoll"]] * 180.0,
        "MouthOpen": f[INDEX["JawOpen"]] - f[INDEX["MouthClose"]],
        "MouthSmile": 0.5
        + (_mean(f, "MouthSmileLeft", "MouthSmileRight") - _mean(f, "MouthFrownLeft", "MouthFrownRight")) / 2,
        "EyeOpenLeft": 1.0 - f[INDEX["EyeBlinkLeft"]],
        "EyeOpenRight": 1.0 - f[INDEX["EyeBlinkRight"]],
        "EyeLeftX": f[INDEX["LeftEyeYaw"]] * 6.0,
        "EyeLeftY": f[INDEX["LeftEyePitch"]] * 6.0,
        "EyeRightX": f[INDEX["RightEyeYaw"]] * 6.0,
        "EyeRightY": f[INDEX["RightEyePitch"]] * 6.0,
        "BrowLeftY": 0.5 + (max(f[INDEX["BrowInnerUp"]], f[INDEX["BrowOuterUpLeft"]]) - f[INDEX["BrowDownLeft"]]) / 2,
        "BrowRightY": 0.5
        + (max(f[INDEX["BrowInnerUp"]], f[INDEX["BrowOuterUpRight"]]) - f[INDEX["BrowDownRight"]]) / 2,
    }
    return [{"id": name, "value": round(float(min(max(raw[name], low), high)), 5)} for name, low, high, _ in PARAMETERS]


def _request(message_type: str, request_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {**API, "requestID": request_id, "messageType": message_type}
    if data is not None:
        message["data"] = data
    return message


class VtsEncoder:
    """The pacer's :class:`~facecast.engine.pacer.FrameEncoder` for VTube Studio: each frame as the UTF-8 JSON
    of an ``InjectParameterDataRequest`` (request id ``facecast-inject-N``, N the frame number)."""

    def encode(self, number: int, sub_frame: float, values: Float32Array) -> bytes:
        data = {"faceFound": True, "mode": "set", "parameterValues": vts_parameters(values)}
        return json.dumps(_request("InjectParameterDataRequest", f"facecast-inject-{number}", data)).encode()


class _Latest:
    """The pacer's sink for VTube Studio: keeps only the newest packet, for the client to take at its rate."""

    def __init__(self) -> None:
        self.packet: bytes | None = None
        self.ready = asyncio.Event()

    def send(self, packet: bytes) -> None:
        self.packet = packet
        self.ready.set()

    def take(self) -> bytes | None:
        packet, self.packet = self.packet, None
        self.ready.clear()
        return packet


# ----------------------------------------------------------------------------------------------- the token


class TokenStore:
    """VTube Studio plugin tokens, one per VTS URL, in a JSON file (default ``config_dir()/vts-tokens.json``)
    readable by its owner only. A file that cannot be read or parsed counts as empty (the user is asked to
    allow the plugin again); a write failure is logged and the token is kept in memory for this run."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else config_dir() / "vts-tokens.json"
        self._memory: dict[str, str] = {}

    def _read(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return dict(self._memory)
        tokens = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}
        return {**tokens, **self._memory} if isinstance(data, dict) else dict(self._memory)

    def load(self, url: str) -> str | None:
        return self._read().get(url)

    def save(self, url: str, token: str) -> None:
        tokens = self._read()
        tokens[url] = token
        self._write(tokens)
        self._memory[url] = token

    def forget(self, url: str) -> None:
        self._memory.pop(url, None)
        tokens = self._read()
        if tokens.pop(url, None) is not None:
            self._write(tokens)

    def _write(self, tokens: dict[str, str]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(tokens, file)
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("could not keep the VTube Studio token in %s (%s); it is kept for this run only", self.path, exc)


# ---------------------------------------------------------------------------------------------- the client


class _Denied(Exception):
    """The user clicked "Deny" in VTube Studio's plugin pop-up (or closed it)."""


class _Refused(Exception):
    """VTube Studio answered a request with an error that ends this connection's attempt."""


class VtsClient:
    """Connects to VTube Studio, authenticates as the plugin ``Facecast`` and injects what :meth:`run`'s
    ``source`` offers (see the module). :attr:`state` says where it is: ``connecting``, ``waiting_for_allow``
    (the user must click Allow in VTube Studio), ``injecting``, ``retrying``."""

    def __init__(
        self,
        url: str,
        tokens: TokenStore,
        *,
        rate: float = 30.0,
        backoff: Sequence[float] = BACKOFF,
        reply_timeout: float = 10.0,
        allow_timeout: float = 300.0,
    ) -> None:
        if not rate > 0:
            raise ConfigError(f"VTube Studio injection rate must be more than 0, not {rate}")
        self.url = url
        self.tokens = tokens
        self.rate = rate
        self.backoff = tuple(backoff)
        self.reply_timeout = reply_timeout
        self.allow_timeout = allow_timeout
        self.state = "connecting"
        self.connections = 0
        self.injected = 0
        self.last_error = ""
        self._ids = 0
        self._reported: set[int] = set()

    async def run(self, source: _Latest) -> None:
        """Connect, authenticate and inject until cancelled; failures are logged and retried (never raised)."""
        attempt = 0
        while True:
            self.state = "connecting"
            try:
                async with connect(self.url, open_timeout=self.reply_timeout, max_size=2**22) as ws:
                    self.connections += 1
                    await self._authenticate(ws)
                    attempt = 0
                    self.last_error = ""
                    self.state = "injecting"
                    log.info(
                        "VTube Studio at %s: authenticated as plugin %r; injecting the face", self.url, PLUGIN_NAME
                    )
                    await self._inject(ws, source)
                reason = "the connection closed"
            except _Denied:
                reason = "the user denied Facecast's plugin access (click Allow in VTube Studio's pop-up)"
            except _Refused as exc:
                reason = str(exc)
            except ConnectionClosed as exc:
                reason = f"the connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason = f"cannot connect ({type(exc).__name__}: {exc}); is VTube Studio running with "
                reason += "'Allow Plugin API access' on?"
            delay = self.backoff[min(attempt, len(self.backoff) - 1)]
            attempt += 1
            self.state, self.last_error = "retrying", reason
            log.warning("VTube Studio at %s: %s; retrying in %.2f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    def _next_id(self, kind: str) -> str:
        self._ids += 1
        return f"facecast-{kind}-{self._ids}"

    async def _ask(self, ws: ClientConnection, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send ``message``, return the answer with its request id (others are skipped)."""
        await ws.send(json.dumps(message))
        return await asyncio.wait_for(_answer(ws, message["requestID"]), timeout)

    async def _authenticate(self, ws: ClientConnection) -> None:
        state = await self._ask(ws, _request("APIStateRequest", self._next_id("state")), self.reply_timeout)
        if _data(state).get("currentSessionAuthenticated") is True:
            return
        token = self.tokens.load(self.url)
        if token is not None:
            if await self._login(ws, token):
                return
            log.warning(
                "VTube Studio at %s refused Facecast's stored token (access revoked?); asking for a new one",
                self.url,
            )
            self.tokens.forget(self.url)
        self.state = "waiting_for_allow"
        log.warning(
            "VTube Studio at %s: click 'Allow' in VTube Studio's pop-up to let Facecast drive the model", self.url
        )
        data = {"pluginName": PLUGIN_NAME, "pluginDeveloper": PLUGIN_DEVELOPER}
        answer = await self._ask(
            ws, _request("AuthenticationTokenRequest", self._next_id("token"), data), self.allow_timeout
        )
        if answer.get("messageType") == "APIError":
            if _data(answer).get("errorID") == _DENIED:
                raise _Denied
            raise _Refused(f"the token request failed: {_data(answer).get('message', 'APIError')}")
        token = _data(answer).get("authenticationToken")
        if not isinstance(token, str) or not token:
            raise _Refused("the token request's answer carries no token")
        self.tokens.save(self.url, token)
        if not await self._login(ws, token):
            raise _Refused("VTube Studio refused the token it had just issued")

    async def _login(self, ws: ClientConnection, token: str) -> bool:
        data = {"pluginName": PLUGIN_NAME, "pluginDeveloper": PLUGIN_DEVELOPER, "authenticationToken": token}
        answer = await self._ask(ws, _request("AuthenticationRequest", self._next_id("auth"), data), self.reply_timeout)
        return answer.get("messageType") == "AuthenticationResponse" and _data(answer).get("authenticated") is True

    async def _inject(self, ws: ClientConnection, source: _Latest) -> None:
        """Send the newest packet at most ``rate`` times a second; read the answers meanwhile (an error is
        logged once per kind; a lost authentication ends the connection, to authenticate again)."""
        reader = asyncio.create_task(self._read(ws))
        ready: asyncio.Task[bool] | None = None
        try:
            interval = 1.0 / self.rate
            next_send = time.monotonic()
            while not reader.done():
                ready = asyncio.create_task(source.ready.wait())
                await asyncio.wait((ready, reader), return_when=asyncio.FIRST_COMPLETED)
                if reader.done():
                    break
                delay = next_send - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                packet = source.take()
                if packet is None:
                    continue
                await ws.send(packet.decode())
                self.injected += 1
                next_send = max(next_send + interval, time.monotonic())
            await reader  # raises what ended it
        finally:
            for task in (ready, reader):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            try:
                answer = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(answer, dict) or answer.get("messageType") != "APIError":
                continue
            error = _data(answer).get("errorID")
            if error == _NEEDS_AUTH:
                raise _Refused("VTube Studio ended the plugin's authentication")
            if isinstance(error, int) and error not in self._reported:
                self._reported.add(error)
                log.error(
                    "VTube Studio at %s rejected an injection: %s (error %s)",
                    self.url,
                    _data(answer).get("message"),
                    error,
                )


async def _answer(ws: ClientConnection, request_id: str) -> dict[str, Any]:
    while True:
        raw = await ws.recv()
        try:
            answer = json.loads(raw)
        except ValueError:
            continue
        if isinstance(answer, dict) and answer.get("requestID") == request_id:
            return answer


def _data(message: dict[str, Any]) -> dict[str, Any]:
    data = message.get("data")
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------------- output


class VtsOutput:
    """``--vts URL``: the server's face in VTube Studio (an :class:`~facecast.engine.sinks.Output`): an
    :class:`~facecast.engine.stream.AvatarStream` whose packets a :class:`VtsClient` injects."""

    def __init__(
        self,
        url: str,
        *,
        token_file: str | Path | None = None,
        linger: float = 30.0,
        rate: float = 30.0,
        backoff: Sequence[float] = BACKOFF,
    ) -> None:
        self.url = parse_vts_url(url)
        self._latest = _Latest()
        self.client = VtsClient(self.url, TokenStore(token_file), rate=rate, backoff=backoff)
        self.stream = AvatarStream("vts", VtsEncoder(), self._latest, linger=linger)

    async def run(self) -> None:
        """Stream and inject until cancelled; VTube Studio being away is retried, never raised."""
        tasks = [asyncio.create_task(self.stream.run()), asyncio.create_task(self.client.run(self._latest))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()  # a bug in either: raised, the other is cancelled below
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.stream.close()

    def attach(self, session: SessionInfo) -> StreamSink:
        return self.stream.attach(session.timeline, {"output": "vts", "url": self.url})

    def describe(self) -> dict[str, object]:
        return {
            "output": "vts",
            "url": redact_url(self.url),
            "state": self.client.state,
            "injected": self.client.injected,
            "last_error": self.client.last_error,
        }
