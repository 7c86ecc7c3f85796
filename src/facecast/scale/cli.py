"""``facecast serve --ray``: deploy the pools, print where they are, keep them up until stopped.

The pools belong to the command: on Ctrl-C or SIGTERM their Serve applications are deleted (pools meant to
outlive a command are deployed from a Serve config instead: docs/scaling.md).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError
from ..protocol import service as sp
from .ray_pools import ClusterOptions, PoolOptions, deploy, pool_options, require_serve

__all__ = ["parse_pools", "serve_ray"]


def parse_pools(roles: Iterable[str], common: Mapping[str, Any], entries: Iterable[str]) -> dict[str, PoolOptions]:
    """Each role's :class:`PoolOptions`: ``common`` (option -> value, for every role) then ``entries``
    (``ROLE.OPTION=VALUE``, ``ROLE.autoscaling.KEY=VALUE``, ``ROLE.actor_options.KEY=VALUE``).
    Raises :class:`ConfigError` for a malformed entry, an unknown role or option, or a bad value."""
    roles = list(roles)
    per_role: dict[str, dict[str, Any]] = {role: dict(common) for role in roles}
    for entry in entries:
        key, sep, value = entry.partition("=")
        role, _, option = key.strip().partition(".")
        if not sep or not option:
            raise ConfigError(f"--pool {entry!r}: expected ROLE.OPTION=VALUE, e.g. tts.num_gpus=0.5")
        if role not in roles:
            raise ConfigError(f"--pool {entry!r}: {role!r} is not one of the deployed roles ({', '.join(roles)})")
        group, dot, sub = option.partition(".")
        if dot:
            if group not in ("autoscaling", "actor_options"):
                raise ConfigError(f"--pool {entry!r}: only autoscaling.KEY and actor_options.KEY take a dot")
            per_role[role].setdefault(group, {})[sub] = _number(value)
        else:
            per_role[role][option] = value.strip()
    return {role: pool_options(values) for role, values in per_role.items()}


def _number(text: str) -> Any:
    text = text.strip()
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def serve_ray(args: argparse.Namespace, overrides: Mapping[str, Any]) -> int:
    """Run ``facecast serve --ray`` from its parsed ``args`` and the settings flags ``overrides``."""
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    if not roles or any(r not in sp.ROLES for r in roles) or len(set(roles)) != len(roles):
        raise ConfigError(f"--roles {args.roles!r}: a comma-separated list of {', '.join(sp.ROLES)}")
    if args.role is not None:  # facecast serve tts --ray: that one pool
        roles = [args.role]
    common = {
        name: value
        for name, value in (
            ("min_replicas", args.min_replicas),
            ("max_replicas", args.max_replicas),
            ("target_ongoing_requests", args.target_ongoing_requests),
        )
        if value is not None
    }
    pools = parse_pools(roles, common, args.pool or ())
    host = args.http_host or args.host or "127.0.0.1"
    cluster = ClusterOptions(args.ray_address, host, args.http_port, args.proxy_location)
    serve = require_serve()
    import ray

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    try:
        urls = deploy(roles, cluster, pools, overrides, getattr(args, "config", None))
        for role, url in urls.items():
            print(f"facecast serve --ray: {role} pool at {url}", flush=True)
        print(f"facecast serve --ray: ready in {time.monotonic() - started:.1f} s", flush=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for role in roles if ray.is_initialized() else ():
            try:
                serve.delete(role)
            except Exception as exc:  # noqa: BLE001 - best effort on the way out; the cluster may be gone
                print(f"facecast serve --ray: could not delete the {role} pool: {exc}", file=sys.stderr)
    return 0
