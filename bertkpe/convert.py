"""Checkpoints of the original BERT-KPE toolkit (thunlp) -> our checkpoint directories.

The original saves `torch.save({"args": argparse.Namespace, "epoch": int, "state_dict": ...})`.
Its parameter names, per head (max_gram 5, CNN 512 channels):

    encoder                 bert.* | roberta.* | distilbert.*  (-> encoder.*)
    bert2span               classifier (hidden->2, start)            -> start_classifier
                            self_att_classifier.query_layer / key_layer -> end_query / end_key
    bert2tag                classifier (hidden->5: O, B, I, E, U)    -> classifier (rows in TAGS order)
    bert2chunk              cnn2gram.cnn_{1..5} (Conv1d, kernel n)   -> ngram_cnn.convs.{0..4}
                            classifier (512->2)                      -> chunk_classifier
    bert2rank               cnn2gram.cnn_list.{0..4}                 -> ngram_cnn.convs.{0..4}
                            classifier (512->1)                      -> rank_scorer
    bert2joint              as rank, plus chunk_classifier (512->2)  -> chunk_classifier

Every source tensor lands in exactly one destination, unchanged (tag rows are only
permuted if the tag orders differ), and every destination is filled; shapes must match.
Dropped, and reported: the encoder's pooler (unused), constant buffers that our encoder
recomputes (`embeddings.position_ids`, checked to be 0..L-1; `embeddings.token_type_ids`,
checked to be zeros), and the masked-LM head that DistilBert2Joint inherits (unused).
The file is read with `weights_only=True`: no pickled code runs, and `argparse.Namespace`
is the only extra global allowed.
"""
from __future__ import annotations

import argparse
import logging
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bertkpe.data.matching import NO_STEMMER
from bertkpe.data.phrases import TAGS
from bertkpe.dataset_classes import dataset_class as dataset_class_named

logger = logging.getLogger("bertkpe")

ENCODER_PREFIXES = ("bert.", "roberta.", "distilbert.")
ORIGINAL_TAGS = ("O", "B", "I", "E", "U")
CNN_CHANNELS = 512
ORIGINAL_MAX_GRAM = 5
# Modules of the original networks that exist in their state dict but are never used.
UNUSED_TOP_LEVEL = ("vocab_transform.", "vocab_layer_norm.", "vocab_projector.")  # DistilBertForMaskedLM head
CONSTANT_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


class ConversionError(ValueError):
    """A checkpoint that cannot be converted faithfully; the message says why."""


@dataclass
class ConversionReport:
    mapped: dict[str, str] = field(default_factory=dict)  # source name -> destination name
    dropped: dict[str, str] = field(default_factory=dict)  # source name -> why
    permuted: list[str] = field(default_factory=list)  # destinations whose rows were reordered
    encoder_prefix: str = ""
    stripped_module_prefix: bool = False  # names had DataParallel's "module." (reported without it)

    def summary(self) -> str:
        lines = [f"mapped {len(self.mapped)} tensors (encoder prefix {self.encoder_prefix!r})"]
        if self.stripped_module_prefix:
            lines.append("stripped the DataParallel prefix 'module.' from every name")
        lines += [f"dropped {name}: {why}" for name, why in self.dropped.items()]
        lines += [f"reordered rows of {name} from {'/'.join(ORIGINAL_TAGS)} to {'/'.join(TAGS)}"
                  for name in self.permuted]
        return "\n".join(lines)


# ----------------------------------------------------------------------------- loading


def _refused_global(message: str) -> str | None:
    match = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if match:
        return match.group(1)
    match = re.search(r"Unsupported global: (\S+)", message)
    return match.group(1) if match else None


def load_original_checkpoint(path: str | Path) -> dict[str, Any]:
    """`{"args", "epoch", "state_dict"}` of an original checkpoint, without running pickled code.

    A bare state dict (name -> tensor) is accepted too (args None).
    """
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_global(str(error))
        if refused:
            raise ConversionError(
                f"{path}: refused to load: it pickles the global {refused}, and only tensors, plain "
                f"containers and argparse.Namespace are allowed (the file's code is never run)") from None
        detail = next((line.strip() for line in str(error).splitlines() if "WeightsUnpickler error" in line),
                      str(error).splitlines()[0] if str(error) else "")
        raise ConversionError(f"{path}: not a loadable checkpoint ({detail})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise ConversionError(f"{path}: not a torch checkpoint ({str(error).splitlines()[0]})") from None
    if isinstance(loaded, dict) and "state_dict" in loaded:
        state = loaded["state_dict"]
        args, epoch = loaded.get("args"), loaded.get("epoch")
    elif isinstance(loaded, dict) and loaded and all(isinstance(value, torch.Tensor) for value in loaded.values()):
        state, args, epoch = loaded, None, None
    else:
        raise ConversionError(f"{path}: expected a dict with 'state_dict' (the original toolkit's checkpoint), "
                              f"got {type(loaded).__name__}")
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ConversionError(f"{path}: 'state_dict' must map names to tensors")
    return {"args": args, "epoch": epoch, "state_dict": dict(state)}


# ----------------------------------------------------------------------------- renaming


def strip_module_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the `module.` of DataParallel / DistributedDataParallel wrappers."""
    if state and all(name.startswith("module.") for name in state):
        return {name[len("module."):]: tensor for name, tensor in state.items()}
    return state


def encoder_prefix_of(state: dict[str, torch.Tensor]) -> str:
    found = sorted({prefix for prefix in ENCODER_PREFIXES for name in state if name.startswith(prefix)})
    if len(found) != 1:
        what = "no encoder" if not found else f"several encoders ({', '.join(found)})"
        raise ConversionError(f"found {what} in the state dict: expected the names of exactly one of "
                              f"{', '.join(p + '*' for p in ENCODER_PREFIXES)}")
    return found[0]


def head_destination(model_class: str, name: str) -> str | None:
    """Our name of one of their head parameters, or None if the head has no such parameter."""
    if model_class in ("bert2rank", "bert2joint"):
        match = re.fullmatch(r"cnn2gram\.cnn_list\.(\d+)\.(weight|bias)", name)
        if match:
            return f"ngram_cnn.convs.{match.group(1)}.{match.group(2)}"
        match = re.fullmatch(r"classifier\.(weight|bias)", name)
        if match:
            return f"rank_scorer.{match.group(1)}"
        if model_class == "bert2joint":
            match = re.fullmatch(r"chunk_classifier\.(weight|bias)", name)
            if match:
                return f"chunk_classifier.{match.group(1)}"
    elif model_class == "bert2chunk":
        match = re.fullmatch(r"cnn2gram\.cnn_(\d+)\.(weight|bias)", name)
        if match and int(match.group(1)) >= 1:
            return f"ngram_cnn.convs.{int(match.group(1)) - 1}.{match.group(2)}"
        match = re.fullmatch(r"classifier\.(weight|bias)", name)
        if match:
            return f"chunk_classifier.{match.group(1)}"
    elif model_class == "bert2span":
        match = re.fullmatch(r"classifier\.(weight|bias)", name)
        if match:
            return f"start_classifier.{match.group(1)}"
        match = re.fullmatch(r"self_att_classifier\.(query|key)_layer\.(weight|bias)", name)
        if match:
            return f"end_{match.group(1)}.{match.group(2)}"
    elif model_class == "bert2tag":
        match = re.fullmatch(r"classifier\.(weight|bias)", name)
        if match:
            return f"classifier.{match.group(1)}"
    else:
        raise ConversionError(f"unknown model_class {model_class!r}")
    return None


def _legacy_encoder_name(name: str) -> str:
    # TF-era checkpoints name LayerNorm parameters gamma/beta.
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


def _is_constant_buffer(rest: str, tensor: torch.Tensor) -> str | None:
    """Why a derived buffer may be dropped (it holds what our encoder rebuilds), else None."""
    if rest == "embeddings.position_ids":
        expected = torch.arange(tensor.shape[-1], dtype=tensor.dtype).expand_as(tensor)
        if torch.equal(tensor, expected):
            return "constant buffer 0..L-1 (recomputed by the encoder)"
    if rest == "embeddings.token_type_ids" and not bool(tensor.any()):
        return "constant buffer of zeros (recomputed by the encoder)"
    return None


def map_state_dict(state: dict[str, torch.Tensor], model_class: str, destination: dict[str, torch.Tensor]
                   ) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename their tensors to our names (see the module docstring); strict in both directions."""
    stripped = strip_module_prefix(state)
    prefix = encoder_prefix_of(stripped)
    report = ConversionReport(encoder_prefix=prefix, stripped_module_prefix=stripped is not state)
    state = stripped
    converted: dict[str, torch.Tensor] = {}
    sources_of: dict[str, list[str]] = {}
    unmatched: list[str] = []
    for name, tensor in state.items():
        if name.startswith(prefix):
            rest = name[len(prefix):]
            if rest.startswith("pooler."):
                report.dropped[name] = "pooler (the pooled [CLS] vector is not used)"
                continue
            target = "encoder." + _legacy_encoder_name(rest)
            if target not in destination and rest in CONSTANT_BUFFERS:
                why = _is_constant_buffer(rest, tensor)
                if why:
                    report.dropped[name] = why
                    continue
        elif name.startswith(UNUSED_TOP_LEVEL) and prefix == "distilbert.":
            report.dropped[name] = "masked-LM head of DistilBertForMaskedLM (not used by the keyphrase model)"
            continue
        else:
            target = head_destination(model_class, name)
        if target is None or target not in destination:
            unmatched.append(name)
            continue
        sources_of.setdefault(target, []).append(name)
        converted[target] = tensor
        report.mapped[name] = target

    problems = []
    if unmatched:
        problems.append(f"source tensors with no place in a {model_class} model: {', '.join(sorted(unmatched))}")
    twice = {target: names for target, names in sources_of.items() if len(names) > 1}
    if twice:
        problems.append("destinations given twice: " + "; ".join(
            f"{target} <- {', '.join(names)}" for target, names in sorted(twice.items())))
    missing = sorted(set(destination) - set(converted))
    if missing:
        problems.append(f"destination tensors not filled: {', '.join(missing)}")
    mismatched = [f"{source} {tuple(converted[target].shape)} -> {target} {tuple(destination[target].shape)}"
                  for source, target in report.mapped.items()
                  if target in converted and converted[target].shape != destination[target].shape]
    if mismatched:
        problems.append(f"shape mismatches (is --pretrain_model_type the encoder it was trained from?): "
                        f"{'; '.join(mismatched)}")
    if problems:
        raise ConversionError("cannot convert the checkpoint faithfully:\n  " + "\n  ".join(problems))

    if model_class == "bert2tag" and tuple(TAGS) != ORIGINAL_TAGS:
        order = torch.tensor([ORIGINAL_TAGS.index(tag) for tag in TAGS])
        for part in ("weight", "bias"):
            converted[f"classifier.{part}"] = converted[f"classifier.{part}"][order]
            report.permuted.append(f"classifier.{part}")
    return converted, report


# ----------------------------------------------------------------------------- the conversion


def convert_checkpoint(original: str | Path, output_dir: str | Path, model_class: str | None = None,
                       pretrain_model_type: str | None = None, dataset_class: str | None = None,
                       stemmer: str | None = None, language: str | None = None) -> ConversionReport:
    """Write `output_dir` (save_pretrained layout) from an original BERT-KPE checkpoint file.

    `model_class`, `dataset_class` default to the checkpoint's args; `pretrain_model_type`
    (hub id or folder: the encoder's config and tokenizer) must be given. The stemmer
    follows the dataset class (openkp: none, kp20k: porter, multidata: `language`'s).
    """
    from transformers import AutoConfig

    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.models import build_model, model_type

    checkpoint = load_original_checkpoint(original)
    args = checkpoint["args"]
    model_class = model_class or getattr(args, "model_class", None)
    if not model_class:
        raise ConversionError(f"{original}: no model_class in the checkpoint's args: pass --model_class")
    model_type(model_class)  # validates the name
    if not pretrain_model_type:
        raise ConversionError("pass --pretrain_model_type: the encoder (hub id or folder) the checkpoint was trained from")
    dataset_class = dataset_class or getattr(args, "dataset_class", None)
    if stemmer is None and dataset_class is not None:
        kind = dataset_class_named(dataset_class)
        if kind.stemmer is None and not language:
            raise ConversionError(f"dataset class {dataset_class} stems by corpus language: pass --language or --stemmer")
        stemmer = kind.stemmer_for(language)
    stemmer = stemmer or NO_STEMMER
    max_phrase_words = ORIGINAL_MAX_GRAM
    if model_class in ("bert2span", "bert2tag") and isinstance(getattr(args, "max_phrase_words", None), int):
        max_phrase_words = int(args.max_phrase_words)  # CNN heads have exactly 5 convolutions
    max_token = getattr(args, "max_token", None)
    max_token = int(max_token) if isinstance(max_token, int) and max_token > 0 else 510

    try:
        config = AutoConfig.from_pretrained(pretrain_model_type)
    except (OSError, ValueError) as error:
        raise ConversionError(f"cannot load the encoder config of {pretrain_model_type!r}: {error}") from None
    # The original chunk network does not rectify its n-gram convolutions.
    head_options = {"ngram_relu": False} if model_class == "bert2chunk" else {}
    model = build_model(model_class, config, max_phrase_words, **head_options)
    converted, report = map_state_dict(checkpoint["state_dict"], model_class, model.state_dict())
    model.load_state_dict(converted, strict=True)
    tokenizer = load_tokenizer(pretrain_model_type)
    extra = {"max_token": max_token, "dataset_class": dataset_class, "stemmer": stemmer,
             "pretrain_model_type": str(pretrain_model_type), "converted_from": str(original)}
    if checkpoint["epoch"] is not None:
        extra["epoch"] = checkpoint["epoch"]
    model.save_pretrained(output_dir, tokenizer, extra={k: v for k, v in extra.items() if v is not None})
    return report
