"""Keyphrases of long documents: truncation against whole documents, and phrase pooling.

    python bench/long_documents.py --checkpoint results/RUN/best
    python bench/long_documents.py --checkpoint results/RUN/best --corpus ../shared/datasets/liaad/SemEval2010.zip

The corpus (LIAAD layout; default SemEval2010, 243 full papers) is preprocessed as
`multidata` with the seeded split. The checkpoint scores every document twice, read as
its first window only (`max_doc_tokens = max_token`, the original truncation) and whole
(up to 16384 sub-tokens); each whole-document forward is then decoded with max pooling
and with document pooling. The document-pooling weights are chosen on the dev split
only (a grid), then reported on the test split and on all documents. YAKE (`pip install
yake`; n = 3, top 10), run on the same words, is scored by the same scorer: stemmed,
against all references. Prints a markdown table; `--json` keeps the numbers. Mention
scores are kept under --workdir, so a second run decodes again without a forward.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on the path when bertkpe is not installed)
import torch

from bertkpe.baselines import yake_keyphrases
from bertkpe.cli import run_command
from bertkpe.data.batching import collate, length_grouped_batches
from bertkpe.data.features import FeatureOptions, build_features, read_records
from bertkpe.data.tokenizers import load_tokenizer
from bertkpe.dataset_classes import dataset_class
from bertkpe.decoding import MAX_POOLING, PhrasePooling, decode_batch
from bertkpe.metrics import read_keyphrase_file, score
from bertkpe.models import load_model, read_kpe_config
from bertkpe.options import document_options

SPLITS = ("train", "dev", "eval")
GRID = {"frequency_weight": (0.0, 0.05, 0.1, 0.25), "position_weight": (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)}


def preprocess(corpus: Path, workdir: Path, name: str) -> Path:
    folder = workdir / "prepro"
    if not (folder / name / f"{name}.eval.json").is_file():
        status = run_command("preprocess", ["--dataset_class", "multidata", "--dataset_name", name,
                                            "--source_dataset_dir", str(corpus), "--output_path", str(folder)])
        if status:
            raise SystemExit(status)
    return folder / name


def mention_scores(model, tokenizer, records, options: FeatureOptions, batch_windows: int, cache: Path):
    """Features, per-document mention scores (N, W) on the CPU, and the seconds the forward
    took; the scores are kept in `cache` so that decoding can be studied again without a forward."""
    features = build_features(records, tokenizer, options)
    if cache.is_file():
        saved = torch.load(cache, weights_only=True)
        return features, saved["scores"], float(saved["seconds"])
    lengths = [len(doc.input_ids) for doc in features]
    batches = length_grouped_batches(lengths, batch_windows, shuffle=False,
                                     windows=[doc.num_windows for doc in features])
    scores: dict[int, torch.Tensor] = {}
    started = time.perf_counter()
    with torch.inference_mode():
        for indices in batches:
            batch = collate([features[index] for index in indices], indices, tokenizer.pad_token_id or 0)
            output = model(batch).mention_scores
            for row, index in enumerate(indices):
                scores[index] = output[row, :, :features[index].num_words].clone()
    seconds = time.perf_counter() - started
    ordered = [scores[index] for index in range(len(features))]
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"scores": ordered, "seconds": seconds}, cache)
    return features, ordered, seconds


def decode(features, scores, pooling: PhrasePooling, top_k: int = 10) -> dict[str, list[list[str]]]:
    predictions = {}
    for doc, doc_scores in zip(features, scores):
        batch = collate([doc], pad_token_id=0)
        full = torch.full(batch.phrase_grid.shape, float("-inf"))
        full[0, :, :doc_scores.shape[1]] = doc_scores
        (ranked,) = decode_batch(full, batch, [doc], top_k, pooling)
        predictions[doc.url] = ranked.phrases
    return predictions


def f1(predictions, references, urls, scoring) -> dict[str, float]:
    scores = score({url: predictions[url] for url in urls}, {url: references[url] for url in urls}, scoring)
    return {"F1@5": scores["F1@5"], "F1@10": scores["F1@10"]}


def yake_predictions(records) -> dict[str, list[str]]:
    return {record["url"]: yake_keyphrases(record["doc_words"]) for record in records}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--corpus", default=str(common.DEFAULT_DATASETS / "liaad" / "SemEval2010.zip"))
    parser.add_argument("--name", default="semeval2010")
    parser.add_argument("--workdir", default=str(common.DEFAULT_WORKDIR / "long_documents"))
    parser.add_argument("--batch_windows", type=int, default=8, help="encoder windows per forward pass")
    parser.add_argument("--max_doc_tokens", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no_yake", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = preprocess(Path(args.corpus), Path(args.workdir), args.name)
    records = {split: read_records(folder / f"{args.name}.{split}.json") for split in SPLITS}
    references = {}
    for split in ("dev", "eval"):
        references.update(read_keyphrase_file(folder / f"{args.name}.{split}_candidate.json"))
    # training documents have no reference file: their records hold every gold keyphrase
    references.update({record["url"]: [*record["keyphrases"], *record["absent_keyphrases"]]
                       for record in records["train"]})
    everything = [record for split in SPLITS for record in records[split]]
    urls = {"dev": [r["url"] for r in records["dev"]], "eval": [r["url"] for r in records["eval"]],
            "all": [r["url"] for r in everything]}
    scoring = dataset_class("multidata").scoring(records["dev"][0]["stemmer"])

    checkpoint = Path(args.checkpoint)
    kpe = read_kpe_config(checkpoint)
    model = load_model(checkpoint).eval()
    tokenizer = load_tokenizer(str(checkpoint))
    max_token = int(kpe.get("max_token") or 510)
    rows, timings = {}, {}
    # windows share the overlap `scripts/test.py` gives them (at most a quarter of a window)
    options = FeatureOptions(str(checkpoint), max_token, int(kpe["max_phrase_words"]),
                             window_overlap=document_options(max_token, args.max_doc_tokens, None)[1])
    cache = Path(args.workdir) / "scores" / hashlib.sha256(
        f"{checkpoint.resolve()}:{(checkpoint / 'model.safetensors').stat().st_mtime_ns}".encode()).hexdigest()[:16]
    truncated_features, truncated_scores, timings["truncated"] = mention_scores(
        model, tokenizer, everything, options, args.batch_windows, cache / f"{args.name}.truncated.pt")
    whole_features, whole_scores, timings["whole"] = mention_scores(
        model, tokenizer, everything, dataclasses.replace(options, max_doc_tokens=args.max_doc_tokens),
        args.batch_windows, cache / f"{args.name}.whole_{args.max_doc_tokens}.overlap{options.window_overlap}.pt")
    rows["truncated, max pooling"] = decode(truncated_features, truncated_scores, MAX_POOLING)
    rows["whole, max pooling"] = decode(whole_features, whole_scores, MAX_POOLING)
    defaults = PhrasePooling()
    rows[f"whole, document pooling (defaults: frequency {defaults.frequency_weight}, position "
         f"{defaults.position_weight})"] = decode(whole_features, whole_scores, defaults)
    dev_urls = set(urls["dev"])
    dev_features = [doc for doc in whole_features if doc.url in dev_urls]
    dev_scores = [s for doc, s in zip(whole_features, whole_scores) if doc.url in dev_urls]
    grid = []
    for frequency, position in itertools.product(GRID["frequency_weight"], GRID["position_weight"]):
        pooling = PhrasePooling("document", frequency, position)
        grid.append((f1(decode(dev_features, dev_scores, pooling), references, urls["dev"], scoring)["F1@5"],
                     frequency, position))
    # the best dev F1@5; on a tie, the smaller weights
    best_dev, frequency, position = max(grid, key=lambda row: (row[0], -row[1] - row[2]))
    chosen = PhrasePooling("document", frequency, position)
    rows[f"whole, document pooling (dev-chosen: frequency {frequency}, position {position})"] = \
        decode(whole_features, whole_scores, chosen)
    if not args.no_yake:
        rows["YAKE (n=3, top 10)"] = yake_predictions(everything)
    table = {name: {part: f1(predictions, references, urls[part], scoring) for part in ("dev", "eval", "all")}
             for name, predictions in rows.items()}
    lengths = sorted(doc.doc_tokens for doc in whole_features)
    print(f"\n{args.name}: {len(everything)} documents (dev {len(urls['dev'])}, test {len(urls['eval'])}), "
          f"median {lengths[len(lengths) // 2]} sub-tokens; {checkpoint}; scoring {scoring.describe()}")
    print(f"forward: truncated {timings['truncated']:.0f} s, whole {timings['whole']:.0f} s "
          f"({sum(d.num_windows for d in whole_features)} windows); dev grid best F1@5 {best_dev:.4f}\n")
    print("| reading, pooling | dev F1@5 | dev F1@10 | test F1@5 | test F1@10 | all F1@5 | all F1@10 |")
    print("|---|---|---|---|---|---|---|")
    for name, parts in table.items():
        cells = " | ".join(f"{parts[part][metric]:.4f}" for part in ("dev", "eval", "all")
                           for metric in ("F1@5", "F1@10"))
        print(f"| {name} | {cells} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"table": table, "timings": timings, "grid": grid,
                                               "chosen": [frequency, position]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
