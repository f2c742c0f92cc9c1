"""Item 6: int8 inference (`int8=True`) against fp32 on the CPU: speed and F1@5.

speed: one fp32 and one int8 KeyphraseExtractor of the same checkpoint in one process;
each round times `extract(texts, top_k=5)` (word splitting, features, model, decoding)
for both, order alternating (fp32 first in even rounds), after one warm-up of each.
Reported: documents/s of each (median over rounds) and the median of the per-round
ratios int8/fp32 in documents/s.
  abstracts: the 500 KP20K-layout Inspec test documents, title + " . " + abstract.
  long:      SemEval2010 full papers (--long_docs of them), read as the extractor
             reads them (--max_doc_tokens; 510 = the first encoder window only).
The int8 encoder's one-off export and a cached load are timed once, apart.

score: F1/P/R@5 (and @1, @3, @10) of both on a preprocessed KP20K-layout split: the
predictions are made from the split's `doc_words` (as `scripts/test.py` reads them) and
scored as `bertkpe test` scores the kp20k dataset class.

    python bench/int8.py --checkpoint results/demo/best --preprocess_folder data/prepro_dataset \
        [--rounds 5] [--long_docs 60] [--max_doc_tokens 510] [--parts abstracts long] [--skip_speed] [--skip_score]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402


def inspec_abstracts(datasets: Path) -> list[str]:
    records = common.read_jsonl(Path(datasets) / "kp20k" / "kp20k_testing.json")
    return [record["title"] + " . " + record["abstract"] for record in records]


def semeval_papers(datasets: Path, count: int) -> list[str]:
    with zipfile.ZipFile(Path(datasets) / "liaad" / "SemEval2010.zip") as archive:
        names = sorted(name for name in archive.namelist() if "/docsutf8/" in name and name.endswith(".txt"))
        return [archive.read(name).decode("utf-8") for name in names[:count]]


def load_pair(checkpoint: Path, options: dict) -> tuple:
    from bertkpe import KeyphraseExtractor

    fp32 = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", **options)
    started = time.perf_counter()
    int8 = KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", int8=True, **options)
    first_load = time.perf_counter() - started
    started = time.perf_counter()
    KeyphraseExtractor.from_pretrained(checkpoint, device="cpu", int8=True, **options)
    cached_load = time.perf_counter() - started
    return fp32, int8, first_load, cached_load


def paired_rounds(fp32, int8, texts: list[str], rounds: int, batch_size: int) -> dict:
    """documents/s of each, alternating which goes first; the first pass of each is a warm-up."""
    extractors = {"fp32": fp32, "int8": int8}
    rates: dict[str, list[float]] = {"fp32": [], "int8": []}
    for round_index in range(rounds + 1):
        order = ("fp32", "int8") if round_index % 2 == 0 else ("int8", "fp32")
        for name in order:
            started = time.perf_counter()
            extractors[name].extract(texts, top_k=5, batch_size=batch_size)
            if round_index > 0:
                rates[name].append(len(texts) / (time.perf_counter() - started))
    ratios = [quantized / full for quantized, full in zip(rates["int8"], rates["fp32"])]
    return {"documents": len(texts), "rounds": rounds,
            "fp32_docs_per_s": statistics.median(rates["fp32"]), "int8_docs_per_s": statistics.median(rates["int8"]),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
            "fp32_rounds": rates["fp32"], "int8_rounds": rates["int8"]}


def encoder_windows(extractor, texts: list[str]) -> int:
    from bertkpe.data.features import build_features

    records = [{"url": str(index), "doc_words": extractor.split_words(text), "start_end_pos": [],
                "stemmer": extractor.stemmer} for index, text in enumerate(texts)]
    features = build_features(records, extractor.tokenizer, extractor.options)
    return sum(doc.num_windows for doc in features)


def f1_scores(extractor, folder: Path, split: str, batch_size: int) -> dict:
    from bertkpe.data.preprocessed import PreprocessedData
    from bertkpe.dataset_classes import dataset_class
    from bertkpe.metrics import read_keyphrase_file, score

    source = folder / "kp20k" / f"kp20k.{split}.json"
    records = common.read_jsonl(source)
    ranked = extractor.extract_words([record["doc_words"] for record in records], top_k=10, batch_size=batch_size)
    predictions = {record["url"]: [phrase.split(" ") for phrase, _ in keyphrases]
                   for record, keyphrases in zip(records, ranked)}
    references = read_keyphrase_file(folder / "kp20k" / f"kp20k.{split}_candidate.json")
    stemmer = PreprocessedData(folder, "kp20k", "kp20k").stemmer(split)
    return score(predictions, references, dataset_class("kp20k").scoring(stemmer))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--preprocess_folder", type=Path, default=None,
                        help="holds kp20k/kp20k.eval.json and kp20k.eval_candidate.json (for the F1 scores)")
    parser.add_argument("--split", default="eval")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--long_docs", type=int, default=60, help="SemEval2010 papers timed")
    parser.add_argument("--max_doc_tokens", type=int, default=None,
                        help="sub-tokens read per long document (510: the first window)")
    parser.add_argument("--parts", nargs="+", choices=("abstracts", "long"), default=["abstracts", "long"],
                        help="which speed figures to time")
    parser.add_argument("--skip_speed", action="store_true")
    parser.add_argument("--skip_score", action="store_true")
    args = parser.parse_args()
    common.apply_threads(args)
    import torch

    results: dict = {"threads": torch.get_num_threads(), "load_before": os.getloadavg()}
    fp32, int8, first_load, cached_load = load_pair(args.checkpoint, {})
    results["int8_first_load_s"], results["int8_cached_load_s"] = first_load, cached_load
    print(f"int8 encoder: first load {first_load:.1f} s (export + quantize, then cached), "
          f"cached load {cached_load:.1f} s", flush=True)
    timed = [] if args.skip_speed else args.parts
    if "abstracts" in timed:
        abstracts = inspec_abstracts(args.datasets)
        results["abstracts"] = paired_rounds(fp32, int8, abstracts, args.rounds, args.batch_size)
    if "long" in timed:
        long_options = {} if args.max_doc_tokens is None else {"max_doc_tokens": args.max_doc_tokens}
        long_fp32, long_int8, _, _ = load_pair(args.checkpoint, long_options) if long_options else (fp32, int8, 0, 0)
        papers = semeval_papers(args.datasets, args.long_docs)
        results["long"] = paired_rounds(long_fp32, long_int8, papers, args.rounds, args.batch_size)
        results["long"]["encoder_windows"] = encoder_windows(long_fp32, papers)
        results["long"]["max_doc_tokens"] = args.max_doc_tokens
    for name in timed:
        row = results[name]
        print(f"{name}: {row['documents']} documents, {row['rounds']} rounds: fp32 {row['fp32_docs_per_s']:.2f} "
              f"docs/s, int8 {row['int8_docs_per_s']:.2f} docs/s, int8/fp32 {row['ratio_median']:.2f}x "
              f"(rounds {row['ratio_min']:.2f}-{row['ratio_max']:.2f})", flush=True)
    if "long" in timed:
        print(f"long: {results['long']['encoder_windows']} encoder windows in all")
    if not args.skip_score and args.preprocess_folder is not None:
        for name, extractor in (("fp32", fp32), ("int8", int8)):
            results[f"scores_{name}"] = f1_scores(extractor, args.preprocess_folder, args.split, args.batch_size)
        for k in (1, 3, 5, 10):
            line = "  ".join(f"{name} {results[f'scores_{name}'][f'F1@{k}']:.4f}" for name in ("fp32", "int8"))
            change = results["scores_int8"][f"F1@{k}"] - results["scores_fp32"][f"F1@{k}"]
            print(f"F1@{k}: {line}  change {change:+.4f}")
    results["load_after"] = os.getloadavg()
    print(f"load average before/after: {results['load_before'][0]:.2f} / {results['load_after'][0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
