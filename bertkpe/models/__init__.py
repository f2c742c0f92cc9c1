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


def build_model(model_class: str, encoder: str | Any, max_phrase_words: int = 5, **head_options: Any
                ) -> KeyphraseModel:
    """A head over a pretrained encoder (hub id or folder) or over a config (random weights)."""
    from transformers import AutoModel, PretrainedConfig

    if isinstance(encoder, PretrainedConfig):
        encoder_model = AutoModel.from_config(encoder)
    else:
        encoder_model = AutoModel.from_pretrained(encoder)
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
