"""A misbehaving service server for fault-injection tests, run as a subprocess: ``python fault_server.py MODE ROLE``.

Modes: ``slow`` (the real role, but each output waits ``--delay`` s), ``garbage`` (welcome, then nonsense),
``close`` (accepts the WebSocket, then closes it at once). Prints the same ready line as ``facecast serve``.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from websockets.asyncio.server import ServerConnection, serve

from facecast.llm import EchoLLM
from facecast.protocol import service as sp
from facecast.remote.server import run_forever
from facecast.tts.espeak import EspeakTTS
from facecast.types import ChatMessage, SpeechChunk


class SlowTTS:
    def __init__(self, delay: float, first: float) -> None:
        self.tts = EspeakTTS()
        self.delay = delay
        self.first = first

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        await asyncio.sleep(self.first)
        async for chunk in self.tts.synthesize(text):
            # split into 10 ms pieces so a kill lands in the middle of a sentence
            step = self.tts.sample_rate // 100
            for i in range(0, len(chunk.audio.pcm), step):
                await asyncio.sleep(self.delay)
                yield SpeechChunk(type(chunk.audio)(chunk.audio.pcm[i : i + step], chunk.audio.rate,
                                                    chunk.audio.offset + i),
                                  chunk.phonemes if i == 0 else (), chunk.words if i == 0 else ())


class SlowLLM:
    def __init__(self, delay: float, first: float) -> None:
        self.delay = delay
        self.first = first

    async def stream(self, messages: Sequence[ChatMessage]) -> AsyncIterator[str]:
        await asyncio.sleep(self.first)
        async for token in EchoLLM().stream(messages):
            await asyncio.sleep(self.delay)
            yield token


async def garbage(ws: ServerConnection) -> None:
    async for raw in ws:
        if isinstance(raw, str) and '"hello"' in raw:
            await ws.send(sp.encode(sp.Welcome("tts", 22050)))
        elif isinstance(raw, str) and '"ping"' in raw:
            continue
        else:
            await ws.send(b"\x09\x01garbage")
            await ws.send("{not json")


async def close(ws: ServerConnection) -> None:
    await ws.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("slow", "garbage", "close"))
    parser.add_argument("role", choices=("llm", "tts"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.02)
    parser.add_argument("--first", type=float, default=0.0)
    args = parser.parse_args()
    if args.mode == "slow":
        impl: Any = SlowTTS(args.delay, args.first) if args.role == "tts" else SlowLLM(args.delay, args.first)
        await run_forever(args.role, lambda: impl, "127.0.0.1", args.port, "")
        return
    async with serve(garbage if args.mode == "garbage" else close, "127.0.0.1", args.port) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"facecast serve {args.role}: listening on ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
