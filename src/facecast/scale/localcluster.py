"""A real two-node Ray cluster on loopback, for the pool tests and ``facecast bench --scale``: ``ray start
--head`` plus a second ``ray start --address`` (a worker node), each in its own session, on free ports and a
private temp dir. Needs the ``scale`` extra (the ``ray`` command beside this Python).

Teardown stops exactly the processes these two commands started (their process trees, plus any process that
names this cluster's private temp dir), never by program name: ``ray stop`` would also stop another Ray
running on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["RayCluster", "free_port"]

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ports() -> list[str]:
    names = (
        "node-manager-port",
        "object-manager-port",
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "runtime-env-agent-port",
        "metrics-export-port",
    )
    return [f"--{name}={free_port()}" for name in names]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def _descendants(roots: list[int]) -> set[int]:
    tree, found, todo = _children(), set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += tree.get(pid, [])
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _naming(text: str) -> set[int]:
    """Processes whose command line names ``text`` (this cluster's unique temp dir)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if text.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.add(int(entry))
            except OSError:
                continue
    return found


class RayCluster:
    """Head (``head_cpus``) and one worker node (``worker_cpus``); ``address`` once started."""

    def __init__(self, head_cpus: int = 2, worker_cpus: int = 2) -> None:
        self.temp = tempfile.mkdtemp(prefix="fcray", dir="/tmp")  # short: Ray's socket paths have a length limit
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.head_cpus = head_cpus
        self.worker_cpus = worker_cpus
        self.started_in = 0.0

    def _start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("FACECAST_TOKEN", None)
        with open(Path(self.temp) / log, "wb") as out:
            proc = subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address=127.0.0.1", *_ports(), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        self.procs.append(proc)
        return proc

    def _wait_started(self, proc: subprocess.Popen[bytes], log: str, timeout: float = 90.0) -> None:
        path = Path(self.temp) / log
        give_up = time.monotonic() + timeout
        while b"Ray runtime started" not in path.read_bytes():
            if proc.poll() is not None or time.monotonic() > give_up:
                raise RuntimeError(f"ray start failed: {path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    def start(self) -> RayCluster:
        started = time.monotonic()
        head = self._start(
            [
                "--head",
                f"--port={self.port}",
                f"--num-cpus={self.head_cpus}",
                f"--temp-dir={self.temp}",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
            ],
            "head.log",
        )
        self._wait_started(head, "head.log")
        worker = self._start([f"--address={self.address}", f"--num-cpus={self.worker_cpus}"], "worker.log")
        self._wait_started(worker, "worker.log")
        self.started_in = time.monotonic() - started
        return self

    def replica_pids(self, role: str) -> list[int]:
        """PIDs of this cluster's live Serve replicas of ``role``'s pool (their process title is
        ``ray::ServeReplica:ROLE:ROLE``), found in the process trees this cluster started."""
        title = f"ray::ServeReplica:{role}:{role}".encode()
        found = []
        for pid in sorted(_descendants([p.pid for p in self.procs])):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title) and _alive(pid):
                    found.append(pid)
            except OSError:
                continue
        return found

    def stop(self) -> None:
        pids = _descendants([p.pid for p in self.procs]) | _naming(self.temp)
        pids.discard(os.getpid())
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in [pid for pid in pids if _alive(pid)]:  # only ours, and only while they still run
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            give_up = time.monotonic() + 5
            while time.monotonic() < give_up and any(_alive(pid) for pid in pids):
                time.sleep(0.1)
        for proc in self.procs:
            proc.wait(timeout=5)
        if not os.environ.get("FACECAST_KEEP_RAY_LOGS"):
            shutil.rmtree(self.temp, ignore_errors=True)
