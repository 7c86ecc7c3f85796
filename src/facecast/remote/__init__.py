"""Standalone service servers (``facecast serve``), their clients and the failover wrappers.

See docs/protocol.md ("Service protocol") and docs/deployment.md.
"""

from __future__ import annotations

from .client import ClientOptions, RemoteError, RemoteFace, RemoteLLM, RemoteSTT, RemoteTTS
from .failover import FailoverEvent, FailoverFace, FailoverLLM, FailoverOptions, FailoverSTT, FailoverTTS, make_failover

__all__ = [
    "ClientOptions",
    "RemoteError",
    "RemoteSTT",
    "RemoteLLM",
    "RemoteTTS",
    "RemoteFace",
    "FailoverEvent",
    "FailoverOptions",
    "FailoverSTT",
    "FailoverLLM",
    "FailoverTTS",
    "FailoverFace",
    "make_failover",
]
