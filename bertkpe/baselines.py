"""YAKE, the unsupervised baseline of the README tables, run on the words a split was
preprocessed into and scored by the split's own scorer, so that it differs from a
trained model's row in the extractor alone."""
from __future__ import annotations

from typing import Any, Sequence

from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.evaluation import scoring_of
from bertkpe.metrics import iter_doc_words, read_keyphrase_file, score

YAKE_MAX_WORDS = 3
YAKE_TOP = 10


def yake_keyphrases(doc_words: Sequence[str], language: str = "en", max_words: int = YAKE_MAX_WORDS,
                    top: int = YAKE_TOP) -> list[str]:
    """YAKE's top keyphrases of a document given as words (joined by spaces)."""
    import yake

    extractor = yake.KeywordExtractor(lan=language, n=max_words, top=top)
    return [phrase for phrase, _ in extractor.extract_keywords(" ".join(doc_words))]


def yake_split_scores(data: PreprocessedData, split: str, language: str = "en") -> dict[str, Any]:
    """YAKE (n = 3, top 10) on a preprocessed split, against its scoring references."""
    predictions = {url: yake_keyphrases(words, language) for _, url, words in iter_doc_words(data.split_file(split))}
    return score(predictions, read_keyphrase_file(data.reference_file(split)), scoring_of(data, split))
