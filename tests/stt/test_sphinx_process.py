"""PocketSphinx decoders run in processes of their own (:mod:`facecast.stt.sphinx_process`). Found by the soak
(``facecast bench --soak``): the binding holds the GIL while it decodes, so with four players speaking at once
the server's decoders shared one core, their finals came seconds late and the event loop waited behind them."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from facecast.errors import InputError, ServiceError
from facecast.stt.pocketsphinx import PocketSphinxConfig, PocketSphinxSTT
from facecast.stt.sphinx_process import ProcessDecoder

from .test_pocketsphinx import chunks, run, speak


def decoder_pids(stt: PocketSphinxSTT) -> list[int]:
    return [worker._decoder.pid for worker in stt._pool._idle if isinstance(worker._decoder, ProcessDecoder)]


async def test_decoders_run_in_other_processes_and_hear_what_the_in_process_ones_hear() -> None:
    pcm, rate = await speak("good morning to you")
    processes = PocketSphinxSTT(PocketSphinxConfig(max_idle_decoders=3))
    here = PocketSphinxSTT(PocketSphinxConfig(processes=False))
    try:
        apart = await asyncio.gather(*(run(processes, chunks(pcm, rate, pause=0.0)) for _ in range(3)))
        alone = await run(here, chunks(pcm, rate, pause=0.0))
        pids = decoder_pids(processes)
        assert len(set(pids)) == 3 and os.getpid() not in pids  # one process per concurrent turn
        assert {results[-1].text for results in apart} == {alone[-1].text} and alone[-1].text
    finally:
        processes.close()
        here.close()


async def test_a_decoder_process_that_dies_fails_its_turn_and_the_next_turn_gets_a_new_one() -> None:
    stt = PocketSphinxSTT(PocketSphinxConfig(max_idle_decoders=1))
    pcm, rate = await speak("hello there")
    try:
        await run(stt, chunks(pcm, rate))
        (pid,) = decoder_pids(stt)

        async def killed_midway():  # type: ignore[no-untyped-def]
            async for n, chunk in _numbered(chunks(pcm, rate)):
                if n == 20:
                    os.kill(pid, signal.SIGKILL)
                    await asyncio.sleep(0.2)
                yield chunk

        with pytest.raises(ServiceError, match="pocketsphinx"):
            await run(stt, killed_midway())
        again = await run(stt, chunks(pcm, rate))
        assert again[-1].text and decoder_pids(stt) != [pid]
    finally:
        stt.close()


async def _numbered(source):  # type: ignore[no-untyped-def]
    n = 0
    async for item in source:
        yield n, item
        n += 1


async def test_a_grammar_error_in_the_child_is_the_same_error_here() -> None:
    stt = PocketSphinxSTT(PocketSphinxConfig(grammar="#JSGF V1.0;\ngrammar g;\npublic <s> = good zzyzxq;\n"))
    with pytest.raises(InputError, match="zzyzxq"):
        await stt.warm_up()


async def test_closing_ends_the_decoder_processes() -> None:
    stt = PocketSphinxSTT(PocketSphinxConfig(max_idle_decoders=2))
    await stt.warm_up()
    (pid,) = decoder_pids(stt)
    stt.close()
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"decoder process {pid} still running")


def test_a_frame_larger_than_a_pipe_buffer_arrives_whole() -> None:
    import threading

    from facecast.stt.sphinx_process import _read, _write

    read_fd, write_fd = os.pipe()
    payload = bytes(range(256)) * 4096  # 1 MiB: many pipe buffers
    with os.fdopen(write_fd, "wb", buffering=0) as raw, os.fdopen(read_fd, "rb") as reader:
        writer = threading.Thread(target=lambda: (_write(raw, b"I", payload), _write(raw, b"S")))
        writer.start()
        assert _read(reader) == (b"I", payload)
        assert _read(reader) == (b"S", b"")
        writer.join()
