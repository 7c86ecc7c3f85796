"""A misbehaving service server for fault-injection tests, run as a subprocess: ``python fault_server.py MODE ROLE``.

Modes: ``slow`` (the real role, but each output waits ``--delay`` s and the first ``--first`` s more),
``hang`` (TTS only: espeak-ng in 10 ms pieces, ``--after`` pieces in all over every request, then no more audio
ever, while pings are still answered: a synthesis stuck, e.g. on a GPU; prints :data:`HUNG` when it sticks),
``garbage`` (welcome, then nonsense), ``close`` (accepts the WebSocket, then closes it at once). Prints the same
ready line as ``facecast serve``; in ``slow`` mode each request also prints :data:`STARTED` when it reaches the
role, so a test can inject a fault once the request is in the server and before any output.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.server import ServerConnection, serve

from facecast.aio import closing
from facecast.llm import EchoLLM
from facecast.protocol import service as sp
from facecast.remote.server import run_forever
from facecast.services import make_face, make_stt
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, ChatMessage, FaceFrames, SpeechChunk, Transcript

STARTED = "fault server: request started"
HUNG = "fault server: synthesis hung"
FACE_PIECE = 5
"""Frames per face block sent by the slow face, so a fault lands in the middle of an utterance."""
T = TypeVar("T")


@dataclass
class Slow:
    """A role's real implementation, each output ``delay`` s late and the first ``first`` s more.

    Each request prints :data:`STARTED` when it reaches the role."""

    delay: float
    first: float

    def __post_init__(self) -> None:
        """Subclasses load their real implementation here."""

    async def late(
        self,
        stream: AsyncIterator[T],
        split: Callable[[T], Iterable[T]] = lambda item: (item,),
    ) -> AsyncIterator[T]:
        print(STARTED, flush=True)
        await asyncio.sleep(self.first)
        async with closing(stream) as items:
            async for item in items:
                for piece in split(item):
                    await asyncio.sleep(self.delay)
                    yield piece


class SlowLLM(Slow):
    def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        return self.late(EchoLLM().stream(messages))


class SlowTTS(Slow):
    """espeak-ng in 10 ms pieces, so a fault lands in the middle of a sentence."""

    def __post_init__(self) -> None:
        self.tts = EspeakTTS()
        self.sample_rate = self.tts.sample_rate

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        def pieces(chunk: SpeechChunk) -> Iterator[SpeechChunk]:
            audio, step = chunk.audio, self.sample_rate // 100
            for i in range(0, len(audio.pcm), step):
                yield SpeechChunk(
                    AudioChunk(audio.pcm[i : i + step], audio.rate, audio.offset + i),
                    chunk.phonemes if i == 0 else (),
                    chunk.words if i == 0 else (),
                )

        return self.late(self.tts.synthesize(text), pieces)


@dataclass
class HangTTS(SlowTTS):
    """:class:`SlowTTS` that delivers ``after`` pieces in all (over every request), then never another."""

    after: int = 0
    delivered: int = 0

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        return self._until_stuck(super().synthesize(text))

    async def _until_stuck(self, pieces: AsyncIterator[SpeechChunk]) -> AsyncIterator[SpeechChunk]:
        async with closing(pieces):
            async for piece in pieces:
                if self.delivered >= self.after:
                    print(HUNG, flush=True)
                    await asyncio.Event().wait()  # stuck: the event loop (and the pongs) go on
                self.delivered += 1
                yield piece


class SlowSTT(Slow):
    """The STT of ``facecast serve stt`` (PocketSphinx)."""

    def __post_init__(self) -> None:
        self.stt = make_stt("pocketsphinx")

    def transcribe(self, audio: AsyncIterable[AudioChunk]) -> AsyncIterator[Transcript]:
        return self.late(self.stt.transcribe(audio))


class SlowFace(Slow):
    """The face of ``facecast serve face`` (phonetic), in blocks of :data:`FACE_PIECE` frames."""

    def __post_init__(self) -> None:
        self.face = make_face("phonetic")

    def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        def pieces(block: FaceFrames) -> Iterator[FaceFrames]:
            for i in range(0, len(block.values), FACE_PIECE):
                yield FaceFrames(block.start + i, block.values[i : i + FACE_PIECE])

        return self.late(self.face.animate(speech), pieces)


SLOW: dict[str, Any] = {"stt": SlowSTT, "llm": SlowLLM, "tts": SlowTTS, "face": SlowFace}


def garbage(role: sp.Role) -> Any:
    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            if isinstance(raw, str) and '"hello"' in raw:
                await ws.send(sp.encode(sp.Welcome(role, 22050 if role == "tts" else 0)))
            elif isinstance(raw, str) and '"ping"' in raw:
                continue
            else:
                await ws.send(b"\x09\x01garbage")
                await ws.send("{not json")

    return handler


async def close(ws: ServerConnection) -> None:
    await ws.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("slow", "hang", "garbage", "close"))
    parser.add_argument("role", choices=sp.ROLES)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--first", type=float, default=0.0)
    parser.add_argument("--after", type=int, default=100)
    args = parser.parse_args()
    if args.mode == "hang":
        impl = HangTTS(0.0, args.first, args.after)
        await run_forever(args.role, lambda: impl, "127.0.0.1", args.port, "")
        return
    if args.mode == "slow":
        impl = SLOW[args.role](args.delay, args.first)
        await run_forever(args.role, lambda: impl, "127.0.0.1", args.port, "")
        return
    async with serve(garbage(args.role) if args.mode == "garbage" else close, "127.0.0.1", args.port) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"facecast serve {args.role}: listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
