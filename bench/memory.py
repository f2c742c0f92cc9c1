"""Item 5: peak memory of one bert2joint training step (fwd + bwd) vs document length.

Each (length, what) pair runs in a fresh subprocess. The batch is B documents of exactly
L words, every word one sub-token (words of OpenKPTrain that the default tokenizer keeps
whole), so L words = L + 2 tokens and length scales words, tokens, mentions and phrases
together. Present keyphrases: the document's own gold spans are not reusable after
filtering, so 1 in every 25 words starts a 1-3 word gold span.

CPU: peak RSS during the step minus RSS just before it (the kernel's high-water mark
VmHWM, reset with /proc/self/clear_refs; falls back to ru_maxrss). CUDA: the peak of
torch.cuda.max_memory_allocated minus the memory allocated before the step.
Reported: the joint step, the bare encoder step (last_hidden_state.sum().backward()),
and their difference (the head); log-log slope fitted over the lengths.
The optimizer step is excluded (its state is a constant, not a function of length).

    python bench/memory.py [--lengths 128 256 510] [--batch-size 8]
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def single_word_tokens(tokenizer, records, limit: int) -> list[str]:
    words = []
    for record in records:
        for word in record["doc_words"]:
            if word.isalnum() and len(tokenizer.tokenize(word)) == 1:
                words.append(word)
                if len(words) >= limit:
                    return words
    return words


def child(args) -> dict:
    import resource

    import torch

    from bertkpe.data.batching import collate
    from bertkpe.data.features import FeatureOptions, build_features
    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.models import build_model

    torch.manual_seed(0)
    device = torch.device(args.device)
    encoder_path = common.default_encoder()
    tokenizer = load_tokenizer(encoder_path)
    folder = common.preprocessed(args.workdir, args.datasets, "openkp")
    pool = single_word_tokens(tokenizer, common.read_jsonl(folder / "openkp.train.json"),
                              args.length * args.batch_size)
    records = []
    for doc in range(args.batch_size):
        words = pool[doc * args.length:(doc + 1) * args.length]
        spans = [[(i, min(i + (i // 25) % 3, args.length - 1))] for i in range(3, args.length, 25)]
        records.append({"url": str(doc), "doc_words": words, "start_end_pos": spans, "stemmer": "none"})
    documents = build_features(records, tokenizer, FeatureOptions(tokenizer=encoder_path, max_token=510))
    assert all(doc.num_words == args.length for doc in documents), "a document lost words"
    batch = collate(documents, pad_token_id=tokenizer.pad_token_id or 0).to(device)
    if args.attention_dropout is None:
        model = build_model("bert2joint", encoder_path)
    else:  # diagnostic: the same encoder's shape (random weights) with another attention dropout
        from transformers import AutoConfig

        model = build_model("bert2joint", AutoConfig.from_pretrained(
            encoder_path, attention_probs_dropout_prob=args.attention_dropout))
    model = model.to(device).train()
    encoder = model.encoder

    def step():
        with common.autocast(device, args.dtype):
            if args.what == "joint":
                loss = model(batch, compute_loss=True).loss
            else:
                loss = encoder(input_ids=batch.input_ids,
                               attention_mask=batch.attention_mask).last_hidden_state.float().sum()
        loss.backward()

    gc.collect()
    method = ""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        method = "cuda max_memory_allocated"
    else:
        if _reset_peak():
            before = _status_kb("VmRSS") * 1024
            step()
            peak = _status_kb("VmHWM") * 1024 - before
            method = "VmHWM after clear_refs"
        else:  # the high-water mark since process start
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            step()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
            method = "ru_maxrss delta"
    return {"length": args.length, "what": args.what, "tokens": int(batch.input_ids.shape[1]),
            "phrases": int(batch.phrase_mask.shape[1]), "peak_bytes": int(peak), "method": method}


def fit_slope(xs, ys) -> float:
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 510])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--attention-dropout", type=float, default=None,
                        help="override the encoder's attention dropout (diagnostic; default: its own)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=("joint", "bare"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    common.apply_threads(args)
    if args.child:
        print("RESULT " + json.dumps(child(args)))
        return {}
    repeats = args.repeats or 1  # a peak is deterministic up to allocator noise; 1 subprocess each
    common.preprocessed(args.workdir, args.datasets, "openkp")
    rows = []
    for length in args.lengths:
        for what in ("joint", "bare"):
            peaks = []
            for _ in range(repeats):
                command = [sys.executable, __file__, "--child", "--length", str(length), "--what", what,
                           "--batch-size", str(args.batch_size), "--device", args.device, "--dtype", args.dtype,
                           "--workdir", args.workdir, "--datasets", args.datasets]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                if args.attention_dropout is not None:
                    command += ["--attention-dropout", str(args.attention_dropout)]
                out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                result = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
                peaks.append(result["peak_bytes"])
            result["peak_bytes"] = int(common.median(peaks))
            rows.append(result)
    table = {}
    for row in rows:
        table.setdefault(row["length"], {})[row["what"]] = row
    lengths = sorted(table)
    joint = [table[n]["joint"]["peak_bytes"] for n in lengths]
    bare = [table[n]["bare"]["peak_bytes"] for n in lengths]
    head = [j - b for j, b in zip(joint, bare)]
    results = {"machine": common.machine_info(), "batch_size": args.batch_size, "device": args.device,
               "attention_dropout": args.attention_dropout, "repeats": repeats,
               "dtype": args.dtype, "method": rows[0]["method"], "rows": rows,
               "slope_joint": fit_slope(lengths, joint), "slope_bare": fit_slope(lengths, bare),
               "slope_head": fit_slope(lengths, head) if all(h > 0 for h in head) else float("nan")}
    print(report(results, table))
    common.write_json(args.json, results)
    return results


def report(results, table) -> str:
    mib = 1 << 20
    lines = [f"### 5. Peak memory of a bert2joint training step (fwd+bwd), batch {results['batch_size']}, "
             f"{results['device']} {results['dtype']}"
             + ("" if results["attention_dropout"] is None else f", attention dropout {results['attention_dropout']}")
             + f" ({results['method']}, one fresh process per cell, median of {results['repeats']})", "",
             common.machine_line(results["machine"]), "",
             "| words/doc | tokens | phrases (max) | joint step MiB | bare encoder step MiB | head (joint - bare) MiB |",
             "|---|---|---|---|---|---|"]
    for length in sorted(table):
        joint, bare = table[length]["joint"], table[length]["bare"]
        lines.append(f"| {length} | {joint['tokens']} | {joint['phrases']} | {joint['peak_bytes'] / mib:.0f} | "
                     f"{bare['peak_bytes'] / mib:.0f} | {(joint['peak_bytes'] - bare['peak_bytes']) / mib:.0f} |")
    head_ok = results["slope_head"] <= 1.15
    lines += ["", f"Log-log slope (memory ~ length^k): joint step k = {results['slope_joint']:.2f}, "
                  f"bare encoder k = {results['slope_bare']:.2f}, head alone k = {results['slope_head']:.2f} "
                  f"(linear ~1: {common.bar(head_ok)} for the head)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
