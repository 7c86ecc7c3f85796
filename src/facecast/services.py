"""Build the four role implementations named by the settings (``--stt``, ``--llm``, ``--tts``, ``--face``).

Providers are imported only when chosen, so an optional provider's missing extra never breaks the others.
"""

from __future__ import annotations

import logging

from .config import Settings
from .errors import ConfigError
from .llm import make_llm
from .pipeline import Services
from .roles import FaceAnimator, SpeechToText, TextToSpeech

__all__ = ["build_services", "make_stt", "make_tts", "make_face"]

log = logging.getLogger(__name__)

_REMOTE_HINT = (
    "standalone service URLs (ws://...) are not supported by this version yet; run the role in-process"
)


def _check_local(role: str, spec: str) -> str:
    name = spec.strip().lower()
    if name.startswith(("ws://", "wss://")):
        raise ConfigError(f"--{role} {spec}: {_REMOTE_HINT}")
    return name


def make_stt(spec: str = "pocketsphinx") -> SpeechToText:
    name = _check_local("stt", spec)
    if name in ("", "pocketsphinx", "default"):
        from .stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT

        # No second (flat-lexicon) pass: the final transcript is ready ~15 ms after the end of speech
        # instead of ~300 ms, and decoding runs ~40% faster, for a small loss of accuracy.
        return PocketSphinxSTT(PocketSphinxConfig(decoder_options={"fwdflat": False}))
    raise ConfigError(f"--stt {spec!r} is unknown; available: pocketsphinx")


def make_tts(spec: str = "espeak", voice: str = "en-us", rate: int = 175, pitch: int = 50) -> TextToSpeech:
    name = _check_local("tts", spec)
    if name in ("", "espeak", "espeak-ng", "default"):
        from .tts.espeak import EspeakTTS

        return EspeakTTS(voice=voice, rate=rate, pitch=pitch)
    raise ConfigError(f"--tts {spec!r} is unknown; available: espeak")


def make_face(spec: str = "phonetic") -> FaceAnimator:
    """``phonetic`` (from TTS phoneme timing), ``learned`` (the shipped audio-driven model, or
    ``learned:PATH/mouth.json``), or ``neurosync:PATH/model.pth`` (the user's NeuroSync weights; needs torch)."""
    name = _check_local("face", spec)
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


def build_services(settings: Settings) -> Services:
    """The services for ``settings``; raises :class:`ConfigError` naming what is wrong or missing.

    The audio-driven animator (for the puppet and lip-sync workflows) is the learned model unless ``face``
    already is an audio-driven one; if it cannot be loaded those workflows answer with an error.
    """
    face = make_face(settings.face)
    audio_face: FaceAnimator | None = face if settings.face.strip().lower() != "phonetic" else None
    if audio_face is None:
        try:
            audio_face = make_face("learned")
        except ConfigError as exc:
            log.warning("the puppet and lip-sync workflows are unavailable: %s", exc)
    return Services(
        stt=make_stt(settings.stt),
        llm=make_llm(settings.llm, model=settings.llm_model or None),
        tts=make_tts(settings.tts, settings.voice, settings.speech_rate, settings.pitch),
        face=face,
        audio_face=audio_face,
    )
