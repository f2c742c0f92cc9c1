"""Phrase ids of a document's n-gram mentions, their first mentions, and BIOEU tags.

Mentions (DESIGN.md) are kept in a *grid* of shape (N, W): row n-1 holds the n-grams
of n words, column i the n-gram starting at word i. Reading the valid cells row by
row gives the n-major mention layout. Each cell holds the mention's phrase id, or -1
where the n-gram runs past the document or is not a candidate (it contains a word
with no letter or digit, such as a punctuation token, or a word the tokenizer
dropped).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

TAGS = ("O", "B", "I", "E", "U")
TAG_ID = {tag: index for index, tag in enumerate(TAGS)}


def has_alnum(word: str) -> bool:
    return any(char.isalnum() for char in word)


def phrase_ids_for(normalized: Sequence[str], candidate: np.ndarray, max_phrase_words: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Give equal n-grams one id. Returns the (N, W) grid of ids and (P, 2) first mentions."""
    num_words = len(normalized)
    grid = np.full((max_phrase_words, num_words), -1, dtype=np.int64)
    if num_words == 0:
        return grid, np.zeros((0, 2), dtype=np.int64)
    vocabulary: dict[str, int] = {}
    word_ids = np.fromiter((vocabulary.setdefault(word, len(vocabulary) + 1) for word in normalized),
                           dtype=np.int64, count=num_words)
    # Column k of `windows` is the word id at offset k (ids start at 1; 0 past the end), so
    # an n-gram's first n columns identify it exactly and never equal a longer n-gram's.
    padded = np.concatenate([word_ids, np.zeros(max_phrase_words, dtype=np.int64)])
    offsets = np.arange(num_words)[:, None] + np.arange(max_phrase_words)[None, :]
    windows = padded[offsets]  # (W, N)
    bad = np.concatenate([~candidate, np.ones(max_phrase_words, dtype=bool)])[offsets]
    valid = ~(np.cumsum(bad, axis=1) > 0)  # (W, N): n-gram of length n+1 at i is a candidate
    mask = valid.T  # (N, W)
    if not mask.any():
        return grid, np.zeros((0, 2), dtype=np.int64)
    base = len(vocabulary) + 1
    if max_phrase_words * np.log2(base) < 62:
        # Mixed-radix code of the n-gram's word ids: one exact int64 per mention.
        codes = np.cumsum(windows * base ** np.arange(max_phrase_words, dtype=np.int64), axis=1)  # (W, N)
        _, first_index, inverse = np.unique(codes.T[mask], return_index=True, return_inverse=True)
    else:
        lengths = np.arange(max_phrase_words)
        keys = np.where(lengths[None, None, :] <= lengths[:, None, None], windows[None], 0)  # (N, W, N)
        _, first_index, inverse = np.unique(keys[mask], axis=0, return_index=True, return_inverse=True)
    length_index, start_index = np.nonzero(mask)
    grid[mask], phrase_first = number_phrases(first_index, inverse, length_index, start_index)
    return grid, phrase_first


def number_phrases(first_index: np.ndarray, inverse: np.ndarray, length_index: np.ndarray,
                   start_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phrase ids numbered by first appearance in n-major order, so ids are stable and
    readable, and each phrase's first mention (start, length). The mentions are listed in
    n-major order (`length_index`, `start_index`); `first_index` and `inverse` are what
    `np.unique` returns over their keys."""
    order = np.argsort(first_index, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    firsts = first_index[order]
    return rank[inverse.reshape(-1)], np.stack([start_index[firsts], length_index[firsts] + 1], axis=1).astype(np.int64)


def first_mentions(phrase_grid: np.ndarray) -> np.ndarray:
    """(P, 2) (start, length) of each phrase's first mention in n-major order: phrase ids
    are numbered by first appearance in that order, so the grid alone determines them."""
    num_words = phrase_grid.shape[1]
    flat = phrase_grid.reshape(-1)
    cells = np.flatnonzero(flat >= 0)
    _, first = np.unique(flat[cells], return_index=True)
    cells = cells[first]
    return np.stack([cells % max(num_words, 1), cells // max(num_words, 1) + 1], axis=1).astype(np.int64)


def tag_labels_for(gold_spans: np.ndarray, num_words: int) -> np.ndarray:
    """BIOEU tags; where present keyphrases overlap, the earlier, then longer, span wins."""
    tags = np.full(num_words, TAG_ID["O"], dtype=np.int64)
    taken = np.zeros(num_words, dtype=bool)
    for start, end in sorted(gold_spans.tolist(), key=lambda span: (span[0], span[0] - span[1])):
        if taken[start:end + 1].any():
            continue
        taken[start:end + 1] = True
        if start == end:
            tags[start] = TAG_ID["U"]
        else:
            tags[start] = TAG_ID["B"]
            tags[start + 1:end] = TAG_ID["I"]
            tags[end] = TAG_ID["E"]
    return tags
