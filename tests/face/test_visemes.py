"""The phoneme -> viseme -> pose tables."""

from __future__ import annotations

from types import MappingProxyType

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from facecast.face.arkit import INDEX
from facecast.face.visemes import (
    GLIDE_SPLITS,
    PAUSE,
    PHONEME_VISEMES,
    UNKNOWN,
    VISEMES,
    Articulator,
    Lookup,
    Viseme,
    articulator_of,
    lookup,
    pose_vector,
    strip_marks,
)


def _pose(name: str, curve: str) -> float:
    return VISEMES[name].pose.get(curve, 0.0)


@pytest.mark.parametrize(
    ("symbol", "viseme"),
    [
        ("p", "PP"), ("b", "PP"), ("m", "PP"),
        ("f", "FF"), ("v", "FF"),
        ("T", "TH"), ("D", "TH"),
        ("t", "DD"), ("d", "DD"),
        ("n", "nn"), ("l", "nn"),
        ("k", "kk"), ("g", "kk"), ("N", "kk"),
        ("s", "SS"), ("z", "SS"),
        ("S", "CH"), ("Z", "CH"), ("tS", "CH"), ("dZ", "CH"),
        ("r", "RR"), ("w", "ww"), ("j", "iy"), ("h", "hh"),
        ("a", "aa"), ("A:", "aa"), ("V", "ah"), ("0", "ah"), ("O:", "oh"),
        ("E", "E"), ("e", "E"), ("@", "ax"), ("a#", "ax"), ("3:", "er"), ("3", "er"),
        ("I", "ih"), ("i", "ih"), ("i:", "iy"), ("u:", "ou"), ("U", "ou"),
    ],
)  # fmt: skip
def test_single_phonemes_map_to_their_viseme(symbol: str, viseme: str) -> None:
    assert lookup(symbol) == Lookup((viseme,), True)


@pytest.mark.parametrize(
    ("symbol", "visemes"),
    [
        ("aI", ("aa", "ih")), ("aU", ("aa", "ou")), ("eI", ("E", "ih")), ("oU", ("oh", "ou")),
        ("OI", ("oh", "ih")), ("i@", ("ih", "ax")), ("e@", ("E", "ax")), ("@L", ("ax", "nn")),
        ("aI@", ("aa", "ih", "ax")),
    ],
)  # fmt: skip
def test_diphthongs_glide_from_their_first_to_their_last_quality(symbol: str, visemes: tuple[str, ...]) -> None:
    assert lookup(symbol).visemes == visemes


@pytest.mark.parametrize(("marked", "plain"), [("'aI", "aI"), (",eI", "eI"), ("'0", "0"), ("%I", "I"), (" m ", "m")])
def test_stress_marks_are_ignored(marked: str, plain: str) -> None:
    assert strip_marks(marked) == plain
    assert lookup(marked) == lookup(plain)


@pytest.mark.parametrize("symbol", ["_", "_:", "_!", "_!_", "_^_", "|", "||", "", "'"])
def test_pauses_and_empty_symbols_are_silence(symbol: str) -> None:
    assert lookup(symbol) == Lookup((PAUSE,), True)


@pytest.mark.parametrize(
    ("symbol", "base"),
    [("I2", "I"), ("I#", "I"), ("@5", "@"), ("@2", "@"), ("t#", "t"), ("d#", "d"), ("l/2", "l"),
     ("i@3", "i@"), ("0#", "0"), ("r-", "r"), ("n-", "n"), ("oU#", "oU"), ("'@5", "@")],
)  # fmt: skip
def test_decorated_variants_fall_back_to_their_base(symbol: str, base: str) -> None:
    assert lookup(symbol) == Lookup(PHONEME_VISEMES[base], True)


@pytest.mark.parametrize("symbol", ["Q9z", "€", "qq", "@@@", "\x00", "aIx", "😀"])
def test_unknown_symbols_give_the_neutral_viseme(symbol: str) -> None:
    assert lookup(symbol) == Lookup((UNKNOWN,), False)


@given(st.text(max_size=12))
def test_lookup_never_raises_and_names_real_visemes(symbol: str) -> None:
    found = lookup(symbol)
    assert found.visemes and all(name in VISEMES for name in found.visemes)
    assert len(found.visemes) in GLIDE_SPLITS


def test_every_mapped_viseme_exists_and_every_glide_has_split_points() -> None:
    for symbol, names in PHONEME_VISEMES.items():
        assert names, symbol
        assert all(name in VISEMES for name in names), symbol
        assert len(GLIDE_SPLITS[len(names)]) == len(names) - 1
    for splits in GLIDE_SPLITS.values():
        assert list(splits) == sorted(splits) and all(0 < s < 1 for s in splits)


def test_poses_are_weights_of_face_curves_and_rest_is_empty() -> None:
    assert next(iter(VISEMES)) == "sil" and dict(VISEMES["sil"].pose) == {}
    for viseme in VISEMES.values():
        for curve, weight in viseme.pose.items():
            assert 0 <= INDEX[curve] <= 51 and 0.0 <= weight <= 1.0, (viseme.name, curve)
        assert len(viseme.dominance) == len(Articulator) and min(viseme.dominance) > 0
        assert len(viseme.spread) == len(Articulator) and all(0 < s <= 1 for s in viseme.spread)


def test_poses_are_left_right_symmetric() -> None:
    for viseme in VISEMES.values():
        for curve, weight in viseme.pose.items():
            if curve.endswith("Left"):
                assert viseme.pose.get(curve[:-4] + "Right") == weight, (viseme.name, curve)


def test_bilabial_pose_seals_the_lips_with_the_jaw_nearly_closed() -> None:
    assert _pose("PP", "MouthClose") >= 0.5
    assert _pose("PP", "JawOpen") <= 0.05
    assert _pose("PP", "MouthPressLeft") > 0 and _pose("PP", "MouthRollLower") > 0
    # The closure and the closed jaw are targets to reach, not just to lean towards.
    assert set(VISEMES["PP"].critical) == {Articulator.CLOSURE, Articulator.JAW}
    assert VISEMES["PP"].dominance[Articulator.CLOSURE] > VISEMES["aa"].dominance[Articulator.CLOSURE]
    assert VISEMES["PP"].min_duration >= 0.04


def test_labiodental_pose_tucks_the_lower_lip() -> None:
    assert _pose("FF", "MouthRollLower") >= 0.5
    assert _pose("FF", "MouthUpperUpLeft") > 0
    assert _pose("FF", "JawOpen") < 0.1
    assert max(_pose(n, "MouthRollLower") for n in VISEMES if n != "FF") < 0.3
    assert VISEMES["FF"].critical == (Articulator.CLOSURE,)


def test_only_dentals_show_the_tongue() -> None:
    assert _pose("TH", "TongueOut") >= 0.4
    assert all(_pose(n, "TongueOut") == 0 for n in VISEMES if n != "TH")
    assert VISEMES["TH"].critical == (Articulator.TONGUE,)
    assert all(not v.critical for n, v in VISEMES.items() if n not in ("PP", "FF", "TH"))


def test_rounded_sounds_pucker_and_spread_sounds_do_not() -> None:
    for name in ("ou", "ww"):
        assert _pose(name, "MouthPucker") >= 0.6 and _pose(name, "MouthFunnel") > 0
    assert _pose("oh", "MouthFunnel") >= 0.4
    for name in ("iy", "ih", "E", "aa", "SS"):
        assert _pose(name, "MouthPucker") == 0 and _pose(name, "MouthFunnel") == 0
    assert _pose("iy", "MouthStretchLeft") > _pose("ih", "MouthStretchLeft") > 0


def test_jaw_opens_with_vowel_openness() -> None:
    jaw = {name: _pose(name, "JawOpen") for name in VISEMES}
    assert jaw["aa"] > jaw["ah"] > jaw["oh"] > jaw["E"] > jaw["ax"] > jaw["ih"] > jaw["iy"]
    assert jaw["aa"] >= 0.5 and jaw["iy"] <= 0.12
    assert max(jaw[c] for c in ("PP", "FF", "SS", "CH", "ww")) < jaw["iy"]
    assert jaw["sil"] == 0


def test_articulator_groups() -> None:
    assert articulator_of("JawOpen") is Articulator.JAW
    assert articulator_of("MouthClose") is Articulator.CLOSURE
    assert articulator_of("MouthRollLower") is Articulator.CLOSURE
    assert articulator_of("MouthPucker") is Articulator.SHAPE
    assert articulator_of("TongueOut") is Articulator.TONGUE
    with pytest.raises(KeyError):
        articulator_of("NotACurve")


def test_pose_vector_is_the_full_frame() -> None:
    vector = pose_vector("PP")
    assert vector.shape == (68,) and vector.dtype == np.float32
    assert vector[INDEX["MouthClose"]] == np.float32(_pose("PP", "MouthClose"))
    assert np.count_nonzero(vector) == len(VISEMES["PP"].pose)
    assert not pose_vector("sil").any()
    with pytest.raises(KeyError):
        pose_vector("nope")


ONES = (1.0, 1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("pose", "dominance", "spread", "min_duration"),
    [({"HeadYaw": 0.1}, ONES, ONES, 0.0), ({"JawOpen": 1.5}, ONES, ONES, 0.0), ({}, (1.0, 0.0, 1.0, 1.0), ONES, 0.0),
     ({}, (1.0, 1.0, 1.0), ONES, 0.0), ({}, ONES, (1.0, 0.0, 1.0, 1.0), 0.0), ({}, ONES, (1.0, 1.0), 0.0),
     ({}, ONES, ONES, -0.1), ({}, ONES, ONES, 1.0)],
)  # fmt: skip
def test_invalid_visemes_are_rejected(
    pose: dict[str, float], dominance: tuple[float, ...], spread: tuple[float, ...], min_duration: float
) -> None:
    with pytest.raises(ValueError):
        Viseme("bad", MappingProxyType(pose), dominance, spread, min_duration)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        Viseme("bad", MappingProxyType({"NoSuchCurve": 0.1}), ONES, ONES)
