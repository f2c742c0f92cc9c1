"""What one epoch of training reads: the trainable documents of one or more feature
stores, the window run drawn from each long document, and each rank's micro-batches,
as a `torch.utils.data` dataset and batch sampler.

Everything here is decided from the stores' per-document columns (windows, sub-tokens,
gold spans, phrases) without loading a document; a document is read from its store only
when its micro-batch is collated, in a DataLoader worker where there are workers.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from bertkpe.data.batching import Batch, BatchPlan, collate, plan_batches, shard_ids
from bertkpe.data.features import DocumentFeatures, crop_windows
from bertkpe.data.store import FeatureStore

PHRASE_LEVEL_HEADS = ("bert2chunk", "bert2rank", "bert2joint")

Item = tuple[int, int, int]  # (training document, first window, windows): one document of a micro-batch


class TrainingDocuments(Dataset):
    """The documents of `stores` (in order) a head can learn from: a present keyphrase left
    after truncation and, for the phrase-level heads, a negative phrase too. An item is a
    document's run of windows (`Item`)."""

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
            start = store.span("windows", int(self.doc_ids[position]))[0] + int(first[position])
            tokens[position] = int(store.arrays["window_lengths"][start:start + int(count[position])].sum())
        return tokens

    def __getitem__(self, item: Item) -> tuple[int, DocumentFeatures]:
        """A micro-batch's document, as its window run leaves it, with its position."""
        position, first, count = item
        doc = self.stores[self.store_ids[position]][int(self.doc_ids[position])]
        return position, crop_windows(doc, first, count)


class WindowBatchSampler(Sampler[list[Item]]):
    """One rank's micro-batches of an epoch, shuffled by the seed and the epoch alone: each
    holds at most `batch_windows` encoder windows of documents of similar length (a
    document of more windows is a micro-batch of its own), so memory is bounded by the
    flags, not by the corpus. Every rank plans all micro-batches and takes every
    world_size-th (`shard_ids`), so the ranks' shares are disjoint and cover the epoch.

    `set_epoch(epoch, start)` chooses the epoch and the micro-batch to start from (a
    resumed run's position); iterating then yields this rank's micro-batches from there."""

    def __init__(self, documents: TrainingDocuments, batch_windows: int, seed: int, train_windows: int,
                 rank: int = 0, world_size: int = 1):
        self.documents, self.batch_windows, self.seed = documents, batch_windows, seed
        self.train_windows, self.rank, self.world_size = train_windows, rank, world_size
        self.epoch, self.start = 0, 0
        self._planned: tuple[int, np.ndarray, np.ndarray, BatchPlan, np.ndarray] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, BatchPlan, np.ndarray]:
        """The epoch's window runs (first, count), all ranks' micro-batches, and this rank's ids of them."""
        if self._planned is None or self._planned[0] != epoch:
            first, count = self.documents.window_runs(epoch, self.seed, self.train_windows)
            plan = plan_batches(self.documents.run_tokens(first, count), self.batch_windows,
                                torch.Generator().manual_seed(self.seed + epoch), windows=count)
            self._planned = (epoch, first, count, plan, shard_ids(len(plan), self.rank, self.world_size))
        return self._planned[1:]

    def __len__(self) -> int:
        return max(len(self.plan(self.epoch)[3]) - self.start, 0)

    def __iter__(self) -> Iterator[list[Item]]:
        first, count, plan, mine = self.plan(self.epoch)
        for batch_id in mine[self.start:].tolist():
            yield [(position, int(first[position]), int(count[position])) for position in plan.batch(batch_id).tolist()]

    def micro_batches(self, epoch: int) -> list[list[Item]]:
        """All of this rank's micro-batches of `epoch`, from its start."""
        self.set_epoch(epoch)
        return list(self)


class TrainingCollator:
    """The DataLoader's collate function: a micro-batch of documents as a padded Batch whose
    indices are the documents' positions among the training documents."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, items: list[tuple[int, DocumentFeatures]]) -> Batch:
        return collate([doc for _, doc in items], [position for position, _ in items], self.pad_token_id)
