"""Model pools on Ray Serve: each role (STT, TTS, face, the local LLM) as an autoscaled Ray Serve deployment
speaking the service protocol over a WebSocket ingress, one Serve application per role at ``/ROLE``.

A controller uses a pool exactly like a ``facecast serve ROLE`` server: ``--tts ws://HOST:8000/tts``. Ray
Serve's proxy sends each new WebSocket connection to a replica; one connection stays on its replica, so a
replica that dies mid-request closes its connections and the client's failover (``rounds``: a pool URL
listed once is tried again) reconnects through the proxy to a live replica and continues the request
(:mod:`facecast.remote.failover`). Autoscaling counts *ongoing requests*, which for a WebSocket ingress means
open connections (a controller may also keep a few idle ones per pool, ``ClientOptions.pool_size``).

Two ways in (docs/scaling.md):

- ``facecast serve --ray``: :func:`deploy` on a running cluster (``ray start --head`` first);
- a Serve config (``serve deploy``, KubeRay ``serveConfigV2``): ``import_path:
  facecast.scale.ray_pools:build_app`` with ``args`` (:func:`build_app`), one application per role.

Ray is imported only when a pool is built: without the ``scale`` extra this module imports and every entry
point raises :class:`ConfigError` naming the extra.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..config import load_settings
from ..errors import ConfigError
from ..protocol import service as sp
from .replica import PoolReplica

__all__ = ["ClusterOptions", "PoolOptions", "build_app", "deploy", "pool_app", "pool_options", "require_serve"]

log = logging.getLogger(__name__)

DEFAULT_HTTP_PORT = 8000
"""Ray Serve's default HTTP proxy port."""
_PROVIDER_ARGS = ("stt", "llm", "tts", "face", "voice", "persona", "set", "host", "llm_model")
"""Settings a Serve config's ``args`` may give directly (any other setting: ``args.settings``)."""


def require_serve() -> ModuleType:
    """``ray.serve``; raises :class:`ConfigError` naming the ``scale`` extra when Ray Serve is not installed."""
    try:
        from ray import serve
    except ImportError:
        raise ConfigError("model pools on Ray Serve need the scale extra: pip install 'facecast[scale]'") from None
    return serve


@dataclass(frozen=True, slots=True)
class PoolOptions:
    """How one role's pool scales and what each replica reserves (Ray Serve deployment options)."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_ongoing_requests: float = 2.0
    """Open connections per replica the autoscaler aims at (a WebSocket is one ongoing request while open)."""
    max_ongoing_requests: int = 64
    """Connections one replica accepts; more wait in the proxy (Ray Serve's own default, 5, is for HTTP)."""
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    """GPUs per replica (fractions share one: 0.25 = four replicas per GPU); the model then has to use it
    (e.g. ``--set stt.whisper.device=cuda``)."""
    autoscaling: Mapping[str, Any] = field(default_factory=lambda: {"upscale_delay_s": 2.0, "downscale_delay_s": 60.0})
    """Further ``autoscaling_config`` keys of Ray Serve (delays, smoothing)."""
    actor_options: Mapping[str, Any] = field(default_factory=dict)
    """Further ``ray_actor_options`` (``resources``, ``runtime_env``, ``accelerator_type``...)."""

    def __post_init__(self) -> None:
        if self.min_replicas < 1:
            raise ConfigError(f"min_replicas must be at least 1, not {self.min_replicas}")
        if self.max_replicas < self.min_replicas:
            raise ConfigError(f"max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})")
        if self.target_ongoing_requests <= 0 or self.max_ongoing_requests < 1:
            raise ConfigError("target_ongoing_requests must be above 0 and max_ongoing_requests at least 1")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ConfigError("num_cpus and num_gpus must be 0 or more")

    def deployment_options(self, env: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The keyword arguments of ``serve.deployment`` (``env``: variables set in every replica)."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, **self.actor_options}
        if env:
            runtime = dict(actor.get("runtime_env") or {})
            runtime["env_vars"] = {**dict(env), **dict(runtime.get("env_vars") or {})}
            actor["runtime_env"] = runtime
        return {
            "max_ongoing_requests": self.max_ongoing_requests,
            "autoscaling_config": {
                "min_replicas": self.min_replicas,
                "initial_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                **self.autoscaling,
            },
            "ray_actor_options": actor,
        }


_POOL_FIELDS = {f.name: f for f in dataclasses.fields(PoolOptions)}


def pool_options(values: Mapping[str, Any], base: PoolOptions | None = None) -> PoolOptions:
    """``base`` (default :class:`PoolOptions`) with ``values`` (field name -> value, numbers as numbers or
    text, as from a YAML file or ``--pool ROLE.KEY=VALUE``); raises :class:`ConfigError` for an unknown key or
    a value of the wrong type."""
    base = base or PoolOptions()
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in _POOL_FIELDS:
            raise ConfigError(f"unknown pool option {key!r}: one of {', '.join(_POOL_FIELDS)}")
        if key in ("autoscaling", "actor_options"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"pool option {key!r} must be a mapping")
            changes[key] = {**getattr(base, key), **value}
            continue
        kind = int if key.endswith("replicas") or key == "max_ongoing_requests" else float
        try:
            number = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"pool option {key!r} must be a number, not {value!r}") from None
        if isinstance(value, bool) or (kind is int and float(value) != number):
            raise ConfigError(f"pool option {key!r} must be a whole number, not {value!r}")
        changes[key] = number
    return dataclasses.replace(base, **changes)


def pool_app(
    role: str,
    pool: PoolOptions,
    overrides: Mapping[str, Any],
    config: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """The Serve application (a bound deployment) of ``role``'s pool: :class:`PoolReplica` built from
    ``load_settings(config, overrides=overrides)`` on each replica, ``env`` set in its environment."""
    if role not in sp.ROLES:
        raise ConfigError(f"unknown role {role!r}: one of {', '.join(sp.ROLES)}")
    serve = require_serve()
    deployment = serve.deployment(serve.ingress()(PoolReplica), name=role, **pool.deployment_options(env))
    return deployment.bind(role, dict(overrides), config)


def _one_role(args: Mapping[str, Any]) -> str:
    roles = args.get("roles", [args["role"]] if "role" in args else None)
    if isinstance(roles, str):
        roles = [r for r in roles.split(",") if r]
    if not isinstance(roles, list) or len(roles) != 1:
        raise ConfigError(
            "build_app serves one role per Serve application (each has its own route_prefix): give "
            f"'role' or a one-entry 'roles' and list one application per role, not {roles!r}"
        )
    role = str(roles[0])
    if role not in sp.ROLES:
        raise ConfigError(f"unknown role {role!r}: one of {', '.join(sp.ROLES)}")
    return role


def build_app(args: Mapping[str, Any]) -> Any:
    """The application builder of a Serve config: ``import_path: facecast.scale.ray_pools:build_app``.

    ``args``: ``role`` (or ``roles`` with one entry); pool options (:class:`PoolOptions` fields, e.g.
    ``min_replicas``, ``num_gpus``); the role's provider and its settings (``stt``/``tts``/``face``/``llm``,
    ``voice``, ``persona``, ``set``, ``llm_model``, or any setting under ``settings``); ``config`` (a TOML
    file on every node); ``host``: the address clients reach the proxy on, ``0.0.0.0`` unless given, so the
    replicas need ``FACECAST_TOKEN`` in their environment (set it from a secret) unless ``host`` is loopback.
    Raises :class:`ConfigError` for a missing or second role and any unknown key."""
    role = _one_role(args)
    known = {"role", "roles", "config", "settings", *_PROVIDER_ARGS, *_POOL_FIELDS}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ConfigError(f"unknown build_app args {unknown}: known are {', '.join(sorted(known))}")
    settings = args.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise ConfigError("build_app arg 'settings' must be a mapping of setting name to value")
    overrides: dict[str, Any] = {**settings, **{k: args[k] for k in _PROVIDER_ARGS if k in args}}
    overrides.setdefault("host", "0.0.0.0")  # noqa: S104 - the secure reading: a token is required
    pool = pool_options({k: v for k, v in args.items() if k in _POOL_FIELDS})
    config = args.get("config")
    return pool_app(role, pool, overrides, str(config) if config else None)


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """Where :func:`deploy` puts the pools."""

    address: str = "auto"
    """The Ray cluster (``auto``: the one ``ray start`` started on this machine; or ``HOST:PORT``)."""
    http_host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    proxy_location: str = "HeadOnly"
    """``HeadOnly`` (one proxy, on the head) or ``EveryNode`` (a proxy on every node, on ``http_port``:
    one machine per node, or ports collide)."""


def deploy(
    roles: Iterable[str],
    cluster: ClusterOptions,
    pools: Mapping[str, PoolOptions],
    overrides: Mapping[str, Any],
    config: str | None = None,
) -> dict[str, str]:
    """Deploy one pool per role on the running cluster and wait until each has its replicas ready; returns
    role -> the ``ws://`` URL clients use. ``FACECAST_*`` variables of this process are set in the replicas.

    Raises :class:`ConfigError` when Ray Serve is not installed, no cluster answers at ``cluster.address``,
    the settings are invalid (checked here before anything is deployed: e.g. ``http_host`` off loopback
    without a strong token), or a pool fails to start (its replicas' error in the message)."""
    roles = list(roles)
    for role in roles:
        if role not in sp.ROLES:
            raise ConfigError(f"unknown role {role!r}: one of {', '.join(sp.ROLES)}")
    overrides = {**{k: v for k, v in overrides.items() if v is not None}, "host": cluster.http_host}
    load_settings(config, overrides=overrides)  # the replicas would fail on the same error, later
    serve = require_serve()
    import ray

    try:
        ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError) as exc:
        raise ConfigError(f"no Ray cluster at {cluster.address} (start one with 'ray start --head'): {exc}") from None
    serve.start(http_options={"host": cluster.http_host, "port": cluster.http_port, "location": cluster.proxy_location})
    env = {k: v for k, v in os.environ.items() if k.startswith("FACECAST_")}
    urls: dict[str, str] = {}
    for role in roles:
        try:
            serve.run(
                pool_app(role, pools.get(role, PoolOptions()), overrides, config, env),
                name=role,
                route_prefix=f"/{role}",
                blocking=False,
            )
        except RuntimeError as exc:  # Serve's "Deploying application ... failed" with the replica's error
            raise ConfigError(f"the {role} pool did not start: {exc}") from None
        host = f"[{cluster.http_host}]" if ":" in cluster.http_host else cluster.http_host
        urls[role] = f"ws://{host}:{cluster.http_port}/{role}"
    return urls
