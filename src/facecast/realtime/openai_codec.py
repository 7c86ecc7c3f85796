"""Sans-I/O codec of the OpenAI Realtime API's WebSocket messages (no sockets, no asyncio).

Written from OpenAI's public Realtime API reference (client events ``session.update``,
``input_audio_buffer.append``, ``conversation.item.create``, ``response.create``, ``response.cancel``,
``conversation.item.truncate``; server events ``session.created``/``session.updated``,
``input_audio_buffer.speech_started``/``speech_stopped``, ``conversation.item.input_audio_transcription.delta``
and ``.completed``, ``response.created``, ``response.output_audio.delta`` (``response.audio.delta`` in the
beta interface), ``response.output_audio_transcript.delta`` (``response.audio_transcript.delta``),
``response.function_call_arguments.done``, ``response.done`` and ``error``). The session is configured as the
GA interface describes it (``session.type`` ``realtime``, ``audio.input``/``audio.output`` formats
``audio/pcm`` at 24 kHz, ``server_vad`` turn detection with ``create_response`` on and
``interrupt_response`` off: the model decides when the player's turn ends, Facecast decides the barge-in,
because only the engine knows how much of the answer was played). Event names of both interfaces are read.

Verified only against tests/servers/openai_realtime_server.py, an implementation of the documented
protocol, never against the service (see docs/realtime.md).
"""

from __future__ import annotations

import base64
import json
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
    SpeechStopped,
    ToolResult,
    TranscriptDelta,
    UserInput,
)

__all__ = ["RATE", "OpenAICodec", "FATAL_CODES"]

RATE = 24000
"""The API's PCM rate, both ways (``audio/pcm`` is 24 kHz mono PCM16 little-endian)."""

FATAL_CODES = {
    "invalid_api_key": "unauthorized",
    "insufficient_quota": "rate_limited",
    "rate_limit_exceeded": "rate_limited",
    "session_expired": "service_unavailable",
    "model_not_found": "bad_config",
}
"""``error.code`` values after which the session cannot go on, and Facecast's code for each."""


class OpenAICodec:
    """Commands -> client events (JSON objects), server events -> :mod:`.events` values."""

    input_rate = RATE
    output_rate = RATE

    def __init__(self, transcription_model: str = "gpt-4o-mini-transcribe", silence_ms: int = 500) -> None:
        self.transcription_model = transcription_model
        self.silence_ms = silence_ms

    def setup(self, setup: RealtimeSetup) -> list[dict[str, Any]]:
        """The ``session.update`` sent first."""
        output: dict[str, Any] = {"format": {"type": "audio/pcm", "rate": RATE}}
        if setup.voice:
            output["voice"] = setup.voice
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": setup.instructions,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": {"model": self.transcription_model},
                    "turn_detection": {
                        "type": "server_vad",
                        "silence_duration_ms": self.silence_ms,
                        "create_response": True,
                        "interrupt_response": False,
                    },
                },
                "output": output,
            },
        }
        if setup.actions:
            session["tools"] = [
                {"type": "function", "name": a.name, "description": a.description, "parameters": a.schema()}
                for a in setup.actions
            ]
            session["tool_choice"] = "auto"
        return [{"type": "session.update", "session": session}]

    def encode(self, command: RealtimeCommand) -> list[dict[str, Any]]:
        """The client events carrying out ``command`` (``AppendAudio`` must already be at :data:`RATE`)."""
        if isinstance(command, AppendAudio):
            return [{"type": "input_audio_buffer.append", "audio": base64.b64encode(command.pcm16).decode("ascii")}]
        if isinstance(command, CancelResponse):
            events: list[dict[str, Any]] = [{"type": "response.cancel"}] if command.in_progress else []
            if command.item_id:
                events.append(
                    {
                        "type": "conversation.item.truncate",
                        "item_id": command.item_id,
                        "content_index": 0,
                        "audio_end_ms": max(0, int(command.played_ms)),
                    }
                )
            return events
        if isinstance(command, ToolResult):
            return [
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "function_call_output",
                        "call_id": command.call_id,
                        "output": json.dumps(command.output, ensure_ascii=False),
                    },
                }
            ]  # no response.create: the character already said its line; the next turn sees the result
        if isinstance(command, UserInput):
            return [
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": command.text}],
                    },
                },
                {"type": "response.create"},
            ]
        raise TypeError(f"not a realtime command: {command!r}")

    def decode(self, message: Any) -> list[RealtimeEvent]:
        """The events of one server message (a decoded JSON object); unknown types yield nothing."""
        if not isinstance(message, dict):
            return [RealtimeFailure("service_unavailable", "the realtime API sent a message that is not an object")]
        kind = message.get("type")
        if kind == "session.updated":
            return [SessionReady()]
        if kind == "input_audio_buffer.speech_started":
            return [SpeechStarted()]
        if kind == "input_audio_buffer.speech_stopped":
            return [SpeechStopped()]
        if kind == "conversation.item.input_audio_transcription.delta":
            return [InputTranscript(str(message.get("delta", "")), final=False)]
        if kind == "conversation.item.input_audio_transcription.completed":
            return [InputTranscript(str(message.get("transcript", "")).strip(), final=True)]
        if kind == "response.created":
            response = message.get("response")
            return [ResponseStarted(str(response.get("id", "")) if isinstance(response, dict) else "")]
        if kind in ("response.output_audio.delta", "response.audio.delta"):
            try:
                pcm = base64.b64decode(str(message.get("delta", "")), validate=True)
            except ValueError:
                return [RealtimeFailure("service_unavailable", "the realtime API sent audio that is not base64")]
            return [AudioDelta(pcm[: len(pcm) // 2 * 2], RATE, str(message.get("item_id", "")))]
        if kind in ("response.output_audio_transcript.delta", "response.audio_transcript.delta"):
            return [TranscriptDelta(str(message.get("delta", "")))]
        if kind == "response.function_call_arguments.done":
            raw = str(message.get("arguments", ""))
            try:
                arguments: Any = json.loads(raw) if raw else {}
            except ValueError:
                arguments = raw
            return [FunctionCall(str(message.get("call_id", "")), str(message.get("name", "")), arguments)]
        if kind == "response.done":
            response = message.get("response")
            status = response.get("status") if isinstance(response, dict) else None
            return [ResponseDone(str(status or "completed"))]
        if kind == "error":
            return [_failure(message.get("error"))]
        return []


def _failure(error: Any) -> RealtimeFailure:
    error = error if isinstance(error, dict) else {}
    api_code = str(error.get("code") or error.get("type") or "error")
    text = str(error.get("message") or api_code)[:300]
    code = FATAL_CODES.get(api_code)
    if code is not None:
        return RealtimeFailure(code, f"the realtime API refused the session: {text} ({api_code})", fatal=True)
    return RealtimeFailure("service_unavailable", f"the realtime API reported: {text} ({api_code})")
