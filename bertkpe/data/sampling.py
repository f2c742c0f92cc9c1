"""What one epoch of training reads: the trainable documents of one or more feature
stores (of one or more corpora, each drawn its share of the epoch), the window run drawn
from each long document, and each rank's micro-batches, as a `torch.utils.data` dataset
and batch sampler.

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

    def __init__(self, stores: Sequence[FeatureStore], model_class: str, corpus_of_store: Sequence[int] | None = None):
        self.stores = list(stores)
        corpus_of_store = list(corpus_of_store) if corpus_of_store is not None else [0] * len(self.stores)
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
        self.corpus_ids = np.asarray(corpus_of_store, dtype=np.int32)[self.store_ids] if len(self.doc_ids) else \
            np.zeros(0, dtype=np.int32)
        self.num_corpora = max(corpus_of_store, default=-1) + 1
        self.num_windows = self._column(lambda store: store.lengths("windows"))
        self.num_tokens = self._column(lambda store: store.lengths("tokens"))

    def _column(self, read) -> np.ndarray:
        return np.concatenate([read(store)[self.doc_ids[self.store_ids == number]]
                               for number, store in enumerate(self.stores)]) if len(self.doc_ids) else \
            np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def corpus_sizes(self) -> np.ndarray:
        """Usable training documents of each corpus."""
        return np.bincount(self.corpus_ids, minlength=self.num_corpora)

    def corpus_quotas(self, temperature: float) -> np.ndarray:
        """Documents an epoch draws from each corpus: in proportion to n_i ** (1 / T), as many
        in all as there are documents (T = 1: each corpus's own size); a corpus with usable
        documents gets at least one."""
        sizes = self.corpus_sizes()
        if temperature == 1.0 or self.num_corpora < 2:
            return sizes
        weights = np.where(sizes > 0, sizes.astype(np.float64) ** (1.0 / temperature), 0.0)
        exact = weights / weights.sum() * sizes.sum()
        quotas = np.floor(exact).astype(np.int64)
        remainders = np.argsort(-(exact - quotas), kind="stable")[:int(sizes.sum() - quotas.sum())]
        quotas[remainders] += 1
        return np.where(sizes > 0, np.maximum(quotas, 1), 0)

    def epoch_documents(self, epoch: int, seed: int, temperature: float) -> np.ndarray:
        """The positions an epoch trains on, a document more than once where its corpus is drawn
        more than it holds. Each corpus's documents are read in a stream of shuffles (by the
        seed alone) that every epoch continues, so every document is read before any is
        read again and a corpus drawn less than its size still reads all of it over the
        epochs. With each corpus drawn at its size (T = 1), every document once."""
        quotas = self.corpus_quotas(temperature)
        sizes = self.corpus_sizes()
        if np.array_equal(quotas, sizes):
            return np.arange(len(self), dtype=np.int64)
        chosen = []
        for corpus, (quota, size) in enumerate(zip(quotas.tolist(), sizes.tolist())):
            if not quota:
                continue
            members = np.flatnonzero(self.corpus_ids == corpus)
            stream = np.arange(epoch * quota, (epoch + 1) * quota)
            for shuffle in np.unique(stream // size).tolist():
                order = torch.randperm(size, generator=torch.Generator().manual_seed(
                    seed + 1_000_003 * (corpus + 1) + shuffle)).numpy()
                taken = stream[stream // size == shuffle] % size
                chosen.append(members[order[taken]])
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)

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

    def run_tokens(self, first: np.ndarray, count: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Sub-tokens of each window run (first, count) of the documents at `positions` (default: all)."""
        positions = np.arange(len(self)) if positions is None else positions
        tokens = self.num_tokens[positions].copy()
        for place in np.flatnonzero(count < self.num_windows[positions]).tolist():
            position = int(positions[place])
            store = self.stores[self.store_ids[position]]
            start = store.span("windows", int(self.doc_ids[position]))[0] + int(first[place])
            tokens[place] = int(store.arrays["window_lengths"][start:start + int(count[place])].sum())
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
                 rank: int = 0, world_size: int = 1, temperature: float = 1.0):
        self.documents, self.batch_windows, self.seed = documents, batch_windows, seed
        self.train_windows, self.rank, self.world_size = train_windows, rank, world_size
        self.temperature = temperature
        self.epoch, self.start = 0, 0
        self._planned: tuple[int, np.ndarray, np.ndarray, np.ndarray, BatchPlan, np.ndarray] | None = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, BatchPlan, np.ndarray]:
        """The epoch's documents, their window runs (first, count), all ranks' micro-batches
        (over places in the epoch's documents), and this rank's ids of them."""
        if self._planned is None or self._planned[0] != epoch:
            chosen = self.documents.epoch_documents(epoch, self.seed, self.temperature)
            first, count = self.documents.window_runs(epoch, self.seed, self.train_windows)
            first, count = first[chosen], count[chosen]
            tokens = self.documents.run_tokens(first, count, chosen)
            plan = plan_batches(tokens, self.batch_windows, torch.Generator().manual_seed(self.seed + epoch),
                                windows=count)
            self._planned = (epoch, chosen, first, count, plan, shard_ids(len(plan), self.rank, self.world_size))
        return self._planned[1:]

    def __len__(self) -> int:
        return max(len(self.plan(self.epoch)[4]) - self.start, 0)

    def __iter__(self) -> Iterator[list[Item]]:
        chosen, first, count, plan, mine = self.plan(self.epoch)
        for batch_id in mine[self.start:].tolist():
            yield [(int(chosen[place]), int(first[place]), int(count[place]))
                   for place in plan.batch(batch_id).tolist()]

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
