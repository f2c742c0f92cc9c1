"""Checkpoint directories: written atomically, loaded without unpickling code.

A checkpoint is what `KeyphraseModel.save_pretrained` writes (encoder config,
safetensors weights, tokenizer, `kpe_config.json`). A resumable one (`last/`) adds
`training_state.pt`: optimizer, scheduler, gradient scaler, the moving average, every
process's RNG state and the position in training, loaded with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import os
import random
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.optim.swa_utils import AveragedModel

from bertkpe.files import previous_folder, replace_folder, staging_folder, write_json
from bertkpe.model_card import EVAL_RESULTS_NAME, read_json, write_model_card
from bertkpe.models import KeyphraseModel
from bertkpe.models.base import load_weights

TRAINING_STATE_NAME = "training_state.pt"


@dataclass
class TrainState:
    """Where training is; saved with `last/` so a resumed run continues exactly."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    batch_in_epoch: int = 0  # this process's micro-batches of the epoch already consumed
    best_score: float = -1.0
    best_step: int = -1
    world_size: int = 1  # processes the run trains under: a resumed run must keep it


@dataclass
class Training:
    """What a resumable checkpoint holds beside the weights."""

    optimizer: torch.optim.Optimizer
    scheduler: Any  # a torch LR scheduler
    scaler: torch.amp.GradScaler
    averaged: AveragedModel | None
    state: TrainState


def save_last(directory: str | os.PathLike, model: KeyphraseModel, tokenizer, options: dict[str, Any],
              training: Training, rng_states: list[dict[str, Any]]) -> Path:
    """The resumable checkpoint: weights, and the training state with every process's RNG state."""
    state = {"optimizer": training.optimizer.state_dict(), "scheduler": training.scheduler.state_dict(),
             "scaler": training.scaler.state_dict(), "train_state": asdict(training.state), "rng": rng_states}
    if training.averaged is not None:
        state["averaged"] = training.averaged.state_dict()
    return save_checkpoint(directory, model, tokenizer, options, state)


def restore_last(directory: str | os.PathLike, model: KeyphraseModel, training: Training, rank: int,
                 world_size: int) -> None:
    """Continue from a resumable checkpoint, refused under another number of processes: the
    data shards, the items of a step and each process's random state depend on it."""
    saved = load_training_state(directory)
    # runs saved before the world size was recorded saved one RNG state per process
    trained_under = saved["train_state"].get("world_size", len(saved["rng"]))
    if trained_under != world_size:
        raise SystemExit(f"error: --resume {directory}: the run trained under {trained_under} process(es) and "
                         f"this one has {world_size}; resume it under {trained_under} (torchrun "
                         f"--nproc_per_node {trained_under}), as the data shards, the documents of a step and "
                         f"each process's random state depend on it")
    load_weights(model, directory)
    training.optimizer.load_state_dict(saved["optimizer"])
    training.scheduler.load_state_dict(saved["scheduler"])
    training.scaler.load_state_dict(saved["scaler"])
    if training.averaged is not None:
        training.averaged.load_state_dict(saved["averaged"])
    training.state = TrainState(**{**saved["train_state"], "world_size": trained_under})
    set_rng_state(saved["rng"][rank])


def save_checkpoint(directory: str | os.PathLike, model: KeyphraseModel, tokenizer, options: dict[str, Any],
                    training_state: dict[str, Any] | None = None, scores: dict[str, Any] | None = None) -> Path:
    """Write into a temporary sibling, then swap it in: a run killed while saving leaves
    the previous checkpoint (or its `.old` copy, which `resolve_checkpoint` finds) intact.
    Staging folders of this name that a killed save left behind are removed first: one
    process saves a given checkpoint, so none of them is still being written. `scores`
    (per split) go into its eval_results.json, and its model card tells them."""
    directory = Path(directory)
    staging = staging_folder(directory)
    try:
        model.save_pretrained(staging, tokenizer=tokenizer, extra=options)
        if scores is not None:
            write_json(staging / EVAL_RESULTS_NAME, scores)
        write_model_card(staging, name=str(directory))
        if training_state is not None:
            torch.save(training_state, staging / TRAINING_STATE_NAME)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a failed save leaves no partial copy behind
        raise
    replace_folder(staging, directory)
    return directory


def record_scores(directory: str | os.PathLike, scores: dict[str, Any]) -> None:
    """Add scores (per split) to a saved checkpoint's eval_results.json and model card."""
    directory = resolve_checkpoint(directory)
    write_json(directory / EVAL_RESULTS_NAME, {**read_json(directory / EVAL_RESULTS_NAME), **scores})
    write_model_card(directory)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint directory at `path`, or the copy a save interrupted mid-swap left."""
    path = Path(path)
    if path.is_dir():
        return path
    old = previous_folder(path)
    if old is not None:
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
