"""Settings: defaults, then a TOML file (``--config``), then ``FACECAST_*`` environment variables, then flags.

Every field of :class:`Settings` can be set in each layer: ``--llm-model`` on the command line is
``FACECAST_LLM_MODEL`` in the environment and ``llm_model`` in the TOML file (a ``[facecast]`` table or
the top level). Lists (``livelink``) are comma-separated in the environment and arrays in TOML.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Settings", "load_settings", "LOOPBACK_HOSTS"]

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8765
    token: str = ""
    """Access token; required when binding to anything but loopback."""
    livelink: tuple[str, ...] = ("127.0.0.1:11111",)
    """Live Link Face UDP targets ``HOST:PORT``; ``off`` disables."""
    subject: str = "Facecast"
    """Live Link subject name."""
    device_id: str = "Facecast"
    stt: str = "pocketsphinx"
    llm: str = "echo"
    llm_model: str = ""
    tts: str = "espeak"
    face: str = "phonetic"
    voice: str = "en-us"
    speech_rate: int = 175
    """Words per minute."""
    pitch: int = 50
    persona: str = ""
    """System prompt; empty uses the built-in persona."""
    record: str = ""
    """Folder to keep every utterance in (``--record``); empty keeps nothing."""
    ack_timeout: float = 2.0
    endpoint_ms: int = 300
    """Silence that ends the player's turn (server-side turn detection)."""
    transcript_lead_ms: int = 100
    """Speech-to-text finishes its transcript at a pause this long before the endpoint (0: at the endpoint)."""
    barge_in_ms: int = 400
    """Speech needed to interrupt the character."""
    neurosync_ports: bool = False
    """Also serve on NeuroSync's default ports (5000, 6969, 8000, 7070; 1234 with image endpoints)."""
    neurosync_audio_endpoints: bool = True
    """``/audio_to_blendshapes`` and ``/transcribe`` (NeuroSync's ENABLE_AUDIO_ENDPOINTS)."""
    neurosync_tts_endpoints: bool = True
    """``/generate_speech`` and ``/synthesize_and_blendshapes`` (ENABLE_TTS_ENDPOINTS)."""
    neurosync_embedding_endpoints: bool = True
    """``/get_embedding`` (ENABLE_EMBEDDING_ENDPOINTS); answers 501 until the embeddings extra is installed."""
    neurosync_image_endpoints: bool = False
    """``/process_image`` and ``/process_clip`` (ENABLE_IMAGE_ENDPOINTS); need the images extra and a model."""
    neurosync_face: str = ""
    """Face animator for ``/audio_to_blendshapes``; empty: ``face`` when audio-driven, else ``learned``."""
    neurosync_max_upload_mb: float = 50.0
    """Largest audio or image body the NeuroSync endpoints accept, in MB (2**20 bytes)."""
    embedding_model: str = ""
    """Local sentence-transformers folder for ``/get_embedding``; empty: the bundled all-MiniLM-L6-v2."""
    caption_model: str = ""
    """Local image-captioning model folder (BLIP) for ``/process_image``."""
    clip_model: str = ""
    """Local CLIP model folder for ``/process_clip``."""
    log_level: str = "info"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def requires_token(self) -> bool:
        return self.host not in LOOPBACK_HOSTS


def _coerce(name: str, kind: Any, value: Any) -> Any:
    default = Settings.__dataclass_fields__[name].default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: cannot use {value!r} ({exc})") from None


def _apply(settings: Settings, values: Mapping[str, Any], origin: str) -> Settings:
    known = {f.name: f for f in fields(Settings) if f.name != "extra"}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{origin}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        if value is None:
            continue
        changes[name] = _coerce(name, known[name].type, value)
    return dataclasses.replace(settings, **changes)


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from the three layers. ``overrides`` (from flags) skip ``None`` values.

    Raises :class:`ConfigError` for an unreadable file, an unknown key, or a value of the wrong type.
    """
    settings = Settings()
    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        table = data.get("facecast", data)
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [facecast] must be a table")
        settings = _apply(settings, table, str(path))
    env = os.environ if environ is None else environ
    from_env = {
        key[len("FACECAST_") :].lower(): value
        for key, value in env.items()
        if key.startswith("FACECAST_") and key[len("FACECAST_") :].lower() in Settings.__dataclass_fields__
    }
    settings = _apply(settings, from_env, "environment")
    if overrides:
        settings = _apply(settings, overrides, "command line")
    if settings.requires_token() and not settings.token:
        raise ConfigError(
            f"binding to {settings.host} exposes Facecast beyond this machine: set an access token with "
            "--token or FACECAST_TOKEN (clients then send it as 'Authorization: Bearer TOKEN' or ?token=)"
        )
    return settings
