"""``facecast bench``: the benchmark suite. Prints tables; ``--json`` / ``--markdown`` save them."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from .report import Table, machine_description

__all__ = ["main", "run_all"]


async def run_all(quick: bool) -> tuple[list[Table], dict[str, object]]:
    from ..llm import EchoLLM
    from ..pipeline import Services
    from ..services import make_face, make_stt, make_tts
    from .livelink_bench import jitter, sync_error
    from .pipeline_bench import first_output_latency, speed

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
    table, data = await jitter(2.0 if quick else 10.0)
    tables.append(table)
    raw["livelink_jitter"] = data
    table, data = await sync_error(Services(make_stt(), EchoLLM(), tts, face), 4 if quick else 20)
    tables.append(table)
    raw["sync"] = data
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
        body = "\n\n".join(t.markdown() for t in tables)
        Path(markdown_path).write_text(f"Machine: {raw['machine']}\n\n{body}\n")
    return 0
