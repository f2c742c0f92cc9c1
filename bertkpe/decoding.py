"""One decoder for every head: mention scores -> phrase scores -> top-k phrases.

Phrase ids already merge mentions with equal normalised text (stemmed where the
dataset is stemmed), so ranking phrases is de-duplication by stem as well. Sorting
and top-k run in tensor code on the model's device; Python only turns the final k
ids into words.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from bertkpe.data.batching import Batch
from bertkpe.data.features import DocumentFeatures
from bertkpe.models.base import KeyphraseModel, pool_phrases


@dataclass
class RankedPhrases:
    url: str
    phrases: list[list[str]]  # words of each phrase, as first seen in the document
    scores: list[float]
    phrase_ids: list[int]  # each phrase's id: its mentions are the cells of the document's phrase_grid equal to it


def require_one_device(**tensors: torch.Tensor) -> None:
    """Refuse tensors from two devices by name: on CUDA a CPU index would otherwise fail deep
    inside `scatter_reduce` with no hint of which side was left behind."""
    devices = {name: tensor.device for name, tensor in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"{name} on {device}" for name, device in devices.items())
        raise ValueError(f"decoding needs its tensors on one device, got {listed}: move the batch "
                         f"to the model's device (batch.to(device)) and decode that batch")


def top_phrases(phrase_scores: torch.Tensor, phrase_mask: torch.Tensor, top_k: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) scores and phrase ids, best first; -inf scores mark slots with no phrase."""
    require_one_device(phrase_scores=phrase_scores, phrase_mask=phrase_mask)
    masked = phrase_scores.float().masked_fill(~phrase_mask, float("-inf"))
    k = min(top_k, masked.shape[1])
    return torch.topk(masked, k, dim=1, sorted=True)


def decode_batch(mention_scores: torch.Tensor, batch: Batch, documents: Sequence[DocumentFeatures],
                 top_k: int = 5) -> list[RankedPhrases]:
    """`batch` must be the one the model scored (on the same device as `mention_scores`)."""
    require_one_device(mention_scores=mention_scores, phrase_grid=batch.phrase_grid,
                       phrase_mask=batch.phrase_mask)
    phrase_scores = pool_phrases(mention_scores.float(), batch.phrase_grid, batch.phrase_mask.shape[1])
    scores, ids = top_phrases(phrase_scores, batch.phrase_mask, top_k)
    scores, ids = scores.cpu().tolist(), ids.cpu().tolist()
    ranked = []
    for doc, doc_scores, doc_ids in zip(documents, scores, ids):
        kept = [(phrase_id, score) for phrase_id, score in zip(doc_ids, doc_scores) if score != float("-inf")]
        ranked.append(RankedPhrases(url=doc.url, phrases=[doc.phrase_words(phrase_id) for phrase_id, _ in kept],
                                    scores=[score for _, score in kept],
                                    phrase_ids=[phrase_id for phrase_id, _ in kept]))
    return ranked


def rank_batch(model: KeyphraseModel, batch: Batch, documents: Sequence[DocumentFeatures], top_k: int,
               device: torch.device) -> list[RankedPhrases]:
    """Score a CPU-collated batch on `device` and decode it there: the one place where
    inference moves a batch, so the model and the decoder always see the same tensors."""
    on_device = batch.to(device)
    return decode_batch(model(on_device).mention_scores, on_device, documents, top_k)
