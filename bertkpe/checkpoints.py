"""Checkpoint directories: written atomically, loaded without unpickling code.

A checkpoint is what `KeyphraseModel.save_pretrained` writes (encoder config,
safetensors weights, tokenizer, `kpe_config.json`). A resumable one adds
`training_state.pt`: optimizer, scheduler, gradient scaler, RNG states and the
position in training, loaded with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from bertkpe.models import KeyphraseModel

TRAINING_STATE_NAME = "training_state.pt"


def save_checkpoint(directory: str | os.PathLike, model: KeyphraseModel, tokenizer, options: dict[str, Any],
                    training_state: dict[str, Any] | None = None) -> Path:
    """Write into a temporary sibling, then swap it in: a run killed while saving leaves
    the previous checkpoint (or its `.old` copy, which `resolve_checkpoint` finds) intact.
    Staging folders of this name that a killed save left behind are removed first: one
    process saves a given checkpoint, so none of them is still being written."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        model.save_pretrained(staging, tokenizer=tokenizer, extra=options)
        if training_state is not None:
            torch.save(training_state, staging / TRAINING_STATE_NAME)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed save leaves no partial copy behind
        raise
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        # Only a stale `.old` goes: without `directory` it is the one complete copy left.
        if old.exists():
            shutil.rmtree(old)
        os.replace(directory, old)
    os.replace(staging, directory)
    if old.exists():
        shutil.rmtree(old)
    return directory


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory at `path`, or the copy a save interrupted mid-swap left."""
    path = Path(path)
    if path.is_dir():
        return path
    old = path.with_name(path.name + ".old")
    if old.is_dir():
        return old
    raise FileNotFoundError(f"no checkpoint directory at {path}")


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(directory: str | os.PathLike) -> dict[str, Any]:
    path = Path(directory) / TRAINING_STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a resumable checkpoint (no {TRAINING_STATE_NAME})")
    return torch.load(path, map_location="cpu", weights_only=True)
