"""Every built-in provider and the failover wrappers pass the role-conformance suite (facecast.testing)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from facecast.errors import InputError
from facecast.offline import say
from facecast.services import make_face, make_llm, make_stt, make_tts
from facecast.testing import ConformanceError, check_face, check_llm, check_stt, check_tts
from facecast.types import AudioChunk, ChatMessage, Phoneme, SpeechChunk

SENTENCE = "Bob bought five maps. Would you like one?"


@pytest.fixture(scope="module")
def espeak_speech() -> Iterator[list[SpeechChunk]]:
    import asyncio

    async def run() -> list[SpeechChunk]:
        return [c async for c in make_tts("espeak").synthesize(SENTENCE)]

    yield asyncio.run(run())


async def test_espeak_conforms() -> None:
    result = await check_tts(make_tts("espeak"), SENTENCE)
    assert result.rate == 22050 and any(c.phonemes for c in result.chunks)


async def test_pocketsphinx_conforms() -> None:
    spoken = await say("Hello there, how are you today?", make_tts("espeak"), make_face("phonetic"))
    text = await check_stt(make_stt("pocketsphinx"), spoken.audio, spoken.rate)
    # pocketsphinx is weak and varies on synthetic speech (seen: "oh there are you to do", "so where are you
    # today"); the contract is what is checked here, and that it heard some of the words.
    assert {"hello", "there", "how", "are", "you", "today"} & set(text.split()), text


async def test_echo_conforms() -> None:
    reply = await check_llm(make_llm("echo"), [ChatMessage("user", "good morning")])
    assert "good morning" in reply.lower()


@pytest.mark.parametrize("face", ["phonetic", "learned"])
async def test_faces_conform(face: str, espeak_speech: list[SpeechChunk]) -> None:
    values = await check_face(make_face(face), espeak_speech)
    assert float(values[:, 17].max()) > 0.1  # JawOpen moves during speech


class _GappyTTS:
    """Breaks the contract: the second chunk skips 10 samples."""

    sample_rate = 16000

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        if not text:
            raise InputError("empty")
        yield SpeechChunk(AudioChunk(np.zeros(100, np.float32), 16000, 0), (Phoneme("p", 0, 50),))
        yield SpeechChunk(AudioChunk(np.zeros(100, np.float32), 16000, 110))


class _TwoFinals:
    async def transcribe(self, audio: AsyncIterator[AudioChunk]) -> AsyncIterator[object]:
        from facecast.types import Transcript

        async for _ in audio:
            pass
        yield Transcript("a", True)
        yield Transcript("b", True)


async def test_the_suite_catches_broken_implementations() -> None:
    with pytest.raises(ConformanceError, match="contiguous"):
        await check_tts(_GappyTTS(), "hi")  # type: ignore[arg-type]
    with pytest.raises(ConformanceError, match="2 final transcripts"):
        await check_stt(_TwoFinals(), np.zeros(1600, np.float32), 16000)  # type: ignore[arg-type]


async def test_failover_tts_over_a_real_service_conforms() -> None:
    from tests.remote.conftest import facecast_serve

    from facecast.services import make_remote_role

    service = facecast_serve("tts", "--tts", "espeak")
    try:
        tts = make_remote_role("tts", [service.url])
        result = await check_tts(tts, SENTENCE)
        assert any(c.phonemes for c in result.chunks)
    finally:
        service.kill()


@pytest.mark.parametrize(("voice", "rate", "alphabet"), [("hibari", 24000, "misaki"), ("piper", 22050, "ipa")])
async def test_neural_voices_conform(voice: str, rate: int, alphabet: str) -> None:
    result = await check_tts(make_tts(voice), SENTENCE)
    assert result.rate == rate
    assert {p.alphabet for c in result.chunks for p in c.phonemes} == {alphabet}


async def test_whisper_conforms_on_real_speech() -> None:
    from facecast.audio import read_audio
    from facecast.speechdata import clips

    clip = {c.name: c for c in clips("read")}["sense_and_sensibility_01_austen_64kb-0930"]
    pcm, rate = read_audio(clip.path)
    text = await check_stt(make_stt("whisper"), pcm, rate)
    assert "amiable" in text.lower()


async def test_local_model_conforms() -> None:
    llm = make_llm("local")
    try:
        reply = await check_llm(llm, [ChatMessage("system", "You are Ada, a shopkeeper."), ChatMessage("user", "Hi!")])
        assert reply.strip()
    finally:
        await llm.aclose()  # type: ignore[attr-defined]


async def test_failover_wrappers_of_every_role_conform(espeak_speech: list[SpeechChunk]) -> None:
    """Each role's failover wrapper over a dead member and a working one keeps the role's contract."""
    from tests.remote.conftest import free_port

    from facecast.remote.failover import FailoverFace, FailoverLLM, FailoverSTT

    dead = f"ws://127.0.0.1:{free_port()}"
    stt = make_stt(f"{dead},pocketsphinx")
    llm = make_llm(f"{dead},echo")
    face = make_face(f"{dead},phonetic")
    assert isinstance(stt, FailoverSTT) and isinstance(llm, FailoverLLM) and isinstance(face, FailoverFace)
    try:
        spoken = await say("Hello there, how are you today?", make_tts("espeak"), make_face("phonetic"))
        await check_stt(stt, spoken.audio, spoken.rate)
        assert "good morning" in (await check_llm(llm, [ChatMessage("user", "good morning")])).lower()
        await check_face(face, espeak_speech)
    finally:
        for wrapper in (stt, llm, face):
            await wrapper.aclose()
