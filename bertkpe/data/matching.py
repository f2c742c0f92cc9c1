"""Word normalisation and present-keyphrase matching.

A keyphrase is *present* where its normalised words occur contiguously in the
document's normalised words. Normalisation is lower-casing, then stemming when the
dataset asks for it: Porter for KP20K, the Snowball stemmer of the corpus language
for LIAAD corpora, none for OpenKP.
"""
from __future__ import annotations

from collections import defaultdict
from functools import lru_cache
from typing import Callable, Collection, Mapping, Sequence

from nltk.stem.porter import PorterStemmer
from nltk.stem.snowball import SnowballStemmer

NO_STEMMER = "none"

# ISO 639-1 codes (as written in LIAAD `lan.txt`, e.g. "pt-PT", "en-US") -> nltk Snowball names.
SNOWBALL_BY_ISO = {
    "ar": "arabic", "da": "danish", "nl": "dutch", "en": "english", "fi": "finnish",
    "fr": "french", "de": "german", "hu": "hungarian", "it": "italian", "no": "norwegian",
    "nb": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "es": "spanish", "sv": "swedish",
}


def stemmer_for_language(language: str | None) -> str:
    """Stemmer name for a language tag such as "fr" or "en-US"; "none" where nltk has none."""
    if not language:
        return NO_STEMMER
    code = language.strip().lower().replace("_", "-").split("-")[0]
    if code == "en":
        return "porter"
    return SNOWBALL_BY_ISO.get(code, NO_STEMMER)


@lru_cache(maxsize=None)
def get_normalizer(stemmer: str) -> Callable[[str], str]:
    """A cached word -> normalised-word function for a stemmer name ("none", "porter", "french", ...)."""
    if stemmer == NO_STEMMER:
        return str.lower
    if stemmer == "porter":
        stem = PorterStemmer().stem
    elif stemmer in SnowballStemmer.languages:
        stem = SnowballStemmer(stemmer).stem
    else:
        raise ValueError(f"unknown stemmer {stemmer!r}: use 'none', 'porter' or one of {SnowballStemmer.languages}")

    @lru_cache(maxsize=1 << 20)
    def normalize(word: str) -> str:
        return stem(word.lower())

    return normalize


def normalize_words(words: Sequence[str], stemmer: str) -> list[str]:
    """`words` normalised; each distinct word is normalised once, as long documents repeat words a lot."""
    normalize = get_normalizer(stemmer)
    table = {word: normalize(word) for word in set(words)}
    return [table[word] for word in words]


def index_positions(words: Sequence[str], only: Collection[str] | None = None) -> dict[str, list[int]]:
    """word -> its positions in `words` (for the words in `only`, if given), so a phrase is only
    compared where its first word occurs."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, word in enumerate(words):
        if only is None or word in only:
            positions[word].append(i)
    return positions


def find_occurrences(doc_norm: Sequence[str], phrase_norm: Sequence[str],
                     positions: Mapping[str, list[int]] | None = None) -> list[tuple[int, int]]:
    """Every contiguous occurrence of `phrase_norm` in `doc_norm` as inclusive (start, end), overlaps included.

    Pass `positions = index_positions(doc_norm)` (covering at least the phrase's first word) when
    matching many phrases in one document.
    """
    if not phrase_norm:
        return []
    if positions is None:
        positions = index_positions(doc_norm)
    n = len(phrase_norm)
    phrase = list(phrase_norm)
    return [(i, i + n - 1) for i in positions.get(phrase[0], ())
            if list(doc_norm[i:i + n]) == phrase]


def locate_keyphrases(doc_words: Sequence[str], keyphrases: Sequence[Sequence[str]],
                      stemmer: str) -> list[list[tuple[int, int]]]:
    """For each keyphrase, its occurrences in the document after normalising both with `stemmer`."""
    doc_norm = normalize_words(doc_words, stemmer)
    phrases_norm = [normalize_words(phrase, stemmer) for phrase in keyphrases]
    positions = index_positions(doc_norm, only={phrase[0] for phrase in phrases_norm if phrase})
    return [find_occurrences(doc_norm, phrase, positions) for phrase in phrases_norm]
