"""One decoder for every head: mention scores -> phrase scores -> top-k phrases.

Phrase ids already merge mentions with equal normalised text (stemmed where the
dataset is stemmed), so ranking phrases is de-duplication by stem as well. Sorting
and top-k run in tensor code on the model's device; Python only turns the final k
ids into words.

A phrase's score is the best score of its mentions ("max" pooling, the original). In a
long document the one best local score anywhere is mostly noise, so by default
("document" pooling) a phrase also gains from document-level evidence: how early it
first occurs (and, if weighted, how often), scaled by how far the document outgrows one
encoder window and scaled by the spread of the document's scores, so that the
evidence means the same for every head. A document of at most `REFERENCE_WORDS` words
is ranked exactly as by max pooling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from bertkpe.data.batching import Batch
from bertkpe.data.features import DocumentFeatures
from bertkpe.dataset_classes import DEFAULT_TEXT_KIND, TEXT_KINDS
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


REFERENCE_WORDS = 512  # about one encoder window: longer documents weigh document-level evidence


@dataclass(frozen=True)
class PhrasePooling:
    """How mention scores become phrase scores: "max", or "document" with the weights of
    occurrence count (log) and first position (1 at the start, 0 at the end)."""

    mode: str = "document"
    # papers' weights (DOCUMENT_POOLING): first position carries the evidence; occurrence
    # count only lifted frequent filler n-grams
    frequency_weight: float = 0.0
    position_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.mode not in ("max", "document"):
            raise ValueError(f"phrase pooling is 'max' or 'document', got {self.mode!r}")


MAX_POOLING = PhrasePooling("max")

# Document pooling weights (frequency, position) for each kind of text, each the best of a
# grid on a dev split with the general English model (bench/pooling_by_kind.py, README
# "Whole documents"): papers on SemEval2010, news on 500N-KPCrowd, pages on the same news
# in the OpenKP layout. Abstracts and other texts of at most REFERENCE_WORDS words are
# ranked by max pooling whatever their kind.
DOCUMENT_POOLING: dict[str, PhrasePooling] = {
    "papers": PhrasePooling("document", frequency_weight=0.0, position_weight=0.5),
    "news": PhrasePooling("document", frequency_weight=0.05, position_weight=0.5),
    "pages": PhrasePooling("document", frequency_weight=0.0, position_weight=2.0),
}


def phrase_pooling(mode: str, text_kind: str | None = None) -> PhrasePooling:
    """"max", or "document" pooling with the weights chosen for `text_kind` (papers where unknown)."""
    if mode == "max":
        return MAX_POOLING
    if text_kind is not None and text_kind not in DOCUMENT_POOLING:
        raise ValueError(f"unknown kind of text {text_kind!r}; choose from {list(TEXT_KINDS)}")
    if mode != "document":
        raise ValueError(f"phrase pooling is 'max' or 'document', got {mode!r}")
    return DOCUMENT_POOLING[text_kind or DEFAULT_TEXT_KIND]


def document_phrase_scores(mention_scores: torch.Tensor, batch: Batch, pooling: PhrasePooling) -> torch.Tensor:
    """(B, P) phrase scores: the best mention's, plus the document-level evidence."""
    num_phrases = batch.phrase_mask.shape[1]
    best = pool_phrases(mention_scores.float(), batch.phrase_grid, num_phrases)
    if pooling.mode == "max":
        return best
    index = torch.where(batch.phrase_grid >= 0, batch.phrase_grid, num_phrases).flatten(1)
    starts = torch.arange(batch.phrase_grid.shape[2], device=best.device, dtype=torch.float32)
    starts = starts.expand_as(batch.phrase_grid).flatten(1)
    first = starts.new_full((best.shape[0], num_phrases + 1), math.inf)
    first = first.scatter_reduce(1, index, starts, reduce="amin", include_self=True)[:, :num_phrases]
    num_words = batch.word_mask.sum(1, keepdim=True).clamp(min=1).float()
    length_weight = torch.log(num_words / REFERENCE_WORDS).clamp(min=0)
    finite = torch.isfinite(best) & batch.phrase_mask
    high = best.masked_fill(~finite, -math.inf).amax(1, keepdim=True)
    low = best.masked_fill(~finite, math.inf).amin(1, keepdim=True)
    spread = torch.where(high > low, high - low, torch.ones_like(high))
    evidence = pooling.position_weight * (1 - first.clamp(max=num_words) / num_words)
    if pooling.frequency_weight:
        mentions = batch.mention_mask.flatten(1).float()
        count = mentions.new_zeros(best.shape[0], num_phrases + 1).scatter_add(1, index, mentions)[:, :num_phrases]
        evidence = evidence + pooling.frequency_weight * torch.log(count.clamp(min=1))
    return torch.where(finite, best + length_weight * spread * evidence, best)


def top_phrases(phrase_scores: torch.Tensor, phrase_mask: torch.Tensor, top_k: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) scores and phrase ids, best first; -inf scores mark slots with no phrase."""
    require_one_device(phrase_scores=phrase_scores, phrase_mask=phrase_mask)
    masked = phrase_scores.float().masked_fill(~phrase_mask, float("-inf"))
    k = min(top_k, masked.shape[1])
    return torch.topk(masked, k, dim=1, sorted=True)


def decode_batch(mention_scores: torch.Tensor, batch: Batch, documents: Sequence[DocumentFeatures],
                 top_k: int = 5, pooling: PhrasePooling = PhrasePooling()) -> list[RankedPhrases]:
    """`batch` must be the one the model scored (on the same device as `mention_scores`)."""
    require_one_device(mention_scores=mention_scores, phrase_grid=batch.phrase_grid,
                       phrase_mask=batch.phrase_mask)
    phrase_scores = document_phrase_scores(mention_scores, batch, pooling)
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
               device: torch.device, pooling: PhrasePooling = PhrasePooling()) -> list[RankedPhrases]:
    """Score a CPU-collated batch on `device` and decode it there: the one place where
    inference moves a batch, so the model and the decoder always see the same tensors."""
    on_device = batch.to(device)
    return decode_batch(model(on_device).mention_scores, on_device, documents, top_k, pooling)
