"""From espeak-ng phoneme mnemonics to visemes to mouth poses (ARKit curve weights).

Two tables, both plain data:

- :data:`VISEMES`: each viseme class's mouth **pose** (a sparse dict of ARKit curve name -> weight in
  [0, 1]; absent curves are 0, which is the relaxed rest face), and per articulator group
  (:class:`Articulator`) its **dominance** and **spread**, used by the coarticulation model of
  :mod:`facecast.face.phonetic`: when neighbouring phonemes overlap in time, each curve is the
  dominance-weighted average of their poses, so a phoneme with high dominance on a group (bilabials on
  lip closure, ``th`` on the tongue) keeps that group's shape, and one with low dominance (``h``, ``k``)
  takes it from its neighbours; the spread sets how far before and after the phoneme that weight
  reaches (short for quick lip and tongue gestures, long for the jaw and for vowels).
- :func:`lookup`: an espeak-ng mnemonic (as emitted by :class:`facecast.tts.espeak.EspeakTTS`, stress
  marks allowed) -> the viseme names it is shown as, in order. Diphthongs glide through two or three
  visemes (``aI`` = ``aa`` then ``ih``) over :data:`GLIDE_SPLITS` of their duration.

The vocabulary starts from the 15 OVR visemes (sil PP FF TH DD kk CH SS nn RR aa E ih oh ou) and refines it:
open vowels by jaw opening (``aa`` open, ``ah`` open-mid), schwa ``ax``, r-coloured ``er``, close spread
``iy``, the rounded glide ``ww``, the articulator-neutral ``hh`` (h and the glottal stop) and ``unk``, a
mild neutral pose with low dominance for symbols the table does not know, so that an unknown symbol
never breaks the animation (its neighbours shape the mouth).

Jaw opening, highest to lowest: aa 0.58 > ah 0.45 > oh 0.36 > E 0.32 > ax 0.22 > er 0.2 > hh 0.18 >
ih 0.17 > kk 0.16 > unk 0.15 > TH 0.14 > DD/nn/RR/ou 0.12 > iy 0.1 > CH/FF 0.07 > ww 0.06 > SS 0.05 >
PP 0.03 > sil 0.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..types import FACE_WIDTH, Float32Array
from .arkit import INDEX

__all__ = [
    "Articulator",
    "Viseme",
    "VISEMES",
    "PHONEME_VISEMES",
    "GLIDE_SPLITS",
    "PAUSE",
    "UNKNOWN",
    "Lookup",
    "lookup",
    "strip_marks",
    "articulator_of",
    "pose_vector",
]


class Articulator(enum.IntEnum):
    """The curve groups that carry separate dominance (coarticulation resistance)."""

    JAW = 0
    """JawOpen, JawForward."""
    CLOSURE = 1
    """Lip contact: MouthClose, MouthPress*, MouthRollLower/Upper (bilabial and labiodental closure)."""
    SHAPE = 2
    """Lip shape: pucker, funnel, stretch, smile, upper/lower lip raise... (and every other curve)."""
    TONGUE = 3
    """TongueOut."""


_CLOSURE_CURVES = frozenset({"MouthClose", "MouthPressLeft", "MouthPressRight", "MouthRollLower", "MouthRollUpper"})


def articulator_of(curve: str) -> Articulator:
    """The articulator group of an ARKit curve name (``KeyError`` for a name that is not a frame curve)."""
    INDEX[curve]  # validate
    if curve.startswith("Jaw"):
        return Articulator.JAW
    if curve in _CLOSURE_CURVES:
        return Articulator.CLOSURE
    if curve == "TongueOut":
        return Articulator.TONGUE
    return Articulator.SHAPE


@dataclass(frozen=True, slots=True)
class Viseme:
    """A mouth target and how strongly it resists its neighbours.

    ``pose`` maps ARKit curve names (0-51) to weights in [0, 1]. ``dominance`` and ``spread`` hold one
    value per :class:`Articulator`, in that order: the dominance is the weight of this viseme's pose
    (positive), the spread (0-1] scales how far that weight reaches before and after the phoneme (the
    animator's anticipation and carry-over). A quick, precise gesture such as a lip closure has a high
    closure dominance but a short reach, so it wins during its own phoneme without shutting the
    neighbouring vowels; the jaw, a heavy articulator, always reaches far so that it moves smoothly.
    ``min_duration`` (seconds): a shorter phoneme is blended as if it lasted this long, centred on its
    own centre, so that a brief closure (a 40 ms ``b``) still reaches its target. ``critical``: the
    articulators whose target this viseme must REACH, whatever its neighbours (the lips of ``p b m``,
    the lower lip of ``f v``, the tongue of ``th``): on the curves its pose names in those groups, the
    animator draws the blend towards this pose by the segment's own dominance shape (fully over its
    central plateau), so closure does not depend on speaking rate or on how open the neighbouring
    vowels are.
    """

    name: str
    pose: Mapping[str, float]
    dominance: tuple[float, float, float, float]
    spread: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    min_duration: float = 0.0
    critical: tuple[Articulator, ...] = ()

    def __post_init__(self) -> None:
        for curve, weight in self.pose.items():
            if INDEX[curve] > 51 or not 0.0 <= weight <= 1.0:
                raise ValueError(f"viseme {self.name}: {curve}={weight} is not a 0-1 weight of curves 0-51")
        if len(self.dominance) != len(Articulator) or min(self.dominance) <= 0:
            raise ValueError(f"viseme {self.name}: dominance needs {len(Articulator)} positive weights")
        if len(self.spread) != len(Articulator) or not all(0.0 < s <= 1.0 for s in self.spread):
            raise ValueError(f"viseme {self.name}: spread needs {len(Articulator)} values in (0, 1]")
        if not 0.0 <= self.min_duration <= 0.2:
            raise ValueError(f"viseme {self.name}: min_duration must be in [0, 0.2] s")


def _pair(stem: str, weight: float) -> dict[str, float]:
    return {f"{stem}Left": weight, f"{stem}Right": weight}


def _v(
    name: str,
    dominance: tuple[float, float, float, float],
    spread: float = 1.0,
    min_duration: float = 0.0,
    jaw_spread: float = 1.0,
    critical: tuple[Articulator, ...] = (),
    **pose: float,
) -> Viseme:
    """A viseme whose lips and tongue reach ``spread`` and whose jaw reaches ``jaw_spread``."""
    curves: dict[str, float] = {}
    for key, weight in pose.items():
        if key in INDEX:
            curves[key] = weight
        else:  # a symmetric pair given by its stem, e.g. MouthPress=0.4
            curves.update(_pair(key, weight))
    spreads = (jaw_spread, spread, spread, spread)
    return Viseme(name, MappingProxyType(curves), dominance, spreads, min_duration, critical)


_JAW, _CLOSURE, _TONGUE = Articulator.JAW, Articulator.CLOSURE, Articulator.TONGUE

# _v(name, dominance per (jaw, closure, shape, tongue), lip/tongue spread, min_duration, jaw spread,
# critical groups, pose). Vowels sit around 1; consonants that need an articulator (bilabial lips,
# labiodental lower lip, dental tongue, sibilant jaw) are above, with a short reach, and the first three
# are critical (their target is reached, not just leaned towards); consonants made inside the mouth
# (k, h) are low so the lips anticipate the vowel.
_VISEME_LIST: tuple[Viseme, ...] = (
    # Pauses: the rest pose, weak and short-reaching, so a brief "_" between words barely shows while the
    # middle of a long pause (where no neighbour reaches) is at rest.
    _v("sil", (0.6, 0.6, 0.6, 0.6), 0.6, 0.0, 0.6),
    # Bilabials p b m: lips sealed and slightly pressed/rolled in, jaw almost closed.
    _v("PP", (10.0, 4.0, 2.0, 2.0), 0.35, 0.05, 0.6, (_JAW, _CLOSURE),
       JawOpen=0.03, MouthClose=0.65, MouthPress=0.4, MouthRollLower=0.15, MouthRollUpper=0.1),
    # Labiodentals f v: lower lip tucked under the upper teeth.
    _v("FF", (5.0, 6.0, 4.0, 2.0), 0.6, 0.06, 0.6, (_CLOSURE,),
       JawOpen=0.07, MouthRollLower=0.6, MouthUpperUp=0.25, MouthPress=0.1, MouthShrugUpper=0.1),
    # Dentals T D: tongue tip between the teeth.
    _v("TH", (3.0, 1.0, 1.0, 6.0), 0.6, 0.06, 0.6, (_TONGUE,),
       JawOpen=0.14, TongueOut=0.55, MouthUpperUp=0.1, MouthLowerDown=0.08),
    # Alveolar stops t d.
    _v("DD", (2.0, 0.7, 0.5, 2.0), 0.7, 0.0, JawOpen=0.12, MouthStretch=0.1, MouthLowerDown=0.05),
    # Velars k g N, and x.
    _v("kk", (1.2, 0.4, 0.3, 1.0), 0.8, 0.0, JawOpen=0.16, MouthStretch=0.05),
    # Postalveolars S Z tS dZ: lips protruded and squared, teeth close.
    _v("CH", (3.0, 1.0, 3.0, 2.0), 0.6,
       JawOpen=0.07, MouthFunnel=0.45, MouthPucker=0.25, MouthUpperUp=0.15, MouthLowerDown=0.1),
    # Sibilants s z: teeth nearly together, lips spread, teeth showing.
    _v("SS", (4.0, 1.0, 1.5, 2.0), 0.6,
       JawOpen=0.05, MouthStretch=0.3, MouthSmile=0.1, MouthUpperUp=0.12, MouthLowerDown=0.12),
    # Alveolar nasal and lateral n l.
    _v("nn", (1.5, 0.5, 0.4, 1.0), 0.8, 0.0, JawOpen=0.12, MouthStretch=0.08),
    # Approximant r: slight rounding.
    _v("RR", (1.5, 1.0, 2.0, 1.0), 0.8, 0.0, JawOpen=0.12, MouthPucker=0.35, MouthFunnel=0.2),
    # Glide w: strongly rounded, nearly closed.
    _v("ww", (3.0, 1.0, 6.0, 1.0), 0.7, 0.04, 0.7, JawOpen=0.06, MouthPucker=0.8, MouthFunnel=0.3),
    # h and the glottal stop: no articulator of their own, they take their neighbours' shape.
    _v("hh", (0.3, 0.2, 0.2, 0.5), JawOpen=0.18),
    # Vowels, open to close.
    _v("aa", (1.5, 1.0, 1.0, 1.0), JawOpen=0.58, MouthLowerDown=0.2, MouthUpperUp=0.08, MouthStretch=0.08),
    _v("ah", (1.3, 1.0, 1.0, 1.0), JawOpen=0.45, MouthLowerDown=0.12, MouthStretch=0.05),
    _v("oh", (1.2, 1.0, 2.0, 1.0), JawOpen=0.36, MouthFunnel=0.5, MouthPucker=0.3),
    _v("E", (1.2, 1.0, 1.0, 1.0), JawOpen=0.32, MouthStretch=0.15, MouthLowerDown=0.15, MouthSmile=0.05),
    _v("ax", (0.8, 0.8, 0.8, 1.0), JawOpen=0.22, MouthLowerDown=0.05),
    _v("er", (1.0, 1.0, 1.5, 1.0), JawOpen=0.2, MouthPucker=0.25, MouthFunnel=0.15),
    _v("ih", (1.0, 1.0, 1.0, 1.0), JawOpen=0.17, MouthStretch=0.22, MouthSmile=0.1),
    _v("iy", (1.2, 1.0, 1.5, 1.0), JawOpen=0.1, MouthStretch=0.32, MouthSmile=0.2, MouthUpperUp=0.05),
    _v("ou", (1.2, 1.0, 2.5, 1.0), JawOpen=0.12, MouthPucker=0.7, MouthFunnel=0.35),
    # Unknown symbol: a mild neutral mouth that yields to its neighbours.
    _v("unk", (0.3, 0.3, 0.3, 0.3), JawOpen=0.15),
)  # fmt: skip

VISEMES: Mapping[str, Viseme] = MappingProxyType({v.name: v for v in _VISEME_LIST})
"""Every viseme class by name, ``sil`` (the rest pose: every curve 0) first."""

PAUSE = "sil"
"""The viseme of pauses (``_``, ``_:``, ``_!``...) and of silence."""
UNKNOWN = "unk"
"""The viseme of a symbol :func:`lookup` does not know."""

_P = {
    # Consonants.
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "T": "TH", "D": "TH",
    "t": "DD", "d": "DD",
    "n": "nn", "l": "nn", "L": "nn",
    "k": "kk", "g": "kk", "N": "kk", "x": "kk", "X": "kk", "c": "kk", "J": "kk",
    "s": "SS", "z": "SS",
    "S": "CH", "Z": "CH", "tS": "CH", "dZ": "CH", "C": "CH",
    "r": "RR", "R": "RR",
    "w": "ww", "W": "ww",
    "j": "iy", ";": "iy",  # ";" is espeak-ng's palatal glide between vowels ("being" = b i: ; I N)
    "h": "hh", "?": "hh",
    # Vowels (English espeak-ng mnemonics; decorated variants such as I2, @5, a#, i@3 fall back to these).
    "a": "aa", "A:": "aa", "A": "aa", "aa": "aa", "a:": "aa",
    "V": "ah", "0": "ah", "Q": "ah",
    "O:": "oh", "O": "oh", "o": "oh", "o:": "oh",
    "E": "E", "e": "E", "e:": "E", "E:": "E",
    "@": "ax", "a#": "ax",
    "3:": "er", "3": "er", "@r": "er",
    "I": "ih", "i": "ih", "y": "ih", "Y": "ih",
    "i:": "iy",
    "u:": "ou", "U": "ou", "u": "ou",
}  # fmt: skip
_GLIDES: dict[str, tuple[str, ...]] = {
    "aI": ("aa", "ih"), "aU": ("aa", "ou"), "eI": ("E", "ih"), "oU": ("oh", "ou"), "OI": ("oh", "ih"),
    "@U": ("ax", "ou"), "i@": ("ih", "ax"), "e@": ("E", "ax"), "U@": ("ou", "ax"), "A@": ("aa", "er"),
    "O@": ("oh", "er"), "o@": ("oh", "er"), "@L": ("ax", "nn"), "aI@": ("aa", "ih", "ax"),
    "aU@": ("aa", "ou", "ax"), "aI3": ("aa", "ih", "er"), "aI@3": ("aa", "ih", "er"), "Oi": ("oh", "ih"),
    "VR": ("ah", "er"), "IR": ("ih", "er"),
}  # fmt: skip

PHONEME_VISEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**{symbol: (name,) for symbol, name in _P.items()}, **_GLIDES}
)
"""The known mnemonics (without stress marks or variant decorations) and their viseme sequences."""

GLIDE_SPLITS: Mapping[int, tuple[float, ...]] = MappingProxyType({1: (), 2: (0.55,), 3: (0.4, 0.75)})
"""Where a phoneme of 1, 2 or 3 visemes passes from one to the next, as fractions of its duration."""

_STRESS = "'\",%=!ˈˌ"
_DECORATION = re.compile(r"[#0-9/\-^;~:.<>+\[\]]*")  # variant marks: t# t2 l/2 @- t[ (dental)
_MAX_SYMBOL = max(len(s) for s in PHONEME_VISEMES)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The result of :func:`lookup`: the visemes to show, and whether the symbol was recognised."""

    visemes: tuple[str, ...]
    known: bool


def strip_marks(symbol: str) -> str:
    """``symbol`` without whitespace and stress marks (``'aI`` -> ``aI``, ``,eI`` -> ``eI``)."""
    return symbol.strip().strip(_STRESS).strip()


def lookup(symbol: str, alphabet: str = "espeak") -> Lookup:
    """The viseme sequence for a phoneme ``symbol`` of ``alphabet`` (an espeak-ng mnemonic by default); never
    raises. Symbols of the other alphabets (:data:`facecast.types.ALPHABETS`) are looked up in
    :mod:`facecast.face.phonesets`.

    Stress marks are ignored. Pauses (any symbol starting with ``_``, ``|`` or ``||``) and empty symbols
    are :data:`PAUSE`. Otherwise the exact mnemonic is looked up, then its longest known prefix whose rest
    is only variant decoration (``I2`` -> ``I``, ``@5`` -> ``@``, ``t#`` -> ``t``, ``l/2`` -> ``l``,
    ``i@3`` -> ``i@``). Anything else gives ``Lookup((UNKNOWN,), known=False)``.
    """
    if alphabet != "espeak":
        from .phonesets import lookup_symbol

        return lookup_symbol(symbol, alphabet)
    core = strip_marks(symbol)
    if not core or core[0] in "_|":
        return Lookup((PAUSE,), True)
    exact = PHONEME_VISEMES.get(core)
    if exact is not None:
        return Lookup(exact, True)
    for size in range(min(len(core) - 1, _MAX_SYMBOL), 0, -1):
        head = PHONEME_VISEMES.get(core[:size])
        if head is not None and _DECORATION.fullmatch(core[size:]):
            return Lookup(head, True)
    return Lookup((UNKNOWN,), False)


def pose_vector(name: str) -> Float32Array:
    """The pose of viseme ``name`` as a full 68-value float32 frame (``KeyError`` for an unknown name).

    Curves the pose does not name are 0; the emotion channels 61-67 are 0 too (the animator sets them).
    """
    out = np.zeros(FACE_WIDTH, np.float32)
    for curve, weight in VISEMES[name].pose.items():
        out[INDEX[curve]] = weight
    return out
