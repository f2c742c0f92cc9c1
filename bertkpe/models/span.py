"""Bert2Span: a keyphrase start classifier and an end attention from each start."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bertkpe.data.batching import Batch
from bertkpe.models.base import KeyphraseModel, ModelOutput


class Bert2Span(KeyphraseModel):
    """Mention (i..j) score = P_start(i) * P_end(j | i).

    P_end(. | i) is a single-head attention from word i over the words j >= i.
    """

    model_class = "bert2span"

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5):
        super().__init__(encoder, max_phrase_words)
        self.start_classifier = nn.Linear(self.hidden_size, 2)
        self.end_query = nn.Linear(self.hidden_size, self.hidden_size)
        self.end_key = nn.Linear(self.hidden_size, self.hidden_size)

    def end_log_probs(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """(B, W, W) log P_end(j | i): row i is a distribution over j >= i."""
        scores = self.end_query(words) @ self.end_key(words).transpose(1, 2) / math.sqrt(self.hidden_size)
        num_words = words.shape[1]
        ahead = torch.ones(num_words, num_words, dtype=torch.bool, device=words.device).triu()
        allowed = ahead[None] & word_mask[:, None, :]
        scores = scores.float().masked_fill(~allowed, torch.finfo(torch.float32).min)
        return F.log_softmax(scores, dim=-1)

    def head(self, words: torch.Tensor, batch: Batch, compute_loss: bool) -> ModelOutput:
        start_log_probs = F.log_softmax(self.start_classifier(words).float(), dim=-1)  # (B, W, 2)
        end_log_probs = self.end_log_probs(words, batch.word_mask)  # (B, W, W)
        num_words = words.shape[1]
        ends = self.ngram_positions(num_words, words.device).clamp(max=num_words - 1)  # (N, W)
        end_index = ends.T.unsqueeze(0).expand(words.shape[0], -1, -1)  # (B, W, N)
        mention_log_probs = start_log_probs[..., 1:2] + torch.gather(end_log_probs, 2, end_index)
        mention_scores = mention_log_probs.exp().transpose(1, 2)  # (B, N, W)
        mention_scores = mention_scores.masked_fill(~batch.mention_mask, float("-inf"))
        loss = None
        if compute_loss:
            start_labels = torch.zeros_like(batch.word_starts)
            doc, gold = torch.nonzero(batch.gold_spans[..., 0] >= 0, as_tuple=True)
            spans = batch.gold_spans[doc, gold]
            start_labels[doc, spans[:, 0]] = 1
            start_loss = F.nll_loss(start_log_probs[batch.word_mask], start_labels[batch.word_mask])
            end_loss = -end_log_probs[doc, spans[:, 0], spans[:, 1]].mean() if len(doc) else start_loss * 0
            loss = start_loss + end_loss
        return ModelOutput(mention_scores, loss)
