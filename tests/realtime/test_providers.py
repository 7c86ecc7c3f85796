"""``--realtime``: the registered providers, their keys and options (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from facecast.config import load_settings
from facecast.errors import ConfigError
from facecast.realtime.gemini import GeminiLive
from facecast.realtime.openai import OpenAIRealtime
from facecast.registry import ROLES, providers
from facecast.services import make_realtime


def test_the_realtime_providers_are_registered_apart_from_the_pipeline_roles() -> None:
    assert [p.name for p in providers("realtime")] == ["openai", "gemini"]
    assert "realtime" not in ROLES and all(p.role != "realtime" for p in providers())


def test_keys_come_from_the_environment_and_never_show_in_a_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-1")
    monkeypatch.setenv("GEMINI_API_KEY", "g-secret-2")
    settings = load_settings(None, overrides={"realtime": "openai:gpt-realtime-mini"})
    openai = make_realtime(settings.realtime, settings)
    assert isinstance(openai, OpenAIRealtime) and openai.model == "gpt-realtime-mini"
    assert openai.options.api_key == "sk-secret-1" and "sk-secret-1" not in repr(openai.options)
    gemini = make_realtime("gemini:gemini-live-x", settings)
    assert isinstance(gemini, GeminiLive) and gemini.describe() == "gemini:gemini-live-x"
    assert "g-secret-2" not in repr(gemini.options)


def test_facecast_variables_and_toml_tables_set_the_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("FACECAST_REALTIME_OPENAI_API_KEY", "sk-from-facecast")
    config = tmp_path / "facecast.toml"
    config.write_text(
        '[realtime]\nprovider = "openai"\n[realtime.openai]\nurl = "ws://127.0.0.1:9/v1/realtime"\nvoice = "coral"\n'
    )
    settings = load_settings(str(config))
    model = make_realtime(settings.realtime, settings)
    assert isinstance(model, OpenAIRealtime)
    assert model.options.api_key == "sk-from-facecast"
    assert model.options.url == "ws://127.0.0.1:9/v1/realtime" and model.options.voice == "coral"


def test_a_missing_key_an_unknown_model_kind_or_a_list_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        make_realtime("openai")
    with pytest.raises(ConfigError, match="GEMINI_API_KEY"):
        make_realtime("gemini")
    with pytest.raises(ConfigError, match="unknown"):
        make_realtime("claude:voice")
    with pytest.raises(ConfigError, match="one model"):
        make_realtime("openai,gemini")
