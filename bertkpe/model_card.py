"""The model card (README.md) of a checkpoint folder, made from the folder alone.

Every `best/`, `last/` and epoch checkpoint carries one, so a folder found on a disk says
what it is, what it was trained on and what it scores; `bertkpe push` rewrites it before
uploading, from the same files: `kpe_config.json` (the head, its options and, for a
trained checkpoint, its training record: options and data fingerprints),
`eval_results.json` (scores with their scoring configuration) and the encoder's
`config.json`. Its front matter is the Hub's metadata (`huggingface_hub.ModelCardData`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bertkpe.files import write_text

CARD_NAME = "README.md"
EVAL_RESULTS_NAME = "eval_results.json"
SPLIT_TITLES = {"eval": "test", "dev": "dev"}
METRIC_ORDER = ("F1", "P", "R")

# The encoder that `--pretrain_model_type default` names, as the Hub knows it.
DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"

CITATION = """\
@inproceedings{sun2021capturing,
  title     = {Capturing Global Informativeness in Open Domain Keyphrase Extraction},
  author    = {Sun, Si and Liu, Zhenghao and Xiong, Chenyan and Liu, Zhiyuan and Bao, Jie},
  booktitle = {Natural Language Processing and Chinese Computing (NLPCC 2021)},
  year      = {2021}
}"""


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def encoder_name(kpe: dict[str, Any]) -> str:
    name = str(kpe.get("pretrain_model_type") or "")
    return DEFAULT_ENCODER_ID if name in ("", "default") else name


def base_model(kpe: dict[str, Any]) -> str | None:
    """The encoder's Hub id, where it is one (not a local folder)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    name = encoder_name(kpe)
    try:
        validate_repo_id(name)
    except HFValidationError:
        return None
    return None if Path(name).exists() else name


def score_rows(results: dict[str, Any]) -> list[str]:
    """A markdown table: one row per split, F1/P/R at every k scored."""
    splits = [split for split in ("eval", "dev") if isinstance(results.get(split), dict)]
    if not splits:
        return ["No scores recorded: a training run records its dev and test scores here; "
                "`bertkpe push --scores TEST_RUN/metrics.json` publishes those of a `scripts/test.py` run."]
    ks = sorted({int(name.split("@")[1]) for split in splits for name in results[split] if name.startswith("F1@")})
    columns = [f"{metric}@{k}" for k in ks for metric in METRIC_ORDER]
    rows = ["| split | documents | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for split in splits:
        corpora = results[split].get("corpora", {})
        named = [(f"{SPLIT_TITLES[split]}: {name}", scores) for name, scores in corpora.items()]
        mean_title = f"{SPLIT_TITLES[split]}: mean of {len(corpora)} corpora" if corpora else SPLIT_TITLES[split]
        for title, scores in [*named, (mean_title, results[split])]:
            values = " | ".join(f"{scores[column]:.4f}" if column in scores else "" for column in columns)
            rows.append(f"| {title} | {scores.get('num_docs', '')} | {values} |")
    scoring = next((scores["scoring"] for split in splits
                    for scores in [results[split], *results[split].get("corpora", {}).values()]
                    if "scoring" in scores), None)
    if scoring:
        rows.append("")
        rows.append("Scoring: " + ", ".join(f"{name} {value}" for name, value in sorted(scoring.items())) + ".")
    return rows


def card_metadata(kpe: dict[str, Any], results: dict[str, Any], title: str):
    from huggingface_hub import EvalResult, ModelCardData

    evaluations = []
    dataset = str(kpe.get("dataset_name") or kpe.get("dataset_class") or "unknown")
    for split in ("eval", "dev"):
        split_scores = results.get(split)
        if not isinstance(split_scores, dict):
            continue
        for corpus, scores in (split_scores.get("corpora") or {dataset: split_scores}).items():
            for name in sorted((name for name in scores if name.startswith("F1@")), key=lambda name: int(name[3:])):
                evaluations.append(EvalResult(task_type="keyphrase-extraction", dataset_type=corpus,
                                              dataset_name=corpus, dataset_split=SPLIT_TITLES[split],
                                              metric_type="f1", metric_name=name,
                                              metric_value=round(float(scores[name]), 4)))
    return ModelCardData(library_name="bertkpe", tags=["keyphrase-extraction", "bertkpe", str(kpe["model_class"])],
                         base_model=base_model(kpe), model_name=title, eval_results=evaluations or None)


def training_rows(training: dict[str, Any]) -> list[str]:
    if not training:
        return ["No training record (a checkpoint converted or written by hand)."]
    corpora = training.get("corpora") or []
    rows = []
    if len(corpora) > 1:
        rows += ["Trained on several corpora at once, each matched with its own stemmer:", "",
                 "| corpus | dataset class | stemmer | language | training documents | read an epoch |",
                 "|---|---|---|---|---|---|"]
        rows += [f"| {corpus.get('dataset_name')} | {corpus.get('dataset_class')} | {corpus.get('stemmer')} | "
                 f"{corpus.get('language') or ''} | {corpus.get('documents')} | {corpus.get('documents_per_epoch')} |"
                 for corpus in corpora]
        rows.append("")
    rows += [f"Trained for {training.get('step', '?')} optimizer steps on:", "",
            "| split file | preprocessed from | bytes | documents | store key |", "|---|---|---|---|---|"]
    for data in training.get("data", []):
        rows.append(f"| {data.get('file', '')} | {data.get('source', '')} | {data.get('bytes', '')} | "
                    f"{data.get('documents', '')} | {data.get('store_key', '')} |")
    rows += ["", "The store key is the hash of the split file's bytes, the tokenizer and every feature option.",
             "", "<details><summary>The run's options</summary>", "", "```json",
             json.dumps(training.get("options", {}), indent=2, sort_keys=True), "```", "", "</details>"]
    return rows


def model_card(folder: str | os.PathLike, name: str | None = None, published: bool = False,
               results: dict[str, Any] | None = None) -> str:
    """The card's text: metadata, what the model is, its scores, how to use it, its training.
    `name` is what loads it (its folder by default, its Hub id once `published`, which
    also titles the card). `results` replaces the folder's eval_results.json."""
    from huggingface_hub import ModelCard

    folder = Path(folder)
    kpe = read_json(folder / "kpe_config.json")
    encoder = read_json(folder / "config.json")
    results = read_json(folder / EVAL_RESULTS_NAME) if results is None else results
    training = kpe.get("training") or {}
    title = name if published and name else \
        f"{kpe['model_class']} keyphrase extraction ({kpe.get('dataset_name') or 'bertkpe'})"
    usage_id = name or str(folder)
    max_token = int(kpe.get("max_token") or 510)
    options = training.get("options", {})
    trained_reading = f"; training read up to {options['max_doc_tokens']} sub-tokens of a document" \
        if options.get("max_doc_tokens") else ""
    body = [
        f"# {title}", "",
        f"A keyphrase extraction model trained with bertkpe, the toolkit of the BERT-KPE / JointKPE models "
        f"(citation below): the `{kpe['model_class']}` head over the encoder `{encoder_name(kpe)}` "
        f"({encoder.get('model_type', '?')}, {encoder.get('num_hidden_layers', '?')} layers, hidden size "
        f"{encoder.get('hidden_size', '?')}).", "",
        "| | |", "|---|---|",
        f"| head | `{kpe['model_class']}`, phrases of at most {kpe.get('max_phrase_words', '?')} words |",
        f"| encoder | `{encoder_name(kpe)}` |",
        f"| dataset class | `{kpe.get('dataset_class', '?')}` (its word splitter splits raw text), data "
        f"`{kpe.get('dataset_name', '?')}` |",
        f"| stemmer | `{kpe.get('stemmer') or 'none'}` (phrases with equal stems are one phrase) |",
        f"| reading | windows of {max_token} sub-tokens; extraction reads a document whole (up to "
        f"`max_doc_tokens`, 16384 by default, as overlapping windows){trained_reading} |", "",
        "## Scores", "", *score_rows(results), "",
        "## Use", "", "```python", "from bertkpe import KeyphraseExtractor",
        f'kx = KeyphraseExtractor.from_pretrained("{usage_id}")',
        'kx.extract("Text of a document ...", top_k=5)  # [(phrase, score), ...]', "```", "",
        f"or `bertkpe extract --checkpoint {usage_id} --input docs.txt --lines`.", "",
        "## Training", "", *training_rows(training), "",
        "## Citation", "", "```bibtex", CITATION, "```", "",
    ]
    metadata = card_metadata(kpe, results, title)
    return str(ModelCard("---\n" + metadata.to_yaml() + "\n---\n\n" + "\n".join(body)))


def write_model_card(folder: str | os.PathLike, name: str | None = None) -> Path:
    path = Path(folder) / CARD_NAME
    write_text(path, model_card(folder, name))
    return path
