"""Build the four role implementations named by the settings (``--stt``, ``--llm``, ``--tts``, ``--face``).

Providers are imported only when chosen, so an optional provider's missing extra never breaks the others.
"""

from __future__ import annotations

from .config import Settings
from .errors import ConfigError
from .llm import make_llm
from .pipeline import Services
from .roles import FaceAnimator, SpeechToText, TextToSpeech

__all__ = ["build_services", "make_stt", "make_tts", "make_face"]

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
        from .stt.pocketsphinx import PocketSphinxSTT

        return PocketSphinxSTT()
    raise ConfigError(f"--stt {spec!r} is unknown; available: pocketsphinx")


def make_tts(spec: str = "espeak", voice: str = "en-us", rate: int = 175, pitch: int = 50) -> TextToSpeech:
    name = _check_local("tts", spec)
    if name in ("", "espeak", "espeak-ng", "default"):
        from .tts.espeak import EspeakTTS

        return EspeakTTS(voice=voice, rate=rate, pitch=pitch)
    raise ConfigError(f"--tts {spec!r} is unknown; available: espeak")


def make_face(spec: str = "phonetic") -> FaceAnimator:
    name = _check_local("face", spec)
    if name in ("", "phonetic", "default"):
        from .face.phonetic import PhoneticAnimator

        return PhoneticAnimator()
    raise ConfigError(f"--face {spec!r} is unknown; available: phonetic")


def build_services(settings: Settings) -> Services:
    """The services for ``settings``; raises :class:`ConfigError` naming what is wrong or missing."""
    return Services(
        stt=make_stt(settings.stt),
        llm=make_llm(settings.llm, model=settings.llm_model or None),
        tts=make_tts(settings.tts, settings.voice, settings.speech_rate, settings.pitch),
        face=make_face(settings.face),
    )
