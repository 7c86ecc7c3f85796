"""An implementation of the documented ElevenLabs stream-input WebSocket protocol for tests, not the service.

Written from ElevenLabs' public API reference ("Text to Speech / WebSocket",
``GET /v1/text-to-speech/{voice_id}/stream-input``), to test :mod:`facecast.tts.elevenlabs` where
api.elevenlabs.io cannot be reached. It speaks with a real local voice (Facecast's Piper, resampled to the
requested ``pcm_<rate>``), so the audio is real speech, and its character alignment comes from Piper's own word
timing (each word's characters spread evenly over the word; a space spans the gap to the next word).

Protocol, as this server implements it: the handshake must carry ``xi-api-key`` (wrong or missing: HTTP 401),
``model_id`` and ``output_format=pcm_16000|22050|24000|44100`` (else HTTP 400); more than ``max_connections``
at once: HTTP 429. The first message must be ``{"text": " ", ...}``; text messages accumulate until
``"flush": true`` or ``{"text": ""}``, then the text is spoken as messages ``{"audio": <base64 PCM16>,
"isFinal": false, "alignment": {...}, "normalizedAlignment": {...}}`` with ``chars``, ``charStartTimesMs``,
``charDurationsMs`` relative to that message's audio; after ``{"text": ""}`` comes ``{"audio": null,
"isFinal": true}`` and a normal close. A message that is not JSON gets an error frame ``{"message", "error":
"invalid_input_message", "code": 1008}`` and a 1008 close.

Faults (``mode``): ``ok``; ``bad_key`` (every key refused, HTTP 401); ``rate_limit`` (HTTP 429); ``stall``
(accepts and reads, never answers); ``garbage`` (answers with a frame that is not JSON); ``close_mid`` (one audio
message, then the TCP connection is dropped); ``error_frame`` (an error frame and a 1008 close, as on a quota
error). Run alone: ``python tests/servers/elevenlabs_server.py [--port P] [--key K] [--mode M]``; prints
``ready ws://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from facecast.audio import float_to_pcm16
from facecast.tts.piper import PiperTTS
from facecast.tts.resampled import speech_at
from facecast.types import Phoneme, Word

MODES = ("ok", "bad_key", "rate_limit", "stall", "garbage", "close_mid", "error_frame")
PATH = re.compile(r"^/v1/text-to-speech/([^/]+)/stream-input$")
MESSAGE_MS = 200  # audio per message


@dataclass
class Spoken:
    """What the local voice said: audio at the requested rate, its words and (the truth) its phonemes."""

    pcm: np.ndarray
    words: list[Word]
    phonemes: list[Phoneme]


async def speak(voice: PiperTTS, text: str, rate: int) -> Spoken:
    """``text`` spoken by ``voice`` at ``rate``, with Piper's own word and phoneme timing."""
    chunks = [c async for c in speech_at(voice, text, rate)]
    pcm = np.concatenate([c.audio.pcm for c in chunks]) if chunks else np.zeros(0, np.float32)
    words, phonemes = [w for c in chunks for w in c.words], [p for c in chunks for p in c.phonemes]
    return Spoken(pcm, words if len(words) == len(text.split()) else spread(text, phonemes), phonemes)


def spread(text: str, phonemes: list[Phoneme]) -> list[Word]:
    """Every word of ``text`` over the speech, in proportion to its length: for the clauses Piper reports no
    words for (espeak-ng joined some of their words). The real service aligns every character; this keeps the
    alignment complete, approximately, where Piper's own word timing is missing."""
    tokens = text.split()
    if not tokens or not phonemes:
        return []
    start, end = phonemes[0].start, phonemes[-1].end
    weights = np.cumsum([0] + [len(t) + 1 for t in tokens], dtype=np.float64)
    edges = start + (end - start) * weights / weights[-1]
    return [Word(t, int(edges[i]), int(edges[i + 1])) for i, t in enumerate(tokens)]


def characters(words: list[Word]) -> list[tuple[str, int, int]]:
    """(char, start, end) in samples: each word's characters evenly over its span, a space over each gap."""
    out: list[tuple[str, int, int]] = []
    previous_end: int | None = None
    for word in words:
        if previous_end is not None:
            out.append((" ", previous_end, max(previous_end, word.start)))
        n = len(word.text)
        for i, char in enumerate(word.text):
            lo = word.start + (word.end - word.start) * i // n
            hi = word.start + (word.end - word.start) * (i + 1) // n
            out.append((char, lo, hi))
        previous_end = word.end
    return out


def audio_messages(spoken: Spoken, rate: int) -> list[dict[str, object]]:
    """The audio messages for ``spoken``: ~MESSAGE_MS of PCM16 each, with the characters starting in it."""
    step = rate * MESSAGE_MS // 1000
    total = len(spoken.pcm)
    chars = characters(spoken.words)
    out: list[dict[str, object]] = []
    index = 0
    for lo in range(0, total, step):
        hi = min(total, lo + step)
        last = hi == total
        inside = []
        while index < len(chars) and (chars[index][1] < hi or last):
            inside.append(chars[index])
            index += 1
        alignment = {
            "chars": [c for c, _, _ in inside],
            "charStartTimesMs": [round((s - lo) * 1000 / rate) for _, s, _ in inside],
            "charDurationsMs": [round((e - s) * 1000 / rate) for _, s, e in inside],
        }
        out.append(
            {
                "audio": base64.b64encode(float_to_pcm16(spoken.pcm[lo:hi])).decode("ascii"),
                "isFinal": False,
                "normalizedAlignment": alignment,
                "alignment": alignment,
            }
        )
    return out


@dataclass
class ElevenLabsServer:
    """The protocol server (module docstring). ``async with ElevenLabsServer() as server:`` serves on
    ``server.url``; ``server.spoken`` keeps what each request said (its Piper phonemes are the truth)."""

    key: str = "test-key"
    mode: str = "ok"
    max_connections: int = 4
    port: int = 0
    spoken: list[Spoken] = field(default_factory=list)
    received: list[dict[str, object]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    active: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when a connection is being served."""
    _server: Server | None = None
    _voice: PiperTTS | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def __aenter__(self) -> ElevenLabsServer:
        assert self.mode in MODES, self.mode
        self._voice = PiperTTS()
        self._server = await serve(self._handle, "127.0.0.1", self.port, process_request=self._check)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        parts = urlsplit(request.path)
        query = parse_qs(parts.query)
        if not PATH.match(parts.path):
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        if self.mode == "bad_key" or request.headers.get("xi-api-key") != self.key:
            return connection.respond(HTTPStatus.UNAUTHORIZED, '{"detail": {"status": "invalid_api_key"}}\n')
        if self.mode == "rate_limit" or self.active >= self.max_connections:
            return connection.respond(HTTPStatus.TOO_MANY_REQUESTS, '{"detail": {"status": "too_many_requests"}}\n')
        output = query.get("output_format", [""])[0]
        if not query.get("model_id") or output not in ("pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "model_id and a pcm output_format are required\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.active += 1
        self.opened.set()
        try:
            await self._session(ws)
        except ConnectionClosed:
            pass
        finally:
            self.active -= 1

    async def _error(self, ws: ServerConnection, error: str, message: str) -> None:
        await ws.send(json.dumps({"message": message, "error": error, "code": 1008}))
        await ws.close(1008, message[:100])

    async def _session(self, ws: ServerConnection) -> None:
        assert ws.request is not None and self._voice is not None
        rate = int(parse_qs(urlsplit(ws.request.path).query)["output_format"][0].removeprefix("pcm_"))
        first = True
        text = ""
        async for frame in ws:
            try:
                message = json.loads(frame)
                assert isinstance(message, dict) and isinstance(message.get("text"), str)
            except (ValueError, AssertionError):
                await self._error(ws, "invalid_input_message", "Could not parse input message.")
                return
            self.received.append(message)
            if first:
                first = False
                if message["text"] != " ":
                    await self._error(ws, "invalid_input_message", "The first message must have text ' '.")
                    return
                continue
            if self.mode == "stall":
                continue
            end = message["text"] == ""
            text += message["text"]
            if (message.get("flush") or end) and text.strip():
                await self._speak(ws, text, rate)
                text = ""
            if end:
                await ws.send(
                    json.dumps({"audio": None, "isFinal": True, "normalizedAlignment": None, "alignment": None})
                )
                await ws.close()
                return

    async def _speak(self, ws: ServerConnection, text: str, rate: int) -> None:
        assert self._voice is not None
        if self.mode == "garbage":
            await ws.send("\x00\x01 this is not JSON")
            await asyncio.sleep(0.05)
            return
        if self.mode == "error_frame":
            await self._error(ws, "quota_exceeded", "This request exceeds your quota.")
            return
        spoken = await speak(self._voice, text, rate)
        self.spoken.append(spoken)
        for number, message in enumerate(audio_messages(spoken, rate)):
            await ws.send(json.dumps(message))
            if self.mode == "close_mid" and number == 0:
                assert ws.transport is not None
                ws.transport.abort()
                return


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default="test-key")
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args()
    async with ElevenLabsServer(key=args.key, mode=args.mode, port=args.port) as server:
        print("ready", server.url, flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(_main())
