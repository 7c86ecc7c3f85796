"""Sans-I/O codec of the Gemini Live API's WebSocket messages (``BidiGenerateContent``; no sockets, no asyncio).

Written from Google's public Live API WebSockets reference: the first client message is ``setup``
(``model`` as ``models/NAME``, ``generationConfig.responseModalities`` ``["AUDIO"]`` with an optional
prebuilt voice, ``systemInstruction``, ``tools[].functionDeclarations``, ``inputAudioTranscription`` and
``outputAudioTranscription``), answered by ``setupComplete``; microphone audio goes as
``realtimeInput.audio`` blobs (``audio/pcm;rate=16000``, PCM16 little-endian); typed text as
``clientContent`` with ``turnComplete``; function results as ``toolResponse.functionResponses``. The server
answers with ``serverContent`` (``modelTurn.parts[].inlineData`` audio at 24 kHz, ``outputTranscription``,
``inputTranscription``, ``interrupted``, ``turnComplete``) and ``toolCall.functionCalls``. Turns are decided
by the API's automatic activity detection (the default); an interruption is the server's own ``interrupted``
(it stops generating by itself, so a cancel sends nothing: the API has no truncate event, docs/realtime.md).
Errors arrive as the WebSocket's close code and reason (handled by :mod:`.socket`).

Verified only against tests/servers/gemini_live_server.py, an implementation of the documented protocol,
never against the service (see docs/realtime.md).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from .events import (
    AppendAudio,
    AudioDelta,
    CancelResponse,
    FunctionCall,
    InputTranscript,
    RealtimeCommand,
    RealtimeEvent,
    RealtimeFailure,
    RealtimeSetup,
    ResponseDone,
    ResponseStarted,
    SessionReady,
    SpeechStarted,
    ToolResult,
    TranscriptDelta,
    UserInput,
)

__all__ = ["INPUT_RATE", "OUTPUT_RATE", "GeminiCodec"]

INPUT_RATE = 16000
OUTPUT_RATE = 24000
_RATE = re.compile(r"rate=(\d+)")


class GeminiCodec:
    """Commands -> client messages (JSON objects), server messages -> :mod:`.events` values. Keeps one bit
    of state: whether a model turn is under way (the API has no "response created" message)."""

    input_rate = INPUT_RATE
    output_rate = OUTPUT_RATE

    def __init__(self, model: str) -> None:
        self.model = model if model.startswith("models/") else f"models/{model}"
        self._in_turn = False
        self._heard: list[str] = []

    def setup(self, setup: RealtimeSetup) -> list[dict[str, Any]]:
        """The ``setup`` message sent first."""
        generation: dict[str, Any] = {"responseModalities": ["AUDIO"]}
        if setup.voice:
            generation["speechConfig"] = {"voiceConfig": {"prebuiltVoiceConfig": {"voiceName": setup.voice}}}
        body: dict[str, Any] = {
            "model": self.model,
            "generationConfig": generation,
            "inputAudioTranscription": {},
            "outputAudioTranscription": {},
        }
        if setup.instructions:
            body["systemInstruction"] = {"parts": [{"text": setup.instructions}]}
        if setup.actions:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {"name": a.name, "description": a.description, "parameters": a.schema()} for a in setup.actions
                    ]
                }
            ]
        return [{"setup": body}]

    def encode(self, command: RealtimeCommand) -> list[dict[str, Any]]:
        """The client messages carrying out ``command`` (``AppendAudio`` must already be at 16 kHz)."""
        if isinstance(command, AppendAudio):
            data = base64.b64encode(command.pcm16).decode("ascii")
            return [{"realtimeInput": {"audio": {"data": data, "mimeType": f"audio/pcm;rate={INPUT_RATE}"}}}]
        if isinstance(command, CancelResponse):
            self._in_turn = False
            return []  # the server interrupts its own generation when it hears the player
        if isinstance(command, ToolResult):
            response = command.output if isinstance(command.output, dict) else {"result": command.output}
            return [
                {
                    "toolResponse": {
                        "functionResponses": [{"id": command.call_id, "name": command.name, "response": response}]
                    }
                }
            ]
        if isinstance(command, UserInput):
            return [
                {
                    "clientContent": {
                        "turns": [{"role": "user", "parts": [{"text": command.text}]}],
                        "turnComplete": True,
                    }
                }
            ]
        raise TypeError(f"not a realtime command: {command!r}")

    def decode(self, message: Any) -> list[RealtimeEvent]:
        """The events of one server message (a decoded JSON object); unknown fields yield nothing."""
        if not isinstance(message, dict):
            return [RealtimeFailure("service_unavailable", "the Live API sent a message that is not an object")]
        events: list[RealtimeEvent] = []
        if "setupComplete" in message:
            events.append(SessionReady())
        content = message.get("serverContent")
        if isinstance(content, dict):
            events.extend(self._content(content))
        call = message.get("toolCall")
        if isinstance(call, dict):
            for fn in call.get("functionCalls") or []:
                if isinstance(fn, dict):
                    events.extend(self._start())
                    events.append(FunctionCall(str(fn.get("id", "")), str(fn.get("name", "")), fn.get("args") or {}))
        return events

    def _start(self) -> list[RealtimeEvent]:
        """A model turn begins: the player's transcript so far is final (the API marks no end of it)."""
        if self._in_turn:
            return []
        self._in_turn = True
        events: list[RealtimeEvent] = []
        if self._heard:
            events.append(InputTranscript(" ".join("".join(self._heard).split()), final=True))
            self._heard = []
        events.append(ResponseStarted())
        return events

    def _content(self, content: dict[str, Any]) -> list[RealtimeEvent]:
        events: list[RealtimeEvent] = []
        heard = content.get("inputTranscription")
        if isinstance(heard, dict) and heard.get("text"):
            self._heard.append(str(heard["text"]))
            events.append(InputTranscript(str(heard["text"]), final=False))
        if content.get("interrupted"):
            was = self._in_turn
            self._in_turn = False
            events.append(SpeechStarted())
            if was:
                events.append(ResponseDone("interrupted"))
            return events
        turn = content.get("modelTurn")
        if isinstance(turn, dict):
            for part in turn.get("parts") or []:
                blob = part.get("inlineData") if isinstance(part, dict) else None
                if not isinstance(blob, dict):
                    continue
                mime = str(blob.get("mimeType", ""))
                if not mime.startswith("audio/pcm"):
                    continue
                try:
                    pcm = base64.b64decode(str(blob.get("data", "")), validate=True)
                except ValueError:
                    events.append(RealtimeFailure("service_unavailable", "the Live API sent audio that is not base64"))
                    continue
                found = _RATE.search(mime)
                events.extend(self._start())
                events.append(AudioDelta(pcm[: len(pcm) // 2 * 2], int(found.group(1)) if found else OUTPUT_RATE))
        said = content.get("outputTranscription")
        if isinstance(said, dict) and said.get("text"):
            events.extend(self._start())
            events.append(TranscriptDelta(str(said["text"])))
        if content.get("turnComplete") and self._in_turn:
            self._in_turn = False
            events.append(ResponseDone("completed"))
        return events
