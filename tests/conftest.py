from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import (ENCODER, FIXTURES, ROOT, SPLIT_SIZES, cut_dataset, make_record, read_jsonl, tiny_config,
                     write_jsonl)

DATASETS = Path(os.environ.get("BERTKPE_DATASETS", ROOT.parent / "shared" / "datasets"))
DATASETS_MISSING = f"full shared corpora not found at {DATASETS} (set BERTKPE_DATASETS)"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The small real corpora shipped in tests/fixtures, laid out like the shared folder."""
    return FIXTURES


@pytest.fixture(scope="session")
def datasets() -> Path:
    """The full shared corpora; tests that need a whole corpus skip without them."""
    if not DATASETS.is_dir():
        pytest.skip(DATASETS_MISSING)
    return DATASETS


def pytest_terminal_summary(terminalreporter):
    skipped = [report for report in terminalreporter.stats.get("skipped", [])
               if isinstance(report.longrepr, tuple) and DATASETS_MISSING in report.longrepr[2]]
    if skipped:
        tests = "test" if len(skipped) == 1 else "tests"
        terminalreporter.write_line(f"{len(skipped)} {tests} over the full shared corpora skipped: "
                                    f"{DATASETS} not found (set BERTKPE_DATASETS to run them)")


@pytest.fixture(scope="module")
def one_thread():
    """The test machine has two shared cores: one intra-op thread is faster than two."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def setup(tmp_path_factory, fixtures):
    """Tiny encoder folder, cut datasets (kp20k, openkp, and `short`: kp20k with tiny dev
    documents), and one feature store folder shared by every run."""
    import torch
    from transformers import AutoTokenizer, BertModel

    from bertkpe.cli import run_command

    root = tmp_path_factory.mktemp("training")
    encoder = root / "tiny_bert"
    torch.manual_seed(0)
    config = tiny_config("bert", hidden=32, layers=1, heads=2, max_positions=512)
    config.intermediate_size = 64
    BertModel(config).save_pretrained(encoder)
    AutoTokenizer.from_pretrained(ENCODER).save_pretrained(encoder)

    full, data = root / "full", root / "data"
    for dataset in ("kp20k", "openkp"):
        assert run_command("preprocess", ["--dataset_class", dataset, "--source_dataset_dir", str(fixtures),
                                          "--output_path", str(full)]) == 0
        cut_dataset(full, data, dataset, SPLIT_SIZES)
    # `short`: kp20k whose dev split also has a one-word, a two-word, a punctuation-only
    # and an empty document.
    shutil.copytree(data / "kp20k", data / "short")
    for path in (data / "short").iterdir():
        path.rename(path.with_name(path.name.replace("kp20k", "short")))
    tiny = [make_record(["Graphs"], [["graphs"]], url="one-word", stemmer="porter"),
            make_record(["Sparse", "graphs"], [["sparse", "graphs"]], url="two-words", stemmer="porter"),
            make_record([".", ";"], [], url="punctuation", stemmer="porter"),
            make_record([], [], url="empty", stemmer="porter")]
    dev = read_jsonl(data / "short" / "short.dev.json")[:4]
    write_jsonl(data / "short" / "short.dev.json", dev[:2] + tiny + dev[2:])
    references = read_jsonl(data / "short" / "short.dev_candidate.json")[:4]
    tiny_references = [{"url": "one-word", "KeyPhrases": [["graphs"]]},
                       {"url": "two-words", "KeyPhrases": [["sparse", "graphs"], ["graph", "theory"]]},
                       {"url": "punctuation", "KeyPhrases": [["nothing"]]}, {"url": "empty", "KeyPhrases": []}]
    write_jsonl(data / "short" / "short.dev_candidate.json", references[:2] + tiny_references + references[2:])
    return {"root": root, "encoder": encoder, "data": data, "cache": root / "cache", "runs": root / "runs"}


@pytest.fixture(scope="session")
def roberta_tokenizer_dir(tmp_path_factory):
    """A byte-level BPE tokenizer trained offline and saved as a RoBERTa checkpoint folder."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaTokenizerFast

    text = ["Neural networks learn keyphrase extraction from scientific text.",
            "Graph models of data; tokenization into byte-level pieces, unbelievably fast!"] * 4
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(text, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                     sep_token="</s>", cls_token="<s>", pad_token="<pad>", unk_token="<unk>",
                                     mask_token="<mask>")
    directory = tmp_path_factory.mktemp("roberta_tokenizer")
    tokenizer.save_pretrained(directory)
    RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=64).save_pretrained(directory)
    return directory
