"""Item 6: end-to-end extraction vs the bare encoder, and `scripts/test.py` throughput.

Checkpoint: build_model("bert2joint", default encoder).save_pretrained(tmp, tokenizer,
extra={"dataset_class": "openkp", "stemmer": "none", "max_token": 510}) under --workdir.

  extract: KeyphraseExtractor.from_pretrained(ckpt, max_doc_tokens=510).extract(texts, top_k=5, batch_size=B)
           (word splitting, feature building, batching, model, decoding: all included)
  bare:    the same encoder instance (extractor.model.encoder): tokenizer(texts,
           truncation to 512) + forward in inference_mode, batches of B sorted by length
           (as extract sorts), padded per batch. Reported both with the tokenizer call
           included (text -> vectors, like extract) and forward only.
Texts: the first N OpenKPDev documents (then OpenKPTrain) of >= 200 words, words joined
by single spaces. Interleaved runs, median.

scripts/test.py: wall time of the whole command (process start, model load, feature
building with a fresh cache folder, decoding, scoring) on the OpenKP-layout dev split
and the KP20K-layout test (eval) split, as documents/s.

    python bench/extract.py [--quick] [--docs 40] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402

BAR = 1.20


def raw_texts(datasets: Path, count: int, min_words: int = 200) -> list[str]:
    texts = []
    for name in ("OpenKPDev.jsonl", "OpenKPTrain.jsonl"):
        for record in common.read_jsonl(Path(datasets) / "openkp" / name):
            words = record["text"].split()
            if len(words) >= min_words:
                texts.append(" ".join(words))
                if len(texts) == count:
                    return texts
    return texts


def test_script_runs(args, checkpoint: Path, repeats: int) -> list[dict]:
    rows = []
    for dataset_class, split in (("openkp", "dev"), ("kp20k", "eval")):
        folder = common.preprocessed(args.workdir, args.datasets, dataset_class)
        num_docs = len(common.read_jsonl(folder / f"{dataset_class}.{split}.json"))
        times = []
        for index in range(repeats + 1):  # the first run is a warm-up (file cache, lazy imports)
            run_id = uuid.uuid4().hex[:8]
            command = [sys.executable, "scripts/test.py", "--dataset_class", dataset_class,
                       "--preprocess_folder", str(Path(args.workdir) / "prepro"), "--eval_checkpoint", str(checkpoint),
                       "--splits", split, "--output_dir", str(Path(args.workdir) / "test_runs"), "--run_name", run_id,
                       "--cached_features_dir", str(Path(args.workdir) / "feature_cache" / run_id)]
            if args.device.startswith("cpu"):
                command.append("--no_cuda")
            if args.dtype == "fp16":
                command.append("--fp16")
            elif args.dtype == "bf16":
                command.append("--bf16")
            start = time.perf_counter()
            subprocess.run(command, cwd=str(common.REPO), check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "TQDM_DISABLE": "1"})
            if index:
                times.append(time.perf_counter() - start)
        rows.append({"dataset": dataset_class, "split": split, "docs": num_docs, "s": common.median(times),
                     "spread": common.spread(times), "docs_per_s": num_docs / common.median(times),
                     "command": " ".join(["python"] + command[1:])})
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-test-script", action="store_true")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    repeats = args.repeats or (1 if args.quick else 8)

    import torch

    from bertkpe.extractor import KeyphraseExtractor

    device = torch.device(args.device)
    checkpoint = common.untrained_checkpoint(Path(args.workdir), "openkp", "none")
    # the first window only, as the bare forward below reads: this measures the pipeline's overhead
    extractor = KeyphraseExtractor.from_pretrained(checkpoint, device=device, max_doc_tokens=510)
    tokenizer, encoder = extractor.tokenizer, extractor.model.encoder
    texts = raw_texts(Path(args.datasets), args.docs)
    amp = lambda: common.autocast(device, args.dtype)  # noqa: E731

    def run_extract():
        with amp():
            return extractor.extract(texts, top_k=5, batch_size=args.batch_size)

    def bare_tokenize():
        encoded = tokenizer(texts, truncation=True, max_length=512)
        ids = encoded["input_ids"]
        order = sorted(range(len(ids)), key=lambda index: -len(ids[index]))
        batches = []
        for start in range(0, len(order), args.batch_size):
            chunk = [{"input_ids": ids[index]} for index in order[start:start + args.batch_size]]
            batches.append(tokenizer.pad(chunk, return_tensors="pt"))
        return batches

    prepared = bare_tokenize()

    def bare_forward(batches):
        with torch.inference_mode(), amp():
            for batch in batches:
                encoder(input_ids=batch["input_ids"].to(device),
                        attention_mask=batch["attention_mask"].to(device)).last_hidden_state

    samples = common.interleaved({
        "bare: tokenize + forward": lambda: bare_forward(bare_tokenize()),
        "bare: forward only": lambda: bare_forward(prepared),
        "extract (text -> top-5)": run_extract,
    }, repeats, warmup=1, device=device)
    first = run_extract()[0]
    words = [len(text.split()) for text in texts]
    results = {"machine": common.machine_info(), "device": str(device), "dtype": args.dtype, "repeats": repeats,
               "docs": len(texts), "batch_size": args.batch_size, "words_min": min(words),
               "words_median": int(common.median(words)), "example": first[:3],
               "tokens_bare": [int(b["input_ids"].shape[1]) for b in prepared],
               "times": {name: {"s": common.median(v), "spread": common.spread(v)} for name, v in samples.items()}}
    extract_s = results["times"]["extract (text -> top-5)"]["s"]
    results["ratio_vs_tokenize_forward"] = extract_s / results["times"]["bare: tokenize + forward"]["s"]
    results["ratio_vs_forward"] = extract_s / results["times"]["bare: forward only"]["s"]
    results["paired_ratio_vs_forward"] = common.paired_ratio(samples["extract (text -> top-5)"],
                                                             samples["bare: forward only"])
    results["met"] = results["ratio_vs_forward"] <= BAR
    if not args.skip_test_script:
        results["test_script"] = test_script_runs(args, checkpoint, args.repeats or (1 if args.quick else 3))
    print(report(results))
    common.write_json(args.json, results)
    return results


def report(results) -> str:
    times = results["times"]
    lines = [f"### 6. End-to-end extraction, bert2joint, default encoder ({results['device']} {results['dtype']})", "",
             common.machine_line(results["machine"]), "",
             f"{results['docs']} OpenKP-layout raw texts ({results['words_min']}+ words, median "
             f"{results['words_median']}), batch {results['batch_size']}, median of {results['repeats']} "
             f"interleaved runs after 1 warm-up.", "",
             "| path | s (median) | spread s | docs/s |", "|---|---|---|---|"]
    for name, row in times.items():
        lines.append(f"| {name} | {row['s']:.3f} | {row['spread']} | {results['docs'] / row['s']:.1f} |")
    lines += ["", f"extract / bare forward only = {results['ratio_vs_forward']:.3f}x, "
                  f"paired per round {results['paired_ratio_vs_forward']:.3f}x, "
                  f"extract / bare tokenize+forward = {results['ratio_vs_tokenize_forward']:.3f}x "
                  f"(bar <= {BAR:.2f}x against forward only: {common.bar(results['met'])})."]
    if "test_script" in results:
        lines += ["", "`scripts/test.py` (whole command: start-up, model load, features with an empty cache, "
                      "decode, score):", "", "| data | split | docs | s (median) | spread s | docs/s |",
                  "|---|---|---|---|---|---|"]
        for row in results["test_script"]:
            lines.append(f"| {row['dataset']} | {row['split']} | {row['docs']} | {row['s']:.2f} | {row['spread']} | "
                         f"{row['docs_per_s']:.1f} |")
        lines += [""] + [f"    {row['command']}" for row in results["test_script"]]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
