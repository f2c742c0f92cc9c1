"""Bert2Rank: score every n-gram, rank phrases by their best mention."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bertkpe.data.batching import Batch
from bertkpe.models.base import KeyphraseModel, LossTerm, ModelOutput, loss_term
from bertkpe.models.chunk import CNN_CHANNELS
from bertkpe.models.ngram import NGramCNN


def margin_rank_loss(phrase_scores: torch.Tensor, phrase_labels: torch.Tensor, phrase_mask: torch.Tensor,
                     max_positives: int, margin: float = 1.0) -> torch.Tensor:
    """Mean hinge loss between every positive and every negative phrase of a document,
    summed over the documents that have both; one batched tensor expression.

    Positives are few (at most `max_positives` a document), so they are gathered into
    (B, K) and compared with all phrases under a mask: (B, K, P) rather than (B, P, P).
    """
    scores = phrase_scores.float().masked_fill(~phrase_mask, 0.0)
    positive = phrase_labels & phrase_mask
    negative = ~phrase_labels & phrase_mask
    if max_positives == 0:
        return scores.sum() * 0.0
    order = torch.argsort(positive.to(torch.int8), dim=1, descending=True, stable=True)[:, :max_positives]
    positive_scores = torch.gather(scores, 1, order)  # (B, K)
    positive_valid = torch.gather(positive, 1, order)  # (B, K)
    hinge = torch.relu(margin - positive_scores[:, :, None] + scores[:, None, :])  # (B, K, P)
    pairs = positive_valid[:, :, None] & negative[:, None, :]
    per_document = torch.where(pairs, hinge, 0.0).sum((1, 2)) / pairs.sum((1, 2)).clamp(min=1)
    return per_document.sum()  # 0 for a document without pairs


def softmax_rank_loss(phrase_scores: torch.Tensor, phrase_labels: torch.Tensor, phrase_mask: torch.Tensor,
                      max_positives: int) -> torch.Tensor:
    """Each positive phrase against all of its document's negatives at once,
    -log(e^s+ / (e^s+ + sum e^s-)) = softplus(logsumexp(s-) - s+), averaged over positives,
    summed over the documents that have both.

    The mean hinge of `margin_rank_loss` spreads its gradient over every pair, most of them
    with negatives far below the positives; here it goes to the negatives that outscore a
    positive, the ones that decide the top k.
    """
    scores = phrase_scores.float()
    positive = phrase_labels & phrase_mask
    negative = ~phrase_labels & phrase_mask
    has_both = positive.any(1) & negative.any(1)
    # finite fills: padded -inf slots and documents without negatives must not turn gradients into NaN
    lowest = torch.finfo(scores.dtype).min
    negatives = torch.logsumexp(scores.masked_fill(~negative, lowest), dim=1, keepdim=True)  # (B, 1)
    per_positive = F.softplus(negatives - scores.masked_fill(~positive, 0.0)) * positive
    per_document = per_positive.sum(1) / positive.sum(1).clamp(min=1)
    return torch.where(has_both, per_document, 0.0).sum()


RANK_LOSSES = {"margin": margin_rank_loss, "softmax": softmax_rank_loss}


class Bert2Rank(KeyphraseModel):
    """Mention score = a linear score of its n-gram CNN vector; trained to rank.

    `rank_loss` is "margin" (the paper's hinge over positive-negative pairs) or "softmax"
    (each positive against all negatives); it only changes training.
    """

    model_class = "bert2rank"
    head_options = ("rank_loss",)

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5, rank_loss: str = "margin"):
        super().__init__(encoder, max_phrase_words)
        if rank_loss not in RANK_LOSSES:
            raise ValueError(f"rank_loss is one of {sorted(RANK_LOSSES)}, got {rank_loss!r}")
        self.rank_loss = rank_loss
        self.ngram_cnn = NGramCNN(self.hidden_size, max_phrase_words, CNN_CHANNELS, self.dropout_rate / 2)
        self.rank_scorer = nn.Linear(CNN_CHANNELS, 1)

    def rank_scores(self, scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        """(B, N, W, 1) scorer outputs -> (B, N, W) mention scores, -inf off the candidates."""
        return scores.squeeze(-1).float().masked_fill(~batch.mention_mask, float("-inf"))

    def phrase_rank_loss(self, mention_scores: torch.Tensor, batch: Batch) -> LossTerm:
        phrase_scores = self.phrase_scores(mention_scores, batch)
        total = RANK_LOSSES[self.rank_loss](phrase_scores, batch.phrase_labels, batch.phrase_mask, batch.max_positives)
        return loss_term(total, "ranked_documents", batch)

    def head(self, words, batch: Batch, compute_loss: bool) -> ModelOutput:
        (scores,) = self.ngram_cnn(words, self.rank_scorer)
        mention_scores = self.rank_scores(scores, batch)
        terms = {"rank": self.phrase_rank_loss(mention_scores, batch)} if compute_loss else None
        return ModelOutput(mention_scores, terms)
