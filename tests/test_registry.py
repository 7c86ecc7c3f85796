"""The provider registry: names, options from every settings layer, capabilities, plug-ins."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from facecast import registry
from facecast.config import load_settings
from facecast.errors import ConfigError
from facecast.face.auto import AutoAnimator
from facecast.face.learned import LearnedAnimator
from facecast.face.phonetic import PhoneticAnimator
from facecast.registry import Capabilities, ProviderRequest, split_spec
from facecast.services import audio_face_spec, build_services, make_role, make_tts
from facecast.tts.espeak import EspeakTTS
from facecast.types import AudioChunk, SpeechChunk


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("espeak", ("espeak", "")),
        ("Espeak:en-gb+f3", ("espeak", "en-gb+f3")),
        ("learned:/models/mouth.json", ("learned", "/models/mouth.json")),
        ("http://localhost:11434/v1", ("http", "http://localhost:11434/v1")),
        ("https://api.example.com/v1", ("https", "https://api.example.com/v1")),
        ("/models/qwen.gguf", ("gguf", "/models/qwen.gguf")),
        ("models/my:odd.gguf", ("gguf", "models/my:odd.gguf")),
        ("gguf:/m/x.gguf", ("gguf", "/m/x.gguf")),
    ],
)
def test_split_spec(spec: str, expected: tuple[str, str]) -> None:
    assert split_spec(spec) == expected


def test_unknown_provider_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"--tts 'nope' is unknown; available: .*espeak"):
        make_role("tts", "nope")


def test_aliases_and_defaults_resolve() -> None:
    assert isinstance(make_tts("espeak-ng"), EspeakTTS)
    assert isinstance(make_role("face", "default"), AutoAnimator)  # --face auto is the default
    assert isinstance(make_role("face", ""), AutoAnimator)


@dataclass(frozen=True, slots=True)
class _Opts:
    speed: float = 1.0
    loud: bool = False
    name: str = "x"
    count: int = 2
    seed: int | None = None
    tags: tuple[str, ...] = ()


class _SilentTTS:
    """A TTS without phoneme timing (like most cloud voices)."""

    def __init__(self, options: _Opts) -> None:
        self.options = options

    @property
    def sample_rate(self) -> int:
        return 16000

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        yield SpeechChunk(AudioChunk(np.zeros(160, np.float32), 16000))


@pytest.fixture
def silent_tts() -> Iterator[registry.Provider]:
    provider = registry.register(
        "tts",
        "silent",
        lambda req: _SilentTTS(req.options),
        options=_Opts,
        caps=Capabilities(timing="none"),
        aliases=("quiet",),
    )
    yield provider
    registry.unregister("tts", "silent")


def test_options_are_typed_from_strings(silent_tts: registry.Provider) -> None:
    opts = registry.make_options(
        silent_tts, {"speed": "1.25", "loud": "yes", "count": "7", "seed": "none", "tags": "a, b"}
    )
    assert opts == _Opts(speed=1.25, loud=True, count=7, seed=None, tags=("a", "b"))
    with pytest.raises(ConfigError, match="unknown option 'sped'; known: count, loud, name, seed, speed, tags"):
        registry.make_options(silent_tts, {"sped": 1})
    with pytest.raises(ConfigError, match="tts.silent.count: cannot use 'many'"):
        registry.make_options(silent_tts, {"count": "many"})
    with pytest.raises(ConfigError, match="tts.silent.loud: cannot use 'maybe'"):
        registry.make_options(silent_tts, {"loud": "maybe"})


def test_provider_options_from_toml_env_and_flags_in_that_order(silent_tts: registry.Provider, tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[facecast]\ntts = "quiet"\n\n[tts.silent]\nspeed = 0.9\nname = "toml"\ncount = 3\n')
    env = {"FACECAST_TTS_SILENT_NAME": "env", "FACECAST_TTS_SILENT_COUNT": "4"}
    settings = load_settings(cfg, environ=env, overrides={"set": ["tts.silent.count=5"]})
    tts = make_tts(settings.tts, settings)
    assert isinstance(tts, _SilentTTS)
    assert tts.options == _Opts(speed=0.9, name="env", count=5)


def test_top_level_role_table_names_the_provider(silent_tts: registry.Provider, tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('port = 9000\n[tts]\nprovider = "silent"\n[tts.silent]\nloud = true\n')
    settings = load_settings(cfg, environ={})
    assert (settings.tts, settings.port) == ("silent", 9000)
    assert settings.providers == {"tts.silent": {"loud": True}}
    cfg.write_text("[tts]\nspeed = 2\n")
    with pytest.raises(ConfigError, match=r"\[tts\] holds 'provider = NAME'"):
        load_settings(cfg, environ={})


@pytest.mark.parametrize("item", ["tts.silent", "tts.silent.speed", "voice.x.y=1", "tts..speed=1"])
def test_malformed_set_flags(item: str) -> None:
    with pytest.raises(ConfigError, match="expected ROLE.NAME.OPTION=VALUE"):
        load_settings(environ={}, overrides={"set": [item]})


def test_unknown_option_is_reported_when_the_provider_is_built() -> None:
    settings = load_settings(environ={}, overrides={"set": ["tts.espeak.colour=blue"]})
    with pytest.raises(ConfigError, match="tts.espeak: unknown option 'colour'; known: pitch, rate, voice"):
        make_tts("espeak", settings)


def test_shared_voice_setting_and_provider_option() -> None:
    settings = load_settings(environ={}, overrides={"voice": "en-gb"})
    assert make_tts("espeak", settings).voice == "en-gb"  # type: ignore[attr-defined]
    settings = load_settings(environ={"FACECAST_TTS_ESPEAK_VOICE": "de"}, overrides={"voice": "en-gb"})
    assert make_tts("espeak", settings).voice == "de"  # type: ignore[attr-defined]


@pytest.mark.parametrize("face", ["phonetic", "PHONETIC"])
def test_a_phoneme_face_never_becomes_the_audio_animator(face: str) -> None:
    """Bug: ``--face default`` and ``--face ""`` made the phoneme animator the puppet/lip-sync animator."""
    settings = load_settings(
        environ={}, overrides={"face": face, "stt": "pocketsphinx", "tts": "espeak", "llm": "echo"}
    )
    assert audio_face_spec(settings) == "learned"
    services = build_services(settings)
    assert isinstance(services.face, PhoneticAnimator)
    assert isinstance(services.audio_face, LearnedAnimator)


def test_an_audio_face_is_its_own_audio_animator() -> None:
    settings = load_settings(
        environ={}, overrides={"face": "learned", "stt": "pocketsphinx", "tts": "espeak", "llm": "echo"}
    )
    services = build_services(settings)
    assert services.audio_face is services.face


def test_phoneme_face_with_a_tts_without_timing_is_refused(silent_tts: registry.Provider) -> None:
    settings = load_settings(
        environ={}, overrides={"tts": "silent", "face": "phonetic", "stt": "pocketsphinx", "llm": "echo"}
    )
    with pytest.raises(ConfigError, match="--face phonetic animates from phoneme timing, which --tts silent"):
        build_services(settings)
    ok = load_settings(environ={}, overrides={"tts": "silent", "face": "learned", "stt": "pocketsphinx", "llm": "echo"})
    assert isinstance(build_services(ok).tts, _SilentTTS)


def test_missing_library_names_the_extra() -> None:
    provider = registry.register(
        "stt", "needs-lib", lambda req: None, extra="cloud", requires=("facecast_no_such_module",)
    )
    try:
        assert not provider.installed()
        with pytest.raises(ConfigError, match=r"not installed: pip install 'facecast\[cloud\]'"):
            make_role("stt", "needs-lib")
    finally:
        registry.unregister("stt", "needs-lib")


def test_third_party_provider_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A package that declares ``facecast.providers`` entry points is found like a built-in."""
    (tmp_path / "fc_plugin_demo.py").write_text(
        "from facecast import registry\n"
        "def setup():\n"
        "    registry.register('llm', 'demo', lambda req: ('demo', req.arg), summary='a plug-in')\n"
    )
    dist = tmp_path / "fc_plugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fc-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[facecast.providers]\ndemo = fc_plugin_demo:setup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    try:
        assert "demo" in [p.name for p in registry.providers("llm")]
        assert make_role("llm", "demo:hello") == ("demo", "hello")
    finally:
        registry.unregister("llm", "demo")
        sys.modules.pop("fc_plugin_demo", None)


def test_a_broken_plug_in_does_not_take_the_built_ins_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    dist = tmp_path / "fc_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fc-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[facecast.providers]\nbroken = fc_no_such_module:setup\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded_entry_points", False)
    assert "espeak" in [p.name for p in registry.providers("tts")]
    assert "fc_no_such_module" in caplog.text


def test_register_validates() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        registry.register("video", "x", lambda req: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="provider name"):
        registry.register("tts", "Bad Name", lambda req: None)

    @dataclass(frozen=True)
    class NoDefault:
        required: int

    with pytest.raises(ValueError, match="fields without defaults"):
        registry.register("tts", "x", lambda req: None, options=NoDefault)


def test_factory_gets_the_argument_and_settings() -> None:
    seen: list[ProviderRequest] = []
    registry.register("face", "probe", lambda req: seen.append(req) or PhoneticAnimator())
    try:
        settings = load_settings(environ={}, overrides={"voice": "x"})
        make_role("face", "probe:abc", settings)
        assert seen[0].arg == "abc" and seen[0].settings is settings and seen[0].options is None
    finally:
        registry.unregister("face", "probe")
