"""Gemini Live (``--realtime gemini:MODEL``): the ``realtime`` role over the Live API's WebSocket.

``wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=KEY``
(Google's documented endpoint and API-key query parameter); messages by :mod:`.gemini_codec`. Verified only
against tests/servers/gemini_live_server.py (see docs/realtime.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..errors import ConfigError
from .events import RealtimeSetup
from .gemini_codec import GeminiCodec
from .socket import SocketConnection, open_connection

__all__ = ["DEFAULT_URL", "DEFAULT_MODEL", "GeminiLiveOptions", "GeminiLive"]

DEFAULT_URL = "wss://generativelanguage.googleapis.com/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent"
DEFAULT_MODEL = "gemini-2.5-flash-native-audio-preview-09-2025"


@dataclass(frozen=True, slots=True)
class GeminiLiveOptions:
    """``model`` (empty: :data:`DEFAULT_MODEL`); ``api_key`` (empty: ``GEMINI_API_KEY``; never logged);
    ``url``: the endpoint (the local protocol server in tests); ``voice``: a prebuilt voice name (empty: the
    model's default); ``connect_timeout``: seconds to get ``setupComplete``."""

    model: str = ""
    api_key: str = field(default="", repr=False)
    url: str = DEFAULT_URL
    voice: str = ""
    connect_timeout: float = 10.0


class GeminiLive:
    """Opens one Live session per engine session (:meth:`connect`)."""

    def __init__(self, options: GeminiLiveOptions) -> None:
        if not options.api_key:
            raise ConfigError(
                "--realtime gemini needs an API key: set GEMINI_API_KEY (or FACECAST_REALTIME_GEMINI_API_KEY, "
                "or api_key in [realtime.gemini])"
            )
        if not options.url.lower().startswith(("ws://", "wss://")):
            raise ConfigError(f"[realtime.gemini] url must be a ws:// or wss:// URL, not {options.url[:80]!r}")
        self.options = options
        self.model = options.model or DEFAULT_MODEL

    def describe(self) -> str:
        return f"gemini:{self.model}"

    async def connect(self, setup: RealtimeSetup) -> SocketConnection:
        """A configured session. Raises :class:`~.socket.RealtimeUnavailable` when the API refuses or fails."""
        opts = self.options
        if opts.voice and not setup.voice:
            setup = RealtimeSetup(setup.instructions, setup.actions, opts.voice)
        sep = "&" if "?" in opts.url else "?"
        url = f"{opts.url}{sep}{urlencode({'key': opts.api_key})}"
        return await open_connection(url, {}, GeminiCodec(self.model), setup, opts.connect_timeout)
