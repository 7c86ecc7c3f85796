"""Viseme lookup for the phoneme alphabets other than espeak-ng's mnemonics: ``ipa`` and ``misaki``.

- ``ipa``: espeak-ng's IPA output as Piper voices use it (:mod:`facecast.tts.piper`): one symbol per espeak-ng
  phoneme, so diphthongs and r-coloured vowels come as one multi-character symbol (``aɪ``, ``oʊ``, ``ɑːɹ``,
  ``əl``), with length ``ː``, ties ``͡`` and syllabic or other diacritics allowed.
- ``misaki``: the Kokoro/misaki G2P set (:mod:`facecast.tts.hibari`): one character per phoneme, diphthongs
  as capitals (``A I W Y O Q`` = eɪ aɪ aʊ ɔɪ oʊ əʊ), ``T`` the American flap, ``i``/``u`` the long
  FLEECE/GOOSE vowels (misaki writes no length mark in American English), ``ᵊ`` a reduced schwa.

Both map onto the viseme classes of :mod:`facecast.face.visemes` with the same phonetic choices as its
espeak-ng table (the IPA symbol espeak-ng prints for a mnemonic gets that mnemonic's visemes; ``tests/face/
test_phonesets.py`` checks it against espeak-ng itself). Pauses (``_``, ``^``, ``$``, spaces, ``|``) and
punctuation are :data:`~facecast.face.visemes.PAUSE`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from types import MappingProxyType

from .visemes import PAUSE, UNKNOWN, Lookup

__all__ = ["IPA_VISEMES", "MISAKI_VISEMES", "lookup_symbol"]

# One viseme per single IPA character, mirroring visemes._P (the espeak mnemonic that prints as this IPA).
_SINGLE = {
    # Consonants.
    "p": "PP", "b": "PP", "m": "PP", "ɱ": "FF",
    "f": "FF", "v": "FF", "ʋ": "FF", "ɸ": "FF", "β": "FF",
    "θ": "TH", "ð": "TH",
    "t": "DD", "d": "DD", "ɾ": "DD", "ʈ": "DD", "ɖ": "DD", "ɽ": "DD",
    "n": "nn", "l": "nn", "ɫ": "nn", "ʎ": "nn", "ɲ": "nn", "ɳ": "nn", "ɬ": "nn", "ɮ": "nn", "ɭ": "nn",
    "k": "kk", "ɡ": "kk", "g": "kk", "ŋ": "kk", "x": "kk", "ɣ": "kk", "χ": "kk", "c": "kk", "ɟ": "kk",
    "q": "kk", "ɢ": "kk", "ɴ": "kk", "ɰ": "kk",
    "s": "SS", "z": "SS", "ʦ": "SS", "ʣ": "SS",
    "ʃ": "CH", "ʒ": "CH", "ʧ": "CH", "ʤ": "CH", "ç": "CH", "ɕ": "CH", "ʑ": "CH", "ʨ": "CH", "ʥ": "CH",
    "ʂ": "CH", "ʐ": "CH",
    "ɹ": "RR", "r": "RR", "ʁ": "RR", "ɻ": "RR", "ʀ": "RR", "ɺ": "RR",
    "w": "ww", "ʍ": "ww", "ɥ": "ww",
    "j": "iy", "ʝ": "iy",
    "h": "hh", "ʔ": "hh", "ɦ": "hh", "ħ": "hh", "ʕ": "hh",
    # Vowels: espeak a A: -> aa, V 0 -> ah, O: o -> oh, E e -> E, @ a# -> ax, 3: -> er, I i y -> ih,
    # i: -> iy, u: U u -> ou.
    "a": "aa", "æ": "aa", "ɑ": "aa", "ɶ": "aa",
    "ʌ": "ah", "ɒ": "ah",
    "ɔ": "oh", "o": "oh", "œ": "oh",
    "ɛ": "E", "e": "E",
    "ə": "ax", "ɐ": "ax", "ᵊ": "ax", "ɘ": "ax", "ɵ": "ax", "ɤ": "ax",
    "ɜ": "er", "ɝ": "er", "ɚ": "er", "ɞ": "er",
    "ɪ": "ih", "i": "ih", "y": "ih", "ʏ": "ih", "ᵻ": "ih", "ɨ": "ih", "ɯ": "ih",
    "u": "ou", "ʊ": "ou", "ʉ": "ou", "ø": "ou",
}  # fmt: skip

# Multi-character espeak-ng phonemes in IPA, mirroring visemes._P and visemes._GLIDES.
_IPA_MULTI: dict[str, tuple[str, ...]] = {
    "iː": ("iy",), "i:": ("iy",), "uː": ("ou",), "ɑː": ("aa",), "ɔː": ("oh",), "oː": ("oh",), "ɜː": ("er",),
    "ɛː": ("E",), "eː": ("E",), "aː": ("aa",), "ɒː": ("ah",),
    "aɪ": ("aa", "ih"), "aʊ": ("aa", "ou"), "eɪ": ("E", "ih"), "oʊ": ("oh", "ou"), "ɔɪ": ("oh", "ih"),
    "əʊ": ("ax", "ou"), "ɪə": ("ih", "ax"), "iə": ("ih", "ax"), "eə": ("E", "ax"), "ɛə": ("E", "ax"),
    "ɛɹ": ("E", "ax"), "ʊə": ("ou", "ax"), "ʊɹ": ("ou", "ax"), "ɑːɹ": ("aa", "er"), "ɑɹ": ("aa", "er"),
    "ɔːɹ": ("oh", "er"), "ɔɹ": ("oh", "er"), "oːɹ": ("oh", "er"), "oɹ": ("oh", "er"), "əl": ("ax", "nn"),
    "aɪə": ("aa", "ih", "ax"), "aʊə": ("aa", "ou", "ax"), "aɪɚ": ("aa", "ih", "er"), "aɪʊɹ": ("aa", "ih", "er"),
    "aʊɚ": ("aa", "ou", "ax"), "ɪɹ": ("ih", "ax"), "ʌɹ": ("ah", "er"), "ɔɪə": ("oh", "ih", "ax"),
    "ɜːɹ": ("er",), "əɹ": ("er",), "ɚː": ("er",),
    "tʃ": ("CH",), "dʒ": ("CH",), "ts": ("SS",), "dz": ("SS",),
}  # fmt: skip

# misaki differs from IPA where it writes long vowels without ``ː`` and diphthongs as capitals.
_MISAKI_ONLY: dict[str, tuple[str, ...]] = {
    "i": ("iy",), "u": ("ou",),
    "A": ("E", "ih"), "I": ("aa", "ih"), "W": ("aa", "ou"), "Y": ("oh", "ih"), "O": ("oh", "ou"),
    "Q": ("ax", "ou"), "T": ("DD",),
}  # fmt: skip

IPA_VISEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**{symbol: (name,) for symbol, name in _SINGLE.items()}, **_IPA_MULTI}
)
"""The IPA symbols :func:`lookup_symbol` knows as a whole (others are split into these) and their visemes."""
MISAKI_VISEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {**{symbol: (name,) for symbol, name in _SINGLE.items()}, **_MISAKI_ONLY}
)
"""The misaki symbols and their visemes (misaki symbols are single characters)."""

_TABLES: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType({"ipa": IPA_VISEMES, "misaki": MISAKI_VISEMES})
# Marks that do not change the mouth: stress, length, ties, syllabic/non-syllabic, aspiration, nasalisation...
_MARKS = frozenset("ˈˌ'ːˑ:͡‿͜˞ʰʲʷˠˤ̩̯̪̥̬̃̆̊̈̽̚ˀ-")
_STRESS = frozenset("ˈˌ'͡‿͜")  # removed before the whole-symbol lookup (with the ties)
_PAUSES = frozenset('_^$ |‖.,;:!?—–…"“”‘’()[]{}«»/\\↓↑→↗↘#')
_MAX_MULTI = max(len(s) for s in _IPA_MULTI)


def _segment(core: str, table: Mapping[str, tuple[str, ...]]) -> tuple[list[str], bool]:
    """Greedy longest-match of ``core`` into ``table``'s symbols: the visemes, and whether all were known."""
    out: list[str] = []
    known = True
    position = 0
    while position < len(core):
        for size in range(min(_MAX_MULTI, len(core) - position), 0, -1):
            visemes = table.get(core[position : position + size])
            if visemes is not None:
                out.extend(v for v in visemes if not out or out[-1] != v)
                position += size
                break
        else:
            known = known and core[position] in _MARKS  # a stray mark changes nothing
            position += 1
    return out, known


def lookup_symbol(symbol: str, alphabet: str) -> Lookup:
    """The viseme sequence for a phoneme ``symbol`` of ``alphabet`` (``"ipa"`` or ``"misaki"``); never raises.

    Pauses, spaces and punctuation (and empty symbols) are :data:`~facecast.face.visemes.PAUSE`. A symbol
    is looked up whole (``aɪ``, ``ɑːɹ``), then without its marks (stress, length, ties, diacritics), then
    split into the longest known pieces (an unusual cluster such as ``ɔɪɚ`` glides through the visemes of
    its pieces, at most three). A symbol with no known piece, or an unknown alphabet, gives
    ``Lookup((UNKNOWN,), known=False)``.
    """
    table = _TABLES.get(alphabet)
    if table is None:
        return Lookup((UNKNOWN,), False)
    text = unicodedata.normalize("NFC", symbol.strip())
    if not text or all(c in _PAUSES or c in _MARKS for c in text):
        return Lookup((PAUSE,), True)
    core = unicodedata.normalize("NFC", "".join(c for c in text if c not in _STRESS and c not in _PAUSES))
    exact = table.get(text) or table.get(core)
    if exact is not None:
        return Lookup(exact, True)
    visemes, known = _segment(core, table)
    if not visemes:
        return Lookup((UNKNOWN,), False)
    return Lookup(tuple(visemes[:3]), known)
