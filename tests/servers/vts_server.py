"""A local VTube Studio plugin API server: an implementation of the documented protocol for tests, not VTube
Studio.

Written from the public plugin API documentation (github.com/DenchiSoft/VTubeStudio, README "API Details",
and ``Files/ErrorID.cs``): JSON text messages over a WebSocket, every request carrying ``apiName``
``"VTubeStudioPublicAPI"`` and ``apiVersion`` ``"1.0"``, every answer echoing the ``requestID`` with a
``timestamp`` and a ``data`` object. It answers:

* ``APIStateRequest``: ``active``, ``vTubeStudioVersion``, ``currentSessionAuthenticated``;
* ``AuthenticationTokenRequest``: plugin and developer names of 3-32 characters (else errors 52 / 53); the
  "user" answers the pop-up as ``allow`` says: a new token (``AuthenticationTokenResponse``) or ``APIError``
  50 (``TokenRequestDenied``);
* ``AuthenticationRequest``: ``authenticated`` true for a token it issued (or was given in ``tokens``) with
  the same plugin and developer names, false otherwise (missing fields: errors 100-102);
* ``InjectParameterDataRequest``: needs an authenticated session (error 8); each ``id`` must be one of
  :data:`DEFAULT_PARAMETERS` (error 453), each ``value`` a number in [-1000000, 1000000] (error 451), a
  ``weight`` in [0, 1] (452), ``mode`` "set" or "add" (455); accepted injections are recorded.

Anything else gets ``APIError`` 1 (``APINameInvalid``-like: not implemented here). Test switches:
:meth:`VtsServer.revoke` (the user revokes the plugin: tokens no longer valid, sessions unauthenticated),
:meth:`VtsServer.drop` (close every connection, as when VTS quits), ``allow`` (the pop-up's answer).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

__all__ = ["VtsServer", "Injection", "DEFAULT_PARAMETERS"]

DEFAULT_PARAMETERS = frozenset(
    {
        "FacePositionX", "FacePositionY", "FacePositionZ", "FaceAngleX", "FaceAngleY", "FaceAngleZ",
        "MouthSmile", "MouthOpen", "Brows", "TongueOut", "EyeOpenLeft", "EyeOpenRight",
        "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "CheekPuff", "BrowLeftY", "BrowRightY",
        "MousePositionX", "MousePositionY", "VoiceVolume", "VoiceFrequency",
    }
)  # fmt: skip
"""The default input parameters this server knows (a subset of VTube Studio's, enough for the tests)."""


@dataclass(frozen=True, slots=True)
class Injection:
    """One accepted ``InjectParameterDataRequest``: when it arrived (``time.monotonic``), which connection,
    its values by id, ``faceFound`` and ``mode``."""

    at: float
    connection: int
    values: dict[str, float]
    face_found: bool
    mode: str


@dataclass
class _Session:
    number: int
    authenticated: bool = False


@dataclass
class VtsServer:
    """Serve on ``127.0.0.1`` (free port) inside ``async with``; :attr:`url` is the client's URL."""

    allow: bool = True
    tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Valid tokens: token -> (plugin name, developer)."""
    requests: list[str] = field(default_factory=list)
    """Every message type received, in order (injections included)."""
    injections: list[Injection] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    connections: int = 0
    url: str = ""
    """``ws://127.0.0.1:PORT``, set on entering (and kept after, for reconnection tests)."""
    _server: Server | None = None
    _open: set[ServerConnection] = field(default_factory=set)

    async def __aenter__(self) -> VtsServer:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def revoke(self) -> None:
        """The user revokes every plugin's access in VTS."""
        self.tokens.clear()

    async def drop(self) -> None:
        """Close every open connection (VTube Studio quit or restarted)."""
        for connection in list(self._open):
            await connection.close(1001, "VTube Studio is closing")

    def count(self, message_type: str) -> int:
        return self.requests.count(message_type)

    async def _serve(self, connection: ServerConnection) -> None:
        self.connections += 1
        session = _Session(self.connections)
        self._open.add(connection)
        try:
            async for raw in connection:
                try:
                    request = json.loads(raw)
                except ValueError:
                    continue
                answer = await self._answer(session, request)
                await connection.send(json.dumps(answer))
        except ConnectionClosed:
            pass
        finally:
            self._open.discard(connection)

    async def _answer(self, session: _Session, request: dict[str, Any]) -> dict[str, Any]:
        kind = str(request.get("messageType"))
        self.requests.append(kind)
        data = request.get("data") if isinstance(request.get("data"), dict) else {}
        assert isinstance(data, dict)
        request_id = str(request.get("requestID", "none"))
        if request.get("apiName") != "VTubeStudioPublicAPI" or request.get("apiVersion") != "1.0":
            return self._error(request_id, 1, "apiName / apiVersion invalid")
        if kind == "APIStateRequest":
            state = {
                "active": True,
                "vTubeStudioVersion": "1.28.0",
                "currentSessionAuthenticated": session.authenticated,
            }
            return self._reply(request_id, "APIStateResponse", state)
        if kind == "AuthenticationTokenRequest":
            name, developer = data.get("pluginName"), data.get("pluginDeveloper")
            if not isinstance(name, str) or not 3 <= len(name) <= 32:
                return self._error(request_id, 52, "plugin name invalid")
            if not isinstance(developer, str) or not 3 <= len(developer) <= 32:
                return self._error(request_id, 53, "developer name invalid")
            await asyncio.sleep(0.01)  # the user reads the pop-up
            if not self.allow:
                return self._error(request_id, 50, "User has denied API access for your plugin.")
            token = secrets.token_hex(16)
            self.tokens[token] = (name, developer)
            return self._reply(request_id, "AuthenticationTokenResponse", {"authenticationToken": token})
        if kind == "AuthenticationRequest":
            for key, error in (("authenticationToken", 100), ("pluginName", 101), ("pluginDeveloper", 102)):
                if not isinstance(data.get(key), str):
                    return self._error(request_id, error, f"{key} missing")
            valid = self.tokens.get(data["authenticationToken"]) == (data["pluginName"], data["pluginDeveloper"])
            session.authenticated = valid
            reason = "Token valid." if valid else "Token invalid or revoked."
            return self._reply(request_id, "AuthenticationResponse", {"authenticated": valid, "reason": reason})
        if kind == "InjectParameterDataRequest":
            return self._inject(session, request_id, data)
        return self._error(request_id, 1, f"{kind} is not implemented by this test server")

    def _inject(self, session: _Session, request_id: str, data: dict[str, Any]) -> dict[str, Any]:
        if not session.authenticated or not self.tokens:
            session.authenticated = False
            return self._error(request_id, 8, "This request requires authentication.")
        mode = data.get("mode", "set")
        if mode not in ("set", "add"):
            return self._error(request_id, 455, f"unknown mode {mode!r}")
        values = data.get("parameterValues")
        if not isinstance(values, list) or not values:
            return self._error(request_id, 450, "no data provided")
        found: dict[str, float] = {}
        for item in values:
            name, value, weight = item.get("id"), item.get("value"), item.get("weight", 1.0)
            if name not in DEFAULT_PARAMETERS:
                return self._error(request_id, 453, f"Parameter {name!r} not found")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -1e6 <= value <= 1e6:
                return self._error(request_id, 451, f"value {value!r} invalid")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
                return self._error(request_id, 452, f"weight {weight!r} invalid")
            found[str(name)] = float(value)
        face_found = bool(data.get("faceFound", False))
        self.injections.append(Injection(time.monotonic(), session.number, found, face_found, str(mode)))
        return self._reply(request_id, "InjectParameterDataResponse", {})

    def _reply(self, request_id: str, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiName": "VTubeStudioPublicAPI",
            "apiVersion": "1.0",
            "timestamp": int(time.time() * 1000),
            "messageType": kind,
            "requestID": request_id,
            "data": data,
        }

    def _error(self, request_id: str, error: int, message: str) -> dict[str, Any]:
        self.errors.append(error)
        return self._reply(request_id, "APIError", {"errorID": error, "message": message})
