"""Model features: sub-token ids, word starts, n-gram mentions with phrase ids, labels.

Everything Python-side that the models need is built here, once per document, and
kept in a feature store (bertkpe/data/store.py); batching then only pads arrays.

A document longer than one encoder window (`max_token` sub-tokens) is read up to
`max_doc_tokens` sub-tokens as overlapping windows, each cut at word boundaries and
wrapped in the encoder's special tokens. Every word takes its vector from the window in
which it has the most context on both sides, so the heads see one word sequence for
the whole document. With `max_doc_tokens == max_token` there is one window: exactly
the original BERT-KPE truncation.

Mentions and phrase ids: bertkpe/data/phrases.py; windows: bertkpe/data/windows.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from bertkpe.data.matching import NO_STEMMER, normalize_words
from bertkpe.data.phrases import has_alnum, number_phrases, phrase_ids_for, tag_labels_for
from bertkpe.data.tokenizers import special_tokens_around
from bertkpe.data.windows import choose_windows, window_bounds
from bertkpe.files import LineError, json_object


@dataclass(frozen=True)
class FeatureOptions:
    """Every option that changes a document's features (and so the cache key)."""

    tokenizer: str
    max_token: int = 510  # sub-tokens per encoder window, special tokens excluded
    max_phrase_words: int = 5
    stemmer: str | None = None  # None: the stemmer each document was matched with
    max_doc_tokens: int | None = None  # sub-tokens read per document; None: one window (truncation)
    window_overlap: int = 128  # sub-tokens consecutive windows share

    @property
    def doc_tokens(self) -> int:
        return self.max_doc_tokens if self.max_doc_tokens is not None else self.max_token


@dataclass
class DocumentFeatures:
    url: str
    words: list[str]  # the kept (possibly truncated) document words
    input_ids: np.ndarray  # (T,) int64: the windows one after another, each with the encoder's special tokens
    window_offsets: np.ndarray  # (K + 1,) int64: window k is input_ids[offsets[k]:offsets[k + 1]]
    word_windows: np.ndarray  # (W,) int64: the window each word takes its vector from
    word_starts: np.ndarray  # (W,) int64: the word's first sub-token, as a position in its window
    phrase_grid: np.ndarray  # (N, W) int64 phrase id of each mention, -1 if not a candidate
    phrase_first: np.ndarray  # (P, 2) int64 (start, length) of each phrase's first mention
    gold_spans: np.ndarray  # (G, 2) int64 inclusive (start, end) of present keyphrases, <= N words
    tag_labels: np.ndarray  # (W,) int64 BIOEU tag ids
    words_cut: int = 0  # document words past max_doc_tokens, not read
    gold_cut: int = 0  # gold keyphrase occurrences among them
    doc_tokens: int = 0  # sub-tokens of the whole document, read or not

    @property
    def num_words(self) -> int:
        return int(self.word_starts.shape[0])

    @property
    def num_windows(self) -> int:
        return int(self.window_offsets.shape[0]) - 1

    def window(self, index: int) -> np.ndarray:
        return self.input_ids[self.window_offsets[index]:self.window_offsets[index + 1]]

    @property
    def num_phrases(self) -> int:
        return int(self.phrase_first.shape[0])

    def phrase_words(self, phrase_id: int) -> list[str]:
        start, length = self.phrase_first[phrase_id]
        return self.words[start:start + length]


def crop_windows(doc: DocumentFeatures, first: int, count: int) -> DocumentFeatures:
    """The document as if windows `first` .. `first + count - 1` were all of it: the words
    that take their vector from them, the mentions that end inside them, phrases numbered
    again by first appearance, gold spans inside them. Training on a sample of a long
    document's windows (`--train_windows`) learns from these."""
    last = min(first + count, doc.num_windows)
    if first == 0 and last == doc.num_windows:
        return doc
    kept = np.flatnonzero((doc.word_windows >= first) & (doc.word_windows < last))
    if len(kept) == 0:
        raise ValueError(f"{doc.url}: windows {first}..{last - 1} hold no word of their own")
    start, end = int(kept[0]), int(kept[-1]) + 1
    if len(kept) != end - start:
        raise ValueError(f"{doc.url}: the words of windows {first}..{last - 1} are not contiguous")
    num_words = end - start
    grid = doc.phrase_grid[:, start:end].copy()
    mention_end = np.arange(num_words)[None, :] + np.arange(grid.shape[0])[:, None]
    grid[mention_end >= num_words] = -1
    length_index, start_index = np.nonzero(grid >= 0)
    _, first_index, inverse = np.unique(grid[length_index, start_index], return_index=True, return_inverse=True)
    grid[length_index, start_index], phrase_first = number_phrases(first_index, inverse, length_index, start_index)
    gold = doc.gold_spans
    inside = (gold[:, 0] >= start) & (gold[:, 1] < end)
    gold_spans = (gold[inside] - start).astype(np.int64).reshape(-1, 2)
    offsets = doc.window_offsets[first:last + 1]
    return DocumentFeatures(
        url=doc.url, words=doc.words[start:end], input_ids=doc.input_ids[offsets[0]:offsets[-1]],
        window_offsets=offsets - offsets[0], word_windows=doc.word_windows[start:end] - first,
        word_starts=doc.word_starts[start:end], phrase_grid=grid, phrase_first=phrase_first,
        gold_spans=gold_spans, tag_labels=tag_labels_for(gold_spans, num_words),
        words_cut=doc.words_cut + doc.num_words - num_words, gold_cut=doc.gold_cut + int((~inside).sum()),
        doc_tokens=doc.doc_tokens)


def build_features(records: Sequence[dict[str, Any]], tokenizer, options: FeatureOptions
                   ) -> list[DocumentFeatures]:
    """Features for a chunk of preprocessed records, tokenized in one batched call."""
    doc_tokens = options.doc_tokens
    # A word is at least one sub-token, so no more than doc_tokens words can fit.
    word_lists = [list(record["doc_words"][:doc_tokens]) for record in records]
    encoded = tokenizer(word_lists, is_split_into_words=True, add_special_tokens=False,
                        return_attention_mask=False, return_token_type_ids=False)
    prefix, suffix = special_tokens_around(tokenizer)
    # The length of a document cut at doc_tokens counts its unread words too (tokenized
    # only for those documents), so results can be told apart by true document length.
    cut = [index for index, record in enumerate(records) if len(record["doc_words"]) > len(word_lists[index])
           or len(encoded["input_ids"][index]) > doc_tokens]
    full_lengths = dict(zip(cut, map(len, tokenizer(
        [list(records[index]["doc_words"]) for index in cut], is_split_into_words=True, add_special_tokens=False,
        return_attention_mask=False, return_token_type_ids=False)["input_ids"]))) if cut else {}
    features = []
    for index, (record, words) in enumerate(zip(records, word_lists)):
        token_ids = np.asarray(encoded["input_ids"][index], dtype=np.int64)
        word_of_token = np.asarray(encoded.word_ids(index), dtype=np.int64)
        num_words = len(words)
        if len(token_ids) > doc_tokens:
            # Keep whole words only: cut before the word that crosses doc_tokens.
            num_words = int(word_of_token[doc_tokens])
            keep = word_of_token < num_words
            token_ids, word_of_token = token_ids[keep], word_of_token[keep]
        words = words[:num_words]
        num_tokens = len(token_ids)
        # First and last sub-token of each word; a word the tokenizer dropped (no sub-token)
        # points at the next word's start and is excluded from candidates.
        first = np.full(num_words + 1, num_tokens, dtype=np.int64)
        np.minimum.at(first, word_of_token, np.arange(num_tokens))
        covered = first[:num_words] < num_tokens
        first = np.minimum.accumulate(first[::-1])[::-1][:num_words]
        last = np.full(num_words, -1, dtype=np.int64)
        np.maximum.at(last, word_of_token, np.arange(num_tokens))
        first = np.minimum(first, max(num_tokens - 1, 0))
        last = np.maximum(last, first)
        bounds = window_bounds(first, num_tokens, options.max_token, options.window_overlap)
        word_windows = choose_windows(bounds, first, last)
        word_starts = first - bounds[word_windows, 0] + len(prefix)
        windows = [np.concatenate([prefix, token_ids[start:end], suffix]) for start, end in bounds]
        window_offsets = np.cumsum([0] + [len(window) for window in windows], dtype=np.int64)
        input_ids = np.concatenate(windows)

        stemmer = options.stemmer or record.get("stemmer") or NO_STEMMER
        normalized = normalize_words(words, stemmer)
        candidate = covered & np.fromiter((has_alnum(word) for word in words), dtype=bool, count=num_words)
        phrase_grid, phrase_first = phrase_ids_for(normalized, candidate, options.max_phrase_words)
        occurrences = [(start, end) for spans in record.get("start_end_pos", []) for start, end in spans]
        spans = [(start, end) for start, end in occurrences
                 if end < num_words and end - start < options.max_phrase_words]
        gold_spans = np.asarray(sorted(set(spans)), dtype=np.int64).reshape(-1, 2)
        features.append(DocumentFeatures(
            url=str(record["url"]), words=words, input_ids=input_ids, window_offsets=window_offsets,
            word_windows=word_windows, word_starts=word_starts,
            phrase_grid=phrase_grid, phrase_first=phrase_first, gold_spans=gold_spans,
            tag_labels=tag_labels_for(gold_spans, num_words),
            words_cut=len(record["doc_words"]) - num_words,
            gold_cut=sum(end >= num_words for _, end in occurrences),
            doc_tokens=full_lengths.get(index, num_tokens)))
    return features


def parse_record(raw: bytes, path: str | os.PathLike, line_number: int) -> dict[str, Any] | None:
    """One line of a preprocessed file (the output of `bertkpe preprocess`), None if blank;
    errors name the file and line."""
    record = json_object(raw, path, line_number, ("url", "doc_words"))
    if record is not None and not isinstance(record["doc_words"], list):
        raise LineError(path, line_number, "'doc_words' must be a list of words")
    return record


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a small preprocessed file, in memory (a corpus goes through a feature store)."""
    with open(path, "rb") as handle:
        return [record for number, raw in enumerate(handle, start=1)
                if (record := parse_record(raw, path, number)) is not None]
