"""The NeuroSync-compatible API over a real server, called exactly the way NeuroSync's Player calls it.

The Player posts raw WAV bytes with ``Content-Type: application/octet-stream`` to ``/audio_to_blendshapes`` and
reads ``response.json()["blendshapes"]``; it posts ``{"text": ...}`` to ``/synthesize_and_blendshapes`` and splits
the body on ``--`` + the boundary from the Content-Type header, strips each part, splits headers from content on a
blank line and strips trailing CR/LF from the audio. The clients below do the same with httpx (blocking, from a
thread, as the Player's ``requests`` would).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from tests.conftest import LIGHT

from facecast.cli import _settings, build_parser
from facecast.config import Settings, load_settings
from facecast.errors import ConfigError
from facecast.face.arkit import INDEX, LIVE_LINK_COUNT
from facecast.face.phonetic import PhoneticAnimator
from facecast.http.neurosync import Lazy, NeuroSyncBackends
from facecast.llm.echo import EchoLLM
from facecast.offline import say
from facecast.protocol.neurosync import neurosync_finish, neurosync_frame_count
from facecast.server import BackgroundServer, bind_sockets, serving_ports, startup_banner
from facecast.services import Services, resolve
from facecast.tts.espeak import EspeakTTS
from facecast.types import FaceFrames, SpeechChunk, frames_for_samples

from ..fakes import FakeSTT

pytestmark = pytest.mark.timeout(120)


class LoudnessFace:
    """An audio-driven fake animator: JawOpen follows each frame's loudness, HeadYaw is -0.3 (a signed rotation
    NeuroSync clamps to 0) and Happy is 0.25 (an emotion on Facecast's 0-1 scale). Frames are yielded as soon as
    their audio has arrived; it counts the samples it was fed."""

    def __init__(self) -> None:
        self.samples = 0

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        audio: list[np.ndarray] = []
        rate = done = 0
        async for chunk in speech:
            assert not chunk.phonemes  # bare audio: no phoneme timing
            rate = chunk.audio.rate
            audio.append(chunk.audio.pcm)
            self.samples += len(chunk.audio.pcm)
            pcm = np.concatenate(audio)
            ready = len(pcm) * 60 // rate
            if ready > done:
                yield FaceFrames(done, self._frames(pcm, rate, done, ready))
                done = ready
        if rate:
            pcm = np.concatenate(audio)
            final = frames_for_samples(len(pcm), rate)
            if final > done:
                yield FaceFrames(done, self._frames(pcm, rate, done, final))

    @staticmethod
    def _frames(pcm: np.ndarray, rate: int, first: int, stop: int) -> np.ndarray:
        out = np.zeros((stop - first, 68), np.float32)
        for k, i in enumerate(range(first, stop)):
            window = pcm[i * rate // 60 : (i + 1) * rate // 60]
            out[k, INDEX["JawOpen"]] = 8 * float(np.sqrt(np.mean(window**2))) if len(window) else 0.0
        out[:, INDEX["HeadYaw"]] = -0.3
        out[:, INDEX["Happy"]] = 0.25
        return out


def make_backends(audio_face: Any = None, stt: Any = None) -> NeuroSyncBackends:
    services = Services(stt or FakeSTT("hello there"), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    backends = NeuroSyncBackends.from_services(replace(Settings(**LIGHT), livelink=("off",)), services)
    backends.audio_face = Lazy.ready(audio_face or LoudnessFace())
    return backends


async def start(
    settings: Settings | None = None, backends: NeuroSyncBackends | None = None, extra_ports: tuple[int, ...] = ()
) -> BackgroundServer:
    settings = settings or Settings(**LIGHT)
    services = Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    server = BackgroundServer(replace(settings, livelink=("off",)), services, extra_ports=extra_ports)
    server.state.neurosync = backends or make_backends()
    return await server.__aenter__()


@pytest.fixture
async def server() -> AsyncIterator[BackgroundServer]:
    running = await start()
    try:
        yield running
    finally:
        await running.__aexit__(None, None, None)


def wav_file(pcm: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


_speech_cache: dict[int, bytes] = {}


async def speech_wav(rate: int) -> tuple[bytes, int]:
    """Half a second of silence, a spoken sentence, half a second of silence, as a WAV at ``rate``."""
    if rate not in _speech_cache:
        from facecast.audio import resample

        utterance = await say("Maybe we should buy a map.", EspeakTTS(), PhoneticAnimator())
        pcm = resample(utterance.audio, utterance.rate, rate)
        silence = np.zeros(rate // 2, np.float32)
        _speech_cache[rate] = wav_file(np.concatenate([silence, pcm, silence]), rate)
    data = _speech_cache[rate]
    return data, sf.info(io.BytesIO(data)).frames


def player_post_audio(url: str, audio: bytes, **headers: str) -> httpx.Response:
    """NeuroSync Player's post_audio_bytes: raw bytes, Content-Type application/octet-stream."""
    with httpx.Client(timeout=60) as client:
        return client.post(url, content=audio, headers={"Content-Type": "application/octet-stream", **headers})


def player_parse_multipart(response: httpx.Response) -> tuple[bytes | None, Any]:
    """NeuroSync Player's parse_multipart_response, step by step."""
    content_type = response.headers.get("Content-Type")
    assert content_type and "boundary=" in content_type
    boundary = content_type.split("boundary=")[-1].strip()
    audio: bytes | None = None
    frames: Any = None
    for part in response.content.split(("--" + boundary).encode()):
        part = part.strip()
        if not part or part == b"--" or b"\r\n\r\n" not in part:
            continue
        raw_headers, body = part.split(b"\r\n\r\n", 1)
        headers = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.decode().partition(":") for line in raw_headers.split(b"\r\n"))
        )
        if headers.get("Content-Type") == "audio/wav":
            audio = body.rstrip(b"\r\n")
        elif headers.get("Content-Type") == "application/json":
            frames = json.loads(body.decode().strip())
    return audio, frames


def check_frames(frames: list[list[float]], count: int) -> np.ndarray:
    assert len(frames) == count
    assert all(len(frame) == 68 for frame in frames)
    values = np.array(frames, dtype=np.float64)
    assert np.isfinite(values).all()
    assert values[:, :LIVE_LINK_COUNT].min() >= 0.0 and values[:, :LIVE_LINK_COUNT].max() <= 1.0
    return values


# ------------------------------------------------------------------------------------ /audio_to_blendshapes


@pytest.mark.parametrize("rate", [88200, 44100, 22050, 16000])
async def test_audio_to_blendshapes_like_the_player(server: BackgroundServer, rate: int) -> None:
    audio, samples = await speech_wav(rate)
    response = await asyncio.to_thread(player_post_audio, server.http_url + "/audio_to_blendshapes", audio)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    values = check_frames(response.json()["blendshapes"], neurosync_frame_count(samples, rate))
    assert len(values) == pytest.approx(60 * samples / rate, abs=1)  # 60 frames per second of audio
    assert np.all(values[:, INDEX["HeadYaw"]] == 0.0)  # clamped into [0, 1] like NeuroSync's values
    assert np.all(values[:, INDEX["Happy"]] == 25.0)  # emotions on NeuroSync's scale: 0.25 of the full emotion
    jaw = values[:, INDEX["JawOpen"]]
    assert jaw[:25].max() < 0.01 < jaw[30:-30].max()  # the face follows the audio: still in the silence
    assert server.state.neurosync is not None
    face = await server.state.neurosync.audio_face.get()
    assert isinstance(face, LoudnessFace) and face.samples == samples


class StillFace:
    """An audio-driven fake that answers every frame with the same values (one block per chunk, at once)."""

    def __init__(self, values: dict[str, float]) -> None:
        self.frame = np.zeros(68, np.float32)
        for name, value in values.items():
            self.frame[INDEX[name]] = value

    async def animate(self, speech: AsyncIterable[SpeechChunk]) -> AsyncIterator[FaceFrames]:
        samples = done = rate = 0
        async for chunk in speech:
            rate = chunk.audio.rate
            samples += len(chunk.audio.pcm)
            ready = frames_for_samples(samples, rate)
            if ready > done:
                yield FaceFrames(done, np.tile(self.frame, (ready - done, 1)))
                done = ready


@pytest.mark.parametrize(
    ("samples", "rate", "frames"),
    [
        (16000, 16000, 61),
        (16001, 16000, 61),
        (15999, 16000, 60),  # 1 s exactly: NeuroSync's 60 + 1
        (44100, 88200, 31),
        (22050 // 2 + 1, 22050, 31),
        (4000, 48000, 6),
    ],
)
async def test_frame_count_ease_in_and_zeroed_curves_match_neurosync(samples: int, rate: int, frames: int) -> None:
    face = StillFace({"JawOpen": 0.6, "TongueOut": 0.4, "EyeBlinkLeft": 0.3, "HeadYaw": 0.2, "Happy": 0.5})
    running = await start(backends=make_backends(audio_face=face))
    try:
        tone = 0.3 * np.sin(np.arange(samples) * 0.05)
        response = await asyncio.to_thread(
            player_post_audio, running.http_url + "/audio_to_blendshapes", wav_file(tone.astype(np.float32), rate)
        )
    finally:
        await running.__aexit__(None, None, None)
    assert response.status_code == 200, response.text
    values = check_frames(response.json()["blendshapes"], frames)
    ease = np.minimum(1.0, np.arange(frames) / 6)  # NeuroSync eases its first 6 frames in from rest
    np.testing.assert_allclose(values[:, INDEX["JawOpen"]], 0.6 * ease, atol=1e-6)
    for name in ("TongueOut", "EyeBlinkLeft", "HeadYaw"):  # zeroed as NeuroSync zeroes them
        assert np.all(values[:, INDEX[name]] == 0.0), name
    assert np.allclose(values[:, INDEX["Happy"]], 50.0)  # emotions: not eased, not zeroed, on NeuroSync's scale


async def test_a_ten_minute_88k_stereo_take_is_accepted_by_default() -> None:
    rate, seconds = 88200, 600
    stereo = np.zeros((rate * seconds, 2), np.int16)
    stereo[:rate, 0] = (3000 * np.sin(np.arange(rate) * 0.05)).astype(np.int16)
    body = wav_file(stereo, rate)
    assert len(body) > 200 * 2**20  # over the old 50 MB default by far
    running = await start(backends=make_backends(audio_face=StillFace({"JawOpen": 0.5})))
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=120) as client:
            response = await client.post("/audio_to_blendshapes", content=body, headers={"Content-Type": "audio/wav"})
    finally:
        await running.__aexit__(None, None, None)
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["blendshapes"]) == 60 * seconds + 1


async def test_the_upload_limit_hint_names_the_real_variable() -> None:
    running = await start(replace(Settings(**LIGHT), neurosync_max_upload_mb=0.01))
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            response = await client.post(
                "/audio_to_blendshapes",
                content=wav_file(np.zeros(16000, np.float32), 16000),
                headers={"Content-Type": "audio/wav"},
            )
    finally:
        await running.__aexit__(None, None, None)
    assert response.status_code == 413
    assert "FACECAST_NEUROSYNC_MAX_UPLOAD_MB" in response.text
    import os

    assert Settings(**LIGHT).neurosync_max_upload_mb == 256.0
    assert load_settings(environ={**os.environ, "FACECAST_NEUROSYNC_MAX_UPLOAD_MB": "12"}).neurosync_max_upload_mb == 12


async def test_headerless_pcm16_is_read_as_neurosync_reads_it(server: BackgroundServer) -> None:
    """NeuroSync reads a body that is no audio file as raw 16-bit mono PCM at 22050 Hz; so does Facecast, at that
    rate or the one the request names, within the same limits."""
    from facecast.http.neurosync_io import ApiError, decode_audio

    def raw(wav: bytes) -> bytes:
        return sf.read(io.BytesIO(wav), dtype="int16")[0].astype("<i2").tobytes()

    at_22k, samples_22k = await speech_wav(22050)
    at_16k, samples_16k = await speech_wav(16000)
    url = server.http_url + "/audio_to_blendshapes"
    default = await asyncio.to_thread(player_post_audio, url, raw(at_22k))
    by_query = await asyncio.to_thread(player_post_audio, url + "?sample_rate=16000", raw(at_16k))
    by_header = await asyncio.to_thread(player_post_audio, url, raw(at_16k), **{"X-Sample-Rate": "16000"})
    as_wav = await asyncio.to_thread(player_post_audio, url, at_22k)
    for response in (default, by_query, by_header, as_wav):
        assert response.status_code == 200, response.text
    assert len(default.json()["blendshapes"]) == neurosync_frame_count(samples_22k, 22050)
    assert default.json() == as_wav.json()  # the same samples, with or without their WAV header
    assert (
        len(by_query.json()["blendshapes"])
        == len(by_header.json()["blendshapes"])
        == neurosync_frame_count(samples_16k, 16000)
    )
    jaw = check_frames(by_query.json()["blendshapes"], neurosync_frame_count(samples_16k, 16000))[:, INDEX["JawOpen"]]
    assert jaw[:25].max() < 0.01 < jaw[30:-30].max()  # read as audio, not as noise

    refused = [
        (url, raw(at_22k) + b"\x00", 400, "bad_audio"),  # not whole 16-bit samples
        (url, b"RIFF" + raw(at_22k)[4:], 400, "bad_audio"),  # a broken WAV stays a broken WAV
        (url + "?sample_rate=fast", raw(at_22k), 422, "bad_input"),
        (url + "?sample_rate=100", raw(at_22k), 422, "bad_input"),
        (url + "?sample_rate=1000", bytes(2 * 1000 * 1801), 413, "too_long"),  # past the 30-minute cap
    ]
    for target, body, status, code in refused:
        response = await asyncio.to_thread(player_post_audio, target, body)
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    with pytest.raises(ApiError) as caught:  # the decoded-size cap applies to raw PCM too
        decode_audio(raw(at_22k), 0.0, max_decoded_bytes=1000, pcm_rate=22050)
    assert (caught.value.status, caught.value.code) == (413, "too_large")
    with pytest.raises(ApiError) as caught:  # /transcribe decodes files only, as NeuroSync's does
        decode_audio(raw(at_22k), 0.0)
    assert caught.value.code == "bad_audio"


async def test_stereo_float_wav_is_mixed_down(server: BackgroundServer) -> None:
    t = np.arange(24000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    stereo = np.stack([tone, np.zeros_like(tone)], axis=1)
    response = await asyncio.to_thread(
        player_post_audio, server.http_url + "/audio_to_blendshapes", wav_file(stereo, 48000, "FLOAT")
    )
    assert response.status_code == 200
    values = check_frames(response.json()["blendshapes"], 31)  # 0.5 s: NeuroSync's 30 + 1
    assert values[6:, INDEX["JawOpen"]].min() > 0.9  # 8 x RMS of the half-amplitude mix-down (after the ease-in)


async def test_other_audio_content_types_and_flac(server: BackgroundServer) -> None:
    pcm = np.zeros(8000, np.float32)
    buf = io.BytesIO()
    sf.write(buf, pcm, 16000, format="FLAC")
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        flac = await client.post(
            "/audio_to_blendshapes", content=buf.getvalue(), headers={"Content-Type": "audio/flac"}
        )
        bare = await client.post("/audio_to_blendshapes", content=wav_file(pcm, 16000))  # no Content-Type
    assert flac.status_code == 200 and len(flac.json()["blendshapes"]) == 31
    assert bare.status_code == 415  # what any web page may send anywhere (tests/http/test_neurosync_limits.py)


async def test_with_the_real_learned_animator() -> None:
    learned = pytest.importorskip("facecast.face.learned")
    if not learned.DEFAULT_MODEL.is_file():
        pytest.skip(f"the learned face model is not in the tree yet ({learned.DEFAULT_MODEL})")
    running = await start(backends=make_backends(audio_face=learned.LearnedAnimator()))
    try:
        audio, samples = await speech_wav(88200)
        response = await asyncio.to_thread(player_post_audio, running.http_url + "/audio_to_blendshapes", audio)
    finally:
        await running.__aexit__(None, None, None)
    assert response.status_code == 200, response.text
    values = check_frames(response.json()["blendshapes"], neurosync_frame_count(samples, 88200))
    # exactly the model's frames for the whole file (the endpoint decodes, chunks and collects faithfully),
    # finished as NeuroSync finishes its own, emotions on its scale (x 100)
    pcm, rate = sf.read(io.BytesIO(audio), dtype="float32")
    rendered = learned.LearnedAnimator().render(pcm, rate)
    held = np.concatenate([rendered, rendered[-1:]])[: len(values)]  # NeuroSync's extra frame holds the last
    expected = neurosync_finish(held)
    np.testing.assert_allclose(values[:, :LIVE_LINK_COUNT], np.clip(expected[:, :LIVE_LINK_COUNT], 0, 1), atol=2e-6)
    np.testing.assert_allclose(values[:, LIVE_LINK_COUNT:], 100 * expected[:, LIVE_LINK_COUNT:], atol=2e-5)
    jaw = values[:, INDEX["JawOpen"]]
    assert jaw[35:-35].std() > 2 * jaw[:20].std()  # the mouth moves with the speech, not in the silence


async def test_by_default_the_servers_audio_driven_animator_is_used() -> None:
    face = LoudnessFace()
    services = Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator(), audio_face=face)
    async with BackgroundServer(replace(Settings(**LIGHT), livelink=("off",)), services) as running:
        audio, samples = await speech_wav(16000)
        response = await asyncio.to_thread(player_post_audio, running.http_url + "/audio_to_blendshapes", audio)
    assert response.status_code == 200
    assert face.samples == samples and response.json()["blendshapes"][0][INDEX["Happy"]] == 25.0


async def test_no_audio_driven_animator_is_501_with_a_hint() -> None:
    settings = replace(Settings(**LIGHT), neurosync_face="no-such-animator")
    services = Services(FakeSTT(), EchoLLM(), EspeakTTS(), PhoneticAnimator())
    async with BackgroundServer(replace(settings, livelink=("off",)), services) as running:
        audio, _ = await speech_wav(16000)
        response = await asyncio.to_thread(player_post_audio, running.http_url + "/audio_to_blendshapes", audio)
        assert response.status_code == 501
        body = response.json()
        assert body["code"] == "not_available" and "no-such-animator" in body["message"]
        assert "neurosync_face" in body["hint"] and "--face learned" in body["hint"]


# ------------------------------------------------------------------------------ text -> speech (+ face)


async def test_synthesize_and_blendshapes_like_the_player(server: BackgroundServer) -> None:
    def call() -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(
                server.http_url + "/synthesize_and_blendshapes",
                json={"text": "Maybe we should buy a map. Then we will find the boat."},
            )

    response = await asyncio.to_thread(call)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "multipart/mixed; boundary=MY_BOUNDARY_STRING"
    audio, frames = player_parse_multipart(response)
    assert audio is not None and frames is not None
    pcm, rate = sf.read(io.BytesIO(audio), dtype="float32")
    assert pcm.ndim == 1 and rate == 24000 and len(pcm) / rate > 2.0  # NeuroSync's rate, from espeak-ng's 22050
    assert sf.info(io.BytesIO(audio)).frames == len(pcm)  # the Player's stripping took no audio bytes
    values = check_frames(frames, frames_for_samples(len(pcm), rate))
    assert values[:, INDEX["JawOpen"]].max() > 0.2 and values[:, INDEX["MouthClose"]].max() > 0.3  # m, b, p


async def test_generate_speech_and_voices(server: BackgroundServer, caplog: pytest.LogCaptureFixture) -> None:
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as client:
        default = await client.post("/generate_speech", json={"text": "Good morning."})
        british = await client.post("/generate_speech", json={"text": "Good morning.", "voice": "en-gb+f3"})
        kokoro = await client.post("/generate_speech", json={"text": "Good morning.", "voice": "af_bella"})
        george = await client.post("/generate_speech", json={"text": "Good morning.", "voice": "bm_george"})
        unknown = await client.post("/generate_speech", json={"text": "Good morning.", "voice": "nobody-at-all"})
    for response in (default, british, kokoro, george, unknown):
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        info = sf.info(io.BytesIO(response.content))
        # NeuroSync's 24 kHz, from espeak-ng's own 22050 Hz
        assert (info.channels, info.subtype, info.samplerate) == (1, "PCM_16", 24000) and info.duration > 0.4
    assert british.headers["x-facecast-voice"] == "en-gb+f3" and british.content != default.content
    assert "x-facecast-warning" not in default.headers and "x-facecast-warning" not in british.headers
    # a Kokoro name speaks with the closest voice of the configured TTS: same language, same gender
    assert kokoro.headers["x-facecast-voice"] == "en-us+f3" and "af_bella" in kokoro.headers["x-facecast-warning"]
    assert george.headers["x-facecast-voice"] == "en-gb+m3" and "bm_george" in george.headers["x-facecast-warning"]
    # any other unknown name: the default voice, said in the answer and in the log
    assert unknown.headers["x-facecast-voice"] == "en-us" and "nobody-at-all" in unknown.headers["x-facecast-warning"]
    assert "nobody-at-all" in caplog.text


async def test_kokoro_voice_names_with_the_neural_default_voice() -> None:
    from facecast.services import make_tts
    from facecast.tts.hibari import HibariTTS

    settings = replace(Settings(**LIGHT), tts="hibari", livelink=("off",))
    services = Services(FakeSTT(), EchoLLM(), make_tts("hibari", settings), PhoneticAnimator())
    async with BackgroundServer(settings, services) as running:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            answers = {
                voice: await client.post("/generate_speech", json={"text": "Good morning.", "voice": voice})
                for voice in ("", "af_heart", "af_bella", "bf_emma", "am_adam")
            }
            multipart = await client.post("/synthesize_and_blendshapes", json={"text": "Hi.", "voice": "am_adam"})
        backends = running.state.neurosync_backends()
    for voice, response in answers.items():
        assert response.status_code == 200, (voice, response.text)
        assert sf.info(io.BytesIO(response.content)).samplerate == 24000
    assert answers[""].headers["x-facecast-voice"] == answers["af_heart"].headers["x-facecast-voice"] == "heart"
    assert "x-facecast-warning" not in answers["af_heart"].headers  # hibari's heart is distilled from af_heart
    for voice in ("af_bella", "bf_emma"):
        assert (
            answers[voice].headers["x-facecast-voice"] == "heart"
            and voice in answers[voice].headers["x-facecast-warning"]
        )
    assert isinstance(backends.voices["af_bella"], HibariTTS)
    adam = answers["am_adam"]
    assert "am_adam" in adam.headers["x-facecast-warning"] and "male" in adam.headers["x-facecast-warning"]
    if resolve("tts", "piper")[0].installed():  # a male voice: Piper's joe (22.05 kHz, answered at 24 kHz)
        assert adam.headers["x-facecast-voice"] == "en_US-joe-medium"
        audio, frames = player_parse_multipart(multipart)
        assert audio is not None and sf.info(io.BytesIO(audio)).samplerate == 24000
        check_frames(frames, frames_for_samples(sf.info(io.BytesIO(audio)).frames, 24000))
    else:
        assert adam.headers["x-facecast-voice"] == "heart"


# ----------------------------------------------------------------------------------------------- /transcribe


async def test_transcribe_like_the_player(server: BackgroundServer) -> None:
    audio, samples = await speech_wav(16000)
    async with httpx.AsyncClient(base_url=server.http_url, timeout=60) as client:
        plain = await client.post(
            "/transcribe", json={"audio_base64": base64.b64encode(audio).decode("utf-8"), "return_timestamps": False}
        )
        timed = await client.post(
            "/transcribe", json={"audio_base64": base64.b64encode(audio).decode("utf-8"), "return_timestamps": True}
        )
        raw = await client.post("/transcribe", content=audio, headers={"Content-Type": "audio/wav"})
    assert plain.json() == {"status": "success", "transcription": "hello there"}
    assert timed.json()["timestamps"] == [{"start": 0.0, "end": round(samples / 16000, 3), "text": "hello there"}]
    assert raw.json()["transcription"] == "hello there"


async def test_transcribe_with_real_pocketsphinx() -> None:
    from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

    from .conftest import TURN_GRAMMAR

    stt = PocketSphinxSTT(PocketSphinxConfig(grammar=TURN_GRAMMAR))
    running = await start(backends=make_backends(stt=stt))
    try:
        utterance = await say("What is your name?", EspeakTTS(), PhoneticAnimator())
        audio = wav_file(utterance.audio, utterance.rate)
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            response = await client.post("/transcribe", json={"audio_base64": base64.b64encode(audio).decode()})
    finally:
        await running.__aexit__(None, None, None)
    assert response.json() == {"status": "success", "transcription": "what is your name"}


# -------------------------------------------------------------------------------------------------- errors


async def chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    """A streamed upload: sent chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_bad_requests_get_clear_4xx_and_the_server_keeps_serving() -> None:
    running = await start(replace(Settings(**LIGHT), neurosync_max_upload_mb=0.05))  # 52,428 bytes
    big = wav_file(np.zeros(40000, np.float32), 16000)  # 80 KB
    short = wav_file(np.zeros(1000, np.float32), 16000)  # 62 ms
    speech, _ = await speech_wav(16000)
    good = wav_file(sf.read(io.BytesIO(speech), dtype="float32")[0][:20000], 16000)  # 40 KB, 1.25 s
    octet = {"Content-Type": "application/octet-stream"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/audio_to_blendshapes", {"content": b"", "headers": octet}, 400, "empty_body"),
        (
            "/audio_to_blendshapes",
            {"content": b"RIFF\x00\x00not a wav at all" * 10, "headers": octet},
            400,
            "bad_audio",
        ),
        ("/audio_to_blendshapes", {"content": short, "headers": octet}, 422, "audio_too_short"),
        ("/audio_to_blendshapes", {"json": {"audio": "x"}}, 415, "unsupported_media_type"),
        (
            "/audio_to_blendshapes",
            {"content": b"a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
        ),
        ("/audio_to_blendshapes", {"content": big, "headers": octet}, 413, "too_large"),
        ("/audio_to_blendshapes", {"content": chunks(big), "headers": octet}, 413, "too_large"),  # no Content-Length
        ("/transcribe", {"json": {"audio_base64": "!!not base64!!"}}, 400, "bad_base64"),
        ("/transcribe", {"json": {"audio_base64": ""}}, 400, "empty_audio"),
        ("/transcribe", {"json": {"audio_base64": base64.b64encode(b"garbage" * 20).decode()}}, 400, "bad_audio"),
        ("/transcribe", {"json": {"return_timestamps": True}}, 422, "bad_input"),
        (
            "/transcribe",
            {"content": b"hello", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            "/generate_speech",
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "bad_json",
        ),
        ("/generate_speech", {"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "empty_body"),
        ("/generate_speech", {"json": {"text": 5}}, 422, "bad_input"),
        ("/generate_speech", {"json": ["text"]}, 422, "bad_input"),
        ("/generate_speech", {"json": {"text": "   "}}, 400, "empty_text"),
        ("/generate_speech", {"json": {"text": "word " * 5000}}, 422, "bad_input"),  # over `say`'s limit
        (
            "/synthesize_and_blendshapes",
            {"content": b"Hello", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        ("/synthesize_and_blendshapes", {"json": {}}, 422, "bad_input"),
        ("/get_embedding", {"json": {"text": ""}}, 400, "empty_text"),
    ]
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            for path, request, status, code in cases:
                response = await client.post(path, **request)
                assert response.status_code == status, (path, request.get("headers"), response.text)
                body = response.json()
                assert body["status"] == "error" and body["code"] == code and body["message"], body
            missing = await client.post("/transcribe", json={"return_timestamps": True})
            assert missing.json()["errors"][0]["field"] == "audio_base64"
            too_big = await client.post("/audio_to_blendshapes", content=big, headers=octet)
            assert "over the limit of 0.05 MB" in too_big.json()["message"]
            after = await client.post("/audio_to_blendshapes", content=good, headers=octet)
            assert after.status_code == 200 and len(after.json()["blendshapes"]) == 76  # 1.25 s: 75 + 1 as NeuroSync
            assert (await client.get("/health")).json()["status"] == "ok"
    finally:
        await running.__aexit__(None, None, None)


async def test_a_client_that_hangs_up_mid_upload_does_not_break_the_server(server: BackgroundServer) -> None:
    host, port = "127.0.0.1", server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /audio_to_blendshapes HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: 100000\r\n\r\nRIFF"
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    audio, _ = await speech_wav(16000)
    response = await asyncio.to_thread(player_post_audio, server.http_url + "/audio_to_blendshapes", audio)
    assert response.status_code == 200


# --------------------------------------------------------------------- groups, docs, token, ports, CLI


async def test_endpoint_groups_switch_like_neurosync_flags() -> None:
    settings = replace(
        Settings(**LIGHT),
        neurosync_audio_endpoints=False,
        neurosync_tts_endpoints=True,
        neurosync_embedding_endpoints=False,
    )
    running = await start(settings)
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            off = await client.post("/audio_to_blendshapes", content=b"x")
            image = await client.post("/process_image", content=b"x")  # off by default
            on = await client.post("/generate_speech", json={"text": "Hi."})
            paths = (await client.get("/openapi.json")).json()["paths"]
    finally:
        await running.__aexit__(None, None, None)
    assert off.status_code == 404 and off.json()["code"] == "endpoint_disabled"
    assert "FACECAST_NEUROSYNC_AUDIO_ENDPOINTS" in off.json()["hint"]
    assert image.status_code == 404 and "FACECAST_NEUROSYNC_IMAGE_ENDPOINTS" in image.json()["hint"]
    assert on.status_code == 200
    assert "/generate_speech" in paths and "/synthesize_and_blendshapes" in paths
    assert not {"/audio_to_blendshapes", "/transcribe", "/get_embedding", "/process_image"} & set(paths)


async def test_openapi_docs(server: BackgroundServer) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as client:
        docs = await client.get("/docs")
        spec = (await client.get("/openapi.json")).json()
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    raw = spec["paths"]["/audio_to_blendshapes"]["post"]
    assert "application/octet-stream" in raw["requestBody"]["content"]
    assert {"400", "413", "415", "422", "501"} <= set(raw["responses"])
    speech = spec["paths"]["/synthesize_and_blendshapes"]["post"]["requestBody"]["content"]["application/json"]
    assert speech["schema"]["required"] == ["text"]


async def test_access_token_when_set() -> None:
    running = await start(replace(Settings(**LIGHT), token="s3cret"))
    try:
        async with httpx.AsyncClient(base_url=running.http_url, timeout=60) as client:
            anonymous = await client.post("/generate_speech", json={"text": "Hi."})
            wrong = await client.post("/generate_speech", json={"text": "Hi."}, headers={"API-Key": "nope"})
            api_key = await client.post("/generate_speech", json={"text": "Hi."}, headers={"API-Key": "s3cret"})
            bearer = await client.post(
                "/generate_speech", json={"text": "Hi."}, headers={"Authorization": "Bearer s3cret"}
            )
    finally:
        await running.__aexit__(None, None, None)
    assert anonymous.status_code == wrong.status_code == 401 and anonymous.json()["code"] == "unauthorized"
    assert api_key.status_code == bearer.status_code == 200


async def test_one_server_many_ports() -> None:
    running = await start(extra_ports=(0, 0))
    try:
        assert len(set(running.ports)) == 3
        audio, _ = await speech_wav(16000)
        for port in running.ports:
            response = await asyncio.to_thread(
                player_post_audio, f"http://127.0.0.1:{port}/audio_to_blendshapes", audio
            )
            assert response.status_code == 200
    finally:
        await running.__aexit__(None, None, None)


def test_neurosync_default_ports_and_flag() -> None:
    assert serving_ports(Settings(**LIGHT)) == [8765]
    on = replace(Settings(**LIGHT), neurosync_ports=True)
    assert serving_ports(on) == [8765, 5000, 6969, 8000, 7070]
    assert serving_ports(replace(on, neurosync_image_endpoints=True, port=5000)) == [5000, 6969, 8000, 7070, 1234]
    assert "5000, 6969, 8000, 7070" in startup_banner(on)
    args = build_parser().parse_args(["run", "--neurosync-ports"])
    assert _settings(args).neurosync_ports is True
    assert _settings(build_parser().parse_args(["run"])).neurosync_ports is False


def test_a_busy_port_is_a_config_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} is in use"):
            bind_sockets("127.0.0.1", [0, port])
