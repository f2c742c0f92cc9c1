"""`make general`: one bert2joint model for English text of any kind, trained on every
English training split at once, then scored on each corpus's test split beside YAKE.

The corpora: Inspec (abstracts, KP20K layout, 1000/500/500 by file id, as `make demo`),
and the LIAAD archives kdd (abstracts), SemEval2017 (paper paragraphs), 500N-KPCrowd
(news) and SemEval2010 (full papers), each split 70/15/15 by `bertkpe preprocess
--split_seed 42` (the split is written to its split.json). Each corpus is read from
`data/dataset/`, else the shared datasets folder, else downloaded. The run folder lands
under `results/`; its metrics.json holds every corpus's dev and test scores and their
mean, and `general_table.json` beside it the table printed at the end.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bertkpe.baselines import yake_split_scores
from bertkpe.cli import run_command
from bertkpe.data.default_data import ensure_default_data, ensure_liaad_corpus
from bertkpe.data.preprocessed import PreprocessedData
from bertkpe.runtime import setup_logging

# (name, LIAAD archive or None for the KP20K-layout Inspec, kind of text, what it holds)
CORPORA = [
    ("inspec", None, "papers", "abstracts"),
    ("kdd", "kdd", "papers", "abstracts"),
    ("semeval2017", "SemEval2017", "papers", "paper paragraphs"),
    ("kpcrowd", "500N-KPCrowd-v1.1", "news", "news"),
    ("semeval2010", "SemEval2010", "papers", "full papers"),
]
SPLIT_SEED = "42"

# `make demo`'s settings (scripts/demo.py), over the training splits of all corpora; the
# corpora are read in proportion to their sizes. Dev is scored once, after the last step.
TRAIN_SETTINGS = [
    "--model_class", "bert2joint", "--pretrain_model_type", "default", "--rank_loss", "softmax",
    "--attention_dropout", "0", "--ema_decay", "0.99", "--no-eval_each_epoch",
    "--max_train_epochs", "4", "--per_gpu_train_batch_size", "8", "--gradient_accumulation_steps", "1",
    "--learning_rate", "1e-4", "--head_learning_rate", "1e-3", "--warmup_proportion", "0.1",
    "--max_token", "510", "--max_phrase_words", "5", "--display_iter", "20", "--sampling_temperature", "1",
]


def preprocess(name: str, archive: str | None, kind: str, args: argparse.Namespace) -> str:
    """Preprocess one corpus into --preprocess_folder/NAME; where it came from."""
    if archive is None:
        source, where = ensure_default_data(args.data_dir, args.shared_datasets)
        flags = ["--dataset_class", "kp20k", "--source_dataset_dir", str(source)]
    else:
        zip_path, where = ensure_liaad_corpus(archive, args.data_dir, args.shared_datasets)
        flags = ["--dataset_class", "multidata", "--source_dataset_dir", str(zip_path), "--split_seed", SPLIT_SEED,
                 "--text_kind", kind]
    status = run_command("preprocess", [*flags, "--dataset_name", name, "--output_path", args.preprocess_folder])
    if status:
        raise SystemExit(status)
    return where


def table(metrics: dict, corpora: list[PreprocessedData]) -> tuple[list[str], dict]:
    """Markdown rows: each corpus's test split, the general model against YAKE."""
    rows = ["| corpus (kind) | test documents | general F1@5 | general F1@10 | YAKE F1@5 | YAKE F1@10 |",
            "|---|---|---|---|---|---|"]
    record = {}
    holds = {name: what for name, _, _, what in CORPORA}
    for data in corpora:
        model = metrics["eval"]["corpora"][data.name]
        yake = yake_split_scores(data, "eval")
        record[data.name] = {"general": {k: model[k] for k in ("F1@5", "F1@10", "num_docs")},
                             "yake": {k: yake[k] for k in ("F1@5", "F1@10")}}
        rows.append(f"| {data.name} ({holds[data.name]}) | {model['num_docs']} | {model['F1@5']:.4f} | "
                    f"{model['F1@10']:.4f} | {yake['F1@5']:.4f} | {yake['F1@10']:.4f} |")
    return rows, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared_datasets", default="../shared/datasets", type=Path)
    parser.add_argument("--data_dir", default="data/dataset", type=Path)
    parser.add_argument("--preprocess_folder", default="data/prepro_dataset")
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--run_name", default=None)
    args, extra = parser.parse_known_args()
    setup_logging()
    started = time.perf_counter()
    for name, archive, kind, _ in CORPORA:
        print(f"{name}: {preprocess(name, archive, kind, args)}", flush=True)
    run_name = args.run_name or f"general_bert2joint_{time.strftime('%Y%m%d-%H%M%S')}"
    names = [name for name, *_ in CORPORA]
    status = run_command("train", ["--train_datasets", *names, "--preprocess_folder", args.preprocess_folder,
                                   "--output_dir", args.output_dir, "--run_name", run_name, *TRAIN_SETTINGS, *extra])
    if status:
        return status
    run_dir = Path(args.output_dir) / run_name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    corpora = [PreprocessedData(Path(args.preprocess_folder), name, "kp20k" if archive is None else "multidata")
               for name, archive, *_ in CORPORA]
    rows, record = table(metrics, corpora)
    (run_dir / "general_table.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\nbert2joint, default encoder, trained on the training splits of all five corpora; test splits, "
          "all gold keyphrases as references, stemmed (Porter); documents read whole:")
    print("\n".join(rows))
    print(f"\nrun folder: {run_dir}\ntotal time: {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
