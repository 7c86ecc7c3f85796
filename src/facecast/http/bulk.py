"""Bulk work in worker processes at a lower CPU priority, so that it never takes the live sessions' time.

A conversation is real time: each reply's audio must reach the engine before it is played. An upload to
``/audio_to_blendshapes`` is not: a 29-minute file costs ~10 s of CPU to decode, animate and encode. Done in the
server's own process, that work competes with the conversations for the CPU and, where it runs Python, for the
GIL; on a small machine a client posting such files back to back makes every conversation late. Here it runs
in separate processes (``spawn``: nothing of the server's threads is inherited) whose CPU priority is lowered
by :data:`BULK_NICE`, so the kernel gives the server's threads the CPU first and bulk work the rest.

At most ``workers`` jobs are in flight; past that :meth:`BulkWorkers.run` raises 503 ``busy`` at once. A job
whose request was cancelled (the client left) still counts until its process has finished it, so clients that
post and hang up cannot queue work without bound. A pool whose process died (killed, out of memory) is
replaced on the next job; the job that saw it fails with 503 ``service_unavailable``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from .neurosync_io import ApiError

__all__ = ["BULK_NICE", "BulkWorkers"]

T = TypeVar("T")

BULK_NICE = 10
"""How much lower the bulk processes' CPU priority is than the server's (``nice`` steps: at 10, a busy bulk
process gets about a tenth of the CPU time a busy server thread gets when both want the same core)."""

_TASKS_PER_PROCESS = 32
"""Jobs a worker process runs before it is replaced by a fresh one (what a long job's allocations left
behind goes with it)."""


def _lower_priority(steps: int) -> None:
    """A bulk process's initializer: its CPU priority ``steps`` below its parent's."""
    try:
        os.nice(steps)
    except OSError:  # pragma: no cover - a platform or sandbox that forbids it: the work still runs
        pass


class BulkWorkers:
    """Up to ``workers`` processes started on first use, each ``nice`` steps below the server's priority."""

    def __init__(self, workers: int, nice: int = BULK_NICE, what: str = "uploads") -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.nice = nice
        self.what = what
        self._executor: ProcessPoolExecutor | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Jobs submitted whose process has not finished them (cancelled requests' jobs included)."""
        return self._in_flight

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority,
                initargs=(self.nice,),
                max_tasks_per_child=_TASKS_PER_PROCESS,
            )
        return self._executor

    def _finished(self, _: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    async def run(self, fn: Callable[..., T], *args: Any, abandoned: Callable[[T], None] | None = None) -> T:
        """``fn(*args)`` in a bulk process (``fn`` and ``args`` must pickle; exceptions come back as raised).

        ``abandoned`` is called with the result of a job whose caller was cancelled before it finished (to
        delete what the job left, such as a file)."""
        with self._lock:
            if self._in_flight >= self.workers:
                raise ApiError(
                    503,
                    "busy",
                    f"{self.workers} {self.what} are being processed; retry shortly",
                    headers={"Retry-After": "1"},
                )
            self._in_flight += 1
        try:
            pool = self._pool()
            try:
                future = pool.submit(fn, *args)
            except BrokenProcessPool:  # it broke since its last job: a fresh one takes this job
                self._replace(pool)
                pool = self._pool()
                future = pool.submit(fn, *args)
        except BaseException:
            with self._lock:
                self._in_flight -= 1
            raise
        future.add_done_callback(self._finished)
        try:
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            self._replace(pool)
            raise ApiError(
                503,
                "service_unavailable",
                f"the process animating {self.what} stopped (killed or out of memory); retry",
                headers={"Retry-After": "1"},
            ) from None
        except asyncio.CancelledError:
            if abandoned is not None:
                future.add_done_callback(lambda done: _discard(done, abandoned))
            raise

    def _replace(self, broken: ProcessPoolExecutor) -> None:
        if self._executor is broken:
            self._executor = None
            broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the processes (jobs still running are left to finish on their own; their results are dropped)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def _discard(done: Future[Any], abandoned: Callable[[Any], None]) -> None:
    if done.cancelled() or done.exception() is not None:
        return
    try:
        abandoned(done.result())
    except Exception:  # noqa: BLE001 - cleaning up after a client that left must not raise in a pool thread
        pass
