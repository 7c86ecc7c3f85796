from __future__ import annotations

from pathlib import Path

import pytest

from facecast.config import load_settings
from facecast.errors import ConfigError


def test_defaults_need_nothing() -> None:
    s = load_settings(environ={})
    assert (s.host, s.port, s.llm, s.stt) == ("127.0.0.1", 8765, "local", "whisper")
    assert (s.tts, s.face) == ("hibari", "auto")


def test_layers_file_then_env_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "f.toml"
    cfg.write_text('[facecast]\nvoice = "en-gb+f3"\nport = 9000\nlivelink = ["10.0.0.2:11111", "127.0.0.1:11112"]\n')
    s = load_settings(cfg, environ={"FACECAST_PORT": "9100", "FACECAST_LLM": "http://x/v1"}, overrides={"port": 9200})
    assert s.voice == "en-gb+f3"
    assert s.llm == "http://x/v1"
    assert s.port == 9200
    assert s.livelink == ("10.0.0.2:11111", "127.0.0.1:11112")


def test_env_list_is_comma_separated() -> None:
    assert load_settings(environ={"FACECAST_LIVELINK": "a:1, b:2"}).livelink == ("a:1", "b:2")


@pytest.mark.parametrize(
    ("text", "match"),
    [("nonsense = 1", "unknown setting"), ("port = 'abc'", "cannot use"), ("port = ", "not valid TOML")],
)
def test_bad_config_files(tmp_path: Path, text: str, match: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(cfg, environ={})


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings("/nonexistent/facecast.toml", environ={})


def test_binding_off_loopback_requires_a_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        load_settings(environ={}, overrides={"host": "0.0.0.0"})
    strong = "s3cret-s3cret-s3cret"
    assert load_settings(environ={"FACECAST_TOKEN": strong}, overrides={"host": "0.0.0.0"}).token == strong
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_settings(environ={"FACECAST_TOKEN": "s3cret"}, overrides={"host": "0.0.0.0"})


def test_turn_detection_timings_are_settings() -> None:
    s = load_settings(environ={"FACECAST_ENDPOINT_MS": "250"}, overrides={"barge_in_ms": 600})
    assert (s.endpoint_ms, s.barge_in_ms, s.transcript_lead_ms) == (250, 600, -1)
    assert load_settings(environ={"FACECAST_TRANSCRIPT_LEAD_MS": "0"}).transcript_lead_ms == 0


def test_automatic_transcript_lead_follows_the_speech_to_text() -> None:
    from facecast.services import transcript_lead_ms

    assert transcript_lead_ms(load_settings(environ={})) == 200  # Whisper decodes at pauses
    assert transcript_lead_ms(load_settings(environ={}, overrides={"stt": "pocketsphinx"})) == 100  # streams
    assert transcript_lead_ms(load_settings(environ={"FACECAST_TRANSCRIPT_LEAD_MS": "150"})) == 150
