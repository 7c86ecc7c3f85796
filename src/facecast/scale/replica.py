"""One replica of a model pool: a role built from the settings, served by :class:`~.wsadapter.ServiceApp`.

:class:`PoolReplica` is a plain class (no Ray import): :mod:`facecast.scale.ray_pools` turns it into a Ray
Serve deployment with ``serve.ingress()`` (its ASGI app is built on the replica, after the constructor), and
any ASGI server can run it directly (the tests do, under uvicorn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from ..auth import AccessPolicy
from ..config import load_settings
from ..errors import ConfigError
from ..protocol import service as sp
from .wsadapter import ServiceApp

__all__ = ["PoolReplica"]


class PoolReplica:
    """Builds role ``role`` as ``facecast serve ROLE`` would, from ``load_settings(config, overrides=overrides)``
    read on the replica (its ``FACECAST_*`` variables count, the config file must exist on its node).

    Raises :class:`ConfigError` for an unknown role, a provider that is not installed, or a host that is not
    loopback without a strong token (``overrides["host"]`` is the address clients reach the pool on).
    """

    def __init__(self, role: str, overrides: Mapping[str, Any] | None = None, config: str | None = None) -> None:
        if role not in sp.ROLES:
            raise ConfigError(f"unknown role {role!r}: one of {', '.join(sp.ROLES)}")
        from ..limits import limit_role
        from ..services import make_role

        self.role: sp.Role = role
        self.settings = load_settings(config, overrides=dict(overrides or {}))
        self.impl = limit_role(role, make_role(self.role, getattr(self.settings, role), self.settings), self.settings)

    async def __serve_build_asgi_app__(self) -> ServiceApp:
        """Load the role's model (``warm_up()`` when it has one), then return the app. Ray Serve calls this
        once per replica before it is marked ready, so no request waits for a model load."""
        warm = getattr(self.impl, "warm_up", None)
        if warm is not None:
            result = warm()
            if asyncio.iscoroutine(result):
                await result
        return ServiceApp(self.role, self.impl, AccessPolicy.from_settings(self.settings))
