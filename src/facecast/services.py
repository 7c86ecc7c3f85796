"""Build the four role implementations named by the settings (``--stt``, ``--llm``, ``--tts``, ``--face``).

Every local provider is resolved through :mod:`facecast.registry` (built-ins and ``facecast.providers``
entry points alike); a comma-separated list of ``ws://`` URLs becomes the failover wrapper over those
standalone services. Providers are imported only when chosen, so an optional provider's missing extra never
breaks the others. Combinations are checked from the declared capabilities before anything runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import registry
from .config import Settings
from .errors import ConfigError
from .providers import DEFAULTS
from .registry import Provider, ProviderRequest, Role
from .roles import FaceAnimator, LanguageModel, SpeechToSpeech, SpeechToText, TextToSpeech

if TYPE_CHECKING:
    from .metrics import Metrics
    from .remote.failover import FailoverEvent, FailoverOptions

__all__ = [
    "Services",
    "build_services",
    "make_role",
    "make_stt",
    "make_llm",
    "make_tts",
    "make_face",
    "make_realtime",
    "resolve",
    "remote_urls",
    "make_remote_role",
    "warm_up",
    "transcript_lead_ms",
    "audio_face_spec",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    """The four roles a conversation uses; each may be local, remote or a failover wrapper."""

    stt: SpeechToText
    llm: LanguageModel
    tts: TextToSpeech
    face: FaceAnimator
    audio_face: FaceAnimator | None = None
    """The animator for audio without phoneme timing (puppet and lip-sync workflows); None if unavailable."""
    realtime: SpeechToSpeech | None = None
    """A speech-to-speech model (``--realtime``) answering ``conversation`` sessions instead of stt+llm+tts,
    which remain the failover (facecast.realtime.workflow); None: the classic pipeline only."""


def _members(spec: str | None) -> list[str]:
    return [p.strip() for p in (spec or "").split(",") if p.strip()]


def _is_url(part: str) -> bool:
    return part.lower().startswith(("ws://", "wss://"))


def remote_urls(spec: str) -> list[str] | None:
    """The ``ws://`` URLs of a comma-separated service list, or None when ``spec`` holds any local provider."""
    parts = _members(spec)
    if parts and all(_is_url(p) for p in parts):
        return parts
    return None


def make_remote_role(role: str, urls: list[str], options: FailoverOptions | None = None, tts_rate: int = 22050) -> Any:
    """The failover wrapper (an implementation of ``role``) over the standalone services at ``urls``."""
    from .remote.failover import make_failover

    return make_failover(role, urls, options, tts_rate)  # type: ignore[arg-type]  # role checked by callers


def resolve(role: Role, spec: str | None) -> tuple[Provider, str]:
    """The registered provider named by ``spec`` (``NAME[:ARG]``; empty or ``default``: the role's default)
    and the argument after the name. Raises :class:`ConfigError` for an unknown name."""
    text = (spec or "").strip()
    if not text or text.lower() == "default":
        text = DEFAULTS[role]
    name, arg = registry.split_spec(text)
    return registry.get(role, name), arg


def _make_local(role: Role, spec: str | None, settings: Settings | None) -> Any:
    provider, arg = resolve(role, spec)
    if not provider.installed():
        raise ConfigError(f"--{role} {provider.name} is not installed: {provider.install_hint()}")
    options = registry.make_options(
        provider, (settings.providers if settings else {}).get(f"{role}.{provider.name}", {})
    )
    made = provider.factory(ProviderRequest(arg, options, settings))
    if role == "tts" and provider.caps.timing == "words":  # phonemes from its words (facecast.tts.aligned)
        from .tts.aligned import WordTimedTTS

        made = WordTimedTTS(made)
    return made


def make_role(
    role: Role, spec: str | None, settings: Settings | None = None, failover: FailoverOptions | None = None
) -> Any:
    """An implementation of ``role``: the local provider ``spec`` (``NAME[:ARG]``) with its options from
    ``settings``, or, for a comma-separated list of providers and ``ws://`` services, the failover wrapper over
    them (tried in that order). Raises :class:`ConfigError` naming what is wrong or missing."""
    parts = _members(spec)
    if len(parts) <= 1 and not (parts and _is_url(parts[0])):
        return _make_local(role, spec, settings)
    if role == "realtime":
        raise ConfigError("--realtime takes one model (NAME:MODEL); its failover is the classic pipeline")
    from .remote.client import ClientOptions, make_remote
    from .remote.failover import FailoverOptions, wrap_failover

    opts = failover or FailoverOptions(ClientOptions(token=settings.token if settings else ""))
    urls = remote_urls(spec or "")
    if urls is not None:
        return make_remote_role(role, urls, opts)
    local = {i: _make_local(role, part, settings) for i, part in enumerate(parts) if not _is_url(part)}
    from .protocol.service import RATES

    rate = max((m.sample_rate for m in local.values()), default=22050) if role == "tts" else 22050
    rate = rate if rate in RATES else 22050
    members = [local[i] if i in local else make_remote(role, part, opts.client, rate) for i, part in enumerate(parts)]
    return wrap_failover(role, members, parts, opts)


def make_stt(
    spec: str | None = None, settings: Settings | None = None, failover: FailoverOptions | None = None
) -> SpeechToText:
    """The ``--stt`` provider (see :func:`make_role`)."""
    stt: SpeechToText = make_role("stt", spec, settings, failover)
    return stt


def make_llm(
    spec: str | None = None, settings: Settings | None = None, failover: FailoverOptions | None = None
) -> LanguageModel:
    """The ``--llm`` provider (see :func:`make_role`)."""
    llm: LanguageModel = make_role("llm", spec, settings, failover)
    return llm


def make_tts(
    spec: str | None = None, settings: Settings | None = None, failover: FailoverOptions | None = None
) -> TextToSpeech:
    """The ``--tts`` provider (see :func:`make_role`); remote lists deliver audio at 22050 Hz."""
    tts: TextToSpeech = make_role("tts", spec, settings, failover)
    return tts


def make_face(
    spec: str | None = None, settings: Settings | None = None, failover: FailoverOptions | None = None
) -> FaceAnimator:
    """The ``--face`` provider (see :func:`make_role`)."""
    face: FaceAnimator = make_role("face", spec, settings, failover)
    return face


def make_realtime(spec: str, settings: Settings | None = None) -> SpeechToSpeech:
    """The ``--realtime`` model: ``openai:MODEL`` or ``gemini:MODEL`` (one provider; its key from the
    environment or its option table). Raises :class:`ConfigError` for an unknown name or a missing key."""
    if "," in spec:
        raise ConfigError("--realtime takes one model (NAME:MODEL); its failover is the classic pipeline")
    name, arg = registry.split_spec(spec)
    provider = registry.get("realtime", name)
    table = (settings.providers if settings else {}).get(f"realtime.{provider.name}", {})
    options = registry.make_options(provider, table)
    model: SpeechToSpeech = provider.factory(ProviderRequest(arg, options, settings))
    return model


def _check_combination(settings: Settings) -> None:
    """A phoneme-driven face needs a TTS that reports phonemes: say so before anything runs (services are
    not asked; only local providers' declared capabilities are checked)."""
    faces = [resolve("face", p)[0] for p in _members(settings.face) or [""] if not _is_url(p)]
    if not any(face.caps.face_input == "phonemes" for face in faces):
        return
    for part in _members(settings.tts) or [""]:
        if _is_url(part):
            continue
        tts, _ = resolve("tts", part)
        if tts.caps.timing not in ("phonemes", "words"):  # words get phonemes by WordTimedTTS
            raise ConfigError(
                f"--face {faces[0].name} animates from phoneme timing, which --tts {tts.name} does not report; use "
                "--face auto (the default: phonetic where the TTS reports phonemes, learned from the audio where it "
                "does not), --face learned, or a TTS with phoneme timing (see 'facecast providers')"
            )


def transcript_lead_ms(settings: Settings) -> int:
    """``settings.transcript_lead_ms``, or when it is -1 (automatic): 200 ms when the speech-to-text decodes at
    pauses (its whole decode then happens after the segment closes, so it closes earlier), 100 ms when it
    streams (its final is one decoder finalisation away)."""
    if settings.transcript_lead_ms >= 0:
        return settings.transcript_lead_ms
    parts = _members(settings.stt)
    if parts and not _is_url(parts[0]):
        provider, _ = resolve("stt", parts[0])
        return 100 if provider.caps.streaming else 200
    return 200


def audio_face_spec(settings: Settings) -> str | None:
    """The animator for audio without phoneme timing (puppet, lip-sync, ``/audio_to_blendshapes``): ``face``
    itself when it is one audio-driven provider (by its declared capability), else the shipped ``learned``
    model (also when ``face`` is a list or a service, and for ``auto``: its learned face)."""
    parts = _members(settings.face)
    if len(parts) > 1 or (parts and _is_url(parts[0])):
        return "learned"
    provider, _ = resolve("face", settings.face)
    if provider.name == "auto":  # auto animates audio without timing with the learned face: use that directly
        model = str(settings.providers.get("face.auto", {}).get("learned", ""))
        return f"learned:{model}" if model else "learned"
    return settings.face if provider.caps.face_input == "audio" else "learned"


def build_services(
    settings: Settings, *, metrics: Metrics | None = None, on_failover: Callable[[FailoverEvent], None] | None = None
) -> Services:
    """The services for ``settings``; raises :class:`ConfigError` naming what is wrong or missing.

    The audio-driven animator (for the puppet and lip-sync workflows) is ``face`` when that is audio-driven,
    else the learned model; if it cannot be loaded those workflows answer with an error. Roles given as
    ``ws://`` lists become failover wrappers that report to ``metrics`` and ``on_failover`` and present
    ``settings.token`` to the services.
    """
    _check_combination(settings)
    failover = None
    if any(
        len(_members(spec)) > 1 or any(_is_url(p) for p in _members(spec))
        for spec in (settings.stt, settings.llm, settings.tts, settings.face)
    ):
        from .remote.client import ClientOptions
        from .remote.failover import FailoverOptions

        failover = FailoverOptions(ClientOptions(token=settings.token), on_event=on_failover, metrics=metrics)
    face = make_face(settings.face, settings, failover)
    audio_spec = audio_face_spec(settings)
    audio_face: FaceAnimator | None = face if audio_spec == settings.face else None
    if audio_face is None:
        try:
            audio_face = make_face(audio_spec, settings)
        except ConfigError as exc:
            log.warning("the puppet and lip-sync workflows are unavailable: %s", exc)
    return Services(
        realtime=make_realtime(settings.realtime, settings) if settings.realtime.strip() else None,
        stt=make_stt(settings.stt, settings, failover),
        llm=make_llm(settings.llm, settings, failover),
        tts=make_tts(settings.tts, settings, failover),
        face=face,
        audio_face=audio_face,
    )


async def warm_up(services: Services, persona: str = "") -> float:
    """Load every model now (a first start also assembles the embedded weights, and says so on stderr) so the
    first turn is not slowed by it; the language model also evaluates ``persona`` once into its prompt cache.
    Providers opt in with a ``warm_up()`` coroutine (``warm_up(persona)`` for a language model). Returns the
    seconds it took. Raises what the providers raise (:class:`ConfigError` for a missing or damaged model)."""
    import inspect
    import time

    started = time.monotonic()
    seen: set[int] = set()
    for impl in (services.stt, services.llm, services.tts, services.face, services.audio_face):
        warm = getattr(impl, "warm_up", None)
        if impl is None or warm is None or id(impl) in seen:
            continue
        seen.add(id(impl))
        takes_persona = impl is services.llm and "persona" in inspect.signature(warm).parameters
        await (warm(persona or None) if takes_persona else warm())
    return time.monotonic() - started
