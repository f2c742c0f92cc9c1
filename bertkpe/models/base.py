"""The shared word-level encoder and what every head does with mention scores."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bertkpe.data.batching import Batch

KPE_CONFIG_NAME = "kpe_config.json"
WEIGHTS_NAME = "model.safetensors"


class LossTerm(NamedTuple):
    """One part of a head's loss, summed over its items in the batch (`unit`, one of
    bertkpe.data.batching.COUNT_UNITS, of which the batch holds `count`): averaged over a
    count of them, weighted, and added to the other parts."""

    total: torch.Tensor  # () summed loss
    unit: str
    count: torch.Tensor  # () int64, on the batch's device
    weight: float = 1.0


def loss_term(total: torch.Tensor, unit: str, batch: Batch, weight: float = 1.0) -> LossTerm:
    return LossTerm(total, unit, batch.count(unit), weight)


@dataclass
class ModelOutput:
    mention_scores: torch.Tensor  # (B, N, W), -inf where there is no candidate mention
    loss_terms: dict[str, LossTerm] | None = None  # with compute_loss

    def loss_over(self, counts: dict[str, torch.Tensor], scale: float = 1.0) -> torch.Tensor:
        """Sum of weight x total x scale / count of each term: averaged over `counts` (an
        optimizer step's, in training, so that every item of the step weighs the same).
        Tensor arithmetic only: the host never waits for the device here."""
        return sum(term.weight * (term.total * scale / counts[term.unit])
                   for term in self.loss_terms.values())  # type: ignore[union-attr]

    @property
    def loss(self) -> torch.Tensor | None:
        """The batch's own loss: each term averaged over its items in this batch."""
        if self.loss_terms is None:
            return None
        return self.loss_over({term.unit: term.count.clamp(min=1) for term in self.loss_terms.values()})


def hidden_dropout(config: Any) -> float:
    """The encoder's hidden-state dropout, whatever the architecture calls it."""
    for name in ("hidden_dropout_prob", "dropout", "hidden_dropout", "dropout_rate"):
        value = getattr(config, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.1


def pool_phrases(mention_scores: torch.Tensor, phrase_grid: torch.Tensor, num_phrases: int) -> torch.Tensor:
    """Phrase score = max over its mentions, by one scatter-reduce: linear in mentions.

    Returns (B, num_phrases) with -inf for phrase slots a document does not use.
    """
    batch_size = mention_scores.shape[0]
    index = torch.where(phrase_grid >= 0, phrase_grid, num_phrases).flatten(1)
    pooled = mention_scores.new_full((batch_size, num_phrases + 1), float("-inf"))
    pooled = pooled.scatter_reduce(1, index, mention_scores.flatten(1), reduce="amax", include_self=True)
    return pooled[:, :num_phrases]


class KeyphraseModel(nn.Module):
    """A keyphrase head over any Hugging Face encoder.

    The encoder gives one vector per sub-token; the word vector is that of the word's
    first sub-token (in the window chosen for it), gathered for the whole batch at once.
    Subclasses turn word vectors into one score per mention and, given labels, a loss.
    """

    model_class: ClassVar[str]
    head_options: ClassVar[tuple[str, ...]] = ()  # constructor options saved in kpe_config.json

    def __init__(self, encoder: nn.Module, max_phrase_words: int = 5):
        super().__init__()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None  # the pooled [CLS] vector is never used: drop it (and its unused gradients)
        self.encoder = encoder
        self.max_phrase_words = max_phrase_words
        self.hidden_size = int(encoder.config.hidden_size)
        self.dropout_rate = hidden_dropout(encoder.config)
        self.dropout = nn.Dropout(self.dropout_rate)

    def word_vectors(self, batch: Batch) -> torch.Tensor:
        """(B, W, H): every window of the batch is encoded at once, then each word's vector
        is read from its own window, so a document's words form one sequence again."""
        hidden = self.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return self.dropout(hidden[batch.word_windows, batch.word_starts])

    def forward(self, batch: Batch, compute_loss: bool = False) -> ModelOutput:
        return self.head(self.word_vectors(batch), batch, compute_loss)

    def head(self, words: torch.Tensor, batch: Batch, compute_loss: bool) -> ModelOutput:
        raise NotImplementedError

    def phrase_scores(self, mention_scores: torch.Tensor, batch: Batch) -> torch.Tensor:
        return pool_phrases(mention_scores.float(), batch.phrase_grid, batch.phrase_mask.shape[1])

    def ngram_positions(self, num_words: int, device: torch.device) -> torch.Tensor:
        """(N, W) index of the last word of each mention (start + n - 1)."""
        lengths = torch.arange(self.max_phrase_words, device=device)[:, None]
        return torch.arange(num_words, device=device)[None, :] + lengths

    # -- saving and loading: a directory anyone can load (config + safetensors + tokenizer)

    def kpe_config(self) -> dict[str, Any]:
        options = {name: getattr(self, name) for name in self.head_options}
        return {"model_class": self.model_class, "max_phrase_words": self.max_phrase_words, **options}

    def save_pretrained(self, directory: str | os.PathLike, tokenizer=None, extra: dict[str, Any] | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.encoder.config.save_pretrained(directory)
        state = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)
        config = {**self.kpe_config(), **(extra or {})}
        (directory / KPE_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def read_kpe_config(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / KPE_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a bertkpe checkpoint directory (no {KPE_CONFIG_NAME})")
    return json.loads(path.read_text())


def load_weights(model: KeyphraseModel, directory: str | os.PathLike) -> None:
    state = load_file(str(Path(directory) / WEIGHTS_NAME))
    model.load_state_dict(state, strict=True)
