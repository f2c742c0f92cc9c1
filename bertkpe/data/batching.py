"""Padding documents into batch tensors, and length-grouped batch order.

Per batch the only Python loop is over documents (to copy their arrays into the
padded buffers and scatter their labels).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from bertkpe.data.features import DocumentFeatures

IGNORE_INDEX = -100


# What a head's loss terms are averaged over (`Batch.counts`, in this order): words (tag
# labels, span starts), candidate mentions (chunk classification), documents with both a
# keyphrase and another phrase (the rank losses), present keyphrase spans (span ends).
COUNT_UNITS = ("words", "mentions", "ranked_documents", "gold_spans")


@dataclass
class Batch:
    """A padded batch. B documents in R encoder windows of T sub-tokens, W words, N n-gram
    lengths, P phrases. A document of one window has row b of the windows. The labels and
    their counts are made here, on the CPU, so a head reads them without asking the device."""

    input_ids: torch.Tensor  # (R, T)
    attention_mask: torch.Tensor  # (R, T)
    word_windows: torch.Tensor  # (B, W) the window row each word's vector is read from (0 on padding)
    word_starts: torch.Tensor  # (B, W) first sub-token of each word in that window (0 on padding)
    word_mask: torch.Tensor  # (B, W) bool
    phrase_grid: torch.Tensor  # (B, N, W) phrase id of each mention, -1 if none
    phrase_mask: torch.Tensor  # (B, P) bool
    gold_spans: torch.Tensor  # (B, G, 2) inclusive word spans of present keyphrases, -1 padding
    tag_labels: torch.Tensor  # (B, W) BIOEU ids, IGNORE_INDEX on padding
    mention_labels: torch.Tensor  # (B, N, W) bool: the mention is exactly a present keyphrase span
    phrase_labels: torch.Tensor  # (B, P) bool: the phrase has a mention that is a present keyphrase
    counts: torch.Tensor  # (len(COUNT_UNITS),) int64 items of each unit in the batch
    indices: list[int]  # position of each document in the dataset
    max_positives: int  # the most keyphrase phrases of one document

    def count(self, unit: str) -> torch.Tensor:
        return self.counts[COUNT_UNITS.index(unit)]

    @property
    def mention_mask(self) -> torch.Tensor:
        return self.phrase_grid >= 0

    def to(self, device: torch.device | str) -> "Batch":
        moved = {name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
                 for name, value in self.__dict__.items()}
        return Batch(**moved)

    def pin_memory(self) -> "Batch":
        """Page-locked copies, so that `to(cuda, non_blocking=True)` overlaps the copy with
        compute (`DataLoader(pin_memory=True)` calls it)."""
        return Batch(**{name: value.pin_memory() if isinstance(value, torch.Tensor) else value
                        for name, value in self.__dict__.items()})


def collate(documents: Sequence[DocumentFeatures], indices: Sequence[int] | None = None,
            pad_token_id: int = 0) -> Batch:
    size = len(documents)
    num_windows = sum(doc.num_windows for doc in documents)
    max_tokens = max(int(np.diff(doc.window_offsets).max()) for doc in documents)
    max_words = max(max(doc.num_words for doc in documents), 1)
    max_ngram = documents[0].phrase_grid.shape[0]
    max_phrases = max(max(doc.num_phrases for doc in documents), 1)
    max_gold = max(max(len(doc.gold_spans) for doc in documents), 1)

    input_ids = np.full((num_windows, max_tokens), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((num_windows, max_tokens), dtype=np.int64)
    word_windows = np.zeros((size, max_words), dtype=np.int64)
    word_starts = np.zeros((size, max_words), dtype=np.int64)
    word_mask = np.zeros((size, max_words), dtype=bool)
    phrase_grid = np.full((size, max_ngram, max_words), -1, dtype=np.int64)
    phrase_mask = np.zeros((size, max_phrases), dtype=bool)
    gold_spans = np.full((size, max_gold, 2), -1, dtype=np.int64)
    tag_labels = np.full((size, max_words), IGNORE_INDEX, dtype=np.int64)
    mention_labels = np.zeros((size, max_ngram, max_words), dtype=bool)
    phrase_labels = np.zeros((size, max_phrases), dtype=bool)
    counts = np.zeros(len(COUNT_UNITS), dtype=np.int64)
    max_positives = 0
    window_row = 0
    for row, doc in enumerate(documents):
        words = doc.num_words
        for index in range(doc.num_windows):
            window = doc.window(index)
            input_ids[window_row + index, :len(window)] = window
            attention_mask[window_row + index, :len(window)] = 1
        word_windows[row, :words] = doc.word_windows + window_row
        window_row += doc.num_windows
        word_starts[row, :words] = doc.word_starts
        word_mask[row, :words] = True
        phrase_grid[row, :, :words] = doc.phrase_grid
        phrase_mask[row, :doc.num_phrases] = True
        gold_spans[row, :len(doc.gold_spans)] = doc.gold_spans
        tag_labels[row, :words] = doc.tag_labels
        starts, lengths = doc.gold_spans[:, 0], doc.gold_spans[:, 1] - doc.gold_spans[:, 0]
        mention_labels[row, lengths, starts] = True
        positive = doc.phrase_grid[lengths, starts]
        positive = np.unique(positive[positive >= 0])
        phrase_labels[row, positive] = True
        counts += (words, (doc.phrase_grid >= 0).sum(), 0 < len(positive) < doc.num_phrases, len(doc.gold_spans))
        max_positives = max(max_positives, len(positive))
    mention_labels &= phrase_grid >= 0
    return Batch(
        input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask),
        word_windows=torch.from_numpy(word_windows), word_starts=torch.from_numpy(word_starts),
        word_mask=torch.from_numpy(word_mask),
        phrase_grid=torch.from_numpy(phrase_grid), phrase_mask=torch.from_numpy(phrase_mask),
        gold_spans=torch.from_numpy(gold_spans), tag_labels=torch.from_numpy(tag_labels),
        mention_labels=torch.from_numpy(mention_labels), phrase_labels=torch.from_numpy(phrase_labels),
        counts=torch.from_numpy(counts), indices=list(indices) if indices is not None else list(range(size)),
        max_positives=max_positives)


@dataclass(frozen=True)
class BatchPlan:
    """Batches as two arrays, however many documents: batch b holds the documents
    `order[bounds[b]:bounds[b + 1]]`."""

    order: np.ndarray  # (D,) document positions, batch after batch
    bounds: np.ndarray  # (batches + 1,) where each batch starts in `order`

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def batch(self, index: int) -> np.ndarray:
        return self.order[self.bounds[index]:self.bounds[index + 1]]

    def batches(self) -> list[list[int]]:
        return [self.batch(index).tolist() for index in range(len(self))]

    def reordered(self, batch_order: np.ndarray) -> "BatchPlan":
        """The same batches in `batch_order`."""
        sizes = np.diff(self.bounds)[batch_order]
        bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        starts = np.repeat(self.bounds[:-1][batch_order], sizes)
        return BatchPlan(self.order[starts + np.arange(bounds[-1]) - np.repeat(bounds[:-1], sizes)], bounds)


def pack(order: np.ndarray, costs: np.ndarray | None, budget: int, groups: np.ndarray | None = None) -> BatchPlan:
    """Consecutive runs of `order` whose costs add up to at most `budget` (a document that
    costs more is a batch of its own), never across a change of `groups`; without costs,
    runs of `budget` documents."""
    order = np.asarray(order, dtype=np.int64)
    starts: list[int] = []
    spent, group = 0, None
    cost_list = costs[order].tolist() if costs is not None else [1] * len(order)
    group_list = groups.tolist() if groups is not None else [0] * len(order)
    for position, (cost, in_group) in enumerate(zip(cost_list, group_list)):
        if position == 0 or in_group != group or spent + cost > budget:
            starts.append(position)
            spent, group = 0, in_group
        spent += cost
    return BatchPlan(order, np.asarray(starts + [len(order)], dtype=np.int64))


def plan_batches(lengths: Sequence[int] | np.ndarray, batch_size: int, generator: torch.Generator | None = None,
                 bucket_batches: int = 50, shuffle: bool = True,
                 windows: Sequence[int] | np.ndarray | None = None) -> BatchPlan:
    """Batches of similar length: shuffle, sort within buckets of `bucket_batches` batches,
    then shuffle the batches. Without shuffling, documents keep their order in batches
    sorted by length (for decoding). With `windows` (encoder windows per document) a batch
    holds at most `batch_size` windows instead of documents, so its memory is bounded
    whatever the documents' lengths; documents of one window batch exactly as without.
    Array code throughout: a plan of half a million documents takes a fraction of a second."""
    lengths = np.asarray(lengths, dtype=np.int64)
    costs = None if windows is None else np.asarray(windows, dtype=np.int64)
    if not shuffle:
        return pack(np.argsort(-lengths, kind="stable"), costs, batch_size)
    permutation = torch.randperm(len(lengths), generator=generator).numpy()
    buckets = np.arange(len(lengths)) // (batch_size * bucket_batches)
    plan = pack(permutation[np.lexsort((-lengths[permutation], buckets))], costs, batch_size, buckets)
    return plan.reordered(torch.randperm(len(plan), generator=generator).numpy())


def length_grouped_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator | None = None,
                           bucket_batches: int = 50, shuffle: bool = True,
                           windows: Sequence[int] | None = None) -> list[list[int]]:
    """`plan_batches` as lists of document positions."""
    return plan_batches(lengths, batch_size, generator, bucket_batches, shuffle, windows).batches()


def shard_ids(num_batches: int, rank: int, world_size: int) -> np.ndarray:
    """The batches of one distributed rank: every rank gets the same number (the last
    batches are repeated from the start when they do not divide evenly, cycling when
    there are fewer batches than ranks), rank r taking batches r, r + world_size, ..."""
    per_rank = math.ceil(num_batches / world_size) if num_batches else 0
    return (np.arange(per_rank * world_size) % max(num_batches, 1))[rank::world_size]


def shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    return [batches[index] for index in shard_ids(len(batches), rank, world_size).tolist()]


def iterate(documents: Sequence[DocumentFeatures], batches: Sequence[Sequence[int]], pad_token_id: int = 0
            ) -> Iterator[Batch]:
    for batch in batches:
        yield collate([documents[index] for index in batch], batch, pad_token_id)
