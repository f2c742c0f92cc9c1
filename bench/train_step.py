"""Where a bert2joint training step's time goes on Inspec abstracts, and what dropout costs.

The demo's micro-batches (8 Inspec training abstracts, length-grouped as in training) are
timed as whole optimizer steps (forward + loss + backward + AdamW) for three copies of the
default encoder that differ only in dropout:

  encoder's own      attention-probability dropout 0.1, hidden dropout 0.1 (the config)
  attention 0        `--attention_dropout 0`: PyTorch's fused attention in training too
  attention 0, hidden 0   no dropout in the encoder at all (diagnostic)
  attention 0, EMA   attention 0 with `--ema_decay`'s moving-average update after each step

and, for scale, the inference forward of the same batches (eval, inference_mode). Rounds
are interleaved (every candidate once per round, order reversed every other round);
medians of the per-batch means, and each candidate's paired ratio to the encoder's own.

    python bench/train_step.py --repeats 5
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_arguments(parser)
    parser.add_argument("--batches", type=int, default=12, help="micro-batches timed per round")
    args = parser.parse_args(argv)
    common.apply_threads(args)
    import torch
    from torch.optim.swa_utils import AveragedModel
    from transformers import AutoConfig, AutoModel

    from bertkpe.data.batching import collate, length_grouped_batches
    from bertkpe.data.features import FeatureOptions, build_features, read_records
    from bertkpe.data.tokenizers import load_tokenizer
    from bertkpe.models import model_type, with_dropout
    from bertkpe.training import warmed_up_ema

    encoder_path = common.default_encoder()
    tokenizer = load_tokenizer(encoder_path)
    folder = common.preprocessed(Path(args.workdir), Path(args.datasets), "kp20k")
    documents = build_features(read_records(folder / "kp20k.train.json"), tokenizer,
                               FeatureOptions(tokenizer=encoder_path, max_token=510))
    order = length_grouped_batches([len(doc.input_ids) for doc in documents], 8, torch.Generator().manual_seed(0))
    batches = [collate([documents[i] for i in indices], indices, tokenizer.pad_token_id or 0)
               for indices in order[:args.batches]]

    def model_with(attention: float | None, hidden: float | None):
        config = AutoConfig.from_pretrained(encoder_path)
        if attention is not None:
            config = with_dropout(config, attention)
        if hidden is not None:
            config.hidden_dropout_prob = hidden
        torch.manual_seed(0)
        return model_type("bert2joint")(AutoModel.from_pretrained(encoder_path, config=config), 5).train()

    def training_steps(model, ema_decay: float = 0.0):
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
        averaged = AveragedModel(model, multi_avg_fn=warmed_up_ema(ema_decay)) if ema_decay else None

        def run():
            for batch in batches:
                model(batch, compute_loss=True).loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if averaged is not None:
                    averaged.update_parameters(model)
        return run

    inference_model = model_with(None, None).eval()

    def inference():
        with torch.inference_mode():
            for batch in batches:
                inference_model(batch)

    candidates = {"encoder's own dropout": training_steps(model_with(None, None)),
                  "attention 0": training_steps(model_with(0.0, None)),
                  "attention 0, hidden 0": training_steps(model_with(0.0, 0.0)),
                  "attention 0, EMA": training_steps(model_with(0.0, None), ema_decay=0.99),
                  "inference forward": inference}
    samples = common.interleaved(candidates, repeats=args.repeats or 5)
    baseline = samples["encoder's own dropout"]
    rows = {name: {"seconds_per_batch": common.median(values) / len(batches),
                   "spread": common.spread([value / len(batches) for value in values]),
                   "paired_ratio": common.paired_ratio(values, baseline)} for name, values in samples.items()}
    tokens = sum(int(batch.attention_mask.sum()) for batch in batches) / len(batches)
    print(f"{len(batches)} micro-batches of 8 Inspec abstracts ({tokens:.0f} sub-tokens each on average), "
          f"{args.repeats or 5} interleaved rounds, torch threads {torch.get_num_threads()}")
    print("| candidate | s per micro-batch (median) | min-max | ratio to the encoder's own |")
    print("|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['seconds_per_batch']:.3f} | {row['spread']} | {row['paired_ratio']:.3f} |")
    ema_cost = common.paired_ratio(samples["attention 0, EMA"], samples["attention 0"])
    print(f"the moving-average update: {ema_cost:.3f}x the step with attention 0 (paired)")
    result = {"machine": common.machine_info(), "rows": rows, "batches": len(batches), "ema_ratio": ema_cost}
    if args.json:
        common.write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
