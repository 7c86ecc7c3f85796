"""The pool replica's ASGI app without Ray: the real :class:`PoolReplica` under a real uvicorn on loopback,
used by the real service clients. It must answer exactly as ``facecast serve ROLE`` does, apply the same
Host/Origin/token rules, and refuse bad pool settings with a clear error."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from facecast.errors import ConfigError
from facecast.protocol import service as sp
from facecast.remote.client import ClientOptions, RemoteSTT, RemoteTTS
from facecast.scale.cli import parse_pools
from facecast.scale.ray_pools import PoolOptions, build_app, pool_options, require_serve
from facecast.scale.replica import PoolReplica
from facecast.services import make_role

TOKEN = "a-long-enough-pool-token-0123456789"


@asynccontextmanager
async def served(replica: PoolReplica) -> AsyncIterator[str]:
    """``replica``'s app (built as Ray Serve builds it) on a free loopback port; yields its base URL."""
    app = await replica.__serve_build_asgi_app__()
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", loop="asyncio", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn stopped during start-up"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


SLACK = 300
"""espeak-ng's output for one text varies by up to ~250 samples between runs (tests/remote/test_failover.py)."""


async def _speech(tts: object, text: str) -> np.ndarray:
    chunks = [c.audio async for c in tts.synthesize(text)]  # type: ignore[attr-defined]
    assert [c.offset for c in chunks[1:]] == [c.end for c in chunks[:-1]], "contiguous: no gap, no overlap"
    return np.concatenate([c.pcm for c in chunks])


async def _handshake_status(base: str, host: str) -> int:
    """The status line of a WebSocket handshake sent with ``Host: host`` (a client library sets its own)."""
    address, port = base.removeprefix("ws://").split(":")
    reader, writer = await asyncio.open_connection(address, int(port))
    writer.write(
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return int(line.split()[1])


async def test_tts_through_the_asgi_app_equals_the_local_voice() -> None:
    text = "The pool answers exactly like the standalone server."
    async with served(PoolReplica("tts", {"tts": "espeak"})) as base:
        remote = RemoteTTS(f"{base}/", ClientOptions(), 22050)
        try:
            got = await _speech(remote, text)
        finally:
            await remote.aclose()
    want = await _speech(make_role("tts", "espeak"), text)
    assert abs(len(got) - len(want)) < SLACK and np.array_equal(got[:300], want[:300])


async def test_stt_through_the_asgi_app_gives_the_local_transcript() -> None:
    speech = await _speech(make_role("tts", "espeak"), "Hello there, how are you today?")
    rate = make_role("tts", "espeak").sample_rate

    async def feed() -> AsyncIterator[object]:
        from facecast.types import AudioChunk

        for start in range(0, len(speech), 2205):
            yield AudioChunk(speech[start : start + 2205], rate, start)

    want = [t async for t in make_role("stt", "pocketsphinx").transcribe(feed())][-1]
    async with served(PoolReplica("stt", {"stt": "pocketsphinx"})) as base:
        remote = RemoteSTT(base, ClientOptions())
        try:
            got = [t async for t in remote.transcribe(feed())][-1]  # type: ignore[arg-type]
        finally:
            await remote.aclose()
    assert got.text == want.text and got.final


async def test_the_access_rules_apply_before_the_websocket_opens() -> None:
    replica = PoolReplica("tts", {"tts": "espeak", "host": "0.0.0.0", "token": TOKEN})
    async with served(replica) as base:

        async def status(url: str, headers: dict[str, str] | None = None) -> int:
            try:
                async with connect(url, additional_headers=headers, open_timeout=5) as ws:
                    await ws.send(sp.encode(sp.Hello("tts")))
                    assert isinstance(sp.decode_server(str(await ws.recv())), sp.Welcome)
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        assert await status(base) == 401  # no token
        assert await status(base, {"Authorization": "Bearer wrong-token-wrong-token-00"}) == 401
        assert await status(base, {"Authorization": f"Bearer {TOKEN}"}) == 101
        assert await status(f"{base}/?token={TOKEN}") == 101
        bad_origin = {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
        assert await status(base, bad_origin) == 403
        assert await _handshake_status(base, "rebound.example") == 421
        assert await _handshake_status(base, "127.0.0.1") == 101
        assert await status(f"{base}/elsewhere", {"Authorization": f"Bearer {TOKEN}"}) == 404
        # and the real client with the token is served
        remote = RemoteTTS(base, ClientOptions(token=TOKEN), 22050)
        try:
            assert len(await _speech(remote, "Token accepted.")) > 0
        finally:
            await remote.aclose()


def test_a_replica_off_loopback_without_a_token_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="token"):
        PoolReplica("tts", {"tts": "espeak", "host": "0.0.0.0"})
    with pytest.raises(ConfigError, match="unknown role"):
        PoolReplica("video", {})


def test_pool_options_are_checked() -> None:
    assert pool_options({"min_replicas": "2", "max_replicas": 4, "num_gpus": "0.5"}) == PoolOptions(
        min_replicas=2, max_replicas=4, num_gpus=0.5
    )
    for bad in ({"min_replicas": 0}, {"min_replicas": 3, "max_replicas": 2}, {"replicas": 2}, {"num_cpus": "x"}):
        with pytest.raises(ConfigError):
            pool_options(bad)
    with pytest.raises(ConfigError, match="whole number"):
        pool_options({"max_replicas": 2.5})
    options = PoolOptions(num_gpus=0.25, actor_options={"resources": {"tts_gpu": 1}}).deployment_options({"A": "1"})
    assert options["ray_actor_options"] == {
        "num_cpus": 1.0,
        "num_gpus": 0.25,
        "resources": {"tts_gpu": 1},
        "runtime_env": {"env_vars": {"A": "1"}},
    }
    assert options["autoscaling_config"]["target_ongoing_requests"] == 2.0
    pools = parse_pools(["stt", "tts"], {"max_replicas": 3}, ["tts.num_gpus=1", "tts.autoscaling.upscale_delay_s=1"])
    assert pools["stt"].max_replicas == pools["tts"].max_replicas == 3
    assert pools["tts"].num_gpus == 1.0 and pools["tts"].autoscaling["upscale_delay_s"] == 1
    for entry in ("tts", "face.num_gpus=1", "tts.bogus.x=1"):
        with pytest.raises(ConfigError):
            parse_pools(["stt", "tts"], {}, [entry])


def test_build_app_checks_its_args_before_ray() -> None:
    with pytest.raises(ConfigError, match="one role per Serve application"):
        build_app({"roles": ["stt", "tts"]})
    with pytest.raises(ConfigError, match="unknown role"):
        build_app({"role": "video"})
    with pytest.raises(ConfigError, match="unknown build_app args"):
        build_app({"role": "tts", "replicas": 2})


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the scale extra were not installed
    with pytest.raises(ConfigError, match=r"facecast\[scale\]"):
        require_serve()
    with pytest.raises(ConfigError, match=r"facecast\[scale\]"):
        build_app({"role": "tts", "tts": "espeak"})
