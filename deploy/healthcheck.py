#!/usr/bin/env python3
"""The container health check: exit 0 when URL answers HTTP 200, else print why and exit 1.

``facecast-healthcheck [URL]``; URL defaults to ``http://127.0.0.1:$FACECAST_PORT/health`` (port 8765). The
request carries ``Authorization: Bearer $FACECAST_TOKEN`` when that variable is set, since a server with a
token answers ``/health`` only with it. Standard library only: it runs in the image's Python with nothing else.
Used by the Dockerfile's HEALTHCHECK, the compose file and the Kubernetes probes (``/-/healthz`` on port 8000
for the Ray Serve proxy).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0


def default_url() -> str:
    port = os.environ.get("FACECAST_PORT", "").strip() or "8765"
    return f"http://127.0.0.1:{port}/health"


def check(url: str, token: str, timeout: float = TIMEOUT_S) -> str | None:
    """``None`` when ``url`` answers 200; otherwise a one-line reason."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if status != 200:
        hint = " (FACECAST_TOKEN missing or wrong?)" if status == 401 else ""
        return f"{url}: HTTP {status}{hint}"
    return None


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        print("usage: facecast-healthcheck [URL]", file=sys.stderr)
        return 2
    url = argv[0] if argv else default_url()
    reason = check(url, os.environ.get("FACECAST_TOKEN", ""))
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
