"""Bert2Span: a keyphrase start classifier and an end attention from each start."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from bertkpe.data.batching import Batch
from bertkpe.models.base import KeyphraseModel, ModelOutput, loss_term

STARTS_PER_BLOCK = 256


class Bert2Span(KeyphraseModel):
    """Mention (i..j) score = P_start(i) * P_end(j | i).

    P_end(. | i) is a single-head attention from word i over the words j >= i, up to
    `span_end_window` words ahead. The attention is computed by blocks of starts, each
    against the keys its rows can reach, so memory grows linearly with the document
    instead of with its square. A document of at most `span_end_window` words (every
    single-window document: a window holds at most 510 words) gets exactly the
    attention over all j >= i of the original head.
    """

    model_class = "bert2span"
    head_options = ("span_end_window",)

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5, span_end_window: int = 512):
        super().__init__(encoder, max_phrase_words)
        self.span_end_window = span_end_window
        self.start_classifier = nn.Linear(self.hidden_size, 2)
        self.end_query = nn.Linear(self.hidden_size, self.hidden_size)
        self.end_key = nn.Linear(self.hidden_size, self.hidden_size)

    def end_log_probs(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        """(B, W, N) log P_end(i + n | i) for n = 0..N-1 (the ends a mention can have)."""
        batch_size, num_words, _ = words.shape
        reach, ngram = self.span_end_window, self.max_phrase_words
        queries = self.end_query(words)
        # N padding keys at the end, so every start can gather N ends
        keys = F.pad(self.end_key(words), (0, 0, 0, ngram))
        key_mask = F.pad(word_mask, (0, ngram))
        blocks = []
        for first in range(0, num_words, STARTS_PER_BLOCK):
            last_start = min(first + STARTS_PER_BLOCK, num_words) - 1
            starts = torch.arange(first, last_start + 1, device=words.device)
            span = torch.arange(first, max(min(num_words, last_start + reach), last_start + ngram), device=words.device)
            scores = queries[:, starts] @ keys[:, span].transpose(1, 2) / math.sqrt(self.hidden_size)
            scores = scores.float()  # (B, starts, keys)
            ahead = span[None, :] - starts[:, None]  # j - i
            reachable = (ahead >= 0) & (ahead < reach) & (span[None, :] < num_words)
            allowed = reachable[None] & key_mask[:, span][:, None, :]
            scores = scores.masked_fill(~allowed, torch.finfo(torch.float32).min)
            normalizer = torch.logsumexp(scores, dim=-1, keepdim=True)
            end_columns = (starts - first)[:, None] + torch.arange(ngram, device=words.device)[None]
            ends = torch.gather(scores, 2, end_columns[None].expand(batch_size, -1, -1))
            blocks.append(ends - normalizer)
        if not blocks:
            return words.new_zeros(batch_size, 0, ngram, dtype=torch.float32)
        return torch.cat(blocks, dim=1)

    def head(self, words: torch.Tensor, batch: Batch, compute_loss: bool) -> ModelOutput:
        start_log_probs = F.log_softmax(self.start_classifier(words).float(), dim=-1)  # (B, W, 2)
        end_log_probs = self.end_log_probs(words, batch.word_mask)  # (B, W, N)
        mention_log_probs = start_log_probs[..., 1:2] + end_log_probs
        mention_scores = mention_log_probs.exp().transpose(1, 2)  # (B, N, W)
        mention_scores = mention_scores.masked_fill(~batch.mention_mask, float("-inf"))
        terms = None
        if compute_loss:
            # gold spans padded with (-1, -1) point at word 0 with a weight of 0: no gathering of
            # the real ones, which would make the host wait for their number
            gold = batch.gold_spans[..., 0] >= 0  # (B, G)
            starts = batch.gold_spans[..., 0].clamp(min=0)
            lengths = (batch.gold_spans[..., 1] - batch.gold_spans[..., 0]).clamp(min=0)
            start_labels = torch.zeros_like(batch.word_starts).scatter_reduce(1, starts, gold.long(), reduce="amax")
            per_word = F.nll_loss(start_log_probs.flatten(0, 1), start_labels.flatten(), reduction="none")
            ends = torch.gather(end_log_probs, 1, starts[..., None].expand(-1, -1, end_log_probs.shape[2]))
            per_span = -torch.gather(ends, 2, lengths[..., None]).squeeze(2)  # (B, G)
            terms = {"start": loss_term((per_word * batch.word_mask.flatten()).sum(), "words", batch),
                     "end": loss_term((per_span * gold).sum(), "gold_spans", batch)}
        return ModelOutput(mention_scores, terms)
