"""What each `--dataset_class` means, in one place.

A dataset class fixes how text is split into words, which stemmer decides that a
keyphrase is present and that a prediction matches a reference, the scoring protocol,
the metric that picks the best checkpoint, the paper's step budget, and where its
source files are. Preprocessing, training, testing, extraction, checkpoint conversion
and `bertkpe score` all read it from here. For `multidata` (LIAAD-style corpora, any
language) the stemmer follows the corpus language, and the language's stemmer, stored
with the preprocessed data and the checkpoint, is also the one that scores.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from bertkpe.data.matching import NO_STEMMER, stemmer_for_language
from bertkpe.data.sources import (WORD_SPLITTERS, WordSpans, WordSplitter, kp20k_tokenize, kp20k_tokenize_spans,
                                  liaad_tokenize, liaad_tokenize_spans, whitespace_split)
from bertkpe.metrics import ScoringConfig

SpanSplitter = Callable[[str], WordSpans]

_NON_SPACE = re.compile(r"\S+")  # the runs str.split() returns: both split on str.isspace()


def whitespace_split_spans(text: str) -> WordSpans:
    """`whitespace_split`'s words, each with its (start, end) in `text`."""
    return [(match.group(), match.start(), match.end()) for match in _NON_SPACE.finditer(text)]


DEFAULT_SPLITTER = "liaad"  # text of unknown origin: any language, punctuation apart
# Each built-in splitter's variant that also says where every word was written.
SPAN_SPLITTERS: dict[WordSplitter, SpanSplitter] = {
    whitespace_split: whitespace_split_spans,
    kp20k_tokenize: kp20k_tokenize_spans,
    liaad_tokenize: liaad_tokenize_spans,
}

# What documents are, which picks their document-pooling weights (decoding.DOCUMENT_POOLING);
# text of an unrecorded kind is ranked as papers.
TEXT_KINDS = ("papers", "news", "pages")
DEFAULT_TEXT_KIND = "papers"

# The paper's step budgets were set for an effective batch of 64 documents.
REFERENCE_BATCH = 64


@dataclass(frozen=True)
class DatasetClass:
    name: str
    word_splitter: str  # a key of WORD_SPLITTERS
    stemmer: Optional[str]  # matching stemmer; None: the corpus language's (`stemmer_for`)
    protocol: str  # bertkpe.metrics protocol
    best_metric: str  # dev metric that picks the best checkpoint
    reference_train_steps: Optional[int] = None  # the paper's budget at REFERENCE_BATCH documents a step
    source_files: Optional[dict[str, str]] = None  # split -> file name, for single-file layouts
    train_words: Optional[tuple[int, int]] = None  # training documents outside this word range are dropped
    eval_has_references: bool = True  # the eval split's source carries gold keyphrases
    language: Optional[str] = None  # the layout's language; None: each corpus records its own
    text_kind: Optional[str] = None  # papers, news or pages (decoding.TEXT_KINDS); None: each corpus's own

    def stemmer_for(self, language: str | None = None) -> str:
        """The matching stemmer of this class, or of `language` where the class follows the corpus."""
        return self.stemmer if self.stemmer is not None else stemmer_for_language(language)

    def scoring_stemmer(self, data_stemmer: str | None) -> str | None:
        """The stemmer that scores predictions: none for the exact-match OpenKP protocol, else
        the stemmer the data was matched with (Porter for KP20K, the language's for LIAAD)."""
        if self.protocol == "openkp":
            return None
        if self.stemmer is not None:
            return self.stemmer
        return data_stemmer or NO_STEMMER

    def scoring(self, data_stemmer: str | None, present_only: bool = False) -> ScoringConfig:
        """How this class's predictions are scored, on data matched with `data_stemmer`: both
        sides are split into words as this class splits its text."""
        return ScoringConfig(self.protocol, stemmer=self.scoring_stemmer(data_stemmer),
                             references="present" if present_only else "all", word_splitter=self.word_splitter)

    def split_words(self, text: str) -> list[str]:
        return WORD_SPLITTERS[self.word_splitter](text)


DATASET_CLASSES: dict[str, DatasetClass] = {
    "openkp": DatasetClass(
        name="openkp", word_splitter="whitespace", stemmer=NO_STEMMER, protocol="openkp", best_metric="F1@3",
        reference_train_steps=20810,
        source_files={"train": "OpenKPTrain.jsonl", "dev": "OpenKPDev.jsonl", "eval": "OpenKPEvalPublic.jsonl"},
        eval_has_references=False, language="en", text_kind="pages"),
    "kp20k": DatasetClass(
        name="kp20k", word_splitter="kp20k", stemmer="porter", protocol="kp20k", best_metric="F1@5",
        reference_train_steps=73430,
        source_files={"train": "kp20k_training.json", "dev": "kp20k_validation.json", "eval": "kp20k_testing.json"},
        # Meng et al. (2017) train on KP20K documents of 20..300 words
        train_words=(20, 300), language="en", text_kind="papers"),
    "multidata": DatasetClass(
        name="multidata", word_splitter="liaad", stemmer=None, protocol="kp20k", best_metric="F1@5"),
}


def dataset_class(name: str) -> DatasetClass:
    try:
        return DATASET_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown dataset class {name!r}; choose from {sorted(DATASET_CLASSES)}") from None


def get_word_splitter(name: str | WordSplitter) -> WordSplitter:
    """A splitter by name ("whitespace", "kp20k", "liaad"), by dataset class, or a callable."""
    if callable(name):
        return name
    if name in DATASET_CLASSES:
        name = DATASET_CLASSES[name].word_splitter
    try:
        return WORD_SPLITTERS[name]
    except KeyError:
        choices = sorted(set(WORD_SPLITTERS) | set(DATASET_CLASSES))
        raise ValueError(f"unknown word splitter {name!r}; choose from {choices} or pass a callable") from None


def locate_words(words: list[str], text: str) -> WordSpans:
    """Each word with its (start, end), found verbatim in `text` in order, each after the previous one."""
    spans: WordSpans = []
    position = 0
    for index, word in enumerate(words):
        start = text.find(word, position)
        if start < 0 or not word:
            raise ValueError(f"word {index} ({word!r}) of the custom word splitter is not in the text after "
                             f"character {position}: character offsets need a splitter that returns pieces "
                             f"of the text, in order")
        position = start + len(word)
        spans.append((word, start, position))
    return spans


def get_span_splitter(name: str | WordSplitter) -> SpanSplitter:
    """The words of `get_word_splitter(name)` with their (start, end) in the text given.

    Built-in splitters map their cleaned text back to the original exactly; a custom
    callable's words are looked up in order in the text (`locate_words`).
    """
    split = get_word_splitter(name)
    if split in SPAN_SPLITTERS:
        return SPAN_SPLITTERS[split]
    return lambda text: locate_words(split(text), text)
