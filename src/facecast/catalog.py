"""The service catalog: one provider instance per (role, spec), shared by every session that needs it.

Sessions resolve their services at ``hello`` from their character (:mod:`facecast.characters`) through
:meth:`ServiceCatalog.services_for`. Instances are memoised by ``(role, spec, voice)`` (the voice is part of
a TTS spec), so 100 sessions with one voice share one TTS instance and, for a failover list, one failover
group with its health state. What a character leaves empty, and specs equal to the server's own, are the
server's ``defaults`` (built once at startup by :func:`facecast.services.build_services`): no second model
is loaded for them. New instances are built by :func:`facecast.services.make_role`.

Building an instance may load a model: resolve every server-defined character once at startup
(``services_for`` for each) so a hello never waits for one. Call from the event loop only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .characters import Character
from .registry import Role
from .services import Services

if TYPE_CHECKING:
    from .config import Settings
    from .remote.failover import FailoverOptions

__all__ = ["ServiceCatalog"]

Maker = Callable[..., Any]


class ServiceCatalog:
    """Provider instances by (role, spec, voice) around the server's ``defaults``.

    ``settings`` give the server's own specs (``llm``, ``tts``, ``voice``) and the provider options; without
    settings only the defaults exist and any other spec is built with the registry's defaults. ``failover``
    is handed to :func:`~facecast.services.make_role` for lists (metrics, failover notices, the token).
    ``make`` replaces ``make_role`` (tests).
    """

    def __init__(
        self,
        defaults: Services,
        settings: Settings | None = None,
        *,
        failover: FailoverOptions | None = None,
        make: Maker | None = None,
    ) -> None:
        self.defaults = defaults
        self._settings = settings
        self._failover = failover
        self._make = make
        self._made: dict[tuple[Role, str, str, tuple[Any, ...]], Any] = {}
        if settings is not None:
            self._made[("llm", settings.llm, "", ())] = defaults.llm
            self._made[("tts", settings.tts, settings.voice, ())] = defaults.tts

    def get(self, role: Role, spec: str, voice: str = "", character: Character | None = None) -> Any:
        """The instance of ``role`` for ``spec`` (and ``voice``, for a TTS) with ``character``'s own options
        (its voice's rate and pitch, its provider options), built on first use. Raises
        :class:`~facecast.errors.ConfigError` as ``make_role`` does (nothing is memoised then)."""
        tweaks = _tweaks(role, character)
        key = (role, spec, voice, tweaks)
        if key not in self._made:
            settings = self._settings
            if tweaks and settings is None:
                from .config import Settings

                settings = Settings()
            if settings is not None and (voice or tweaks):
                settings = dataclasses.replace(settings, voice=voice or settings.voice)
                if character is not None and tweaks:
                    settings = _with_character(settings, role, character)
            if self._make is not None:
                made = self._make(role, spec, settings, self._failover)
            else:
                from .services import make_role

                made = make_role(role, spec, settings, self._failover)
            self._made[key] = made
        return self._made[key]

    def services_for(self, character: Character) -> Services:
        """The services ``character`` speaks with: its LLM and voice (memoised), the server's STT and faces.
        A character that changes nothing gets ``defaults`` itself."""
        server = self._settings
        llm = self.defaults.llm
        if character.llm or _tweaks("llm", character):
            llm = self.get("llm", character.llm or (server.llm if server is not None else ""), "", character)
        tts = self.defaults.tts
        if character.voice.tts or character.voice.voice or _tweaks("tts", character):
            spec = character.voice.tts or (server.tts if server is not None else "")
            voice = character.voice.voice or (server.voice if server is not None else "")
            tts = self.get("tts", spec, voice, character) if spec else tts
        if llm is self.defaults.llm and tts is self.defaults.tts:
            return self.defaults
        return dataclasses.replace(self.defaults, llm=llm, tts=tts)

    def instances(self) -> list[Any]:
        """Every distinct instance the catalog holds or was given (to close them at shutdown)."""
        found = {
            id(s): s
            for s in (
                self.defaults.stt,
                self.defaults.llm,
                self.defaults.tts,
                self.defaults.face,
                self.defaults.audio_face,
                *self._made.values(),
            )
            if s is not None
        }
        return list(found.values())


def _tweaks(role: Role, character: Character | None) -> tuple[Any, ...]:
    """What of ``character`` changes how a ``role`` instance is built (part of the memo key)."""
    if character is None:
        return ()
    options = tuple(item for item in character.options if item[0].startswith(f"{role}."))
    if role == "tts" and (character.voice.speech_rate is not None or character.voice.pitch is not None):
        return (character.voice.speech_rate, character.voice.pitch, options)
    return options


def _with_character(settings: Settings, role: Role, character: Character) -> Settings:
    changes: dict[str, Any] = {}
    if role == "tts":
        if character.voice.speech_rate is not None:
            changes["speech_rate"] = character.voice.speech_rate
        if character.voice.pitch is not None:
            changes["pitch"] = character.voice.pitch
    own = {key: values for key, values in character.provider_options().items() if key.startswith(f"{role}.")}
    if own:
        merged = {key: dict(values) for key, values in settings.providers.items()}
        for key, values in own.items():
            merged[key] = {**merged.get(key, {}), **values}
        changes["providers"] = merged
    return dataclasses.replace(settings, **changes)
