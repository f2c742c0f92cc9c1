"""Bert2Chunk: classify every n-gram as keyphrase or not."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from bertkpe.data.batching import Batch
from bertkpe.models.base import KeyphraseModel, LossTerm, ModelOutput, loss_term
from bertkpe.models.ngram import NGramCNN

CNN_CHANNELS = 512


def chunk_loss(logits: torch.Tensor, batch: Batch, weight: float = 1.0) -> LossTerm:
    """Cross-entropy of the 2-way n-gram classifier, summed over the candidate mentions
    (masked, not gathered: selecting them would make the host wait for their count)."""
    per_mention = F.cross_entropy(logits.flatten(0, 2).float(), batch.mention_labels.flatten().long(),
                                  reduction="none")
    return loss_term((per_mention * batch.mention_mask.flatten()).sum(), "mentions", batch, weight)


class Bert2Chunk(KeyphraseModel):
    """Mention score = P(keyphrase) from a 2-way classifier over its n-gram CNN vector.

    `ngram_relu=False` reproduces the original toolkit's chunk network, whose n-gram
    convolutions are not rectified (converted checkpoints set it).
    """

    model_class = "bert2chunk"
    head_options = ("ngram_relu",)

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5, ngram_relu: bool = True):
        super().__init__(encoder, max_phrase_words)
        self.ngram_relu = ngram_relu
        self.ngram_cnn = NGramCNN(self.hidden_size, max_phrase_words, CNN_CHANNELS, self.dropout_rate / 2,
                                  relu=ngram_relu)
        self.chunk_classifier = nn.Linear(CNN_CHANNELS, 2)

    def head(self, words, batch: Batch, compute_loss: bool) -> ModelOutput:
        (logits,) = self.ngram_cnn(words, self.chunk_classifier)  # (B, N, W, 2)
        mention_scores = logits.float().softmax(-1)[..., 1]
        mention_scores = mention_scores.masked_fill(~batch.mention_mask, float("-inf"))
        terms = {"chunk": chunk_loss(logits, batch)} if compute_loss else None
        return ModelOutput(mention_scores, terms)
