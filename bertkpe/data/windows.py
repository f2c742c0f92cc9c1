"""Overlapping encoder windows over a long document, cut at word boundaries, and the window
each word takes its vector from."""
from __future__ import annotations

import numpy as np


def window_bounds(word_starts: np.ndarray, num_tokens: int, size: int, overlap: int) -> np.ndarray:
    """(K, 2) sub-token [start, end) of overlapping windows of at most `size` sub-tokens.

    Windows start and end where a word starts, so no word is split between two, and
    each starts at the first word boundary at least `overlap` sub-tokens before the end
    of the previous one. Only a single word longer than a window is cut inside.
    """
    if num_tokens <= size:
        return np.array([[0, num_tokens]], dtype=np.int64)
    boundaries = np.union1d(word_starts[word_starts < num_tokens], [0])
    bounds = []
    start = 0
    while True:
        if start + size >= num_tokens:
            bounds.append((start, num_tokens))
            break
        inside = boundaries[(boundaries > start) & (boundaries <= start + size)]
        end = int(inside[-1]) if len(inside) else start + size
        bounds.append((start, end))
        following = boundaries[(boundaries >= max(end - overlap, start + 1)) & (boundaries <= end)]
        start = int(following[0]) if len(following) else end
    return np.array(bounds, dtype=np.int64)


def choose_windows(bounds: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """For each word with sub-tokens [first, last], the window where it has the most context
    on both sides (the least of the sub-tokens before it and after it in the window);
    the earliest on a tie."""
    starts, ends = bounds[:, :1], bounds[:, 1:]
    holds = (starts <= first[None]) & (first[None] < np.maximum(ends, starts + 1))
    context = np.minimum(first[None] - starts, ends - 1 - last[None])
    return np.argmax(np.where(holds, context, np.iinfo(np.int64).min), axis=0).astype(np.int64)
