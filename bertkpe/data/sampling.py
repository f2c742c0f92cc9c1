"""What one epoch of training reads: the trainable documents of one or more feature
stores, the window run drawn from each long document, and each rank's micro-batches.

Everything here is decided from the stores' per-document columns (windows, sub-tokens,
gold spans, phrases) without loading a document; a document is read from its store only
when its micro-batch is collated.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bertkpe.data.batching import length_grouped_batches, shard
from bertkpe.data.features import DocumentFeatures, crop_windows
from bertkpe.data.store import FeatureStore

PHRASE_LEVEL_HEADS = ("bert2chunk", "bert2rank", "bert2joint")

Item = tuple[int, int, int]  # (training document, first window, windows): one document of a micro-batch


class TrainingDocuments:
    """The documents of `stores` (in order) a head can learn from: a present keyphrase left
    after truncation and, for the phrase-level heads, a negative phrase too."""

    def __init__(self, stores: Sequence[FeatureStore], model_class: str):
        self.stores = list(stores)
        usable = []
        for store in self.stores:
            keep = store.lengths("gold") > 0
            if model_class in PHRASE_LEVEL_HEADS:
                positive = store.column("num_positive")
                keep &= (positive > 0) & (positive < store.column("num_phrases"))
            usable.append(keep)
        self.store_ids = np.concatenate([np.full(int(keep.sum()), number, dtype=np.int32)
                                         for number, keep in enumerate(usable)])
        self.doc_ids = np.concatenate([np.flatnonzero(keep) for keep in usable])
        self.skipped = sum(len(store) for store in self.stores) - len(self.doc_ids)
        self.num_windows = self._column(lambda store: store.lengths("windows"))
        self.num_tokens = self._column(lambda store: store.lengths("tokens"))

    def _column(self, read) -> np.ndarray:
        return np.concatenate([read(store)[self.doc_ids[self.store_ids == number]]
                               for number, store in enumerate(self.stores)]) if len(self.doc_ids) else \
            np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def window_runs(self, epoch: int, seed: int, train_windows: int) -> tuple[np.ndarray, np.ndarray]:
        """(first window, windows) of what each document trains on in `epoch`: with
        `train_windows` K > 0, a document of more than K windows trains on K consecutive
        ones drawn by the seed and the epoch alone (every rank, and a resumed run, draws
        the same); with 0, or a shorter document, all its windows."""
        first = np.zeros(len(self), dtype=np.int64)
        count = self.num_windows.copy()
        if train_windows:
            generator = torch.Generator().manual_seed(seed + epoch)
            for position in np.flatnonzero(self.num_windows > train_windows).tolist():
                first[position] = int(torch.randint(int(self.num_windows[position]) - train_windows + 1, (1,),
                                                    generator=generator))
            count = np.minimum(count, train_windows)
        return first, count

    def run_tokens(self, first: np.ndarray, count: np.ndarray) -> np.ndarray:
        """Sub-tokens of each document's window run."""
        tokens = self.num_tokens.copy()
        for position in np.flatnonzero(count < self.num_windows).tolist():
            store = self.stores[self.store_ids[position]]
            start, _ = store.span("windows", int(self.doc_ids[position]))
            windows = store.window_token_counts()[start + first[position]:start + first[position] + count[position]]
            tokens[position] = int(windows.sum())
        return tokens

    def document(self, item: Item) -> DocumentFeatures:
        """A micro-batch's document: the training document as its window run leaves it."""
        position, first, count = item
        doc = self.stores[self.store_ids[position]][int(self.doc_ids[position])]
        return crop_windows(doc, first, count)


class WindowBatchSampler:
    """One rank's micro-batches of an epoch, shuffled by the seed and the epoch alone: each
    holds at most `batch_windows` encoder windows of documents of similar length (a
    document of more windows is a micro-batch of its own), so memory is bounded by the
    flags, not by the corpus. Every rank forms all micro-batches and takes every
    world_size-th (`shard`), so the ranks' shares are disjoint and cover the epoch."""

    def __init__(self, documents: TrainingDocuments, batch_windows: int, seed: int, train_windows: int,
                 rank: int = 0, world_size: int = 1):
        self.documents, self.batch_windows, self.seed = documents, batch_windows, seed
        self.train_windows, self.rank, self.world_size = train_windows, rank, world_size

    def micro_batches(self, epoch: int) -> list[list[Item]]:
        first, count = self.documents.window_runs(epoch, self.seed, self.train_windows)
        generator = torch.Generator().manual_seed(self.seed + epoch)
        batches = length_grouped_batches(self.documents.run_tokens(first, count).tolist(), self.batch_windows,
                                         generator, windows=count.tolist())
        return [[(position, int(first[position]), int(count[position])) for position in batch]
                for batch in shard(batches, self.rank, self.world_size)]
