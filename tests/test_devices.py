"""Tensors from two devices never meet in decoding.

The CPU has no second device, so the checks use PyTorch's "meta" device as the other
place: a batch left on the CPU while the model ran on "meta" is exactly the mix-up a
CUDA run would hit at its first dev evaluation.
"""
from __future__ import annotations

import pytest
import torch

import bertkpe.decoding as decoding
from bertkpe.decoding import decode_batch, top_phrases
from bertkpe.evaluation import decode_documents
from bertkpe.models.base import ModelOutput
from bertkpe.runtime import Runtime
from helpers import batch_of, featurize, make_record, tiny_model

META = torch.device("meta")


def documents():
    return featurize([make_record("sparse graph models of graph data".split(), [["graph", "data"]], url="a"),
                      make_record("deep learning".split(), [["deep", "learning"]], url="b")])


class Reached(Exception):
    """Raised once decoding has checked its tensors, before it copies results to the host
    (which a meta tensor cannot do)."""


@pytest.fixture
def devices_seen(monkeypatch):
    """The devices each decoding check saw; the real check still runs first."""
    seen = []
    check = decoding.require_one_device

    def spy(**tensors):
        seen.append({name: tensor.device for name, tensor in tensors.items()})
        check(**tensors)
        raise Reached

    monkeypatch.setattr(decoding, "require_one_device", spy)
    return seen


def test_decoder_refuses_scores_and_index_on_two_devices():
    docs = documents()
    batch = batch_of(docs)
    scores = torch.zeros(batch.phrase_grid.shape, device=META)
    with pytest.raises(ValueError, match=r"mention_scores on meta, phrase_grid on cpu, phrase_mask on cpu"):
        decode_batch(scores, batch, docs)
    with pytest.raises(ValueError, match=r"phrase_scores on meta, phrase_mask on cpu"):
        top_phrases(torch.zeros(batch.phrase_mask.shape, device=META), batch.phrase_mask, 3)


class DeviceEcho(torch.nn.Module):
    """A stand-in model: zero scores on whatever device its batch is on."""

    def forward(self, batch):
        return ModelOutput(torch.zeros(batch.phrase_grid.shape, device=batch.phrase_grid.device))


def test_evaluation_decodes_the_batch_the_model_scored(devices_seen):
    with pytest.raises(Reached):
        list(decode_documents(DeviceEcho(), documents(), Runtime(device=META), batch_size=2, top_k=5))
    assert devices_seen == [{"mention_scores": META, "phrase_grid": META, "phrase_mask": META}]


def test_extraction_decodes_the_batch_the_model_scored(devices_seen):
    from bertkpe.extractor import KeyphraseExtractor
    from helpers import default_tokenizer

    extractor = KeyphraseExtractor(tiny_model("bert2joint"), default_tokenizer(), device="cpu")
    extractor.model = DeviceEcho()
    extractor.device = META
    with pytest.raises(Reached):
        extractor.extract("Sparse graph models of graph data.")
    assert devices_seen == [{"mention_scores": META, "phrase_grid": META, "phrase_mask": META}]
