"""`make general`: one bert2joint model for English text of any kind, trained on the
training and dev splits of every English corpus at once, then scored on each corpus's
test split beside YAKE.

The corpora: Inspec (abstracts, KP20K layout, 1000/500/500 by file id, as `make demo`),
and the LIAAD archives kdd (abstracts), SemEval2017 (paper paragraphs), 500N-KPCrowd
(news) and SemEval2010 (full papers), each split 70/15/15 by `bertkpe preprocess
--split_seed 42` (the split is written to its split.json). Each corpus is read from
`data/dataset/`, else the shared datasets folder, else downloaded. The run folder lands
under `results/`; its metrics.json holds every corpus's test scores (and dev scores, with
`--dev`) and their mean, and `general_table.json` beside it the table printed at the end. The model is fit
on the training and dev splits together once its settings were chosen with `--dev` (the
training splits alone, each dev split scored). With `--alone` each corpus is also trained
alone with the same settings, as many epochs over it.
Flags it does not know go to `bertkpe train` after its own settings (and override them).
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

# `make demo`'s settings (scripts/demo.py); the corpora read in proportion to their sizes
# (against --sampling_temperature 2 on dev: a lower mean over corpora, and slower steps).
TRAIN_SETTINGS = [
    "--model_class", "bert2joint", "--pretrain_model_type", "default", "--rank_loss", "softmax",
    "--attention_dropout", "0", "--ema_decay", "0.99", "--per_gpu_train_batch_size", "8",
    "--gradient_accumulation_steps", "1", "--learning_rate", "1e-4", "--head_learning_rate", "1e-3",
    "--warmup_proportion", "0.1", "--max_token", "510", "--max_phrase_words", "5", "--display_iter", "20",
    "--sampling_temperature", "1",
]
# The final model, as `make demo` fits its own: the training and dev splits together, for as
# many documents read as the dev run (3 epochs of the larger set against its 4).
FINAL_SETTINGS = ["--train_splits", "train", "dev", "--no_eval", "--max_train_epochs", "3"]
# `--dev`: the run the settings were chosen with: the training splits alone, each corpus's
# dev split scored after the last step.
DEV_SETTINGS = ["--train_splits", "train", "--no-eval_each_epoch", "--max_train_epochs", "4"]


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


def train(run_dir: Path, corpora: list[str], args: argparse.Namespace, extra: list[str]) -> dict:
    """A run's metrics.json, trained first unless the run folder already holds them."""
    if not (run_dir / "metrics.json").is_file():
        settings = DEV_SETTINGS if args.dev else FINAL_SETTINGS
        status = run_command("train", ["--train_datasets", *corpora, "--preprocess_folder", args.preprocess_folder,
                                       "--output_dir", str(run_dir.parent), "--run_name", run_dir.name,
                                       *TRAIN_SETTINGS, *settings, *extra])
        if status:
            raise SystemExit(status)
    return json.loads((run_dir / "metrics.json").read_text())


def corpus_scores(metrics: dict, name: str) -> dict:
    """One corpus's test scores in a run's metrics.json (several corpora's, or its own)."""
    return metrics["eval"]["corpora"][name] if "corpora" in metrics["eval"] else metrics["eval"]


def table(general: dict, alone: dict[str, dict], corpora: list[PreprocessedData]) -> tuple[list[str], dict]:
    """Markdown rows: each corpus's test split, the general model against the model trained
    on that corpus alone (where trained) and against YAKE."""
    columns = ["general", *(["alone"] if alone else []), "YAKE"]
    rows = ["| corpus (what it holds) | test documents | " +
            " | ".join(f"{column} F1@5 | {column} F1@10" for column in columns) + " |",
            "|---|---|" + "---|---|" * len(columns)]
    record = {}
    holds = {name: what for name, _, _, what in CORPORA}
    for data in corpora:
        scores = {"general": corpus_scores(general, data.name), "YAKE": yake_split_scores(data, "eval")}
        if alone:
            scores["alone"] = corpus_scores(alone[data.name], data.name)
        record[data.name] = {column: {k: scores[column][k] for k in ("F1@5", "F1@10", "num_docs")}
                             for column in columns}
        cells = " | ".join(f"{scores[column]['F1@5']:.4f} | {scores[column]['F1@10']:.4f}" for column in columns)
        rows.append(f"| {data.name} ({holds[data.name]}) | {scores['general']['num_docs']} | {cells} |")
    return rows, record


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared_datasets", default="../shared/datasets", type=Path)
    parser.add_argument("--data_dir", default="data/dataset", type=Path)
    parser.add_argument("--preprocess_folder", default="data/prepro_dataset")
    parser.add_argument("--output_dir", default="results")
    parser.add_argument("--run_name", default=None,
                        help="the run folder's name; a folder that holds a finished run is scored, not retrained")
    parser.add_argument("--dev", action="store_true",
                        help="train on the training splits alone and score each corpus's dev split too: how the "
                             "settings were chosen")
    parser.add_argument("--alone", action="store_true",
                        help="also train each corpus alone with the same settings (as many epochs over it), "
                             "as RUN_NAME_alone_CORPUS, for the table's middle column")
    args, extra = parser.parse_known_args()
    setup_logging()
    started = time.perf_counter()
    for name, archive, kind, _ in CORPORA:
        print(f"{name}: {preprocess(name, archive, kind, args)}", flush=True)
    run_dir = Path(args.output_dir) / (args.run_name or f"general_bert2joint_{time.strftime('%Y%m%d-%H%M%S')}")
    names = [name for name, *_ in CORPORA]
    general = train(run_dir, names, args, extra)
    alone = {name: train(run_dir.with_name(f"{run_dir.name}_alone_{name}"), [name], args, extra)
             for name in names} if args.alone else {}
    corpora = [PreprocessedData(Path(args.preprocess_folder), name, "kp20k" if archive is None else "multidata")
               for name, archive, *_ in CORPORA]
    rows, record = table(general, alone, corpora)
    (run_dir / "general_table.json").write_text(json.dumps(record, indent=2) + "\n")
    fitted = "training splits" if args.dev else "training and dev splits"
    print(f"\nbert2joint, default encoder, trained on the {fitted} of all five corpora; test splits, "
          "all gold keyphrases as references, stemmed (Porter); documents read whole:")
    print("\n".join(rows))
    print(f"\nrun folder: {run_dir}\ntotal time: {(time.perf_counter() - started) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
