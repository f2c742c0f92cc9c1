"""The five keyphrase heads, selected by `--model_class`, over any Hugging Face encoder."""
from __future__ import annotations

import os
from typing import Any

import torch

from bertkpe.models.base import KeyphraseModel, ModelOutput, load_weights, pool_phrases, read_kpe_config
from bertkpe.models.chunk import Bert2Chunk
from bertkpe.models.joint import Bert2Joint
from bertkpe.models.rank import Bert2Rank
from bertkpe.models.span import Bert2Span
from bertkpe.models.tag import Bert2Tag

MODEL_CLASSES: dict[str, type[KeyphraseModel]] = {
    cls.model_class: cls for cls in (Bert2Span, Bert2Tag, Bert2Chunk, Bert2Rank, Bert2Joint)
}


def model_type(model_class: str) -> type[KeyphraseModel]:
    try:
        return MODEL_CLASSES[model_class]
    except KeyError:
        raise ValueError(f"unknown model_class {model_class!r}; choose from {sorted(MODEL_CLASSES)}") from None


# what encoders call the dropout on attention probabilities (BERT/RoBERTa/ELECTRA/DeBERTa; DistilBERT)
ATTENTION_DROPOUT_NAMES = ("attention_probs_dropout_prob", "attention_dropout")
# and on hidden states (BERT/RoBERTa/ELECTRA/DeBERTa; DistilBERT)
HIDDEN_DROPOUT_NAMES = ("hidden_dropout_prob", "dropout")


def with_dropout(config: Any, rate: float, names: tuple[str, ...] = ATTENTION_DROPOUT_NAMES,
                 what: str = "attention") -> Any:
    """A copy of an encoder config with another dropout: on attention probabilities (at 0,
    PyTorch's fused attention kernels apply in training too, instead of an L x L matrix
    kept for backward), or on hidden states (`HIDDEN_DROPOUT_NAMES`, which the head's own
    dropout follows)."""
    import copy

    present = [name for name in names if isinstance(getattr(config, name, None), (int, float))]
    if not present:
        raise ValueError(f"{config.model_type} encoder config has no {what} dropout setting ({' or '.join(names)})")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{what} dropout must be in [0, 1), got {rate}")
    config = copy.deepcopy(config)
    for name in present:
        setattr(config, name, rate)
    return config


def build_model(model_class: str, encoder: str | Any, max_phrase_words: int = 5,
                attention_dropout: float | None = None, hidden_dropout: float | None = None,
                **head_options: Any) -> KeyphraseModel:
    """A head over a pretrained encoder (hub id or folder) or over a config (random weights);
    `attention_dropout` and `hidden_dropout` replace the encoder's own (None keeps them)."""
    from transformers import AutoConfig, AutoModel, PretrainedConfig

    config = encoder if isinstance(encoder, PretrainedConfig) else AutoConfig.from_pretrained(encoder)
    if attention_dropout is not None:
        config = with_dropout(config, attention_dropout)
    if hidden_dropout is not None:
        config = with_dropout(config, hidden_dropout, HIDDEN_DROPOUT_NAMES, "hidden")
    if isinstance(encoder, PretrainedConfig):
        encoder_model = AutoModel.from_config(config)
    else:
        encoder_model = AutoModel.from_pretrained(encoder, config=config)
    return model_type(model_class)(encoder_model, max_phrase_words, **head_options)


def load_model(directory: str | os.PathLike, device: str | torch.device = "cpu") -> KeyphraseModel:
    """A model from a checkpoint directory written by `save_pretrained`; no pickle involved."""
    from transformers import AutoConfig, AutoModel

    options = read_kpe_config(directory)
    encoder = AutoModel.from_config(AutoConfig.from_pretrained(directory))
    cls = model_type(options["model_class"])
    head_options = {name: options[name] for name in cls.head_options if name in options}
    model = cls(encoder, int(options["max_phrase_words"]), **head_options)
    load_weights(model, directory)
    return model.to(device).eval()


__all__ = ["MODEL_CLASSES", "KeyphraseModel", "ModelOutput", "build_model", "load_model", "model_type",
           "pool_phrases", "Bert2Span", "Bert2Tag", "Bert2Chunk", "Bert2Rank", "Bert2Joint"]
