"""Cost of the finite-loss check that training runs on every micro-batch under torchrun.

`Runtime.ranks_where` is one all-reduce of world_size floats; it lets every rank stop
at the micro-batch where any rank's loss is not finite. Baseline, in the same run: one
DDP training micro-batch of bert2joint (default encoder, forward + backward, whose
gradient all-reduce it joins), on B OpenKPTrain documents of L tokens per rank.

    python -m torch.distributed.run --standalone --nproc_per_node 2 bench/collective.py
    python -m torch.distributed.run --standalone --nproc_per_node 8 bench/collective.py --device cuda
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TQDM_DISABLE", "1")

import common  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-token", type=int, default=128)
    parser.add_argument("--checks", type=int, default=2000, help="timed calls of ranks_where")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    steps = args.repeats or (2 if args.quick else 7)

    import torch
    from torch.nn.parallel import DistributedDataParallel

    from bertkpe.data.batching import collate
    from bertkpe.data.features import FeatureOptions, build_features
    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.models import build_model
    from bertkpe.runtime import setup_runtime, teardown_runtime

    runtime = setup_runtime(no_cuda=not args.device.startswith("cuda"))
    if not runtime.distributed:
        raise SystemExit("run under torchrun with 2 or more processes (see the usage above)")
    torch.manual_seed(0)
    encoder = common.default_encoder()
    tokenizer = load_tokenizer(encoder)
    if runtime.is_main:  # preprocess once; the other ranks then find it made
        common.preprocessed(args.workdir, args.datasets, "openkp")
    runtime.barrier()
    folder = common.preprocessed(args.workdir, args.datasets, "openkp")
    records = [record for record in common.read_jsonl(folder / "openkp.train.json")
               if len(record["doc_words"]) >= args.max_token]  # every document fills the L tokens
    start = runtime.rank * args.batch_size
    documents = build_features(records[start:start + args.batch_size], tokenizer,
                               FeatureOptions(tokenizer=encoder, max_token=args.max_token))
    batch = collate(documents, pad_token_id=tokenizer.pad_token_id or 0).to(runtime.device)
    model = build_model("bert2joint", encoder).to(runtime.device).train()
    device_ids = [runtime.local_rank] if runtime.device.type == "cuda" else None
    ddp_model = DistributedDataParallel(model, device_ids=device_ids)

    def train_step():
        ddp_model(batch, compute_loss=True).loss.backward()

    def checks():
        for _ in range(args.checks):
            runtime.ranks_where(False)

    # every rank runs the same sequence; warm-up round first
    samples = {"training micro-batch": [], "ranks_where": []}
    for index in range(steps + 1):
        for name, fn in (("training micro-batch", train_step), ("ranks_where", checks)):
            runtime.barrier()
            elapsed = common.time_once(fn, runtime.device)
            if index:
                samples[name].append(elapsed / (args.checks if name == "ranks_where" else 1))
    step_s = common.median(samples["training micro-batch"])
    check_s = common.median(samples["ranks_where"])
    results = {"machine": common.machine_info(), "device": str(runtime.device), "world_size": runtime.world_size,
               "batch_size": args.batch_size, "tokens": int(batch.input_ids.shape[1]), "steps": steps,
               "checks": args.checks, "step_s": step_s, "check_s": check_s, "check_pct_of_step": 100 * check_s / step_s}
    if runtime.is_main:
        print(report(results))
        common.write_json(args.json, results)
    teardown_runtime(runtime)
    return results


def report(results) -> str:
    return "\n".join([
        f"### Finite-loss check under torchrun ({results['world_size']} processes, {results['device']})", "",
        common.machine_line(results["machine"]), "",
        "| what | median | |", "|---|---|---|",
        f"| bert2joint DDP training micro-batch ({results['batch_size']} docs x {results['tokens']} tokens per rank) "
        f"| {results['step_s'] * 1e3:.1f} ms | median of {results['steps']} |",
        f"| `Runtime.ranks_where` | {results['check_s'] * 1e6:.1f} us | median of {results['steps']} runs of "
        f"{results['checks']} calls |", "",
        f"The check costs {results['check_pct_of_step']:.3f}% of the micro-batch."])


if __name__ == "__main__":
    main()
