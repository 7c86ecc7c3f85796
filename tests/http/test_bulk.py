"""Uploads are animated in bulk processes at a lower CPU priority (:mod:`facecast.http.bulk`). Found by the soak
(``facecast bench --soak``): two clients posting 29-minute files back to back took ~1.1 cores of the server's
process, and the live conversations beside them played late."""

from __future__ import annotations

import asyncio
import glob
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace

import httpx
import numpy as np
import pytest
from tests.conftest import LIGHT

from facecast.config import Settings
from facecast.face.arkit import INDEX
from facecast.face.learned import DEFAULT_MODEL, LearnedAnimator
from facecast.http.bulk import BULK_NICE, BulkWorkers
from facecast.http.neurosync_io import ApiError
from facecast.http.upload_face import stream_file

from .test_neurosync_api import make_backends, player_post_audio, speech_wav, start

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the learned face model is not in the tree")


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def leftovers() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "facecast-upload-*")))


async def test_a_bulk_process_runs_below_the_servers_priority_and_says_busy_beyond_its_workers() -> None:
    bulk = BulkWorkers(1)
    try:
        assert await bulk.run(os.getpid) != os.getpid()
        assert await bulk.run(os.nice, 0) == min(19, os.nice(0) + BULK_NICE)
        sleeping = asyncio.create_task(bulk.run(time.sleep, 1.0))
        await asyncio.sleep(0.2)
        with pytest.raises(ApiError) as busy:
            await bulk.run(os.getpid)
        assert busy.value.status == 503 and busy.value.code == "busy" and busy.value.headers["Retry-After"] == "1"
        sleeping.cancel()  # the client left; its job still runs, and still counts
        with pytest.raises(asyncio.CancelledError):
            await sleeping
        assert bulk.in_flight == 1
        with pytest.raises(ApiError):
            await bulk.run(os.getpid)
        await until(lambda: not bulk.in_flight)
        assert isinstance(await bulk.run(os.getpid), int)
    finally:
        bulk.close()


async def test_a_cancelled_jobs_result_is_handed_to_abandoned() -> None:
    bulk = BulkWorkers(1)
    dropped: list[object] = []
    try:
        await bulk.run(os.getpid)  # the process is up: the job below is running when it is cancelled
        job = asyncio.create_task(bulk.run(pow, 2, 10, abandoned=dropped.append))
        await asyncio.sleep(0)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        await until(lambda: not bulk.in_flight)
        await asyncio.sleep(0.05)
        assert dropped in ([1024], [])  # [] only if the job had not started: then it never ran
    finally:
        bulk.close()


async def test_a_dead_bulk_process_fails_its_job_with_503_and_the_next_job_gets_a_new_one() -> None:
    bulk = BulkWorkers(1)
    try:
        first = await bulk.run(os.getpid)
        with pytest.raises(ApiError) as died:
            await bulk.run(os._exit, 3)
        assert died.value.status == 503 and died.value.code == "service_unavailable"
        assert bulk.in_flight == 0
        assert await bulk.run(os.getpid) != first
    finally:
        bulk.close()


async def test_an_answer_file_is_gone_from_disk_as_soon_as_it_is_opened(tmp_path: object) -> None:
    fd, path = tempfile.mkstemp(prefix="facecast-upload-test-")
    os.write(fd, b"x" * (3 << 20))
    os.close(fd)
    chunks, size = await stream_file(path)
    assert size == 3 << 20 and path not in leftovers() and not await asyncio.to_thread(os.path.exists, path)
    assert sum([len(c) async for c in chunks]) == size


async def answers(bulk: bool, audio: bytes) -> list[httpx.Response]:
    settings = replace(Settings(**LIGHT), bulk_processes=bulk)
    running = await start(settings, backends=make_backends(audio_face=LearnedAnimator()))
    try:
        assert (running.state.bulk is not None) is bulk
        url = running.http_url + "/audio_to_blendshapes"
        replies = [await asyncio.to_thread(player_post_audio, url, body) for body in (audio, b"RIFF" + bytes(100))]
        if bulk:
            assert running.state.bulk is not None and running.state.bulk._executor is not None  # a process worked
        return replies
    finally:
        await running.__aexit__(None, None, None)


async def test_an_upload_is_animated_in_a_bulk_process_with_the_same_answers_as_in_the_server() -> None:
    audio, _ = await speech_wav(44100)
    before = leftovers()
    ok, bad = await answers(True, audio)
    in_server = await answers(False, audio)
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    assert int(ok.headers["content-length"]) == len(ok.content)
    assert ok.content == in_server[0].content  # byte for byte
    assert bad.status_code == 400 and bad.json() == in_server[1].json() and bad.json()["code"] == "bad_audio"
    assert leftovers() <= before  # no answer left on disk
    frames = np.array(ok.json()["blendshapes"], np.float32)
    assert frames[:, INDEX["JawOpen"]].std() > 0.01  # the mouth moves


async def test_a_pool_that_broke_between_jobs_is_replaced_for_the_next_one() -> None:
    bulk = BulkWorkers(1)
    try:
        first = await bulk.run(os.getpid)
        os.kill(first, 9)  # dies while idle: the pool notices only when it is next used
        await asyncio.sleep(0.5)
        assert await bulk.run(os.getpid) != first
    finally:
        bulk.close()
