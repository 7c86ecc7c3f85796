"""Characters: who the server can be, defined by the operator in the TOML config.

A :class:`Character` names its persona, its voice (a TTS provider spec and a voice of that provider), its
language model, its Live Link subject and its idle style. Characters come only from the server's config
(``[characters.NAME]`` tables, :func:`characters_from_tables`); a client picks one by name in its ``hello``
and can never pass a URL, a key or a persona of its own. Empty fields mean "the server's setting".

The services a character needs are resolved and shared by :class:`facecast.catalog.ServiceCatalog`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .actions import Action, actions_from_json
from .errors import ConfigError
from .face.layers import LayerConfig
from .llm.history import RULES

if TYPE_CHECKING:
    from .config import Settings

__all__ = ["VoiceSpec", "IdleStyle", "Character", "default_character", "characters_from_tables", "CHARACTER_KEYS"]


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    """A character's voice: ``tts`` is a provider spec as ``--tts`` takes it (``hibari``, ``espeak``, a failover
    list...; empty: the server's ``tts``), ``voice`` that provider's voice (empty: the server's ``voice``),
    ``speech_rate`` and ``pitch`` as ``--speech-rate`` / ``--pitch`` take them (None: the server's)."""

    tts: str = ""
    voice: str = ""
    speech_rate: int | None = None
    pitch: int | None = None


@dataclass(frozen=True, slots=True)
class IdleStyle:
    """How the face moves on its own. ``blink_rate`` in blinks per minute (15: the default 2-6 s between
    blinks), ``gaze`` and ``head_motion`` scale the default gaze offsets and head motion (1: unchanged, 0:
    still). Raises ConfigError for a non-positive blink rate or a negative scale."""

    blink_rate: float = 15.0
    gaze: float = 1.0
    head_motion: float = 1.0

    def __post_init__(self) -> None:
        if not self.blink_rate > 0 or self.gaze < 0 or self.head_motion < 0:
            raise ConfigError(f"idle style needs blink_rate > 0, gaze >= 0 and head_motion >= 0, got {self}")

    def layer_config(self, base: LayerConfig | None = None) -> LayerConfig:
        """``base`` (default :class:`LayerConfig`) with this style applied; the default style changes nothing."""
        base = base if base is not None else LayerConfig()
        mean = 60.0 / self.blink_rate
        low, high = base.blink_interval
        return replace(
            base,
            blink_interval=(low * mean / 4.0, high * mean / 4.0),
            gaze_yaw=base.gaze_yaw * self.gaze,
            gaze_pitch=base.gaze_pitch * self.gaze,
            head=base.head * self.head_motion,
        )


@dataclass(frozen=True, slots=True)
class Character:
    """A server-defined character. ``persona`` is its system prompt (empty: the built-in persona), ``llm`` a
    provider spec as ``--llm`` takes it (empty: the server's), ``subject`` its Live Link subject (empty: the
    server's; a client's ``hello.subject`` still wins)."""

    name: str
    persona: str = ""
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    llm: str = ""
    subject: str = ""
    idle: IdleStyle = field(default_factory=IdleStyle)
    actions: tuple[Action, ...] = ()
    """What it may do in the game (:mod:`facecast.actions`), unless the engine's hello declares its own."""
    speaking_rules: str = ""
    """The rules added to its persona (``on``, ``tags``, ``off``; :func:`facecast.llm.history.persona_prompt`);
    empty: the server's ``speaking_rules``."""
    options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    """Provider options of its own over the server's, as ``(("llm.local", (("temperature", 0.3),)), ...)``:
    the ``[characters.NAME.options."ROLE.NAME"]`` tables (sampling, a voice's speed...)."""
    emotion: str = ""
    """Its resting emotion (``happy``, ``sad``... as the reply tags name them; empty: neutral)."""
    emotion_intensity: float = 0.3
    """How much of :attr:`emotion` its face shows at rest (0-1)."""

    def provider_options(self) -> dict[str, dict[str, Any]]:
        """:attr:`options` as ``Settings.providers`` holds them."""
        return {key: dict(values) for key, values in self.options}


def default_character(settings: Settings | None = None) -> Character:
    """The character of a session whose hello names none: the server's own settings (``persona``, ``tts``,
    ``voice``, ``llm``, ``subject``), or all defaults without settings."""
    if settings is None:
        return Character("default")
    return Character(
        "default",
        settings.persona,
        VoiceSpec(settings.tts, settings.voice),
        settings.llm,
        settings.subject,
        speaking_rules=settings.speaking_rules,
    )


CHARACTER_KEYS = (
    "persona",
    "tts",
    "voice",
    "llm",
    "subject",
    "blink_rate",
    "gaze",
    "head_motion",
    "speaking_rules",
    "actions",
    "speech_rate",
    "pitch",
    "options",
    "emotion",
    "emotion_intensity",
)
"""The keys a ``[characters.NAME]`` table may hold."""


def characters_from_tables(tables: Mapping[str, Any], origin: str = "config") -> dict[str, Character]:
    """``[characters.NAME]`` tables (NAME -> keys of :data:`CHARACTER_KEYS`) as characters by name.

    Raises :class:`ConfigError` for a table that is not a table, an unknown key, or a value of the wrong type.
    """
    found: dict[str, Character] = {}
    for name, table in tables.items():
        where = f"{origin}: [characters.{name}]"
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where} must be a table of {', '.join(CHARACTER_KEYS)}")
        unknown = sorted(set(table) - set(CHARACTER_KEYS))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; known: {', '.join(CHARACTER_KEYS)}")
        keys = ("persona", "tts", "voice", "llm", "subject", "speaking_rules")
        text = {key: _text(where, key, table.get(key, "")) for key in keys}
        if text["speaking_rules"] and text["speaking_rules"] not in RULES:
            raise ConfigError(f"{where}: speaking_rules must be one of {', '.join(RULES)}")
        idle = IdleStyle(
            **{key: _number(where, key, table[key]) for key in ("blink_rate", "gaze", "head_motion") if key in table}
        )
        voice = VoiceSpec(
            text["tts"],
            text["voice"],
            _whole(where, "speech_rate", table["speech_rate"], 80, 450) if "speech_rate" in table else None,
            _whole(where, "pitch", table["pitch"], 0, 100) if "pitch" in table else None,
        )
        emotion = _text(where, "emotion", table.get("emotion", "")).lower()
        if emotion and emotion not in EMOTIONS:
            raise ConfigError(f"{where}: emotion must be one of {', '.join(EMOTIONS)}, got {emotion!r}")
        intensity = _number(where, "emotion_intensity", table.get("emotion_intensity", 0.3))
        if not 0.0 <= intensity <= 1.0:
            raise ConfigError(f"{where}: emotion_intensity must be between 0 and 1, got {intensity}")
        found[name] = Character(
            name,
            text["persona"],
            voice,
            text["llm"],
            text["subject"],
            idle,
            actions_from_json(table.get("actions", []), f"{where} actions"),
            text["speaking_rules"],
            _options(where, table.get("options", {})),
            emotion,
            intensity,
        )
    return found


EMOTIONS = ("angry", "disgusted", "fearful", "happy", "neutral", "sad", "surprised")
"""The resting emotions a character may have (the reply tags' names)."""


def _whole(where: str, key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{where}: {key} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def _options(where: str, raw: Any) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """``options."ROLE.NAME" = {option = value}`` tables, checked against the registry's providers."""
    from . import registry

    if not isinstance(raw, Mapping):
        raise ConfigError(f'{where}: options must be a table of "ROLE.NAME" tables')
    out = []
    for key, values in raw.items():
        role, _, provider_name = str(key).partition(".")
        if not isinstance(values, Mapping):
            raise ConfigError(f'{where}: options."{key}" must be a table of option = value')
        try:
            provider = registry.get(role, provider_name)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f'{where}: options."{key}": {exc}') from None
        try:
            registry.make_options(provider, values)  # a bad option or value is an error now, not at a hello
        except ConfigError as exc:
            raise ConfigError(f'{where}: options."{key}": {exc}') from None
        out.append((str(key), tuple(sorted(values.items()))))
    return tuple(out)


def _text(where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: {key} must be a string, got {value!r}")
    return value.strip() if key != "persona" else value


def _number(where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {key} must be a number, got {value!r}")
    return float(value)
