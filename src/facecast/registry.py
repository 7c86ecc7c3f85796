"""One registry of providers for every role: built-ins and third-party packages alike.

A provider is registered once with :func:`register`: its role, its name (what ``--stt NAME[:ARG]`` says), a
factory, a frozen options dataclass and its declared :class:`Capabilities`. Nothing heavy is imported when
registering; the factory imports its libraries when it is called, and a missing optional library is a
:class:`~facecast.errors.ConfigError` naming the extra to install.

Third-party packages register through the entry-point group ``facecast.providers``: each entry point names
a callable taking no arguments that calls :func:`register`. They are loaded on first use of the registry.

Options of a provider come, lowest to highest, from its options dataclass defaults, the ``[ROLE.NAME]``
TOML table (e.g. ``[tts.hibari]``), the ``FACECAST_ROLE_NAME_FIELD`` environment variables (e.g.
``FACECAST_TTS_HIBARI_SPEED``), and ``--set ROLE.NAME.FIELD=VALUE`` flags; :func:`make_options` coerces
them to the field types and rejects unknown fields.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Literal, TypeAlias, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

__all__ = [
    "Role",
    "ROLES",
    "ALL_ROLES",
    "Capabilities",
    "Provider",
    "ProviderRequest",
    "register",
    "unregister",
    "get",
    "providers",
    "split_spec",
    "make_options",
    "env_key",
    "ENTRY_POINT_GROUP",
]

log = logging.getLogger(__name__)

Role: TypeAlias = Literal["stt", "llm", "tts", "face", "realtime"]
ROLES: tuple[Role, ...] = ("stt", "llm", "tts", "face")
"""The pipeline's roles (what ``providers()`` lists, ``doctor`` checks and the provider table shows)."""
ALL_ROLES: tuple[Role, ...] = (*ROLES, "realtime")
"""Every role a provider may register for: the pipeline's, and ``realtime`` (speech-to-speech models that
replace the pipeline for a session; listed by ``providers("realtime")``)."""
ENTRY_POINT_GROUP = "facecast.providers"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a provider can do, declared so that combinations are checked before anything runs.

    - ``streaming`` (STT): partial transcripts while the audio arrives (False: one decode after the input).
    - ``timing`` (TTS): what its speech chunks carry: ``phonemes`` (and words), ``words`` only, or ``none``
      (a TTS without phonemes needs an audio-driven face).
    - ``alphabet`` (TTS with phoneme timing): one of :data:`facecast.types.ALPHABETS`.
    - ``phonemes_from`` (TTS with phoneme timing): ``voice`` (the voice's own durations) or ``words``
      (grapheme-to-phoneme fitted into the word or character timing the service reports).
    - ``face_input`` (face): ``phonemes`` (needs TTS timing) or ``audio`` (animates any audio).
    - ``lookahead_ms`` (face): audio past a frame needed before the frame can be yielded.
    - ``remote``: the provider talks to a server (the role's work happens elsewhere).
    """

    streaming: bool = False
    timing: Literal["phonemes", "words", "none"] = "none"
    alphabet: str = ""
    phonemes_from: Literal["voice", "words"] = "voice"
    face_input: Literal["phonemes", "audio"] = "phonemes"
    lookahead_ms: int = 0
    remote: bool = False

    def describe(self, role: Role) -> str:
        """A short human description (used by ``facecast providers``)."""
        if role == "stt":
            return "streaming" if self.streaming else "decodes at pauses"
        if role == "tts":
            source = ", fitted into word timing" if self.timing == "phonemes" and self.phonemes_from == "words" else ""
            return f"timing: {self.timing}" + (f" ({self.alphabet}{source})" if self.alphabet else "")
        if role == "face":
            return f"input: {self.face_input}" + (f", lookahead {self.lookahead_ms} ms" if self.lookahead_ms else "")
        return "remote" if self.remote else "local"


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """What a factory gets: ``arg`` (the text after ``NAME:`` in the spec, ``""`` if none), the provider's
    ``options`` (an instance of its options dataclass) and the whole ``settings`` (for shared settings
    such as ``voice``, ``speech_rate`` or ``token``)."""

    arg: str
    options: Any
    settings: Any


@dataclass(frozen=True, slots=True)
class Provider:
    """A registered provider. ``requires`` are importable module names whose absence means the provider is
    not installed (``extra`` then names the ``pip install 'facecast[EXTRA]'`` that brings them)."""

    role: Role
    name: str
    factory: Callable[[ProviderRequest], Any] = field(repr=False)
    options: type | None = None
    caps: Capabilities = Capabilities()
    summary: str = ""
    extra: str = ""
    requires: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    licence: str = ""
    install: str = ""
    """The install line shown when ``requires`` is missing (default: the ``facecast[EXTRA]`` line)."""

    def installed(self) -> bool:
        """True when every module in ``requires`` can be found (without importing it)."""
        from importlib.util import find_spec

        for module in self.requires:
            try:
                if find_spec(module) is None:
                    return False
            except (ImportError, ValueError):
                return False
        return True

    def install_hint(self) -> str:
        if self.install:
            return self.install
        return f"pip install 'facecast[{self.extra}]'" if self.extra else "reinstall facecast"


_PROVIDERS: dict[tuple[Role, str], Provider] = {}
_ALIASES: dict[tuple[Role, str], str] = {}
_loaded_entry_points = False


def _key(name: str) -> str:
    return name.strip().lower()


def register(
    role: Role,
    name: str,
    factory: Callable[[ProviderRequest], Any],
    *,
    options: type | None = None,
    caps: Capabilities | None = None,
    summary: str = "",
    extra: str = "",
    requires: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
    licence: str = "",
    install: str = "",
) -> Provider:
    """Add (or replace) the provider ``name`` of ``role``. ``options`` must be a dataclass whose fields all
    have defaults. Raises :class:`ValueError` for a bad role, name or options class."""
    if role not in ALL_ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ALL_ROLES)}")
    key = _key(name)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", key):
        raise ValueError(f"provider name {name!r} must be lowercase letters, digits, '-', '_' or '.'")
    if options is not None:
        if not dataclasses.is_dataclass(options):
            raise ValueError(f"options of {role} provider {name!r} must be a dataclass")
        missing = [
            f.name
            for f in dataclasses.fields(options)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"options of {role} provider {name!r}: fields without defaults: {missing}")
    provider = Provider(
        role,
        key,
        factory,
        options,
        caps or Capabilities(),
        summary,
        extra,
        requires,
        tuple(_key(a) for a in aliases),
        licence,
        install,
    )
    _PROVIDERS[(role, key)] = provider
    for alias in provider.aliases:
        _ALIASES[(role, alias)] = key
    return provider


def unregister(role: Role, name: str) -> None:
    """Remove a provider and its aliases (tests, or a package replacing a built-in)."""
    provider = _PROVIDERS.pop((role, _key(name)), None)
    if provider is not None:
        for alias in provider.aliases:
            _ALIASES.pop((role, alias), None)


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    from . import providers as _builtins  # noqa: F401 - registers the built-in providers

    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()()
        except Exception as exc:  # a broken plug-in must not take the built-ins down
            log.warning("provider plug-in %s (%s) failed to load: %s", entry.name, entry.value, exc)


def providers(role: Role | None = None) -> list[Provider]:
    """Every registered provider of ``role`` (None: of the pipeline's :data:`ROLES`), in registration order."""
    _load_entry_points()
    return [p for (r, _), p in _PROVIDERS.items() if r == role or (role is None and r in ROLES)]


def get(role: Role, name: str) -> Provider:
    """The provider ``name`` of ``role``; raises :class:`ConfigError` listing the known ones."""
    _load_entry_points()
    key = _key(name)
    key = _ALIASES.get((role, key), key)
    found = _PROVIDERS.get((role, key))
    if found is None:
        known = ", ".join(p.name for p in providers(role))
        raise ConfigError(f"--{role} {name!r} is unknown; available: {known} (see 'facecast providers')")
    return found


def split_spec(spec: str) -> tuple[str, str]:
    """``"NAME:ARG"`` -> ``(NAME, ARG)``. A URL (``http://``, ``ws://``...) is the argument of the provider named
    by its scheme, and a bare ``.gguf`` path the argument of ``gguf``."""
    text = spec.strip()
    lowered = text.lower()
    for scheme in ("http://", "https://", "ws://", "wss://"):
        if lowered.startswith(scheme):
            return scheme[:-3], text
    head, sep, arg = text.partition(":")
    if sep and len(head) > 1 and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", head) and not head.endswith(".gguf"):
        return head.lower(), arg.strip()
    if lowered.endswith(".gguf"):
        return "gguf", text
    return text.lower(), ""


def env_key(role: Role, name: str, option: str) -> str:
    """The environment variable of one provider option: ``FACECAST_TTS_HIBARI_SPEED``."""
    parts = (role, name, option)
    return "FACECAST_" + "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


def _coerce(kind: Any, value: Any, where: str) -> Any:
    origin = get_origin(kind)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(kind) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            return None
        return _coerce(inner[0], value, where)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.strip().lower() in ("1", "true", "yes", "on"):
                    return True
                if value.strip().lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError("not a yes/no value")
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("not a whole number")
            return int(value)
        if kind is float:
            return float(value)
        if kind is str:
            return str(value)
        if origin is tuple:
            if isinstance(value, str):  # "a, b" from the environment or a flag
                return tuple(v.strip() for v in value.split(",") if v.strip())
            return tuple(str(v) for v in value if str(v))  # a TOML list: kept exactly (a stop string "\nPlayer:")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot use {value!r} ({exc})") from None
    return value


def make_options(provider: Provider, values: Mapping[str, Any]) -> Any:
    """An instance of ``provider.options`` from raw ``values`` (strings from the environment or flags, typed
    values from TOML). Raises :class:`ConfigError` for an unknown field or a value of the wrong type."""
    if provider.options is None:
        if values:
            raise ConfigError(f"{provider.role} provider {provider.name!r} takes no options (got {sorted(values)})")
        return None
    hints = get_type_hints(provider.options)
    known = {f.name for f in dataclasses.fields(provider.options)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in known:
            raise ConfigError(
                f"{provider.role}.{provider.name}: unknown option {key!r}; known: {', '.join(sorted(known)) or 'none'}"
            )
        changes[name] = _coerce(hints[name], value, f"{provider.role}.{provider.name}.{name}")
    try:
        return provider.options(**changes)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{provider.role}.{provider.name}: {exc}") from None


def option_fields(provider: Provider) -> Iterator[str]:
    """The option names of ``provider`` (none when it has no options class)."""
    if provider.options is not None:
        yield from (f.name for f in dataclasses.fields(provider.options))
