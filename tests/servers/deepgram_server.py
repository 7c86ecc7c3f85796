"""A local Deepgram live-streaming server: an implementation of the documented protocol for tests, not the
service.

Written from Deepgram's public API reference for ``/v1/listen`` streaming (handshake, query parameters,
``Authorization: Token KEY``, binary PCM frames, the ``KeepAlive`` / ``Finalize`` / ``CloseStream`` control
messages, the ``Results`` / ``Metadata`` / ``UtteranceEnd`` messages and the close codes of its DATA/NET
errors). It really recognises speech: the audio is decoded as it arrives by PocketSphinx 5 (the en-us model
in its wheel), so interim and final results carry a real transcript of real recordings.

What it does, in the documented order:

* The upgrade is refused with HTTP 401 (``INVALID_AUTH``) for a missing or wrong key, 429
  (``TOO_MANY_REQUESTS``) beyond ``max_connections`` open connections, and 400 for an encoding other than
  ``linear16`` or a channel count other than 1; the reason is in the ``dg-error`` header and the JSON body.
* Audio is segmented by endpointing (``endpointing`` ms of silence after speech, from the query; ``false``
  turns it off): each segment gets interim ``Results`` (``is_final`` false, when ``interim_results=true``)
  every ``interim_every_ms`` of audio, then one final ``Results`` (``is_final`` and ``speech_final`` true)
  with its words and their ``start``/``end``, then ``UtteranceEnd`` when ``utterance_end_ms`` was asked.
* ``Finalize`` finalizes the audio received so far: a ``Results`` with ``is_final`` and ``from_finalize``
  true, sent only when audio was buffered (as the reference says, "typically" then). ``CloseStream``
  finalizes what is left, sends ``Metadata`` and closes with 1000. ``KeepAlive`` only keeps the connection.
* No frame for ``idle_timeout`` seconds (10 s by default, as the service) closes with 1011 ``NET-0001``; a
  binary frame that is not whole PCM16 samples closes with 1008 ``DATA-0000``.

Switches for bad-provider tests: ``stall`` (accept and read, never answer), ``garbage`` (answer audio with
text that is not JSON), ``close_after_bytes`` (close with ``close_code`` after that much audio, mid-sentence;
``close_code=0`` drops the TCP connection without a close frame). :func:`blackhole` gives a port that
accepts TCP connections and never answers the handshake.

Run it alone with ``python -m tests.servers.deepgram_server --port 8790 --key KEY``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import socket
import threading
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

__all__ = ["DeepgramServer", "DeepgramServerConfig", "ConnectionLog", "blackhole"]

_FRAME = 160  # 10 ms at 16 kHz: the VAD's frame
_SPEECH_RMS = 0.01  # a 10 ms frame louder than this (about -40 dBFS) is speech
_FILLERS = {"<s>", "</s>", "<sil>", "[noise]", "<unk>"}


@dataclass
class DeepgramServerConfig:
    api_key: str = "test-key"
    max_connections: int = 4
    idle_timeout: float = 10.0
    interim_every_ms: int = 500
    stall: bool = False
    garbage: bool = False
    close_after_bytes: int | None = None
    close_code: int = 1011


@dataclass
class ConnectionLog:
    """What one accepted connection did, for assertions."""

    query: dict[str, str]
    audio_bytes: int = 0
    frames: int = 0
    controls: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None


class DeepgramServer:
    """Serve the protocol on 127.0.0.1 from a thread of its own; ``url`` is the ``ws://.../v1/listen`` to give
    the client. ``connections`` and ``refused`` record what happened, for assertions."""

    def __init__(self, config: DeepgramServerConfig | None = None) -> None:
        self.config = config or DeepgramServerConfig()
        self.connections: list[ConnectionLog] = []
        self.refused: list[int] = []
        self._open = 0
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/listen"

    async def start(self, port: int = 0) -> DeepgramServer:
        """Serve on its own thread and event loop (so a test's loop holds none of the server's tasks)."""
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                self._server = loop.run_until_complete(self._serve(port))
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:  # reported to start()'s caller
                failed.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="deepgram-test-server", daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        if failed:
            raise failed[0]
        return self

    async def _serve(self, port: int) -> Server:
        return await serve(
            self._handle, "127.0.0.1", port, process_request=self._check, ping_interval=None, max_size=2**22
        )

    async def stop(self) -> None:
        """Kill the server: open connections are dropped and the port refuses new ones."""
        loop, server, thread = self._loop, self._server, self._thread
        if loop is None or server is None or thread is None:
            return
        self._server = None

        async def close() -> None:
            server.close(close_connections=True)
            await server.wait_closed()

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)

    async def __aenter__(self) -> DeepgramServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _refuse(self, connection: ServerConnection, status: int, code: str, message: str) -> Response:
        self.refused.append(status)
        body = json.dumps({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})
        response = connection.respond(status, body)
        response.headers["Content-Type"] = "application/json"
        response.headers["dg-error"] = message
        response.headers["dg-request-id"] = str(uuid.uuid4())
        return response

    def _check(self, connection: ServerConnection, request: Request) -> Response | None:
        headers: Headers = request.headers
        scheme, _, key = headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "token" or key != self.config.api_key:
            return self._refuse(connection, 401, "INVALID_AUTH", "Invalid credentials.")
        if self._open >= self.config.max_connections:
            return self._refuse(connection, 429, "TOO_MANY_REQUESTS", "Too many concurrent requests.")
        query = {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query).items()}
        if query.get("encoding", "linear16") != "linear16" or query.get("channels", "1") != "1":
            return self._refuse(connection, 400, "Bad Request", "Only linear16 mono audio is served here.")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self._open += 1
        query = {k: v[-1] for k, v in parse_qs(urlsplit(ws.request.path if ws.request else "").query).items()}
        log = ConnectionLog(query)
        self.connections.append(log)
        try:
            await _Session(ws, self.config, log).run()
        except ConnectionClosed:
            pass
        finally:
            self._open -= 1
            log.close_code = ws.close_code


class _Session:
    """One connection: audio in, PocketSphinx segments, results out."""

    def __init__(self, ws: ServerConnection, config: DeepgramServerConfig, log: ConnectionLog) -> None:
        self.ws, self.config, self.log = ws, config, log
        q = log.query
        self.rate = int(q.get("sample_rate", "16000"))
        self.interim = q.get("interim_results", "false") == "true"
        endpointing = q.get("endpointing", "10")
        self.endpoint = 0 if endpointing == "false" else max(1, int(endpointing) * self.rate // 1000)
        self.utterance_end = int(q.get("utterance_end_ms", "0"))
        self.decoder: Any = None
        self.loading: asyncio.Future[Any] | None = None
        self.total = 0  # samples received
        self.seg_start = 0  # first sample of the open segment
        self.in_seg = False
        self.speech = False
        self.silence = 0
        self.since_interim = 0
        self.last_word_end = 0.0
        self.sha = hashlib.sha256()
        self.request_id = str(uuid.uuid4())

    async def send(self, message: dict[str, Any]) -> None:
        self.log.sent.append(message)
        await self.ws.send(json.dumps(message))

    async def run(self) -> None:
        import pocketsphinx

        # The decoder loads (~0.3 s) while the first frames arrive: the receiver runs from the start.
        loading = asyncio.ensure_future(asyncio.to_thread(pocketsphinx.Decoder, loglevel="FATAL", fwdflat=False))
        self.loading = loading
        try:
            await self._serve_frames()
        finally:
            if not loading.done():
                await asyncio.wait([loading])  # a thread cannot be cancelled: let it finish

    async def _serve_frames(self) -> None:
        async for frame in self._frames():
            if isinstance(frame, bytes):
                if not frame:
                    await self._close_stream()  # the deprecated empty-frame close
                    return
                if len(frame) % 2:
                    await self.ws.close(1008, "DATA-0000")
                    return
                await self._audio(frame)
                continue
            try:
                kind = json.loads(frame).get("type", "")
            except (ValueError, AttributeError):
                kind = ""
            self.log.controls.append(str(kind))
            if self.config.stall:
                continue
            if kind == "Finalize":
                await self._finalize(from_finalize=True)
            elif kind == "CloseStream":
                await self._close_stream()
                return

    async def _frames(self) -> AsyncIterator[str | bytes]:
        """Frames as they arrive. The idle timeout runs on the network side (a receiver task), not on how
        fast the decoder keeps up, as the service's NET-0001 does."""
        inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()

        async def receive() -> None:
            timeout: float | None = self.config.idle_timeout
            closing: asyncio.Task[None] | None = None
            try:
                while True:
                    frame = await asyncio.wait_for(self.ws.recv(), timeout)
                    self.log.audio_bytes += len(frame) if isinstance(frame, bytes) else 0
                    limit = self.config.close_after_bytes
                    if closing is not None:
                        continue  # read on (so the client's close reply is read), use nothing
                    if (
                        limit is not None and self.log.audio_bytes >= limit
                    ):  # close mid-sentence, as soon as it is heard
                        if not self.config.close_code:
                            self.ws.transport.abort()
                            break
                        closing = asyncio.create_task(self.ws.close(self.config.close_code, "NET-0000"))
                        continue
                    inbox.put_nowait(frame)
                    if isinstance(frame, str) and '"CloseStream"' in frame:
                        timeout = None  # nothing more is expected: no idle timeout while the backlog is decoded
            except TimeoutError:
                await self.ws.close(1011, "NET-0001")
            except ConnectionClosed:
                pass
            if closing is not None:
                await closing
            inbox.put_nowait(None)

        receiver = asyncio.create_task(receive())
        try:
            while (frame := await inbox.get()) is not None:
                self.log.frames += 1
                yield frame
        finally:
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)

    async def _audio(self, data: bytes) -> None:
        self.sha.update(data)
        if self.config.stall:
            return
        if self.config.garbage:
            await self.ws.send("<html>502 Bad Gateway</html>")
            return
        pcm = np.frombuffer(data, "<i2")
        if self.decoder is None:
            assert self.loading is not None
            self.decoder = await self.loading
        if not self.in_seg:
            await asyncio.to_thread(self.decoder.start_utt)
            self.in_seg, self.seg_start, self.speech, self.silence = True, self.total, False, 0
        await asyncio.to_thread(self.decoder.process_raw, data, False, False)
        self.total += len(pcm)
        self.since_interim += len(pcm)
        for start in range(0, len(pcm), _FRAME):
            frame = pcm[start : start + _FRAME].astype(np.float32) / 32768.0
            if np.sqrt(np.mean(frame**2)) > _SPEECH_RMS:
                self.speech, self.silence = True, 0
            else:
                self.silence += len(frame)
        if self.speech and self.endpoint and self.silence >= self.endpoint:
            await self._finalize(from_finalize=False)
        elif self.interim and self.since_interim * 1000 >= self.config.interim_every_ms * self.rate:
            self.since_interim = 0
            hyp = self.decoder.hyp()
            await self._results(_clean(hyp.hypstr if hyp else ""), [], is_final=False)

    async def _finalize(self, from_finalize: bool) -> None:
        if not self.in_seg:
            return
        self.in_seg = False
        self.since_interim = 0
        await asyncio.to_thread(self.decoder.end_utt)
        words = []
        for seg in self.decoder.seg():
            word = seg.word.split("(")[0]
            if word.lower() in _FILLERS or word.startswith("++"):
                continue
            start = (self.seg_start + seg.start_frame * _FRAME) / self.rate
            end = (self.seg_start + (seg.end_frame + 1) * _FRAME) / self.rate
            words.append({"word": word, "start": round(start, 3), "end": round(end, 3), "confidence": 0.9})
        for w in words:
            w["punctuated_word"] = w["word"]
        text = " ".join(w["word"] for w in words)
        await self._results(text, words, is_final=True, speech_final=not from_finalize, from_finalize=from_finalize)
        if words:
            self.last_word_end = float(words[-1]["end"])
            if self.utterance_end:
                await self.send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end})

    async def _results(
        self,
        text: str,
        words: list[dict[str, Any]],
        is_final: bool,
        speech_final: bool = False,
        from_finalize: bool = False,
    ) -> None:
        start = self.seg_start / self.rate
        await self.send(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": round(self.total / self.rate - start, 3),
                "start": round(start, 3),
                "is_final": is_final,
                "speech_final": speech_final,
                "channel": {"alternatives": [{"transcript": text, "confidence": 0.9 if text else 0.0, "words": words}]},
                "metadata": {
                    "request_id": self.request_id,
                    "model_info": {"name": "pocketsphinx-en-us", "version": "test", "arch": "pocketsphinx"},
                    "model_uuid": "00000000-0000-0000-0000-000000000000",
                },
                "from_finalize": from_finalize,
            }
        )

    async def _close_stream(self) -> None:
        await self._finalize(from_finalize=False)
        await self.send(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": self.sha.hexdigest(),
                "created": datetime.now(UTC).isoformat(),
                "duration": round(self.total / self.rate, 3),
                "channels": 1,
            }
        )
        await self.ws.close(1000)


def _clean(text: str) -> str:
    return " ".join(w.split("(")[0] for w in text.split() if w.lower() not in _FILLERS)


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[str]:
    """A ``ws://`` URL whose port completes TCP connections (the kernel's backlog) and never answers: a hung
    or firewalled host."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)  # never accepted: connections wait in the backlog, their handshakes unanswered
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/v1/listen"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--key", default="test-key")
    args = parser.parse_args()
    server = await DeepgramServer(DeepgramServerConfig(api_key=args.key)).start(args.port)
    print(f"deepgram protocol server (for tests, not the service) on {server.url}", flush=True)
    try:
        await asyncio.Future()
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(_main())
