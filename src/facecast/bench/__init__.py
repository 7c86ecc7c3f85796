"""``facecast bench``: the benchmark suite. Prints tables; ``--json`` / ``--markdown`` save them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from .report import Table, machine_description

__all__ = ["main", "run_all"]


async def run_all(quick: bool) -> tuple[list[Table], dict[str, object]]:
    from ..llm import EchoLLM
    from ..pipeline import Services
    from ..services import make_face, make_stt, make_tts
    from .compare_bench import streaming_vs_neurosync
    from .face_bench import face_speed
    from .livelink_bench import jitter, sync_error
    from .pipeline_bench import first_output_latency, speed
    from .remote_bench import remote_overhead
    from .scale_bench import scale
    from .turns_bench import voice_to_voice

    tts, face = make_tts(), make_face()
    runs = 5 if quick else 30
    tables: list[Table] = []
    raw: dict[str, object] = {"machine": machine_description(), "quick": quick}
    table, data = await first_output_latency(tts, face, runs, (1, 3) if quick else (1, 3, 10))
    tables.append(table)
    raw["first_output"] = data
    table, data = await speed(tts, face, 3 if quick else 10)
    tables.append(table)
    raw["speed"] = data
    table, face_raw = face_speed(quick)
    tables.append(table)
    raw["face_speed"] = face_raw
    table, data = await jitter(2.0 if quick else 10.0)
    tables.append(table)
    raw["livelink_jitter"] = data
    services = Services(make_stt(), EchoLLM(), tts, face, audio_face=make_face("learned"))
    for endpoint_ms in (300,) if quick else (300, 250):  # the default, and a faster setting side by side
        table, data = await voice_to_voice(services, 5 if quick else 20, endpoint_ms)
        tables.append(table)
        raw[f"voice_to_voice_{endpoint_ms}ms"] = data
    table, data = await sync_error(services, 3 if quick else 10, (1, 10) if quick else (1, 10, 100))
    tables.append(table)
    raw["sync"] = data
    table, data = await streaming_vs_neurosync(services, 3 if quick else 10)
    tables.append(table)
    raw["streaming_vs_neurosync"] = data
    table, data = await scale(services, (1, 2, 4) if quick else (1, 2, 4, 8, 16), 1 if quick else 3)
    tables.append(table)
    raw["scale"] = data
    table, remote = await remote_overhead(20 if quick else 200, 2 if quick else 20)
    tables.append(table)
    raw["remote"] = remote
    return tables, raw


def main(quick: bool = False, json_path: str | None = None, markdown_path: str | None = None) -> int:
    started = time.perf_counter()
    tables, raw = asyncio.run(run_all(quick))
    raw["wall_s"] = time.perf_counter() - started
    print(f"Machine: {raw['machine']}\n")
    for table in tables:
        print(table.text() + "\n")
    if json_path:
        Path(json_path).write_text(json.dumps(raw, indent=1))
    if markdown_path:
        Path(markdown_path).write_text(markdown_report(tables, raw, quick))
    return 0


def markdown_report(tables: list[Table], raw: dict[str, Any], quick: bool) -> str:
    """The whole of docs/benchmarks.md: how it was produced, on what, and every table."""
    command = "facecast bench --quick" if quick else "facecast bench"
    body = "\n\n".join(t.markdown() for t in tables)
    return (
        "# Benchmarks\n\n"
        f"Produced by `{command} --markdown docs/benchmarks.md` (raw numbers: `--json FILE`) on "
        f"{time.strftime('%Y-%m-%d')}, in {raw['wall_s']:.0f} s.\n\n"
        f"Machine: {raw['machine']}. These machines are shared and noisy: read percentiles and ratios measured "
        "side by side in the same run, not single timings.\n\n"
        "Everything runs on loopback through the real components: the real server (uvicorn), the reference "
        "engine client `engine-sim`, pocketsphinx, libespeak-ng, the phonetic face, real UDP sockets.\n\n"
        f"{body}\n"
    )
