"""Build the four role implementations named by the settings (``--stt``, ``--llm``, ``--tts``, ``--face``).

Providers are imported only when chosen, so an optional provider's missing extra never breaks the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .config import Settings
from .errors import ConfigError
from .llm import make_llm
from .pipeline import Services
from .roles import FaceAnimator, LanguageModel, SpeechToText, TextToSpeech

if TYPE_CHECKING:
    from .metrics import Metrics
    from .remote.failover import FailoverEvent, FailoverOptions

__all__ = ["build_services", "make_stt", "make_tts", "make_face", "remote_urls", "make_remote_role"]

log = logging.getLogger(__name__)

def remote_urls(spec: str) -> list[str] | None:
    """The ``ws://`` URLs of a comma-separated service list, or None when ``spec`` names a local provider.

    Raises :class:`ConfigError` for a list that mixes URLs with other entries.
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    remote = [p for p in parts if p.lower().startswith(("ws://", "wss://"))]
    if not remote:
        return None
    if len(remote) != len(parts):
        raise ConfigError(f"{spec!r}: a service list must contain only ws:// URLs, separated by commas")
    return remote


def make_remote_role(role: str, urls: list[str], options: FailoverOptions | None = None,
                     tts_rate: int = 22050) -> Any:
    """The failover wrapper (an implementation of ``role``) over the standalone services at ``urls``."""
    from .remote.failover import make_failover

    return make_failover(role, urls, options, tts_rate)  # type: ignore[arg-type]  # role checked by callers


def _check_local(role: str, spec: str, options: FailoverOptions | None = None) -> str | Any:
    urls = remote_urls(spec)
    if urls is not None:
        return make_remote_role(role, urls, options)
    return spec.strip().lower()


def make_stt(spec: str = "pocketsphinx", failover: FailoverOptions | None = None) -> SpeechToText:
    """A local provider, or the failover wrapper over a comma-separated list of ``ws://`` service URLs."""
    name = _check_local("stt", spec, failover)
    if not isinstance(name, str):
        stt: SpeechToText = name
        return stt
    if name in ("", "pocketsphinx", "default"):
        from .stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

        # No second (flat-lexicon) pass: the final transcript is ready ~15 ms after the end of speech
        # instead of ~300 ms, and decoding runs ~40% faster, for a small loss of accuracy.
        # No end padding: live turns end with the endpoint's real silence, and the inputs that can stop right
        # at the last word (files, push-to-talk) get their 200 ms of silence where they are read.
        return PocketSphinxSTT(PocketSphinxConfig(decoder_options={"fwdflat": False}, end_padding_ms=0))
    raise ConfigError(f"--stt {spec!r} is unknown; available: pocketsphinx")


def make_tts(spec: str = "espeak", voice: str = "en-us", rate: int = 175, pitch: int = 50,
             failover: FailoverOptions | None = None) -> TextToSpeech:
    """A local provider, or the failover wrapper over ``ws://`` URLs (audio at 22050 Hz, espeak-ng's rate)."""
    name = _check_local("tts", spec, failover)
    if not isinstance(name, str):
        tts: TextToSpeech = name
        return tts
    if name in ("", "espeak", "espeak-ng", "default"):
        from .tts.espeak import EspeakTTS

        return EspeakTTS(voice=voice, rate=rate, pitch=pitch)
    raise ConfigError(f"--tts {spec!r} is unknown; available: espeak")


def make_face(spec: str = "phonetic", failover: FailoverOptions | None = None) -> FaceAnimator:
    """``phonetic`` (from TTS phoneme timing), ``learned`` (the shipped audio-driven model, or
    ``learned:PATH/mouth.json``), ``neurosync:PATH/model.pth`` (the user's NeuroSync weights; needs torch),
    or a comma-separated list of ``ws://`` face service URLs."""
    name = _check_local("face", spec, failover)
    if not isinstance(name, str):
        face: FaceAnimator = name
        return face
    if name in ("", "phonetic", "default"):
        from .face.phonetic import PhoneticAnimator

        return PhoneticAnimator()
    kind, _, path = spec.strip().partition(":")
    if kind.lower() == "learned":
        from .face.learned import LearnedAnimator

        animator = LearnedAnimator(path or None)
        animator.model  # noqa: B018 - load now, so that a bad model is a startup error
        return animator
    if kind.lower() == "neurosync":
        from .face.neurosync import NeuroSyncAnimator

        return NeuroSyncAnimator(path or None)
    raise ConfigError(f"--face {spec!r} is unknown; available: phonetic, learned, neurosync:PATH/model.pth")


def build_services(settings: Settings, *, metrics: Metrics | None = None,
                   on_failover: Callable[[FailoverEvent], None] | None = None) -> Services:
    """The services for ``settings``; raises :class:`ConfigError` naming what is wrong or missing.

    The audio-driven animator (for the puppet and lip-sync workflows) is the learned model unless ``face``
    already is an audio-driven one; if it cannot be loaded those workflows answer with an error. Roles given
    as ``ws://`` lists become failover wrappers that report to ``metrics`` and ``on_failover`` and present
    ``settings.token`` to the services.
    """
    failover = None
    if any(remote_urls(spec) for spec in (settings.stt, settings.llm, settings.tts, settings.face)):
        from .remote.client import ClientOptions
        from .remote.failover import FailoverOptions

        failover = FailoverOptions(ClientOptions(token=settings.token), on_event=on_failover, metrics=metrics)
    llm_urls = remote_urls(settings.llm)
    llm: LanguageModel = (make_remote_role("llm", llm_urls, failover) if llm_urls
                          else make_llm(settings.llm, model=settings.llm_model or None))
    face = make_face(settings.face, failover)
    audio_face: FaceAnimator | None = (face if settings.face.strip().lower() != "phonetic"
                                       and not remote_urls(settings.face) else None)
    if audio_face is None:
        try:
            audio_face = make_face("learned")
        except ConfigError as exc:
            log.warning("the puppet and lip-sync workflows are unavailable: %s", exc)
    return Services(
        stt=make_stt(settings.stt, failover),
        llm=llm,
        tts=make_tts(settings.tts, settings.voice, settings.speech_rate, settings.pitch, failover),
        face=face,
        audio_face=audio_face,
    )
