"""Settings: defaults, then a TOML file (``--config``), then ``FACECAST_*`` environment variables, then flags.

Every field of :class:`Settings` can be set in each layer: ``--llm-model`` on the command line is
``FACECAST_LLM_MODEL`` in the environment and ``llm_model`` in the TOML file (a ``[facecast]`` table or
the top level). Lists (``livelink``) are comma-separated in the environment and arrays in TOML.

Provider options live in their own namespace (:mod:`facecast.registry`): a ``[ROLE.NAME]`` table (e.g.
``[tts.hibari]`` with ``speed = 1.1``; at the top level, ``[tts]`` may then say ``provider = "hibari"``), a
``FACECAST_ROLE_NAME_OPTION`` variable, or ``--set ROLE.NAME.OPTION=VALUE``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .characters import Character
    from .vad import TurnConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["Settings", "load_settings", "parse_set", "LOOPBACK_HOSTS"]

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
    subject_linger_s: float = 30.0
    """Seconds a Live Link subject keeps streaming its idle face after its session ended (a reconnect within
    that time continues it; 0 stops it at once)."""
    vmc: tuple[str, ...] = ()
    """VMC protocol (OSC over UDP) targets ``HOST:PORT`` for VTuber apps (VSeeFace, VNyan, Warudo; port 39539
    when absent): the face as perfect-sync blendshapes plus head and eye bones (:mod:`facecast.engine.vmc`)."""
    vts: str = ""
    """VTube Studio plugin API URL (``ws://localhost:8001``): drive a Live2D model as a plugin
    (:mod:`facecast.engine.vts`); empty: off."""
    vts_token_file: str = ""
    """Where the VTube Studio plugin token is kept; empty: ``vts-tokens.json`` in the config dir
    (``FACECAST_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/facecast``, else ``~/.config/facecast``)."""
    stt: str = "whisper"
    """Speech-to-text: a provider ``NAME[:ARG]`` (``facecast providers``) or a failover list."""
    llm: str = "local"
    """Language model: ``local`` (the embedded chat model), ``echo``, an OpenAI-compatible URL, ``gguf:PATH``..."""
    llm_model: str = ""
    tts: str = "hibari"
    """Text-to-speech: ``hibari`` (the embedded neural voice), ``piper``, ``espeak``..."""
    face: str = "auto"
    """Face animator: ``auto`` (``phonetic`` when the TTS reports phoneme timing, else ``learned`` from the audio),
    ``phonetic``, ``learned``, ``neurosync:PATH``..."""
    realtime: str = ""
    """A speech-to-speech model answering conversations instead of stt+llm+tts (``openai:MODEL``,
    ``gemini:MODEL``; docs/realtime.md); empty: the classic pipeline. Those roles stay its failover."""
    voice: str = ""
    """The TTS's voice; empty: the provider's default (espeak ``en-us``, hibari ``heart``)."""
    speech_rate: int = 175
    """Words per minute."""
    pitch: int = 50
    persona: str = ""
    """System prompt; empty uses the built-in persona."""
    record: str = ""
    """Folder to keep every utterance in (``--record``); empty keeps nothing."""
    outputs: tuple[str, ...] = ()
    """More outputs as URLs: ``livelink://HOST:PORT`` (a Live Link target, beside ``livelink``) and
    ``record:///DIR`` (a recording folder, beside ``record``); another scheme is a configuration error."""
    ack_timeout: float = 2.0
    endpoint_ms: int = 300
    """Silence that ends the player's turn (server-side turn detection)."""
    transcript_lead_ms: int = -1
    """Speech-to-text finishes its transcript at a pause this long before the endpoint (0: at the endpoint;
    -1: 200 ms for speech-to-text that decodes at pauses, such as Whisper, and 100 ms for streaming ones)."""
    barge_in_ms: int = 400
    """Speech needed to interrupt the character."""
    turn_detector: str = "silence"
    """How the player's turn ends: ``silence`` (after ``endpoint_ms``) or ``smart`` (opt-in: a short silence,
    then the end-of-turn model smart-turn v3.2 decides whether the player has finished; :mod:`facecast.turns`).
    Silence is the default: on the real-speech split of ``facecast bench --endpoint`` smart (tuned on the
    neural split) ends complete turns sooner (p50 260 against 290 ms with the model's own time) and cuts off
    fewer paused players (7 against 11 of 13), but one complete turn in four waits ``max_wait_ms``
    (docs/benchmarks.md, "End of turn")."""
    smart_end_ms: int = 200
    """``smart``: silence after which a turn the end-of-turn model calls finished ends."""
    smart_ask_ms: int = 100
    """``smart``: silence after which the model is asked (0, or not below ``smart_end_ms``: at ``smart_end_ms``).
    Asked sooner than the end, its own time passes inside the silence the turn waits for anyway."""
    turn_ask_threshold: float = 0.95
    """``smart``: the probability of "finished" an answer asked before ``smart_end_ms`` needs to end the turn at
    ``smart_end_ms`` (``turn_threshold`` when that is higher); below it, the model is asked again at
    ``smart_end_ms``."""
    max_wait_ms: int = 2500
    """``smart``: silence that ends a turn the model called unfinished (a pause to think)."""
    turn_threshold: float = 0.85
    """``smart``: the model's probability of "finished" at or above which the turn ends at once."""
    turn_wait_threshold: float = 0.2
    """``smart``: the probability at or below which the turn is "unfinished" and waits (up to ``max_wait_ms``);
    in between, the turn ends at ``endpoint_ms`` as with ``silence``."""
    turn_recheck_ms: int = 0
    """``smart``: while an unfinished turn waits, ask the model again after every this much more silence
    (0: never)."""
    turn_text_cues: bool = True
    """``smart``: also judge the pause's transcript (:mod:`facecast.turncues`): a sentence left hanging ("I'd like
    to buy the", "and", "um", a comma) keeps the turn open up to ``max_wait_ms``; a finished one ends an unsure
    pause at once. Pocketsphinx and Vosk write no punctuation: only the words count there."""
    turn_text_wait_ms: int = 600
    """``smart`` with ``turn_text_cues``: silence an unsure pause waits for its transcript before it ends."""
    speaking_rules: str = "on"
    """Rules added to every persona: ``on`` (short spoken sentences of plain words), ``tags`` (also the emotion
    tags the face understands, for models that handle them), ``off`` (the persona as written)."""
    speculate: bool = True
    """Start the LLM on the transcript of a pause before the endpoint, cancelled if the player goes on or the
    final transcript differs (off: no LLM call before the turn ends, e.g. to save a paid API's tokens)."""
    wait_for_player: bool = True
    """A reply never starts while the player speaks: one whose turn ended inside a pause waits when the player
    goes on, and the answer to the whole sentence replaces it unseen (:mod:`facecast.engine.floor`). Off: it
    starts as soon as it is ready, and only a barge-in stops it."""
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
    neurosync_max_upload_mb: float = 256.0
    """Largest audio or image body the NeuroSync endpoints accept, in MB (2**20 bytes): a 10-minute 88.2 kHz
    stereo PCM16 take."""
    embedding_model: str = ""
    """Local sentence-transformers folder for ``/get_embedding``; empty: the bundled all-MiniLM-L6-v2."""
    caption_model: str = ""
    """Local image-captioning model folder (BLIP) for ``/process_image``."""
    clip_model: str = ""
    """Local CLIP model folder for ``/process_clip``."""
    log_level: str = "info"
    allowed_origins: tuple[str, ...] = ()
    """Browser origins (``https://game.example.com``) besides the server's own that may open its WebSockets."""
    allowed_hosts: tuple[str, ...] = ()
    """``Host`` header names accepted besides loopback names and the bound host (DNS-rebinding guard)."""
    webrtc_ice_servers: tuple[str, ...] = ()
    """STUN servers (``stun:HOST:PORT``) the server's WebRTC peers use to find their public address (docs/
    deployment.md, WebRTC); empty: host candidates only (loopback and LAN)."""
    max_sessions: int = 32
    """Engine WebSocket sessions served at once; one more gets ``error`` ``busy`` and is closed (code 1013,
    try again later). 0: no limit."""
    max_recognisers: int = 8
    """Speech-to-text streams decoding at once in this process (an open player turn holds one; so do
    ``/transcribe`` and each request to ``facecast serve stt``). Past it a turn waits up to 1 s, then gets
    ``error`` ``busy`` (the session goes on); ``/transcribe`` answers 503 with ``Retry-After``; a service
    answers ``busy`` at once (a failover client tries its next service). 0: no limit."""
    max_turn_s: float = 60.0
    """Longest player turn (continuous speech, or push-to-talk audio before ``end_of_speech``); the turn is
    dropped with ``error`` ``utterance_too_long``."""
    idle_timeout_s: float = 300.0
    """An engine session that receives nothing from its client for this long gets ``error`` ``idle_timeout``
    and is closed (code 4408); clients that wait longer send ``ping`` (the browser page does every 5 s). 0: never."""
    max_messages_per_s: float = 200.0
    """Frames one engine connection may send per second (bursts of twice that pass); more are dropped with one
    ``error`` ``rate_limited`` a second at most, and the session stays open. 0: no limit."""
    send_timeout_s: float = 10.0
    """A client that leaves a server frame untaken this long (it stopped reading) is disconnected at once and
    its session ended; the server's keepalive ping (20 s) resets one that does not answer. 0: wait forever."""
    session_store: str = "memory"
    """Where resumable engine sessions are kept: ``memory`` (this process: a client resumes on reconnecting to
    it) or ``redis://HOST:PORT/DB`` (``rediss://`` for TLS; a Redis or Valkey server shared by several
    controllers, so a client resumes on any of them; the ``scale`` extra). docs/protocol.md, "Resuming a session"."""
    session_ttl_s: float = 3600.0
    """Seconds a session is kept after its last change (a connected session is kept alive); then a ``resume``
    of it fails with ``resume_failed``."""
    neurosync_max_jobs: int = 2
    """NeuroSync requests processed at once per kind (audio decoding, speech synthesis, embeddings and
    images); more are answered 503 with ``Retry-After: 1`` instead of queueing."""
    bulk_processes: bool = True
    """Animate ``/audio_to_blendshapes`` uploads (learned face) in up to ``neurosync_max_jobs`` worker processes
    at a lower CPU priority than the live sessions (:mod:`facecast.http.bulk`); off: in the server's threads."""
    providers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Provider options by ``ROLE.NAME`` (``[tts.hibari]`` tables, ``FACECAST_TTS_HIBARI_SPEED``, ``--set
    tts.hibari.speed=1.1``), merged in that order; checked and typed when the provider is built."""
    characters: Mapping[str, Character] = field(default_factory=dict)
    """Server-defined characters by name, from ``[characters.NAME]`` TOML tables (persona, tts, voice, llm,
    subject, blink_rate, gaze, head_motion; :mod:`facecast.characters`); a client's hello picks one by name."""

    def turn_config(self, transcript_lead_ms: int = 0) -> TurnConfig:
        """The turn detection these settings ask for; raises :class:`ConfigError` for values out of range."""
        from .vad import TurnConfig

        return TurnConfig(
            end_ms=self.endpoint_ms,
            barge_in_ms=self.barge_in_ms,
            transcript_lead_ms=transcript_lead_ms,
            detector=self.turn_detector,
            smart_end_ms=self.smart_end_ms,
            smart_ask_ms=self.smart_ask_ms,
            ask_threshold=self.turn_ask_threshold,
            max_wait_ms=self.max_wait_ms,
            threshold=self.turn_threshold,
            wait_threshold=self.turn_wait_threshold,
            recheck_ms=self.turn_recheck_ms,
            text_cues=self.turn_text_cues,
            text_wait_ms=self.turn_text_wait_ms,
        )

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


_NOT_FLAT = ("providers", "characters")
_LIMITS = ("max_sessions", "max_recognisers", "idle_timeout_s", "max_messages_per_s", "send_timeout_s")
"""Limits where 0 means "no limit" (negative values are refused)."""
_ROLES = ("stt", "llm", "tts", "face", "realtime")


def _apply(settings: Settings, values: Mapping[str, Any], origin: str) -> Settings:
    known = {f.name: f for f in fields(Settings) if f.name not in _NOT_FLAT}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(f"{origin}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        if value is None:
            continue
        changes[name] = _coerce(name, known[name].type, value)
    return dataclasses.replace(settings, **changes)


def _role_tables(table: Mapping[str, Any], origin: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Split a TOML table into flat settings and provider option tables (``[tts.hibari]`` -> ``tts.hibari``)."""
    flat: dict[str, Any] = {}
    options: dict[str, dict[str, Any]] = {}
    for key, value in table.items():
        if key not in _ROLES or not isinstance(value, dict):
            flat[key] = value
            continue
        for sub, item in value.items():
            if sub == "provider":
                flat[key] = item
            elif isinstance(item, dict):
                options[f"{key}.{sub.lower()}"] = dict(item)
            else:
                raise ConfigError(
                    f"{origin}: [{key}] holds 'provider = NAME' and [{key}.NAME] option tables, not {sub!r}"
                )
    return flat, options


def _merge(into: dict[str, dict[str, Any]], more: Mapping[str, Mapping[str, Any]]) -> None:
    for key, values in more.items():
        into.setdefault(key, {}).update(values)


def _env_options(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``FACECAST_ROLE_NAME_OPTION`` variables of the registered providers' options."""
    from . import registry

    found: dict[str, dict[str, Any]] = {}
    for provider in [*registry.providers(), *registry.providers("realtime")]:
        for option in registry.option_fields(provider):
            value = env.get(registry.env_key(provider.role, provider.name, option))
            if value is not None:
                found.setdefault(f"{provider.role}.{provider.name}", {})[option] = value
    return found


def _characters(data: dict[str, Any], table: dict[str, Any], origin: str) -> dict[str, Character]:
    """Take the ``[characters.NAME]`` tables out of the file's data (top level or inside ``[facecast]``)."""
    from .characters import characters_from_tables

    found: dict[str, Character] = {}
    for holder in (data, table) if table is not data else (data,):
        tables = holder.pop("characters", {})
        if not isinstance(tables, dict):
            raise ConfigError(f"{origin}: 'characters' must hold [characters.NAME] tables")
        found.update(characters_from_tables(tables, origin))
    return found


def parse_set(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set ROLE.NAME.OPTION=VALUE`` flags as option tables; raises :class:`ConfigError` when malformed."""
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        parts = target.strip().split(".")
        if not sep or len(parts) != 3 or parts[0] not in _ROLES or not all(parts):
            raise ConfigError(f"--set {item!r}: expected ROLE.NAME.OPTION=VALUE, e.g. tts.hibari.speed=1.1")
        found.setdefault(f"{parts[0]}.{parts[1].lower()}", {})[parts[2]] = value
    return found


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    token_rule: bool = True,
) -> Settings:
    """Build the settings from the three layers. ``overrides`` (from flags) skip ``None`` values; its ``set``
    entry (a list of ``ROLE.NAME.OPTION=VALUE``) gives provider options.

    Raises :class:`ConfigError` for an unreadable file, an unknown key, or a value of the wrong type, and
    unless ``token_rule`` is off (``facecast doctor`` reports it itself) for a missing or weak token off
    loopback.
    """
    settings = Settings()
    options: dict[str, dict[str, Any]] = {}
    characters: dict[str, Character] = {}
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
        characters = _characters(data, table, str(path))
        if table is not data:  # [facecast] holds the settings; [tts.hibari]... may sit beside it
            _, outside = _role_tables({k: v for k, v in data.items() if k in _ROLES}, str(path))
            _merge(options, outside)
        flat, inside = _role_tables(table, str(path))
        _merge(options, inside)
        settings = _apply(settings, flat, str(path))
    env = os.environ if environ is None else environ
    from_env = {
        key[len("FACECAST_") :].lower(): value
        for key, value in env.items()
        if key.startswith("FACECAST_")
        and key[len("FACECAST_") :].lower() in Settings.__dataclass_fields__
        and key[len("FACECAST_") :].lower() not in _NOT_FLAT
    }
    settings = _apply(settings, from_env, "environment")
    _merge(options, _env_options(env))
    if overrides:
        flags = dict(overrides)
        _merge(options, parse_set(flags.pop("set", None) or ()))
        settings = _apply(settings, flags, "command line")
    if options:
        settings = dataclasses.replace(settings, providers=options)
    if characters:
        settings = dataclasses.replace(settings, characters=characters)
    for name in _LIMITS:
        if getattr(settings, name) < 0:
            raise ConfigError(f"setting {name!r} must be 0 (no limit) or more, not {getattr(settings, name)}")
    for name in ("max_turn_s", "neurosync_max_jobs", "session_ttl_s"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"setting {name!r} must be more than 0, not {getattr(settings, name)}")
    settings.turn_config()  # the turn-taking settings are checked now, not at a client's hello
    from .engine.sessionstore import check_store_spec

    check_store_spec(settings.session_store)
    if token_rule and settings.requires_token() and not settings.token:
        raise ConfigError(
            f"binding to {settings.host} exposes Facecast beyond this machine: set an access token with "
            "--token or FACECAST_TOKEN (clients then send it as 'Authorization: Bearer TOKEN' or ?token=)"
        )
    from .auth import check_token_strength

    if token_rule:
        check_token_strength(settings.host, settings.token)
    return settings
