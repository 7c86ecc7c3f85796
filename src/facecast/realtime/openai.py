"""OpenAI Realtime (``--realtime openai:MODEL``): the ``realtime`` role over the API's WebSocket.

``wss://api.openai.com/v1/realtime?model=MODEL`` with ``Authorization: Bearer KEY`` (OpenAI's documented
WebSocket connection for server-side clients); messages by :mod:`.openai_codec`. Verified only against
tests/servers/openai_realtime_server.py (see docs/realtime.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from ..errors import ConfigError
from .events import RealtimeSetup
from .openai_codec import OpenAICodec
from .socket import SocketConnection, open_connection

__all__ = ["DEFAULT_URL", "DEFAULT_MODEL", "OpenAIRealtimeOptions", "OpenAIRealtime"]

DEFAULT_URL = "wss://api.openai.com/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"


@dataclass(frozen=True, slots=True)
class OpenAIRealtimeOptions:
    """``model`` (empty: :data:`DEFAULT_MODEL`); ``api_key`` (empty: ``OPENAI_API_KEY``; never logged);
    ``url``: the endpoint (a compatible server, or the local protocol server in tests); ``voice`` (empty: the
    model's default); ``transcription``: the model transcribing the player (for the transcript and history);
    ``silence_ms``: the server VAD's end-of-turn silence; ``connect_timeout``: seconds to get a session."""

    model: str = ""
    api_key: str = field(default="", repr=False)
    url: str = DEFAULT_URL
    voice: str = ""
    transcription: str = "gpt-4o-mini-transcribe"
    silence_ms: int = 500
    connect_timeout: float = 10.0


class OpenAIRealtime:
    """Opens one Realtime session per engine session (:meth:`connect`)."""

    def __init__(self, options: OpenAIRealtimeOptions) -> None:
        if not options.api_key:
            raise ConfigError(
                "--realtime openai needs an API key: set OPENAI_API_KEY (or FACECAST_REALTIME_OPENAI_API_KEY, "
                "or api_key in [realtime.openai])"
            )
        if not options.url.lower().startswith(("ws://", "wss://")):
            raise ConfigError(f"[realtime.openai] url must be a ws:// or wss:// URL, not {options.url[:80]!r}")
        self.options = options
        self.model = options.model or DEFAULT_MODEL

    def describe(self) -> str:
        return f"openai:{self.model}"

    async def connect(self, setup: RealtimeSetup) -> SocketConnection:
        """A configured session. Raises :class:`~.socket.RealtimeUnavailable` when the API refuses or fails."""
        opts = self.options
        if opts.voice and not setup.voice:
            setup = RealtimeSetup(setup.instructions, setup.actions, opts.voice)
        sep = "&" if "?" in opts.url else "?"
        url = f"{opts.url}{sep}{urlencode({'model': self.model})}"
        codec = OpenAICodec(opts.transcription, opts.silence_ms)
        headers = {"Authorization": f"Bearer {opts.api_key}"}
        return await open_connection(url, headers, codec, setup, opts.connect_timeout)
