"""TTS comparison on the same sentences: Whisper round-trip word error rate, first-chunk latency, real-time
factor and peak RSS per voice.

    python -m facecast.bench.tts_bench hibari piper espeak [--limit N] [--json FILE]

Each voice runs in a child process of its own (so its peak RSS, ``VmHWM``, is the voice's alone, not
Whisper's or the parent's), speaks every sentence of :data:`SENTENCES` with one ``synthesize`` call each,
after one untimed warm-up call, and hands its audio back. The parent then resamples it to 16 kHz and
transcribes it with the embedded faster-whisper ``base`` (int8, 2 threads, beam 5, no VAD filter; the model
folder is :data:`facecast.stt.whisper.WHISPER_BASE` assembled by :func:`facecast.modelcache.assemble`). WER is
corpus-level over :func:`facecast.bench.stt_bench.normalise`'d words (the STT table's scorer). First-chunk
latency is from the ``synthesize`` call to its first chunk; the real-time factor is a sentence's synthesis
time over its audio length (p50).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..roles import TextToSpeech
from .report import Table, machine_description, percentiles, ratio

__all__ = ["SENTENCES", "VOICES", "make", "wer", "measure_voice", "transcribe", "run", "tts_table", "main"]

SENTENCES = (
    "Welcome back, traveler. The fire is warm and the soup is hot.",
    "I have not seen a dragon in these hills for twenty years.",
    "Bring me three wolf pelts and I will pay you fifty gold coins.",
    "Careful, the bridge to the north collapsed last winter.",
    "My name is Elena, and I keep the lighthouse on the cliff.",
    "Do you know where my brother went? He left before dawn.",
    "The market opens at nine and closes when the bell rings twice.",
    "That sword looks heavy. Are you sure you can lift it?",
    "Thank you so much, you saved my whole family today.",
    "Sorry, I only sell maps, potions and fresh bread.",
    "The king wants to see you in the great hall at noon.",
    "Please hurry, the storm is coming and the boats are still out.",
    "I found this strange blue stone near the old mill.",
    "Why would anyone build a castle on top of a volcano?",
    "Marcus told me you beat him at cards again last night.",
    "We need at least four more people to cross the desert.",
    "The library closes early on Sundays, so come back tomorrow.",
    "Listen carefully, the password changes every single hour.",
    "You look tired. Sit down and have a cup of tea.",
    "My grandmother was born in a small village by the sea.",
    "There are seven doors, but only one of them is safe.",
    "Can you hear that music? It comes from under the floor.",
    "I will meet you at the harbor when the moon rises.",
    "The merchant from the east sells silk, spices and silver.",
    "Nobody has opened that chest for more than a hundred years.",
    "Good morning! Did you sleep well in the guest room?",
    "The guards change shifts at midnight, that is our chance.",
    "Oliver lost his glasses again, can you help him look?",
    "If you follow the river, you will reach the city by evening.",
    "It costs twelve silver pieces, but I can give you a discount.",
    "Watch out for the bees near the orchard, they are angry today.",
    "She painted the entire ceiling of the chapel by herself.",
    "The train to the capital leaves from platform two.",
    "I think the mayor is hiding something in his basement.",
    "Our team won the championship for the third time in a row.",
    "Let me check the weather before we climb the mountain.",
    "The baker makes the best apple pie in the kingdom.",
    "He promised to return before the end of the month.",
    "Put the lantern on the table and close the window, please.",
    "Sophie can speak five languages and play the violin.",
    "My ship was damaged in the battle near the southern islands.",
    "We should leave now, before the gates are locked.",
    "Have you ever tasted honey from the mountain flowers?",
    "The old wizard lives alone at the top of the tower.",
    "Two hundred soldiers are waiting outside the walls.",
    "I lost my key somewhere between the tavern and the bridge.",
    "The children are playing by the fountain in the square.",
    "Remember to feed the horses before you go to bed.",
    "This letter was written by the queen herself.",
    "Goodbye for now, and may the road be kind to you.",
)
"""Fifty conversational game-character lines (names, numbers, questions, exclamations)."""

VOICES = ("hibari", "piper", "espeak")
"""The voices compared by :func:`tts_table`: the default, the other neural voice, the light one."""


def make(name: str) -> TextToSpeech:
    """A TTS by provider name (``hibari``, ``piper``, ``espeak``...), through the project's factory."""
    from ..services import make_tts

    return make_tts(name)


def wer(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) between two texts after :func:`facecast.bench.stt_bench.normalise`."""
    from .stt_bench import normalise, word_errors

    ref, hyp = normalise(reference), normalise(hypothesis)
    return word_errors(ref, hyp), len(ref)


async def _speak(tts: TextToSpeech, text: str) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    first = 0.0
    pieces: list[np.ndarray] = []
    async for chunk in tts.synthesize(text):
        if not pieces:
            first = time.perf_counter() - start
        pieces.append(chunk.audio.pcm)
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)), first, time.perf_counter() - start


def _kb(key: str) -> int:
    """A ``/proc/self/status`` value in kB (``VmHWM`` and ``VmRSS`` start afresh at exec, unlike ru_maxrss)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key))


async def measure_voice(name: str, sentences: Sequence[str] = SENTENCES) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Speak ``sentences`` with voice ``name`` in THIS process (after a warm-up call). Returns the timings
    (``first_chunk_s``, ``rtf`` per sentence, ``load_s``: building and the warm-up call, ``rss_before_mb``,
    ``peak_rss_mb`` of the process, ``rate``) and the audio of each sentence."""
    before = _kb("VmRSS:")
    started = time.perf_counter()
    tts = make(name)
    await _speak(tts, "Warm up.")
    load_s = time.perf_counter() - started
    firsts: list[float] = []
    rtfs: list[float] = []
    audio: list[np.ndarray] = []
    for text in sentences:
        pcm, first, elapsed = await _speak(tts, text)
        firsts.append(first)
        rtfs.append(elapsed / max(1e-9, len(pcm) / tts.sample_rate))
        audio.append(pcm)
    return {
        "voice": name,
        "rate": tts.sample_rate,
        "load_s": load_s,
        "first_chunk_s": firsts,
        "rtf": rtfs,
        "rss_before_mb": before / 1024,
        "peak_rss_mb": _kb("VmHWM:") / 1024,
    }, audio


def _measure_in_child(name: str, count: int, folder: Path) -> tuple[dict[str, Any], list[np.ndarray]]:
    out = folder / f"{name}.npz"
    done = subprocess.run(
        [sys.executable, "-m", "facecast.bench.tts_bench", "--worker", name, "--limit", str(count), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"tts_bench worker for {name} failed:\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    with np.load(out) as saved:
        audio = [saved[f"arr_{k}"] for k in range(count)]
    return report, audio


def _whisper_model() -> Any:
    from faster_whisper import WhisperModel

    from ..modelcache import assemble
    from ..stt.whisper import WHISPER_BASE

    return WhisperModel(
        str(assemble(WHISPER_BASE)), device="cpu", compute_type="int8", cpu_threads=2, local_files_only=True
    )


def transcribe(whisper: Any, pcm: np.ndarray, rate: int) -> str:
    """What ``whisper`` (a ``faster_whisper.WhisperModel``) hears in ``pcm`` (resampled to 16 kHz)."""
    import soxr

    audio = soxr.resample(pcm, rate, 16000).astype(np.float32)
    segments, _ = whisper.transcribe(audio, language="en", beam_size=5, vad_filter=False)
    return " ".join(s.text for s in segments).strip()


def _score(whisper: Any, report: dict[str, Any], audio: Sequence[np.ndarray], sentences: Sequence[str]) -> None:
    edits = total = 0
    errors: list[tuple[str, str]] = []
    for text, pcm in zip(sentences, audio, strict=True):
        heard = transcribe(whisper, pcm, int(report["rate"]))
        e, n = wer(text, heard)
        edits, total = edits + e, total + n
        if e:
            errors.append((text, heard))
    report["wer"] = edits / max(1, total)
    report["words"] = total
    report["errors"] = errors


async def run(name: str, whisper: Any, sentences: Sequence[str] = SENTENCES) -> dict[str, Any]:
    """Measure one voice in THIS process and score it with ``whisper`` (a ``faster_whisper.WhisperModel``):
    :func:`measure_voice`'s report plus ``wer``, ``words``, ``errors`` (sentence, heard) and the summaries
    ``first_chunk_ms_p50``/``_p95`` and ``rtf_p50``. Peak RSS here includes whatever the process holds."""
    report, audio = await measure_voice(name, sentences)
    await asyncio.to_thread(_score, whisper, report, audio, sentences)
    p50, p95 = percentiles([1000 * f for f in report["first_chunk_s"]], (50, 95))
    report.update(first_chunk_ms_p50=p50, first_chunk_ms_p95=p95, rtf_p50=statistics.median(report["rtf"]))
    return report


async def tts_table(voices: Sequence[str] = VOICES, count: int = len(SENTENCES)) -> tuple[Table, dict[str, object]]:
    """The table for ``facecast bench``: each voice in ``voices`` (those not installed are skipped, with a
    note) measured in its own child process on the first ``count`` :data:`SENTENCES`, then scored by the
    embedded Whisper here. One row per voice: Whisper round-trip WER %, first-chunk p50/p95 ms, RTF p50, peak
    RSS MB, load s. ``raw`` maps each voice to its report (per-sentence timings, misheard sentences)."""
    from ..registry import get

    sentences = SENTENCES[:count]
    raw: dict[str, object] = {}
    skipped = [v for v in voices if not get("tts", v).installed()]
    table = Table(
        f"Text-to-speech on the same {len(sentences)} sentences (Whisper round trip)",
        ["voice", "rate Hz", "WER %", "first chunk p50 ms", "first chunk p95 ms", "RTF p50", "peak RSS MB", "load s"],
    )
    with tempfile.TemporaryDirectory(prefix="facecast-tts-bench-") as tmp:
        measured = []
        for voice in voices:
            if voice not in skipped:
                measured.append(await asyncio.to_thread(_measure_in_child, voice, len(sentences), Path(tmp)))
    whisper = await asyncio.to_thread(_whisper_model)
    for report, audio in measured:
        await asyncio.to_thread(_score, whisper, report, audio, sentences)
        p50, p95 = percentiles([1000 * f for f in report["first_chunk_s"]], (50, 95))
        table.add(
            report["voice"],
            report["rate"],
            100 * report["wer"],
            p50,
            p95,
            ratio(statistics.median(report["rtf"])),
            report["peak_rss_mb"],
            report["load_s"],
        )
        raw[report["voice"]] = report
    table.note = (
        "WER: the embedded Whisper base (beam 5) transcribing each voice's audio, against the text "
        "(lower is better; Whisper's own errors are included, so it is a floor, not 0). First chunk: "
        "from the synthesize call to its first audio chunk, after a warm-up call. RTF: synthesis time / "
        "audio length. Peak RSS: the voice's own child process (a bare Python with facecast imported "
        f"is about {_bare_rss(measured):.0f} MB)." + (f" Not installed: {', '.join(skipped)}." if skipped else "")
    )
    return table, raw


def _bare_rss(measured: Sequence[tuple[dict[str, Any], list[np.ndarray]]]) -> float:
    return min((float(r["rss_before_mb"]) for r, _ in measured), default=float("nan"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="python -m facecast.bench.tts_bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("voices", nargs="*", default=list(VOICES))
    parser.add_argument("--limit", type=int, default=len(SENTENCES), help="how many of the 50 sentences")
    parser.add_argument("--json", type=Path, default=None, help="write every report (misheard sentences) here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one voice, in a child process
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        report, audio = asyncio.run(measure_voice(args.worker, SENTENCES[: args.limit]))
        np.savez(args.out, *audio)  # arr_0, arr_1...
        sys.stdout.write(json.dumps(report) + "\n")
        return 0
    table, raw = asyncio.run(tts_table(args.voices, args.limit))
    print(f"Machine: {machine_description()}\n\n{table.text()}")
    if args.json is not None:
        args.json.write_text(json.dumps(raw, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
