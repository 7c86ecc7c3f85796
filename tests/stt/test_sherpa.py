"""SherpaSTT: sherpa-onnx running Moonshine base-en from the moonshine-cpp package on real speech, the model
folder detection and errors against the real library, and the streaming (transducer) loop with a stand-in
recogniser (no streaming weights ship in any package)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facecast.audio import read_audio
from facecast.errors import ConfigError, InputError
from facecast.services import make_stt
from facecast.speechdata import clips
from facecast.stt import sherpa
from facecast.stt.sherpa import SherpaOptions, SherpaSTT, detect_layout, moonshine_base_en, read_tokenizer_bin
from facecast.testing import check_stt, speech_chunks
from facecast.types import AudioChunk, Transcript

pytest.importorskip("sherpa_onnx")


def touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")
    return folder


@pytest.mark.parametrize(
    ("files", "kind"),
    [
        (
            ["encoder-epoch-99.onnx", "encoder-epoch-99.int8.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt"],
            "transducer",
        ),
        (["encoder_model.ort", "decoder_model_merged.ort", "tokens.txt"], "moonshine2"),
        (
            [
                "preprocess.onnx",
                "encode.int8.onnx",
                "uncached_decode.int8.onnx",
                "cached_decode.int8.onnx",
                "tokens.txt",
            ],
            "moonshine",
        ),
        (["tiny.en-encoder.onnx", "tiny.en-decoder.onnx", "tiny.en-tokens.txt"], "whisper"),
    ],
)
def test_detects_each_model_family(tmp_path: Path, files: list[str], kind: str) -> None:
    layout = detect_layout(touch(tmp_path / "m", *files))
    assert layout.kind == kind
    assert layout.streaming == (kind == "transducer")
    if kind == "transducer":
        assert layout.files["encoder"].name == "encoder-epoch-99.int8.onnx"  # int8 preferred


def test_bad_model_folders_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        SherpaSTT(SherpaOptions(model=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="holds no model sherpa-onnx can run"):
        SherpaSTT(SherpaOptions(model=str(touch(tmp_path / "odd", "model.bin", "README"))))
    # Files with the right names but not models: the real sherpa-onnx refuses them, as a ConfigError.
    broken = touch(tmp_path / "broken", "encoder_model.onnx", "decoder_model_merged.onnx")
    (broken / "tokens.txt").write_text("a 0\n")
    stt = SherpaSTT(SherpaOptions(model=str(broken)))
    with pytest.raises(ConfigError, match="cannot load the moonshine2 model"):
        stt.load()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sherpa_onnx", None)
    with pytest.raises(ConfigError, match=r"facecast\[sherpa\]"):
        SherpaSTT()


def test_tokenizer_bin_reader() -> None:
    long = b"y" * 200
    data = b"\x05<unk>\x01\x00" + bytes([0x80 | (200 & 0x7F), 200 >> 7]) + long + b"\x00"
    assert read_tokenizer_bin(data) == [b"<unk>", b"\x00", long, b""]
    with pytest.raises(ConfigError, match="truncated"):
        read_tokenizer_bin(b"\x05<un")


# -- the real model ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moonshine() -> SherpaSTT:
    pytest.importorskip("moonshine_cpp")
    return SherpaSTT()


async def test_moonshine_base_en_on_real_speech(moonshine: SherpaSTT) -> None:
    clip = {c.name: c for c in clips("read")}["sense_and_sensibility_01_austen_64kb-0930"]
    pcm, rate = read_audio(clip.path)
    text = await check_stt(moonshine, pcm, rate)
    assert text.lower().rstrip(".") == "he might even have been made amiable himself"
    assert moonshine.layout.kind == "moonshine2"


def test_tokens_are_written_once_into_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("moonshine_cpp")
    monkeypatch.setenv("FACECAST_CACHE", str(tmp_path))
    layout = moonshine_base_en()
    tokens = layout.files["tokens"]
    assert tokens.is_relative_to(tmp_path) and len(tokens.read_text().splitlines()) == 32000
    stamp = tokens.stat().st_mtime_ns
    assert moonshine_base_en().files["tokens"].stat().st_mtime_ns == stamp  # not rewritten


async def test_registry_builds_it() -> None:
    pytest.importorskip("moonshine_cpp")
    stt = make_stt("sherpa")
    assert isinstance(stt, SherpaSTT) and stt.layout.kind == "moonshine2"


async def test_too_long_input_is_refused(moonshine: SherpaSTT) -> None:
    async def long_audio() -> Any:
        for i in range(62):
            yield AudioChunk(np.zeros(16000, np.float32), 16000, i * 16000)

    with pytest.raises(InputError, match="longer than"):
        async for _ in moonshine.transcribe(long_audio()):
            pass


# -- the streaming loop, with a stand-in recogniser ----------------------------------------------------------
class FakeStream:
    def __init__(self) -> None:
        self.samples = 0
        self.finished = False
        self.pending = 0

    def accept_waveform(self, rate: int, pcm: np.ndarray) -> None:
        assert rate == 16000 and pcm.dtype == np.float32
        self.samples += len(pcm)
        self.pending += len(pcm)

    def input_finished(self) -> None:
        self.finished = True


class FakeOnline:
    """Says one more word per 0.25 s of audio decoded, as a transducer's partials grow."""

    def __init__(self) -> None:
        self.streams: list[FakeStream] = []

    def create_stream(self) -> FakeStream:
        self.streams.append(FakeStream())
        return self.streams[-1]

    def is_ready(self, stream: FakeStream) -> bool:
        return stream.pending >= 1600

    def decode_stream(self, stream: FakeStream) -> None:
        stream.pending -= 1600

    def get_result(self, stream: FakeStream) -> str:
        words = " ".join(f"w{i}" for i in range((stream.samples - stream.pending) // 4000))
        return words + (" end" if stream.finished else "")


async def test_streaming_models_yield_partials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOnline()
    monkeypatch.setattr(sherpa, "_build", lambda layout, options: fake)
    folder = touch(tmp_path / "zipformer", "encoder.onnx", "decoder.onnx", "joiner.onnx", "tokens.txt")
    stt = make_stt(f"sherpa:{folder}")
    assert isinstance(stt, SherpaSTT) and stt.layout.streaming
    pcm = np.full(48000, 0.1, np.float32)  # 1 s at 48 kHz: resampled to 16 kHz
    results: list[Transcript] = [t async for t in stt.transcribe(speech_chunks(pcm, 48000))]
    assert [r.final for r in results] == [False] * (len(results) - 1) + [True]
    partials = [r.text for r in results[:-1]]
    assert len(partials) >= 3 and all(b.startswith(a + " ") for a, b in zip(partials, partials[1:], strict=False))
    stream = fake.streams[0]
    assert stream.finished and stream.samples == 16000 + sherpa._TAIL  # every sample, then the tail
    assert results[-1].text == "w0 w1 w2 w3 w4 end"
    assert await check_stt(stt, pcm, 48000)
