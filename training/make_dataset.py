"""Synthesise the learned face model's training and evaluation data with the repo's own TTS voices.

Each utterance is a random sentence of English words from pocketsphinx's bundled CMU dictionary, spoken
after a random lead-in of silence (so frames fall at every phase of the audio) by one voice family
(``--mix``): espeak-ng (:class:`facecast.tts.espeak.EspeakTTS`, a random voice, variant, rate and pitch)
or one of the neural voices that expose exact phoneme timing: hibari (``heart``, random speed and noise
seed), Piper ``en_US-joe-medium`` (random length, noise and duration noise) and Kokoro-82M int8 (a random
one of its five Japanese voice packs speaking English misaki phonemes, random speed; slow, so used
sparingly). A neural utterance is also re-labelled to a sample rate 0.88-1.12 times its own (pitch,
formants and tempo move together, like a shorter or longer vocal tract), so one voice becomes many.

Its target is the phonetic animator's mouth for the same utterance
(:meth:`facecast.face.phonetic.PhoneticAnimator.render` of the TTS phoneme timing), so both animators
produce one consistent face. Every utterance is stored twice: clean (random
gain only) and through a random augmentation chain (noise at 0-35 dB SNR, reverberation, gain and
clipping, band-limiting, resampling to 8-48 kHz). Features are computed exactly as at run time
(:class:`facecast.audio.Resampler` to the feature rate, then :func:`facecast.face.features.features`).

The evaluation split uses voices AND variants that the training split never uses (``HELDOUT_*``).

    .venv/bin/python training/make_dataset.py --out out/face-dataset --train 3000 --eval 300 --seed 1

writes ``train.npz`` / ``eval.npz`` (features float16, targets float16, per-utterance offsets) and
``eval_meta.json`` (per evaluation utterance: voice, augmentation, phonemes with their frame spans).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import signal

from facecast.audio import Resampler
from facecast.face.arkit import INDEX
from facecast.face.features import FeatureConfig, features
from facecast.face.phonetic import PhoneticAnimator
from facecast.tts.espeak import EspeakTTS
from facecast.tts.hibari import HibariOptions, HibariTTS
from facecast.tts.kokoro import KokoroOptions, KokoroTTS
from facecast.tts.piper import PiperOptions, PiperTTS
from facecast.types import FPS, Phoneme

__all__ = [
    "iter_split",
    "splits",
    "load_words",
    "to_features",
    "MOUTH_CHANNELS",
    "TRAIN_VOICES",
    "TRAIN_VARIANTS",
    "HELDOUT_VOICES",
    "HELDOUT_VARIANTS",
    "FAMILIES",
    "KOKORO_VOICES",
    "main",
]

MOUTH_CHANNELS: tuple[str, ...] = (
    "JawOpen", "MouthClose", "MouthFunnel", "MouthPucker", "MouthSmileLeft", "MouthSmileRight",
    "MouthStretchLeft", "MouthStretchRight", "MouthRollLower", "MouthRollUpper", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft",
    "MouthUpperUpRight", "TongueOut",
)  # fmt: skip
TRAIN_VOICES = ("en-us", "en-gb", "en-029", "en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan")
TRAIN_VARIANTS = (
    "",
    "m1",
    "m2",
    "m3",
    "m5",
    "m7",
    "f1",
    "f2",
    "f3",
    "f5",
    "klatt",
    "klatt3",
    "klatt4",
    "Alex",
    "Annie",
    "benjamin",
    "david",
    "linda",
    "max",
    "paul",
    "robert",
    "travis",
    "zac",
)
HELDOUT_VOICES = ("en-gb-scotland", "en-gb-x-gbcwmd")
HELDOUT_VARIANTS = ("m4", "f4", "m6", "klatt2", "steph", "Andy")
DELAY = 4  # model lookahead in frames; features are stored for frames + DELAY
FAMILIES = ("espeak", "hibari", "piper", "kokoro")
DEFAULT_MIX = "espeak=0.6,hibari=0.17,piper=0.17,kokoro=0.06"
KOKORO_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")

_SOURCE_RATE = 22_050


def load_words(rng: random.Random) -> list[str]:
    """Plain alphabetic words of 1-10 letters from pocketsphinx's CMU dictionary, shuffled."""
    import pocketsphinx

    path = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
    words = set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        word = line.split(" ", 1)[0]
        if word.isalpha() and word.isascii() and 1 <= len(word) <= 10:
            words.add(word.lower())
    ordered = sorted(words)
    rng.shuffle(ordered)
    return ordered


def sentence(rng: random.Random, words: list[str]) -> str:
    parts = []
    for i in range(rng.randint(3, 12)):
        parts.append(rng.choice(words))
        if i and rng.random() < 0.12:
            parts[-1] += rng.choice([",", ",", ".", "?", "!"])
    return " ".join(parts).capitalize() + rng.choice([".", ".", "?", "!"])


@dataclass
class Utterance:
    voice: str
    rate: int
    pitch: int
    audio: np.ndarray  # float32 at sample_rate
    phonemes: list[Phoneme]  # sample positions in audio
    sample_rate: int = _SOURCE_RATE
    family: str = "espeak"


def parse_mix(text: str) -> dict[str, float]:
    """``espeak=0.6,hibari=0.2`` -> normalised weights by family."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in FAMILIES:
            raise SystemExit(f"unknown voice family {name!r} in --mix (known: {', '.join(FAMILIES)})")
        mix[name.strip()] = float(weight)
    total = sum(mix.values())
    return {k: v / total for k, v in mix.items() if v > 0}


async def _speak(tts: object, text: str, lead: int, voice: str, rate: int, pitch: int, family: str) -> Utterance:
    chunks = [c async for c in tts.synthesize(text)]  # type: ignore[attr-defined]
    sr = int(tts.sample_rate)  # type: ignore[attr-defined]
    audio = np.concatenate([np.zeros(lead, np.float32), *[c.audio.pcm for c in chunks]])
    phonemes = [Phoneme(p.symbol, p.start + lead, p.end + lead, p.alphabet) for c in chunks for p in c.phonemes]
    if lead:
        phonemes.insert(0, Phoneme("_", 0, lead))
    return Utterance(voice, rate, pitch, audio, phonemes, sr, family)


async def synthesise(text: str, voice: str, rate: int, pitch: int, lead: int) -> Utterance:
    return await _speak(EspeakTTS(voice, rate=rate, pitch=pitch), text, lead, voice, rate, pitch, "espeak")


async def synthesise_neural(rng: random.Random, family: str, text: str, lead: int) -> Utterance:
    """One utterance by a neural voice with random settings, re-labelled to a random nearby sample rate."""
    speed = rng.uniform(0.75, 1.35)
    tts: object
    if family == "hibari":
        tts, voice = HibariTTS(HibariOptions(speed=speed, seed=rng.randrange(1 << 30))), "hibari-heart"
    elif family == "piper":
        options = PiperOptions(
            length_scale=1.0 / speed, noise_scale=rng.uniform(0.3, 0.9), noise_w=rng.uniform(0.4, 1.0)
        )
        tts, voice = PiperTTS(options), "piper-joe"
    else:
        name = rng.choice(KOKORO_VOICES)
        tts, voice = KokoroTTS(KokoroOptions(voice=name, speed=speed)), f"kokoro-{name}"
    warp = rng.uniform(0.88, 1.12)
    utt = await _speak(tts, text, lead, voice, round(speed * 100), round(warp * 100), family)
    utt.sample_rate = int(round(utt.sample_rate * warp / 50)) * 50  # pitch, formants and tempo together
    return utt


# ---------------------------------------------------------------------------------------- augmentation


def _coloured_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    white = rng.standard_normal(n)
    kind = rng.integers(3)
    if kind == 0:
        return white
    spectrum = np.fft.rfft(white)
    f = np.maximum(np.arange(len(spectrum)), 1.0)
    spectrum /= f ** (0.5 if kind == 1 else 1.0)  # pink or brown
    return np.fft.irfft(spectrum, n)


def _reverb(rng: np.random.Generator, x: np.ndarray, rate: int) -> np.ndarray:
    rt60 = rng.uniform(0.1, 0.8)
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.002 * rate)] *= 0.1  # a gap before the reflections
    ir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path
    wet = signal.fftconvolve(x, ir)[: len(x)]
    return wet * (np.abs(x).max() / max(np.abs(wet).max(), 1e-9))


def augment(rng: np.random.Generator, x: np.ndarray, rate: int) -> tuple[np.ndarray, int, str]:
    """A random chain of degradations; returns (audio, its rate, a description)."""
    steps = []
    y = x.astype(np.float64)
    if rng.random() < 0.5:
        y = _reverb(rng, y, rate)
        steps.append("reverb")
    if rng.random() < 0.5:
        lo = float(rng.choice([0.0, 100.0, 300.0]))
        hi = min(float(rng.choice([3400.0, 4000.0, 5500.0, 8000.0])), 0.45 * rate)  # 16 kHz real speech: 7200
        if lo > 0:
            y = signal.sosfilt(signal.butter(4, [lo, hi], "bandpass", fs=rate, output="sos"), y)
        else:
            y = signal.sosfilt(signal.butter(4, hi, "lowpass", fs=rate, output="sos"), y)
        steps.append(f"band{int(lo)}-{int(hi)}")
    if rng.random() < 0.7:
        snr = rng.uniform(0.0, 35.0)
        speech = np.sqrt(np.mean(y[np.abs(y) > 0.01 * np.abs(y).max()] ** 2) + 1e-12)
        noise = _coloured_noise(rng, len(y))
        y = y + noise * speech / np.sqrt(np.mean(noise**2)) * 10 ** (-snr / 20)
        steps.append(f"snr{snr:.0f}")
    gain_db = rng.uniform(-24.0, 10.0)
    y = np.clip(y / max(np.abs(y).max(), 1e-9) * 0.7 * 10 ** (gain_db / 20), -1.0, 1.0)
    steps.append(f"gain{gain_db:+.0f}")
    out_rate = int(rng.choice([8000, 16000, 22050, 22050, 24000, 44100, 48000]))
    z = y.astype(np.float32)
    if out_rate != rate:
        resampler = Resampler(rate, out_rate)
        z = np.concatenate([resampler.process(z), resampler.flush()])
        steps.append(f"rate{out_rate}")
    return z.astype(np.float32), out_rate, "+".join(steps)


def to_features(audio: np.ndarray, rate: int, frames: int, config: FeatureConfig) -> np.ndarray:
    """Features for ``frames`` frames exactly as :class:`facecast.face.learned.LearnedAnimator` computes them."""
    resampler = Resampler(rate, config.rate)
    pcm = np.concatenate([resampler.process(audio), resampler.flush()])
    return features(pcm, frames, config)


def _phoneme_frames(phonemes: list[Phoneme], rate: int = _SOURCE_RATE) -> list[tuple[str, float, float]]:
    return [(p.symbol, p.start * FPS / rate, p.end * FPS / rate) for p in phonemes]


async def iter_split(
    count: int,
    voices: tuple[str, ...],
    variants: tuple[str, ...],
    seed: int,
    words: list[str],
    mix: dict[str, float] | None = None,
) -> AsyncIterator[tuple[Utterance, np.ndarray, list[tuple[np.ndarray, int, str]]]]:
    """Per utterance: the utterance, its target (frames, channels), and its two versions (audio, rate, how).

    ``mix``: weights of the voice families (None: espeak-ng only, ``voices`` x ``variants``; the draws are
    then exactly those of the espeak-only generator, so the held-out split is unchanged). Deterministic for a
    given seed (the evaluation script regenerates the held-out split from it); utterances a neural voice
    cannot speak (rare) are skipped.
    """
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    animator = PhoneticAnimator()
    channels = [INDEX[c] for c in MOUTH_CHANNELS]
    families = sorted(mix) if mix else []
    for _ in range(count):
        family = rng.choices(families, [mix[f] for f in families])[0] if mix else "espeak"
        if family == "espeak":
            variant = rng.choice(variants)
            voice = rng.choice(voices) + (f"+{variant}" if variant else "")
            rate, pitch = rng.randint(110, 330), rng.randint(15, 90)
            utt = await synthesise(sentence(rng, words), voice, rate, pitch, rng.randint(0, 2 * 735))
        else:
            text, lead = sentence(rng, words), rng.randint(0, 2 * 800)
            try:
                utt = await synthesise_neural(rng, family, text, lead)
            except Exception as exc:  # noqa: BLE001 - a voice that cannot speak a random sentence: skip it
                print(f"  skipped ({family}: {exc})", flush=True)
                continue
        sr = utt.sample_rate
        target = animator.render(utt.phonemes, len(utt.audio), sr)[:, channels]
        gain = np.float32(10 ** (nrng.uniform(-20.0, 6.0) / 20) * 0.7 / max(np.abs(utt.audio).max(), 1e-9))
        versions = [(np.clip(utt.audio * gain, -1, 1), sr, "clean"), augment(nrng, utt.audio, sr)]
        yield utt, target, versions


async def build_split(
    count: int,
    voices: tuple[str, ...],
    variants: tuple[str, ...],
    seed: int,
    words: list[str],
    config: FeatureConfig,
    mix: dict[str, float] | None = None,
) -> tuple[dict[str, np.ndarray], list[dict[str, object]]]:
    feats, targets, offsets, meta = [], [], [0], []
    done = 0
    families: dict[str, int] = {}
    async for utt, target, versions in iter_split(count, voices, variants, seed, words, mix):
        families[utt.family] = families.get(utt.family, 0) + 1
        frames = len(target)
        for audio, audio_rate, how in versions:
            feats.append(to_features(audio, audio_rate, frames + DELAY, config).astype(np.float16))
            targets.append(target.astype(np.float16))
            offsets.append(offsets[-1] + frames)
            meta.append(
                {
                    "voice": utt.voice,
                    "rate": utt.rate,
                    "pitch": utt.pitch,
                    "augment": how,
                    "family": utt.family,
                    "phonemes": _phoneme_frames(utt.phonemes, utt.sample_rate),
                }
            )
        done += 1
        if done % 200 == 0:
            print(f"  {done}/{count} utterances", flush=True)
    data = {
        "features": np.concatenate(feats),
        "targets": np.concatenate(targets),
        "offsets": np.asarray(offsets, np.int64),  # target rows of utterance k: offsets[k]:offsets[k+1]
        "delay": np.asarray(DELAY),
    }
    print(f"  utterances by voice family: {families}", flush=True)
    return data, meta


Split = tuple[str, int, tuple[str, ...], tuple[str, ...], int, list[str]]


def splits(words: list[str], seed: int, train: int, heldout: int) -> list[Split]:
    """(name, count, voices, variants, seed, vocabulary) of the training and held-out splits."""
    cut = len(words) // 10  # the held-out sentences use words the training ones never do
    return [
        ("train", train, TRAIN_VOICES, TRAIN_VARIANTS, seed, words[cut:]),
        ("eval", heldout, HELDOUT_VOICES, HELDOUT_VARIANTS, seed + 1000, words[:cut]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/face-dataset")
    parser.add_argument("--train", type=int, default=3000, help="training utterances (each stored twice)")
    parser.add_argument("--eval", type=int, default=300, help="held-out utterances (each stored twice)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--mix",
        default=DEFAULT_MIX,
        help=f"voice families of the training split and their weights (default {DEFAULT_MIX}; 'espeak=1' is the "
        "espeak-only data of the first model); the held-out split is always the held-out espeak-ng voices",
    )
    args = parser.parse_args()
    mix = parse_mix(args.mix)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = FeatureConfig()
    started = time.perf_counter()
    words = load_words(random.Random(args.seed))
    for name, count, voices, variants, seed, vocab in splits(words, args.seed, args.train, args.eval):
        print(f"{name}: {count} utterances", flush=True)
        split_mix = mix if name == "train" and set(mix) != {"espeak"} else None
        data, meta = asyncio.run(build_split(count, voices, variants, seed, vocab, config, split_mix))
        np.savez(out / f"{name}.npz", **data)
        if name == "eval":
            (out / "eval_meta.json").write_text(json.dumps(meta))
        hours = len(data["targets"]) / FPS / 3600
        print(f"{name}: {len(meta)} clips, {hours:.2f} h, {time.perf_counter() - started:.0f} s", flush=True)
    (out / "config.json").write_text(
        json.dumps(
            {
                "features": config.to_json(),
                "delay": DELAY,
                "channels": list(MOUTH_CHANNELS),
                "seed": args.seed,
                "mix": mix,
                "wall_s": round(time.perf_counter() - started),
            }
        )
    )


if __name__ == "__main__":
    main()
