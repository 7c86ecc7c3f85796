"""Training data for the learned face from REAL human speech: recordings with known transcripts, their phones
found by forced alignment, the phonetic face of those phones as the target.

The TTS datasets of ``make_dataset.py`` teach the model what synthetic stops and nasals sound like; a human's
lips close on acoustics no TTS voice makes (pre-voicing, weak releases, nasal murmur, a room). This script
turns a folder of recordings with a transcript each into a dataset with the same layout as
``make_dataset.py``'s (``train.npz`` + ``config.json``), for ``train.py --data``:

- the transcript is normalised like the speech-to-text benchmark's (numbers as words, markup dropped; ``*``
  and ``#`` read "star" and "pound"); a transcript in brackets only (``[beep tone]``) is not speech, skipped;
- pocketsphinx 5 force-aligns it (:func:`facecast.bench.face_real_bench.align`: CMU ARPABET phones in 10 ms
  steps, cached); a recording with a word outside its dictionary is skipped and named in ``clips.json``;
- the target is the phonetic animator driven by those phones
  (:func:`facecast.bench.face_real_bench.phonetic_frames`): exactly the reference the real-speech evaluation
  scores against, so what the model learns here is what it is judged on;
- each recording is stored clean (random gain) and ``--augmented`` more times through ``make_dataset.py``'s
  degradation chain (noise, reverberation, band-limiting, other sample rates);
- every ``--hold-out``-th usable recording (by name) is held out: stored clean in ``eval.npz`` (the split
  ``train.py`` watches when this dataset comes first) and scored by ``evaluate.py --speaker DIR`` (the same
  scores as on the evaluation recordings), so adapting the face to one voice is measured on that voice.

A studio's own voice lines with their script are exactly this input: ``train.py --init`` (the shipped model)
with this dataset beside the TTS ones adapts the learned face to that actor (docs/face-model.md).

The recordings used for the shipped model are Allison Smith's Asterisk prompts (one US English speaker, 568
recordings, ~25 min, CC-BY-SA-3.0), from Debian's ``asterisk-core-sounds-en-g722`` (16 kHz G.722; ``.g722``
files are decoded with ffmpeg) and the transcripts of ``asterisk-core-sounds-en``::

    apt-get download asterisk-core-sounds-en-g722 asterisk-core-sounds-en
    dpkg-deb -x asterisk-core-sounds-en-g722_*.deb asterisk
    dpkg-deb -x asterisk-core-sounds-en_*.deb asterisk
    .venv/bin/python training/make_real_dataset.py --out out/face-dataset-real \\
        --audio asterisk/usr/share/asterisk/sounds/en_US_f_Allison \\
        --texts asterisk/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz --augmented 3 --seed 5

None of the evaluation recordings (:mod:`facecast.speechdata`: LibriVox, LibriSpeech, Michael McAuliffe,
game commentary) is in it: training and evaluation material stay apart.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

try:
    from make_dataset import DELAY, MOUTH_CHANNELS, augment, to_features  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as training.make_real_dataset (the tests)
    from training.make_dataset import DELAY, MOUTH_CHANNELS, augment, to_features

from facecast.audio import resample
from facecast.bench.face_real_bench import Aligned, align, phonetic_frames
from facecast.errors import InputError
from facecast.face.arkit import INDEX
from facecast.face.features import FeatureConfig
from facecast.speechdata import Clip

__all__ = ["read_texts", "speech_text", "load_audio", "build", "held_out", "main"]

RATE = 16_000
AUDIO_SUFFIXES = (".wav", ".flac", ".g722")
_SYMBOLS = {"*": " star ", "#": " pound "}


def read_texts(path: Path) -> dict[str, str]:
    """``name: text`` lines (``;`` starts a comment; ``.gz`` is read compressed) -> {name: text}."""
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    texts: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        name, sep, text = line.partition(":")
        if sep and not line.lstrip().startswith(";") and name.strip() and " " not in name.strip():
            texts[name.strip()] = text.strip()
    return texts


def speech_text(text: str) -> str | None:
    """The words pocketsphinx is to align (lower case, as the benchmark normalises them); None when the
    transcript says no words are spoken (empty, or only bracketed descriptions: ``[ascending tones]``)."""
    from facecast.bench.stt_bench import normalise

    if not re.sub(r"\[[^\]]*\]", " ", text).strip():
        return None
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    words = normalise(text)
    return " ".join(words) if words else None


def load_audio(path: Path) -> np.ndarray:
    """Mono float32 at 16 kHz (``.g722`` through ffmpeg, anything else through soundfile)."""
    if path.suffix == ".g722":
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise SystemExit("decoding .g722 needs ffmpeg (apt-get install ffmpeg)")
        cmd = [ffmpeg, "-v", "error", "-f", "g722", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(RATE), "-"]
        return np.frombuffer(subprocess.run(cmd, check=True, capture_output=True).stdout, np.float32).copy()
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    mono = np.ascontiguousarray(data.mean(axis=1), np.float32)
    return resample(mono, int(rate), RATE) if rate != RATE else mono


def _clip(prefix: str, name: str, path: Path, text: str, speaker: str) -> Clip:
    return Clip(f"{prefix}-{name.replace('/', '-')}", path, text, "train", speaker, prefix)


def build(
    audio_dir: Path,
    texts: dict[str, str],
    *,
    augmented: int,
    seed: int,
    prefix: str,
    speaker: str,
    hold_out: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, list[dict[str, object]]]:
    """The training arrays, the held-out arrays (clean only; None without ``hold_out``) and a record per
    recording (used, held out, or why not). ``hold_out`` K: every K-th usable recording is held out."""
    config = FeatureConfig()
    nrng = np.random.default_rng(seed)
    channels = [INDEX[c] for c in MOUTH_CHANNELS]
    splits: dict[bool, tuple[list[np.ndarray], list[np.ndarray], list[int]]] = {
        False: ([], [], [0]),
        True: ([], [], [0]),
    }
    records: list[dict[str, object]] = []
    usable = 0
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix in AUDIO_SUFFIXES)
    for path in files:
        name = path.relative_to(audio_dir).with_suffix("").as_posix()
        record: dict[str, object] = {"name": name}
        records.append(record)
        text = speech_text(texts.get(name, ""))
        if text is None:
            record["skipped"] = "no transcript" if name not in texts else "no words"
            continue
        audio = load_audio(path)
        clip = _clip(prefix, name, path, text, speaker)
        try:
            phones = align(clip, audio, RATE)
        except InputError as exc:
            record["skipped"] = str(exc)
            continue
        target = phonetic_frames(Aligned(clip, audio, RATE, tuple(phones)))[:, channels]
        frames = len(target)
        held = bool(hold_out) and usable % hold_out == hold_out - 1
        usable += 1
        gain = np.float32(10 ** (nrng.uniform(-20.0, 6.0) / 20) * 0.7 / max(float(np.abs(audio).max()), 1e-9))
        versions = [(np.clip(audio * gain, -1, 1), RATE)]
        if not held:
            versions += [augment(nrng, audio, RATE)[:2] for _ in range(augmented)]
        feats, targets, offsets = splits[held]
        for pcm, rate in versions:
            feats.append(to_features(pcm, rate, frames + DELAY, config).astype(np.float16))
            targets.append(target.astype(np.float16))
            offsets.append(offsets[-1] + frames)
        record.update(path=str(path), text=text, seconds=round(len(audio) / RATE, 2), held_out=held)
    if not splits[False][1]:
        raise SystemExit(f"no recording in {audio_dir} could be used (see the reasons with --out's clips.json)")
    arrays = {
        held: {
            "features": np.concatenate(feats),
            "targets": np.concatenate(targets),
            "offsets": np.asarray(offsets, np.int64),
            "delay": np.asarray(DELAY),
        }
        for held, (feats, targets, offsets) in splits.items()
        if targets
    }
    return arrays[False], arrays.get(True), records


def held_out(folder: Path) -> list[Aligned]:
    """The held-out recordings of a dataset this script wrote, with their (cached) alignment phones."""
    config = json.loads((folder / "config.json").read_text())
    prefix, speaker = config["real"]["prefix"], config["real"]["speaker"]
    items = []
    for record in json.loads((folder / "clips.json").read_text()):
        if record.get("held_out"):
            path, text = Path(str(record["path"])), str(record["text"])
            clip = _clip(prefix, str(record["name"]), path, text, speaker)
            audio = load_audio(path)
            items.append(Aligned(clip, audio, RATE, tuple(align(clip, audio, RATE))))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/face-dataset-real")
    parser.add_argument("--audio", required=True, help="folder of recordings (.wav, .flac, .g722; searched below)")
    parser.add_argument("--texts", required=True, help="'name: text' lines; name = path below --audio, no suffix")
    parser.add_argument("--augmented", type=int, default=3, help="degraded copies of each recording (besides clean)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--prefix", default="asterisk", help="names the recordings in the alignment cache")
    parser.add_argument("--speaker", default="allison")
    parser.add_argument("--hold-out", type=int, default=5, help="every K-th usable recording is held out (0: none)")
    args = parser.parse_args()
    random.seed(args.seed)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, heldout, records = build(
        Path(args.audio),
        read_texts(Path(args.texts)),
        augmented=args.augmented,
        seed=args.seed,
        prefix=args.prefix,
        speaker=args.speaker,
        hold_out=args.hold_out,
    )
    np.savez(out / "train.npz", **data)
    if heldout is not None:
        np.savez(out / "eval.npz", **heldout)
    (out / "clips.json").write_text(json.dumps(records, indent=0))
    used = [r for r in records if "seconds" in r and not r["held_out"]]
    kept = [r for r in records if r.get("held_out")]
    seconds = sum(float(r["seconds"]) for r in used)  # type: ignore[arg-type]
    (out / "config.json").write_text(
        json.dumps(
            {
                "features": FeatureConfig().to_json(),
                "delay": DELAY,
                "channels": list(MOUTH_CHANNELS),
                "seed": args.seed,
                "real": {
                    "audio": args.audio,
                    "prefix": args.prefix,
                    "speaker": args.speaker,
                    "recordings": len(used),
                    "seconds": round(seconds, 1),
                    "held_out": len(kept),
                    "held_out_seconds": round(sum(float(r["seconds"]) for r in kept), 1),  # type: ignore[arg-type]
                },
                "augmented": args.augmented,
                "wall_s": round(time.perf_counter() - started),
            }
        )
    )
    print(
        f"{len(used)} of {len(records)} recordings for training ({seconds / 60:.1f} min), {len(kept)} held out, "
        f"{time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
