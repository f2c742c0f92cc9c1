"""int8 CPU inference: the encoder exported to ONNX, its weights quantized to int8 per
output channel (activations quantized on the fly), and run by ONNX Runtime.

Why ONNX Runtime: `torch.ao.quantization.quantize_dynamic` is deprecated in torch 2.13
and due for removal, and torchao's int8 dynamic quantization runs slower than fp32 on a
CPU unless the model is compiled. ONNX Runtime's dynamic quantization is maintained, and
per-channel weights keep the word vectors closest to fp32. Only the encoder is
quantized; the keyphrase head and decoding stay in torch, in fp32.

Exporting and quantizing take seconds (the default encoder: about 6 s on 2 idle cores,
longer for larger encoders), so the int8 encoder is cached on disk, keyed by the
encoder's weights and configuration and the library versions (`$BERTKPE_CACHE`,
default `~/.cache/bertkpe`).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from bertkpe.models.base import KeyphraseModel

INT8_PACKAGES = ("onnxruntime", "onnx", "onnxscript")
INSTALL_HINT = "pip install 'bertkpe[int8]' (onnxruntime, onnx, onnxscript)"
# Raised when the quantization recipe changes, so that older cached encoders are not reused.
RECIPE_VERSION = "1"


def require_int8_support(device: torch.device) -> None:
    """Refuse up front what int8 inference cannot do: a non-CPU device (ONNX Runtime's
    int8 kernels used here run on the CPU) or missing packages."""
    if device.type != "cpu":
        raise ValueError(f"int8 inference runs on the CPU only (ONNX Runtime int8 kernels); got device "
                         f"{str(device)!r}: use device 'cpu' or drop int8")
    missing = [name for name in INT8_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"int8 inference needs {', '.join(missing)}: {INSTALL_HINT}")


def cache_dir() -> Path:
    return Path(os.environ.get("BERTKPE_CACHE") or Path.home() / ".cache" / "bertkpe") / "int8"


def encoder_fingerprint(encoder: nn.Module) -> str:
    """Hash of what decides the int8 encoder: weights, configuration, library versions, recipe."""
    digest = hashlib.sha256()
    digest.update(encoder.config.to_json_string(use_diff=False).encode())
    for package in ("torch", "onnxruntime", "onnx", "onnxscript"):
        digest.update(f"{package}={importlib.metadata.version(package)};".encode())
    digest.update(f"recipe={RECIPE_VERSION}".encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:32]


class _LastHiddenState(nn.Module):
    """The encoder as the exporter sees it: two int64 inputs, one tensor out."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_int8_encoder(encoder: nn.Module, path: Path) -> None:
    """Export the encoder to ONNX (any batch size and length) and quantize its weights to int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _LastHiddenState(encoder).eval()
    max_length = int(getattr(encoder.config, "max_position_embeddings", 512))
    example_ids = torch.zeros((2, 8), dtype=torch.long)  # any vocabulary has id 0
    example_mask = torch.ones((2, 8), dtype=torch.long)  # a separate tensor: the exporter would merge one passed twice
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=max_length)
    with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
        fp32_path = Path(scratch) / "encoder.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            torch.onnx.export(wrapper, (example_ids, example_mask), str(fp32_path), dynamo=True, external_data=False,
                              verbose=False,
                              input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
                              dynamic_shapes={"input_ids": {0: batch, 1: length},
                                              "attention_mask": {0: batch, 1: length}})
        int8_path = Path(scratch) / "encoder.int8.onnx"
        logging.disable(logging.WARNING)  # the quantizer's advice on the root logger to pre-process first
        try:
            quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        os.replace(int8_path, path)  # atomic: a concurrent reader sees no half-written file


class OnnxInt8Encoder(nn.Module):
    """Stands in for the Hugging Face encoder in `KeyphraseModel.word_vectors`: same call,
    same `config`, returns `last_hidden_state` computed by ONNX Runtime on the CPU."""

    def __init__(self, path: str | os.PathLike, config: Any, num_threads: int | None = None):
        super().__init__()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = str(path)
        self.config = config
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        # Hand the arena's memory back after each batch: batches of ever new shapes otherwise
        # grow it to about twice the fp32 process's peak; shrinking costs no measurable speed.
        self.run_options = onnxruntime.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: Any) -> BaseModelOutput:
        if input_ids.device.type != "cpu":
            raise ValueError(f"the int8 encoder runs on the CPU; got inputs on {input_ids.device}")
        (hidden,) = self.session.run(None, {"input_ids": input_ids.numpy().astype("int64", copy=False),
                                            "attention_mask": attention_mask.numpy().astype("int64", copy=False)},
                                     self.run_options)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))

    def extra_repr(self) -> str:
        return f"path={self.path!r}"


def quantize_int8(model: KeyphraseModel) -> KeyphraseModel:
    """Replace `model.encoder` with its int8 ONNX Runtime version (exported once, then cached)."""
    require_int8_support(torch.device("cpu"))
    if isinstance(model.encoder, OnnxInt8Encoder):
        return model
    encoder = model.encoder.cpu().eval()
    path = cache_dir() / f"{encoder_fingerprint(encoder)}.onnx"
    if not path.is_file():
        export_int8_encoder(encoder, path)
    model.encoder = OnnxInt8Encoder(path, encoder.config)
    return model.eval()
