"""Bert2Tag: BIOEU sequence tagging, mentions scored by their weakest tag."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bertkpe.data.batching import IGNORE_INDEX, Batch
from bertkpe.data.phrases import TAG_ID, TAGS
from bertkpe.models.base import KeyphraseModel, ModelOutput, loss_term


class Bert2Tag(KeyphraseModel):
    """1-gram score P_U(i); n-gram score min(P_B(i), P_I(i+1..i+n-2), P_E(i+n-1))."""

    model_class = "bert2tag"

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5):
        super().__init__(encoder, max_phrase_words)
        self.classifier = nn.Linear(self.hidden_size, len(TAGS))

    def mention_scores_from_tags(self, tag_probs: torch.Tensor) -> torch.Tensor:
        """(B, W, 5) tag probabilities -> (B, N, W) mention scores, by shifted minima."""
        num_words = tag_probs.shape[1]
        padded = F.pad(tag_probs, (0, 0, 0, self.max_phrase_words))  # words past the end: prob 0

        def shifted(tag: str, offset: int) -> torch.Tensor:
            return padded[:, offset:offset + num_words, TAG_ID[tag]]

        rows = [tag_probs[..., TAG_ID["U"]]]
        inside = torch.ones_like(rows[0])
        begin = tag_probs[..., TAG_ID["B"]]
        for length in range(2, self.max_phrase_words + 1):
            if length > 2:
                inside = torch.minimum(inside, shifted("I", length - 2))
            rows.append(torch.minimum(torch.minimum(begin, inside), shifted("E", length - 1)))
        return torch.stack(rows, dim=1)

    def head(self, words: torch.Tensor, batch: Batch, compute_loss: bool) -> ModelOutput:
        logits = self.classifier(words).float()
        mention_scores = self.mention_scores_from_tags(logits.softmax(-1))
        mention_scores = mention_scores.masked_fill(~batch.mention_mask, float("-inf"))
        terms = None
        if compute_loss:
            total = F.cross_entropy(logits.flatten(0, 1), batch.tag_labels.flatten(), ignore_index=IGNORE_INDEX,
                                    reduction="sum")
            terms = {"tags": loss_term(total, "words", batch)}
        return ModelOutput(mention_scores, terms)
