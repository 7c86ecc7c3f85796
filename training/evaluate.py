"""Evaluate the shipped (or any) learned mouth model on held-out voices, end to end through the runtime.

    .venv/bin/python training/evaluate.py --utterances 150 --seed 1 [--model path/mouth.json] [--json out.json]

Regenerates the held-out split of ``make_dataset.py`` (voices and variants never used in training, words
never used in training sentences; clean and augmented versions), animates each clip's audio with
:class:`facecast.face.learned.LearnedAnimator` (resampling, features and onnxruntime exactly as at run
time) and compares with the phonetic animator's frames from the TTS phoneme timing:

- per-channel mean absolute error; JawOpen Pearson correlation;
- lip-closure recall: the share of ``p b m`` phonemes where the predicted MouthClose reaches 0.3 (the
  target pose is 0.65) within the phoneme's frames, one frame of slack either side;
- open-vowel opening: mean predicted JawOpen at the centre frame of open vowels (``a A: V 0 aI aU``...)
  and the share of those frames where the mouth is wrongly closed (MouthClose >= 0.3);
- timing lag: the shift (frames, -6..6) maximising the cross-correlation of predicted and target
  JawOpen (and MouthClose); positive = the prediction is late;
- speed: :func:`facecast.bench.face_bench.learned_speed`.

With ``--neural N``, the same scores on N held-out sentences spoken by the neural voices with phoneme timing
(hibari and Piper joe, half each; their only voices, so the sentences are held out, not the voices), the
kind of TTS without timing the learned face animates at run time.

With ``--real``, also real human speech (:mod:`facecast.bench.face_real_bench`): the recordings of
:mod:`facecast.speechdata` with pocketsphinx forced-alignment phones, split into a validation and an
evaluation half; closure recall on p/b/m, open-vowel recall, open/mid vowels shown closed and lag, for this
model (and ``--baseline``), the phonetic face driven by the alignment phones (the ceiling) and Rhubarb Lip
Sync 1.13.0, overall and per speaker:

    .venv/bin/python training/evaluate.py --real --no-heldout --no-speed --json out/face-model/real.json

With ``--speaker DIR`` (a dataset of ``make_real_dataset.py``), the same real-speech scores on the recordings
that dataset held out: one voice, heard in training through its other recordings (the speaker-adaptation
case).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from pathlib import Path

import numpy as np

try:
    from make_dataset import MOUTH_CHANNELS, iter_split, load_words, splits  # type: ignore[import-not-found]
    from make_real_dataset import held_out  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from training.make_dataset import MOUTH_CHANNELS, iter_split, load_words, splits
    from training.make_real_dataset import held_out

from facecast.bench.face_real_bench import lag as _lag
from facecast.face.arkit import INDEX
from facecast.face.learned import LearnedAnimator
from facecast.face.visemes import lookup
from facecast.types import FPS

__all__ = ["evaluate", "main"]

CLOSED = 0.3
_OPEN_VISEMES = {"aa", "ah"}


NEURAL_MIX = {"hibari": 0.5, "piper": 0.5}
"""``--neural``: the neural voices with phoneme timing that synthesise fast enough to evaluate on (Kokoro,
~0.3x real time here, is left out)."""


async def evaluate(
    utterances: int, seed: int, model: str | None, mix: dict[str, float] | None = None
) -> dict[str, object]:
    """Held-out espeak-ng voices (``mix`` None), or with ``mix`` the neural voices speaking held-out sentences
    (the held-out vocabulary, another seed than the espeak-ng split; the voices themselves are the training
    ones: hibari and Piper each ship one)."""
    animator = LearnedAnimator(model)
    words = load_words(random.Random(seed))
    _, count, voices, variants, split_seed, vocab = splits(words, seed, 0, utterances)[1]
    if mix is not None:
        split_seed += 1000
    channels = [INDEX[c] for c in MOUTH_CHANNELS]
    jaw, close = MOUTH_CHANNELS.index("JawOpen"), MOUTH_CHANNELS.index("MouthClose")
    results: dict[str, object] = (
        {"utterances": count, "voices": voices, "variants": variants}
        if mix is None
        else {"utterances": count, "voices": sorted(mix)}
    )
    per: dict[str, dict[str, list[np.ndarray]]] = {k: {"p": [], "t": []} for k in ("clean", "augmented")}
    hits = {"clean": [0, 0], "augmented": [0, 0]}
    vowels: dict[str, list[tuple[float, bool, float]]] = {"clean": [], "augmented": []}
    async for utt, target, versions in iter_split(count, voices, variants, split_seed, vocab, mix):
        rate_in = utt.sample_rate
        for audio, rate, how in versions:
            kind = "clean" if how == "clean" else "augmented"
            pred = animator.render(audio, rate)[:, channels]
            n = min(len(pred), len(target))
            pred, tgt = pred[:n], target[:n]
            per[kind]["p"].append(pred)
            per[kind]["t"].append(tgt)
            for ph in utt.phonemes:
                lo = int(np.floor(ph.start * FPS / rate_in)) - 1
                hi = int(np.ceil(ph.end * FPS / rate_in)) + 1
                lo, hi = max(lo, 0), min(hi, n)
                if hi <= lo:
                    continue
                visemes = lookup(ph.symbol, ph.alphabet).visemes
                if visemes == ("PP",):
                    hits[kind][1] += 1
                    hits[kind][0] += int(pred[lo:hi, close].max() >= CLOSED)
                elif visemes[0] in _OPEN_VISEMES:
                    centre = min(n - 1, round((ph.start + ph.end) / 2 * FPS / rate_in))
                    vowels[kind].append(
                        (float(pred[centre, jaw]), bool(pred[centre, close] >= CLOSED), float(tgt[centre, jaw]))
                    )
    for kind in ("clean", "augmented"):
        p, t = np.concatenate(per[kind]["p"]), np.concatenate(per[kind]["t"])
        results[kind] = {
            "frames": len(p),
            "mae": {name: round(float(np.abs(p[:, i] - t[:, i]).mean()), 4) for i, name in enumerate(MOUTH_CHANNELS)},
            "mae_mean": round(float(np.abs(p - t).mean()), 4),
            "jaw_corr": round(float(np.corrcoef(p[:, jaw], t[:, jaw])[0, 1]), 4),
            "close_corr": round(float(np.corrcoef(p[:, close], t[:, close])[0, 1]), 4),
            "closure_recall": round(hits[kind][0] / max(hits[kind][1], 1), 4),
            "closures": hits[kind][1],
            "open_vowel_jaw_mean": round(float(np.mean([v[0] for v in vowels[kind]])), 4),
            "open_vowel_target_jaw_mean": round(float(np.mean([v[2] for v in vowels[kind]])), 4),
            "open_vowels_closed": round(float(np.mean([v[1] for v in vowels[kind]])), 4),
            "lag_jaw_frames": _lag([x[:, jaw] for x in per[kind]["p"]], [x[:, jaw] for x in per[kind]["t"]]),
            "lag_close_frames": _lag([x[:, close] for x in per[kind]["p"]], [x[:, close] for x in per[kind]["t"]]),
        }
    return results


def speaker_scores(folder: Path, args: argparse.Namespace) -> dict[str, object]:
    """``--speaker``: the real-speech scores on the recordings ``folder``'s dataset held out."""
    from facecast.bench.face_real_bench import real_faces, real_speech_table, score

    items = held_out(folder)
    models: dict[str, str | Path | None] = {f"learned ({args.model or 'shipped'})": args.model}
    if args.baseline:
        models[f"learned ({args.baseline})"] = args.baseline
    faces, why = real_faces(models, rhubarb=not args.no_rhubarb, recognizers=tuple(args.recognizer or ["phonetic"]))
    out: dict[str, object] = {"clips": {"held-out": [i.clip.name for i in items]}, "rhubarb": why}
    out["held-out"] = {label: score(items, face) for label, face in faces.items()}
    title = f"Audio-to-face on the recordings {folder} held out (one voice, forced-alignment phones)"
    print(real_speech_table(out, "held-out", title).text())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="evaluate the learned mouth model on held-out voices")
    parser.add_argument("--utterances", type=int, default=150)
    parser.add_argument("--seed", type=int, default=1, help="the dataset seed (held-out split = seed + 1000)")
    parser.add_argument("--model", help="mouth.json (default: the shipped model)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--no-heldout", action="store_true", help="skip the held-out espeak-ng voices")
    parser.add_argument(
        "--neural",
        type=int,
        default=0,
        help="also this many held-out sentences spoken by the neural voices (hibari, Piper); 0: skip",
    )
    parser.add_argument("--real", action="store_true", help="also score real human speech beside Rhubarb")
    parser.add_argument("--baseline", help="another mouth.json to score beside --model on real speech")
    parser.add_argument("--no-rhubarb", action="store_true")
    parser.add_argument("--recognizer", action="append", help="Rhubarb recognizer(s): phonetic (default), pocketSphinx")
    parser.add_argument("--speaker", help="a make_real_dataset.py folder: also score its held-out recordings")
    args = parser.parse_args()
    results: dict[str, object] = {}
    if not args.no_heldout:
        results = asyncio.run(evaluate(args.utterances, args.seed, args.model))
    if args.neural:
        results["neural"] = asyncio.run(evaluate(args.neural, args.seed, args.model, NEURAL_MIX))
    if args.real:
        from facecast.bench.face_real_bench import evaluate_real, real_speech_table

        models: dict[str, str | None] = {f"learned ({args.model or 'shipped'})": args.model}
        if args.baseline:
            models[f"learned ({args.baseline})"] = args.baseline
        real = evaluate_real(
            models,
            halves=("validation", "evaluation"),
            rhubarb=not args.no_rhubarb,
            recognizers=tuple(args.recognizer or ["phonetic"]),
        )
        results["real"] = real
        for half in ("validation", "evaluation"):
            print(real_speech_table(real, half).text())
    if args.speaker:
        results["speaker"] = speaker_scores(Path(args.speaker), args)
    if not args.no_speed:
        from facecast.bench.face_bench import learned_speed

        results["speed"] = learned_speed(seconds=30.0, model=args.model)
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
