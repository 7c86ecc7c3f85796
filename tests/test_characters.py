"""Characters from the config, the service catalog that shares their providers, and a session's hello naming
one: only server-defined characters, resolved at the hello."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.engine.test_session import Recorder
from tests.fakes import FakeFace, FakeLLM, FakeSTT, FakeTTS

from facecast.catalog import ServiceCatalog
from facecast.characters import Character, IdleStyle, VoiceSpec, characters_from_tables, default_character
from facecast.config import Settings, load_settings
from facecast.engine.session import EngineSession, SessionConfig
from facecast.errors import ConfigError
from facecast.face.layers import LayerConfig
from facecast.llm.history import persona_prompt
from facecast.services import Services

TOML = """
llm = "echo"
tts = "espeak"

[characters.ada]
persona = "You are Ada, a ship's engineer."
tts = "espeak"
voice = "en-gb"
subject = "Ada"
blink_rate = 20
gaze = 0.5

[characters.bob]
persona = "You are Bob, a lighthouse keeper."
llm = "echo"
head_motion = 2
"""


def test_characters_come_from_toml_tables(tmp_path: Path) -> None:
    config = tmp_path / "facecast.toml"
    config.write_text(TOML)
    settings = load_settings(config, environ={})
    assert set(settings.characters) == {"ada", "bob"}
    ada = settings.characters["ada"]
    assert ada == Character(
        "ada",
        "You are Ada, a ship's engineer.",
        VoiceSpec("espeak", "en-gb"),
        "",
        "Ada",
        IdleStyle(blink_rate=20.0, gaze=0.5),
    )
    assert settings.characters["bob"].idle.head_motion == 2.0 and settings.llm == "echo"
    inside = tmp_path / "inside.toml"
    inside.write_text('[facecast]\nllm = "echo"\n\n[facecast.characters.eve]\npersona = "Eve."\n')
    assert load_settings(inside, environ={}).characters["eve"].persona == "Eve."


@pytest.mark.parametrize(
    "table",
    [
        {"ada": {"url": "http://x"}},
        {"ada": {"persona": 3}},
        {"ada": "x"},
        {"ada": {"blink_rate": "fast"}},
        {"ada": {"blink_rate": 0}},
    ],
)
def test_bad_character_tables_are_config_errors(table: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        characters_from_tables(table)


def test_the_default_idle_style_changes_nothing() -> None:
    assert IdleStyle().layer_config() == LayerConfig()
    fast = IdleStyle(blink_rate=30, gaze=0.0, head_motion=2).layer_config()
    assert fast.blink_interval == (1.0, 3.0) and fast.gaze_yaw == 0.0 and fast.head == 2 * LayerConfig().head


class Counting:
    """Stands in for ``make_role``: one fake per call, counted."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, role: str, spec: str, settings: Settings | None, failover: object) -> Any:
        self.calls.append((role, spec, settings.voice if settings else ""))
        return FakeLLM() if role == "llm" else FakeTTS(rate=16000)


def _defaults() -> Services:
    return Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace())


def test_the_catalog_shares_one_instance_per_spec() -> None:
    settings = Settings(llm="echo", tts="espeak", voice="")
    defaults = _defaults()
    make = Counting()
    catalog = ServiceCatalog(defaults, settings, make=make)
    assert catalog.services_for(default_character(settings)) is defaults  # the server's own: nothing built
    ada = Character("ada", "Ada.", VoiceSpec("espeak", "en-gb"))
    ada_twin = Character("ada2", "Another persona.", VoiceSpec("espeak", "en-gb"))
    services = [catalog.services_for(ada if k % 2 else ada_twin) for k in range(100)]
    assert make.calls == [("tts", "espeak", "en-gb")]  # 100 sessions, one voice: one TTS instance
    assert all(s.tts is services[0].tts and s.llm is defaults.llm and s.stt is defaults.stt for s in services)
    other = catalog.services_for(Character("bob", llm="gguf:bob.gguf"))
    assert other.llm is not defaults.llm and other.tts is defaults.tts
    assert catalog.services_for(Character("bob2", llm="gguf:bob.gguf")).llm is other.llm
    assert len(make.calls) == 2 and len(catalog.instances()) == 6


def test_a_catalog_error_is_not_memoised() -> None:
    calls = []

    def failing(role: str, spec: str, settings: object, failover: object) -> Any:
        calls.append(spec)
        raise ConfigError(f"--{role} {spec} is not installed")

    catalog = ServiceCatalog(_defaults(), Settings(), make=failing)
    for _ in range(2):
        with pytest.raises(ConfigError):
            catalog.services_for(Character("x", llm="nope"))
    assert calls == ["nope", "nope"]


async def _reply(session: EngineSession, rec: Recorder, hello: dict[str, Any]) -> None:
    await session.handle_text(json.dumps({"type": "hello", "workflow": "conversation", "acks": False, **hello}))
    await rec.wait_for("welcome")
    await session.handle_text(json.dumps({"type": "text", "text": "Who are you?"}))
    await rec.wait_for("utterance_end")


async def test_sessions_naming_characters_get_their_personas_and_share_the_catalog() -> None:
    llm = FakeLLM()
    catalog = ServiceCatalog(Services(FakeSTT(), llm, FakeTTS(rate=16000), FakeFace()))
    characters = {"ada": Character("ada", "You are Ada."), "bob": Character("bob", "You are Bob.")}
    sessions = []
    for name in ("ada", "bob"):
        rec = Recorder()
        session = EngineSession(catalog, rec, characters=characters)
        sessions.append(session)
        await _reply(session, rec, {"character": name})
        assert session.character is characters[name]
        assert session.history.system_prompt == persona_prompt(f"You are {name.capitalize()}.")
    ada, bob = sessions
    assert [m[0].content for m in llm.seen] == [
        persona_prompt("You are Ada."),
        persona_prompt("You are Bob."),
    ]  # one LLM
    assert ada.history is not bob.history
    for session in sessions:
        await session.close()


async def test_an_unknown_character_is_refused_and_the_session_stays_usable() -> None:
    rec = Recorder()
    catalog = ServiceCatalog(Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace()))
    session = EngineSession(
        catalog, rec, SessionConfig(persona="Default persona."), characters={"ada": Character("ada", "You are Ada.")}
    )
    for name in ("mallory", "ws://evil.example/llm"):
        await session.handle_text(json.dumps({"type": "hello", "character": name}))
        error = await rec.wait_for("error", 1 if name == "mallory" else 2)
        assert error["code"] == "bad_message" and "unknown character" in error["message"]
    assert session.hello is None and not rec.of_type("welcome")
    assert session.history.system_prompt == persona_prompt("Default persona.") and session.character.name == "default"
    await _reply(session, rec, {})  # a hello without a character: the server's default
    assert session.history.system_prompt == persona_prompt("Default persona.")
    await session.close()


async def test_a_character_with_an_idle_style_gets_its_own_face_layer() -> None:
    rec = Recorder()
    calm = Character("calm", idle=IdleStyle(blink_rate=6, head_motion=0.0))
    session = EngineSession(
        Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace()), rec, characters={"calm": calm}
    )
    await session.handle_text(json.dumps({"type": "hello", "character": "calm"}))
    await rec.wait_for("welcome")
    assert session.timeline.layer.config == calm.idle.layer_config()
    await session.close()


def test_hello_character_must_be_a_short_string() -> None:
    from facecast.protocol import engine as proto

    assert proto.decode_client_text('{"type": "hello", "character": "ada"}') == proto.Hello(character="ada")
    for bad in ('{"type": "hello", "character": 3}', '{"type": "hello", "character": "a\\u0000"}'):
        with pytest.raises(proto.ProtocolError):
            proto.decode_client_text(bad)
    assert "character" not in proto.encode_message(proto.Hello())


def test_a_characters_voice_rate_pitch_and_provider_options_build_its_own_instances() -> None:
    built: list[tuple[str, str, Settings | None]] = []

    def make(role: str, spec: str, settings: Settings | None, failover: object) -> Any:
        built.append((role, spec, settings))
        return FakeLLM() if role == "llm" else FakeTTS(rate=16000)

    settings = Settings(llm="local", tts="hibari", speech_rate=175, pitch=50)
    defaults = _defaults()
    catalog = ServiceCatalog(defaults, settings, make=make)
    [mora, mora_twin, plain] = characters_from_tables(
        {
            "mora": {"speech_rate": 150, "pitch": 30, "options": {"llm.local": {"temperature": 0.2}}},
            "twin": {"speech_rate": 150, "pitch": 30, "options": {"llm.local": {"temperature": 0.2}}},
            "plain": {"persona": "Nothing of its own."},
        }
    ).values()
    services = catalog.services_for(mora)
    assert services.llm is not defaults.llm and services.tts is not defaults.tts
    (llm_role, llm_spec, llm_settings), (tts_role, tts_spec, tts_settings) = built
    assert (llm_role, llm_spec, tts_role, tts_spec) == ("llm", "local", "tts", "hibari")
    assert llm_settings is not None and llm_settings.providers["llm.local"] == {"temperature": 0.2}
    assert tts_settings is not None and (tts_settings.speech_rate, tts_settings.pitch) == (150, 30)
    twin = catalog.services_for(mora_twin)
    assert twin.llm is services.llm and twin.tts is services.tts and len(built) == 2  # the same options: shared
    assert catalog.services_for(plain) is defaults


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"options": {"llm.local": {"temprature": 0.2}}}, "unknown option 'temprature'"),
        ({"options": {"tts.nope": {}}}, "'nope' is unknown"),
        ({"speech_rate": 5}, "speech_rate must be a whole number from 80 to 450"),
        ({"emotion": "smug"}, "emotion must be one of"),
        ({"emotion": "happy", "emotion_intensity": 2}, "between 0 and 1"),
    ],
)
def test_bad_character_voice_options_and_emotions_name_the_problem(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        characters_from_tables({"mora": table})
    assert "[characters.mora]" in str(caught.value)


async def test_a_character_rests_in_its_emotion() -> None:
    from facecast.face.layers import Emotion

    [grump] = characters_from_tables({"grump": {"emotion": "angry", "emotion_intensity": 0.4}}).values()
    rec = Recorder()
    session = EngineSession(
        Services(FakeSTT(), FakeLLM(), FakeTTS(rate=16000), FakeFace()), rec, characters={"grump": grump}
    )
    await session.handle_text(json.dumps({"type": "hello", "character": "grump"}))
    await rec.wait_for("welcome")
    face = session.timeline.layer.frames(0.0, None, 180)  # three seconds of its idle face
    assert face[-1][Emotion.ANGRY.channel] == pytest.approx(0.4, abs=0.02) and face[0][Emotion.ANGRY.channel] < 0.1
    await session.close()
