"""Word normalisation and present-keyphrase matching.

A keyphrase is *present* where its normalised words occur contiguously in the
document's normalised words. Normalisation is lower-casing, then stemming when the
dataset asks for it: Porter for KP20K, the Snowball stemmer of the corpus language
for LIAAD corpora, none for OpenKP.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

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
    normalize = get_normalizer(stemmer)
    return [normalize(word) for word in words]
