"""Speech-to-text accuracy and speed on real human speech (:mod:`facecast.speechdata`).

Word error rate (WER) = (substitutions + deletions + insertions) / reference words, summed over the
clips of a category (corpus-level, so long clips weigh more), after :func:`normalise` on both sides.
Each engine hears every clip the same way: the file in 20 ms chunks at its own rate.

Latency: Whisper decodes a turn only after its input ends, so what matters live is the time from the
end of the input to the final transcript, per turn length (the listener closes its segment
``endpoint_ms - transcript_lead_ms`` into the pause). Turns are the first N seconds of a read sentence.
Timings on a shared machine are noisy: read p50 and ratios measured side by side.

``python -m facecast.bench.stt_bench [--quick] [--json FILE]`` prints the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path

from ..aio import aclose
from ..audio import read_audio, split_chunks
from ..roles import SpeechToText
from ..speechdata import CATEGORIES, Clip, audible_text, clips
from ..types import AudioChunk, Float32Array
from .report import Table, machine_description, percentiles

__all__ = [
    "normalise",
    "word_errors",
    "wer",
    "transcribe_pcm",
    "accuracy",
    "rescore",
    "decode_latency",
    "peak_rss_mb",
    "whisper_peak_rss_mb",
    "stt_accuracy",
    "stt_latency",
    "main",
]

_EVERYDAY = ("read", "conversational")
_MARKUP = re.compile(r"<[^>]*>|\[[^\]]*\]")
_FILLERS = frozenset({"uh", "um", "hm", "hmm", "mm", "mhm", "ah", "eh", "uhm", "erm"})
_SPELLINGS = {
    "mr": "mister",
    "mrs": "missus",
    "ok": "okay",
    "yknow": "you know",
    "gonna": "going to",
    "wanna": "want to",
    "kinda": "kind of",
    "gotta": "got to",
    "alright": "all right",
    "er": "her",
}
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " " + _number_words(rest))
    if n < 1_000_000:
        rest = n % 1000
        return _number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + _number_words(rest))
    return " ".join(_ONES[int(d)] for d in str(n))


def _number_or_year(digits: str) -> str:
    """Digits as spoken words; four digits from 1100 to 2099 as a year ("2020" = "twenty twenty")."""
    n = int(digits)
    if len(digits) == 4 and 1100 <= n <= 2099 and not 2000 <= n <= 2009 and n % 100:
        return f"{_number_words(n // 100)} {_number_words(n % 100)}"
    return _number_words(n)


_CONTRACTIONS = [
    (re.compile(p), r)
    for p, r in (
        (r"\bcan't\b", "can not"),
        (r"\bwon't\b", "will not"),
        (r"\bain't\b", "is not"),
        (r"n't\b", " not"),
        (r"'re\b", " are"),
        (r"'ll\b", " will"),
        (r"'ve\b", " have"),
        (r"\bi'm\b", "i am"),
        (r"'d\b", " would"),
    )
]


def normalise(text: str) -> list[str]:
    """Words for scoring, in the spirit of Whisper's English normaliser: source markup (``<cutoff-x>``,
    ``[laughter]``) and fillers (uh, um, hm) dropped, lower case, contractions expanded ("we're" = "we are",
    "can't" = "can not"), no punctuation (hyphens split words, other apostrophes vanish), numbers as words
    ("2020" = "twenty twenty"), common spellings unified ("Mr." = "mister", "gonna" = "going to", "'er" =
    "her") and a run of single letters joined ("M F A" = "MFA" = "mfa"; "a" may join it, "i" never does: "in N A
    I think" = "in NA I think")."""
    text = unicodedata.normalize("NFKC", _MARKUP.sub(" ", text)).lower()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    text = re.sub(r"\d+", lambda m: f" {_number_or_year(m.group())} ", text)
    text = re.sub(r"[’`]", "'", text)
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    text = text.replace("'", "")
    text = re.sub(r"[^\w\s]|_", " ", text)
    words: list[str] = []
    for word in text.split():
        if word in _FILLERS:
            continue
        words += _SPELLINGS.get(word, word).split()
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and word not in ("a", "i"):
            run.append(word)
            continue
        if word == "a" and run:  # "a" inside or ending a run of letters ("m f a"); "i" is the pronoun
            run.append(word)
            continue
        if run:
            joined.append("".join(run) if len(run) > 1 else run[0])
            run = []
        if word:
            joined.append(word)
    return joined


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Edit distance between two word sequences (substitutions + deletions + insertions)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of one pair of texts after :func:`normalise` (1.0 per extra word if the reference
    is empty and the hypothesis is not)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    return word_errors(ref, hyp) / max(1, len(ref))


async def transcribe_pcm(stt: SpeechToText, pcm: Float32Array, rate: int, chunk_ms: float = 20.0) -> tuple[str, float]:
    """The final text of ``pcm`` and the seconds from the end of the input to the final transcript."""
    ended = 0.0

    async def source() -> AsyncIterator[AudioChunk]:
        nonlocal ended
        for chunk in split_chunks(pcm, rate, chunk_ms):
            yield chunk
        ended = time.perf_counter()

    text = ""
    stream = stt.transcribe(source())
    try:
        async for transcript in stream:
            if transcript.final:
                text = transcript.text
    finally:
        await aclose(stream)
    return text, time.perf_counter() - ended


async def accuracy(engines: Mapping[str, SpeechToText], corpus: Sequence[Clip]) -> tuple[Table, dict[str, object]]:
    """WER per engine and category (hard clips on their own row) and real-time factor (decode seconds
    after the input ends / audio seconds) over the whole corpus. ``raw`` holds every clip's texts."""
    raw: dict[str, list[dict[str, object]]] = {}
    for name, stt in engines.items():
        per_clip: list[dict[str, object]] = []
        for clip in corpus:
            pcm, rate = read_audio(clip.path)
            text, seconds = await transcribe_pcm(stt, pcm, rate)
            per_clip.append(
                {
                    "clip": clip.name,
                    "category": clip.category,
                    "audio_s": len(pcm) / rate,
                    "decode_s": seconds,
                    "reference": audible_text(clip),
                    "hypothesis": text,
                }
            )
            if clip.text != audible_text(clip):  # the source's own transcript, scored on a row of its own
                per_clip[-1]["source_reference"] = clip.text
        raw[name] = per_clip
    return rescore(raw), dict(raw)


def rescore(raw: Mapping[str, Sequence[Mapping[str, object]]], rss_mb: Mapping[str, float] | None = None) -> Table:
    """The accuracy table from saved per-clip texts (``accuracy``'s raw output, e.g. read back from
    ``--json``), scored with the current :func:`normalise`; with ``rss_mb`` (engine -> peak RSS MB) a peak
    RSS column too."""
    columns = ["engine", "category", "clips", "words", "WER %", "real-time factor"]
    table = Table(
        "Speech-to-text on real speech (WER, lower is better)",
        columns + (["peak RSS MB"] if rss_mb is not None else []),
    )
    extra: tuple[object, ...] = ()
    for name, saved in raw.items():
        per_clip = [_scored(row, str(row["reference"])) for row in saved]
        if rss_mb is not None:
            extra = (rss_mb.get(name, float("nan")),)
        for category in CATEGORIES:
            rows = [r for r in per_clip if r["category"] == category]
            if rows:
                table.add(name, category, *_score(rows), *extra)
        table.add(name, "read + conversational", *_score([r for r in per_clip if r["category"] in _EVERYDAY]), *extra)
        for category in CATEGORIES:  # where a source's transcript holds words its audio does not
            rows = [r for r in per_clip if r["category"] == category]
            if any("source_reference" in r for r in rows):
                as_source = [_scored(r, str(r.get("source_reference", r["reference"]))) for r in rows]
                table.add(name, f"{category}, the source's transcripts", *_score(as_source), *extra)
    return table


def _scored(row: Mapping[str, object], reference: str) -> dict[str, object]:
    ref, hyp = normalise(reference), normalise(str(row["hypothesis"]))
    return {**row, "words": len(ref), "errors": word_errors(ref, hyp)}


def _score(rows: Iterable[Mapping[str, object]]) -> tuple[int, int, float, float]:
    items = list(rows)
    words = sum(int(str(r["words"])) for r in items)
    errors = sum(int(str(r["errors"])) for r in items)
    audio = sum(float(str(r["audio_s"])) for r in items)
    decode = sum(float(str(r["decode_s"])) for r in items)
    return len(items), words, 100.0 * errors / max(1, words), decode / audio if audio else float("nan")


async def decode_latency(
    engines: Mapping[str, SpeechToText], lengths: Sequence[float] = (1, 2, 3, 4, 6), runs: int = 5
) -> tuple[Table, dict[str, object]]:
    """p50 / p90 seconds from the end of a turn's input to its final, per engine and turn length.

    Turns are the first ``length`` seconds of the longest read clip (real speech), fed in 20 ms chunks as
    fast as the engine takes them; one untimed run per engine first (model load, caches)."""
    clip = max(clips("read"), key=lambda c: c.path.stat().st_size)
    pcm, rate = read_audio(clip.path)
    table = Table(
        "Speech-to-text: end of input to final transcript",
        ["engine", "turn s", "p50 ms", "p90 ms"],
        note=f"{runs} runs per cell on '{clip.name}' cut to each length, fed at once (PocketSphinx's time "
        "here is its backlog; live it decodes while the player speaks). Whisper decodes after the end.",
    )
    raw: dict[str, object] = {}
    for name, stt in engines.items():
        await transcribe_pcm(stt, pcm[:rate], rate)
        cells: dict[str, list[float]] = {}
        for length in lengths:
            turn = pcm[: int(length * rate)]
            times = [(await transcribe_pcm(stt, turn, rate))[1] for _ in range(runs)]
            cells[str(length)] = times
            p50, p90 = percentiles([t * 1000 for t in times], (50, 90))
            table.add(name, length, p50, p90)
        raw[name] = cells
    return table, raw


_RSS_SCRIPT = """
import asyncio, sys
from facecast.audio import read_audio
from facecast.bench.stt_bench import transcribe_pcm
def kb(key):  # VmHWM (peak) and VmRSS start afresh at exec, unlike getrusage's ru_maxrss on Linux
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key))
before = kb("VmRSS:")
engine = sys.argv[2]
if engine.startswith("whisper-"):
    from facecast.stt.whisper import WhisperOptions, WhisperSTT
    stt = WhisperSTT(WhisperOptions(beam_size=int(engine.split("-")[1])))
else:
    from facecast.services import make_stt
    stt = make_stt(engine)
pcm, rate = read_audio(sys.argv[1])
asyncio.run(transcribe_pcm(stt, pcm, rate))
print(before, kb("VmHWM:"))
"""


def peak_rss_mb(engine: str, clip: Path) -> tuple[float, float]:
    """(peak RSS of a fresh process that builds ``engine`` and transcribes ``clip``, its RSS before building)
    in MB; ``engine`` is ``whisper-BEAM`` (Whisper base with that beam size) or a ``--stt`` provider name.
    Measured in a subprocess (Linux ``/proc``) so nothing else in this process counts."""
    done = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(clip), engine], capture_output=True, text=True, check=True, timeout=600
    )
    before, peak = (int(v) / 1024 for v in done.stdout.split()[-2:])
    return peak, before


def whisper_peak_rss_mb(clip: Path, beam_size: int = 1) -> tuple[float, float]:
    """:func:`peak_rss_mb` of Whisper base with ``beam_size``."""
    return peak_rss_mb(f"whisper-{beam_size}", clip)


def _quick_corpus(corpus: Sequence[Clip], per_category: int) -> list[Clip]:
    """Up to ``per_category`` clips under ~9 s of each category, evenly spread over its (named) order."""
    chosen: list[Clip] = []
    for category in CATEGORIES:
        short = [c for c in corpus if c.category == category and c.path.stat().st_size < 300_000]
        step = max(1, len(short) / per_category) if short else 1
        chosen += [short[int(k * step)] for k in range(min(per_category, len(short)))]
    return chosen


async def stt_accuracy(
    quick: bool = False, *, per_category: int | None = None, peak_rss: bool = True
) -> tuple[Table, dict[str, object]]:
    """The table for ``facecast bench``: Whisper (greedy, and beam 5 unless ``quick``) vs PocketSphinx on the
    whole corpus, one row per engine and category (read, conversational, jargon, hard) plus read +
    conversational, with WER %, real-time factor and (``peak_rss``) each engine's peak RSS in a fresh
    process. ``quick``: up to ``per_category`` (default 6) clips under ~9 s of every category."""
    from ..services import make_stt
    from ..stt.whisper import WhisperOptions, WhisperSTT

    corpus = clips()
    if quick or per_category is not None:
        corpus = _quick_corpus(corpus, per_category or 6)
    engines: dict[str, SpeechToText] = {"whisper base (beam 1)": WhisperSTT(WhisperOptions(beam_size=1))}
    rss_names = {"whisper base (beam 1)": "whisper-1", "pocketsphinx": "pocketsphinx"}
    if not quick:
        engines["whisper base (beam 5)"] = WhisperSTT(WhisperOptions(beam_size=5))
        rss_names["whisper base (beam 5)"] = "whisper-5"
    engines["pocketsphinx"] = make_stt("pocketsphinx")
    _, raw = await accuracy(engines, corpus)
    clip_rows: dict[str, Sequence[Mapping[str, object]]] = {k: v for k, v in raw.items() if isinstance(v, list)}
    if not peak_rss:
        table = rescore(clip_rows)
        table.note = "Whisper base int8, 2 threads. Peak RSS: not measured (each engine in a fresh process)."
        return table, raw
    longest = max((c for c in corpus if c.category != "hard"), key=lambda c: c.path.stat().st_size)
    rss: dict[str, float] = {}
    before = float("nan")
    for name, engine in rss_names.items():
        rss[name], before = await asyncio.to_thread(peak_rss_mb, engine, longest.path)
    table = rescore(clip_rows, rss)
    table.note = (
        f"Whisper base int8, 2 threads. Peak RSS: a fresh process building the engine and transcribing "
        f"'{longest.name}' ({before:.0f} MB before building). Real-time factor: time from the end of the "
        "input (fed at once) to the final / audio length; PocketSphinx decodes as audio arrives, so live "
        "it has little left at the end. Hard clips (whisper, falsetto, cut-off words...) and jargon (a "
        "product name) have their own rows."
    )
    raw["peak_rss_mb"] = rss
    raw["whisper_peak_rss_mb"] = rss["whisper base (beam 1)"]
    raw["rss_before_load_mb"] = before
    return table, raw


async def stt_latency(quick: bool = False) -> tuple[Table, dict[str, object]]:
    """The table for ``facecast bench``: Whisper beam 1 and 5 vs PocketSphinx, end of input to final
    (``quick``: turns of 1 and 3 s, 2 runs each)."""
    from ..services import make_stt
    from ..stt.whisper import WhisperOptions, WhisperSTT

    engines: dict[str, SpeechToText] = {
        "whisper base (beam 1)": WhisperSTT(WhisperOptions(beam_size=1)),
        "whisper base (beam 5)": WhisperSTT(WhisperOptions(beam_size=5)),
        "pocketsphinx": make_stt("pocketsphinx"),
    }
    return await decode_latency(engines, (1, 3) if quick else (1, 2, 3, 4, 6), 2 if quick else 7)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facecast.bench.stt_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer clips and runs")
    parser.add_argument("--only", choices=("accuracy", "latency"), help="one table")
    parser.add_argument("--json", help="save the raw numbers (per clip) here")
    parser.add_argument("--rescore", metavar="JSON", help="score the texts saved by --json again; decode nothing")
    args = parser.parse_args(argv)
    if args.rescore:
        saved = json.loads(Path(args.rescore).read_text(encoding="utf-8"))["accuracy"]
        print(rescore({k: v for k, v in saved.items() if isinstance(v, list)}).text())
        return 0

    async def run() -> tuple[list[Table], dict[str, object]]:
        tables: list[Table] = []
        raw: dict[str, object] = {"machine": machine_description(), "quick": args.quick}
        if args.only in (None, "accuracy"):
            table, raw["accuracy"] = await stt_accuracy(args.quick)
            tables.append(table)
        if args.only in (None, "latency"):
            table, raw["latency"] = await stt_latency(args.quick)
            tables.append(table)
        return tables, raw

    tables, raw = asyncio.run(run())
    print(f"Machine: {raw['machine']}\n")
    for table in tables:
        print(table.text() + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
