"""The sub-word tokenizer as features need it: fast (words map to sub-tokens), its special
tokens, the encoder's position limit, and a fingerprint of its definition for store keys."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def load_tokenizer(name_or_path: str):
    """A fast tokenizer that accepts pre-split words (byte-level BPE needs a prefix space)."""
    from transformers import AutoConfig, AutoTokenizer

    kwargs: dict[str, Any] = {}
    try:
        model_type = AutoConfig.from_pretrained(name_or_path).model_type
    except (OSError, ValueError):
        model_type = ""
    if model_type in ("roberta", "longformer", "bart", "gpt2", "deberta"):
        kwargs["add_prefix_space"] = True
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, use_fast=True, **kwargs)
    if not tokenizer.is_fast:
        raise ValueError(f"{name_or_path}: bertkpe needs a fast (Rust) tokenizer to map words to sub-tokens")
    quiet_length_warning(tokenizer)
    return tokenizer


def quiet_length_warning(tokenizer) -> None:
    """Documents are tokenized whole and cut into encoder windows afterwards, so the
    tokenizer's "longer than the maximum sequence length" warning does not apply."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True


def special_tokens_around(tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """The special token ids the encoder expects before and after a single sequence."""
    probe = tokenizer(["keyphrase"], is_split_into_words=True, add_special_tokens=True)
    word_ids = probe.word_ids(0)
    inside = [position for position, word in enumerate(word_ids) if word is not None]
    ids = np.asarray(probe["input_ids"], dtype=np.int64)
    return ids[:inside[0]], ids[inside[-1] + 1:]


def encoder_token_limit(tokenizer, config: Any) -> int | None:
    """The most sub-tokens (special tokens excluded) the encoder accepts, if known."""
    prefix, suffix = special_tokens_around(tokenizer)
    specials = len(prefix) + len(suffix)
    limits = []
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and 0 < model_max < 1_000_000:
        limits.append(model_max - specials)
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "longformer"):
            positions -= int(getattr(config, "pad_token_id", 1) or 1) + 1  # positions start past padding
        limits.append(positions - specials)
    return min(limits) if limits else None


def check_max_token(max_token: int, tokenizer, encoder_config: Any, flag: str = "--max_token") -> None:
    """Refuse a sub-token budget the encoder cannot take, before any work is done: past its
    position limit the encoder fails mid-run with an index error that names no flag."""
    if max_token < 1:
        raise ValueError(f"{flag} must be at least 1, got {max_token}")
    limit = encoder_token_limit(tokenizer, encoder_config)
    if limit is not None and max_token > limit:
        raise ValueError(f"{flag} {max_token} is more than the encoder takes: at most {limit} sub-tokens "
                         f"besides its special tokens ({getattr(encoder_config, 'max_position_embeddings', '?')} "
                         f"positions)")


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition (vocabulary, normaliser, special tokens).
    Its truncation and padding are left out: they are settings of a call, which a tokenizer
    file may carry until the first call resets them, and features never use them."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode("utf-8"))
    digest.update(json.dumps([ids.tolist() for ids in special_tokens_around(tokenizer)]).encode("utf-8"))
    return digest.hexdigest()


def check_max_token_of(max_token: int, encoder: str, flag: str = "--max_token") -> None:
    """`check_max_token` against a named encoder (hub id or folder), before any work starts."""
    from transformers import AutoConfig

    check_max_token(max_token, load_tokenizer(encoder), AutoConfig.from_pretrained(encoder), flag)
