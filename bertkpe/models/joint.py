"""Bert2Joint (JointKPE): rank and chunk objectives over one shared n-gram CNN."""
from __future__ import annotations

from torch import nn

from bertkpe.data.batching import Batch
from bertkpe.models.base import ModelOutput
from bertkpe.models.chunk import CNN_CHANNELS, chunk_loss
from bertkpe.models.rank import Bert2Rank


class Bert2Joint(Bert2Rank):
    """Loss = rank loss + `chunk_loss_weight` x chunk loss (1: the paper's plain sum);
    decoding uses the rank scores, so the chunk objective only shapes what they learn."""

    model_class = "bert2joint"
    head_options = ("rank_loss", "chunk_loss_weight")

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5, rank_loss: str = "margin",
                 chunk_loss_weight: float = 1.0):
        super().__init__(encoder, max_phrase_words, rank_loss)
        if not chunk_loss_weight >= 0:
            raise ValueError(f"chunk_loss_weight must be at least 0, got {chunk_loss_weight}")
        self.chunk_loss_weight = float(chunk_loss_weight)
        self.chunk_classifier = nn.Linear(CNN_CHANNELS, 2)

    def head(self, words, batch: Batch, compute_loss: bool) -> ModelOutput:
        scores, chunk_logits = self.ngram_cnn(words, self.rank_scorer, self.chunk_classifier)
        mention_scores = self.rank_scores(scores, batch)
        terms = None
        if compute_loss:
            terms = {"rank": self.phrase_rank_loss(mention_scores, batch),
                     "chunk": chunk_loss(chunk_logits, batch, self.chunk_loss_weight)}
        return ModelOutput(mention_scores, terms)
