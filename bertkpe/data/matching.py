"""Word normalisation and present-keyphrase matching.

A keyphrase is *present* where its normalised words occur contiguously in the
document's normalised words. Normalisation is lower-casing, then stemming when the
dataset asks for it: Porter for KP20K, the Snowball stemmer of the corpus language
for LIAAD corpora, none for OpenKP.
"""
from __future__ import annotations

import logging
import threading
from collections import defaultdict
from functools import lru_cache
from typing import Callable, Collection, Mapping, Sequence

import Stemmer
from nltk.stem.porter import PorterStemmer
from nltk.stem.snowball import SnowballStemmer

logger = logging.getLogger("bertkpe")

NO_STEMMER = "none"

# ISO 639-1 codes (as written in LIAAD `lan.txt`, e.g. "pt-PT", "en-US") -> nltk Snowball names.
SNOWBALL_BY_ISO = {
    "ar": "arabic", "da": "danish", "nl": "dutch", "en": "english", "fi": "finnish",
    "fr": "french", "de": "german", "hu": "hungarian", "it": "italian", "no": "norwegian",
    "nb": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "es": "spanish", "sv": "swedish",
}

# Snowball stemmers that nltk lacks, run by PyStemmer (the Snowball project's own C library).
# A fixed table, checked before nltk, so a name keeps its stems even if nltk later adds it.
PYSTEMMER_BY_ISO = {
    "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech", "eo": "esperanto",
    "et": "estonian", "el": "greek", "hi": "hindi", "id": "indonesian", "ga": "irish",
    "lt": "lithuanian", "ne": "nepali", "fa": "persian", "pl": "polish", "sr": "serbian",
    "st": "sesotho", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
PYSTEMMER_NAMES = frozenset(PYSTEMMER_BY_ISO.values())


def language_code(language: str) -> str:
    """The primary subtag of a language tag, lower-cased ("en-US" -> "en")."""
    return language.strip().lower().replace("_", "-").split("-")[0]


@lru_cache(maxsize=None)
def stemmer_for_language(language: str | None) -> str:
    """Stemmer name for a language tag such as "fr" or "en-US".

    Porter for English, else the language's Snowball stemmer (nltk's, else PyStemmer's);
    for a language with neither, "none" (lower-casing only), with a warning, as keyphrases
    in inflected forms then go unmatched. Cached, so each language warns once.
    """
    if not language:
        return NO_STEMMER
    code = language_code(language)
    if code == "en":
        return "porter"
    stemmer = SNOWBALL_BY_ISO.get(code) or PYSTEMMER_BY_ISO.get(code)
    if stemmer is None:
        logger.warning("no stemmer for language %r: keyphrases are matched on lower-cased words only, "
                       "so inflected forms of a keyphrase are not found", language)
        return NO_STEMMER
    return stemmer


def _pystemmer_stem(algorithm: str) -> Callable[[str], str]:
    """PyStemmer's stemWord with one Stemmer per thread, as a Stemmer object is not thread-safe."""
    local = threading.local()

    def stem(word: str) -> str:
        stemmer = getattr(local, "stemmer", None)
        if stemmer is None:
            stemmer = local.stemmer = Stemmer.Stemmer(algorithm, 0)
        return stemmer.stemWord(word)

    return stem


@lru_cache(maxsize=None)
def get_normalizer(stemmer: str) -> Callable[[str], str]:
    """A cached word -> normalised-word function for a stemmer name ("none", "porter", "french", "polish", ...)."""
    if stemmer == NO_STEMMER:
        return str.lower
    if stemmer == "porter":
        stem = PorterStemmer().stem
    elif stemmer in PYSTEMMER_NAMES:
        stem = _pystemmer_stem(stemmer)
    elif stemmer in SnowballStemmer.languages:
        stem = SnowballStemmer(stemmer).stem
    else:
        raise ValueError(f"unknown stemmer {stemmer!r}: use 'none', 'porter' or one of "
                         f"{sorted(set(SnowballStemmer.languages) | PYSTEMMER_NAMES)}")

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
