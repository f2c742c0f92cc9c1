"""Items 2-4: head overhead over the bare encoder, training and inference, and collate time.

Batch: the B longest OpenKPTrain documents (features by `build_features`, max_token 510),
collated by `bertkpe.data.batching.collate`. Every head is built over ONE shared
encoder instance (same weights, same code path as `build_model`), and the bare
encoder is that same instance (its pooler dropped, as the heads drop it).

  training   full step:  model(batch, compute_loss=True).loss.backward()
             bare step:  encoder(input_ids, attention_mask).last_hidden_state.sum().backward()
  inference  full:       inference_mode, eval: model(batch) + decode_batch(..., top_k=5)
             bare:       inference_mode, eval: encoder(input_ids, attention_mask)
  overhead = (full - bare) / bare, medians of interleaved runs (bare, span, tag, ... each round).
  head alone: the head's own work timed by itself on the encoder's word vectors (training:
             model.head(words, loss) + backward to the words; inference: model.head + decode),
             as a share of the bare step: the figure the overhead estimates, without the
             subtraction of two large noisy timings.
The optimizer step (AdamW over all parameters, with the loss's gradients present) is
timed separately; collate time is reported as a % of the joint training and inference steps.

    python bench/overhead.py --encoder default            # MiniLM-L6 (the default encoder)
    python bench/overhead.py --encoder base --repeats 3   # random roberta-base shape
    python bench/overhead.py --device cuda --dtype bf16   # on a GPU
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402

HEADS = ("bert2span", "bert2tag", "bert2chunk", "bert2rank", "bert2joint")
TRAIN_BARS = {"default": {"bert2span": 5, "bert2tag": 5, "bert2chunk": 20, "bert2rank": 20, "bert2joint": 20},
              "base": {"bert2span": 5, "bert2tag": 5, "bert2chunk": 10, "bert2rank": 10, "bert2joint": 10}}
INFER_BARS = {"default": {"bert2span": 5, "bert2tag": 5, "bert2chunk": 18, "bert2rank": 18, "bert2joint": 18},
              "base": {"bert2span": 5, "bert2tag": 5, "bert2chunk": 8, "bert2rank": 8, "bert2joint": 8}}
COLLATE_BAR = 2.0  # % of the step


def longest_openkp_documents(workdir, datasets, batch_size: int, max_token: int = 510):
    """Features of the `batch_size` OpenKPTrain documents with the most sub-tokens (then words),
    skipping exact duplicates of a document already taken."""
    from bertkpe.data.features import FeatureOptions, build_features
    from bertkpe.data.tokenizers import load_tokenizer

    encoder = common.default_encoder()
    tokenizer = load_tokenizer(encoder)
    folder = common.preprocessed(workdir, datasets, "openkp")
    records = common.read_jsonl(folder / "openkp.train.json")
    features = build_features(records, tokenizer, FeatureOptions(tokenizer=encoder, max_token=max_token))
    features.sort(key=lambda doc: (-len(doc.input_ids), -doc.num_words))
    chosen, seen = [], set()
    for doc in features:
        key = tuple(doc.input_ids.tolist())
        if key in seen or doc.gold_spans.shape[0] == 0:
            continue
        seen.add(key)
        chosen.append(doc)
        if len(chosen) == batch_size:
            break
    return chosen, tokenizer


def make_encoder(kind: str):
    from transformers import AutoModel, RobertaConfig

    if kind == "default":
        return AutoModel.from_pretrained(common.default_encoder()), "MiniLM-L6-H384 (default, pretrained)"
    # roberta-base's shape (as published: 514 positions, one token type), random weights
    config = RobertaConfig(max_position_embeddings=514, type_vocab_size=1)
    return AutoModel.from_config(config), "RoBERTa-base shape (random init, RobertaConfig vocab 50265)"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--encoder", choices=("default", "base"), default="default")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-token", type=int, default=510)
    parser.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    repeats = args.repeats or (1 if args.quick else 6)

    import torch

    from bertkpe.data.batching import collate
    from bertkpe.decoding import decode_batch
    from bertkpe.models import model_type

    torch.manual_seed(0)
    device = torch.device(args.device)
    documents, tokenizer = longest_openkp_documents(args.workdir, args.datasets, args.batch_size, args.max_token)
    encoder, encoder_name = make_encoder(args.encoder)
    pad_id = encoder.config.pad_token_id if encoder.config.pad_token_id is not None else 0
    # MiniLM ids (< 30522) are valid ids of the 50265-token roberta vocabulary; the random
    # roberta only needs in-vocabulary ids. Padding uses the encoder's own pad id.
    assert max(int(doc.input_ids.max()) for doc in documents) < encoder.config.vocab_size
    batch = collate(documents, pad_token_id=pad_id).to(device)
    shape = {"docs": len(documents), "tokens": int(batch.input_ids.shape[1]),
             "words": [doc.num_words for doc in documents], "phrases": [doc.num_phrases for doc in documents]}

    models = {name: model_type(name)(encoder, 5).to(device) for name in args.heads}  # one shared encoder
    encoder = encoder.to(device)
    amp = lambda: common.autocast(device, args.dtype)  # noqa: E731

    # ------------------------------------------------------------------ training: fwd + bwd
    def bare_train():
        encoder.zero_grad(set_to_none=True)
        with amp():
            hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        hidden.float().sum().backward()

    def head_train(model, words=None):
        """The full step; given fixed word vectors, the head's own work alone."""
        def run():
            model.zero_grad(set_to_none=True)
            with amp():
                if words is None:
                    loss = model(batch, compute_loss=True).loss
                else:
                    loss = model.head(words.detach().requires_grad_(), batch, True).loss
            loss.backward()
        return run

    train, train_cpu, train_alone, optimizer_times = {}, {}, {}, []
    if not args.skip_training:
        for model in models.values():
            model.train()
        with amp():
            words = next(iter(models.values())).word_vectors(batch).detach()
        train = common.interleaved({"bare encoder": bare_train, **{n: head_train(m) for n, m in models.items()}},
                                   repeats, warmup=1, device=device)
        train_cpu = dict(common.CPU_SAMPLES)
        train_alone = common.interleaved({n: head_train(m, words) for n, m in models.items()}, repeats, warmup=1,
                                         device=device)

        # optimizer step alone (AdamW over the joint model's parameters, gradients present)
        step_model = models.get("bert2joint") or next(iter(models.values()))
        optimizer = torch.optim.AdamW(step_model.parameters(), lr=5e-5)
        for index in range(repeats + 1):
            head_train(step_model)()
            elapsed = common.time_once(optimizer.step, device)
            if index:
                optimizer_times.append(elapsed)
        del optimizer
        step_model.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ inference: forward (+ decode)
    infer, infer_cpu, infer_alone = {}, {}, {}
    if not args.skip_inference:
        def bare_infer():
            with torch.inference_mode(), amp():
                encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state

        def head_infer(model, words=None):
            """Forward and decode; given fixed word vectors, the head and decoding alone."""
            def run():
                with torch.inference_mode():
                    with amp():
                        output = model(batch) if words is None else model.head(words, batch, False)
                    return decode_batch(output.mention_scores, batch, documents, 5)
            return run

        for model in models.values():
            model.eval()
        with torch.inference_mode(), amp():
            words = next(iter(models.values())).word_vectors(batch)
        infer = common.interleaved({"bare encoder": bare_infer, **{n: head_infer(m) for n, m in models.items()}},
                                   repeats, warmup=1, device=device)
        infer_cpu = dict(common.CPU_SAMPLES)
        infer_alone = common.interleaved({n: head_infer(m, words) for n, m in models.items()}, repeats, warmup=1,
                                         device=device)

    # ------------------------------------------------------------------ collate
    collate_runs = 5 if args.quick else 30
    collate_samples = common.interleaved({"collate": lambda: collate(documents, pad_token_id=pad_id).to(device)},
                                         collate_runs, warmup=2, device=device)["collate"]

    results = {"machine": common.machine_info(), "encoder": args.encoder, "encoder_name": encoder_name,
               "device": str(device), "dtype": args.dtype, "repeats": repeats, "shape": shape,
               "train": {}, "infer": {},
               "optimizer_step_s": common.median(optimizer_times) if optimizer_times else None,
               "collate_s": common.median(collate_samples)}
    for kind, samples, cpu, alone, bars in (("train", train, train_cpu, train_alone, TRAIN_BARS),
                                            ("infer", infer, infer_cpu, infer_alone, INFER_BARS)):
        if not samples:
            continue
        bare = common.median(samples["bare encoder"])
        results[kind]["bare encoder"] = {"s": bare, "spread": common.spread(samples["bare encoder"])}
        for name in args.heads:
            full = common.median(samples[name])
            # the same ratio per round (paired in time), as a robustness check
            paired = common.paired_ratio(samples[name], samples["bare encoder"]) - 1.0
            overhead = 100.0 * (full - bare) / bare
            cpu_bare, cpu_full = common.median(cpu["bare encoder"]), common.median(cpu[name])
            bar = bars[args.encoder][name]
            results[kind][name] = {"s": full, "spread": common.spread(samples[name]), "overhead_pct": overhead,
                                   "paired_overhead_pct": 100.0 * paired,
                                   "head_alone_s": common.median(alone[name]),
                                   "head_alone_pct": 100.0 * common.median(alone[name]) / bare,
                                   "cpu_overhead_pct": 100.0 * (cpu_full - cpu_bare) / cpu_bare, "bar_pct": bar, "met": overhead <= bar}
    reference = "bert2joint" if "bert2joint" in args.heads else "bare encoder"
    results["collate_reference"] = reference
    if train:
        results["optimizer_pct_of_bare"] = 100.0 * results["optimizer_step_s"] / results["train"]["bare encoder"]["s"]
        results["collate_pct_train"] = 100.0 * results["collate_s"] / results["train"][reference]["s"]
    if infer:
        joint_infer = results["infer"][reference]["s"]
        results["collate_pct_infer"] = 100.0 * results["collate_s"] / joint_infer
    print(report(results))
    common.write_json(args.json, results)
    return results


def report(results) -> str:
    shape = results["shape"]
    words = shape["words"]
    lines = [f"### 2-4. Head overhead over the bare encoder: {results['encoder_name']}", "",
             common.machine_line(results["machine"]) + f"; device {results['device']}, {results['dtype']}", "",
             f"Batch: {shape['docs']} OpenKPTrain docs x {shape['tokens']} tokens (incl. specials), "
             f"{min(words)}-{max(words)} words/doc, {min(shape['phrases'])}-{max(shape['phrases'])} phrases/doc; "
             f"median of {results['repeats']} interleaved runs after 1 warm-up.", ""]
    for kind, title in (("train", "training step fwd+bwd (optimizer excluded)"),
                        ("infer", "inference: forward (inference_mode) + decode top-5")):
        if not results[kind]:
            continue
        bare = results[kind]["bare encoder"]
        lines += [f"**{title}**: bare encoder {bare['s']:.3f} s (spread {bare['spread']})", "",
                  "| head | s (median) | spread s | overhead (wall) | paired per-round | by process CPU time "
                  "| head alone | bar | |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, row in results[kind].items():
            if name == "bare encoder":
                continue
            lines.append(f"| {name} | {row['s']:.3f} | {row['spread']} | {row['overhead_pct']:+.1f}% | "
                         f"{row['paired_overhead_pct']:+.1f}% | {row['cpu_overhead_pct']:+.1f}% | "
                         f"{row['head_alone_pct']:.1f}% | <= {row['bar_pct']}% | {common.bar(row['met'])} |")
        lines.append("")
    if results["optimizer_step_s"] is not None:
        lines.append(f"Optimizer step (AdamW, joint model, separate): {results['optimizer_step_s']:.3f} s "
                     f"= {results['optimizer_pct_of_bare']:.1f}% of the bare fwd+bwd.")
    shares = [f"{results[key]:.3f}% of the {results['collate_reference']} {step} step"
              for key, step in (("collate_pct_train", "training"), ("collate_pct_infer", "inference")) if key in results]
    ok = max(results.get(key, 0.0) for key in ("collate_pct_train", "collate_pct_infer")) <= COLLATE_BAR
    lines.append(f"Collate ({shape['docs']} docs): {1000 * results['collate_s']:.2f} ms = {', '.join(shares)} "
                 f"(bar <= {COLLATE_BAR}%: {common.bar(ok)}).")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
